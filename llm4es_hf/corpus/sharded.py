"""Sharded corpora: raw events larger than memory -> ``serialized/<split>-0000k-of-0000N.parquet``.

Users are hash-partitioned by id into N shards in one streaming pass over the raw files
(``sources.stream``); each shard is then validated, grouped, serialized and split on its own
with the same code as the one-shot path, so a user's text and split are the same either way,
and peak memory follows the shard size. Ranks of an ``accelerate launch``/``torchrun`` job
(``RANK``, ``WORLD_SIZE``) take the shards ``k`` with ``k % WORLD_SIZE == RANK``: several
processes or machines writing to one (shared) folder need no merge step.

Progress lives in the folder: ``shards/manifest.json`` records the run (inputs, schema,
settings, polars version: the shard hash is polars'), and ``shards/<k>-of-<N>.json`` marks a
finished shard with its counts. A rerun with the same settings resumes (finished shards are
skipped); a folder from a different run is refused, never mixed or overwritten.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..artifacts import CORPUS_COLUMNS, FILE
from ..errors import Llm4esError
from ..schema import EventSchema, schema_to_dict
from ..serialize import SerializationConfig, Serializer, SerializeSummary, summarize
from ..shards import claim, shard_name, shard_stem, write_atomically, write_text_atomically
from ..sources import SourceConfig, SourceReport, eligible_users, group_users, held_out, source_schema
from ..sources.stream import FILE_SOURCES, SHARD, RawFiles, partition_events, raw_files, read_labels, read_shard

MANIFEST = Path("shards") / "manifest.json"
TOKEN_SAMPLE = 32  # users per shard whose tokens are counted for the percentiles
SERIALIZE_BATCH = 5000  # users rendered at once
FINGERPRINT_KEYS = ("source", "labels", "format", "max_events", "max_tokens", "tokenizer", "seed", "test_size")


STREAM_BYTES = 2**30  # raw input above this is sharded by default
SHARD_BYTES = 128 * 2**20  # of raw input per shard by default (~2M bank events, ~2 GB peak RSS)
GZIP_RATIO = 5  # a gzipped CSV's size in memory, roughly


def auto_num_shards(source: SourceConfig) -> int:
    """The default shard count: 1 (in memory) under STREAM_BYTES of raw events, else one per SHARD_BYTES."""
    if source.source not in FILE_SOURCES or (source.source in ("csv", "parquet") and source.input is None):
        return 1
    files = raw_files(source.source, source.input, source.labels, source_schema(source.source, source.schema))
    size = sum(p.stat().st_size * (GZIP_RATIO if p.suffix == ".gz" else 1) for p in files.events)
    return 1 if size < STREAM_BYTES else math.ceil(size / SHARD_BYTES)


def launch_rank() -> tuple[int, int]:
    """``(rank, world size)`` of this process as ``torchrun``/``accelerate launch`` set them (0, 1 alone)."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as err:
        raise Llm4esError(f"RANK and WORLD_SIZE must be integers: {err}", key="RANK") from err
    if world < 1 or not 0 <= rank < world:
        raise Llm4esError(f"RANK {rank} is not in [0, WORLD_SIZE={world})", key="RANK")
    return rank, world


@dataclass
class ShardedBuild:
    """What a sharded build left in the folder: its shards, and whether every one is finished."""

    num_shards: int
    done: list[int]
    schema: EventSchema

    @property
    def complete(self) -> bool:
        return len(self.done) == self.num_shards


