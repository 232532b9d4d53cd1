"""Propose an EventSchema from a sample of raw events (``llm4es schema infer``), no LLM needed.

A bounded sample (the first ``rows`` rows of a CSV or Parquet file, folder or glob) is read as
strings, as the sources read it; each column is then described by vectorized polars statistics
(distinct values, how many values are numbers, integers, dates in each known pattern, e-mails,
phone or card numbers) and given a role:

- the user id: a column whose values repeat (users have several events) and whose name says so;
- the time: the column that parses as dates (ISO, other ``strptime`` patterns, "<day> HH:MM:SS")
  or, by name, as unix seconds or days; a clock time beats a date, a finer column a coarser one;
- a label: a column constant within each user with a target-like name, or a column of ``--labels``;
- sensitive: e-mails, phone and card numbers, left out of the text and never published;
- a field: category (few distinct values or codes; MCC-like codes get ``codes_from: iso18245``),
  number (with its formatter) or text.

Where two columns fit a role equally well it stops and names the flag that settles it.

Long because the column statistics, the role rules and the commented-YAML writer all read one
``ColumnStats`` per column, and the rules are one decision read top to bottom; split across
modules, each would reach back into the others.
"""

from __future__ import annotations

import gzip
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from .artifacts import FILE, ROW, csv_error, read_table
from .errors import Llm4esError
from .schema import EventSchema, TimeSpec, package_codes, schema_from_dict
from .serialize import EVENT_TIME, Serializer
from .sources.base import SourceReport, _blank_to_null, group_users, parse_time, require_rows
from .sources.stream import check_same_columns, input_files

SAMPLE_ROWS = 50_000
MAX_CLASSES = 50  # a label column with more distinct values is not a class label
MATCH = 0.9  # share of a column's values that must look like an e-mail, phone or card number
PARSE = 0.95  # share of a column's values that must parse as times
STRPTIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f%#z",  # with an offset: Z, +03:00 or +0300
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%d%b%y:%H:%M:%S",
    "%d%b%Y:%H:%M:%S",
    "%d-%b-%Y",
    "%d %b %Y",
    "%Y%m%d%H%M%S",
    "%Y%m%d",
)
DIGIT_FORMATS = ("%Y%m%d%H%M%S", "%Y%m%d")  # the patterns a plain number can match
TIME_PARSE_FLAGS = ("unix_seconds", "unix_days", "day_time")
YEAR_1900 = -2_208_988_800  # seconds since epoch
DAY_TIME = r"^-?\d+\s+\d{1,2}:\d{2}:\d{2}$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
PHONE_CHARS = r"^\+?[\d\s().-]+$"
CARD = r"^\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{1,7}$"
MASKED_CARD = r"^\d{4,6}[ -]?[*xX•]{2,6}[ -]?[*xX•\d]{0,4}[ -]?\d{4}$"
USER_WORDS = r"user|client|customer|cust|account|acct|member|person|visitor|viewer|subscriber|uid|cl_id|holder|buyer"
ID_WORDS = r"(^|[_\s-])id$|^id([_\s-]|$)|[a-z]Id$|ID$"
TIME_WORDS = r"time|date|day|(^|_)ts$|(^|_)dt$|stamp|when|moment|(^|_)at$"
TARGET_WORDS = r"target|label|flag|churn|class|bins|gender|sex|(^|_)age($|_)|(^|_)y$|default|fraud|outcome"
CODE_WORDS = r"mcc|code|type|group|categ|cat$|kind|class|status|channel|(^|_)id$"
AMOUNT_WORDS = r"amount|amt|sum|price|cost|value|qty|quantity|count|balance|rating|score|total|fee|rub|usd|eur"


