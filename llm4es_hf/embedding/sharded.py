"""Embedding by shards: one Parquet file per shard with a manifest, resumable, ranks taking disjoint
shards (``llm4es embed --output FOLDER``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import (
    SplitTexts,
    write_embedding_shard,
)
from ..errors import Llm4esError
from ..shards import shard_name
from .embedder import Embedder

SHARDS_FORMAT = "llm4es-embedding-shards/1"
MODEL_FILES = {"config.json", "tokenizer.json", "adapter_config.json"}  # and the weights (*.safetensors, *.bin)


@dataclasses.dataclass(frozen=True)
class Shard:
    """Rows ``[start, stop)`` of one split, embedded into the file ``name``."""

    name: str
    split: str
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def plan_shards(splits: Sequence[SplitTexts], num_shards: int | None = None) -> list[Shard]:
    """The output shards, split by split: ``num_shards`` near-equal row ranges per split (at most
    one per row), else one per input file (one per split for a Hub corpus)."""
    if num_shards is not None and num_shards < 1:
        raise Llm4esError(f"num_shards must be 1 or more, got {num_shards}", key="num_shards")
    shards = []
    for part in splits:
        if num_shards is not None:
            count = min(num_shards, max(part.rows, 1))
            bounds = np.linspace(0, part.rows, count + 1).round().astype(int).tolist()
        else:
            bounds = np.concatenate([[0], np.cumsum(part.file_rows or [part.rows])]).astype(int).tolist()
        count = len(bounds) - 1
        shards += [Shard(shard_name(part.split, k, count), part.split, bounds[k], bounds[k + 1]) for k in range(count)]
    return shards


def shards_manifest(
    embedder: Embedder, corpus: str, corpus_config: str, splits: Sequence[SplitTexts], shards: Sequence[Shard]
) -> dict[str, Any]:
    """What a sharded run is: the model (path, Hub revision, its weight and config files' sizes and
    times, so a model retrained in place is another model), the corpus (its files' names, sizes and
    rows), the pooling settings and the planned shards."""
    path = Path(embedder.path)
    model_files = [
        {"name": file.name, "bytes": file.stat().st_size, "modified_ns": file.stat().st_mtime_ns}
        for file in (sorted(path.iterdir()) if path.is_dir() else [])
        if file.name in MODEL_FILES or file.suffix in (".safetensors", ".bin")
    ]
    return {
        "format": SHARDS_FORMAT,
        "model": {
            "path": str(path.resolve()) if path.is_dir() else str(embedder.path),
            "revision": getattr(embedder.model.config, "_commit_hash", None),
            "files": model_files,
        },
        "corpus": {
            "path": str(Path(corpus).resolve()) if Path(corpus).is_dir() else corpus,
            "config": corpus_config,
            "splits": [part.describe() for part in splits],
        },
        "embedding": {
            "layer_start": embedder.layer_start,
            "layer_end": embedder.layer_end,
            "num_layers": embedder.num_layers,
            "pooling": embedder.pooling,
            "max_length": embedder.max_length,
            "dtype": str(embedder.dtype).replace("torch.", ""),
            "pool_tokens": embedder.pool_tokens,
            "weight_field": embedder.weight_field,
            "echo": embedder.echo,
            "suffix": embedder.suffix,
            "dimension": embedder.dimension,
        },
        "shards": [dataclasses.asdict(shard) for shard in shards],
    }


def embed_shards(
    embedder: Embedder,
    splits: Sequence[SplitTexts],
    shards: Sequence[Shard],
    folder: Path,
    *,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "Embedding",
) -> int:
    """Embed ``shards`` one after another, each written (atomically) as soon as it is done, under one
    progress bar (users, tokens/s, ETA); the number of tokens embedded."""
    from tqdm.auto import tqdm

    by_split = {part.split: part for part in splits}
    bar = tqdm(total=sum(shard.rows for shard in shards), unit="user", desc=desc, disable=not progress)
    tokens = 0

    def advance(texts: int, batch_tokens: int) -> None:
        nonlocal tokens
        tokens += batch_tokens
        elapsed = bar.format_dict["elapsed"] or 1e-9
        bar.set_postfix_str(f"{tokens / elapsed:,.0f} tok/s", refresh=False)
        bar.update(texts)

    for shard in shards:
        table = by_split[shard.split].read(shard.start, shard.stop)
        vectors = embedder.encode(table["text"].to_pylist(), batch_size=batch_size, progress=False, on_batch=advance)
        write_embedding_shard(folder / shard.name, table["user_id"].to_pylist(), vectors, shard.split)
    bar.close()
    return tokens
