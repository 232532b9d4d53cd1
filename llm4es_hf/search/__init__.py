"""Nearest users: the index (``index``), building it from files (``files``), new users' events at
query time (``query``)."""

from .files import IndexConfig, build_index_from_files
from .index import (
    EXACT_MAX_USERS,
    HNSW_MAX_USERS,
    INDEX_KINDS,
    IvfSettings,
    UserIndex,
    choose_kind,
    label_distribution,
    resolve_index_folder,
)
from .query import QueryEncoder, event_columns

__all__ = [
    "IndexConfig",
    "EXACT_MAX_USERS",
    "HNSW_MAX_USERS",
    "INDEX_KINDS",
    "IvfSettings",
    "QueryEncoder",
    "UserIndex",
    "build_index_from_files",
    "choose_kind",
    "event_columns",
    "label_distribution",
    "resolve_index_folder",
]
