"""The user index: a FAISS index over user embeddings, saved with the user ids, labels and a 2-D map.

Vectors are centered on the indexed users' mean (LLM hidden states share one large common
direction that would otherwise dominate every cosine) and L2-normalized, so inner product is
cosine similarity. Up to ``exact_max_users`` users the index is exact (``IndexFlatIP``);
above it, HNSW (approximate, about 10x faster per query at 100k users).

An index folder holds ``index.faiss``, ``users.parquet`` (user_id, labels, split, map x/y),
``projection.npz`` (the centering mean and the 2-D PCA), ``index.json`` (kind, sizes, the
model and serialization that made the vectors), and, when built from a corpus, the event
``schema.yaml`` and ``texts.parquet`` (what the model saw per user), so that new users'
events can be embedded the same way (``search.query.QueryEncoder``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from ..artifacts import INDEX_FILES
from ..assets import is_hub_repo_id
from ..errors import Llm4esError
from ..extras import require

INDEX_KINDS = ("auto", "exact", "hnsw")
EXACT_MAX_USERS = 50_000
HNSW_NEIGHBORS = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128


def _faiss() -> Any:
    return require("faiss")  # the `search` extra


def choose_kind(kind: str, n_users: int, exact_max_users: int = EXACT_MAX_USERS) -> str:
    """`auto` -> exact up to ``exact_max_users`` users, HNSW above."""
    if kind not in INDEX_KINDS:
        raise Llm4esError(f"index kind must be one of {list(INDEX_KINDS)}, got {kind!r}", key="kind")
    if kind != "auto":
        return kind
    return "exact" if n_users <= exact_max_users else "hnsw"


def make_faiss_index(vectors: np.ndarray, kind: str) -> Any:
    """An inner-product FAISS index over ``vectors`` (already centered and normalized)."""
    faiss = _faiss()
    dim = vectors.shape[1]
    if kind == "exact":
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_NEIGHBORS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def normalize_rows(vectors: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Center on ``mean`` and scale each row to unit length (zero rows stay zero)."""
    centered = np.asarray(vectors, dtype=np.float32) - mean
    norms = np.linalg.norm(centered, axis=1, keepdims=True)
    return centered / np.maximum(norms, 1e-12)


