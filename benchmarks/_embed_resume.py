"""The embedding-resume check of benchmarks/scale.py: `llm4es embed --output FOLDER` killed with
SIGKILL at a random point, then rerun, against an uninterrupted run of the same command.

A tiny random Llama (tests/support/tiny.py, 3 layers, 32 dims) embeds ``users`` synthetic users (texts of
1 to 20 events, 90% train, 10% test) cut into ``shards`` row-range shards per split. The killed run
is stopped ``uniform(0, 0.9 x the uninterrupted run's embedding time)`` seconds after its first
shard appeared; the rerun must skip every shard finished before the kill (left untouched), and the
result must hold every corpus user exactly once with vectors equal, bit for bit, to the
uninterrupted run's. Each run is its own ``python -m llm4es_hf.cli`` process.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from llm4es_hf.artifacts import load_embeddings

ROOT = Path(__file__).resolve().parents[1]


def _corpus(folder: Path, users: int, seed: int) -> list[str]:
    """A corpus' serialized config (train and test, one file each); the user ids."""
    rng = np.random.default_rng(seed)
    (folder / "serialized").mkdir(parents=True)
    ids = [f"user-{i}" for i in range(users)]
    lengths = rng.integers(1, 21, users)
    texts = [
        "Date|Merchant|Amount\n"
        + "\n".join(
            f"2024-{1 + d // 28:02d}-{1 + d % 28:02d}, shop {rng.integers(200)}, {rng.integers(1, 999)}"
            for d in range(k)
        )
        for k in lengths
    ]
    cut = int(users * 0.9)
    for split, rows in (("train", slice(0, cut)), ("test", slice(cut, users))):
        frame = pl.DataFrame({"user_id": ids[rows], "text": texts[rows]})
        frame.write_parquet(folder / "serialized" / f"{split}-00000-of-00001.parquet")
    return ids


def _command(model: Path, corpus: Path, output: Path, shards: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llm4es_hf.cli",
        "embed",
        "--model",
        str(model),
        "--corpus",
        str(corpus),
        "--output",
        str(output),
        "--num-shards",
        str(shards),
        "--dtype",
        "fp32",
        "--batch-size",
        "16",
    ]


def _environment() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false"}


def _shards(folder: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in folder.glob("*.parquet")} if folder.exists() else {}


def _run_watched(cmd: list[str], output: Path) -> tuple[float, float]:
    """Run to the end; (seconds until the first shard appeared, seconds in all)."""
    start, first = time.perf_counter(), None
    process = subprocess.Popen(cmd, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while process.poll() is None:
        if first is None and _shards(output):
            first = time.perf_counter() - start
        time.sleep(0.02)
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"uninterrupted run failed: {err[-2000:]}")
    total = time.perf_counter() - start
    return (first if first is not None else total), total


def embed_resume_part(workdir: Path, users: int, shards: int, seed: int | None, tries: int = 3) -> dict[str, object]:
    """Kill, rerun, compare (see the module docstring)."""
    sys.path.insert(0, str(ROOT))
    from tests.support.tiny import tiny_model_dir

    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    rng = random.Random(seed)
    model = tiny_model_dir(workdir / "model")
    ids = _corpus(workdir / "corpus", users, seed=0)  # the same corpus every time; the kill is random
    clean = workdir / "uninterrupted"
    first, total = _run_watched(_command(model, workdir / "corpus", clean, shards), clean)
    n_shards = len(_shards(clean))
    print(f"uninterrupted: {users:,} users in {n_shards} shards, {total:.1f} s (first shard after {first:.1f} s)")

    killed = workdir / "killed"
    for attempt in range(1, tries + 1):
        shutil.rmtree(killed, ignore_errors=True)  # every try starts from nothing, not from the last one's shards
        delay = rng.uniform(0.0, 0.9 * (total - first))
        process = subprocess.Popen(
            _command(model, workdir / "corpus", killed, shards),
            env=_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while process.poll() is None and not _shards(killed):
            time.sleep(0.01)
        time.sleep(delay)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            if len(_shards(killed)) < n_shards:  # a kill after the last shard leaves nothing to resume
                break
        print(f"try {attempt}: every shard was written before the kill ({delay:.2f} s after the first); again")
    else:
        return {"embed_resume_exact": None, "embed_resume_note": f"no kill landed in {tries} tries"}
    before = _shards(killed)
    leftovers = [path.name for path in killed.glob(".*.tmp")]
    print(
        f"killed {delay:.2f} s after the first shard: {len(before)} of {n_shards} shards written, "
        f"{len(leftovers)} temporary files left"
    )
    rerun = subprocess.run(
        _command(model, workdir / "corpus", killed, shards), env=_environment(), capture_output=True, text=True
    )
    if rerun.returncode != 0:
        raise RuntimeError(f"rerun failed: {rerun.stderr[-2000:]}")
    print(rerun.stdout.strip().splitlines()[-1])
    skipped = re.search(r"(\d+) were finished before", rerun.stdout)
    after = _shards(killed)
    redone = [name for name, mtime in before.items() if after.get(name) != mtime]

    (got_ids, got), (want_ids, want) = load_embeddings(killed), load_embeddings(clean)
    every_user_once = sorted(got_ids.tolist()) == sorted(ids) and len(set(got_ids.tolist())) == len(got_ids)
    same_order = got_ids.tolist() == want_ids.tolist()
    equal = same_order and got.shape == want.shape and bool(np.array_equal(got, want))
    max_diff = float(np.abs(got - want).max()) if same_order and got.shape == want.shape else None
    exact = every_user_once and equal and not redone and not list(killed.glob(".*.tmp"))
    print(
        f"every user once: {every_user_once}; vectors equal: {equal} (max |diff| {max_diff}); "
        f"finished shards redone: {len(redone)}; embed_resume_exact = {exact}"
    )
    return {
        "embed_resume_exact": exact,
        "embed_resume_users": users,
        "embed_resume_shards": n_shards,
        "embed_resume_seed": seed,  # --embed-seed reproduces the kill point
        "embed_resume_kill_after_first_shard_s": round(delay, 2),
        "embed_resume_shards_before_kill": len(before),
        "embed_resume_shards_skipped_by_rerun": int(skipped.group(1)) if skipped else None,
        "embed_resume_finished_shards_redone": len(redone),
        "embed_resume_max_abs_diff": max_diff,
        "embed_resume_uninterrupted_s": round(total, 1),
    }
