"""Every on-disk format the stages share, read and written in one place.

- raw tables: CSV (gzipped or not, any encoding the schema names) or Parquet, every column a
  string, with each row's file line so errors can point at it (``read_table``);
- corpora: a folder with ``serialized/`` and ``enriched/`` Parquet configs, ``users/`` (one row
  per user, one list per event field), ``schema.yaml`` and ``corpus_summary.json``;
- labels: from a corpus folder or a user table (``load_labels``);
- embeddings: Parquet with ``user_id`` and an ``embedding`` list column (``save_embeddings``,
  ``load_embeddings``; the authors' wide ``emb_*`` columns are read too), or a folder of such
  shards ``<split>-0000k-of-0000N.parquet`` with a ``manifest.json`` (``write_embedding_shard``),
  each written under a temporary name and renamed, so a killed run leaves only whole files;
- model folders: ``llm4es_embedding.json`` (pooling) and ``llm4es_serialization.json`` +
  ``schema.yaml`` (how raw events became the texts the model was trained on);
- index folders: INDEX_FILES.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from .assets import model_file
from .errors import Llm4esError
from .schema import EventSchema, load_schema, save_schema
from .shards import finished_shards, read_shards_manifest, write_atomically

ROW = "__line"
FILE = "__file"
CONFIGS = ("serialized", "enriched")
CORPUS_COLUMNS = ["user_id", "text", "n_events", "n_events_kept", "n_tokens"]  # a corpus config's columns
INDEX_FILES = ("index.faiss", "users.parquet", "projection.npz", "index.json")
EMBEDDING_SETTINGS = "llm4es_embedding.json"
SERIALIZATION_SETTINGS = "llm4es_serialization.json"
SERIALIZATION_KEYS = ("format", "max_events", "max_tokens", "tokenizer")

Matrix = np.ndarray | sp.spmatrix


# ----- raw tables -----


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
        sep = separator or _sniff_separator(text, path)
        try:
            frame = pl.read_csv(text.encode("utf-8"), separator=sep, infer_schema=False, quote_char=quote_char)
        except pl.exceptions.PolarsError as err:
            raise Llm4esError(f"cannot parse as CSV: {err}", file=path) from err
        frame = frame.with_row_index(ROW, offset=2)
    frame = frame.rename({c: c.strip() for c in frame.columns if c != ROW})
    return frame.with_columns(pl.lit(str(path)).alias(FILE))


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


NA_VALUES = ("", "nan", "NaN", "NAN", "NA", "N/A", "null", "NULL", "None")


# ----- corpora -----


def load_corpus_config(path_or_repo: str | Path, config: str) -> datasets.DatasetDict:
    """One config of a corpus, every split: read straight from the Parquet files of a local corpus
    folder, else through ``datasets.load_dataset`` (a Hub id, or another local layout).

    Local corpora bypass the datasets cache on purpose: with datasets 5.2, ``load_dataset(folder,
    config)`` on a *different* folder of the same name with the same file names returned the rows
    cached for the first one (seen with two corpora both called ``corpus``).
    """
    local = parquet_splits(Path(path_or_repo) / config)
    if local is not None:
        return local
    try:
        return datasets.load_dataset(str(path_or_repo), config)
    except (FileNotFoundError, ValueError, OSError) as err:
        raise Llm4esError(f"cannot load corpus {str(path_or_repo)!r} config {config!r}: {err}", key="corpus") from err


def split_files(folder: Path) -> dict[str, list[Path]]:
    """The ``<split>-*.parquet`` files of a folder by split, sorted; {} when there are none."""
    files: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        files.setdefault(path.name.split("-")[0], []).append(path)
    return files


def config_files(path_or_repo: str | Path, config: str) -> dict[str, list[Path]]:
    """The Parquet files of one config of a local corpus folder, by split; {} for a Hub id or a
    folder without them."""
    return split_files(Path(path_or_repo) / config)


def parquet_splits(folder: Path) -> datasets.DatasetDict | None:
    """The ``<split>-*.parquet`` files of a folder as one Dataset per split (None when there are none)."""
    files = split_files(folder)
    if not files:
        return None
    return datasets.DatasetDict(
        {split: datasets.Dataset(pa.concat_tables([pq.read_table(p) for p in paths])) for split, paths in files.items()}
    )


TEXT_COLUMNS = ("user_id", "text")


@dataclass(eq=False)
class SplitTexts:
    """One split of a corpus config's plain texts, read a row range at a time: from the local
    Parquet files (only the row groups a range needs), else from a loaded Dataset (a Hub corpus)."""

    split: str
    rows: int
    files: list[Path] = field(default_factory=list)
    file_rows: list[int] = field(default_factory=list)
    dataset: datasets.Dataset | None = None

    def read(self, start: int = 0, stop: int | None = None) -> pa.Table:
        """Rows ``[start, stop)`` as an Arrow table of ``user_id`` (as strings) and ``text``."""
        stop = self.rows if stop is None else stop
        if self.dataset is not None:
            frame = pl.from_arrow(self.dataset.select_columns(list(TEXT_COLUMNS)).with_format("arrow")[start:stop])
        else:
            parts, offset = [], 0
            for path, rows in zip(self.files, self.file_rows, strict=True):
                low, high = max(start - offset, 0), min(stop - offset, rows)
                if low < high:
                    parts.append(pl.scan_parquet(path).select(TEXT_COLUMNS).slice(low, high - low).collect())
                offset += rows
            frame = pl.concat(parts) if parts else pl.DataFrame(schema=dict.fromkeys(TEXT_COLUMNS, pl.Utf8))
        table = frame.select(pl.col("user_id").cast(pl.Utf8), pl.col("text").cast(pl.Utf8)).to_arrow()
        return table.cast(pa.schema([(column, pa.large_string()) for column in TEXT_COLUMNS]))

    def describe(self) -> dict[str, Any]:
        """What identifies these rows: each file's name, size and row count (or the Dataset's fingerprint)."""
        if self.dataset is not None:
            return {"split": self.split, "rows": self.rows, "fingerprint": self.dataset._fingerprint}
        return {
            "split": self.split,
            "rows": self.rows,
            "files": [
                {"name": f"{path.parent.name}/{path.name}", "bytes": path.stat().st_size, "rows": rows}
                for path, rows in zip(self.files, self.file_rows, strict=True)
            ],
        }


def corpus_text_splits(
    corpus: str, config: str = "serialized", splits: Sequence[str] | None = None
) -> list[SplitTexts]:
    """The requested splits (default: all) of a corpus' plain texts, each checked for ``user_id`` and
    ``text`` columns (every file of a local corpus, from its Parquet footer, before any row is read)."""
    files = config_files(corpus, config)
    loaded = None if files else load_corpus_config(corpus, config)
    available = list(files or loaded)
    out = []
    for split in splits or available:
        if split not in available:
            raise Llm4esError(f"corpus has no split {split!r}; it has {available}", key="splits")
        if loaded is not None:
            ds = loaded[split]
            for column in TEXT_COLUMNS:
                if column not in ds.column_names:
                    raise Llm4esError(f"corpus split {split!r} has no {column!r} column", file=corpus, column=column)
            out.append(SplitTexts(split, len(ds), dataset=ds))
            continue
        first = None
        for path in files[split]:
            schema = pq.read_schema(path)
            for column in TEXT_COLUMNS:
                if column not in schema.names:
                    raise Llm4esError(f"no {column!r} column; the file has {schema.names}", file=path, column=column)
            types = {column: str(schema.field(column).type) for column in TEXT_COLUMNS}
            if first is not None and types != first[1]:
                raise Llm4esError(
                    f"column types {types} differ from {first[1]} in {first[0].name}, the split's first file",
                    file=path,
                )
            first = first or (path, types)
        rows = [pq.ParquetFile(path).metadata.num_rows for path in files[split]]
        out.append(SplitTexts(split, sum(rows), files=files[split], file_rows=rows))
    return out


def load_texts(corpus: str, config: str = "serialized", splits: Sequence[str] | None = None) -> datasets.Dataset:
    """The plain texts of a corpus (folder or Hub id), all requested splits, with a `split` column."""
    tables = []
    for part in corpus_text_splits(corpus, config, splits):
        table = part.read()
        tables.append(table.append_column("split", pa.array([part.split] * len(table), pa.large_string())))
    return datasets.Dataset(pa.concat_tables(tables))


def embeddings_table(
    user_ids: Sequence[str], embeddings: np.ndarray, extra: dict[str, Sequence[Any]] | None = None
) -> pa.Table:
    """``user_id`` (string), the ``extra`` string columns and ``embedding`` (fixed-size float32 list)."""
    features = datasets.Features(
        {
            "user_id": datasets.Value("string"),
            **{k: datasets.Value("string") for k in (extra or {})},
            "embedding": datasets.List(datasets.Value("float32"), length=embeddings.shape[1]),
        }
    )
    flat = pa.array(np.ascontiguousarray(embeddings, dtype=np.float32).ravel())
    columns = {
        "user_id": pa.array([str(u) for u in user_ids], pa.string()),
        **{k: pa.array([str(v) for v in values], pa.string()) for k, values in (extra or {}).items()},
        "embedding": pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[1]),
    }
    return pa.table(columns, schema=features.arrow_schema)


def save_embeddings(
    path: str | Path, user_ids: Sequence[str], embeddings: np.ndarray, extra: dict[str, Sequence[Any]] | None = None
) -> datasets.Dataset:
    """Write ``user_id`` + ``embedding`` as Parquet, and the same as a datasets folder beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = datasets.Dataset(embeddings_table(user_ids, embeddings, extra))
    ds.to_parquet(str(path))
    ds.save_to_disk(str(path.with_suffix("")) + "_dataset")
    return ds