@dataclass
class UserIndex:
    """A searchable set of users (see the module docstring)."""

    index: Any
    users: pl.DataFrame
    mean: np.ndarray
    components: np.ndarray
    info: dict[str, Any]
    folder: Path | None = None

    # ----- building -----------------------------------------------------------------
    @classmethod
    def build(
        cls,
        user_ids: np.ndarray | list[str],
        embeddings: np.ndarray,
        *,
        labels: pl.DataFrame | None = None,
        kind: str = "auto",
        exact_max_users: int = EXACT_MAX_USERS,
        info: dict[str, Any] | None = None,
    ) -> UserIndex:
        """Index ``embeddings`` (one row per user id); ``labels`` (user_id + columns) is joined on user_id."""
        ids = np.asarray(user_ids).astype(str)
        matrix = np.asarray(embeddings, dtype=np.float32)
        if matrix.ndim != 2 or len(matrix) != len(ids):
            raise Llm4esError(f"expected one embedding row per user id, got {matrix.shape} for {len(ids)} ids")
        if len(ids) < 2:
            raise Llm4esError("an index needs at least 2 users")
        if not np.isfinite(matrix).all():
            raise Llm4esError("embeddings hold NaN or infinite values", column="embedding")
        kind = choose_kind(kind, len(ids), exact_max_users)
        mean = matrix.mean(0)
        vectors = normalize_rows(matrix, mean)
        components = _pca_components(vectors)
        xy = vectors @ components.T
        users = pl.DataFrame({"user_id": ids, "x": xy[:, 0], "y": xy[:, 1]})
        if labels is not None:
            extra = labels.with_columns(pl.col("user_id").cast(pl.Utf8)).select(
                "user_id", *[pl.col(c).cast(pl.Utf8) for c in labels.columns if c != "user_id"]
            )
            users = users.join(extra, on="user_id", how="left", maintain_order="left")
        index = make_faiss_index(vectors, kind)
        meta = {
            "kind": kind,
            "n_users": len(ids),
            "dimension": int(matrix.shape[1]),
            "metric": "cosine (centered, L2-normalized, inner product)",
            "label_columns": [c for c in users.columns if c not in ("user_id", "x", "y", "split")],
            **(info or {}),
        }
        return cls(index=index, users=users, mean=mean, components=components, info=meta)

    def save(self, folder: str | Path) -> Path:
        """Write the index folder (see the module docstring)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _faiss().write_index(self.index, str(folder / "index.faiss"))
        self.users.write_parquet(folder / "users.parquet")
        np.savez(folder / "projection.npz", mean=self.mean, components=self.components)
        (folder / "index.json").write_text(json.dumps(self.info, indent=2, default=str))
        self.folder = folder
        return folder

    @classmethod
    def load(cls, path_or_repo: str | Path) -> UserIndex:
        """Load an index folder, or download one from a Hub data set repo (``org/name``)."""
        folder = resolve_index_folder(path_or_repo)
        missing = [name for name in INDEX_FILES if not (folder / name).exists()]
        if missing:
            raise Llm4esError(f"not an index folder: missing {missing} (build one with `llm4es index`)", file=folder)
        try:
            index = _faiss().read_index(str(folder / "index.faiss"))
        except RuntimeError as err:
            raise Llm4esError(f"cannot read the FAISS index: {err}", file=folder / "index.faiss") from err
        users = pl.read_parquet(folder / "users.parquet")
        projection = np.load(folder / "projection.npz")
        info = json.loads((folder / "index.json").read_text())
        model = info.get("model")
        if model and not Path(model).is_absolute() and (folder / model).exists():
            info["model"] = str((folder / model).resolve())
        if index.ntotal != len(users):
            raise Llm4esError(
                f"the index holds {index.ntotal} vectors but users.parquet {len(users)} rows", file=folder
            )
        return cls(
            index=index,
            users=users,
            mean=projection["mean"],
            components=projection["components"],
            info=info,
            folder=folder,
        )

    # ----- querying -----------------------------------------------------------------
    @property
    def dimension(self) -> int:
        return int(self.index.d)

    @property
    def label_columns(self) -> list[str]:
        return list(self.info.get("label_columns", []))

    @functools.cached_property
    def user_ids(self) -> np.ndarray:
        return self.users["user_id"].to_numpy()

    @functools.cached_property
    def _positions(self) -> dict[str, int]:
        return {user_id: row for row, user_id in enumerate(self.user_ids)}

    def position(self, user_id: str) -> int:
        """Row of a known user; unknown ids are an error naming a few known ones."""
        row = self._positions.get(str(user_id))
        if row is None:
            examples = ", ".join(self.users["user_id"].head(3).to_list())
            raise Llm4esError(
                f"unknown user id {str(user_id)!r}; the index has {len(self.users):,} users (e.g. {examples})",
                column="user_id",
            )
        return row

    def vector(self, user_id: str) -> np.ndarray:
        """The stored (centered, normalized) vector of a known user."""
        return self.index.reconstruct(self.position(user_id))

    def prepare(self, embeddings: np.ndarray) -> np.ndarray:
        """Raw embeddings (as `llm4es embed` writes them) -> the index's vector space."""
        matrix = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if matrix.shape[1] != self.dimension:
            raise Llm4esError(
                f"query embeddings have {matrix.shape[1]} dimensions, the index {self.dimension} "
                "(embed with the model the index was built from)"
            )
        return normalize_rows(matrix, self.mean)

    def search_vectors(self, vectors: np.ndarray, k: int = 10, exclude: list[str] | None = None) -> list[pl.DataFrame]:
        """Top-k users per prepared query vector: rank, user_id, similarity, labels.

        ``exclude[i]`` (a user id) is dropped from query i's results: a known user is
        not its own neighbour.
        """
        if k < 1:
            raise Llm4esError(f"k must be at least 1, got {k}", key="k")
        k = min(k, len(self.users) - (1 if exclude else 0))
        extra = 1 if exclude else 0
        scores, rows = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k + extra)
        results = []
        for i in range(len(vectors)):
            keep = rows[i] >= 0
            hit_rows, hit_scores = rows[i][keep], scores[i][keep]
            if exclude and exclude[i] is not None:
                own = self.user_ids[hit_rows] != str(exclude[i])
                hit_rows, hit_scores = hit_rows[own], hit_scores[own]
            hit_rows, hit_scores = hit_rows[:k], hit_scores[:k]
            table = self.users[hit_rows.tolist()].select(pl.exclude("x", "y"))
            results.append(
                table.with_columns(
                    pl.Series("similarity", np.round(hit_scores.astype(np.float64), 4)),
                    pl.Series("rank", np.arange(1, len(hit_rows) + 1)),
                ).select("rank", "user_id", "similarity", pl.exclude("rank", "user_id", "similarity"))
            )
        return results

    def neighbors_of(self, user_id: str, k: int = 10) -> pl.DataFrame:
        """The k nearest other users of a known user."""
        return self.search_vectors(self.vector(user_id)[None], k, exclude=[str(user_id)])[0]

    def search(self, embeddings: np.ndarray, k: int = 10) -> list[pl.DataFrame]:
        """The k nearest users of each raw embedding (new users, not in the index)."""
        return self.search_vectors(self.prepare(embeddings), k)

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """Prepared vectors -> their 2-D map coordinates (the PCA fitted on the indexed users)."""
        return np.atleast_2d(vectors) @ self.components.T

    def texts(self) -> pl.DataFrame | None:
        """user_id + text (what the model saw), when the index was built from a corpus."""
        if self.folder is None or not (self.folder / "texts.parquet").exists():
            return None
        return pl.read_parquet(self.folder / "texts.parquet")


