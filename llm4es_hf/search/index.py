"""The user index: a FAISS index over user embeddings, saved with the user ids, labels and a 2-D map.

Vectors are centered on the indexed users' mean (LLM hidden states share one large common
direction that would otherwise dominate every cosine) and L2-normalized, so inner product is
cosine similarity. Up to ``exact_max_users`` users the index is exact (``IndexFlatIP``);
above it, HNSW (approximate, about 10x faster per query at 100k users, but it keeps every
float: ~2.5 KB per 576-dim user); above ``hnsw_max_users``, a compressed IVF index
(``ivf``: inverted lists with 8-bit scalar-quantized residuals, ~0.6 KB per user, k-means
trained on a sample), whose ``nprobe`` is chosen at build time for a target recall@10
against exact search on a sample of the indexed users (see ``IvfSettings``).

An index folder holds ``index.faiss``, ``users.parquet`` (user_id, labels, split, map x/y),
``projection.npz`` (the centering mean and the 2-D PCA), ``index.json`` (kind, sizes, the
model and serialization that made the vectors), and, when built from a corpus, the event
``schema.yaml`` and ``texts.parquet`` (what the model saw per user), so that new users'
events can be embedded the same way (``search.query.QueryEncoder``), and a ``README.md`` card.

Long (about 500 lines) because the three index kinds share the build, the save and the query
paths of ``UserIndex``; the files and the query encoder live in ``files`` and ``query``.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from ..artifacts import INDEX_FILES
from ..assets import is_hub_repo_id
from ..cards import write_index_card
from ..errors import Llm4esError
from ..extras import require

INDEX_KINDS = ("auto", "exact", "hnsw", "ivf")
EXACT_MAX_USERS = 50_000
HNSW_MAX_USERS = 250_000  # HNSW keeps every float: ~0.64 GB at 250k x 576 dims
HNSW_NEIGHBORS = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
_CODEC = re.compile(r"^(auto|fastscan|SQ8|SQ6|SQ4|SQfp16|PQ\d+(x\d+)?)$")
FASTSCAN_MIN_DIM = 256  # auto codec: fastscan from here up, SQ8 below (see IvfSettings)
REFINE_K_FACTOR = 16  # fastscan: candidates re-ranked with the SQ8 codes, per neighbour asked
_ADD_BATCH = 65_536


@dataclass
class IvfSettings:
    """How the compressed (``ivf``) index is made.

    ``codec``: ``fastscan`` scans 4-bit product-quantized residuals to the list centres (dim/2
    sub-quantizers, SIMD look-ups) and re-ranks the best 16k candidates with SQ8 codes of the
    vectors; at 1M users x 576 dims it answers in 3.7 ms where ``SQ8`` (8-bit codes of the
    residuals, one byte per dimension) takes 8.8 ms, at the same recall (benchmarks/scale.py).
    Re-ranking with codes of the vectors, not residuals, caps its recall on small dimensions
    (0.96 at 64), so ``auto`` (default) is fastscan from FASTSCAN_MIN_DIM dimensions up and SQ8
    below; ``PQ<m>``: m bytes, smaller and less exact. ``nlist`` (inverted
    lists, 0 = about 2*sqrt(users), a power of two) and ``train_size`` (k-means sample, 0 =
    50 per list, at most 200k) bound the build time. ``nprobe`` (lists visited per query) is
    the smallest power of two whose recall@``calibration_k`` on ``calibration_queries``
    indexed users, against exact search, reaches ``target_recall``; 0 = choose it so.
    """

    codec: str = "auto"
    nlist: int = 0
    train_size: int = 0
    nprobe: int = 0
    target_recall: float = 0.97
    calibration_queries: int = 256
    calibration_k: int = 10
    kmeans_iterations: int = 15
    seed: int = 0

    def check(self, n_users: int) -> None:
        """Refuse settings FAISS would choke on, naming the option."""
        if not _CODEC.match(self.codec):
            raise Llm4esError(
                f"ivf codec must be auto, fastscan, SQ8, SQ6, SQ4, SQfp16 or PQ<m> (e.g. PQ64), got {self.codec!r}",
                key="ivf_codec",
            )
        if self.nlist < 0 or self.nlist > n_users:
            raise Llm4esError(
                f"ivf nlist must be 0 (auto) or 1..{n_users:,} (the users), got {self.nlist}", key="ivf_nlist"
            )
        if self.train_size < 0:
            raise Llm4esError(
                f"ivf train size must be 0 (auto) or positive, got {self.train_size}", key="ivf_train_size"
            )
        if self.nprobe < 0:
            raise Llm4esError(f"ivf nprobe must be 0 (calibrate) or positive, got {self.nprobe}", key="ivf_nprobe")
        if not 0.0 < self.target_recall <= 1.0:
            raise Llm4esError(f"ivf target recall must be in (0, 1], got {self.target_recall}", key="ivf_target_recall")

    def codec_for(self, dim: int) -> str:
        """The codec used at this dimension (``auto`` resolved)."""
        if self.codec != "auto":
            return self.codec
        return "fastscan" if dim >= FASTSCAN_MIN_DIM else "SQ8"

    def lists_for(self, n_users: int) -> int:
        """``nlist``, or about 2*sqrt(users) rounded to a power of two, with >= 39 users per list."""
        if self.nlist:
            return self.nlist
        guess = 2 ** round(math.log2(max(1.0, 2 * math.sqrt(n_users))))
        return int(max(1, min(guess, 65_536, n_users // 39)))

    def sample_for(self, n_users: int, nlist: int) -> int:
        """Training sample: ``train_size``, or 50 users per list (FAISS asks for >= 39), at most 200k."""
        if self.train_size:
            return min(n_users, self.train_size)
        return min(n_users, 200_000, max(50 * nlist, 10_000))


def _faiss() -> Any:
    return require("faiss")  # the `search` extra


def choose_kind(
    kind: str, n_users: int, exact_max_users: int = EXACT_MAX_USERS, hnsw_max_users: int = HNSW_MAX_USERS
) -> str:
    """`auto` -> exact up to ``exact_max_users`` users, HNSW up to ``hnsw_max_users``, compressed IVF above."""
    if kind not in INDEX_KINDS:
        raise Llm4esError(f"index kind must be one of {list(INDEX_KINDS)}, got {kind!r}", key="kind")
    if kind != "auto":
        return kind
    if n_users <= exact_max_users:
        return "exact"
    return "hnsw" if n_users <= hnsw_max_users else "ivf"


def make_faiss_index(vectors: np.ndarray, kind: str, ivf: IvfSettings | None = None) -> tuple[Any, dict[str, Any]]:
    """An inner-product FAISS index over ``vectors`` (already centered and normalized), and
    what ``index.json`` should say about how it was made (empty but for ``ivf``)."""
    faiss = _faiss()
    dim = vectors.shape[1]
    if kind == "ivf":
        return _make_ivf_index(vectors, ivf or IvfSettings())
    if kind == "exact":
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_NEIGHBORS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index, {}


def _make_ivf_index(vectors: np.ndarray, settings: IvfSettings) -> tuple[Any, dict[str, Any]]:
    """IVF + ``settings.codec_for(dim)`` codes, k-means on a sample, a direct map (known
    users' vectors are reconstructed for `neighbors_of`), nprobe calibrated (see ``IvfSettings``)."""
    faiss = _faiss()
    n_users, dim = vectors.shape
    settings.check(n_users)
    codec = settings.codec_for(dim)
    nlist = settings.lists_for(n_users)
    n_train = max(nlist, settings.sample_for(n_users, nlist))
    rng = np.random.default_rng(settings.seed)
    sample = vectors if n_train >= n_users else vectors[np.sort(rng.choice(n_users, n_train, replace=False))]
    index = faiss.index_factory(dim, f"IVF{nlist},{_factory_codec(codec, dim)}", faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.niter = settings.kmeans_iterations
    ivf.cp.seed = settings.seed
    ivf.cp.max_points_per_centroid = max(256, -(-n_train // nlist))  # train on the whole sample we drew
    # index_factory turns polysemous training on for PQ codes (a minute even for 4k users, for
    # Hamming filtering we never use); extract_index_ivf returns the base class, so downcast.
    encoder = faiss.downcast_index(ivf)
    if hasattr(encoder, "do_polysemous_training"):
        encoder.do_polysemous_training = False
    try:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    except RuntimeError as err:  # e.g. PQ needs >= 256 training vectors per sub-quantizer
        raise Llm4esError(f"cannot train the {codec} IVF index on {n_train:,} users: {err}", key="ivf_codec") from err
    del sample
    for start in range(0, n_users, _ADD_BATCH):
        index.add(np.ascontiguousarray(vectors[start : start + _ADD_BATCH], dtype=np.float32))
    refined = faiss.downcast_index(index)
    if hasattr(refined, "k_factor"):  # IndexRefine: known users' vectors come from the SQ8 codes
        refined.k_factor = REFINE_K_FACTOR
    else:  # known users' vectors are reconstructed through a direct map (id -> list, offset)
        ivf.make_direct_map()
    calibration = _calibrate_nprobe(index, vectors, settings, nlist)
    ivf.nprobe = calibration["nprobe"]
    info = {
        "ivf": {
            "codec": codec,
            "factory": f"IVF{nlist},{_factory_codec(codec, dim)}",
            "nlist": nlist,
            "train_size": n_train,
            "kmeans_iterations": settings.kmeans_iterations,
            **calibration,
        }
    }
    return index, info


def _factory_codec(codec: str, dim: int) -> str:
    """The index_factory suffix: ``fastscan`` -> 4-bit fast-scan PQ refined by SQ8 (plain SQ8 when
    the dimension is odd: fast-scan needs an even number of sub-quantizers dividing it)."""
    if codec != "fastscan":
        return codec
    m = next((m for m in (dim // 2, dim // 4) if m >= 2 and m % 2 == 0 and dim % m == 0), None)
    return f"PQ{m}x4fsr,Refine(SQ8)" if m else "SQ8"  # fsr: residuals to the list centre; plain fs is not


def _calibrate_nprobe(index: Any, vectors: np.ndarray, settings: IvfSettings, nlist: int) -> dict[str, Any]:
    """Recall@k of known-user queries (their stored, i.e. decoded, vectors, as `neighbors_of`
    asks) against exact search over the original vectors, for nprobe = 1, 2, 4, ...: the first
    that reaches the target, else the smallest within 0.005 of the best seen."""
    faiss = _faiss()
    n_users = len(vectors)
    k = min(settings.calibration_k, n_users - 1)
    rng = np.random.default_rng(settings.seed + 1)
    rows = np.sort(rng.choice(n_users, min(settings.calibration_queries, n_users), replace=False))
    exact_queries = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    _, truth = faiss.knn(
        exact_queries, np.ascontiguousarray(vectors, dtype=np.float32), k + 1, faiss.METRIC_INNER_PRODUCT
    )
    queries = np.vstack([index.reconstruct(int(row)) for row in rows])
    ivf = faiss.extract_index_ivf(index)

    def recall(nprobe: int) -> float:
        ivf.nprobe = nprobe
        _, found = index.search(queries, k + 1)
        hits = 0
        for i, row in enumerate(rows):
            want = [u for u in truth[i] if u != row][:k]
            got = [u for u in found[i] if u != row and u >= 0][:k]
            hits += len(set(want) & set(got))
        return hits / (k * len(rows))

    if settings.nprobe:
        nprobe = min(settings.nprobe, nlist)
        return {"nprobe": nprobe, "recall_at_k": round(recall(nprobe), 4), "k": k, "queries": len(rows)}
    tried: dict[int, float] = {}
    nprobe = 1
    while nprobe <= nlist:
        tried[nprobe] = recall(nprobe)
        if tried[nprobe] >= settings.target_recall:
            break
        nprobe *= 2
    best = max(tried.values())
    chosen = next(p for p, r in tried.items() if r >= settings.target_recall or r >= best - 0.005)
    return {
        "nprobe": chosen,
        "recall_at_k": round(tried[chosen], 4),
        "k": k,
        "queries": len(rows),
        "target_recall": settings.target_recall,
        "recall_by_nprobe": {str(p): round(r, 4) for p, r in tried.items()},
    }


def normalize_rows(vectors: np.ndarray, mean: np.ndarray, batch: int = 65_536) -> np.ndarray:
    """Center on ``mean`` and scale each row to unit length (zero rows stay zero), in batches
    so that a million users need one float32 copy, not three."""
    vectors = np.asarray(vectors)
    out = np.empty(vectors.shape, dtype=np.float32)
    for start in range(0, len(vectors), batch):
        centered = np.asarray(vectors[start : start + batch], dtype=np.float32) - mean
        norms = np.linalg.norm(centered, axis=1, keepdims=True)
        out[start : start + batch] = centered / np.maximum(norms, 1e-12)
    return out


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
        hnsw_max_users: int = HNSW_MAX_USERS,
        ivf: IvfSettings | None = None,
        info: dict[str, Any] | None = None,
    ) -> UserIndex:
        """Index ``embeddings`` (one row per user id); ``labels`` (user_id + columns) is joined on user_id.

        ``kind``: ``auto`` (by size, see the module docstring), ``exact``, ``hnsw`` or ``ivf``
        (compressed, made as ``ivf`` says)."""
        ids = np.asarray(user_ids).astype(str)
        matrix = np.asarray(embeddings, dtype=np.float32)
        if matrix.ndim != 2 or len(matrix) != len(ids):
            raise Llm4esError(f"expected one embedding row per user id, got {matrix.shape} for {len(ids)} ids")
        if len(ids) < 2:
            raise Llm4esError("an index needs at least 2 users")
        if not np.isfinite(matrix).all():
            raise Llm4esError("embeddings hold NaN or infinite values", column="embedding")
        kind = choose_kind(kind, len(ids), exact_max_users, hnsw_max_users)
        if kind == "ivf":
            (ivf or IvfSettings()).check(len(ids))
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
        index, made = make_faiss_index(vectors, kind, ivf)
        del vectors
        meta = {
            "kind": kind,
            "n_users": len(ids),
            "dimension": int(matrix.shape[1]),
            "metric": "cosine (centered, L2-normalized, inner product)",
            "label_columns": [c for c in users.columns if c not in ("user_id", "x", "y", "split")],
            **made,
            **(info or {}),
        }
        return cls(index=index, users=users, mean=mean, components=components, info=meta)

    def save(self, folder: str | Path) -> Path:
        """Write the index folder (see the module docstring)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _faiss().write_index(self.index, str(folder / "index.faiss"))
        size = (folder / "index.faiss").stat().st_size  # what the index holds in memory, give or take a few KB
        self.info["memory"] = {"index_bytes": size, "bytes_per_user": round(size / max(1, self.index.ntotal), 1)}
        self.users.write_parquet(folder / "users.parquet")
        np.savez(folder / "projection.npz", mean=self.mean, components=self.components)
        (folder / "index.json").write_text(json.dumps(self.info, indent=2, default=str))
        write_index_card(folder, self.info)  # the card of the Hub data set repo it is pushed to
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
        if info.get("kind") == "ivf":  # the calibrated nprobe, whatever the file says
            _faiss().extract_index_ivf(index).nprobe = int(info["ivf"]["nprobe"])
            refined = _faiss().downcast_index(index)
            if hasattr(refined, "k_factor"):
                refined.k_factor = REFINE_K_FACTOR
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