# ----- sharded embeddings -----


def write_embedding_shard(path: Path, user_ids: Sequence[str], embeddings: np.ndarray, split: str) -> Path:
    """One shard of a sharded embeddings folder (the columns of ``save_embeddings``), atomically."""
    table = embeddings_table(user_ids, embeddings, {"split": [split] * len(user_ids)})
    return write_atomically(path, lambda temporary: pq.write_table(table, temporary))


def embedding_files(folder: Path) -> list[Path]:
    """The Parquet files of a sharded embeddings folder in order: the manifest's shards (all of them
    written, else an error saying how to finish), or every ``*.parquet`` by name without a manifest."""
    manifest = read_shards_manifest(folder)
    if manifest is None:
        paths = sorted(folder.glob("*.parquet"))
        if not paths:
            raise Llm4esError("the folder holds no Parquet files (embeddings)", file=folder)
        return paths
    names = [shard["name"] for shard in manifest["shards"]]
    done = finished_shards(folder, manifest["shards"])
    missing = [name for name in names if name not in done]
    if missing:
        raise Llm4esError(
            f"{len(missing)} of {len(names)} shards are not written yet (first: {missing[0]}): the run was "
            "stopped or is still going; finish it by rerunning the same `llm4es embed` command",
            file=folder,
        )
    return [folder / name for name in names]


