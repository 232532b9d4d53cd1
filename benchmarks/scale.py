"""Scale: a compressed index for a million users, and publishing to the Hub under faults.

Index: ``--users`` synthetic users (default 1,000,000) at the bundled model's dimension (576,
SmolLM2-135M), shaped like mean-pooled LLM states: points on a 32-dim manifold of 2,000 overlapping
clusters lifted linearly into 576 dims with a decaying spectrum, small isotropic noise and one
large shared offset. ``UserIndex.build`` picks the compressed IVF index at this size (k-means on
a sample, codec auto = 4-bit fast-scan PQ residual codes re-ranked with SQ8 codes at 576 dims,
nprobe calibrated for recall@10 >= 0.97 on 256 indexed users).
Measured against the baseline of exact brute force over the float32 vectors (``faiss.knn``, what
``IndexFlatIP`` does, without a second copy) in the same run:
- memory: the serialized ``index.faiss`` and the process RSS growth when the saved folder is
  loaded and queried (index, user table, id lookup), against the float32 matrix exact search needs;
- recall@10 of ``UserIndex.neighbors_of`` (known users, their own id excluded) against exact
  search, on users the calibration did not pick;
- p50/p95 single-query latency of ``neighbors_of`` (what `llm4es search --user-id` and the Space
  call; includes building the result table) and of the bare FAISS search, against exact search.

Faults: a small corpus, index and model are published to the loopback Hub (tests/support/loopback_hub/)
once cleanly, then under each injected fault (HTTP 500 and 503, 429 with Retry-After, the
connection dropped mid-upload, a response slower than the client timeout): transient faults must
be absorbed by the retries, persistent ones must fail with a message naming the repo and rerun
cleanly. ``faults_clean`` is true when, for every fault, the published files equal the clean
run's, no commit ever showed a partial publication, and no file was committed twice.

Embedding resume (benchmarks/_embed_resume.py): `llm4es embed --output FOLDER` on ``--embed-users``
synthetic users with a tiny model, killed with SIGKILL at a random point after its first shard,
then rerun. ``embed_resume_exact`` is true when every user is there exactly once, the vectors equal
an uninterrupted run's bit for bit, and no shard finished before the kill was redone.

Serialize (streaming sources): a synthetic Rosbank-format raw CSV of ``--serialize-events`` events
(100 per user on average; written in blocks, or ``--serialize-raw FOLDER`` with a pre-generated
``train.csv``) -> a sharded corpus with ``llm4es corpus --num_shards N`` in a child process (the
shipped CLI, default tokenizer). Measured: the child's wall time (events/s end to end: raw file
read lazily, users hash-partitioned, each shard validated, grouped, serialized, split and written)
its CPU time (user + system: on a loaded machine the better guide) and its peak RSS.
``serialize_texts_identical``: a sample of users, their raw rows cut out of the big
file and built by the one-shot in-memory path, get the same text and the same split.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import peak_rss_mb, report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support.loopback_hub for the fault matrix

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


def high_water_mb(pid: int) -> float:
    """Peak resident memory so far of a running process in MiB (Linux ``VmHWM``; 0 once it is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024.0 for line in lines if line.startswith("VmHWM:")), 0.0)


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