def build_sharded(
    source: SourceConfig,
    serialization: SerializationConfig,
    output: Path,
    num_shards: int,
    tokenizer: Any = None,
) -> ShardedBuild:
    """Write this rank's shards of the ``serialized`` config and ``users/`` (see the module docstring)."""
    if num_shards < 1:
        raise Llm4esError(f"--num_shards must be at least 1, got {num_shards}", key="num_shards")
    schema = source_schema(source.source, source.schema)
    files = raw_files(source.source, source.input, source.labels, schema)
    fingerprint = run_fingerprint(source, serialization, files, schema, num_shards)
    _refuse_foreign(output, fingerprint)
    rank, world = launch_rank()
    mine = [k for k in range(num_shards) if k % world == rank]
    pending = [k for k in mine if not _stats_path(output, k, num_shards).exists()]
    staging = output / "shards" / f"staging-rank{rank:05d}"
    if pending:
        shutil.rmtree(staging, ignore_errors=True)
        try:
            users = partition_events(files.events, schema, num_shards, pending, staging)
            if num_shards > users:
                raise Llm4esError(
                    f"--num_shards {num_shards} is more than the {users:,} users of the input; use at most that",
                    key="num_shards",
                )
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            _remove_empty(output)
            raise
    _claim(output, fingerprint)
    labels = read_labels(files.labels, schema, num_shards) if files.labels and pending else None
    print(f"rank {rank} of {world}: shards {len(mine)} of {num_shards}, {len(mine) - len(pending)} already done")
    for shard in tqdm(pending, desc="Shards", unit="shard"):
        _write_shard(source, serialization, schema, tokenizer, output, staging, shard, num_shards, labels)
    shutil.rmtree(staging, ignore_errors=True)
    done = [k for k in range(num_shards) if _stats_path(output, k, num_shards).exists()]
    return ShardedBuild(num_shards, done, schema)


def run_fingerprint(
    source: SourceConfig, serialization: SerializationConfig, raw: RawFiles, schema: EventSchema, num_shards: int
) -> dict[str, Any]:
    """What makes two runs write the same shards: inputs (path, size, time), schema, settings."""
    settings = {**asdict(source), **asdict(serialization)}
    files = [*raw.events, *([raw.labels] if raw.labels else [])]
    schema_text = json.dumps(schema_to_dict(schema), sort_keys=True, default=str)
    return {
        **{key: settings.get(key) for key in FINGERPRINT_KEYS},
        "split_label": source.split_label or (schema.labels[0].name if schema.labels else None),
        "inputs": [_file_identity(path) for path in files],
        "schema_sha256": hashlib.sha256(schema_text.encode()).hexdigest(),
        "num_shards": num_shards,
        "polars": pl.__version__,
    }


def _file_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _refuse_foreign(output: Path, fingerprint: dict[str, Any]) -> None:
    """Refuse a folder holding another run's shards, or a one-shot corpus, before writing anything."""
    # listed before the manifest is read: another rank writes files only after its manifest
    existing = [p for p in ("serialized", "enriched", "users", "corpus_summary.json") if (output / p).exists()]
    manifest = output / MANIFEST
    if manifest.exists():
        theirs = json.loads(manifest.read_text())
        differ = [key for key in fingerprint if theirs.get(key) != fingerprint[key]]
        if differ:
            raise Llm4esError(
                f"the folder holds shards of a different run (differs in {differ}); rerun with that run's "
                "settings to resume it, or give another --output_dir (or delete this one) to start over",
                file=output,
                key=differ[0],
            )
        return
    if existing:
        raise Llm4esError(
            f"the folder holds a corpus that was not built in shards ({', '.join(existing)}); give another "
            "--output_dir (or delete this one) to build a sharded corpus",
            file=output,
        )


def _claim(output: Path, fingerprint: dict[str, Any]) -> None:
    """Write the manifest atomically; another rank may have written the same one first."""
    if not claim(output / MANIFEST, json.dumps(fingerprint, indent=2)):
        _refuse_foreign(output, fingerprint)


def _remove_empty(output: Path) -> None:
    for folder in (output / "shards", output):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _stats_path(output: Path, shard: int, num_shards: int) -> Path:
    return output / "shards" / f"{shard_stem(shard, num_shards)}.json"


