"""Downstream evaluation of user embeddings: PAPER.md §5, pytorch-lifestream's protocol.

Held-out test users (the corpus split, else a seeded stratified 10% split), 5 stratified
folds on the labeled train users; each fold's model (MaxAbsScaler + LightGBM with the
paper's parameters, or a scaled logistic regression) is scored on its validation fold and
on the test users. A report row per feature set and model gives the fold scores, mean ±
std, a t-distribution 95% CI of the 5 test scores and a paired t-test against a baseline
row. Every feature set is evaluated on the same users and folds (the users all sets and
the labels share), so rows compare like with like and the t-test pairs are real pairs.

``llm4es evaluate`` (``add_arguments`` / ``run``) wraps it: embeddings Parquet files,
labels from a corpus folder or a table, built-in baselines, report.md/.json/.png.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from .errors import Llm4esError
from .metrics import BACKENDS, PairedDifference, Scorer, paired_bootstrap

# LightGBM's OpenMP threads spin while waiting; on a busy 2-core machine that made each fit 10-100x
# slower (measured: 8.4 s instead of 0.6 s). Passive waiting is read once, when libgomp starts: torch
# ships its own libgomp.so.1, which LightGBM then shares, so once torch is imported this line is too
# late and the variable must be set before that (in the environment or first thing in the CLI).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

MODELS = ("lightgbm", "logreg")
TASKS = ("binary", "multiclass")
# PAPER.md §5 (ptls' embeddings validation configs); subsample = bagging_fraction with bagging_freq 1,
# colsample_bytree = feature_fraction, reg_alpha/reg_lambda = lambda_l1/l2, min_child_samples = min_data_in_leaf.
LGBM_BINARY: dict[str, Any] = {
    "n_estimators": 500,
    "learning_rate": 0.02,
    "subsample": 0.5,
    "subsample_freq": 1,
    "colsample_bytree": 0.75,
    "max_depth": 6,
    "reg_alpha": 1.0,
    "reg_lambda": 1.0,
    "min_child_samples": 50,
}
LGBM_MULTICLASS: dict[str, Any] = {
    "n_estimators": 1000,
    "learning_rate": 0.02,
    "subsample": 0.75,
    "subsample_freq": 1,
    "colsample_bytree": 0.75,
    "max_depth": 12,
    "num_leaves": 50,
    "reg_alpha": 1.0,
    "reg_lambda": 1.0,
    "min_child_samples": 50,
}
LOGREG: dict[str, Any] = {"C": 1.0, "max_iter": 2000}

Matrix = np.ndarray | sp.spmatrix
FeatureTable = tuple[Sequence[Any] | np.ndarray, Matrix]


# ----- loading -----


def load_embeddings(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``(user_ids, matrix)`` from a Parquet with ``user_id`` and an ``embedding`` list column
    (or wide ``emb_*`` columns, as the authors' code writes). Ids become strings, values float32.

    Fails, naming the file and column, on a missing column, ragged vectors, null or
    duplicate user ids, and NaN or infinite values.
    """
    path = Path(path)
    if not path.exists():
        raise Llm4esError("embeddings file not found", file=path)
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise Llm4esError(f"cannot read as Parquet: {err}", file=path) from err
    if "user_id" not in frame.columns:
        raise Llm4esError(f"no user_id column; the file has {frame.columns}", file=path, column="user_id")
    if len(frame) == 0:
        raise Llm4esError("the embeddings file has no rows", file=path)
    if "embedding" in frame.columns:
        matrix, names = _list_column(frame["embedding"], path)
    else:
        names = [c for c in frame.columns if c.startswith("emb_")]
        if not names:
            raise Llm4esError(
                f"expected an `embedding` list column or `emb_*` columns; the file has {frame.columns}", file=path
            )
        for name in names:
            if not frame[name].dtype.is_numeric():
                raise Llm4esError(f"not a numeric column ({frame[name].dtype})", file=path, column=name)
        matrix = frame.select(pl.col(names).cast(pl.Float64)).to_numpy()
    ids = frame["user_id"].cast(pl.Utf8)
    if ids.null_count():
        raise Llm4esError("missing user id", file=path, row=int(ids.is_null().arg_max()), column="user_id")
    duplicated = ids.is_duplicated()
    if duplicated.any():
        first = int(duplicated.arg_max())
        raise Llm4esError(
            f"user id {ids[first]!r} appears more than once ({int(duplicated.sum())} rows with repeated ids)",
            file=path,
            row=first,
            column="user_id",
        )
    matrix = matrix.astype(np.float32)
    _check_finite(matrix, str(path), names)
    return ids.to_numpy().astype(str), matrix