@dataclass
class ColumnStats:
    """What the sample says about one raw column (all counts over its non-missing values)."""

    name: str
    values: int
    distinct: int
    numeric: int
    integer: int
    decimals: int
    low: float | None
    high: float | None
    mean_length: float
    emails: int
    phones: int
    cards: int

    def share(self, count: int) -> float:
        return count / self.values if self.values else 0.0

    @property
    def is_numeric(self) -> bool:
        return self.values > 0 and self.share(self.numeric) >= 0.98

    @property
    def is_integer(self) -> bool:
        return self.is_numeric and self.integer == self.numeric


@dataclass
class TimeChoice:
    """A way to read one column as the event time, with how well it does on the sample."""

    column: str
    parse: str
    format: str | None
    parsed: int
    distinct: int
    clock: bool
    low: float
    high: float

    @property
    def spec(self) -> TimeSpec:
        return TimeSpec(self.column, self.parse, self.format)

    def describe(self) -> str:
        return self.parse if self.format is None else f"{self.parse} {self.format!r}"


@dataclass
class Proposal:
    """The inferred schema as YAML text with its comments, and the sample it was inferred from."""

    text: str
    schema: EventSchema
    sample: pl.DataFrame
    labels: pl.DataFrame | None
    files: list[Path]
    notes: list[str] = field(default_factory=list)


# ----- reading the sample -----


def read_sample(input: str | Path, rows: int = SAMPLE_ROWS, encoding: str = "utf-8") -> tuple[pl.DataFrame, list[Path]]:
    """The first ``rows`` rows of the input's files, every column a string, with file and line."""
    files = input_files(input)
    check_same_columns(files, encoding)
    frames, left = [], rows
    for path in files:
        frame = _sample_file(path, left, encoding)
        frames.append(frame)
        left -= len(frame)
        if left <= 0:
            break
    sample = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    columns = [c for c in sample.columns if c not in (ROW, FILE)]
    if len(columns) < 2:
        raise Llm4esError(
            f"only one column ({columns[0]!r}); events need at least a user id and a time column (is the "
            "separator one of , ; or tab?)",
            file=files[0],
            row=1,
        )
    require_rows(sample, files[: len(frames)])
    return sample, files


def _sample_file(path: Path, rows: int, encoding: str) -> pl.DataFrame:
    if path.suffix == ".parquet":
        frame = pl.scan_parquet(path).head(rows).collect()
        frame = frame.with_columns(pl.all().cast(pl.Utf8)).with_row_index(ROW, offset=0)
        return frame.with_columns(pl.lit(str(path)).alias(FILE))
    plain = path.suffix != ".gz" and encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    if plain and path.stat().st_size:
        with open(path, encoding="utf-8", errors="replace") as handle:
            header = handle.readline()
        separator = _separator(header, path)
        try:
            frame = pl.scan_csv(
                path, separator=separator, infer_schema=False, row_index_name=ROW, row_index_offset=2
            ).head(rows)
            frame = frame.collect()
        except pl.exceptions.PolarsError as err:
            raise csv_error(err, _head_text(path, rows, encoding).splitlines(), path, separator) from err
        frame = frame.rename({c: c.strip() for c in frame.columns if c != ROW})
        return frame.with_columns(pl.lit(str(path)).alias(FILE))
    # gzipped or another encoding: decode the first lines only (polars cannot scan those lazily)
    text = _head_text(path, rows, encoding)
    separator = _separator(text.split("\n", 1)[0], path)
    try:
        frame = pl.read_csv(text.encode("utf-8"), separator=separator, infer_schema=False)
    except pl.exceptions.PolarsError as err:
        raise csv_error(err, text.splitlines(), path, separator) from err
    frame = frame.with_row_index(ROW, offset=2).rename({c: c.strip() for c in frame.columns})
    return frame.with_columns(pl.lit(str(path)).alias(FILE))


