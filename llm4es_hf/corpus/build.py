"""Corpora: serialized and enriched texts as a Hub-ready DatasetDict with a dataset card.

A corpus folder holds two configs, each with the train/test user split, as Parquet:

- ``serialized``: one plain LLM4ES text per user;
- ``enriched``: the paper's training mix, i.e. every train user's plain text plus, for a
  seeded fraction of train users per enrichment variant, the text an instruct LLM wrote
  (test users keep their plain text only: evaluation embeds the plain serialization).

Beside them: ``README.md`` (the card, whose ``configs`` metadata lets
``load_dataset(folder_or_repo, "enriched")`` work), ``schema.yaml``, ``corpus_summary.json``
and, kept local and never published, ``users/`` (the event lists, for the baselines and
re-serialization), the enrichment cache and the user-id salt.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa

from ..artifacts import CONFIGS, CORPUS_COLUMNS, load_corpus_config
from ..cards import write_dataset_card
from ..enrich import VARIANTS, EnrichmentCache, GenerationConfig, build_messages, enrich_texts, pick_users
from ..errors import Llm4esError
from ..models import load_tokenizer
from ..schema import EventSchema, save_schema
from ..serialize import SerializationConfig, Serializer, SerializeSummary, summarize
from ..shards import shard_name
from ..sources import SourceConfig, SourceResult
from .sharded import MANIFEST, auto_num_shards, build_sharded, merge_stats

__all__ = ["CONFIGS", "CorpusConfig", "build_corpus", "load_corpus_config", "write_dataset_card"]
LOCAL_ONLY = ["users/*", "users/**", "enrich_cache.sqlite*", ".user_id_salt", "*.lock"]


@dataclass
class SerializedUsers:
    """Users of a source with their texts and split, and what was read and written on the way."""

    source: SourceResult
    splits: datasets.DatasetDict
    summary: SerializeSummary
    tokenizer: Any


def serialize_users(source: SourceConfig, serialization: SerializationConfig) -> SerializedUsers:
    """Read a source, serialize every user and split them: ``llm4es serialize`` and the corpus alike."""
    result = source.load()
    tokenizer = load_tokenizer(serialization.tokenizer) if serialization.tokenizer else None
    texts = serialization.serializer(result.schema, tokenizer)(result.users)
    summary = summarize(texts, result.schema, max_events=serialization.max_events, tokenizer=tokenizer)
    return SerializedUsers(result, source.split(texts, result.schema), summary, tokenizer)


@dataclass
class CorpusConfig(SourceConfig, SerializationConfig, GenerationConfig):
    """How to build a corpus (`llm4es corpus --recipe recipes/<dataset>/corpus.yaml`)."""

    output_dir: str | None = field(default=None, metadata={"help": "folder the corpus is written to"})
    enrich_variants: list[str] = field(
        default_factory=list, metadata={"help": "variant:fraction of train users, e.g. free:0.2 json:0.2"}
    )
    enrich_max_users: int | None = field(
        default=None, metadata={"help": "cap on enriched users per variant (CPU-sized runs)"}
    )
    enrich_max_tokens: int | None = field(
        default=None, metadata={"help": "token budget of the text given to the generator (latest events kept)"}
    )
    include_base_text: bool = field(default=True, metadata={"help": "enriched config also holds the plain texts"})
    push_to_hub: bool = field(default=False, metadata={"help": "publish the corpus when built (`llm4es corpus`)"})
    hub_repo_id: str | None = field(default=None, metadata={"help": "org/name of the Hub data set"})
    hub_private: bool = field(default=True, metadata={"help": "publish as a private data set"})
    hash_user_ids: bool = field(default=True, metadata={"help": "publish salted hashes instead of user ids"})
    num_shards: int | None = field(
        default=None,
        metadata={
            "help": "N > 1: read the raw files lazily, hash users into N shards and write "
            "serialized/<split>-0000k-of-0000N.parquet shard by shard (peak memory follows the shard size; "
            "ranks of accelerate launch/torchrun take disjoint shards; a rerun resumes); 1: in memory; "
            "default: shards of ~128 MB of raw input above 1 GB, else in memory"
        },
    )

    def variants(self) -> dict[str, float]:
        """Parse ``enrich_variants`` into {variant: fraction}, validating each entry."""
        out = {}
        for item in self.enrich_variants:
            name, sep, value = str(item).partition(":")
            if not sep:
                raise Llm4esError(f"expected variant:fraction, got {item!r}", key="enrich_variants")
            if name not in VARIANTS:
                raise Llm4esError(f"unknown variant {name!r}; known: {sorted(VARIANTS)}", key="enrich_variants")
            try:
                fraction = float(value)
            except ValueError as err:
                raise Llm4esError(f"fraction of {name!r} is not a number: {value!r}", key="enrich_variants") from err
            if not 0.0 <= fraction <= 1.0:
                raise Llm4esError(f"fraction of {name!r} must be in [0, 1], got {fraction}", key="enrich_variants")
            out[name] = fraction
        return out


def build_corpus(config: CorpusConfig) -> Path:
    """Serialize, enrich and write a corpus folder (see the module docstring); in shards when
    ``num_shards`` > 1 (``corpus.sharded``: the ``serialized`` config only)."""
    if not config.output_dir:
        raise Llm4esError("--output-dir is required", key="output_dir")
    variants = config.variants()  # validate before any work
    output = Path(config.output_dir)
    num_shards = config.num_shards if config.num_shards is not None else auto_num_shards(config)
    if num_shards != 1:
        if variants:
            raise Llm4esError(
                "enrichment runs on the one-shot path only: build a sharded corpus without --enrich_variants",
                key="enrich_variants",
            )
        if config.split_method not in (None, "hash"):
            raise Llm4esError(
                f"a corpus built in shards splits users by a hash of their id: split_method {config.split_method!r} "
                "needs --num_shards 1",
                key="split_method",
            )
        return _build_sharded(config, output, num_shards)
    if (output / MANIFEST).exists():
        raise Llm4esError(
            "the folder holds a corpus built in shards; rerun with its --num_shards to resume it, or give "
            "another --output_dir (or delete this one) to build it in one go",
            file=output,
        )
    output.mkdir(parents=True, exist_ok=True)

    serialized_users = serialize_users(config, config)
    source, users, summary = serialized_users.source, serialized_users.splits, serialized_users.summary
    tokenizer, schema = serialized_users.tokenizer, serialized_users.source.schema
    users.save_to_disk(str(output / "users"))
    save_schema(schema, output / "schema.yaml")

    label_columns = [lb.name for lb in schema.labels]
    serialized = datasets.DatasetDict(
        {
            split: ds.select_columns([c for c in CORPUS_COLUMNS + label_columns if c in ds.column_names])
            for split, ds in users.items()
        }
    )
    enrichment: dict[str, Any] = {}
    enriched_rows = {}
    if variants:
        enriched_rows, enrichment = _enrich(users["train"], schema, variants, config, tokenizer, output)
    enriched = _mix(serialized, enriched_rows, label_columns, include_base=config.include_base_text)

    for name, dataset_dict in (("serialized", serialized), ("enriched", enriched)):
        for split, ds in dataset_dict.items():
            folder = output / name
            folder.mkdir(exist_ok=True)
            ds.to_parquet(str(folder / shard_name(split, 0, 1)))

    counts = {
        name: {split: len(ds) for split, ds in dd.items()}
        for name, dd in (("serialized", serialized), ("enriched", enriched))
    }
    info = {
        "config": asdict(config),
        "source": source.report.to_dict(),
        "serialization": asdict(summary),
        "enrichment": enrichment,
        "counts": counts,
        "enriched_variants": {split: _variant_counts(ds) for split, ds in enriched.items()},
    }
    (output / "corpus_summary.json").write_text(json.dumps(info, indent=2, default=str))
    write_dataset_card(output, schema, info, CONFIGS)
    return output


def _build_sharded(config: CorpusConfig, output: Path, num_shards: int) -> Path:
    """This rank's shards; the summary and card once every shard of the folder is finished."""
    tokenizer = load_tokenizer(config.tokenizer) if config.tokenizer else None
    built = build_sharded(config, config, output, num_shards, tokenizer)
    save_schema(built.schema, output / "schema.yaml")
    if not built.complete:
        print(f"{len(built.done)} of {num_shards} shards done; the other ranks write the rest")
        return output
    info = {"config": asdict(config), **merge_stats(output, num_shards), "enrichment": {}, "enriched_variants": {}}
    temporary = output / f".corpus_summary.{os.getpid()}.json"
    temporary.write_text(json.dumps(info, indent=2, default=str))
    temporary.replace(output / "corpus_summary.json")
    write_dataset_card(output, built.schema, info, configs=("serialized",))
    return output