def _list_column(column: pl.Series, path: Path) -> tuple[np.ndarray, list[str]]:
    """A list/array column of equal-length numeric vectors as a 2-D array (nulls become NaN)."""
    if isinstance(column.dtype, pl.Array):
        column = column.cast(pl.List(column.dtype.inner))
    if not isinstance(column.dtype, pl.List) or not column.dtype.inner.is_numeric():
        raise Llm4esError(f"expected a list of numbers, got {column.dtype}", file=path, column="embedding")
    lengths = column.list.len()
    if lengths.null_count():
        raise Llm4esError("missing embedding", file=path, row=int(lengths.is_null().arg_max()), column="embedding")
    dim = int(lengths[0])
    ragged = lengths != dim
    if ragged.any():
        row = int(ragged.arg_max())
        raise Llm4esError(
            f"embedding of length {lengths[row]}, but row 0 has {dim}", file=path, row=row, column="embedding"
        )
    if dim == 0:
        raise Llm4esError("empty embeddings", file=path, column="embedding")
    values = column.explode().cast(pl.Float64).to_numpy()
    return values.reshape(len(column), dim), [f"embedding[{i}]" for i in range(dim)]


def _check_finite(matrix: Matrix, where: str, names: Sequence[str] | None = None) -> None:
    """Error on the first column holding NaN or infinite values, naming it by index (and name)."""
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix)
    if np.isfinite(values).all():
        return
    if sp.issparse(matrix):
        coo = matrix.tocoo()
        bad = ~np.isfinite(coo.data)
        rows, columns, bad_values = coo.row[bad], coo.col[bad], coo.data[bad]
    else:
        rows, columns = np.nonzero(~np.isfinite(values))
        bad_values = values[rows, columns]
    column = int(columns.min())
    in_column = columns == column
    row = int(rows[in_column].min())
    kind = "NaN" if np.isnan(bad_values[in_column]).any() else "infinite"
    raise Llm4esError(
        f"{kind} value in column index {column} ({int(in_column.sum())} rows with a non-finite value there, "
        f"first at row {row}; {int(len(np.unique(columns)))} such columns)",
        file=where,
        column=names[column] if names is not None else str(column),
    )


@dataclass
class Labels:
    """User-level labels: ``frame`` (``user_id`` + one string column per label) and, from a
    corpus, the train/test split, the tasks and positive classes of the schema, and the
    corpus folder (for the baselines)."""

    frame: pl.DataFrame
    source: str
    split: dict[str, str] | None = None
    tasks: dict[str, str] = field(default_factory=dict)
    positives: dict[str, str] = field(default_factory=dict)
    corpus: Path | None = None

    @property
    def columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != "user_id"]


def _users_folder(folder: Path) -> Path | None:
    """The saved users DatasetDict of a corpus (``users/``) or a ``llm4es serialize`` output folder."""
    for candidate in (folder / "users", folder):
        if (candidate / "dataset_dict.json").exists():
            return candidate
    return None


def load_corpus_users(folder: str | Path) -> tuple[Any, Any]:
    """``(users DatasetDict, EventSchema)`` of a corpus folder (``users/`` + ``schema.yaml``)."""
    import datasets

    from .schema import load_schema

    folder = Path(folder)
    users_folder = _users_folder(folder) if folder.is_dir() else None
    if users_folder is None:
        raise Llm4esError("not a corpus folder (expected users/ with a saved DatasetDict)", file=folder)
    if not (folder / "schema.yaml").exists():
        raise Llm4esError("the corpus folder has no schema.yaml", file=folder)
    return datasets.load_from_disk(str(users_folder)), load_schema(folder / "schema.yaml")


def load_labels(source: str | Path) -> Labels:
    """Labels from a corpus folder (its ``users/`` train/test split and schema) or from a
    CSV/Parquet table with ``user_id`` and label columns (every other column is a label)."""
    source = Path(source)
    if not source.exists():
        raise Llm4esError("labels not found (give a corpus folder or a CSV/Parquet table)", file=source)
    if source.is_dir():
        return _corpus_labels(source)
    from .sources import read_table

    frame = read_table(source).drop("__line", "__file")
    if "user_id" not in frame.columns:
        raise Llm4esError(f"no user_id column; the file has {frame.columns}", file=source, column="user_id")
    missing = ["", "nan", "NaN", "NA", "N/A", "null", "NULL", "None"]
    frame = frame.select(
        pl.when(pl.col(c).str.strip_chars().is_in(missing)).then(None).otherwise(pl.col(c).str.strip_chars()).alias(c)
        for c in frame.columns
    ).drop_nulls("user_id")
    _check_unique_ids(frame["user_id"], source)
    return Labels(frame=frame, source=str(source))


