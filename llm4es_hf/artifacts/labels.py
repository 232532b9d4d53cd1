"""Labels: from a corpus folder or a user table, one row per user (``load_labels``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ..errors import Llm4esError
from .corpora import load_corpus_users
from .tables import FILE, ROW, read_table


@dataclass
class Labels:
    """User-level labels: ``frame`` (``user_id`` + one string column per label) and, from a
    corpus, the train/test split, the tasks and positive classes of the schema, and the
    corpus folder (for the baselines)."""

    frame: pl.DataFrame
    source: str
    split: dict[str, str] | None = None
    tasks: dict[str, str] = field(default_factory=dict)
    positives: dict[str, str] = field(default_factory=dict)
    corpus: Path | None = None

    @property
    def columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != "user_id"]


def load_labels(source: str | Path) -> Labels:
    """Labels from a corpus folder (its ``users/`` train/test split and schema) or from a
    CSV/Parquet table with ``user_id`` and label columns (every other column is a label)."""
    source = Path(source)
    if not source.exists():
        raise Llm4esError("labels not found (give a corpus folder or a CSV/Parquet table)", file=source)
    if source.is_dir():
        return _corpus_labels(source)
    frame = read_table(source).drop(ROW, FILE)
    if "user_id" not in frame.columns:
        raise Llm4esError(f"no user_id column; the file has {frame.columns}", file=source, column="user_id")
    missing = ["", "nan", "NaN", "NA", "N/A", "null", "NULL", "None"]
    frame = frame.select(
        pl.when(pl.col(c).str.strip_chars().is_in(missing)).then(None).otherwise(pl.col(c).str.strip_chars()).alias(c)
        for c in frame.columns
    ).drop_nulls("user_id")
    _check_unique_ids(frame["user_id"], source)
    return Labels(frame=frame, source=str(source))


def _corpus_labels(folder: Path) -> Labels:
    users, schema = load_corpus_users(folder)
    names = [label.name for label in schema.labels]
    if not names:
        raise Llm4esError("the corpus schema declares no labels", file=folder / "schema.yaml", key="labels")
    frames, split = [], {}
    for split_name, ds in users.items():
        present = [n for n in names if n in ds.column_names]
        table = pl.from_arrow(ds.select_columns(["user_id", *present]).with_format("arrow")[:])
        table = table.with_columns(pl.all().cast(pl.Utf8))
        frames.append(table)
        split.update(dict.fromkeys(table["user_id"].to_list(), split_name))
    frame = pl.concat(frames, how="diagonal")
    _check_unique_ids(frame["user_id"], folder)
    return Labels(
        frame=frame,
        source=str(folder),
        split=split,
        tasks={label.name: label.task for label in schema.labels},
        positives={label.name: label.positive for label in schema.labels if label.positive is not None},
        corpus=folder,
    )


def _check_unique_ids(ids: pl.Series, where: Path) -> None:
    duplicated = ids.is_duplicated()
    if duplicated.any():
        first = int(duplicated.arg_max())
        raise Llm4esError(f"user id {ids[first]!r} appears more than once", file=where, row=first, column="user_id")