def _head_text(path: Path, rows: int, encoding: str) -> str:
    """The header and the first ``rows`` lines of a CSV (gzipped or not), decoded."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        head = b"".join(itertools.islice(handle, rows + 1))
    try:
        return head.decode(encoding)
    except UnicodeDecodeError as err:
        raise Llm4esError(
            f"bytes not valid {encoding} ({head[err.start : err.start + 4]!r}); pass --encoding (e.g. cp1251, latin-1)",
            file=path,
            row=head.count(b"\n", 0, err.start) + 1,
        ) from err


def _separator(header: str, path: Path) -> str:
    if not header.strip():
        raise Llm4esError("empty file: no header line and no rows", file=path)
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    sep, count = max(counts.items(), key=lambda kv: kv[1])
    return sep if count else ","


# ----- describing columns -----


def _clean(name: str) -> pl.Expr:
    return _blank_to_null(pl.col(name))


def distinct_values(sample: pl.DataFrame, name: str) -> pl.DataFrame:
    """A column's distinct non-missing values (``v``) with their counts (``n``): every statistic
    below is a weighted sum over them, so a column of few values costs little however long."""
    return sample.group_by(_clean(name).alias("v")).agg(pl.len().alias("n")).drop_nulls("v")


def column_stats(sample: pl.DataFrame) -> dict[str, ColumnStats]:
    """ColumnStats of every raw column, one vectorized pass over each column's distinct values."""
    out = {}
    for name in [c for c in sample.columns if c not in (ROW, FILE)]:
        value, n = pl.col("v"), pl.col("n")
        number = value.cast(pl.Float64, strict=False)
        finite = number.is_finite().fill_null(False)
        digits = value.str.replace_all(r"\D", "").str.len_chars()
        phone = (
            value.str.contains(PHONE_CHARS)
            & digits.is_between(9, 15)
            & (value.str.starts_with("+") | value.str.contains(r"[\s()-]"))
            & number.is_null()
        )
        row = (
            distinct_values(sample, name)
            .select(
                values=n.sum(),
                distinct=pl.len(),
                numeric=n.filter(finite).sum(),
                integer=n.filter(finite & (number == number.floor())).sum(),
                decimals=value.str.extract(r"\.(\d+)$", 1).str.len_chars().max(),
                low=number.filter(finite).min(),
                high=number.filter(finite).max(),
                mean_length=(value.str.len_chars() * n).sum() / n.sum(),
                emails=n.filter(value.str.contains(EMAIL)).sum(),
                phones=n.filter(phone).sum(),
                cards=n.filter(_card_numbers(value)).sum(),
            )
            .row(0, named=True)
        )
        out[name] = ColumnStats(
            name=name,
            values=int(row["values"] or 0),
            distinct=int(row["distinct"]),
            numeric=int(row["numeric"] or 0),
            integer=int(row["integer"] or 0),
            decimals=int(row["decimals"] or 0),
            low=row["low"],
            high=row["high"],
            mean_length=float(row["mean_length"] or 0.0),
            emails=int(row["emails"] or 0),
            phones=int(row["phones"] or 0),
            cards=int(row["cards"] or 0),
        )
    return out


def _card_numbers(value: pl.Expr) -> pl.Expr:
    """Card numbers: 13-19 digits (grouped or not) that pass the Luhn check, or masked ones."""
    digits = value.str.replace_all(r"[ -]", "")
    padded = digits.str.zfill(19)
    total = pl.lit(0)
    for position in range(19):  # from the right: every second digit doubled, minus 9 above 9
        digit = padded.str.slice(18 - position, 1).cast(pl.Int32, strict=False)
        if position % 2:
            digit = pl.when(digit * 2 > 9).then(digit * 2 - 9).otherwise(digit * 2)
        total = total + digit
    luhn = value.str.contains(CARD) & digits.str.len_chars().is_between(13, 19) & (total % 10 == 0)
    return (luhn | value.str.contains(MASKED_CARD)).fill_null(False)


def _named(name: str, words: str) -> bool:
    return re.search(words, name, flags=re.IGNORECASE) is not None


