"""The paper's protocol (Shestov et al., CIKM '25; pytorch-lifestream's embeddings validation): held-out
test users, stratified folds on the labeled train users, one downstream model per fold scored on its
validation fold and on the test users."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from ..artifacts import Labels, check_finite
from ..errors import Llm4esError
from ..extras import require
from ..metrics import Scorer
from .features import FeatureTable, Matrix, _positions, _rows
from .report import EvaluationReport, ScoreRow, _compare, _decide, _Predictions, _summary

# LightGBM's OpenMP threads spin while waiting; on a busy 2-core machine that made each fit 10-100x
# slower (measured: 8.4 s instead of 0.6 s). Passive waiting is read once, when libgomp starts: torch
# ships its own libgomp.so.1, which LightGBM then shares, so once torch is imported this line is too
# late and the variable must be set before that (in the environment or first thing in the CLI).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

MODELS = ("lightgbm", "logreg")
TASKS = ("binary", "multiclass")
# The paper's settings (ptls' embeddings validation configs); subsample = bagging_fraction with bagging_freq 1,
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


def make_model(
    name: str,
    task: str,
    *,
    seed: int = 42,
    n_jobs: int = 2,
    sparse: bool = False,
    params: Mapping | None = None,
    rows: int | None = None,
) -> Any:
    """A downstream classifier pipeline.

    ``lightgbm``: MaxAbsScaler + LGBMClassifier with the paper's parameters (``LGBM_BINARY``
    or ``LGBM_MULTICLASS``), deterministic. ``logreg``: StandardScaler + LogisticRegression;
    sparse input (the TF-IDF bag, rows already L2-normalized) goes in unscaled: MaxAbsScaler,
    the one scaler that keeps it sparse, inflates rare tokens and cost 0.03 ROC-AUC on
    MovieLens gender (5-fold CV 0.743 vs 0.777). ``params`` override the defaults.

    ``rows`` (the users a model is fit on): below 500, LightGBM's leaf minimum (the paper's 50)
    is cut to a tenth of them, at least 2; on a few dozen users 50 leaves no split to make and
    every prediction constant (ROC-AUC 0.5 whatever the features).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler, StandardScaler

    if name == "lightgbm":
        lgbm_classifier = require("lightgbm").LGBMClassifier  # the `eval` extra
        defaults = LGBM_BINARY if task == "binary" else LGBM_MULTICLASS
        options = {"random_state": seed, "n_jobs": n_jobs, "verbose": -1, "deterministic": True, "force_row_wise": True}
        if rows is not None:
            options["min_child_samples"] = min(defaults["min_child_samples"], max(2, rows // 10))
        return make_pipeline(MaxAbsScaler(), lgbm_classifier(**{**defaults, **options, **(params or {})}))
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
        check_finite(matrix, name)
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
        model = make_model(
            model_name, task, seed=seed, n_jobs=n_jobs, sparse=sp.issparse(matrix), params=params, rows=len(fit)
        )
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
