"""Shared helpers of the evaluation tests: planted-signal data, embedding files, one LightGBM thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from llm4es_hf import evaluation

FAST = {"lightgbm": {"n_estimators": 40, "min_child_samples": 10}}


def evaluate_features(*args, **kwargs):
    """One LightGBM thread: torch (imported by conftest) brings a spinning libgomp, slow on a busy machine."""
    return evaluation.evaluate_features(*args, n_jobs=1, **kwargs)


def planted(n: int = 400, dim: int = 8, *, signal: float = 3.0, seed: int = 0, classes: int = 2):
    """Users u0..u{n-1}, labels drawn at random, the first column shifted by the label times ``signal``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x[:, 0] += signal * y
    ids = np.array([f"u{i}" for i in range(n)])
    return ids, x, {i: str(label) for i, label in zip(ids, y, strict=True)}


def write_embeddings(path: Path, ids, matrix, *, wide: bool = False) -> Path:
    if wide:
        frame = pl.DataFrame({"user_id": ids, **{f"emb_{j:04d}": matrix[:, j] for j in range(matrix.shape[1])}})
    else:
        frame = pl.DataFrame({"user_id": ids, "embedding": [list(map(float, row)) for row in matrix]})
    frame.write_parquet(path)
    return path