def _id_rank(name: str) -> int:
    if _named(name, USER_WORDS):
        return 2
    return 1 if re.search(ID_WORDS, name) or _named(name, r"(^|_)id$|^id_") else 0


# ----- choosing the user id and the time -----


def choose_user_id(stats: dict[str, ColumnStats], rows: int, exclude: set[str]) -> str:
    """The user id column: values repeat across rows and the name says "user"/"client"/"id"."""
    candidates = [
        s
        for s in stats.values()
        if s.name not in exclude
        and s.values >= 0.9 * rows
        and 2 <= s.distinct < s.values
        and (not s.is_numeric or s.is_integer)
        and s.share(s.emails + s.phones + s.cards) < MATCH
    ]
    if not candidates:
        raise Llm4esError(
            f"no column can be the user id (values that repeat across rows, few missing) among {list(stats)}; "
            "pass --user-id COLUMN"
        )
    best = max(_id_rank(s.name) for s in candidates)
    top = [s.name for s in candidates if _id_rank(s.name) == best]
    if len(top) > 1:
        raise Llm4esError(
            f"{len(top)} columns could be the user id: {top}; pass --user-id COLUMN to say which", key="user_id"
        )
    return top[0]


def time_choices(sample: pl.DataFrame, stats: dict[str, ColumnStats], columns: list[str]) -> list[TimeChoice]:
    """Every way to read one of ``columns`` as times that parses most of its sampled values."""
    out = []
    for name in columns:
        s = stats[name]
        if not s.values:
            continue
        if s.is_numeric:  # plain numbers: unix times, or digits-only dates
            tries: list[tuple[str, str | None]] = [("strptime", fmt) for fmt in DIGIT_FORMATS]
            low, high = s.low or 0.0, s.high or 0.0
            if low >= 1e8 and high < 1e11:
                tries.append(("unix_seconds", None))
            elif _named(name, TIME_WORDS) and s.is_integer and low >= 0 and high < 1e6:
                tries.append(("unix_days", None))
        else:
            tries = [("day_time", None)] + [("strptime", fmt) for fmt in STRPTIME_FORMATS]
        values = distinct_values(sample, name)
        for parse, fmt in tries:
            choice = _try_time(values, name, parse, fmt)
            if choice is not None and choice.parsed >= PARSE * s.values:
                out.append(choice)
    return out


def _try_time(values: pl.DataFrame, name: str, parse: str, fmt: str | None) -> TimeChoice | None:
    """How one parse reads a column's distinct values (``distinct_values``)."""
    value = pl.col("v")
    if parse == "day_time":
        value = pl.when(value.str.contains(DAY_TIME)).then(value)
    seconds = parse_time(value, TimeSpec(name, parse, fmt))
    try:
        row = values.select(
            parsed=pl.col("n").filter(seconds.is_not_null()).sum(),
            distinct=seconds.drop_nulls().n_unique(),
            clock=(seconds.drop_nulls() % 86400 != 0).any(),
            low=seconds.min(),
            high=seconds.max(),
        ).row(0, named=True)
    except pl.exceptions.PolarsError as err:
        raise Llm4esError(f"cannot read times as {fmt!r}: {err}", column=name, key="time_format") from err
    if not row["parsed"] or (parse == "strptime" and row["low"] < YEAR_1900):  # '%Y' also reads '17' as 0017
        return None
    low, high = float(row["low"]), float(row["high"])
    return TimeChoice(name, parse, fmt, int(row["parsed"]), int(row["distinct"]), bool(row["clock"]), low, high)


