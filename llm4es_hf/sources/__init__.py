"""Sources: raw event files -> a users Dataset (one row per user, one list per field).

``load_source(name, ...)`` is the one entry point; each built-in data set is a
schema (``llm4es_hf/schemas/<name>.yaml``) plus a reader of its raw files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import datasets
import polars as pl

from ..errors import Llm4esError
from ..schema import EventSchema, load_schema
from .bank import BANK_DATASETS, read_bank
from .base import (
    SourceReport,
    build_users,
    eligible_users,
    group_users,
    held_out,
    read_table,
    require_rows,
    split_users,
    stable_hash,
)
from .labels import LabelCheck, check_labels
from .movielens import read_movielens
from .stream import FILE_SOURCES, check_same_columns, event_user_ids, input_files, raw_files, user_rows
from .synthetic import generate_rosbank

SOURCES = ("movielens", "rosbank", "gender", "age", "synthetic", "csv", "parquet")


@dataclass
class SourceConfig:
    """Where the events come from and how users are split (``llm4es serialize``, corpus recipes)."""

    source: str = field(default="movielens", metadata={"help": f"where the events come from: one of {list(SOURCES)}"})
    input: str | None = field(
        default=None,
        metadata={"help": "raw file, folder or glob of files (csv/parquet), or folder (ml-1m, rosbank, gender, age)"},
    )
    schema: str | None = field(
        default=None,
        metadata={"help": "EventSchema YAML or built-in name, e.g. movielens_compact (required for csv/parquet)"},
    )
    labels: str | None = field(default=None, metadata={"help": "csv/parquet: a user table with the label columns"})
    synthetic_users: int = field(default=1000, metadata={"help": "synthetic: number of users"})
    synthetic_events: float = field(default=50.0, metadata={"help": "synthetic: mean events per user"})
    seed: int = field(default=42, metadata={"help": "seed of the synthetic data, the split (and enrichment)"})
    test_size: float = field(default=0.1, metadata={"help": "fraction of (labeled) users held out"})
    split_label: str | None = field(
        default=None, metadata={"help": "draw test users among users with this label (default: the first)"}
    )
    split_method: str | None = field(
        default=None,
        metadata={
            "help": "shuffle (default in memory): exactly test_size of a seeded permutation; hash (sharded corpora): "
            "each user by a seeded hash of its id; pass hash to an in-memory build to get a sharded build's split"
        },
    )

    def load(self) -> SourceResult:
        """Read the configured source (``load_source``)."""
        return load_source(
            self.source,
            input=self.input,
            schema=self.schema,
            labels=self.labels,
            synthetic_users=self.synthetic_users,
            synthetic_events_per_user=self.synthetic_events,
            seed=self.seed,
        )

    def event_files(self, schema: EventSchema) -> list[Path] | None:
        """The raw events files of a file source (csv, parquet, a bank data set's folder), for lazy reads
        (``event_user_ids``, ``user_rows``); None for the bundled and generated sources."""
        if self.source not in FILE_SOURCES:
            return None
        return raw_files(self.source, self.input, self.labels, schema).events

    def split(self, texts: datasets.Dataset, schema: EventSchema) -> datasets.DatasetDict:
        """The seeded train/test split of users (test users drawn among labeled ones)."""
        label = self.split_label or (schema.labels[0].name if schema.labels else None)
        return split_users(
            texts, test_size=self.test_size, seed=self.seed, label=label, method=self.split_method or "shuffle"
        )


@dataclass
class SourceResult:
    """A users Dataset with the schema that describes it and the report of what was read."""

    users: datasets.Dataset
    schema: EventSchema
    report: SourceReport


def load_source(
    name: str,
    *,
    input: str | Path | None = None,
    schema: str | Path | EventSchema | None = None,
    labels: str | Path | None = None,
    synthetic_users: int = 1000,
    synthetic_events_per_user: float = 50.0,
    seed: int = 42,
) -> SourceResult:
    """Read a source into a users Dataset.

    - ``movielens``: bundled ml-100k, or ``input`` = a GroupLens ml-1m folder.
    - ``rosbank`` / ``gender`` / ``age``: the Hub data set, or ``input`` = a local folder.
    - ``synthetic``: generated Rosbank-format transactions with a planted churn signal.
    - ``csv`` / ``parquet``: ``input`` = an events file, ``schema`` required, ``labels``
      an optional user table (else labels are read from the events file).
    """
    event_schema = source_schema(name, schema)
    report = SourceReport(source=name)
    events, label_frame = _read(name, event_schema, input, labels, synthetic_users, synthetic_events_per_user, seed)
    if "__file" in events.columns:
        report.files = sorted(set(events["__file"].unique().to_list()))
    if label_frame is not None and "__file" in label_frame.columns:
        report.files += sorted(set(label_frame["__file"].unique().to_list()))
    users = build_users(events, event_schema, report, label_frame)
    return SourceResult(users=users, schema=event_schema, report=report)


def source_schema(name: str, schema: str | Path | EventSchema | None) -> EventSchema:
    """The EventSchema of a source: the one given (object, file or built-in name), else the built-in one."""
    if name not in SOURCES:
        raise Llm4esError(f"unknown source {name!r}; choose one of {list(SOURCES)}", key="source")
    if isinstance(schema, EventSchema):
        return schema
    if schema is not None:
        return load_schema(schema)
    if name in ("csv", "parquet"):
        raise Llm4esError(f"source {name!r} needs --schema FILE describing the columns", key="schema")
    return load_schema("rosbank" if name == "synthetic" else name)


def _read(
    name: str,
    schema: EventSchema,
    input: str | Path | None,
    labels: str | Path | None,
    synthetic_users: int,
    synthetic_events_per_user: float,
    seed: int,
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    if name == "movielens":
        return read_movielens(input)
    if name in BANK_DATASETS:
        return read_bank(name, schema, input)
    if name == "synthetic":
        frame = generate_rosbank(synthetic_users, synthetic_events_per_user, seed=seed)
        frame = frame.with_row_index("__line", offset=2).with_columns(pl.lit("<synthetic>").alias("__file"))
        return frame, None
    if input is None:
        raise Llm4esError(f"source {name!r} needs --input FILE", key="input")
    files = input_files(input)
    check_same_columns(files, schema.encoding)
    frames = [read_table(path, encoding=schema.encoding) for path in files]
    events = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    require_rows(events, files)
    return events, read_table(labels, encoding=schema.encoding) if labels else None


__all__ = [
    "SOURCES",
    "LabelCheck",
    "SourceConfig",
    "SourceReport",
    "SourceResult",
    "build_users",
    "check_labels",
    "eligible_users",
    "event_user_ids",
    "group_users",
    "held_out",
    "load_source",
    "read_table",
    "source_schema",
    "split_users",
    "stable_hash",
    "user_rows",
]
