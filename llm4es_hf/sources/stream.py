"""Raw events read lazily and hash-partitioned by user into shards (the streaming path).

The raw files are scanned with polars' streaming engine (never loaded whole); each row gets
the shard of its user, ``hash(user id) % num_shards``, and the rows of the wanted shards are
sunk into one Parquet folder per shard. A shard then holds every row of its users, so it is
validated and grouped on its own by ``build_users``, exactly as the whole file would be.
Gzipped CSV and other encodings than UTF-8 are first copied to a plain UTF-8 file, chunk by
chunk. The shard hash is polars' (fast, in the engine); it is stable within one polars
version, which the corpus manifest records.
"""

from __future__ import annotations

import codecs
import glob
import gzip
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from ..artifacts import ragged_line
from ..errors import Llm4esError
from ..schema import EventSchema
from .bank import BANK_DATASETS, bank_files
from .base import EVENT_TIME, FILE, ROW, _blank_to_null, read_table, require_columns, require_rows

SHARD = "__shard"
FILE_SOURCES = (*BANK_DATASETS, "csv", "parquet")
SHARD_SEED = 1234567
TABLE_SUFFIXES = (".parquet", ".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")
CHUNK_BYTES = 16 * 2**20


@dataclass
class RawFiles:
    """The raw files of a file-based source: events (read in order) and an optional label table."""

    events: list[Path]
    labels: Path | None = None


def raw_files(name: str, input: str | Path | None, labels: str | Path | None, schema: EventSchema) -> RawFiles:
    """The files a source reads, for lazy reading: a bank data set's folder, or csv/parquet inputs."""
    if name in BANK_DATASETS:
        folder, events, label_path = bank_files(name, input)
        schema.input_dir = folder
        return RawFiles(events, label_path)
    if name in FILE_SOURCES:
        if input is None:
            raise Llm4esError(f"source {name!r} needs --input FILE", key="input")
        return RawFiles(input_files(input), Path(labels) if labels else None)
    raise Llm4esError(
        f"source {name!r} is built in memory and cannot be sharded; shard a file source (csv, parquet, "
        "rosbank, gender, age), e.g. write synthetic data first with `llm4es synthetic --output DIR`",
        key="num_shards",
    )


def input_files(input: str | Path) -> list[Path]:
    """An events input as files: one file, every table file of a folder, or a glob (sorted)."""
    path = Path(input)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.name.endswith(TABLE_SUFFIXES))
        if not found:
            raise Llm4esError(f"no table files ({', '.join(TABLE_SUFFIXES)}) in the folder", file=path)
        return found
    if any(char in str(input) for char in "*?["):
        found = sorted(Path(p) for p in glob.glob(str(input)))
        if not found:
            raise Llm4esError("no file matches the pattern", file=input)
        return found
    if not path.exists():
        raise Llm4esError("file not found", file=path)
    return [path]


def check_same_columns(files: Sequence[Path], encoding: str = "utf-8") -> None:
    """Several files of one input must have the same columns (and, for Parquet, the same types)."""
    parquet = [f for f in files if f.suffix == ".parquet"]
    if parquet:
        first = pq.read_schema(parquet[0])
        for path in parquet[1:]:
            schema = pq.read_schema(path)
            if schema.names != first.names or schema.types != first.types:
                theirs = {n: str(t) for n, t in zip(schema.names, schema.types, strict=True)}
                ours = {n: str(t) for n, t in zip(first.names, first.types, strict=True)}
                differ = sorted(set(theirs.items()) ^ set(ours.items()))
                raise Llm4esError(
                    f"schema differs from {parquet[0].name}'s (columns or types {differ}); every Parquet "
                    "file of one input must have the same columns and types",
                    file=path,
                    column=differ[0][0],
                )
    csv = [f for f in files if f.suffix != ".parquet"]
    if len(csv) > 1:
        first_header = _header(csv[0], encoding)
        for path in csv[1:]:
            if _header(path, encoding) != first_header:
                raise Llm4esError(
                    f"header differs from {csv[0].name}'s ({_header(path, encoding)} vs {first_header}); every "
                    "CSV file of one input must have the same columns",
                    file=path,
                    row=1,
                )


