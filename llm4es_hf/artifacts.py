"""Every on-disk format the stages share, read and written in one place.

- raw tables: CSV (gzipped or not, any encoding the schema names) or Parquet, every column a
  string, with each row's file line so errors can point at it (``read_table``);
- corpora: a folder with ``serialized/`` and ``enriched/`` Parquet configs, ``users/`` (one row
  per user, one list per event field), ``schema.yaml`` and ``corpus_summary.json``;
- labels: from a corpus folder or a user table (``load_labels``);
- embeddings: Parquet with ``user_id`` and an ``embedding`` list column (``save_embeddings``,
  ``load_embeddings``; the authors' wide ``emb_*`` columns are read too);
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

ROW = "__line"
FILE = "__file"
CONFIGS = ("serialized", "enriched")
TEXT_COLUMNS = ["user_id", "text", "n_events", "n_events_kept", "n_tokens"]  # a corpus config's columns
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


def parquet_splits(folder: Path) -> datasets.DatasetDict | None:
    """The ``<split>-*.parquet`` files of a folder as one Dataset per split (None when there are none)."""
    files: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        files.setdefault(path.name.split("-")[0], []).append(path)
    if not files:
        return None
    return datasets.DatasetDict(
        {split: datasets.Dataset(pa.concat_tables([pq.read_table(p) for p in paths])) for split, paths in files.items()}
    )


def load_texts(corpus: str, config: str = "serialized", splits: Sequence[str] | None = None) -> datasets.Dataset:
    """The plain texts of a corpus (folder or Hub id), all requested splits, with a `split` column."""
    loaded = load_corpus_config(corpus, config)
    parts = []
    for split in splits or list(loaded):
        if split not in loaded:
            raise Llm4esError(f"corpus has no split {split!r}; it has {list(loaded)}", key="splits")
        ds = loaded[split]
        for column in ("user_id", "text"):
            if column not in ds.column_names:
                raise Llm4esError(f"corpus split {split!r} has no {column!r} column", file=corpus, column=column)
        parts.append(ds.select_columns(["user_id", "text"]).add_column("split", [split] * len(ds)))
    return datasets.concatenate_datasets(parts)


def save_embeddings(
    path: str | Path, user_ids: Sequence[str], embeddings: np.ndarray, extra: dict[str, Sequence[Any]] | None = None
) -> datasets.Dataset:
    """Write ``user_id`` + ``embedding`` as Parquet, and the same as a datasets folder beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {
        "user_id": [str(u) for u in user_ids],
        **(extra or {}),
        "embedding": [row for row in embeddings.astype(np.float32)],
    }
    features = datasets.Features(
        {
            "user_id": datasets.Value("string"),
            **{k: datasets.Value("string") for k in (extra or {})},
            "embedding": datasets.List(datasets.Value("float32"), length=embeddings.shape[1]),
        }
    )
    ds = datasets.Dataset.from_dict(columns, features=features)
    ds.to_parquet(str(path))
    ds.save_to_disk(str(path.with_suffix("")) + "_dataset")
    return ds


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
    (or wide ``emb_*`` columns, as the authors' code writes). Ids become strings, values float32.

    Fails, naming the file and column, on a missing column, ragged vectors, null or
    duplicate user ids, and NaN or infinite values.
    """
    path = Path(path)
    if not path.exists():
        raise Llm4esError("embeddings file not found", file=path)
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise Llm4esError(f"cannot read as Parquet: {err}", file=path) from err
    if "user_id" not in frame.columns:
        raise Llm4esError(f"no user_id column; the file has {frame.columns}", file=path, column="user_id")
    if len(frame) == 0:
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
    duplicated = ids.is_duplicated()
    if duplicated.any():
        first = int(duplicated.arg_max())
        raise Llm4esError(
            f"user id {ids[first]!r} appears more than once ({int(duplicated.sum())} rows with repeated ids)",
            file=path,
            row=first,
            column="user_id",
        )
    matrix = matrix.astype(np.float32)
    check_finite(matrix, str(path), names)
    return ids.to_numpy().astype(str), matrix


def _list_column(column: pl.Series, path: Path) -> tuple[np.ndarray, list[str]]:
    """A list/array column of equal-length numeric vectors as a 2-D array (nulls become NaN)."""
    if isinstance(column.dtype, pl.Array):
        column = column.cast(pl.List(column.dtype.inner))
    if not isinstance(column.dtype, pl.List) or not column.dtype.inner.is_numeric():
        raise Llm4esError(f"expected a list of numbers, got {column.dtype}", file=path, column="embedding")
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