def _corpus_labels(folder: Path) -> Labels:
    users, schema = load_corpus_users(folder)
    names = [label.name for label in schema.labels]
    if not names:
        raise Llm4esError("the corpus schema declares no labels", file=folder / "schema.yaml", key="labels")
    frames, split = [], {}
    for split_name, ds in users.items():
        present = [n for n in names if n in ds.column_names]
        table = pl.from_arrow(ds.select_columns(["user_id", *present]).with_format("arrow")[:])
        table = table.with_columns(pl.all().cast(pl.Utf8))
        frames.append(table)
        split.update(dict.fromkeys(table["user_id"].to_list(), split_name))
    frame = pl.concat(frames, how="diagonal")
    _check_unique_ids(frame["user_id"], folder)
    return Labels(
        frame=frame,
        source=str(folder),
        split=split,
        tasks={label.name: label.task for label in schema.labels},
        positives={label.name: label.positive for label in schema.labels if label.positive is not None},
        corpus=folder,
    )


def _check_unique_ids(ids: pl.Series, where: Path) -> None:
    duplicated = ids.is_duplicated()
    if duplicated.any():
        first = int(duplicated.arg_max())
        raise Llm4esError(f"user id {ids[first]!r} appears more than once", file=where, row=first, column="user_id")


def concat_features(
    feature_sets: Mapping[str, FeatureTable], *, balance: bool = True
) -> tuple[np.ndarray, Matrix, dict[str, int]]:
    """Ensemble by concatenation: columns of every set side by side for the users all sets have
    (inner join on user_id). Returns ``(user_ids, matrix, users dropped per set)``.

    ``balance`` (default) puts the blocks on one footing: each dense block is standardized per
    column and divided by sqrt(its width), so each block adds about 1 to a row's squared norm,
    as a TF-IDF bag's L2-normalized rows do (sparse blocks are kept as they are). Without it a
    576-wide embedding block swamps the bag in a linear model fed the sparse concatenation
    unscaled (MovieLens gender, bag + fine-tuned SmolLM2, logistic regression: 0.663 plain,
    0.805 balanced, bag alone 0.809). The statistics are the users' own, label-free; trees
    (LightGBM) are unaffected by per-column scaling.
    """
    if not feature_sets:
        raise Llm4esError("no feature sets to concatenate")
    tables = {name: (np.asarray(ids).astype(str), matrix) for name, (ids, matrix) in feature_sets.items()}
    common = None
    for ids, _ in tables.values():
        common = np.unique(ids) if common is None else np.intersect1d(common, ids)
    if common is None or not len(common):
        raise Llm4esError(f"the feature sets {list(tables)} share no user id; nothing to concatenate")
    blocks = [_rows(matrix, _positions(ids, common)) for ids, matrix in tables.values()]
    if balance:
        blocks = [block if sp.issparse(block) else _balanced(block) for block in blocks]
    any_sparse = any(sp.issparse(block) for block in blocks)
    matrix = sp.hstack([sp.csr_matrix(b) for b in blocks]).tocsr() if any_sparse else np.hstack(blocks)
    dropped = {name: int(len(ids) - len(common)) for name, (ids, _) in tables.items()}
    return common, matrix, dropped


def _balanced(block: np.ndarray) -> np.ndarray:
    """Columns standardized (constant ones left at 0), the block scaled to unit mean squared row norm."""
    block = np.asarray(block, dtype=np.float64)
    std = block.std(axis=0)
    scaled = (block - block.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return scaled / np.sqrt(max(int((std > 0).sum()), 1))


def _positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row of each wanted id in ``ids`` (every wanted id must be there)."""
    order = np.argsort(ids, kind="stable")
    return order[np.searchsorted(ids, wanted, sorter=order)]


def _rows(matrix: Matrix, rows: np.ndarray) -> Matrix:
    return matrix.tocsr()[rows] if sp.issparse(matrix) else np.asarray(matrix)[rows]


# ----- the protocol -----


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
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = Path(path)
        features = list(dict.fromkeys(row.features for row in self.rows))
        models = list(dict.fromkeys(row.model for row in self.rows))
        width = 0.8 / len(models)
        figure = Figure(figsize=(max(5.0, 1.3 * len(features) + 2), 4.0), dpi=120)
        FigureCanvasAgg(figure)
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


def make_model(
    name: str, task: str, *, seed: int = 42, n_jobs: int = 2, sparse: bool = False, params: Mapping | None = None
) -> Any:
    """A downstream classifier pipeline.

    ``lightgbm``: MaxAbsScaler + LGBMClassifier with the paper's parameters (``LGBM_BINARY``
    or ``LGBM_MULTICLASS``), deterministic. ``logreg``: StandardScaler + LogisticRegression;
    sparse input (the TF-IDF bag, rows already L2-normalized) goes in unscaled: MaxAbsScaler,
    the one scaler that keeps it sparse, inflates rare tokens and cost 0.03 ROC-AUC on
    MovieLens gender (5-fold CV 0.743 vs 0.777). ``params`` override the defaults.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler, StandardScaler

    if name == "lightgbm":
        from lightgbm import LGBMClassifier

        defaults = LGBM_BINARY if task == "binary" else LGBM_MULTICLASS
        options = {"random_state": seed, "n_jobs": n_jobs, "verbose": -1, "deterministic": True, "force_row_wise": True}
        return make_pipeline(MaxAbsScaler(), LGBMClassifier(**{**defaults, **options, **(params or {})}))
    if name == "logreg":
        model = LogisticRegression(**{**LOGREG, "random_state": seed, **(params or {})})
        return make_pipeline(model) if sparse else make_pipeline(StandardScaler(), model)
    raise Llm4esError(f"unknown model {name!r}; choose from {list(MODELS)}", key="models")


