"""Nearest-user search latency: our index against brute-force numpy, 100k users.

100,000 synthetic users at the bundled model's dimension (576, SmolLM2-135M): clustered
vectors sharing one large common offset, as mean-pooled LLM states do. Queries are known
users (their own id excluded), one at a time, as the demo and `llm4es search --user-id` ask.
Measured: p50/p95 latency of ``UserIndex.neighbors_of`` (the default index, HNSW above 50k
users, and the exact one) and of brute force in numpy on the same prepared vectors (matrix @
query + argpartition); the exact index must return the same neighbours as numpy, and HNSW's
recall@k against them is reported. ``ratio`` = numpy p50 / default index p50.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import peak_rss_mb, report

from llm4es_hf.hardware import describe
from llm4es_hf.search import UserIndex


def synthetic_users(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((256, dim)).astype(np.float32) * 2.0
    group = rng.integers(0, len(centres), n)
    vectors = centres[group] + rng.standard_normal((n, dim), dtype=np.float32)
    return vectors + 20.0  # the shared direction the index centres away


def latencies(fn, queries) -> np.ndarray:  # noqa: ANN001 - a callable over one query
    times = np.empty(len(queries))
    for i, query in enumerate(queries):
        start = time.perf_counter()
        fn(query)
        times[i] = time.perf_counter() - start
    return times * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    print(f"hardware: {describe()}; precision: float32 vectors")

    matrix = synthetic_users(args.users, args.dim)
    ids = np.array([f"user-{i}" for i in range(args.users)])
    start = time.perf_counter()
    default = UserIndex.build(ids, matrix)
    build_default = time.perf_counter() - start
    start = time.perf_counter()
    exact = UserIndex.build(ids, matrix, kind="exact")
    build_exact = time.perf_counter() - start
    prepared = exact.index.reconstruct_n(0, args.users)  # the vectors the index holds

    rng = np.random.default_rng(1)
    rows = rng.choice(args.users, args.queries, replace=False)
    k = args.k

    def brute_force(row: int) -> np.ndarray:
        scores = prepared @ prepared[row]
        scores[row] = -np.inf  # the user is not its own neighbour
        top = np.argpartition(-scores, k)[:k]
        return top[np.argsort(-scores[top], kind="stable")]

    for row in rows[:5]:  # warm up caches and lazy members
        default.neighbors_of(ids[row], k), exact.neighbors_of(ids[row], k), brute_force(row)
    numpy_ms = latencies(brute_force, rows)
    exact_ms = latencies(lambda row: exact.neighbors_of(ids[row], k), rows)
    default_ms = latencies(lambda row: default.neighbors_of(ids[row], k), rows)

    same, recall = 0, []
    for row in rows:
        truth = ids[brute_force(row)]
        found_exact = exact.neighbors_of(ids[row], k)["user_id"].to_numpy()
        same += int(set(found_exact) == set(truth))
        recall.append(len(set(default.neighbors_of(ids[row], k)["user_id"]) & set(truth)) / k)

    def p(values: np.ndarray, q: float) -> float:
        return round(float(np.percentile(values, q)), 3)

    print(f"{args.users:,} users x {args.dim} dims, {args.queries} single queries, k={k}")
    print(f"  default index ({default.info['kind']}): build {build_default:.1f} s")
    print(f"  exact index: build {build_exact:.1f} s")
    for name, values in (
        (f"ours, default ({default.info['kind']})", default_ms),
        ("ours, exact (IndexFlatIP)", exact_ms),
        ("numpy brute force", numpy_ms),
    ):
        print(f"  {name:32s} p50 {p(values, 50):7.2f} ms   p95 {p(values, 95):7.2f} ms")
    print(f"exact index = numpy on {same}/{len(rows)} queries; {default.info['kind']} recall@{k} {np.mean(recall):.3f}")
    report(
        benchmark="search",
        unit="ms per query (p50)",
        users=args.users,
        dim=args.dim,
        index=default.info["kind"],
        ours=p(default_ms, 50),
        ours_p95=p(default_ms, 95),
        baseline=p(numpy_ms, 50),
        baseline_p95=p(numpy_ms, 95),
        ratio=round(float(np.percentile(numpy_ms, 50) / np.percentile(default_ms, 50)), 2),
        exact_p50=p(exact_ms, 50),
        exact_p95=p(exact_ms, 95),
        exact_over_numpy=round(float(np.percentile(numpy_ms, 50) / np.percentile(exact_ms, 50)), 2),
        exact_same_results=f"{same}/{len(rows)}",
        recall_at_k=round(float(np.mean(recall)), 4),
        build_seconds=round(build_default, 1),
        peak_rss_mb=round(peak_rss_mb()),
    )


if __name__ == "__main__":
    main()
