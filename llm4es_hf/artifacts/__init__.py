"""Every on-disk format the stages share, read and written in one place, one module per kind of file:

- ``tables``: raw CSV / Parquet tables, every column a string, each row with its file line;
- ``corpora``: corpus folders (the text configs, ``users/``, ``schema.yaml``), local or on the Hub;
- ``embeddings``: one Parquet file of user vectors, or a folder of shards with a manifest;
- ``labels``: a corpus' or a user table's labels;
- ``folders``: what a model folder carries beside its weights (pooling and serialization settings),
  and an index folder's files.

Shard names, atomic writes and resume are ``llm4es_hf.shards``.
"""

from .corpora import (
    CONFIGS,
    CORPUS_COLUMNS,
    SplitTexts,
    config_files,
    corpus_text_splits,
    load_corpus_config,
    load_corpus_users,
    load_texts,
    parquet_splits,
    split_files,
)
from .embeddings import (
    Matrix,
    check_finite,
    embedding_files,
    embeddings_table,
    load_embeddings,
    save_embeddings,
    write_embedding_shard,
)
from .folders import (
    EMBEDDING_SETTINGS,
    INDEX_FILES,
    SERIALIZATION_KEYS,
    SERIALIZATION_SETTINGS,
    corpus_serialization_settings,
    embedding_settings,
    serialization_settings,
    write_serialization_settings,
)
from .labels import Labels, load_labels
from .tables import FILE, NA_VALUES, ROW, csv_error, ragged_line, read_table, require_columns

__all__ = [
    "CONFIGS",
    "CORPUS_COLUMNS",
    "EMBEDDING_SETTINGS",
    "FILE",
    "INDEX_FILES",
    "NA_VALUES",
    "ROW",
    "SERIALIZATION_KEYS",
    "SERIALIZATION_SETTINGS",
    "Labels",
    "Matrix",
    "SplitTexts",
    "check_finite",
    "config_files",
    "corpus_serialization_settings",
    "corpus_text_splits",
    "csv_error",
    "embedding_files",
    "embeddings_table",
    "embedding_settings",
    "load_corpus_config",
    "load_corpus_users",
    "load_embeddings",
    "load_labels",
    "load_texts",
    "parquet_splits",
    "ragged_line",
    "read_table",
    "require_columns",
    "save_embeddings",
    "serialization_settings",
    "split_files",
    "write_embedding_shard",
    "write_serialization_settings",
]
