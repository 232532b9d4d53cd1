"""The evaluation report: one row per feature set and model, paired comparisons, Markdown/JSON/plot."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Llm4esError
from ..extras import require
from ..metrics import PairedDifference, paired_bootstrap


@dataclass
class ScoreRow:
    """One feature set scored by one downstream model."""

    features: str
    model: str
    n_features: int
    valid_scores: list[float]
    test_scores: list[float]
    valid_mean: float
    valid_std: float
    test_mean: float
    test_std: float
    test_ci95: tuple[float, float]
    pooled_valid: float
    delta: float | None = None
    t_statistic: float | None = None
    p_value: float | None = None
    test_users_p: float | None = None
    pooled_delta: float | None = None
    pooled_delta_ci95: tuple[float, float] | None = None
    pooled_p: float | None = None

    @property
    def name(self) -> str:
        return f"{self.features}/{self.model}"


@dataclass
class Comparison:
    """``first`` against ``second`` (rows ``features/model``) on the same users."""

    first: str
    second: str
    test_users: PairedDifference
    out_of_fold: PairedDifference


@dataclass
class _Predictions:
    """What paired comparisons need and the JSON report leaves out: every row's predictions."""

    y: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    by_row: dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass
class EvaluationReport:
    """Scores of every feature set and model, and what was evaluated on which users."""

    target: str
    task: str
    metric: str
    metric_backend: str
    classes: list[str]
    positive: str | None
    n_users: int
    n_train: int
    n_test: int
    folds: int
    seed: int
    split: str
    baseline: str | None
    rows: list[ScoreRow]
    feature_sets: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    predictions: _Predictions | None = field(default=None, repr=False, compare=False)

    @property
    def metric_label(self) -> str:
        return "ROC-AUC" if self.metric == "roc_auc" else "accuracy"

    def row(self, name: str) -> ScoreRow:
        """A row by ``features/model`` (or ``features``: its first model)."""
        for row in self.rows:
            if name in (row.name, row.features):
                return row
        raise Llm4esError(f"no row {name!r}; rows: {[r.name for r in self.rows]}", key="baseline")

    def compare(self, first: str, second: str) -> Comparison:
        """Paired bootstraps of ``first`` against ``second`` (``features/model`` or ``features``):
        over the test users (the fold models' mean prediction) and over the train users'
        out-of-fold predictions. E.g. whether ``bag+llm4es/logreg`` adds to ``bag/logreg``."""
        if self.predictions is None:
            raise Llm4esError(
                "this report holds no predictions (only evaluate_features keeps them): evaluate again to compare"
            )
        one, other = self.row(first), self.row(second)
        stored = self.predictions
        (oof, test), (base_oof, base_test) = stored.by_row[one.name], stored.by_row[other.name]
        train, tested = stored.train_idx, stored.test_idx

        def bootstrap(users: np.ndarray, mine: np.ndarray, theirs: np.ndarray) -> PairedDifference:
            decide = functools.partial(_decide, task=self.task)
            return paired_bootstrap(self.metric, stored.y[users], decide(mine), decide(theirs), seed=self.seed)

        return Comparison(
            first=one.name,
            second=other.name,
            test_users=bootstrap(tested, test, base_test),
            out_of_fold=bootstrap(train, oof[train], base_oof[train]),
        )

    @staticmethod
    def comparisons_markdown(comparisons: Sequence[Comparison]) -> str:
        """A Markdown table of ``compare`` results: the gain over the test users and out-of-fold."""
        resamples = comparisons[0].out_of_fold.resamples if comparisons else 0
        lines = [
            "",
            f"Paired bootstraps (users resampled within class, {resamples:,} times):",
            "",
            "| features | against | Δ test users [95% CI] | p | Δ out-of-fold [95% CI] | p |",
            "|---|---|---|---:|---|---:|",
        ]
        for c in comparisons:
            cells = [
                f"{d.delta:+.4f} [{d.ci95[0]:+.4f}, {d.ci95[1]:+.4f}] | {d.p_value:.3g}"
                for d in (c.test_users, c.out_of_fold)
            ]
            lines.append(f"| {c.first} | {c.second} | {cells[0]} | {cells[1]} |")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, predictions=None))
        data.pop("predictions")
        data["metric_label"] = self.metric_label
        return _json_safe(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        """A Markdown summary: setup, one table row per feature set and model, notes."""
        split = {"corpus": "the corpus split", "given": "the given split", "stratified": "a seeded stratified split"}
        lines = [
            f"### Downstream evaluation: `{self.target}` ({self.task}, {self.metric_label})",
            "",
            f"- users: {self.n_users:,} (train {self.n_train:,} in {self.folds} stratified folds, "
            f"test {self.n_test:,} from {split.get(self.split, self.split)}; seed {self.seed})",
            f"- classes: {', '.join(self.classes)}" + (f" (positive: {self.positive})" if self.positive else ""),
            f"- metric backend: {self.metric_backend}",
            f"- valid, test: mean ± std of the {self.folds} fold models on their validation fold and on the test "
            "users; out-of-fold: the fold models' predictions pooled over all the train users",
            f"- against `{self.baseline}`: Δ test with two p-values, over the fold models (paired t-test: training "
            "noise only, the test users are shared) and over the test users (paired bootstrap of the fold models' "
            f"mean prediction); Δ out-of-fold with the paired bootstrap over the {self.n_train:,} train users, the "
            "better-powered comparison",
            "",
            "| features | model | dims | valid | test | test 95% CI | Δ test | p folds | p users "
            "| out-of-fold | Δ out-of-fold [95% CI] | p |",
            "|---|---|---:|---|---|---|---:|---:|---:|---:|---|---:|",
        ]

        def p_text(value: float | None) -> str:
            return "—" if value is None else f"{value:.3g}"

        for row in self.rows:
            delta = "—" if row.delta is None else f"{row.delta:+.4f}"
            pooled = "—"
            if row.pooled_delta is not None and row.pooled_delta_ci95 is not None:
                low, high = row.pooled_delta_ci95
                pooled = f"{row.pooled_delta:+.4f} [{low:+.4f}, {high:+.4f}]"
            lines.append(
                f"| {row.features} | {row.model} | {row.n_features:,} | {row.valid_mean:.4f} ± {row.valid_std:.4f} "
                f"| {row.test_mean:.4f} ± {row.test_std:.4f} | [{row.test_ci95[0]:.4f}, {row.test_ci95[1]:.4f}] "
                f"| {delta} | {p_text(row.p_value)} | {p_text(row.test_users_p)} | {row.pooled_valid:.4f} "
                f"| {pooled} | {p_text(row.pooled_p)} |"
            )
        if self.notes:
            lines += ["", "Notes:", *[f"- {note}" for note in self.notes]]
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        """A PNG bar chart of the test means with 95% CI error bars, one group per feature set."""
        canvas_agg = require("matplotlib.backends.backend_agg").FigureCanvasAgg  # the `eval` extra
        figure_class = require("matplotlib.figure").Figure

        path = Path(path)
        features = list(dict.fromkeys(row.features for row in self.rows))
        models = list(dict.fromkeys(row.model for row in self.rows))
        width = 0.8 / len(models)
        figure = figure_class(figsize=(max(5.0, 1.3 * len(features) + 2), 4.0), dpi=120)
        canvas_agg(figure)
        axes = figure.add_subplot()
        for i, model in enumerate(models):
            rows = {row.features: row for row in self.rows if row.model == model}
            xs = [j + (i - (len(models) - 1) / 2) * width for j, name in enumerate(features) if name in rows]
            means = [rows[name].test_mean for name in features if name in rows]
            errors = [rows[name].test_ci95[1] - rows[name].test_mean for name in features if name in rows]
            axes.bar(xs, means, width=width, yerr=errors, capsize=3, label=model)
        if self.metric == "roc_auc":
            axes.axhline(0.5, color="grey", linestyle="--", linewidth=0.8)
        low = min(row.test_ci95[0] for row in self.rows)
        axes.set_ylim(max(0.0, min(0.5 if self.metric == "roc_auc" else low, low) - 0.05), 1.0)
        axes.set_xticks(range(len(features)))
        axes.set_xticklabels(features, rotation=20, ha="right")
        axes.set_ylabel(f"test {self.metric_label} (mean of {self.folds} fold models, 95% CI)")
        axes.set_title(f"{self.target}: {self.n_test:,} test users")
        axes.legend()
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")
        return path

    def to_eval_results(
        self,
        model_name: str,
        dataset_name: str,
        *,
        dataset_type: str | None = None,
        features: str | None = None,
        dataset_split: str = "test",
    ) -> list[Any]:
        """``huggingface_hub.EvalResult`` objects (one per downstream model) for ``model_name``'s card.

        The rows used are those of feature set ``features``; by default the set named
        ``model_name`` if there is one, else the first embeddings set (else the first set).
        ``dataset_type`` is the Hub id of the data set (default: ``dataset_name``).
        """
        from huggingface_hub import EvalResult

        if features is None:
            kinds = {name: info.get("kind") for name, info in self.feature_sets.items()}
            if model_name in kinds:
                features = model_name
            else:
                embedded = [name for name, kind in kinds.items() if kind == "embeddings"]
                features = embedded[0] if embedded else self.rows[0].features
        rows = [row for row in self.rows if row.features == features]
        if not rows:
            raise Llm4esError(f"no feature set {features!r}; sets: {list(self.feature_sets)}", key="features")
        return [
            EvalResult(
                task_type="tabular-classification",
                task_name=f"{self.target} prediction from user embeddings",
                dataset_type=dataset_type or dataset_name,
                dataset_name=dataset_name,
                dataset_split=dataset_split,
                metric_type=self.metric,
                metric_value=round(row.test_mean, 4),
                metric_name=f"{self.metric_label} ({row.model} on {model_name} embeddings, "
                f"mean of {self.folds} fold models)",
                metric_args={
                    "downstream_model": row.model,
                    "folds": self.folds,
                    "seed": self.seed,
                    "std": round(row.test_std, 4),
                    "ci95": [round(v, 4) for v in row.test_ci95],
                    "test_users": self.n_test,
                },
            )
            for row in rows
        ]


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None and tuples -> lists, so the JSON is standard."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _summary(scores: list[float]) -> tuple[float, float, tuple[float, float]]:
    """Mean, sample std and the t-distribution 95% CI of the mean."""
    from scipy import stats

    values = np.asarray(scores, dtype=float)
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    if std == 0.0 or len(values) < 2:
        return mean, std, (mean, mean)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=std / math.sqrt(len(values)))
    return mean, std, (float(low), float(high))


