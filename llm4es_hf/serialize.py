"""Users Dataset + EventSchema -> text, the way the LLM4ES authors write it, vectorized.

``llm4es`` format: a header of the fields' names joined by ``|``, then one line per
event (chronological) with the formatted values joined by ``", "``. Also ``json``,
``yaml``, ``markdown``, ``html`` and ``grouped`` (``### Category: <name>`` sections).

Work happens per batch of users on flat Arrow/polars columns (never a Python loop
per event). Truncation first caps the number of events (the most recent are kept),
then, given a tokenizer and a budget, keeps the most recent events that fit: events
are never cut in half.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import polars as pl
import pyarrow as pa

from .errors import Llm4esError
from .schema import EventSchema, FieldSpec

FORMATS = ("llm4es", "json", "yaml", "markdown", "html", "grouped")
EVENT_TIME = "event_time"
_USER = "__user"
_POS = "__pos"


@dataclass
class Layout:
    """How a format lays out a user's text: prefix + sep.join(event chunks) + suffix."""

    prefix: str
    separator: str
    suffix: str


def _code_template(template: str) -> tuple[str, str]:
    head, _, tail = template.partition("{code}")
    return head, tail


def field_expression(spec: FieldSpec, schema: EventSchema) -> pl.Expr:
    """A polars expression that renders one field's raw values as text."""
    col = pl.col(spec.name)
    if spec.kind == "date":
        fmt = spec.format or "iso_date"
        if fmt == "days":
            text = (col / 86400.0).floor().cast(pl.Int64).cast(pl.Utf8)
        else:
            pattern = "%Y-%m-%d" if fmt == "iso_date" else "%Y-%m-%d %H:%M:%S"
            text = pl.from_epoch(col.floor().cast(pl.Int64), time_unit="s").dt.strftime(pattern)
    elif spec.kind == "number":
        fmt = spec.format or "round"
        if fmt == "int":
            text = col.cast(pl.Int64).cast(pl.Utf8)
        elif fmt == "log_amount":
            text = (col.sign() * col.abs().log1p()).cast(pl.Int64).cast(pl.Utf8)
        else:
            text = _fixed_decimals(col, spec.decimals)
    elif spec.kind == "category":
        codes = schema.code_map(spec)
        if codes:
            head, tail = _code_template(spec.unknown)
            fallback = (
                pl.concat_str([pl.lit(head), col, pl.lit(tail)]) if "{code}" in spec.unknown else pl.lit(spec.unknown)
            )
            text = col.replace_strict(list(codes), list(codes.values()), default=fallback, return_dtype=pl.Utf8)
        else:
            text = col
    else:
        text = col
    return text.fill_null(pl.lit(spec.missing)).alias(spec.name)


