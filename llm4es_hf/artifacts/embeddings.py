"""Embeddings: Parquet with ``user_id`` and an ``embedding`` list column (``save_embeddings``,
``load_embeddings``; the authors' wide ``emb_*`` columns are read too), or a folder of such shards
``<split>-0000k-of-0000N.parquet`` with a ``manifest.json`` (``write_embedding_shard``), each written
atomically (``llm4es_hf.shards``), so a killed run leaves only whole files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from ..errors import Llm4esError
from ..shards import finished_shards, read_shards_manifest, write_atomically

Matrix = np.ndarray | sp.spmatrix


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
