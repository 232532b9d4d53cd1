"""Stage 4, user embeddings: the embedder (pooled hidden states of layers k..e), the user encoder
(raw events -> vectors, as the model's corpus was made), embedding by shards (resumable), and the
SentenceTransformer export."""

from .embedder import (
    DEFAULT_MAX_LENGTH,
    DTYPES,
    PADDING_FREE_MIN_TOKENS,
    POOL_TOKENS,
    POOLINGS,
    Embedder,
    check_layer_range,
    default_layer_start,
    early_layer_end,
    embed_corpus,
    embed_dataset,
    resolve_embedding_settings,
    stop_at_layer,
)
from .encoder import UserEncoder
from .export import export_sentence_transformer
from .run import EmbedConfig, run_embed
from .sharded import MODEL_FILES, SHARDS_FORMAT, Shard, embed_shards, plan_shards, shards_manifest

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "DTYPES",
    "MODEL_FILES",
    "PADDING_FREE_MIN_TOKENS",
    "POOLINGS",
    "POOL_TOKENS",
    "SHARDS_FORMAT",
    "EmbedConfig",
    "Embedder",
    "Shard",
    "UserEncoder",
    "check_layer_range",
    "default_layer_start",
    "early_layer_end",
    "embed_corpus",
    "embed_dataset",
    "embed_shards",
    "export_sentence_transformer",
    "plan_shards",
    "resolve_embedding_settings",
    "run_embed",
    "shards_manifest",
    "stop_at_layer",
]
