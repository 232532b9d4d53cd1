"""Raw tables: CSV (gzipped or not, any encoding the schema names) or Parquet, every column a string,
with each row's file line and file name so errors can point at it (``read_table``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from ..errors import Llm4esError

ROW = "__line"
FILE = "__file"
NA_VALUES = ("", "nan", "NaN", "NAN", "NA", "N/A", "null", "NULL", "None")


def read_table(
    path: str | Path, *, encoding: str = "utf-8", separator: str | None = None, quote_char: str | None = '"'
) -> pl.DataFrame:
    """Read a CSV (optionally gzipped) or Parquet file with every column as strings.

    Adds the 1-based file line of each row (header = line 1) and the file name, so
    later checks can point at the exact place of a bad value.
    """
    path = Path(path)
    if not path.exists():
        raise Llm4esError("file not found", file=path)
    if path.suffix == ".parquet":
        frame = pl.read_parquet(path)
        frame = frame.with_columns(pl.all().cast(pl.Utf8))
        frame = frame.with_row_index(ROW, offset=0)
    else:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            import gzip

            raw = gzip.decompress(raw)
        text = _decode(raw, path, encoding)
        if not text.strip():
            raise Llm4esError("empty file: no header line and no rows", file=path)
        sep = separator or _sniff_separator(text, path)
        try:
            frame = pl.read_csv(text.encode("utf-8"), separator=sep, infer_schema=False, quote_char=quote_char)
        except pl.exceptions.PolarsError as err:
            raise csv_error(err, text.splitlines(), path, sep, quote_char) from err
        frame = frame.with_row_index(ROW, offset=2)
    frame = frame.rename({c: c.strip() for c in frame.columns if c != ROW})
    return frame.with_columns(pl.lit(str(path)).alias(FILE))


def ragged_line(lines: Iterable[str], separator: str, quote_char: str | None = '"') -> Llm4esError | None:
    """The first line whose field count differs from the header's, as our error (file line, what to
    do), or None; polars says only "Consider setting 'truncate_ragged_lines=True'"."""
    rows = csv.reader(lines, delimiter=separator, quotechar=quote_char or "\0")
    header = next(rows, [])
    for row in rows:
        if len(row) != len(header) and any(value.strip() for value in row):
            what = "more" if len(row) > len(header) else "fewer"
            return Llm4esError(
                f"{len(row)} fields where the header has {len(header)} ({what} than its columns): a value that "
                f'holds the separator {separator!r} must be quoted ("a{separator}b"); otherwise fix or delete '
                "this line",
                row=rows.line_num,
            )
    return None


def csv_error(
    err: Exception, lines: Iterable[str], path: Path, separator: str, quote_char: str | None = '"'
) -> Llm4esError:
    """Our error for a CSV polars could not parse: its ragged line, else polars' message."""
    found = ragged_line(lines, separator, quote_char)
    if found is not None:
        return Llm4esError(found.message, file=path, row=found.row)
    return Llm4esError(f"cannot parse as CSV: {err}", file=path)


def _decode(raw: bytes, path: Path, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise Llm4esError(
            f"bytes not valid {encoding} at byte offset {err.start} ({raw[err.start : err.start + 4]!r}); "
            "set `encoding:` in the schema (e.g. cp1251, latin-1) if the file uses another encoding",
            file=path,
            row=line,
        ) from err


def _sniff_separator(text: str, path: Path) -> str:
    first = text.split("\n", 1)[0]
    counts = {sep: first.count(sep) for sep in (",", ";", "\t")}
    sep, count = max(counts.items(), key=lambda kv: kv[1])
    if count == 0:
        raise Llm4esError("cannot tell the column separator from the header line", file=path, row=1)
    return sep


def require_columns(frame: pl.DataFrame, columns: list[str], where: str) -> None:
    """Fail naming the first missing column and the columns that are there."""
    present = [c for c in frame.columns if c not in (ROW, FILE)]
    for column in columns:
        if column not in present:
            raise Llm4esError(f"missing column; the file has {present}", file=where, column=column)