def _fixed_decimals(col: pl.Expr, decimals: int) -> pl.Expr:
    """x rounded half-to-even at `decimals` places, printed with exactly that many decimals."""
    if decimals <= 0:
        return _rint(col, 0).cast(pl.Utf8)
    scaled = _rint(col, decimals)
    whole = (scaled.abs() // 10**decimals).cast(pl.Utf8)
    frac = (scaled.abs() % 10**decimals).cast(pl.Utf8).str.zfill(decimals)
    sign = pl.when(scaled < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.concat_str([sign, whole, pl.lit("."), frac])


def _rint(col: pl.Expr, decimals: int) -> pl.Expr:
    return (col * 10.0**decimals).round(0, mode="half_to_even").cast(pl.Int64)


def _json_string(expr: pl.Expr) -> pl.Expr:
    """A JSON (and YAML) double-quoted string literal of a text expression."""
    encoded = pl.struct(expr.alias("v")).struct.json_encode()
    return encoded.str.slice(5, encoded.str.len_chars() - 6)


@dataclass
class SerializationConfig:
    """How users become text (``llm4es serialize``, corpus recipes); saved with corpora and models."""

    format: str = field(default="llm4es", metadata={"help": f"text layout: one of {list(FORMATS)}"})
    max_events: int | None = field(default=5000, metadata={"help": "keep at most the last N events per user"})
    max_tokens: int | None = field(
        default=None, metadata={"help": "token budget per user; keeps the most recent events that fit"}
    )
    tokenizer: str = field(
        default="smollm2-135m", metadata={"help": "tokenizer of the budget and the statistics (name, folder, Hub id)"}
    )

    def serializer(self, schema: EventSchema, tokenizer: Any = None) -> Serializer:
        """A Serializer for ``schema`` with these settings (``tokenizer``: loaded, for the budget)."""
        return Serializer(
            schema,
            self.format,
            max_events=self.max_events,
            max_tokens=self.max_tokens,
            tokenizer=tokenizer if self.max_tokens else None,
        )


class Serializer:
    """Renders users as text in one of FORMATS; see the module docstring."""

    def __init__(
        self,
        schema: EventSchema,
        format: str = "llm4es",
        *,
        max_events: int | None = 5000,
        max_tokens: int | None = None,
        tokenizer: Any = None,
    ) -> None:
        if format not in FORMATS:
            raise Llm4esError(f"unknown format {format!r}; choose one of {list(FORMATS)}", key="format")
        if format == "grouped" and not schema.group_by:
            raise Llm4esError(f"format 'grouped' needs `group_by` in schema {schema.name!r}", key="group_by")
        if max_tokens is not None and tokenizer is None:
            raise Llm4esError("a token budget (--max-tokens) needs a tokenizer (--tokenizer)", key="max_tokens")
        if max_events is not None and max_events < 1:
            raise Llm4esError(f"max_events must be >= 1, got {max_events}", key="max_events")
        self.schema = schema
        self.format = format
        self.max_events = max_events
        self.max_tokens = max_tokens
        self.tokenizer = tokenizer
        section = schema.group_by if format == "grouped" else None
        # each event's line shows the in-text fields; `grouped` shows its group_by field as sections
        self.event_fields = [f for f in schema.text_fields if f.name != section]
        self.fields = [f for f in schema.fields if f in self.event_fields or f.name == section]
        self.layout = self._layout()
        self._expressions = {spec.name: field_expression(spec, schema) for spec in self.fields}

    # ----- layout -----------------------------------------------------------------
    def _layout(self) -> Layout:
        headers = [f.header for f in self.event_fields]
        events_word = self.schema.domain.events.replace(" ", "_")
        if self.format in ("llm4es", "grouped"):
            return Layout("|".join(headers) + "\n", "\n", "")
        if self.format == "json":
            return Layout("{" + json.dumps(events_word) + ": [\n", ",\n", "\n]}")
        if self.format == "yaml":
            return Layout(f"{events_word}:\n", "\n", "")
        if self.format == "markdown":
            escaped = [h.replace("|", "\\|") for h in headers]
            return Layout("| " + " | ".join(escaped) + " |\n|" + " --- |" * len(headers) + "\n", "\n", "")
        cells = "".join(f"<th>{_html_escape(h)}</th>" for h in headers)
        return Layout(f"<table>\n<tr>{cells}</tr>\n", "\n", "\n</table>")

    def _chunk_expression(self) -> pl.Expr:
        values = [pl.col(spec.name) for spec in self.event_fields]
        headers = [spec.header for spec in self.event_fields]
        if self.format in ("llm4es", "grouped"):
            return pl.concat_str(values, separator=", ")
        if self.format == "json":
            return pl.struct([v.alias(h) for v, h in zip(values, headers, strict=False)]).struct.json_encode()
        if self.format == "yaml":
            pairs = [
                pl.concat_str([pl.lit(json.dumps(h) + ": "), _json_string(v)])
                for v, h in zip(values, headers, strict=False)
            ]
            return pl.concat_str([pl.lit("- "), pl.concat_str(pairs, separator="\n  ")])
        if self.format == "markdown":
            cells = [v.str.replace_all("|", "\\|", literal=True).str.replace_all("\n", " ") for v in values]
            return pl.concat_str([pl.lit("| "), pl.concat_str(cells, separator=" | "), pl.lit(" |")])
        cells = [pl.concat_str([pl.lit("<td>"), _html_escape_expr(v), pl.lit("</td>")]) for v in values]
        return pl.concat_str([pl.lit("<tr>"), pl.concat_str(cells), pl.lit("</tr>")])

    # ----- rendering ----------------------------------------------------------------
    def _events_frame(self, table: pa.Table) -> pl.DataFrame:
        """One row per (capped) event with formatted fields and its chunk of text.

        The list columns are flattened without copying (Arrow offsets), the user of
        each event comes from the offsets, and the max-events cap is a mask on positions.
        """
        names = [spec.name for spec in self.fields]
        self._check_columns(table.column_names)
        columns = {name: pa.chunked_array(table.column(name)).combine_chunks() for name in names}
        first = columns[names[0]]
        offsets = first.offsets.to_numpy().astype(np.int64)
        offsets = offsets - offsets[0]
        lengths = np.diff(offsets)
        for name in names[1:]:
            if not np.array_equal(np.diff(columns[name].offsets.to_numpy()), lengths):
                raise Llm4esError(f"list column {name!r} and {names[0]!r} differ in length for some user", column=name)
        frame = pl.DataFrame({name: pl.from_arrow(columns[name].flatten()) for name in names})
        frame = frame.with_columns(pl.Series(_USER, np.repeat(np.arange(len(lengths)), lengths)))
        if self.max_events is not None and (lengths > self.max_events).any():
            position = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
            frame = frame.filter(pl.Series(position >= np.repeat(lengths - self.max_events, lengths)))
        frame = frame.with_columns(list(self._expressions.values()))
        return frame.with_row_index(_POS).with_columns(self._chunk_expression().alias("__chunk"))

    def _check_columns(self, present: Sequence[str]) -> None:
        missing = [spec.name for spec in self.fields if spec.name not in present]
        if missing:
            raise Llm4esError(f"users table has no column {missing[0]!r}; it has {list(present)}", column=missing[0])

    def _join(self, events: pl.DataFrame, n_users: int) -> pa.Array:
        """Join each user's kept event chunks into the final text.

        Each chunk carries what follows it (the separator, or the suffix after a user's
        last event) and a user's first chunk carries the prefix. Events are ordered by
        user, so a user's text is then one contiguous slice of the chunks' data buffer:
        the texts are built as new offsets over that buffer, without copying it again.
        """
        if self.format == "grouped":
            events = self._with_sections(events)
        counts = np.bincount(events[_USER].to_numpy(), minlength=n_users) if len(events) else np.zeros(n_users, int)
        if not counts.all():
            return self._join_with_empty(events, counts)
        user = pl.col(_USER)
        piece = pl.concat_str(
            [
                pl.when(user.ne_missing(user.shift(1))).then(pl.lit(self.layout.prefix)).otherwise(pl.lit("")),
                pl.col("__chunk"),
                pl.when(user.ne_missing(user.shift(-1)))
                .then(pl.lit(self.layout.suffix))
                .otherwise(pl.lit(self.layout.separator)),
            ]
        )
        pieces = events.select(piece).to_series().to_arrow().cast(pa.large_string())
        if isinstance(pieces, pa.ChunkedArray):
            pieces = pieces.combine_chunks()
        piece_offsets = np.frombuffer(pieces.buffers()[1], dtype=np.int64)[
            pieces.offset : pieces.offset + len(pieces) + 1
        ]
        user_offsets = piece_offsets[np.concatenate([[0], np.cumsum(counts)])]
        return pa.LargeStringArray.from_buffers(
            n_users, pa.py_buffer(user_offsets.astype(np.int64)), pieces.buffers()[2]
        )

    def _join_with_empty(self, events: pl.DataFrame, counts: np.ndarray) -> pa.Array:
        """The general join, for batches where some user kept no event."""
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        chunks = events["__chunk"].to_arrow().cast(pa.large_string())
        lists = pa.LargeListArray.from_arrays(pa.array(offsets), chunks)
        joined = pl.from_arrow(lists).list.join(self.layout.separator)
        texts = pl.DataFrame({"body": joined}).select(
            pl.concat_str([pl.lit(self.layout.prefix), pl.col("body"), pl.lit(self.layout.suffix)])
        )
        return texts.to_series().to_arrow().cast(pa.large_string())

    def _with_sections(self, events: pl.DataFrame) -> pl.DataFrame:
        """Order events by category (categories by first appearance) and open each section."""
        group = self.schema.group_by
        events = events.with_columns(pl.col(_POS).min().over([_USER, group]).alias("__first"))
        events = events.sort([_USER, "__first", _POS])
        opens = pl.col(group).ne_missing(pl.col(group).shift(1)) | pl.col(_USER).ne_missing(pl.col(_USER).shift(1))
        heading = pl.concat_str([pl.lit("### Category: "), pl.col(group), pl.lit("\n"), pl.col("__chunk")])
        return events.with_columns(pl.when(opens).then(heading).otherwise(pl.col("__chunk")).alias("__chunk"))

    def render_table(self, table: pa.Table) -> pa.Table:
        """Text (and kept-event and token counts) for a batch of users."""
        events = self._events_frame(table)
        n_users = table.num_rows
        if self.max_tokens is None:
            texts = self._join(events, n_users)
            kept = np.bincount(events[_USER].to_numpy(), minlength=n_users) if len(events) else np.zeros(n_users)
            return pa.table({"text": texts, "n_events_kept": pa.array(kept, pa.int64())})
        return self._render_with_budget(events, n_users)

    def _token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros(0, dtype=np.int64)
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(encoded))

    def _render_with_budget(self, events: pl.DataFrame, n_users: int) -> pa.Table:
        fixed = self._token_lengths([self.layout.prefix + self.layout.suffix])[0]
        separator_cost = self._token_lengths([self.layout.separator])[0] if self.layout.separator else 0
        costs = self._token_lengths(events["__chunk"].to_list()) + separator_cost
        events = events.with_columns(pl.Series("__cost", costs))
        # Keep the most recent events whose summed cost fits: a suffix of each user's events.
        events = events.with_columns(pl.col("__cost").cum_sum(reverse=True).over(_USER).alias("__tail_cost"))
        budget = self.max_tokens - fixed
        keep_from = (
            events.with_columns(pl.col("__tail_cost").le(budget).alias("__fits"))
            .group_by(_USER)
            .agg((pl.col("__fits").not_().sum()).alias("__drop"))
        )
        drop = np.zeros(n_users, dtype=np.int64)
        drop[keep_from[_USER].to_numpy()] = keep_from["__drop"].to_numpy()
        available = np.bincount(events[_USER].to_numpy(), minlength=n_users) if len(events) else np.zeros(n_users, int)
        for _ in range(64):
            kept_events = self._keep_tail(events, drop)
            texts = self._join(kept_events, n_users)
            lengths = self._token_lengths(texts.to_pylist())
            over = lengths > self.max_tokens
            if not over.any():
                break
            kept_now = np.bincount(kept_events[_USER].to_numpy(), minlength=n_users)
            if (over & (kept_now == 0)).any():
                raise Llm4esError(
                    f"the token budget ({self.max_tokens}) is smaller than the text without any event "
                    f"({int(lengths[over & (kept_now == 0)].min())} tokens: the header); raise --max-tokens",
                    key="max_tokens",
                )
            # BPE merges across chunk borders (and, for `grouped`, section headings) make the text longer
            # than the sum of its chunks: shrink the kept events in proportion to the overshoot.
            body = np.maximum(lengths[over] - fixed, 1)
            target = np.floor(kept_now[over] * max(budget, 0) / body).astype(np.int64)
            keep = np.minimum(kept_now[over] - 1, target)
            drop[over] = available[over] - np.maximum(keep, 0)
        else:
            raise Llm4esError("could not fit the token budget after 64 passes", key="max_tokens")
        kept = np.bincount(kept_events[_USER].to_numpy(), minlength=n_users) if len(kept_events) else np.zeros(n_users)
        return pa.table(
            {
                "text": texts,
                "n_events_kept": pa.array(kept, pa.int64()),
                "n_tokens": pa.array(lengths, pa.int64()),
            }
        )

    @staticmethod
    def _keep_tail(events: pl.DataFrame, drop: np.ndarray) -> pl.DataFrame:
        rank = pl.int_range(pl.len()).over(_USER)
        return events.filter(rank >= pl.col(_USER).replace_strict(np.arange(len(drop)), drop, return_dtype=pl.Int64))

    # ----- datasets -----------------------------------------------------------------
    def __call__(
        self, users: datasets.Dataset, *, batch_size: int = 1000, desc: str = "Serializing"
    ) -> datasets.Dataset:
        """Add ``text``, ``n_events_kept`` (and ``n_tokens`` with a budget) to a users Dataset."""
        existing = [c for c in ("text", "n_events_kept", "n_tokens") if c in users.column_names]
        if existing:
            users = users.remove_columns(existing)
        self._check_columns(users.column_names)
        # Only the new columns are written by `map`; the event lists are not copied again.
        rendered = (
            users.select_columns([spec.name for spec in self.fields])
            .with_format("arrow")
            .map(
                self.render_table,
                batched=True,
                batch_size=batch_size,
                remove_columns=[spec.name for spec in self.fields],
                desc=desc,
            )
        )
        return datasets.concatenate_datasets([users, rendered.with_format(None)], axis=1)


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _html_escape_expr(expr: pl.Expr) -> pl.Expr:
    for raw, escaped in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;")):
        expr = expr.str.replace_all(raw, escaped, literal=True)
    return expr


# ----- the authors' way, one user and one event at a time (reference and baseline) -----


def format_value_rowwise(value: Any, spec: FieldSpec, codes: dict[str, str]) -> str:
    """Format one value in plain Python; the reference the vectorized path must equal."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return spec.missing
    if spec.kind == "date":
        if (spec.format or "iso_date") == "days":
            return str(math.floor(value / 86400.0))
        moment = dt.datetime.fromtimestamp(math.floor(value), tz=dt.UTC)
        return moment.strftime("%Y-%m-%d" if (spec.format or "iso_date") == "iso_date" else "%Y-%m-%d %H:%M:%S")
    if spec.kind == "number":
        fmt = spec.format or "round"
        if fmt == "int":
            return str(int(value))
        if fmt == "log_amount":
            return str(int(math.copysign(1, value) * math.log1p(abs(value)) if value else 0))
        scaled = int(np.rint(value * 10.0**spec.decimals))
        if spec.decimals <= 0:
            return str(scaled)
        whole, fraction = divmod(abs(scaled), 10**spec.decimals)
        return f"{'-' if scaled < 0 else ''}{whole}.{fraction:0{spec.decimals}d}"
    if spec.kind == "category" and codes:
        if value in codes:
            return codes[value]
        return spec.unknown.replace("{code}", str(value))
    return str(value)


def serialize_users_rowwise(
    users: Sequence[dict[str, Any]], schema: EventSchema, max_events: int | None = 5000
) -> list[str]:
    """LLM4ES texts built with Python loops per user and per event, as the authors' code does."""
    shown = schema.text_fields
    codes = {spec.name: schema.code_map(spec) if spec.kind == "category" else {} for spec in shown}
    header = "|".join(schema.headers)
    texts = []
    for user in users:
        n = len(user[shown[0].name])
        start = max(0, n - max_events) if max_events else 0
        lines = [header]
        for i in range(start, n):
            lines.append(", ".join(format_value_rowwise(user[s.name][i], s, codes[s.name]) for s in shown))
        texts.append("\n".join(lines))
    return texts


def count_unknown_codes(users: datasets.Dataset, schema: EventSchema) -> dict[str, int]:
    """Per category field, how many (non-missing) values have no description in its code map."""
    table = users.data.table if hasattr(users.data, "table") else users.data
    counts = {}
    for spec in schema.fields:
        codes = schema.code_map(spec) if spec.kind == "category" else {}
        if not codes or spec.name not in table.column_names:
            continue
        values = pl.from_arrow(pa.chunked_array(table.column(spec.name)).combine_chunks().flatten())
        unknown = int((values.is_not_null() & ~values.is_in(list(codes))).sum())
        if unknown:
            counts[spec.name] = unknown
    return counts


@dataclass
class SerializeSummary:
    """What serialization kept and dropped, for the CLI and the dataset card."""

    users: int
    events: int
    events_kept: int
    dropped_by_max_events: int
    dropped_by_token_budget: int
    unknown_codes: dict[str, int]
    token_percentiles: dict[str, float]

    def lines(self) -> list[str]:
        out = [
            f"users: {self.users:,}",
            f"events: {self.events:,} (kept in text: {self.events_kept:,})",
            f"events dropped by the max-events cap (oldest first): {self.dropped_by_max_events:,}",
            f"events dropped by the token budget (oldest first): {self.dropped_by_token_budget:,}",
        ]
        for name, count in self.unknown_codes.items():
            out.append(f"values without a description in {name!r} (rendered with the fallback): {count:,}")
        if self.token_percentiles:
            out.append("tokens per user: " + ", ".join(f"{k} {v:,.0f}" for k, v in self.token_percentiles.items()))
        return out


def summarize(
    texts: datasets.Dataset, schema: EventSchema, *, max_events: int | None, tokenizer: Any = None
) -> SerializeSummary:
    """Counts of a serialized users Dataset (see SerializeSummary)."""
    columns = texts.with_format("arrow")  # whole columns at once: iterating a Column goes row by row
    n_events = columns["n_events"].to_numpy().astype(np.int64)
    kept = columns["n_events_kept"].to_numpy().astype(np.int64)
    capped = np.minimum(n_events, max_events) if max_events else n_events
    if "n_tokens" in texts.column_names:
        lengths = columns["n_tokens"].to_numpy()
    elif tokenizer is not None:
        lengths = Serializer(schema, max_events=max_events, tokenizer=tokenizer)._token_lengths(texts["text"])
    else:
        lengths = np.zeros(0)
    percentiles = {}
    if len(lengths):
        percentiles = {f"p{q}": float(np.percentile(lengths, q)) for q in (5, 25, 50, 75, 95)}
        percentiles["max"] = float(lengths.max())
    return SerializeSummary(
        users=len(texts),
        events=int(n_events.sum()),
        events_kept=int(kept.sum()),
        dropped_by_max_events=int((n_events - capped).sum()),
        dropped_by_token_budget=int((capped - kept).sum()),
        unknown_codes=count_unknown_codes(texts, schema),
        token_percentiles=percentiles,
    )