def write_raw_events(folder: Path, events: int, seed: int = 0, block_users: int = 20_000) -> Path:
    """A Rosbank-format ``train.csv`` of about ``events`` events, ~100 per user: one generated block
    of users written again and again under new ids (generation is the slow part), shuffled per block."""
    import polars as pl

    from llm4es_hf.sources.synthetic import generate_rosbank

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.csv"
    block_users = max(1, min(block_users, events // 100))
    block = generate_rosbank(block_users, 100.0, seed=seed).with_columns(pl.col("cl_id").cast(pl.Int64))
    written = 0
    with open(path, "wb") as handle:
        for index in range(max(1, round(events / len(block)))):
            part = block.with_columns((pl.col("cl_id") + index * block_users).cast(pl.Utf8))
            part.sample(fraction=1.0, shuffle=True, seed=index).write_csv(
                handle, include_header=index == 0, null_value=""
            )
            written += len(part)
    print(f"raw file: {written:,} events, {path.stat().st_size / 2**30:.2f} GiB", flush=True)
    return path


def serialize_part(events: int, num_shards: int, raw: Path | None, workdir: Path, sample: int) -> dict[str, object]:
    """Raw CSV -> sharded corpus through `llm4es corpus --num_shards` in a child; a sample checked against
    the in-memory path."""
    import polars as pl

    from llm4es_hf.artifacts import load_corpus_config
    from llm4es_hf.corpus import CorpusConfig, build_corpus

    raw = raw if raw is not None else write_raw_events(workdir / "raw", events).parent
    rows = pl.scan_csv(raw / "train.csv", infer_schema=False).select(pl.len()).collect().item()
    output = workdir / "sharded"
    command = [sys.executable, "-m", "llm4es_hf.cli", "corpus", "--source", "rosbank", "--input", str(raw)]
    command += ["--output_dir", str(output), "--num_shards", str(num_shards)]
    start = time.perf_counter()
    child = subprocess.Popen(command, env={**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"})
    child_rss = 0.0
    while child.poll() is None:  # the child's own high-water mark: ru_maxrss of a child counts the parent's
        child_rss = max(child_rss, high_water_mb(child.pid))  # pages it was forked with
        time.sleep(0.2)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, command)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    print(
        f"{rows:,} events -> {num_shards} shards in {wall:.1f} s ({rows / wall:,.0f} events/s), "
        f"child peak RSS {child_rss:,.0f} MiB, CPU {cpu:.0f} s",
        flush=True,
    )

    def shards(split: str) -> pl.LazyFrame:  # read lazily: only the sampled users' texts are loaded
        return pl.scan_parquet(output / "serialized" / f"{split}-*.parquet")

    users = pl.concat([shards(split).select("user_id") for split in ("train", "test")]).collect()["user_id"]
    chosen = users.sample(min(sample, len(users)), seed=0).to_list()
    (workdir / "sample").mkdir()
    pl.scan_csv(raw / "train.csv", infer_schema=False).filter(pl.col("cl_id").is_in(chosen)).sink_csv(
        workdir / "sample" / "train.csv"
    )
    one_shot = build_corpus(
        CorpusConfig(
            source="rosbank",
            input=str(workdir / "sample"),
            output_dir=str(workdir / "one"),
            num_shards=1,
            split_method="hash",  # the sharded path's split
        )
    )
    identical = True
    for split, frame in load_corpus_config(one_shot, "serialized").items():
        ours = shards(split).filter(pl.col("user_id").is_in(chosen)).select("user_id", "text").collect()
        ours = ours.sort("user_id")
        theirs = pl.from_arrow(frame.data.table).select("user_id", "text").sort("user_id")
        identical &= ours.equals(theirs)
    print(f"texts and splits of {len(chosen)} sampled users identical to the in-memory path: {identical}")
    return {
        "serialize_events": rows,
        "serialize_shards": num_shards,
        "serialize_s": round(wall, 1),
        "serialize_cpu_s": round(cpu, 1),
        "serialize_events_per_cpu_s": round(rows / cpu),
        "serialize_peak_rss_mb": round(child_rss),
        "serialize_events_per_s": round(rows / wall),
        "serialize_texts_identical": identical,
        "serialize_sample_users": len(chosen),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000, help="users in the index (1M by default)")
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--ivf-codec", default="auto", help="compressed index codec (auto, fastscan, SQ8, PQ<m>)")
    parser.add_argument("--kind", default="auto", help="index kind (auto: ivf above 250k users; ivf to force it)")
    parser.add_argument("--skip-index", action="store_true")
    parser.add_argument("--skip-faults", action="store_true")
    parser.add_argument("--embed-users", type=int, default=3_000, help="users of the embedding-resume check")
    parser.add_argument("--embed-shards", type=int, default=8, help="shards per split in the embedding-resume check")
    parser.add_argument("--embed-seed", type=int, default=None, help="kill point seed (default: drawn, printed)")
    parser.add_argument("--skip-embed", action="store_true")
    parser.add_argument("--skip-serialize", action="store_true")
    parser.add_argument("--serialize-events", type=int, default=10_000_000, help="raw events to shard (see README)")
    parser.add_argument("--serialize-shards", type=int, default=None, help="shards (default: ~2.5M events each)")
    parser.add_argument("--serialize-raw", type=Path, default=None, help="folder with a pre-generated train.csv")
    parser.add_argument("--serialize-sample", type=int, default=300, help="users checked against the in-memory path")
    args = parser.parse_args()

    print(f"hardware: {describe()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; load {os.getloadavg()}")
    print(f"precision: float32 vectors, {args.ivf_codec} codes in the compressed index")
    fields: dict[str, object] = {
        "benchmark": "scale",
        "serialize_events": None,
        "serialize_peak_rss_mb": None,
        "serialize_events_per_s": None,
        "embed_resume_exact": None,
    }
    with tempfile.TemporaryDirectory(prefix="llm4es-scale-") as tmp:
        if not args.skip_serialize:
            shards = args.serialize_shards or max(2, round(args.serialize_events / 2_500_000))
            fields.update(
                serialize_part(args.serialize_events, shards, args.serialize_raw, Path(tmp), args.serialize_sample)
            )
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