def _header_line(path: Path, encoding: str) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        line = handle.readline()
    return line.decode(encoding, errors="replace").rstrip("\r\n")


def _header(path: Path, encoding: str) -> list[str]:
    text = _header_line(path, encoding)
    return [c.strip() for c in text.split(_separator(text, path))]


def _separator(first_line: str, path: Path) -> str:
    counts = {sep: first_line.count(sep) for sep in (",", ";", "\t")}
    sep, count = max(counts.items(), key=lambda kv: kv[1])
    if count == 0:
        raise Llm4esError("cannot tell the column separator from the header line", file=path, row=1)
    return sep


def plain_utf8(path: Path, encoding: str, workdir: Path) -> Path:
    """The file itself when it is plain UTF-8 CSV, else a plain UTF-8 copy made chunk by chunk."""
    if path.suffix != ".gz" and encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        return path
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / (path.name.removesuffix(".gz") + ".utf8.csv")
    decoder = codecs.getincrementaldecoder(encoding)()
    opener = gzip.open if path.suffix == ".gz" else open
    line = 1
    with opener(path, "rb") as source, open(target, "w", encoding="utf-8", newline="") as out:
        while chunk := source.read(CHUNK_BYTES):
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as err:
                line += chunk.count(b"\n", 0, err.start)
                raise Llm4esError(
                    f"bytes not valid {encoding} ({chunk[err.start : err.start + 4]!r}); set `encoding:` in the "
                    "schema (e.g. cp1251, latin-1) if the file uses another encoding",
                    file=path,
                    row=line,
                ) from err
            line += chunk.count(b"\n")
            out.write(text)
        out.write(decoder.decode(b"", final=True))
    return target


def scan_table(path: Path, encoding: str, workdir: Path) -> pl.LazyFrame:
    """One raw file as a lazy frame of strings with each row's file line, as ``read_table`` reads it."""
    if path.suffix == ".parquet":
        frame = pl.scan_parquet(path).with_columns(pl.all().cast(pl.Utf8)).with_row_index(ROW, offset=0)
    else:
        plain = plain_utf8(path, encoding, workdir)
        with open(plain, encoding="utf-8") as handle:
            separator = _separator(handle.readline(), path)
        frame = pl.scan_csv(
            plain,
            separator=separator,
            infer_schema=False,
            quote_char='"',
            row_index_name=ROW,
            row_index_offset=2,
        )
    names = frame.collect_schema().names()
    frame = frame.rename({c: c.strip() for c in names if c != ROW})
    return frame.with_columns(pl.lit(str(path)).alias(FILE))


@contextmanager
def scanned(files: Sequence[Path], schema: EventSchema) -> Iterator[list[pl.LazyFrame]]:
    """Each raw events file as a lazy frame (``scan_table``), its user id column required; the plain
    UTF-8 copies that gzipped or other-encoding files need are removed on exit."""
    with tempfile.TemporaryDirectory(prefix="llm4es-scan-") as workdir:
        frames = [scan_table(path, schema.encoding, Path(workdir)) for path in files]
        for path, frame in zip(files, frames, strict=True):
            require_columns(frame.head(0).collect(), [schema.user_id], str(path))
        yield frames


def event_user_ids(files: Sequence[Path], schema: EventSchema) -> pl.Series:
    """The distinct user ids of raw event files, read lazily (one column): what a labels file is checked
    against before a long run (``check_labels``)."""
    with scanned(files, schema) as frames:
        ids = [frame.select(pl.col(schema.user_id).cast(pl.Utf8).alias("user_id")).unique() for frame in frames]
        return pl.concat(ids).unique().collect(engine="streaming")["user_id"]