def _target_labels(labels: Labels | Mapping[str, Any], target: str) -> tuple[np.ndarray, np.ndarray, Labels | None]:
    """``(user_ids, label strings)`` of the users labeled for ``target``."""
    if isinstance(labels, Labels):
        if target not in labels.columns:
            raise Llm4esError(
                f"unknown target {target!r}; label columns: {labels.columns}", file=labels.source, column=target
            )
        frame = labels.frame.select("user_id", pl.col(target).cast(pl.Utf8)).drop_nulls()
        if not len(frame):
            raise Llm4esError(f"no user has a {target!r} label", file=labels.source, column=target)
        return frame["user_id"].to_numpy().astype(str), frame[target].to_numpy().astype(str), labels
    pairs = [(str(k), str(v)) for k, v in labels.items() if v is not None]
    if not pairs:
        raise Llm4esError(f"no user has a {target!r} label", column=target)
    ids, values = zip(*pairs, strict=True)
    return np.asarray(ids), np.asarray(values), None


def _resolve_task(task: str | None, classes: np.ndarray, target: str, source: Labels | None) -> tuple[str, str | None]:
    """Task and positive class, checked against the classes present."""
    where = source.source if source else None
    if len(classes) < 2:
        raise Llm4esError(
            f"target {target!r} has a single class ({str(classes[0])!r}) among the evaluated users; nothing to predict",
            file=where,
            column=target,
        )
    declared = source.tasks.get(target) if source else None
    task = task or declared or ("binary" if len(classes) == 2 else "multiclass")
    if task not in TASKS:
        raise Llm4esError(f"unknown task {task!r}; choose one of {list(TASKS)}", key="task")
    if task == "binary" and len(classes) > 2:
        raise Llm4esError(
            f"target {target!r} has {len(classes)} classes ({', '.join(map(str, classes[:10]))}), so it is multiclass, "
            "not binary (use task multiclass: accuracy)",
            file=where,
            column=target,
        )
    if task == "multiclass":
        return task, None
    positive = source.positives.get(target) if source else None
    if positive is None:
        positive = next((c for c in ("1", "True", "true", "yes") if c in classes), str(classes[-1]))
    if positive not in classes:
        raise Llm4esError(f"positive class {positive!r} not among the classes {list(classes)}", column=target)
    return task, positive