def _compare(report: EvaluationReport, baseline: str | None) -> str:
    """Each row against the baseline: Δ test with a paired t-test over the fold models and a
    paired bootstrap over the test users, and Δ out-of-fold with a paired bootstrap over the
    train users."""
    from scipy import stats

    rows = report.rows
    base = next((row for row in rows if baseline in (row.name, row.features)), rows[0])
    for row in rows:
        if row is base:
            continue
        row.delta = row.test_mean - base.test_mean
        comparison = report.compare(row.name, base.name)
        pooled = comparison.out_of_fold
        row.test_users_p = comparison.test_users.p_value
        row.pooled_delta, row.pooled_delta_ci95, row.pooled_p = pooled.delta, pooled.ci95, pooled.p_value
        differences = np.asarray(row.test_scores) - np.asarray(base.test_scores)
        if np.allclose(differences, differences[0]):
            row.t_statistic, row.p_value = None, None
            continue
        result = stats.ttest_rel(row.test_scores, base.test_scores)
        row.t_statistic, row.p_value = float(result.statistic), float(result.pvalue)
    return base.name


def _decide(prediction: np.ndarray, task: str) -> np.ndarray:
    """What the metric takes: the scores themselves (ROC-AUC) or the most probable class (accuracy)."""
    return prediction if task == "binary" else prediction.argmax(axis=1)