def choose_time(
    sample: pl.DataFrame, stats: dict[str, ColumnStats], column: str | None, time_format: str | None, exclude: set[str]
) -> TimeChoice:
    """The time column and its parse: the one given, else the best candidate (see module docstring)."""
    columns = [column] if column else [c for c in stats if c not in exclude]
    if time_format:
        parse, fmt = (time_format, None) if time_format in TIME_PARSE_FLAGS else ("strptime", time_format)
        if parse == "strptime" and "%" not in time_format:
            raise Llm4esError(
                f"--time-format must be one of {list(TIME_PARSE_FLAGS)} or a strptime pattern such as "
                f"'%Y-%m-%d %H:%M:%S', got {time_format!r}",
                key="time_format",
            )
        tried = (_try_time(distinct_values(sample, name), name, parse, fmt) for name in columns)
        choices = [c for c in tried if c is not None]
        choices = [c for c in choices if c.parsed >= 0.5 * stats[c.column].values]
    else:
        choices = time_choices(sample, stats, columns)
    if not choices:
        subject = f"column {column!r} does not parse" if column else f"none of the columns {columns} parses"
        tried = (
            repr(time_format)
            if time_format
            else (
                f"ISO dates, {len(STRPTIME_FORMATS)} strptime patterns, '<day> HH:MM:SS', unix seconds and, for a "
                "column named like a date, unix days"
            )
        )
        raise Llm4esError(
            f"no usable time column: {subject} as times in most of the {len(sample):,} sampled rows (tried "
            f"{tried}); pass --time COLUMN and --time-format (unix_seconds, unix_days, day_time or a strptime "
            "pattern such as '%d.%m.%Y %H:%M')",
            key="time",
        )

    def rank(c: TimeChoice) -> tuple[bool, bool, int]:
        return (c.clock, _named(c.column, TIME_WORDS), c.distinct)

    choices.sort(key=rank, reverse=True)
    best = choices[0]
    same_column = [c for c in choices[1:] if c.column == best.column and c.parsed == best.parsed]
    if same_column:
        formats = [c.describe() for c in [best, *same_column]]
        raise Llm4esError(
            f"the times of {best.column!r} read alike in several formats {formats} (day and month?); pass "
            "--time-format to say which",
            column=best.column,
        )
    rivals = [
        c
        for c in choices[1:]
        if c.column != best.column and rank(c)[:2] == rank(best)[:2] and c.distinct >= 0.5 * best.distinct
    ]
    if rivals:
        names = sorted({best.column, *(c.column for c in rivals)})
        raise Llm4esError(f"{len(names)} columns could be the event time: {names}; pass --time COLUMN", key="time")
    return best


# ----- fields, labels, sensitive columns -----


def sensitive_kind(s: ColumnStats) -> str | None:
    """What personal data a column looks like ("e-mail addresses", ...), or None."""
    for count, what in ((s.emails, "e-mail addresses"), (s.phones, "phone numbers"), (s.cards, "card numbers")):
        if s.values and s.share(count) >= MATCH:
            return what
    return None


def _mcc_like(sample: pl.DataFrame, s: ColumnStats) -> bool:
    """4-digit codes most of whose distinct values are ISO 18245 merchant category codes."""
    if not s.is_integer or s.low is None or s.low < 0 or s.high is None or s.high > 9999:
        return False
    distinct = sample.select(_clean(s.name).drop_nulls().unique()).to_series()
    known = package_codes("iso18245")
    return bool(len(distinct)) and float(distinct.is_in(list(known)).mean()) >= 0.8