def _variant_counts(ds: datasets.Dataset) -> dict[str, int]:
    names, counts = np.unique(np.asarray(ds["variant"]), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts, strict=True)}


def _enrich(
    train: datasets.Dataset,
    schema: EventSchema,
    variants: dict[str, float],
    config: CorpusConfig,
    tokenizer: Any,
    output: Path,
) -> tuple[dict[str, datasets.Dataset], dict[str, Any]]:
    """Enrich a seeded sample of train users per variant; failed records are left out and reported."""
    backend = config.make_backend()
    sampling = config.sampling(config.seed)
    cache = EnrichmentCache(output / "enrich_cache.sqlite")
    inputs = train
    if config.enrich_max_tokens:
        inputs = Serializer(
            schema,
            config.format,
            max_events=config.max_events,
            max_tokens=config.enrich_max_tokens,
            tokenizer=tokenizer,
        )(train, desc="Serializing (generator input)")
    rows, reports = {}, {}
    for offset, (variant, fraction) in enumerate(variants.items()):
        if config.enrich_max_users is not None:
            fraction = min(fraction, config.enrich_max_users / max(len(train), 1))
        picked = pick_users(len(train), fraction, config.seed + offset)  # another sample per variant
        n = len(picked)
        chosen = inputs.select(picked)
        outputs, report = enrich_texts(
            list(chosen["text"]),
            variant,
            schema,
            backend,
            cache,
            sampling=sampling,
            max_retries=config.max_retries,
            keep_truncated=config.keep_truncated,
        )
        keep = [i for i, text in enumerate(outputs) if text is not None]
        if keep:  # datasets 5 cannot add a column to an empty selection ("tables don't have the same number of rows")
            rows[variant] = (
                train.select(picked[keep]).remove_columns("text").add_column("text", [outputs[i] for i in keep])
            )
        reports[variant] = {"users": n, **asdict(report)}
        for line in report.lines():
            print(f"[{variant}] {line}")
    return rows, {
        "generator": backend.name,
        "backend": config.backend,
        "sampling": asdict(sampling),
        "variants": reports,
        "prompts": _prompt_texts(schema, variants),
    }