def evaluate_features(
    feature_sets: Mapping[str, FeatureTable],
    labels: Labels | Mapping[str, Any],
    target: str,
    task: str | None = None,
    *,
    split: Mapping[str, str] | None = None,
    seed: int = 42,
    folds: int = 5,
    test_size: float = 0.1,
    models: Sequence[str] = MODELS,
    baseline: str | None = None,
    metric_backend: str = "auto",
    model_params: Mapping[str, Mapping[str, Any]] | None = None,
    kinds: Mapping[str, str] | None = None,
    n_jobs: int = 2,
) -> EvaluationReport:
    """Run the protocol on each feature set (``name -> (user_ids, matrix)``, dense or sparse).

    ``labels``: a ``Labels`` (from ``load_labels``) or a ``user_id -> label`` mapping. The test
    users come from ``split`` (``user_id -> "train" | "test"``), else the corpus split of
    ``labels``, else a seeded stratified split of ``test_size``. ``baseline`` names the row
    (``features/model`` or ``features``) of Δ and the paired t-test (default: the first row).
    ``model_params`` overrides model parameters per model name; ``kinds`` tags feature sets
    (``embeddings``, ``baseline``, ``ensemble``) for the report and the eval results.
    """
    if not feature_sets:
        raise Llm4esError("no feature sets to evaluate")
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        wrong = unknown[0] if unknown else None
        raise Llm4esError(f"unknown model {wrong!r}; choose from {list(MODELS)}", key="models")
    if folds < 2:
        raise Llm4esError(f"folds must be at least 2, got {folds}", key="folds")
    row_names = [f"{name}/{model}" for name in feature_sets for model in models]
    if baseline is not None and baseline not in row_names and baseline not in feature_sets:
        raise Llm4esError(f"no row {baseline!r} to compare with; rows: {row_names}", key="baseline")
    label_ids, label_values, source = _target_labels(labels, target)
    label_ids, first = np.unique(label_ids, return_index=True)
    label_values = label_values[first]

    info: dict[str, dict[str, Any]] = {}
    tables: dict[str, tuple[np.ndarray, Matrix]] = {}
    common = label_ids
    for name, (ids, matrix) in feature_sets.items():
        ids = np.asarray(ids).astype(str)
        matrix = matrix if sp.issparse(matrix) else np.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape[0] != len(ids):
            raise Llm4esError(f"{len(ids)} user ids but a matrix of shape {matrix.shape}", file=name)
        if len(np.unique(ids)) != len(ids):
            values, counts = np.unique(ids, return_counts=True)
            repeated = str(values[counts > 1][0])
            raise Llm4esError(f"user id {repeated!r} appears more than once", file=name, column="user_id")
        _check_finite(matrix, name)
        matched = np.intersect1d(ids, label_ids)
        info[name] = {
            "kind": (kinds or {}).get(name, "features"),
            "users": len(ids),
            "matched_labeled_users": len(matched),
            "users_without_label": len(ids) - len(matched),
            "labeled_users_without_features": len(label_ids) - len(matched),
        }
        if not len(matched):
            raise Llm4esError(
                f"none of its {len(ids):,} user ids has a {target!r} label ({len(label_ids):,} labeled users; "
                f"e.g. features {[str(i) for i in ids[:3]]} vs labels {[str(i) for i in label_ids[:3]]})",
                file=name,
            )
        tables[name] = (ids, matrix)
        common = np.intersect1d(common, matched)
    notes = []
    if not len(common):
        raise Llm4esError(f"the feature sets {list(feature_sets)} share no labeled user")
    y_text = label_values[np.searchsorted(label_ids, common)]
    classes = np.unique(y_text)
    task, positive = _resolve_task(task, classes, target, source)
    y = (y_text == positive).astype(np.int64) if task == "binary" else np.searchsorted(classes, y_text)
    for name in tables:
        dropped = info[name]["matched_labeled_users"] - len(common)
        if dropped:
            notes.append(f"{name}: {dropped:,} of its labeled users are missing from another feature set, left out")

    test_mask, split_source, unsplit = _test_mask(common, y, split, source, test_size, seed, target)
    if unsplit:
        notes.append(f"{unsplit:,} users are in no split (neither train nor test), left out")
    keep = test_mask >= 0
    common, y, test_mask = common[keep], y[keep], test_mask[keep].astype(bool)
    train_idx, test_idx = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
    _check_split(y, train_idx, test_idx, task, folds, target, classes if task == "multiclass" else None)
    fold_pairs = _folds(y, train_idx, folds, seed)
    _check_disjoint(common, fold_pairs, test_idx)

    scorer = Scorer(task, metric_backend)
    rows = []
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (ids, matrix) in tables.items():
        matrix = _rows(matrix, _positions(ids, common))
        matrix, constant = _drop_constant(matrix, name)
        info[name].update(n_features=matrix.shape[1], constant_columns_dropped=constant)
        if constant:
            notes.append(f"{name}: dropped {constant:,} constant column(s) of {matrix.shape[1] + constant:,}")
        for model_name in models:
            params = (model_params or {}).get(model_name)
            row_name = f"{name}/{model_name}"
            row, caught, predictions[row_name] = _score(
                name, model_name, matrix, y, fold_pairs, test_idx, task, scorer, seed, n_jobs, params
            )
            rows.append(row)
            notes += [f"{row.name}: {message}" for message in caught]

    report = EvaluationReport(
        target=target,
        task=task,
        metric=scorer.name,
        metric_backend=scorer.backend,
        classes=[str(c) for c in classes],
        positive=positive,
        n_users=len(common),
        n_train=len(train_idx),
        n_test=len(test_idx),
        folds=folds,
        seed=seed,
        split=split_source,
        rows=rows,
        feature_sets=info,
        notes=notes,
        baseline=None,
        predictions=_Predictions(y, train_idx, test_idx, predictions),
    )
    report.baseline = _compare(report, baseline)
    return report


