"""`llm4es enrich`: rewrite a seeded fraction of users' serialized texts with an LLM.

Reads what `llm4es serialize` saved (a Dataset or DatasetDict with ``user_id`` and ``text``, and
``schema.yaml`` beside it), enriches, and saves a Dataset with ``user_id, variant, text,
source_text, finish_reason`` (failures left out, counted). Every result is stored in SQLite as
soon as it is produced: ``kill -9`` loses nothing and a rerun skips what is done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from ..config import parse_config
from ..enrich import (
    VARIANTS,
    EnrichmentCache,
    GenerationConfig,
    enrich_records,
    pick_users,
)
from ..errors import Llm4esError
from ..schema import load_schema, save_schema


@dataclass
class EnrichConfig(GenerationConfig):
    """Options of `llm4es enrich`."""

    input: str | None = field(default=None, metadata={"help": "folder written by `llm4es serialize` (text, user_id)"})
    output: str | None = field(default=None, metadata={"help": "folder for the enriched Dataset"})
    schema: str | None = field(
        default=None, metadata={"help": "EventSchema YAML for the domain words (default: INPUT/schema.yaml)"}
    )
    variant: str = field(default="free", metadata={"help": f"prompt variant: one of {sorted(VARIANTS)}"})
    fraction: float = field(default=0.2, metadata={"help": "fraction of users to enrich, in [0, 1]"})
    split: str = field(default="train", metadata={"help": "split to read when INPUT is a DatasetDict"})
    seed: int = field(default=42, metadata={"help": "seed of the user draw and of sampling"})
    retry_failed: bool = field(default=False, metadata={"help": "try again the records stored as failed"})
    cache: str | None = field(default=None, metadata={"help": "SQLite cache (default: OUTPUT/enrich_cache.sqlite)"})
    no_progress: bool = field(default=False, metadata={"help": "no progress bar"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in VARIANTS:
            raise Llm4esError(f"unknown variant {self.variant!r}; known: {sorted(VARIANTS)}", key="variant")


def load_input(input_dir: str | Path, split: str) -> Any:
    """The Dataset of texts to enrich (one split of a DatasetDict)."""
    path = Path(input_dir)
    if not path.exists():
        raise Llm4esError("input folder not found", file=path)
    try:
        data = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as err:
        raise Llm4esError(f"not a saved datasets folder: {err}", file=path) from err
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise Llm4esError(f"no split {split!r}; splits: {sorted(data)}", file=path, key="split")
        data = data[split]
    for column in ("user_id", "text"):
        if column not in data.column_names:
            raise Llm4esError(f"no column {column!r}; columns: {data.column_names}", file=path, column=column)
    return data


def run(args: EnrichConfig) -> int:
    """Enrich, save the Dataset and the report, print the report."""
    sampling = args.sampling(args.seed)
    if not 0.0 <= args.fraction <= 1.0:
        raise Llm4esError(f"fraction must be in [0, 1], got {args.fraction}", key="fraction")
    schema_file = Path(args.schema) if args.schema else Path(args.input) / "schema.yaml"
    if not schema_file.exists():
        raise Llm4esError("schema not found; give --schema", file=schema_file)
    schema = load_schema(schema_file)
    data = load_input(args.input, args.split)
    chosen = data.select(pick_users(len(data), args.fraction, args.seed))
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    source_texts = list(chosen["text"])
    user_ids = list(chosen["user_id"])

    backend = args.make_backend()
    try:
        with EnrichmentCache(args.cache or output / "enrich_cache.sqlite") as cache:
            records, report = enrich_records(
                source_texts,
                args.variant,
                schema,
                backend,
                cache,
                sampling=sampling,
                max_retries=args.max_retries,
                keep_truncated=args.keep_truncated,
                retry_failed=args.retry_failed,
                progress=not args.no_progress,
            )
    finally:
        if hasattr(backend, "close"):
            backend.close()

    kept = [i for i, record in enumerate(records) if record.text is not None]
    features = datasets.Features(
        {
            "user_id": data.features["user_id"],
            "variant": datasets.Value("string"),
            "text": datasets.Value("string"),
            "source_text": datasets.Value("string"),
            "finish_reason": datasets.Value("string"),
        }
    )
    table = datasets.Dataset.from_dict(
        {
            "user_id": [user_ids[i] for i in kept],
            "variant": [args.variant] * len(kept),
            "text": [records[i].text for i in kept],
            "source_text": [source_texts[i] for i in kept],
            "finish_reason": [records[i].finish_reason for i in kept],
        },
        features=features,
    )
    table.save_to_disk(str(output))
    save_schema(schema, output / "schema.yaml")
    settings = {
        "input": str(args.input),
        "split": args.split,
        "variant": args.variant,
        "fraction": args.fraction,
        "users_selected": len(chosen),
        "generator": backend.name,
        "sampling": sampling.key_fields(),
        "max_retries": args.max_retries,
        "keep_truncated": args.keep_truncated,
    }
    (output / "enrich_report.json").write_text(json.dumps({"settings": settings, "report": report.to_dict()}, indent=2))
    print(f"users selected: {len(chosen):,} of {len(data):,} (fraction {args.fraction}, seed {args.seed})")
    for line in report.lines():
        print(line)
    print(f"saved {len(table):,} enriched texts to {output}")
    return 0


def main(argv: list[str]) -> int:
    (config,) = parse_config([EnrichConfig], argv, prog="llm4es enrich", description=__doc__)
    missing = [name for name in ("input", "output") if not getattr(config, name)]
    if missing:
        raise Llm4esError(f"--{missing[0]} is required", key=missing[0])
    return run(config)