def _pca_components(vectors: np.ndarray, sample: int = 20_000, seed: int = 0) -> np.ndarray:
    """The top-2 principal directions (2 x dim), fitted on at most ``sample`` rows."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    rows = vectors if len(vectors) <= sample else vectors[rng.choice(len(vectors), sample, replace=False)]
    pca = PCA(n_components=min(2, rows.shape[1]), random_state=seed).fit(rows)
    components = pca.components_.astype(np.float32)
    if len(components) < 2:
        components = np.vstack([components, np.zeros_like(components)])
    return components


def label_distribution(neighbors: pl.DataFrame, label: str) -> dict[str, float]:
    """Share of each value of ``label`` among the neighbours (missing labels shown as 'unknown')."""
    if label not in neighbors.columns or not len(neighbors):
        return {}
    counts = neighbors[label].fill_null("unknown").value_counts(sort=True)
    total = counts["count"].sum()
    return {str(value): round(count / total, 4) for value, count in counts.iter_rows()}


def resolve_index_folder(path_or_repo: str | Path) -> Path:
    """A local folder as it is, else a Hub data set repo id downloaded with huggingface_hub."""
    path = Path(path_or_repo)
    if path.exists():
        if not path.is_dir():
            raise Llm4esError("an index is a folder (index.faiss, users.parquet, ...), not a file", file=path)
        return path
    text = str(path_or_repo)
    if not is_hub_repo_id(text):
        raise Llm4esError("index folder not found (and not a Hub repo id org/name)", file=path)
    try:
        return Path(snapshot_download(text, repo_type="dataset"))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        raise Llm4esError(f"cannot download the index from the Hub data set {text!r}: {err}", file=text) from err