def corpus_serialization_settings(corpus: Path) -> dict[str, Any]:
    """How the corpus turned events into text (format, event cap, token budget, tokenizer)."""
    summary_path = corpus / "corpus_summary.json"
    if not summary_path.exists():
        return {}
    config = json.loads(summary_path.read_text()).get("config", {})
    return {key: config.get(key) for key in SERIALIZATION_KEYS}


# ----- labels and embeddings -----


def load_embeddings(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``(user_ids, matrix)`` from a Parquet with ``user_id`` and an ``embedding`` list column
    (or wide ``emb_*`` columns, as the authors' code writes), or from a folder of such shards
    (``llm4es embed --output FOLDER``: all of its manifest's shards, in order). Ids become strings,
    values float32.

    Fails, naming the file and column, on a missing column, ragged vectors, null or duplicate user
    ids (across shards too), NaN or infinite values, a shard whose schema differs from the first's,
    and a sharded folder whose run has not finished.
    """
    path = Path(path)
    if not path.exists():
        raise Llm4esError("embeddings file not found", file=path)
    paths = embedding_files(path) if path.is_dir() else [path]
    ids, matrices, files, first_schema = [], [], [], None
    for part in paths:
        try:
            schema = pq.read_schema(part).remove_metadata()
        except (pa.ArrowException, OSError) as err:
            raise Llm4esError(f"cannot read as Parquet: {err}", file=part) from err
        if first_schema is not None and not schema.equals(first_schema):
            raise Llm4esError(
                f"schema differs from {paths[0].name}'s: {_schema_difference(first_schema, schema)}", file=part
            )
        first_schema = first_schema or schema
        part_ids, matrix = _read_embedding_file(part, allow_empty=len(paths) > 1)
        if matrices and len(matrix) and matrix.shape[1] != matrices[0].shape[1]:
            raise Llm4esError(
                f"embeddings of {matrix.shape[1]} dims, but {paths[0].name}'s have {matrices[0].shape[1]}",
                file=part,
                column="embedding",
            )
        ids.append(part_ids)
        matrices.append(matrix)
        files.append(pl.Series([part.name] * len(part_ids), dtype=pl.Utf8))
    user_ids, file_names = pl.concat(ids), pl.concat(files)
    if len(user_ids) == 0:
        raise Llm4esError("the embeddings have no rows", file=path)
    duplicated = user_ids.is_duplicated()
    if duplicated.any():
        first = int(duplicated.arg_max())
        where = sorted(set(file_names.filter(user_ids == user_ids[first]).to_list()))
        raise Llm4esError(
            f"user id {user_ids[first]!r} appears more than once ({int(duplicated.sum())} rows with repeated ids; "
            f"in {', '.join(where)})",
            file=path,
            row=first if len(paths) == 1 else None,
            column="user_id",
        )
    return user_ids.to_numpy().astype(str), np.concatenate(matrices)


def _schema_difference(first: pa.Schema, other: pa.Schema) -> str:
    """The first column that differs between two Parquet schemas, in words."""
    for name in first.names:
        if name not in other.names:
            return f"no {name!r} column"
        if first.field(name).type != other.field(name).type:
            return f"column {name!r} is {other.field(name).type}, not {first.field(name).type}"
    extra = [name for name in other.names if name not in first.names]
    return f"extra columns {extra}" if extra else f"column order {other.names}, not {first.names}"


def _read_embedding_file(path: Path, *, allow_empty: bool = False) -> tuple[pl.Series, np.ndarray]:
    """One embeddings Parquet file, checked (see ``load_embeddings``); ids as a string Series."""
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise Llm4esError(f"cannot read as Parquet: {err}", file=path) from err
    if "user_id" not in frame.columns:
        raise Llm4esError(f"no user_id column; the file has {frame.columns}", file=path, column="user_id")
    if len(frame) == 0 and not allow_empty:
        raise Llm4esError("the embeddings file has no rows", file=path)
    if "embedding" in frame.columns:
        matrix, names = _list_column(frame["embedding"], path)
    else:
        names = [c for c in frame.columns if c.startswith("emb_")]
        if not names:
            raise Llm4esError(
                f"expected an `embedding` list column or `emb_*` columns; the file has {frame.columns}", file=path
            )
        for name in names:
            if not frame[name].dtype.is_numeric():
                raise Llm4esError(f"not a numeric column ({frame[name].dtype})", file=path, column=name)
        matrix = frame.select(pl.col(names).cast(pl.Float64)).to_numpy()
    ids = frame["user_id"].cast(pl.Utf8)
    if ids.null_count():
        raise Llm4esError("missing user id", file=path, row=int(ids.is_null().arg_max()), column="user_id")
    matrix = matrix.astype(np.float32)
    check_finite(matrix, str(path), names)
    return ids, matrix


def _list_column(column: pl.Series, path: Path) -> tuple[np.ndarray, list[str]]:
    """A list/array column of equal-length numeric vectors as a 2-D array (nulls become NaN)."""
    width = column.dtype.size if isinstance(column.dtype, pl.Array) else 0
    if isinstance(column.dtype, pl.Array):
        column = column.cast(pl.List(column.dtype.inner))
    if not isinstance(column.dtype, pl.List) or not column.dtype.inner.is_numeric():
        raise Llm4esError(f"expected a list of numbers, got {column.dtype}", file=path, column="embedding")
    if len(column) == 0:  # an empty shard: the width is in the fixed-size type, if anywhere
        return np.zeros((0, width)), [f"embedding[{i}]" for i in range(width)]
    lengths = column.list.len()
    if lengths.null_count():
        raise Llm4esError("missing embedding", file=path, row=int(lengths.is_null().arg_max()), column="embedding")
    dim = int(lengths[0])
    ragged = lengths != dim
    if ragged.any():
        row = int(ragged.arg_max())
        raise Llm4esError(
            f"embedding of length {lengths[row]}, but row 0 has {dim}", file=path, row=row, column="embedding"
        )
    if dim == 0:
        raise Llm4esError("empty embeddings", file=path, column="embedding")
    values = column.explode().cast(pl.Float64).to_numpy()
    return values.reshape(len(column), dim), [f"embedding[{i}]" for i in range(dim)]


def check_finite(matrix: Matrix, where: str, names: Sequence[str] | None = None) -> None:
    """Error on the first column holding NaN or infinite values, naming it by index (and name)."""
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix)
    if np.isfinite(values).all():
        return
    if sp.issparse(matrix):
        coo = matrix.tocoo()
        bad = ~np.isfinite(coo.data)
        rows, columns, bad_values = coo.row[bad], coo.col[bad], coo.data[bad]
    else:
        rows, columns = np.nonzero(~np.isfinite(values))
        bad_values = values[rows, columns]
    column = int(columns.min())
    in_column = columns == column
    row = int(rows[in_column].min())
    kind = "NaN" if np.isnan(bad_values[in_column]).any() else "infinite"
    raise Llm4esError(
        f"{kind} value in column index {column} ({int(in_column.sum())} rows with a non-finite value there, "
        f"first at row {row}; {int(len(np.unique(columns)))} such columns)",
        file=where,
        column=names[column] if names is not None else str(column),
    )


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


def _users_folder(folder: Path) -> Path | None:
    """The saved users DatasetDict of a corpus (``users/``) or a ``llm4es serialize`` output folder."""
    for candidate in (folder / "users", folder):
        if (candidate / "dataset_dict.json").exists():
            return candidate
    return None


def load_corpus_users(folder: str | Path) -> tuple[Any, Any]:
    """``(users DatasetDict, EventSchema)`` of a corpus folder (``users/`` + ``schema.yaml``); ``users/``
    is a saved DatasetDict (one-shot corpora) or ``<split>-0000k-of-0000N.parquet`` shards."""
    folder = Path(folder)
    users_folder = _users_folder(folder) if folder.is_dir() else None
    sharded = parquet_splits(folder / "users") if users_folder is None else None
    if users_folder is None and sharded is None:
        raise Llm4esError(
            "not a corpus folder (expected users/ with a saved DatasetDict or <split>-*.parquet shards)", file=folder
        )
    if not (folder / "schema.yaml").exists():
        raise Llm4esError("the corpus folder has no schema.yaml", file=folder)
    users = sharded if sharded is not None else datasets.load_from_disk(str(users_folder))
    return users, load_schema(folder / "schema.yaml")


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


def embedding_settings(model_dir: str | Path) -> dict[str, Any]:
    """The pooling settings saved with a model by export_sentence_transformer ({} when absent);
    a Hub model id is looked up on the Hub (or its cache)."""
    path = model_file(model_dir, EMBEDDING_SETTINGS)
    return json.loads(path.read_text()) if path is not None else {}


def write_serialization_settings(model_dir: str | Path, corpus: str | Path) -> bool:
    """Copy a local corpus' schema and serialization settings into a model folder, so that the
    model turns raw events into text exactly as its corpus did. False when the corpus has none."""
    corpus, model_dir = Path(corpus), Path(model_dir)
    settings = corpus_serialization_settings(corpus)
    if not settings or not (corpus / "schema.yaml").exists():
        return False
    save_schema(load_schema(corpus / "schema.yaml"), model_dir / "schema.yaml")
    (model_dir / SERIALIZATION_SETTINGS).write_text(json.dumps(settings, indent=2))
    return True


def serialization_settings(model: str | Path) -> tuple[EventSchema, dict[str, Any]] | None:
    """``(schema, settings)`` saved in a model folder or Hub repo, None when it carries none."""
    settings_path = model_file(model, SERIALIZATION_SETTINGS)
    schema_file = model_file(model, "schema.yaml") if settings_path is not None else None
    if settings_path is None or schema_file is None:
        return None
    return load_schema(schema_file), json.loads(settings_path.read_text())