def user_rows(files: Sequence[Path], schema: EventSchema, user_id: str, limit: int = 50) -> pl.DataFrame:
    """One user's raw rows as read (every column a string), at most ``limit``: an example of the files'
    format, e.g. for the demo Space's upload box."""
    with scanned(files, schema) as frames:
        rows = [frame.filter(pl.col(schema.user_id).cast(pl.Utf8) == user_id).drop(ROW, FILE) for frame in frames]
        return pl.concat(rows, how="diagonal").head(limit).collect(engine="streaming")


def shard_expression(column: str, num_shards: int) -> pl.Expr:
    """The shard of each row: a seeded polars hash of the user id as ``build_users`` reads it."""
    return (_blank_to_null(pl.col(column)).hash(SHARD_SEED) % num_shards).cast(pl.Int64).alias(SHARD)


def partition_events(
    files: Sequence[Path],
    schema: EventSchema,
    num_shards: int,
    shards: Sequence[int],
    folder: Path,
) -> int:
    """Sink the raw rows of ``shards`` into ``folder/<SHARD>=k/``, one streaming pass over the
    files; returns the number of distinct users in the whole input (every shard's)."""
    if not files:
        raise Llm4esError("no events file to read", key="input")
    check_same_columns(files, schema.encoding)
    scans = [scan_table(path, schema.encoding, folder / "_plain") for path in files]
    events = pl.concat(scans, how="diagonal_relaxed") if len(scans) > 1 else scans[0]
    present = events.collect_schema().names()
    needed = [schema.user_id, schema.time.column]
    needed += [f.source_column for f in schema.fields if f.name != EVENT_TIME]
    require_columns(pl.DataFrame(schema={c: pl.Utf8 for c in present}), needed, ", ".join(map(str, files)))
    labels = [lb.source_column for lb in schema.labels if lb.source_column in present]
    events = events.select(list(dict.fromkeys([*needed, *labels, ROW, FILE])))  # only what build_users reads
    count = events.select(
        _blank_to_null(pl.col(schema.user_id)).drop_nulls().n_unique().alias("users"), pl.len().alias("rows")
    )
    events = events.with_columns(shard_expression(schema.user_id, num_shards))
    if len(shards) < num_shards:
        events = events.filter(pl.col(SHARD).is_in(list(shards)))
    sink = events.sink_parquet(
        pl.PartitionBy(folder, key=SHARD, include_key=False), compression="lz4", mkdir=True, lazy=True
    )
    try:
        _, counted = pl.collect_all([sink, count], engine="streaming")
    except pl.exceptions.PolarsError as err:
        for path in (f for f in files if f.suffix != ".parquet"):
            with open(plain_utf8(path, schema.encoding, folder / "_plain"), encoding="utf-8", newline="") as handle:
                found = ragged_line(handle, _separator(_header_line(path, schema.encoding), path))
            if found is not None:
                raise Llm4esError(found.message, file=path, row=found.row) from err
        raise Llm4esError(f"cannot read the events: {err}", file=", ".join(map(str, files))) from err
    if not counted["rows"][0]:
        require_rows(pl.DataFrame(), files)
    return int(counted["users"][0])


def read_shard(folder: Path, shard: int) -> pl.DataFrame | None:
    """The raw rows of one shard in input order (None when no row fell in it)."""
    part = folder / f"{SHARD}={shard}"
    paths = sorted(part.glob("*.parquet")) if part.is_dir() else []
    return pl.read_parquet(paths) if paths else None


def read_labels(path: Path, schema: EventSchema, num_shards: int) -> pl.DataFrame:
    """A user table (one row per user) read whole, with each row's shard."""
    labels = read_table(path, encoding=schema.encoding)
    if schema.user_id not in labels.columns:
        present = [c for c in labels.columns if c not in (ROW, FILE)]
        raise Llm4esError(f"missing column; the file has {present}", file=path, column=schema.user_id)
    return labels.with_columns(shard_expression(schema.user_id, num_shards))
