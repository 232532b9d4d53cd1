"""Raw event tables -> a users Dataset (one row per user, one list column per field).

Every source reads its files into a flat polars frame of strings, then hands it
here. Validation is vectorized: values are cast with ``strict=False`` and the
rows where a non-empty value failed to cast are reported by file line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import numpy as np
import polars as pl
import pyarrow as pa

from ..artifacts import FILE, NA_VALUES, ROW, read_table, require_columns
from ..errors import Llm4esError
from ..schema import EventSchema, TimeSpec

__all__ = [
    "FILE",
    "ROW",
    "SourceReport",
    "build_users",
    "eligible_users",
    "group_users",
    "read_table",
    "require_columns",
    "parse_time",
    "require_rows",
    "split_users",
    "stable_hash",
    "held_out",
]
EVENT_TIME = "event_time"
SECONDS_PER_DAY = 86400.0


@dataclass
class SourceReport:
    """What a source read, and every row or value it dropped or repaired, by reason."""

    source: str
    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    dropped_rows: dict[str, int] = field(default_factory=dict)
    missing_values: dict[str, int] = field(default_factory=dict)
    duplicate_events: int = 0
    users: int = 0
    events: int = 0
    users_without_events: int = 0
    unlabeled_users: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, count: int) -> None:
        if count:
            self.dropped_rows[reason] = self.dropped_rows.get(reason, 0) + int(count)

    def to_dict(self) -> dict:
        return asdict(self)


def require_rows(events: pl.DataFrame, files: Sequence[Path]) -> None:
    """Fail naming the files when the events hold no row at all (header-only files)."""
    if not len(events):
        names = ", ".join(map(str, files))
        what = "the file has" if len(files) == 1 else "the files have"
        raise Llm4esError(f"{what} a header line but no rows: there are no events to read", file=names, row=1)


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    """Empty strings and the usual NA spellings (NA_VALUES) become missing values."""
    stripped = expr.str.strip_chars()
    return pl.when(stripped.is_in(NA_VALUES)).then(None).otherwise(stripped)


def parse_time(expr: pl.Expr, spec: TimeSpec) -> pl.Expr:
    """Raw time strings -> seconds since epoch (float; null where a value does not parse)."""
    if spec.parse == "unix_seconds":
        return expr.cast(pl.Float64, strict=False)
    if spec.parse == "unix_days":
        return expr.cast(pl.Float64, strict=False) * SECONDS_PER_DAY
    if spec.parse == "day_time":
        parts = expr.str.extract_groups(r"^(-?\d+)\s+(\d{1,2}):(\d{2}):(\d{2})$")
        seconds = parts.struct.field("4").cast(pl.Float64).clip(upper_bound=59.0)
        return (
            parts.struct.field("1").cast(pl.Float64) * SECONDS_PER_DAY
            + parts.struct.field("2").cast(pl.Float64) * 3600
            + parts.struct.field("3").cast(pl.Float64) * 60
            + seconds
        )
    parsed = expr.str.strptime(pl.Datetime("us"), spec.format, strict=False)
    return parsed.dt.epoch("us").cast(pl.Float64) / 1e6


def _handle_bad(
    frame: pl.DataFrame,
    bad: pl.Series,
    value_column: str,
    file_column: str,
    reason: str,
    schema: EventSchema,
    report: SourceReport,
) -> pl.DataFrame:
    """Raise on the first bad row (policy 'error') or drop the bad rows and count them."""
    count = int(bad.sum())
    if not count:
        return frame
    if schema.bad_rows == "error":
        first = frame.filter(bad).row(0, named=True)
        raise Llm4esError(
            f"{reason}: {first[value_column]!r} ({count} such rows; set `bad_rows: drop` in the schema to drop "
            "and count them instead)",
            file=first[FILE],
            row=first[ROW],
            column=file_column,
        )
    report.drop(f"{reason} ({file_column})", count)
    return frame.filter(~bad)


def build_users(
    events: pl.DataFrame,
    schema: EventSchema,
    report: SourceReport,
    labels: pl.DataFrame | None = None,
) -> datasets.Dataset:
    """Validate a raw events frame against the schema and group it into one row per user.

    ``labels``, when given, holds the schema's user id column and label columns (one
    row per user); otherwise label columns are read from the events (first value per user).
    """
    return datasets.Dataset(group_users(events, schema, report, labels))


def group_users(
    events: pl.DataFrame,
    schema: EventSchema,
    report: SourceReport,
    labels: pl.DataFrame | None = None,
) -> pa.Table:
    """``build_users`` as an Arrow table (a Dataset fingerprints its table, seconds per million events)."""
    where = ", ".join(sorted(set(events[FILE].unique().to_list()))) if len(events) else "events"
    field_specs = [f for f in schema.fields if f.name != EVENT_TIME]
    label_source = labels if labels is not None else events
    require_columns(events, [schema.user_id, schema.time.column] + [f.source_column for f in field_specs], where)
    if schema.labels:
        label_where = (
            ", ".join(sorted(set(labels[FILE].unique().to_list())))
            if labels is not None and FILE in labels.columns
            else where
        )
        require_columns(label_source, [schema.user_id] + [lb.source_column for lb in schema.labels], label_where)
    report.rows_read += len(events)

    frame = events.select(
        _blank_to_null(pl.col(schema.user_id)).alias("user_id"),
        pl.col(schema.time.column).alias("__time_raw"),
        *[_blank_to_null(pl.col(f.source_column)).alias(f.name) for f in field_specs],
        pl.col(ROW),
        pl.col(FILE),
    )
    missing_id = frame["user_id"].is_null()
    report.drop(f"missing user id ({schema.user_id})", int(missing_id.sum()))
    frame = frame.filter(~missing_id)

    frame = frame.with_columns(parse_time(_blank_to_null(pl.col("__time_raw")), schema.time).alias(EVENT_TIME))
    bad_time = frame[EVENT_TIME].is_null() | frame[EVENT_TIME].is_nan()
    frame = _handle_bad(frame, bad_time, "__time_raw", schema.time.column, "unparsable timestamp", schema, report)
    frame = frame.drop("__time_raw")

    casts = []
    for spec in field_specs:
        if spec.kind in ("number", "date"):
            casts.append(pl.col(spec.name).cast(pl.Float64, strict=False).alias(f"__num_{spec.name}"))
    if casts:
        frame = frame.with_columns(casts)
        for spec in field_specs:
            if spec.kind in ("number", "date"):
                num = f"__num_{spec.name}"
                bad = frame[spec.name].is_not_null() & (frame[num].is_null() | frame[num].is_nan())
                frame = _handle_bad(frame, bad, spec.name, spec.source_column, "not a number", schema, report)
        frame = frame.drop([spec.name for spec in field_specs if spec.kind in ("number", "date")])
        frame = frame.rename({f"__num_{s.name}": s.name for s in field_specs if s.kind in ("number", "date")})

    for spec in field_specs:
        missing = int(frame[spec.name].null_count())
        if missing:
            report.missing_values[spec.name] = report.missing_values.get(spec.name, 0) + missing

    value_columns = ["user_id", EVENT_TIME] + [f.name for f in field_specs]
    duplicated = ~frame.select(pl.struct(value_columns).is_first_distinct()).to_series()
    report.duplicate_events += int(duplicated.sum())
    if schema.duplicates == "drop":
        report.drop("duplicate event", int(duplicated.sum()))
        frame = frame.filter(~duplicated)

    # users sorted by id, each user's events by time (ties in file order): sorting within the groups
    # gathers every column once, where sorting the whole frame first gathered it twice
    event_columns = [EVENT_TIME] + [f.name for f in field_specs]
    users = (
        frame.group_by("user_id")
        .agg(pl.col(event_columns).sort_by(EVENT_TIME, maintain_order=True))
        .sort("user_id", maintain_order=True)
    )
    users = users.with_columns(pl.col(EVENT_TIME).list.len().alias("n_events"))

    if schema.labels:
        label_frame = label_source.select(
            _blank_to_null(pl.col(schema.user_id)).alias("user_id"),
            *[_blank_to_null(pl.col(lb.source_column)).alias(lb.name) for lb in schema.labels],
        ).filter(pl.col("user_id").is_not_null())
        label_frame = label_frame.unique("user_id", keep="first", maintain_order=True)
        without_events = label_frame.join(users.select("user_id"), on="user_id", how="anti")
        report.users_without_events += len(without_events)
        users = users.join(label_frame, on="user_id", how="left", maintain_order="left")
        for lb in schema.labels:
            report.unlabeled_users[lb.name] = int(users[lb.name].null_count())

    report.users = len(users)
    report.events = int(users["n_events"].sum()) if len(users) else 0
    if not len(users):
        raise Llm4esError("no user has any valid event", file=where)
    return users.to_arrow()


def stable_hash(values: pl.Series, seed: int = 0) -> np.ndarray:
    """A 64-bit hash of each string, the same on every machine and library version.

    FNV-1a over the UTF-8 bytes, seeded, then the splitmix64 finalizer so every bit mixes;
    vectorized over the values (one numpy step per byte position). polars' own ``hash`` is
    faster but may change between polars versions, so it serves only within one run.
    """
    strings = values.cast(pl.Utf8).fill_null("").to_arrow().cast(pa.large_string())
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    n = len(strings)
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int64)[strings.offset : strings.offset + n + 1]
    data = np.frombuffer(strings.buffers()[2], dtype=np.uint8) if strings.buffers()[2] else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    hashed = np.full(n, _splitmix64(np.array([_FNV_OFFSET ^ seed], dtype=np.uint64))[0], dtype=np.uint64)
    live = np.flatnonzero(lengths > 0)
    for position in range(int(lengths.max()) if n else 0):
        live = live[lengths[live] > position]
        hashed[live] = (hashed[live] ^ data[starts[live] + position]) * _FNV_PRIME
    return _splitmix64(hashed)


_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def held_out(user_ids: pl.Series, eligible: np.ndarray, *, test_size: float, seed: int) -> np.ndarray:
    """Which users are held out: each eligible user on its own, by a seeded hash of its id.

    A user's split depends only on its id, the seed and ``test_size``, never on the other
    users, so a corpus built shard by shard, on any number of machines, splits exactly as
    one built in memory; about ``test_size`` of the eligible users are held out.
    """
    if not 0.0 < test_size < 1.0:
        raise Llm4esError(f"test_size must be in (0, 1), got {test_size}", key="test_size")
    uniform = (stable_hash(user_ids, seed) >> np.uint64(11)).astype(np.float64) / float(2**53)
    return np.asarray(eligible, dtype=bool) & (uniform < test_size)


def eligible_users(users: datasets.Dataset | pa.Table, label: str | None) -> np.ndarray:
    """Users that may be held out: those with a ``label`` value (all users without a label)."""
    if label is None:
        return np.ones(len(users), dtype=bool)
    column = users.with_format("arrow")[label] if isinstance(users, datasets.Dataset) else users.column(label)
    return pl.from_arrow(column).is_not_null().to_numpy()


SPLIT_METHODS = ("shuffle", "hash")


def split_users(
    users: datasets.Dataset,
    *,
    test_size: float = 0.1,
    seed: int = 42,
    label: str | None = None,
    method: str = "shuffle",
) -> datasets.DatasetDict:
    """Split users into train/test, seeded; the test users are drawn among labeled users.

    ``shuffle`` holds out exactly ``round(test_size * n)`` users of a seeded permutation of the
    eligible ids (the split every recorded figure was measured on); ``hash`` decides each user
    on its own by a seeded hash of its id (``held_out``), so shards built apart split alike
    (sharded corpora use it). Unlabeled users (when ``label`` is given) all go to train: they
    still serve fine-tuning, while evaluation needs labels on the held-out users. At least one
    user is held out.
    """
    if method not in SPLIT_METHODS:
        raise Llm4esError(f"unknown split method {method!r}; choose one of {list(SPLIT_METHODS)}", key="split_method")
    if not 0.0 < test_size < 1.0:
        raise Llm4esError(f"test_size must be in (0, 1), got {test_size}", key="test_size")
    eligible = eligible_users(users, label)
    if method == "hash":
        ids = pl.Series(users["user_id"], dtype=pl.Utf8)
        test_mask = held_out(ids, eligible, test_size=test_size, seed=seed)
        if not test_mask.any() and eligible.any():
            hashes = np.where(eligible, stable_hash(ids, seed), np.iinfo(np.uint64).max)
            test_mask[int(np.argmin(hashes))] = True
    else:
        ids = np.asarray(users["user_id"])
        candidates = np.flatnonzero(eligible)
        order = candidates[np.argsort(ids[candidates], kind="stable")]
        shuffled = np.random.default_rng(seed).permutation(order)
        test_mask = np.zeros(len(ids), dtype=bool)
        test_mask[shuffled[: max(1, int(round(len(candidates) * test_size)))]] = True
    return datasets.DatasetDict(
        train=users.select(np.flatnonzero(~test_mask)), test=users.select(np.flatnonzero(test_mask))
    )
