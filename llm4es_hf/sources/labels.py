"""A labels file checked against the events' users before any long stage runs.

Evaluation needs labeled users in every class of every fold; a labels file whose ids are spelled
otherwise than the events' ("00123" vs "123"), a target with one class or a class smaller than the
folds fail only at the end of a run. ``check_labels`` says so at the start, with the counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..errors import Llm4esError
from .base import FILE, ROW, _blank_to_null, read_table

MIN_MATCH = 0.05  # fewer of the events' users labeled than this share: the ids are likely spelled otherwise


@dataclass
class LabelCheck:
    """What a labels file holds for a target, over the events' users."""

    target: str
    event_users: int
    labeled: int  # users of the labels file with a target value
    matched: int  # of those, users of the events
    classes: dict[str, int]  # class -> matched users

    def line(self) -> str:
        counts = ", ".join(f"{k}: {v:,}" for k, v in self.classes.items())
        return (
            f"labels: {self.matched:,} of the {self.event_users:,} users have a {self.target!r} label "
            f"({len(self.classes)} classes: {counts})"
        )


def check_labels(
    user_ids: Iterable[str] | pl.Series,
    labels: str | Path | pl.DataFrame,
    target: str,
    *,
    user_id: str = "user_id",
    folds: int = 5,
    test_size: float = 0.1,
    min_match: float = MIN_MATCH,
) -> LabelCheck:
    """Check that ``labels`` (a file or a read table with ``user_id`` and ``target`` columns) labels
    enough of the events' users (``user_ids``) in at least two classes, each large enough for
    ``folds`` stratified folds after ``test_size`` of the users are held out."""
    frame = read_table(labels) if isinstance(labels, str | Path) else labels
    where = str(labels) if isinstance(labels, str | Path) else _source(frame)
    present = [c for c in frame.columns if c not in (ROW, FILE)]
    for column, what in ((user_id, "the user id"), (target, "the target")):
        if column not in present:
            raise Llm4esError(f"no column for {what}; the file has {present}", file=where, column=column)
    table = (
        frame.select(
            _blank_to_null(pl.col(user_id).cast(pl.Utf8)).alias("id"), _blank_to_null(pl.col(target)).alias("y")
        )
        .drop_nulls()
        .unique("id", keep="first", maintain_order=True)
    )
    events = pl.Series("id", list(user_ids) if not isinstance(user_ids, pl.Series) else user_ids).cast(pl.Utf8)
    events = events.drop_nulls().unique()
    if not len(table):
        raise Llm4esError(f"no user has a {target!r} value", file=where, column=target)
    matched = table.filter(pl.col("id").is_in(events.implode()))
    if len(matched) < max(1, min_match * len(events)):
        theirs = ", ".join(repr(v) for v in table["id"].head(3))
        ours = ", ".join(repr(v) for v in events.sort().head(3))
        raise Llm4esError(
            f"only {len(matched):,} of the {len(table):,} labeled users are among the {len(events):,} users of the "
            f"events ({len(matched) / max(len(events), 1):.1%}; ids here: {theirs}; in the events: {ours}): are the "
            "ids spelled the same way (leading zeros, prefixes, another id column)?",
            file=where,
            column=user_id,
        )
    counts = matched.group_by("y").agg(pl.len().alias("n")).sort(["n", "y"], descending=[True, False])
    classes = dict(zip(counts["y"].to_list(), counts["n"].to_list(), strict=True))
    if len(classes) < 2:
        raise Llm4esError(
            f"the {len(matched):,} labeled users all have one {target!r} class ({next(iter(classes))!r}): "
            "nothing to predict",
            file=where,
            column=target,
        )
    need = math.ceil(folds / (1.0 - test_size))  # every class in every fold after the test users are held out
    if len(matched) < need * len(classes):
        raise Llm4esError(
            f"{len(matched):,} labeled users are too few for {folds} folds over {len(classes)} classes with "
            f"{test_size:.0%} held out (need at least {need * len(classes):,})",
            file=where,
            column=target,
        )
    small = {k: v for k, v in classes.items() if v < need}
    if small:
        name, count = min(small.items(), key=lambda kv: kv[1])
        raise Llm4esError(
            f"class {name!r} of {target!r} has {count:,} labeled users, fewer than {folds} folds with "
            f"{test_size:.0%} held out need ({need} per class); merge rare classes or lower the folds",
            file=where,
            column=target,
        )
    return LabelCheck(target, len(events), len(table), len(matched), classes)


def _source(frame: pl.DataFrame) -> str | None:
    if FILE in frame.columns and len(frame):
        return ", ".join(sorted(set(frame[FILE].to_list())))
    return None
