"""`llm4es embed` as the stage runs it: ``EmbedConfig`` (its options) and ``run_embed`` (one file, or
a folder of shards that a rerun resumes; ranks of an accelerate launch take disjoint shards)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import PartialState

from ..artifacts import corpus_text_splits
from ..errors import Llm4esError
from ..hardware import process_state
from ..shards import check_shard_folder, finished_shards, start_shard_folder
from .embedder import (
    DTYPES,
    POOL_TOKENS,
    POOLINGS,
    Embedder,
    embed_corpus,
    resolve_embedding_settings,
)
from .sharded import embed_shards, plan_shards, shards_manifest


@dataclass
class EmbedConfig:
    """Options of `llm4es embed`."""

    model: str | None = field(
        default=None, metadata={"help": "model folder, Hub id, or bundled name (smollm2-135m, gemma3-270m)"}
    )
    corpus: str | None = field(default=None, metadata={"help": "corpus folder or Hub data set id (plain texts)"})
    output: str | None = field(
        default=None,
        metadata={"help": "X.parquet: one file (user_id, split, embedding); a folder: one file per shard, resumable"},
    )
    corpus_config: str = field(default="serialized", metadata={"help": "corpus config holding the plain texts"})
    splits: list[str] = field(default_factory=list, metadata={"help": "splits to embed (default: all)"})
    layer_start: int | None = field(
        default=None, metadata={"help": "first hidden state averaged (default: the model's export, else L/3)"}
    )
    layer_end: int | None = field(
        default=None,
        metadata={
            "help": "last hidden state averaged: the forward stops at this layer (default: the model's export, "
            "else the last layer)"
        },
    )
    pooling: str | None = field(default=None, metadata={"help": f"one of {list(POOLINGS)} (default: mean)"})
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "tokens per user, most recent kept (default: the model's export, else its corpus' token budget, "
            "else 2048)"
        },
    )
    batch_size: int = field(default=8, metadata={"help": "texts per forward pass"})
    dtype: str = field(
        default="auto", metadata={"help": f"one of {list(DTYPES)}; auto: bf16 where the hardware has it"}
    )
    pool_tokens: str = field(
        default="all", metadata={"help": f"one of {list(POOL_TOKENS)}; events: average the event tokens only"}
    )
    weight_field: int | None = field(
        default=None, metadata={"help": "weight each event by this comma-separated value of its line (-1: the last)"}
    )
    echo: bool = field(default=False, metadata={"help": "run the text twice, pool the second copy"})
    suffix: str | None = field(
        default=None, metadata={"help": "text appended after each user's text (a summarizing prompt; --pooling last)"}
    )
    num_shards: int | None = field(
        default=None,
        metadata={"help": "folder --output: cut each split into this many shards (default: one per corpus file)"},
    )


def run_embed(config: EmbedConfig) -> int:
    """`llm4es embed` on parsed options: one Parquet file, or a folder of resumable shards."""
    missing = [name for name in ("model", "corpus", "output") if not getattr(config, name)]
    if missing:
        raise Llm4esError(f"--{missing[0]} is required", key=missing[0])
    sharded = Path(config.output).suffix.lower() != ".parquet"
    if config.num_shards is not None and not sharded:
        raise Llm4esError("--num-shards writes a folder of shards: give a folder as --output", key="output")
    state = process_state()
    pooling = resolve_embedding_settings(
        config.model,
        layer_start=config.layer_start,
        layer_end=config.layer_end,
        pooling=config.pooling,
        max_length=config.max_length,
    )
    embedder = Embedder(
        config.model,
        **pooling,
        dtype=config.dtype,
        device=str(state.device),  # each process its own accelerator
        pool_tokens=config.pool_tokens,
        weight_field=config.weight_field,
        echo=config.echo,
        suffix=config.suffix,
    )
    settings = (
        f"layers {embedder.layer_start}...{embedder.layer_end} of {embedder.num_layers}, {embedder.pooling} pooling, "
        f"{str(embedder.dtype).replace('torch.', '')}"
    )
    if sharded:
        return embed_to_folder(config, embedder, state, settings)
    embeddings = embed_corpus(
        embedder,
        config.corpus,
        config.output,
        corpus_config=config.corpus_config,
        splits=config.splits,
        batch_size=config.batch_size,
    )
    if embeddings is not None:
        processes = f"; {state.num_processes} processes" if state.num_processes > 1 else ""
        print(f"{len(embeddings):,} users x {embeddings.shape[1]} dims ({settings}{processes}) -> {config.output}")
    return 0


def embed_to_folder(config: EmbedConfig, embedder: Embedder, state: PartialState, settings: str) -> int:
    """One file per shard; process r of n takes shards r, r+n, ... that are not finished yet. The
    main process starts (or checks) the folder before any process writes; no process waits for the
    others at the end, so one slower rank never trips a collective's timeout."""
    folder = Path(config.output)
    splits = corpus_text_splits(config.corpus, config.corpus_config, config.splits or None)
    shards = plan_shards(splits, config.num_shards)
    manifest = shards_manifest(embedder, config.corpus, config.corpus_config, splits, shards)
    if state.is_main_process:
        start_shard_folder(folder, manifest)
    state.wait_for_everyone()
    finished = check_shard_folder(folder, manifest)
    mine = shards[state.process_index :: state.num_processes]
    todo = [shard for shard in mine if shard.name not in finished]
    who = f"process {state.process_index + 1}/{state.num_processes}: " if state.num_processes > 1 else ""
    start = time.perf_counter()
    tokens = embed_shards(
        embedder,
        splits,
        todo,
        folder,
        batch_size=config.batch_size,
        progress=state.is_main_process,
        desc=f"Embedding {len(todo)} shards",
    )
    elapsed = time.perf_counter() - start
    done = len(finished_shards(folder, manifest["shards"]))
    print(
        f"{who}{sum(shard.rows for shard in todo):,} users in {len(todo)} shards embedded "
        f"({tokens / max(elapsed, 1e-9):,.0f} tokens/s; {len(mine) - len(todo)} were finished before), "
        f"{embedder.dimension} dims ({settings}) -> {folder}: {done} of {len(shards)} shards written"
        + ("" if done == len(shards) else " (the other processes are finishing theirs)")
    )
    return 0
