"""Corpus stage: raw events -> a folder of text configs (``serialized``, ``enriched``) with its card.

- ``build``: the one-shot build (read, serialize, enrich, split, write) and ``CorpusConfig``;
- ``sharded``: raw input larger than memory, hash-partitioned into shards built one by one (and by
  several ranks at once), resumable.
"""

from .build import (
    CONFIGS,
    CorpusConfig,
    SerializedUsers,
    build_corpus,
    load_corpus_config,
    serialize_users,
    write_dataset_card,
)

__all__ = [
    "CONFIGS",
    "CorpusConfig",
    "SerializedUsers",
    "build_corpus",
    "load_corpus_config",
    "serialize_users",
    "write_dataset_card",
]
