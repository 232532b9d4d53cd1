"""Building an index folder from files: an embeddings Parquet plus labels (a corpus folder or a table).

From a corpus folder the schema, the serialization settings and each user's text come along,
so that the index can embed new users' events the way the corpus was made.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..artifacts import corpus_serialization_settings, load_corpus_users, load_embeddings, load_labels
from ..errors import Llm4esError
from .index import EXACT_MAX_USERS, HNSW_MAX_USERS, INDEX_KINDS, IvfSettings, UserIndex


def build_index_from_files(
    embeddings: str | Path,
    output: str | Path,
    *,
    labels: str | Path | None = None,
    model: str | None = None,
    kind: str = "auto",
    exact_max_users: int = EXACT_MAX_USERS,
    hnsw_max_users: int = HNSW_MAX_USERS,
    ivf: IvfSettings | None = None,
) -> UserIndex:
    """`llm4es index`: an embeddings Parquet (+ labels: a corpus folder or a table) -> an index folder.

    From a corpus folder, the schema, the serialization settings and the texts come along,
    so the index can embed new users' events the way the corpus was made.
    """
    ids, matrix = load_embeddings(embeddings)
    label_frame = None
    if model is not None and Path(model).exists():  # kept relative, so the two folders can move together
        model = os.path.relpath(Path(model).resolve(), Path(output).resolve())
    info: dict[str, Any] = {"embeddings": str(embeddings), "model": model}
    corpus = None
    if labels is not None:
        loaded = load_labels(labels)
        label_frame = loaded.frame
        if loaded.split:
            label_frame = label_frame.join(
                pl.DataFrame({"user_id": list(loaded.split), "split": list(loaded.split.values())}),
                on="user_id",
                how="left",
            )
        corpus = loaded.corpus
        matched = int(np.isin(ids, label_frame["user_id"].to_numpy().astype(str)).sum())
        if matched == 0:
            raise Llm4esError(
                f"no embedded user has a label (e.g. {list(ids[:3])} vs {label_frame['user_id'].head(3).to_list()})",
                file=labels,
                column="user_id",
            )
        info["labels"] = {"source": str(labels), "matched_users": matched, "tasks": loaded.tasks}
    if corpus is not None:
        info["serialization"] = corpus_serialization_settings(corpus)
    index = UserIndex.build(
        ids,
        matrix,
        labels=label_frame,
        kind=kind,
        exact_max_users=exact_max_users,
        hnsw_max_users=hnsw_max_users,
        ivf=ivf,
        info=info,
    )
    folder = index.save(output)
    if corpus is not None:
        shutil.copy(corpus / "schema.yaml", folder / "schema.yaml")
        _write_texts(corpus, ids, folder / "texts.parquet")
    return index


def _write_texts(corpus: Path, ids: np.ndarray, path: Path) -> None:
    users, _ = load_corpus_users(corpus)
    frames = [
        pl.from_arrow(ds.select_columns(["user_id", "text"]).with_format("arrow")[:])
        for ds in users.values()
        if "text" in ds.column_names
    ]
    if not frames:
        return
    texts = pl.concat(frames).with_columns(pl.col("user_id").cast(pl.Utf8))
    texts.filter(pl.col("user_id").is_in(ids.tolist())).write_parquet(path)


@dataclass
class IndexConfig:
    """Options of `llm4es index` (the search stage's own; the CLI parses them)."""

    embeddings: str | None = field(
        default=None, metadata={"help": "Parquet file or shard folder written by `llm4es embed` (user_id, embedding)"}
    )
    output: str | None = field(default=None, metadata={"help": "index folder to write"})
    labels: str | None = field(
        default=None,
        metadata={"help": "corpus folder (labels, split, schema and texts come along) or a CSV/Parquet label table"},
    )
    model: str | None = field(
        default=None, metadata={"help": "the model that made the embeddings (folder or Hub id), recorded for queries"}
    )
    kind: str = field(
        default="auto",
        metadata={"help": f"one of {list(INDEX_KINDS)}: by size, exact inner product, HNSW, compressed IVF"},
    )
    exact_max_users: int = field(
        default=EXACT_MAX_USERS,
        metadata={"help": f"auto: exact up to this many users, HNSW above ({EXACT_MAX_USERS:,})"},
    )
    hnsw_max_users: int = field(
        default=HNSW_MAX_USERS,
        metadata={"help": f"auto: HNSW up to this many users, compressed IVF above ({HNSW_MAX_USERS:,})"},
    )
    ivf_codec: str = field(
        default=IvfSettings.codec,
        metadata={
            "help": "ivf: auto (fastscan from 256 dims, else SQ8), fastscan (4-bit PQ scan + SQ8 re-rank), "
            "SQ8 (1 byte per dimension), PQ<m> (m bytes)"
        },
    )
    ivf_nlist: int = field(default=0, metadata={"help": "ivf: inverted lists (0: about 2*sqrt(users))"})
    ivf_train_size: int = field(default=0, metadata={"help": "ivf: k-means sample (0: 50 per list, at most 200k)"})
    ivf_nprobe: int = field(default=0, metadata={"help": "ivf: lists visited per query (0: calibrated for the recall)"})
    ivf_target_recall: float = field(
        default=IvfSettings.target_recall,
        metadata={"help": "ivf: recall@10 against exact search that the calibrated nprobe must reach"},
    )
    push_to_hub: str | None = field(
        default=None, metadata={"help": "ORG/NAME: also push the folder as a Hub data set repo"}
    )
    public: bool = field(default=False, metadata={"help": "with --push-to-hub: public (default: private)"})
