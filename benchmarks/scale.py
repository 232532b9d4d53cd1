"""Scale: a compressed index for a million users, and publishing to the Hub under faults.

Index: ``--users`` synthetic users (default 1,000,000) at the bundled model's dimension (576,
SmolLM2-135M), shaped like mean-pooled LLM states: points on a 32-dim manifold of 2,000 overlapping
clusters lifted linearly into 576 dims with a decaying spectrum, small isotropic noise and one
large shared offset. ``UserIndex.build`` picks the compressed IVF index at this size (k-means on
a sample, SQ8 residual codes, nprobe calibrated for recall@10 >= 0.97 on 256 indexed users).
Measured against the baseline of exact brute force over the float32 vectors (``faiss.knn``, what
``IndexFlatIP`` does, without a second copy) in the same run:
- memory: the serialized ``index.faiss`` and the process RSS growth when the saved folder is
  loaded and queried (index, user table, id lookup), against the float32 matrix exact search needs;
- recall@10 of ``UserIndex.neighbors_of`` (known users, their own id excluded) against exact
  search, on users the calibration did not pick;
- p50/p95 single-query latency of ``neighbors_of`` (what `llm4es search --user-id` and the Space
  call; includes building the result table) and of the bare FAISS search, against exact search.

Faults: a small corpus, index and model are published to the loopback Hub (tests/loopback_hub.py)
once cleanly, then under each injected fault (HTTP 500 and 503, 429 with Retry-After, the
connection dropped mid-upload, a response slower than the client timeout): transient faults must
be absorbed by the retries, persistent ones must fail with a message naming the repo and rerun
cleanly. ``faults_clean`` is true when, for every fault, the published files equal the clean
run's, no commit ever showed a partial publication, and no file was committed twice.

Embedding resume (benchmarks/_embed_resume.py): `llm4es embed --output FOLDER` on ``--embed-users``
synthetic users with a tiny model, killed with SIGKILL at a random point after its first shard,
then rerun. ``embed_resume_exact`` is true when every user is there exactly once, the vectors equal
an uninterrupted run's bit for bit, and no shard finished before the kill was redone.

The serialize_* keys belong to a part of the issue not built here (streaming sources): they are null.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import peak_rss_mb, report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.loopback_hub for the fault matrix

from llm4es_hf.hardware import describe  # noqa: E402
from llm4es_hf.search import IvfSettings, UserIndex  # noqa: E402
from llm4es_hf.search.index import normalize_rows  # noqa: E402


def embedding_like(n: int, dim: int, latent: int = 32, clusters: int = 2_000, seed: int = 0) -> np.ndarray:
    """Synthetic user embeddings (see the module docstring), made in blocks to bound memory."""
    rng = np.random.default_rng(seed)
    lift = rng.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent)
    lift *= np.linspace(2.0, 0.5, latent, dtype=np.float32)[:, None]
    centres = rng.standard_normal((clusters, latent)).astype(np.float32)  # overlapping clusters
    offset = rng.standard_normal(dim).astype(np.float32) * 3.0
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        points = centres[rng.integers(0, clusters, size)] + 0.9 * rng.standard_normal((size, latent), dtype=np.float32)
        out[start : start + size] = points @ lift + 0.15 * rng.standard_normal((size, dim), dtype=np.float32) + offset
    return out


def rss_mb() -> float:
    """Current resident memory of this process in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def latencies(fn, items) -> np.ndarray:  # noqa: ANN001 - a callable over one item
    times = np.empty(len(items))
    for i, item in enumerate(items):
        start = time.perf_counter()
        fn(item)
        times[i] = time.perf_counter() - start
    return times * 1e3