def _test_mask(
    ids: np.ndarray,
    y: np.ndarray,
    split: Mapping[str, str] | None,
    source: Labels | None,
    test_size: float,
    seed: int,
    target: str,
) -> tuple[np.ndarray, str, int]:
    """Per user 1 = test, 0 = train, -1 = in no split; the split's origin; users in no split."""
    from sklearn.model_selection import train_test_split

    origin = "given"
    if split is None and source is not None and source.split:
        split, origin = source.split, "corpus"
    if split is not None:
        frame = pl.DataFrame({"user_id": ids}).join(
            pl.DataFrame({"user_id": [str(k) for k in split], "part": [str(v) for v in split.values()]}),
            on="user_id",
            how="left",
            maintain_order="left",
        )
        part = frame["part"]
        unknown = part.drop_nulls().filter(~part.drop_nulls().is_in(["train", "test"]))
        if len(unknown):
            raise Llm4esError(f"split values must be 'train' or 'test', got {unknown[0]!r}", key="split")
        mask = np.where(part.is_null().to_numpy(), -1, (part == "test").fill_null(False).to_numpy().astype(int))
        return mask, origin, int((mask < 0).sum())
    if not 0.0 < test_size < 1.0:
        raise Llm4esError(f"test_size must be in (0, 1), got {test_size}", key="test_size")
    try:
        _, test = train_test_split(np.arange(len(ids)), test_size=test_size, stratify=y, random_state=seed)
    except ValueError as err:
        raise Llm4esError(f"cannot make a stratified test split of {target!r}: {err}", column=target) from err
    mask = np.zeros(len(ids), dtype=int)
    mask[test] = 1
    return mask, "stratified", 0


def _check_split(
    y: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    task: str,
    folds: int,
    target: str,
    classes: np.ndarray | None,
) -> None:
    if not len(test_idx):
        raise Llm4esError(f"no test user has a {target!r} label and features", column=target)
    if task == "binary" and len(np.unique(y[test_idx])) < 2:
        raise Llm4esError(f"the test users all have one {target!r} class: ROC-AUC is undefined", column=target)
    values, counts = np.unique(y[train_idx], return_counts=True)
    if len(values) < 2:
        raise Llm4esError(f"the train users all have one {target!r} class", column=target)
    small = counts < folds
    if small.any():
        label = values[small][0] if classes is None else classes[values[small][0]]
        raise Llm4esError(
            f"class {label!r} of {target!r} has {counts[small][0]} train users, fewer than the {folds} folds",
            column=target,
        )


