"""Downstream metrics through the `evaluate` library, offline.

``evaluate.load("roc_auc")`` fetches the module from the Hub; the modules shipped here
(``roc_auc/roc_auc.py``, ``accuracy/accuracy.py``) load from their folder instead.
When `evaluate` cannot load or run them (e.g. an unwritable module cache), scoring falls
back to scikit-learn, and the backend that was used is recorded in the report.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Llm4esError

METRICS = {"binary": "roc_auc", "multiclass": "accuracy"}
METRIC_LABELS = {"roc_auc": "ROC-AUC", "accuracy": "accuracy"}
BACKENDS = ("auto", "evaluate", "sklearn")


def metric_dir(name: str) -> Path:
    """The folder of a shipped metric module (what ``evaluate.load`` is given)."""
    folder = Path(__file__).parent / name
    if not (folder / f"{name}.py").exists():
        raise Llm4esError(f"no shipped metric {name!r}; known: {sorted(METRIC_LABELS)}", key="metric")
    return folder


@functools.cache
def _evaluate_module(name: str) -> Any:
    import evaluate

    return evaluate.load(str(metric_dir(name)), keep_in_memory=True)


def _sklearn(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    from sklearn.metrics import accuracy_score, roc_auc_score

    if name == "roc_auc":
        return lambda y, s: float(roc_auc_score(y, s))
    return lambda y, s: float(accuracy_score(y, s))


class Scorer:
    """Scores predictions with one metric: ``scorer(references, predictions_or_scores) -> float``.

    ``backend``: ``evaluate`` (the shipped module, error if it fails), ``sklearn``, or
    ``auto`` (evaluate, else scikit-learn). ``self.backend`` says which one is in use.
    """

    def __init__(self, task: str, backend: str = "auto") -> None:
        if task not in METRICS:
            raise Llm4esError(f"unknown task {task!r}; choose one of {list(METRICS)}", key="task")
        if backend not in BACKENDS:
            raise Llm4esError(f"unknown metric backend {backend!r}; choose one of {list(BACKENDS)}", key="backend")
        self.name = METRICS[task]
        self.label = METRIC_LABELS[self.name]
        self.fallback_reason: str | None = None
        self._module: Any = None
        if backend in ("auto", "evaluate"):
            try:
                self._module = _evaluate_module(self.name)
                self._compute_evaluate(np.array([0, 1]), np.array([0.2, 0.8]) if task == "binary" else np.array([0, 1]))
            except Exception as err:  # any failure of evaluate means: use scikit-learn
                if backend == "evaluate":
                    raise Llm4esError(
                        f"evaluate could not load the shipped {self.name} module: {err}", file=metric_dir(self.name)
                    ) from err
                self._module = None
                self.fallback_reason = f"{type(err).__name__}: {err}"
        self._sklearn = _sklearn(self.name)

    @property
    def backend(self) -> str:
        if self._module is not None:
            return f"evaluate (local module llm4es_hf/metrics/{self.name})"
        if self.fallback_reason:
            return f"scikit-learn (evaluate failed: {self.fallback_reason})"
        return "scikit-learn"

    def _compute_evaluate(self, references: np.ndarray, predictions: np.ndarray) -> float:
        key = "prediction_scores" if self.name == "roc_auc" else "predictions"
        result = self._module.compute(references=references.tolist(), **{key: predictions.tolist()})
        return float(result[self.name])

    def __call__(self, references: np.ndarray, predictions: np.ndarray) -> float:
        references = np.asarray(references)
        predictions = np.asarray(predictions)
        if self._module is not None:
            return self._compute_evaluate(references, predictions)
        return self._sklearn(references, predictions)


def _weighted_roc_auc(references: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC under each row of ``weights`` (resample counts, shape ``(B, n)``), ties counted half.

    The Mann-Whitney form on the sorted scores: every positive earns the weight of the negatives
    below it plus half of those tied with it, so all resamples cost one sort and a few cumsums.
    """
    order = np.argsort(scores, kind="mergesort")
    ranked, positive = scores[order], references[order].astype(float)
    weights = weights[:, order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    positives = np.add.reduceat(weights * positive, starts, axis=1)
    negatives = np.add.reduceat(weights * (1.0 - positive), starts, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives
    pairs = positives.sum(axis=1) * negatives.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (positives * (below + 0.5 * negatives)).sum(axis=1) / pairs


def _weighted_metric(metric: str, references: np.ndarray, predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    if metric == "roc_auc":
        return _weighted_roc_auc(references, predictions, weights)
    correct = (predictions == references).astype(float)
    return weights @ correct / weights.sum(axis=1)


@dataclass
class PairedDifference:
    """``metric(first) - metric(second)`` on the same users, with a bootstrap 95% CI and two-sided p."""

    delta: float
    ci95: tuple[float, float]
    p_value: float
    resamples: int


def paired_bootstrap(
    metric: str,
    references: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    *,
    resamples: int = 2000,
    seed: int = 42,
) -> PairedDifference:
    """Compare two predictions of the same users by resampling the users (stratified by class).

    Both predictions are scored on each resample, so what the users have in common cancels:
    this is the test that says whether one feature set beats another on *these* users, where
    the spread of fold models only shows the training noise. ``metric``: ``roc_auc`` (scores)
    or ``accuracy`` (predicted classes). p is two-sided, at a resolution of 1/``resamples``.
    """
    if metric not in METRIC_LABELS:
        raise Llm4esError(f"unknown metric {metric!r}; choose one of {sorted(METRIC_LABELS)}", key="metric")
    references, first, second = np.asarray(references), np.asarray(first), np.asarray(second)
    if not len(references) == len(first) == len(second):
        raise Llm4esError(
            f"paired predictions need the same users: {len(references)} references, {len(first)} and {len(second)}"
        )
    rng = np.random.default_rng(seed)
    weights = np.zeros((resamples, len(references)))
    for value in np.unique(references):
        members = np.flatnonzero(references == value)
        weights[:, members] = rng.multinomial(len(members), np.full(len(members), 1.0 / len(members)), resamples)

    def difference(counts: np.ndarray) -> np.ndarray:
        return _weighted_metric(metric, references, first, counts) - _weighted_metric(
            metric, references, second, counts
        )

    delta = float(difference(np.ones((1, len(references))))[0])
    spread = difference(weights)
    spread = spread[np.isfinite(spread)]
    if not len(spread) or np.all(spread == 0.0):
        return PairedDifference(delta, (delta, delta), 1.0, resamples)
    low, high = np.percentile(spread, [2.5, 97.5])
    p_value = min(1.0, 2.0 * min(float(np.mean(spread <= 0.0)), float(np.mean(spread >= 0.0))))
    return PairedDifference(delta, (float(low), float(high)), max(p_value, 1.0 / resamples), resamples)


__all__ = [
    "BACKENDS",
    "METRICS",
    "METRIC_LABELS",
    "PairedDifference",
    "Scorer",
    "metric_dir",
    "paired_bootstrap",
]