def pct(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


def index_part(users: int, dim: int, n_queries: int, k: int, kind: str, codec: str, workdir: Path) -> dict[str, object]:
    """Build, save, reload and query the default index at ``users`` users; exact search as baseline."""
    import faiss

    start = time.perf_counter()
    matrix = embedding_like(users, dim)
    ids = np.array([f"user-{i}" for i in range(users)])
    print(f"{users:,} users x {dim} dims generated in {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    built = UserIndex.build(ids, matrix, kind=kind, ivf=IvfSettings(codec=codec))
    build_s = time.perf_counter() - start
    info = dict(built.info)
    print(f"built {info['kind']} in {build_s:.1f} s: {info.get('ivf', '')}", flush=True)
    folder = built.save(workdir / "index")
    index_bytes = built.info["memory"]["index_bytes"]
    calibration_rows = set()
    if info["kind"] == "ivf":  # the users the calibration looked at are left out of the recall
        rng = np.random.default_rng(1)  # as _calibrate_nprobe draws them (seed + 1)
        calibration_rows = set(rng.choice(users, min(256, users), replace=False).tolist())
    del built
    gc.collect()

    exact = normalize_rows(matrix, matrix.mean(0))  # what the index holds, before compression
    del matrix
    gc.collect()

    before = rss_mb()
    index = UserIndex.load(folder)
    rng = np.random.default_rng(7)
    rows = [int(r) for r in rng.permutation(users)[: n_queries + len(calibration_rows)] if r not in calibration_rows]
    rows = rows[:n_queries]
    for row in rows[:5]:  # warm up: the id lookup and lazy members
        index.neighbors_of(ids[row], k)
    loaded_rss = rss_mb() - before
    print(f"loaded: +{loaded_rss:,.0f} MiB RSS (index.faiss {index_bytes / 2**20:,.0f} MiB)", flush=True)

    _, truth = faiss.knn(exact[rows], exact, k + 1, faiss.METRIC_INNER_PRODUCT)
    recall = []
    for i, row in enumerate(rows):
        want = {ids[j] for j in [j for j in truth[i] if j != row][:k]}
        found = set(index.neighbors_of(ids[row], k)["user_id"])
        recall.append(len(found & want) / k)

    ours_ms = latencies(lambda row: index.neighbors_of(ids[row], k), rows)
    queries = np.vstack([index.vector(ids[row]) for row in rows])
    faiss_ms = latencies(lambda q: index.index.search(q[None], k + 1), queries)
    exact_rows = rows[: min(len(rows), 30)]  # brute force over 1M x 576 floats: ~1 s each here
    exact_ms = latencies(
        lambda row: faiss.knn(exact[row : row + 1], exact, k + 1, faiss.METRIC_INNER_PRODUCT), exact_rows
    )
    memory_mb = max(index_bytes / 2**20, loaded_rss)
    print(f"recall@{k} {np.mean(recall):.4f} on {len(rows)} users (not in the calibration sample)")
    print(f"  ours neighbors_of p50 {pct(ours_ms, 50)} ms, p95 {pct(ours_ms, 95)} ms")
    print(f"  bare faiss search p50 {pct(faiss_ms, 50)} ms")
    print(f"  exact brute force p50 {pct(exact_ms, 50)} ms over {exact.nbytes / 2**20:,.0f} MiB of float32")
    return {
        "index_users": users,
        "index_dim": dim,
        "index_kind": info["kind"],
        "index_memory_mb": round(memory_mb, 1),
        "index_file_mb": round(index_bytes / 2**20, 1),
        "index_rss_delta_mb": round(loaded_rss, 1),
        "index_recall_at_10": round(float(np.mean(recall)), 4),
        "index_p50_ms": pct(ours_ms, 50),
        "index_p95_ms": pct(ours_ms, 95),
        "index_faiss_p50_ms": pct(faiss_ms, 50),
        "index_build_s": round(build_s, 1),
        "index_ivf": {key: info["ivf"][key] for key in ("factory", "nlist", "nprobe", "train_size", "recall_at_k")}
        if "ivf" in info
        else None,
        "baseline_exact_memory_mb": round(exact.nbytes / 2**20, 1),
        "baseline_exact_p50_ms": pct(exact_ms, 50),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000, help="users in the index (1M by default)")
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--ivf-codec", default="SQ8", help="codec of the compressed index (SQ8, fastscan, PQ<m>)")
    parser.add_argument("--kind", default="auto", help="index kind (auto: ivf above 250k users; ivf to force it)")
    parser.add_argument("--skip-index", action="store_true")
    parser.add_argument("--skip-faults", action="store_true")
    parser.add_argument("--embed-users", type=int, default=3_000, help="users of the embedding-resume check")
    parser.add_argument("--embed-shards", type=int, default=8, help="shards per split in the embedding-resume check")
    parser.add_argument("--embed-seed", type=int, default=None, help="kill point seed (default: drawn, printed)")
    parser.add_argument("--skip-embed", action="store_true")
    args = parser.parse_args()

    print(f"hardware: {describe()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; load {os.getloadavg()}")
    print("precision: float32 vectors, SQ8 codes (8-bit per dimension) in the compressed index")
    fields: dict[str, object] = {
        "benchmark": "scale",
        "serialize_events": None,  # streaming sources: not built on this branch
        "serialize_peak_rss_mb": None,
        "serialize_events_per_s": None,
        "embed_resume_exact": None,
    }
    with tempfile.TemporaryDirectory(prefix="llm4es-scale-") as tmp:
        if not args.skip_index:
            fields.update(index_part(args.users, args.dim, args.queries, args.k, args.kind, args.ivf_codec, Path(tmp)))
        if not args.skip_faults:
            from _faults import fault_matrix

            fields.update(fault_matrix(Path(tmp) / "faults"))
        if not args.skip_embed:
            from _embed_resume import embed_resume_part

            (Path(tmp) / "embed").mkdir()
            fields.update(embed_resume_part(Path(tmp) / "embed", args.embed_users, args.embed_shards, args.embed_seed))
    fields["peak_rss_mb"] = round(peak_rss_mb())
    fields["load_average"] = [round(x, 1) for x in os.getloadavg()]
    report(**fields)


if __name__ == "__main__":
    main()