def _prompt_texts(schema: EventSchema, variants: dict[str, float]) -> dict[str, list[dict]]:
    return {name: build_messages("<serialized user text>", name, schema) for name in variants}


def _mix(
    serialized: datasets.DatasetDict,
    enriched_rows: dict[str, datasets.Dataset],
    label_columns: list[str],
    *,
    include_base: bool,
) -> datasets.DatasetDict:
    """The enriched config: base texts (variant 'base') plus each variant's enriched texts (train only)."""
    columns = ["user_id", "variant", "text"] + label_columns
    out = {}
    for split, base in serialized.items():
        parts = []
        if include_base or split != "train" or not enriched_rows:
            parts.append(_with_variant(base, "base").select_columns(columns))
        if split == "train":
            for variant, ds in enriched_rows.items():
                parts.append(_with_variant(ds, variant).select_columns(columns))
        out[split] = datasets.concatenate_datasets([p.cast(parts[0].features) for p in parts])
    return datasets.DatasetDict(out)


def _with_variant(ds: datasets.Dataset, variant: str) -> datasets.Dataset:
    """``ds`` with a constant ``variant`` column (``add_column`` fails on an empty split in datasets 5)."""
    table = ds.with_format("arrow")[:]
    return datasets.Dataset(table.append_column("variant", pa.array([variant] * len(ds), pa.string())))