def _write_shard(
    source: SourceConfig,
    serialization: SerializationConfig,
    schema: EventSchema,
    tokenizer: Any,
    output: Path,
    staging: Path,
    shard: int,
    num_shards: int,
    labels: pl.DataFrame | None,
) -> None:
    """Build, serialize and split one shard's users; the stats file, written last, marks it done."""
    report = SourceReport(source=source.source)
    events = read_shard(staging, shard)
    counts: dict[str, int] = {}
    sample: list[int] = []
    summary = None
    if events is not None:
        shard_labels = labels.filter(pl.col(SHARD) == shard).drop(SHARD) if labels is not None else None
        report.files = sorted(events[FILE].unique().to_list())
        users = group_users(events, schema, report, shard_labels)
        del events
        texts = _serialize(serialization.serializer(schema, tokenizer), users)
        named = datasets.Dataset(texts, fingerprint=f"shard-{shard_stem(shard, num_shards)}")  # no hashing
        summary = summarize(named, schema, max_events=serialization.max_events)
        sample = _token_sample(texts, tokenizer)
        label = source.split_label or (schema.labels[0].name if schema.labels else None)
        ids = pl.from_arrow(texts.column("user_id"))
        test = held_out(ids, eligible_users(texts, label), test_size=source.test_size, seed=source.seed)
        columns = [c for c in CORPUS_COLUMNS + [lb.name for lb in schema.labels] if c in texts.column_names]
        for split, keep in (("train", ~test), ("test", test)):
            counts[split] = int(keep.sum())  # both files even when empty: every split exists, one schema throughout
            part = texts.filter(pa.array(keep))  # a mask copies the list columns ~1.7x faster than take()
            _write_parquet(part.select(columns), output / "serialized", split, shard, num_shards)
            _write_parquet(part, output / "users", split, shard, num_shards)
    stats = {
        "shard": shard,
        "source": report.to_dict(),
        "serialization": asdict(summary) if summary else None,
        "counts": counts,
        "token_sample": sample,
    }
    write_text_atomically(_stats_path(output, shard, num_shards), json.dumps(stats))


def _serialize(serializer: Serializer, users: pa.Table) -> pa.Table:
    """The users table with ``text`` (and counts) added, as ``Serializer.__call__`` adds them, per batch."""
    batches = [
        serializer.render_table(users.slice(start, SERIALIZE_BATCH))
        for start in range(0, users.num_rows, SERIALIZE_BATCH)
    ]
    rendered = pa.concat_tables(batches)
    for name in rendered.column_names:
        users = users.append_column(name, rendered.column(name))
    return users


def _write_parquet(table: pa.Table, folder: Path, split: str, shard: int, num_shards: int) -> None:
    """Write ``<split>-0000k-of-0000N.parquet`` atomically, so no reader sees half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / shard_name(split, shard, num_shards), lambda temporary: pq.write_table(table, temporary))


def _token_sample(texts: pa.Table, tokenizer: Any) -> list[int]:
    """Token lengths for the corpus percentiles: every user's ``n_tokens`` when the serializer
    counted them (a token budget), else the shard's first TOKEN_SAMPLE users (by id) tokenized."""
    if "n_tokens" in texts.column_names:
        return texts.column("n_tokens").to_pylist()
    if tokenizer is None or not len(texts):
        return []
    chosen = texts.column("text").slice(0, TOKEN_SAMPLE).to_pylist()
    return [len(ids) for ids in tokenizer(chosen, add_special_tokens=False)["input_ids"]]


def merge_stats(output: Path, num_shards: int) -> dict[str, Any]:
    """The corpus-wide report, serialization summary and split counts, from every shard's stats."""
    shards = [json.loads(_stats_path(output, k, num_shards).read_text()) for k in range(num_shards)]
    source = _sum_dicts([s["source"] for s in shards])
    source["source"] = shards[0]["source"]["source"]
    source["files"] = sorted({f for s in shards for f in s["source"]["files"]})
    summaries = [s["serialization"] for s in shards if s["serialization"]]
    serialization = _sum_dicts(summaries)
    lengths = np.array([n for s in shards for n in s["token_sample"]])
    percentiles = {f"p{q}": float(np.percentile(lengths, q)) for q in (5, 25, 50, 75, 95)} if len(lengths) else {}
    if len(lengths):
        percentiles["max"] = float(lengths.max())
    serialization["token_percentiles"] = percentiles
    summary = SerializeSummary(**serialization)
    counts = _sum_dicts([s["counts"] for s in shards])
    return {
        "source": source,
        "serialization": asdict(summary),
        "token_percentiles_users": int(len(lengths)),
        "counts": {"serialized": {split: counts.get(split, 0) for split in ("train", "test")}},
        "num_shards": num_shards,
    }


def _sum_dicts(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Sum numbers key by key, recursing into nested dicts (other values: the first one)."""
    out: dict[str, Any] = {}
    for item in items:
        for key, value in item.items():
            if isinstance(value, dict):
                out[key] = _sum_dicts([out.get(key, {}), value])
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = out.get(key, 0) + value
            else:
                out.setdefault(key, value)
    return out