def field_entry(sample: pl.DataFrame, s: ColumnStats) -> tuple[dict[str, Any], str]:
    """A field of the schema for one column, and the comment that says why."""
    header = s.name.replace("|", "/")
    entry: dict[str, Any] = {"name": s.name, "kind": "text", "header": header}
    if s.name == EVENT_TIME:  # the name of the parsed time field: this other column reads under another name
        entry.update(name=f"{EVENT_TIME}_column", column=s.name)
    if s.is_numeric and (_mcc_like(sample, s) or _named(s.name, "mcc")):
        entry.update(kind="category", codes_from="iso18245", unknown="Unknown MCC ({code})")
        return entry, f"{s.distinct:,} distinct codes; MCC-like, described by ISO 18245"
    coded = _named(s.name, CODE_WORDS) and not _named(s.name, AMOUNT_WORDS)
    few = s.distinct <= 100 or s.distinct <= 0.05 * s.values
    if s.is_numeric and not (s.is_integer and (coded or (few and not _named(s.name, AMOUNT_WORDS)))):
        span = f"{_number(s.low)} .. {_number(s.high)}"
        if s.is_integer:
            entry.update(kind="number", format="int")
            return entry, f"integers {span}"
        decimals = min(s.decimals, 2)
        entry.update(kind="number", format="round", decimals=decimals)
        wide = s.low is not None and s.high is not None and max(abs(s.low), abs(s.high)) >= 1e4
        hint = "; format: log_amount shows the order of magnitude in fewer tokens" if wide else ""
        return entry, f"numbers {span}{hint}"
    if few or (coded and s.is_numeric):
        entry["kind"] = "category"
        return entry, f"{s.distinct:,} distinct values in the sample"
    return entry, f"free text: {s.distinct:,} distinct values, {s.mean_length:.0f} characters on average"


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def per_user_constant(sample: pl.DataFrame, user_id: str, columns: list[str]) -> set[str]:
    """The columns with at most one value within every sampled user (user attributes, labels)."""
    if not columns:
        return set()
    counts = sample.group_by(_clean(user_id).alias("__user")).agg(
        [_clean(c).drop_nulls().n_unique().alias(c) for c in columns]
    )
    maxima = counts.select(pl.col(columns).max()).row(0, named=True)
    return {c for c in columns if (maxima[c] or 0) <= 1}


def label_entry(name: str, classes: pl.DataFrame, where: str) -> tuple[dict[str, Any] | None, str]:
    """A label of the schema from a column's class counts (``value``, ``users``), or None and why not."""
    n = len(classes)
    counts = ", ".join(f"{v}: {c:,}" for v, c in classes.iter_rows())
    if n < 2:
        return None, f"{name}: one class only ({counts}) {where}: nothing to predict"
    if n > MAX_CLASSES:
        return None, f"{name}: {n:,} distinct values {where}: not a class label (regression is not supported)"
    entry: dict[str, Any] = {"name": name, "task": "binary" if n == 2 else "multiclass"}
    values = {str(v).lower() for v in classes["value"]}
    if n == 2 and values in ({"0", "1"}, {"true", "false"}, {"yes", "no"}):
        entry["positive"] = next(str(v) for v in classes["value"] if str(v).lower() in ("1", "true", "yes"))
    return entry, f"{n} classes {where}: {counts}" if n <= 12 else f"{n} classes {where}"


def _classes(frame: pl.DataFrame, column: str, user_id: str) -> pl.DataFrame:
    per_user = frame.select(_clean(user_id).alias("__user"), _clean(column).alias("value")).drop_nulls()
    per_user = per_user.unique("__user", keep="first")
    return per_user.group_by("value").agg(pl.len().alias("users")).sort("value")


# ----- the proposal -----


