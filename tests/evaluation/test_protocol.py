"""The protocol: planted signals found, chance without one, splits and folds, bad options, metrics and paired tests."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import polars as pl
import pytest

from llm4es_hf.artifacts import Labels, load_labels
from llm4es_hf.errors import Llm4esError
from llm4es_hf.evaluation import make_model, protocol
from llm4es_hf.metrics import Scorer
from tests.evaluation.helpers import FAST, evaluate_features, planted


def test_planted_signal_is_found():
    ids, x, labels = planted()
    report = evaluate_features({"emb": (ids, x)}, labels, "y", metric_backend="sklearn", model_params=FAST)
    assert report.task == "binary" and report.metric == "roc_auc"
    assert [row.name for row in report.rows] == ["emb/lightgbm", "emb/logreg"]
    for row in report.rows:
        assert len(row.valid_scores) == len(row.test_scores) == 5
        assert row.test_mean > 0.8
        assert row.test_ci95[0] <= row.test_mean <= row.test_ci95[1]
    assert report.n_train + report.n_test == report.n_users == 400
    assert report.n_test == 40


def test_no_signal_gives_chance():
    ids, x, labels = planted(n=2000, signal=0.0, seed=1)
    report = evaluate_features({"noise": (ids, x)}, labels, "y", metric_backend="sklearn", model_params=FAST)
    for row in report.rows:
        assert abs(row.test_mean - 0.5) < 0.1, row
        assert abs(row.valid_mean - 0.5) < 0.1, row


def test_multiclass_accuracy():
    ids, x, labels = planted(n=450, classes=3, signal=3.0)
    report = evaluate_features(
        {"emb": (ids, x)},
        labels,
        "y",
        metric_backend="sklearn",
        model_params={"lightgbm": {"n_estimators": 30, "min_child_samples": 10}},
    )
    assert report.task == "multiclass" and report.metric == "accuracy" and report.positive is None
    assert report.classes == ["0", "1", "2"]
    for row in report.rows:
        assert row.test_mean > 0.55


def test_paper_parameters_are_the_defaults():
    binary = make_model("lightgbm", "binary")[-1].get_params()
    assert (binary["n_estimators"], binary["learning_rate"], binary["subsample"], binary["subsample_freq"]) == (
        500,
        0.02,
        0.5,
        1,
    )
    assert (binary["colsample_bytree"], binary["max_depth"], binary["reg_alpha"], binary["reg_lambda"]) == (
        0.75,
        6,
        1.0,
        1.0,
    )
    assert binary["min_child_samples"] == 50 and binary["n_jobs"] == 2 and binary["random_state"] == 42
    multi = make_model("lightgbm", "multiclass")[-1].get_params()
    assert (multi["n_estimators"], multi["subsample"], multi["max_depth"], multi["num_leaves"]) == (1000, 0.75, 12, 50)
    assert [type(step).__name__ for step in make_model("logreg", "binary", sparse=True)] == ["LogisticRegression"]
    assert type(make_model("logreg", "binary")[0]).__name__ == "StandardScaler"


def test_folds_and_test_users_are_disjoint_and_seeded():
    ids, _, labels = planted(n=300)
    y = np.array([int(labels[i]) for i in ids])
    train_idx = np.arange(270)
    folds = protocol._folds(y, train_idx, 5, 42)
    valid = np.concatenate([v for _, v in folds])
    assert sorted(valid) == list(train_idx)
    for fit, held in folds:
        assert not set(fit) & set(held) and len(fit) + len(held) == 270
    protocol._check_disjoint(ids, folds, np.arange(270, 300))
    assert [list(v) for _, v in protocol._folds(y, train_idx, 5, 42)] == [list(v) for _, v in folds]
    with pytest.raises(Llm4esError, match="both train and test"):
        protocol._check_disjoint(ids, folds, np.array([0, 299]))


def test_given_split_is_used():
    ids, x, labels = planted(n=300)
    split = {u: ("test" if i % 5 == 0 else "train") for i, u in enumerate(ids)}
    report = evaluate_features({"emb": (ids, x)}, labels, "y", split=split, metric_backend="sklearn", models=["logreg"])
    assert report.split == "given" and report.n_test == 60 and report.n_train == 240


def test_users_that_do_not_match(tmp_path):
    ids, x, labels = planted(n=300)
    with pytest.raises(Llm4esError, match="none of its 300 user ids has a 'y' label") as err:
        evaluate_features({"emb.parquet": (np.char.add("x", ids), x)}, labels, "y")
    assert err.value.file == "emb.parquet"
    partial = {k: v for i, (k, v) in enumerate(labels.items()) if i < 250}
    extra = np.concatenate([ids, ["ghost"]])
    report = evaluate_features(
        {"emb": (extra, np.vstack([x, x[:1]]))}, partial, "y", metric_backend="sklearn", models=["logreg"]
    )
    assert report.feature_sets["emb"]["matched_labeled_users"] == 250
    assert report.feature_sets["emb"]["users_without_label"] == 51


def test_single_class_target():
    ids, x, _ = planted(n=100)
    with pytest.raises(Llm4esError, match="target 'churn' has a single class \\('1'\\)") as err:
        evaluate_features({"emb": (ids, x)}, dict.fromkeys(ids, "1"), "churn")
    assert err.value.column == "churn"


def test_constant_columns_are_dropped_or_fatal():
    ids, x, labels = planted(n=300)
    x[:, 5] = 1.0
    x[:, 6] = 0.0
    report = evaluate_features({"emb": (ids, x)}, labels, "y", metric_backend="sklearn", models=["logreg"])
    assert report.feature_sets["emb"]["constant_columns_dropped"] == 2
    assert report.rows[0].n_features == 6
    assert any("dropped 2 constant column(s) of 8" in note for note in report.notes)
    with pytest.raises(Llm4esError, match="all 8 columns are constant") as err:
        evaluate_features({"flat": (ids, np.ones_like(x))}, labels, "y", models=["logreg"])
    assert err.value.file == "flat"


def test_unknown_target_lists_label_columns():
    labels = Labels(frame=pl.DataFrame({"user_id": ["a"], "gender": ["F"], "age": ["18-24"]}), source="users.csv")
    with pytest.raises(Llm4esError, match=r"unknown target 'sex'; label columns: \['gender', 'age'\]") as err:
        evaluate_features({"emb": (np.array(["a"]), np.ones((1, 2)))}, labels, "sex")
    assert err.value.file == "users.csv" and err.value.column == "sex"


def test_multiclass_target_given_as_binary():
    ids, x, labels = planted(n=90, classes=3)
    with pytest.raises(Llm4esError, match="has 3 classes .* so it is multiclass, not binary"):
        evaluate_features({"emb": (ids, x)}, labels, "y", "binary")


def test_bad_options_and_labels(tmp_path):
    ids, x, labels = planted(n=100)
    with pytest.raises(Llm4esError, match="unknown model 'xgboost'"):
        evaluate_features({"emb": (ids, x)}, labels, "y", models=["xgboost"])
    with pytest.raises(Llm4esError, match=r"no row 'nope' to compare with; rows: \['emb/logreg'\]"):
        evaluate_features({"emb": (ids, x)}, labels, "y", models=["logreg"], baseline="nope", metric_backend="sklearn")
    with pytest.raises(Llm4esError, match="labels not found"):
        load_labels(tmp_path / "missing.csv")
    (tmp_path / "labels.csv").write_text("customer,gender\n1,F\n")
    with pytest.raises(Llm4esError, match="no user_id column") as err:
        load_labels(tmp_path / "labels.csv")
    assert err.value.file == str(tmp_path / "labels.csv")
    (tmp_path / "folder").mkdir()
    with pytest.raises(Llm4esError, match="not a corpus folder"):
        load_labels(tmp_path / "folder")


def test_metric_backends_agree():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    scores = rng.random(50)
    through_evaluate = Scorer("binary", "evaluate")
    assert through_evaluate.backend.startswith("evaluate (local module")
    assert through_evaluate(y, scores) == pytest.approx(Scorer("binary", "sklearn")(y, scores))
    classes = rng.integers(0, 3, 50)
    predicted = rng.integers(0, 3, 50)
    accuracy = Scorer("multiclass", "auto")
    assert accuracy.name == "accuracy" and accuracy.backend.startswith("evaluate")
    assert accuracy(classes, predicted) == pytest.approx(np.mean(classes == predicted))


def test_weighted_metrics_match_sklearn_with_repeats():
    from sklearn.metrics import roc_auc_score

    from llm4es_hf.metrics import _weighted_metric

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60), 1)  # many ties, counted half as sklearn does
    counts = rng.integers(0, 4, size=(3, 60)).astype(float)
    counts[0] = 1.0
    auc = _weighted_metric("roc_auc", y, scores, counts)
    for row, weights in zip(auc, counts, strict=True):
        repeated = np.repeat(np.arange(60), weights.astype(int))
        assert row == pytest.approx(roc_auc_score(y[repeated], scores[repeated]))
    classes, predicted = rng.integers(0, 3, 60), rng.integers(0, 3, 60)
    accuracy = _weighted_metric("accuracy", classes, predicted, counts)
    repeated = np.repeat(np.arange(60), counts[2].astype(int))
    assert accuracy[0] == pytest.approx(np.mean(classes == predicted))
    assert accuracy[2] == pytest.approx(np.mean(classes[repeated] == predicted[repeated]))


def test_paired_bootstrap_tells_a_real_gain_from_noise():
    from llm4es_hf.metrics import paired_bootstrap

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 800)
    weak = y * 0.3 + rng.normal(size=800)
    strong = y * 1.0 + rng.normal(size=800)
    gain = paired_bootstrap("roc_auc", y, strong, weak)
    assert gain.delta > 0.1 and gain.ci95[0] > 0.05 and gain.p_value == 1.0 / gain.resamples
    twin = weak + rng.normal(scale=0.3, size=800)  # as good as weak, not the same
    same = paired_bootstrap("roc_auc", y, twin, weak)
    assert same.ci95[0] < 0 < same.ci95[1] and same.p_value > 0.05
    assert paired_bootstrap("roc_auc", y, weak, weak).p_value == 1.0
    assert paired_bootstrap("roc_auc", y, weak, strong).delta == pytest.approx(-gain.delta)
    with pytest.raises(Llm4esError, match="same users: 800 references, 800 and 10"):
        paired_bootstrap("roc_auc", y, weak, weak[:10])
    with pytest.raises(Llm4esError, match="unknown metric 'f1'"):
        paired_bootstrap("f1", y, weak, weak)


def test_out_of_fold_comparison_finds_the_better_feature_set():
    ids, x, labels = planted(n=600, signal=1.0, seed=5)
    rng = np.random.default_rng(6)
    noise = rng.normal(size=x.shape).astype(np.float32)
    report = evaluate_features(
        {"signal": (ids, x), "noise": (ids, noise), "other_noise": (ids, noise[:, ::-1] + 0.1 * x[:, 1:2])},
        labels,
        "y",
        models=["logreg"],
        baseline="noise",
    )
    signal, other = report.row("signal"), report.row("other_noise")
    assert report.row("noise").pooled_delta is None
    assert signal.pooled_valid > 0.65 and signal.pooled_delta_ci95[0] > 0.1 and signal.pooled_p < 0.01
    assert signal.pooled_p < signal.test_users_p  # 60 test users cannot tell as surely as 540 train users
    assert other.pooled_delta_ci95[0] < 0 < other.pooled_delta_ci95[1] and other.pooled_p > 0.05
    multi_ids, multi_x, multi_labels = planted(n=450, classes=3, signal=3.0)
    multi = evaluate_features(
        {"signal": (multi_ids, multi_x), "noise": (multi_ids, noise[:450])},
        multi_labels,
        "y",
        models=["logreg"],
        baseline="noise",
    )
    assert multi.metric == "accuracy" and multi.row("signal").pooled_delta > 0.3
    backwards = report.compare("noise/logreg", "signal")
    assert backwards.first == "noise/logreg" and backwards.second == "signal/logreg"
    assert backwards.out_of_fold.delta == pytest.approx(-signal.pooled_delta)
    assert backwards.out_of_fold.p_value == signal.pooled_p and backwards.test_users.p_value == signal.test_users_p
    assert "predictions" not in json.loads(report.to_json())
    table = report.comparisons_markdown([backwards])
    assert "resampled within class, 2,000 times" in table and "| noise/logreg | signal/logreg | " in table
    with pytest.raises(Llm4esError, match="no row 'bag'"):
        report.compare("bag", "noise")
    with pytest.raises(Llm4esError, match="holds no predictions"):
        dataclasses.replace(report, predictions=None).compare("signal", "noise")
    assert multi.row("signal").pooled_valid == pytest.approx(np.mean(multi.row("signal").valid_scores), abs=0.02)


def test_metric_fallback_to_sklearn(monkeypatch):
    from llm4es_hf import metrics

    def broken(name):
        raise OSError("read-only module cache")

    monkeypatch.setattr(metrics, "_evaluate_module", broken)
    scorer = Scorer("binary", "auto")
    assert scorer.backend == "scikit-learn (evaluate failed: OSError: read-only module cache)"
    assert scorer(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8])) == 1.0
    with pytest.raises(Llm4esError, match="evaluate could not load the shipped roc_auc module"):
        Scorer("binary", "evaluate")
    ids, x, labels = planted(n=200)
    report = evaluate_features({"emb": (ids, x)}, labels, "y", models=["logreg"])
    assert report.metric_backend.startswith("scikit-learn (evaluate failed")
