"""Corpus folders: ``serialized/`` and ``enriched/`` Parquet configs (or a saved DatasetDict), ``users/``
(one row per user, one list per event field), ``schema.yaml`` and ``corpus_summary.json``; read locally or
from a Hub data set repo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import Llm4esError
from ..schema import load_schema

CONFIGS = ("serialized", "enriched")
CORPUS_COLUMNS = ["user_id", "text", "n_events", "n_events_kept", "n_tokens"]  # a corpus config's columns
TEXT_COLUMNS = ("user_id", "text")


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