def infer_schema(
    events: str | Path,
    *,
    labels: str | Path | None = None,
    user_id: str | None = None,
    time: str | None = None,
    time_format: str | None = None,
    rows: int = SAMPLE_ROWS,
    encoding: str = "utf-8",
    name: str | None = None,
) -> Proposal:
    """Read a sample of ``events`` (and the ``labels`` table) and propose a schema (module docstring)."""
    sample, files = read_sample(events, rows, encoding)
    stats = column_stats(sample)
    for given, flag in ((user_id, "--user-id"), (time, "--time")):
        if given is not None and given not in stats:
            raise Llm4esError(f"{flag}: no such column; the file has {list(stats)}", file=files[0], column=given)
    sensitive = {c: what for c, s in stats.items() if (what := sensitive_kind(s)) and c not in (user_id, time)}
    empty = {c for c, s in stats.items() if s.values == 0}
    chosen_time = choose_time(sample, stats, time, time_format, set(sensitive) | empty | {user_id} - {None})
    if user_id is None:
        user_id = choose_user_id(stats, len(sample), set(sensitive) | {chosen_time.column})
    if user_id == chosen_time.column:
        raise Llm4esError(f"the user id and the time are one column ({user_id!r}); pass --user-id or --time")
    rest = [c for c in stats if c not in (user_id, chosen_time.column) and c not in sensitive]
    constant = per_user_constant(sample, user_id, rest)

    label_table = read_table(labels, encoding=encoding) if labels else None
    label_lines: list[tuple[dict[str, Any], str]] = []
    notes: list[str] = []
    if label_table is not None:
        label_lines, label_notes = _file_labels(label_table, sample, user_id, Path(labels))
        notes += label_notes
    taken = {entry["name"] for entry, _ in label_lines}
    field_lines: list[tuple[dict[str, Any], str]] = []
    skipped: list[str] = []
    for column in rest:
        s = stats[column]
        if column in taken:
            skipped.append(f"{column}: also a column of the labels file (read from there)")
        elif s.values == 0:
            skipped.append(f"{column}: empty in the sample")
        elif s.distinct == 1:
            value = sample.select(_clean(column).drop_nulls().first()).item()
            skipped.append(f"{column}: one value ({value!r}) in the sample")
        elif column not in constant and _named(column, r"target|label"):
            skipped.append(f"{column}: named like a target: left out of the text (add it as a field if it is none)")
        elif column in constant and _named(column, TARGET_WORDS):
            entry, why = label_entry(column, _classes(sample, column, user_id), "among the sampled users")
            if entry is None:
                skipped.append(f"{why}; looks like a user-level target, so it is left out of the text")
            else:
                label_lines.append((entry, why + " (constant within each user: a user-level target)"))
        else:
            field_lines.append(field_entry(sample, s))
    if not field_lines:
        raise Llm4esError(
            f"no column is left for the text besides the user id {user_id!r} and the time "
            f"{chosen_time.column!r}; skipped: {skipped or list(sensitive)}",
            file=files[0],
        )
    title = name or _schema_name(events, files)
    text = _yaml_text(
        title, events, files, sample, user_id, chosen_time, field_lines, label_lines, sensitive, skipped, constant
    )
    if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        text += f"encoding: {_flow(encoding)}   # of the CSV files, as given by --encoding\n"
    schema = schema_from_dict(yaml.safe_load(text))
    return Proposal(text, schema, sample, label_table, files, notes)


def _file_labels(
    table: pl.DataFrame, sample: pl.DataFrame, user_id: str, path: Path
) -> tuple[list[tuple[dict[str, Any], str]], list[str]]:
    columns = [c for c in table.columns if c not in (ROW, FILE)]
    if user_id not in columns:
        raise Llm4esError(
            f"no column {user_id!r} (the events' user id); it has {columns}: rename its user id column to "
            f"{user_id!r} (both files are read by the schema's one user_id)",
            file=path,
            column=user_id,
        )
    if not len(table):
        raise Llm4esError("a header line but no rows: no user has a label", file=path, row=1)
    ids = table.select(_clean(user_id)).to_series().drop_nulls().unique()
    seen = sample.select(_clean(user_id)).to_series().drop_nulls().unique()
    matched = int(ids.is_in(seen.implode()).sum())
    notes = [f"labels: {len(ids):,} users in {path.name}, {matched:,} of them among the {len(seen):,} sampled users"]
    if not matched:
        notes.append(f"warning: no id of {path.name} is among the sampled users: are the ids spelled the same way?")
    out = []
    for column in [c for c in columns if c != user_id]:
        entry, why = label_entry(column, _classes(table, column, user_id), f"in {path.name}")
        if entry is None:
            notes.append(f"not a label: {why}")
        else:
            out.append((entry, why))
    return out, notes