def _folds(y: np.ndarray, train_idx: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, shuffled, seeded folds over the train users (positions into the user arrays)."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(train_idx[a], train_idx[b]) for a, b in splitter.split(train_idx, y[train_idx])]


def _check_disjoint(ids: np.ndarray, fold_pairs: list[tuple[np.ndarray, np.ndarray]], test_idx: np.ndarray) -> None:
    """Train, validation and test user ids must not intersect (as ptls checks)."""
    test = ids[test_idx]
    for k, (fit, valid) in enumerate(fold_pairs):
        for (a, name_a), (b, name_b) in (
            ((ids[fit], "train"), (ids[valid], "valid")),
            ((ids[fit], "train"), (test, "test")),
            ((ids[valid], "valid"), (test, "test")),
        ):
            shared = np.intersect1d(a, b)
            if len(shared):
                raise Llm4esError(
                    f"fold {k}: {len(shared)} user ids are in both {name_a} and {name_b} (e.g. {shared[0]!r})",
                    column="user_id",
                )


def _drop_constant(matrix: Matrix, name: str) -> tuple[Matrix, int]:
    """Drop the columns with one value over the evaluated users; error if every column is constant."""
    if sp.issparse(matrix):
        matrix = matrix.tocsr()
        varies = (matrix.max(axis=0).toarray() != matrix.min(axis=0).toarray()).ravel()
    else:
        varies = np.ptp(matrix, axis=0) > 0
    if not varies.any():
        raise Llm4esError(f"all {matrix.shape[1]:,} columns are constant over the evaluated users", file=name)
    constant = int((~varies).sum())
    return (matrix[:, np.flatnonzero(varies)] if constant else matrix), constant


def _score(
    name: str,
    model_name: str,
    matrix: Matrix,
    y: np.ndarray,
    fold_pairs: list[tuple[np.ndarray, np.ndarray]],
    test_idx: np.ndarray,
    task: str,
    scorer: Scorer,
    seed: int,
    n_jobs: int,
    params: Mapping[str, Any] | None,
) -> tuple[ScoreRow, list[str], tuple[np.ndarray, np.ndarray]]:
    """Fit one model per fold; score it on its validation fold and on the test users.

    Also returns the predictions the paired comparisons need: out-of-fold on the train users
    (each user predicted by the one model that did not see it) and the fold models' mean on the
    test users. For a multiclass task both are class probabilities, in the order of ``y``'s codes.

    BLAS runs single-threaded here: L-BFGS works on vectors of a few thousand numbers, where
    a second OpenBLAS thread cannot help, and on a busy 2-core machine its spin-waiting made
    one logistic regression fit 20x slower (measured: 5.8 s instead of 0.25 s).
    """
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    valid_scores, test_scores, messages = [], [], []
    x_test = _rows(matrix, test_idx)
    shape = (len(y),) if task == "binary" else (len(y), int(y.max()) + 1)
    out_of_fold, test_mean_prediction = np.zeros(shape), np.zeros((len(test_idx), *shape[1:]))
    for fit, valid in fold_pairs:
        model = make_model(model_name, task, seed=seed, n_jobs=n_jobs, sparse=sp.issparse(matrix), params=params)
        with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1, user_api="blas"):
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(_rows(matrix, fit), y[fit])
            out_of_fold[valid] = _predict(model, _rows(matrix, valid), task, shape)
            tested = _predict(model, x_test, task, shape)
        test_mean_prediction += tested / len(fold_pairs)
        valid_scores.append(scorer(y[valid], _decide(out_of_fold[valid], task)))
        test_scores.append(scorer(y[test_idx], _decide(tested, task)))
        messages += [str(w.message).split("\n")[0] for w in caught if issubclass(w.category, ConvergenceWarning)]
    train_idx = np.concatenate([valid for _, valid in fold_pairs])
    valid_mean, valid_std, _ = _summary(valid_scores)
    test_mean, test_std, ci = _summary(test_scores)
    row = ScoreRow(
        features=name,
        model=model_name,
        n_features=int(matrix.shape[1]),
        valid_scores=valid_scores,
        test_scores=test_scores,
        valid_mean=valid_mean,
        valid_std=valid_std,
        test_mean=test_mean,
        test_std=test_std,
        test_ci95=ci,
        pooled_valid=scorer(y[train_idx], _decide(out_of_fold[train_idx], task)),
    )
    return row, sorted(set(messages)), (out_of_fold, test_mean_prediction)


def _predict(model: Any, matrix: Matrix, task: str, shape: tuple[int, ...]) -> np.ndarray:
    """Positive-class scores (binary) or probabilities over all of ``y``'s codes (multiclass)."""
    proba = model.predict_proba(matrix)
    if task == "binary":
        return proba[:, 1]
    full = np.zeros((proba.shape[0], shape[1]))
    full[:, np.asarray(model.classes_, dtype=int)] = proba
    return full


def _decide(prediction: np.ndarray, task: str) -> np.ndarray:
    """What the metric takes: the scores themselves (ROC-AUC) or the most probable class (accuracy)."""
    return prediction if task == "binary" else prediction.argmax(axis=1)


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


