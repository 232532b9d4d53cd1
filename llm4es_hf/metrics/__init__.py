"""Downstream metrics through the `evaluate` library, offline.

``evaluate.load("roc_auc")`` fetches the module from the Hub; the modules shipped here
(``roc_auc/roc_auc.py``, ``accuracy/accuracy.py``) load from their folder instead.
When `evaluate` cannot load or run them (e.g. an unwritable module cache), scoring falls
back to scikit-learn, and the backend that was used is recorded in the report.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
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


__all__ = ["BACKENDS", "METRICS", "METRIC_LABELS", "Scorer", "metric_dir"]