def _schema_name(events: str | Path, files: list[Path]) -> str:
    path = Path(events)
    stem = path.name if path.is_dir() else files[0].name.split(".")[0]
    return re.sub(r"\W+", "_", stem).strip("_") or "events"


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, allow_unicode=True, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()  # a scalar is dumped as a document


def _yaml_text(
    title: str,
    events: str | Path,
    files: list[Path],
    sample: pl.DataFrame,
    user_id: str,
    time: TimeChoice,
    fields: list[tuple[dict[str, Any], str]],
    labels: list[tuple[dict[str, Any], str]],
    sensitive: dict[str, str],
    skipped: list[str],
    constant: set[str],
) -> str:
    users = sample.select(_clean(user_id).drop_nulls().n_unique()).item()
    day_index = time.parse == "day_time" or (time.parse == "unix_days" and time.high < 1e9)  # not calendar days
    low, high = (f"day {v // 86400:.0f}" if day_index else np.datetime64(int(v), "s") for v in (time.low, time.high))
    date_format = "days" if day_index else "iso_datetime" if time.clock else "iso_date"
    lines = [
        f"# EventSchema proposed by `llm4es schema infer` from {events} ({len(files)} file(s); the first "
        f"{len(sample):,} rows, {users:,} users).",
        "# Check each choice; see docs/schema.md. Load it with --schema THIS_FILE (and --labels FILE if labels",
        "# come from a labels file).",
        f"name: {_flow(title)}",
        "# words the prompts and cards use, e.g. {event: purchase, events: purchases, user: customer}",
        "domain: {event: event, events: events, user: user}",
        f"user_id: {_flow(user_id)}   # {users:,} users in the sample, {len(sample) / users:.1f} rows each",
        f"time: {_flow({k: v for k, v in vars(time.spec).items() if v is not None})}"
        f"   # {time.parsed:,} of {len(sample):,} values parse; {low} .. {high}",
        "fields:   # in the order the LLM reads them; `in_text: false` keeps a field out of the text",
        f"  - {_flow({'name': 'event_time', 'kind': 'date', 'format': date_format, 'header': 'Date'})}",
    ]
    for entry, why in fields:
        attribute = " (one value per user)" if entry["name"] in constant else ""
        lines.append(f"  - {_flow(entry)}   # {why}{attribute}")
    if labels:
        lines.append("labels:")
        lines += [f"  - {_flow(entry)}   # {why}" for entry, why in labels]
    if sensitive:
        lines.append(f"sensitive: {_flow(sorted(sensitive))}")
        lines += [f"# {c}: looks like {what}; left out of the text, never published" for c, what in sensitive.items()]
    if time.parsed < len(sample):
        lines.append(f"bad_rows: drop   # {len(sample) - time.parsed:,} sampled times are missing or do not parse")
    for line in skipped:
        lines.append(f"# not a field: {line}")
    return "\n".join(lines) + "\n"


# ----- the preview -----


def preview(proposal: Proposal, tokenizer: Any, users: int = 2, max_events: int = 5000) -> list[dict[str, Any]]:
    """The serialized texts of the first ``users`` users of the sample, with their token counts."""
    schema = schema_from_dict({**yaml.safe_load(proposal.text), "bad_rows": "drop"})
    table = group_users(proposal.sample, schema, SourceReport("sample"), proposal.labels).slice(0, users)
    rendered = Serializer(schema, max_events=max_events).render_table(table)
    texts = rendered.column("text").to_pylist()
    counts = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return [
        {"user_id": u, "events": n, "tokens": t, "text": x}
        for u, n, t, x in zip(
            table.column("user_id").to_pylist(), table.column("n_events").to_pylist(), counts, texts, strict=True
        )
    ]


__all__ = ["Proposal", "infer_schema", "preview", "read_sample"]