# ----- command line -----


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``llm4es evaluate``."""
    parser.add_argument("--embeddings", nargs="+", default=[], metavar="PARQUET", help="user_id + embedding files")
    parser.add_argument("--labels", required=True, help="corpus folder (its users/ split) or a CSV/Parquet table")
    parser.add_argument("--target", required=True, help="label column to predict, e.g. gender or target_flag")
    parser.add_argument("--task", choices=TASKS, help="default: the schema's, else by the number of classes")
    parser.add_argument(
        "--baselines",
        nargs="*",
        default=[],
        choices=["aggregates", "bag", "coles"],
        help="built-in baselines (corpus only); coles trains CoLES with pytorch-lifestream on all users' events",
    )
    parser.add_argument(
        "--coles-recipe", help="CoLES hyperparameters (default: recipes/<schema name>/coles.yaml, else ptls' defaults)"
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="downstream models")
    parser.add_argument(
        "--baseline",
        help="row the others are compared with (Δ, paired t-test and bootstraps), e.g. aggregates/lightgbm "
        "(default: first row)",
    )
    parser.add_argument("--no-ensemble", action="store_true", help="several --embeddings: no concatenation row")
    parser.add_argument(
        "--ensembles",
        nargs="*",
        default=[],
        metavar="A+B",
        help="concatenations to score, by feature set name, e.g. bag+llm4es (an embedding file's name is its stem)",
    )
    parser.add_argument("--folds", type=int, default=5, help="stratified folds on the train users")
    parser.add_argument("--seed", type=int, default=42, help="seed of folds, models and a split made here")
    parser.add_argument("--test-size", type=float, default=0.1, help="test share when the labels carry no split")
    parser.add_argument("--top-k", type=int, default=50, help="aggregates: frequent values per category field")
    parser.add_argument("--metric-backend", default="auto", choices=BACKENDS, help="evaluate, sklearn or auto")
    parser.add_argument("--n-jobs", type=int, default=2, help="LightGBM threads (1 is faster on a busy machine)")
    parser.add_argument("--output-dir", default="outputs/evaluate", help="where report.md/.json/.png go")


def _set_names(paths: Sequence[str]) -> list[str]:
    """Short unique names for embedding files: the file stem, else more of the path."""
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [str(Path(p).with_suffix("")) for p in paths]


def run(args: argparse.Namespace) -> int:
    """``llm4es evaluate``: print the Markdown report and write report.md, report.json, report.png."""
    report_from_args(args)
    return 0


def report_from_args(args: argparse.Namespace) -> EvaluationReport:
    """Everything `llm4es evaluate` does, returning the report (used by the quickstart too)."""
    if not args.embeddings and not args.baselines:
        raise Llm4esError("give --embeddings FILE ... and/or --baselines aggregates bag", key="embeddings")
    labels = load_labels(args.labels)
    feature_sets: dict[str, FeatureTable] = {}
    kinds: dict[str, str] = {}
    notes = []
    if args.baselines:
        from .baselines import aggregate_features, bag_of_categories

        if labels.corpus is None:
            raise Llm4esError("--baselines need --labels to be a corpus folder (users/ + schema.yaml)", key="baselines")
        import datasets

        users, schema = load_corpus_users(labels.corpus)
        everyone = datasets.concatenate_datasets(list(users.values()))
        for name in args.baselines:
            if name == "aggregates":
                ids, matrix, _ = aggregate_features(everyone, schema, top_k=args.top_k)
            elif name == "coles":  # trained on every user's events (no labels), encoder saved in output-dir/coles/
                from .coles import coles_baseline

                ids, matrix, coles_notes = coles_baseline(
                    everyone, schema, recipe=getattr(args, "coles_recipe", None), output_dir=args.output_dir
                )
                notes += coles_notes
            else:
                ids, matrix, _ = bag_of_categories(everyone, schema)
            feature_sets[name], kinds[name] = (ids, matrix), "baseline"
    embedded = {}
    for name, path in zip(_set_names(args.embeddings), args.embeddings, strict=True):
        embedded[name] = load_embeddings(path)
        feature_sets[name], kinds[name] = embedded[name], "embeddings"
    combos = [tuple(spec.split("+")) for spec in args.ensembles]
    if len(embedded) > 1 and not args.no_ensemble:
        combos.insert(0, tuple(embedded))
    for parts in combos:
        missing = [part for part in parts if part not in feature_sets]
        if missing or len(parts) < 2:
            raise Llm4esError(
                f"ensemble {'+'.join(parts)!r} needs two or more of the feature sets {list(feature_sets)}"
                + (f"; unknown: {missing}" if missing else ""),
                key="ensembles",
            )
        ids, matrix, dropped = concat_features({part: feature_sets[part] for part in parts})
        name = "+".join(parts)
        feature_sets[name], kinds[name] = (ids, matrix), "ensemble"
        notes.append(
            f"ensemble {name}: balanced concatenation on {len(ids):,} shared users; dropped "
            + ", ".join(f"{count:,} of {key}" for key, count in dropped.items())
        )
    report = evaluate_features(
        feature_sets,
        labels,
        args.target,
        args.task,
        seed=args.seed,
        folds=args.folds,
        test_size=args.test_size,
        models=args.models,
        baseline=args.baseline,
        metric_backend=args.metric_backend,
        kinds=kinds,
        n_jobs=args.n_jobs,
    )
    report.notes = notes + report.notes
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    markdown = report.to_markdown()
    (output / "report.md").write_text(markdown, encoding="utf-8")
    (output / "report.json").write_text(report.to_json(), encoding="utf-8")
    report.plot(output / "report.png")
    print(markdown)
    print(f"wrote {output / 'report.md'}, report.json and report.png")
    return report


__all__ = [
    "LGBM_BINARY",
    "LGBM_MULTICLASS",
    "MODELS",
    "Comparison",
    "EvaluationReport",
    "Labels",
    "ScoreRow",
    "add_arguments",
    "concat_features",
    "evaluate_features",
    "load_corpus_users",
    "load_embeddings",
    "load_labels",
    "make_model",
    "run",
]
