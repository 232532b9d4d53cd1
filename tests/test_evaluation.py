"""Downstream evaluation: protocol, bad inputs, metric backends, reports, baselines, CLI."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import datasets
import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from llm4es_hf import evaluation
from llm4es_hf.baselines import aggregate_features, bag_of_categories
from llm4es_hf.corpus import CorpusConfig, build_corpus
from llm4es_hf.errors import Llm4esError
from llm4es_hf.evaluation import Labels, concat_features, load_embeddings, load_labels, make_model
from llm4es_hf.metrics import Scorer
from llm4es_hf.schema import schema_from_dict

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


# ----- the protocol -----


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
    folds = evaluation._folds(y, train_idx, 5, 42)
    valid = np.concatenate([v for _, v in folds])
    assert sorted(valid) == list(train_idx)
    for fit, held in folds:
        assert not set(fit) & set(held) and len(fit) + len(held) == 270
    evaluation._check_disjoint(ids, folds, np.arange(270, 300))
    assert [list(v) for _, v in evaluation._folds(y, train_idx, 5, 42)] == [list(v) for _, v in folds]
    with pytest.raises(Llm4esError, match="both train and test"):
        evaluation._check_disjoint(ids, folds, np.array([0, 299]))


def test_given_split_is_used():
    ids, x, labels = planted(n=300)
    split = {u: ("test" if i % 5 == 0 else "train") for i, u in enumerate(ids)}
    report = evaluate_features({"emb": (ids, x)}, labels, "y", split=split, metric_backend="sklearn", models=["logreg"])
    assert report.split == "given" and report.n_test == 60 and report.n_train == 240


def test_ensemble_by_concatenation():
    ids, x, labels = planted(n=300)
    a = (ids[:280], x[:280, :4])
    b = (ids[20:][::-1], x[20:, 4:][::-1])
    common, plain, dropped = concat_features({"a": a, "b": b}, balance=False)
    assert len(common) == 260 and dropped == {"a": 20, "b": 20}
    row = list(common).index("u100")
    np.testing.assert_array_equal(plain[row], x[100])
    _, matrix, _ = concat_features({"a": a, "b": (b[0], 1000.0 * b[1])})
    # balanced: every column standardized, each block worth ~1 of a row's squared norm
    np.testing.assert_allclose(matrix.std(axis=0), 0.5, rtol=1e-6)
    np.testing.assert_allclose(matrix.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose((matrix[:, :4] ** 2).sum(axis=1).mean(), 1.0, rtol=1e-6)
    _, mixed, _ = concat_features({"a": a, "bag": (b[0], sp.csr_matrix(b[1]))})
    assert sp.issparse(mixed) and mixed.shape == (260, 8)
    report = evaluate_features(
        {"a": a, "b": b, "a+b": (common, matrix)}, labels, "y", metric_backend="sklearn", model_params=FAST
    )
    assert report.n_users == 260
    assert any("a: 20 of its labeled users are missing" in note for note in report.notes)
    assert report.row("a+b/lightgbm").n_features == 8
    assert report.baseline == "a/lightgbm" and report.row("a+b/lightgbm").p_value is not None
    again = evaluate_features({"a": a, "b": b}, labels, "y", metric_backend="sklearn", models=["logreg"], baseline="b")
    assert again.baseline == "b/logreg" and again.row("b").delta is None and again.row("a").delta is not None
    with pytest.raises(Llm4esError, match="share no user"):
        concat_features({"a": (ids[:10], x[:10]), "b": (ids[10:20], x[10:20])})


def test_sparse_features_are_accepted():
    ids, x, labels = planted(n=300)
    report = evaluate_features(
        {"sparse": (ids, sp.csr_matrix(np.maximum(x, 0)))}, labels, "y", metric_backend="sklearn", model_params=FAST
    )
    assert all(row.test_mean > 0.75 for row in report.rows)


# ----- bad input -----


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


def test_nan_embeddings_name_file_and_column(tmp_path):
    ids, x, _ = planted(n=20)
    x[5, 3] = np.nan
    path = write_embeddings(tmp_path / "emb.parquet", ids, x)
    with pytest.raises(Llm4esError, match="NaN value in column index 3") as err:
        load_embeddings(path)
    assert err.value.file == str(path) and err.value.column == "embedding[3]"
    wide = write_embeddings(tmp_path / "wide.parquet", ids, x, wide=True)
    with pytest.raises(Llm4esError, match="column index 3") as err:
        load_embeddings(wide)
    assert err.value.column == "emb_0003"
    with pytest.raises(Llm4esError, match="NaN value in column index 3") as err:
        evaluate_features({"mine": (ids, x)}, dict.fromkeys(ids, "1"), "y")
    assert err.value.file == "mine"


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


def test_bad_embedding_files(tmp_path):
    with pytest.raises(Llm4esError, match="not found"):
        load_embeddings(tmp_path / "missing.parquet")
    pl.DataFrame({"id": ["a"], "embedding": [[1.0]]}).write_parquet(tmp_path / "noid.parquet")
    with pytest.raises(Llm4esError, match="no user_id column") as err:
        load_embeddings(tmp_path / "noid.parquet")
    assert err.value.column == "user_id"
    pl.DataFrame({"user_id": ["a", "b"], "embedding": [[1.0, 2.0], [1.0]]}).write_parquet(tmp_path / "ragged.parquet")
    with pytest.raises(Llm4esError, match="length 1, but row 0 has 2") as err:
        load_embeddings(tmp_path / "ragged.parquet")
    assert err.value.row == 1
    pl.DataFrame({"user_id": [1, 1], "embedding": [[1.0], [2.0]]}).write_parquet(tmp_path / "dup.parquet")
    with pytest.raises(Llm4esError, match="'1' appears more than once"):
        load_embeddings(tmp_path / "dup.parquet")
    pl.DataFrame({"user_id": ["a"], "vector": [[1.0]]}).write_parquet(tmp_path / "nocol.parquet")
    with pytest.raises(Llm4esError, match="expected an `embedding` list column or `emb_\\*` columns"):
        load_embeddings(tmp_path / "nocol.parquet")
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(Llm4esError, match="cannot read as Parquet"):
        load_embeddings(tmp_path / "text.parquet")


def test_embedding_formats_round_trip(tmp_path):
    ids, x, _ = planted(n=10, dim=3)
    for wide in (False, True):
        got_ids, got = load_embeddings(write_embeddings(tmp_path / f"e{wide}.parquet", ids, x, wide=wide))
        assert list(got_ids) == list(ids) and got.dtype == np.float32
        np.testing.assert_allclose(got, x)
    pl.DataFrame({"user_id": [7, 8], "embedding": [[1.0, 2.0], [3.0, 4.0]]}).with_columns(
        pl.col("embedding").cast(pl.Array(pl.Float32, 2))
    ).write_parquet(tmp_path / "array.parquet")
    got_ids, got = load_embeddings(tmp_path / "array.parquet")
    assert list(got_ids) == ["7", "8"] and got.shape == (2, 2)


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


def test_labels_from_a_table(tmp_path):
    ids, x, labels = planted(n=300)
    rows = "\n".join(f"{k},{v}," for k, v in labels.items())
    (tmp_path / "labels.csv").write_text(f"user_id,y,empty\n{rows}\n")
    table = load_labels(tmp_path / "labels.csv")
    assert table.columns == ["y", "empty"] and table.split is None
    report = evaluate_features({"emb": (ids, x)}, table, "y", metric_backend="sklearn", models=["logreg"])
    assert report.split == "stratified" and report.positive == "1" and report.n_users == 300
    with pytest.raises(Llm4esError, match="no user has a 'empty' label"):
        evaluate_features({"emb": (ids, x)}, table, "empty", models=["logreg"])


# ----- metric backends -----


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


# ----- report outputs -----


def test_report_outputs(tmp_path):
    from huggingface_hub import EvalResult, ModelCardData

    ids, x, labels = planted(n=300)
    report = evaluate_features(
        {"aggregates": (ids, x[:, 1:]), "llm4es": (ids, x)},
        labels,
        "y",
        metric_backend="sklearn",
        model_params=FAST,
        kinds={"aggregates": "baseline", "llm4es": "embeddings"},
    )
    markdown = report.to_markdown()
    assert (
        "| features | model | dims | valid | test | test 95% CI | Δ test | p folds | p users "
        "| out-of-fold | Δ out-of-fold [95% CI] | p |" in markdown
    )
    assert "| llm4es | lightgbm | 8 |" in markdown and "metric backend: scikit-learn" in markdown
    data = json.loads(report.to_json())
    assert data["metric"] == "roc_auc" and len(data["rows"]) == 4
    assert data["rows"][2]["delta"] > 0.2 and data["rows"][0]["p_value"] is None
    assert data["rows"][0]["pooled_delta"] is None and data["rows"][2]["pooled_delta_ci95"][0] > 0.2
    assert data["rows"][2]["test_users_p"] < 0.01
    png = report.plot(tmp_path / "plots" / "report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = report.to_eval_results("llm4es-movielens", "org/corpus")
    assert len(results) == 2 and all(isinstance(r, EvalResult) for r in results)
    assert {r.metric_args["downstream_model"] for r in results} == {"lightgbm", "logreg"}
    assert results[0].metric_type == "roc_auc" and results[0].metric_value == round(report.rows[2].test_mean, 4)
    card = ModelCardData(model_name="llm4es-movielens", eval_results=results).to_dict()
    assert card["model-index"][0]["results"][0]["dataset"]["name"] == "org/corpus"
    with pytest.raises(Llm4esError, match="no feature set 'x'"):
        report.to_eval_results("m", "d", features="x")


# ----- baselines -----

TINY_SCHEMA = {
    "name": "tiny",
    "user_id": "uid",
    "time": {"column": "ts"},
    "fields": [
        {"name": "event_time", "kind": "date", "header": "Date"},
        {"name": "amount", "kind": "number", "header": "Amount"},
        {"name": "mcc", "kind": "category", "header": "MCC"},
        {"name": "title", "kind": "text", "header": "Title"},
    ],
    "labels": [{"name": "flag", "task": "binary"}],
}


def tiny_users() -> datasets.Dataset:
    day = 86400.0
    return datasets.Dataset.from_dict(
        {
            "user_id": ["a", "b", "c"],
            "event_time": [[0.0, day, 4 * day], [10 * day], [0.0, 0.5 * day]],
            "amount": [[1.0, 2.0, 6.0], [5.0], [None, 4.0]],
            "mcc": [["x", "y", "x"], ["z"], ["x", None]],
            "title": [["Up", "Up", "Heat"], ["Heat"], ["Up", "Alien"]],
            "flag": ["1", "0", "1"],
        }
    )


def test_aggregates_by_hand():
    schema = schema_from_dict(TINY_SCHEMA)
    ids, matrix, names = aggregate_features(tiny_users(), schema, top_k=1, text_fields=False)
    assert list(ids) == ["a", "b", "c"]
    assert names == [
        "n_events",
        "span_days",
        "events_per_day",
        "amount_sum",
        "amount_mean",
        "amount_std",
        "amount_min",
        "amount_max",
        "amount_median",
        "mcc=x share",
        "mcc=<other> share",
    ]
    expected = [
        [3, 4, 3 / 4, 9, 3, np.std([1, 2, 6]), 1, 6, 2, 2 / 3, 1 / 3],
        [1, 0, 1, 5, 5, 0, 5, 5, 5, 0, 1],
        [2, 0.5, 2, 4, 4, 0, 4, 4, 4, 1 / 2, 1 / 2],
    ]
    np.testing.assert_allclose(matrix, expected)
    _, full, full_names = aggregate_features(tiny_users(), schema)
    assert full_names[9:] == ["mcc=x share", "mcc=<missing> share", "mcc=y share", "mcc=z share"] + [
        "title=Up share",
        "title=Heat share",
        "title=Alien share",
    ]
    np.testing.assert_allclose(full[0, 9:], [2 / 3, 0, 1 / 3, 0, 2 / 3, 1 / 3, 0])


def test_bag_of_categories_equals_tfidf_vectorizer():
    from sklearn.feature_extraction.text import TfidfVectorizer

    users = tiny_users()
    ids, matrix, names = bag_of_categories(users, schema_from_dict(TINY_SCHEMA))
    assert list(ids) == ["a", "b", "c"] and sp.issparse(matrix)
    documents = [
        [f"mcc={v}" for v in mcc if v is not None] + [f"title={v}" for v in title]
        for mcc, title in zip(users["mcc"], users["title"], strict=True)
    ]
    reference = TfidfVectorizer(analyzer=lambda values: values)
    expected = reference.fit_transform(documents)
    assert names == list(reference.get_feature_names_out())
    np.testing.assert_allclose(matrix.toarray(), expected.toarray())
    assert "mcc=<missing>" not in names
    _, frequent, frequent_names = bag_of_categories(users, schema_from_dict(TINY_SCHEMA), min_df=2)
    assert frequent_names == ["mcc=x", "title=Heat", "title=Up"] and frequent.shape == (3, 3)


def test_baselines_follow_a_selection():
    users = tiny_users().select([2, 0])
    ids, matrix, _ = aggregate_features(users, schema_from_dict(TINY_SCHEMA))
    assert list(ids) == ["c", "a"] and matrix[0, 0] == 2


# ----- command line, end to end -----


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_tokenizer) -> Path:
    """The synthetic Rosbank-format corpus (1000 users, planted churn signal, label target_flag)."""
    tokenizer = tmp_path_factory.mktemp("tok")
    tiny_tokenizer.save_pretrained(tokenizer)
    output = tmp_path_factory.mktemp("corpus") / "synthetic"
    return build_corpus(
        CorpusConfig(output_dir=str(output), source="synthetic", max_tokens=None, tokenizer=str(tokenizer))
    )


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="llm4es evaluate")
    evaluation.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_end_to_end(corpus, tmp_path, capsys):
    users = datasets.load_from_disk(str(corpus / "users"))
    ids = list(users["train"]["user_id"]) + list(users["test"]["user_id"])
    rng = np.random.default_rng(0)
    random_path = write_embeddings(tmp_path / "random.parquet", ids, rng.normal(size=(len(ids), 16)))
    out = tmp_path / "report"
    args = parse(
        [
            "--embeddings",
            str(random_path),
            "--labels",
            str(corpus),
            "--target",
            "target_flag",
            "--baselines",
            "aggregates",
            "--models",
            "lightgbm",
            "--output-dir",
            str(out),
            "--n-jobs",
            "1",
        ]
    )
    assert evaluation.run(args) == 0
    printed = capsys.readouterr().out
    assert "| aggregates | lightgbm |" in printed and "| random | lightgbm |" in printed
    data = json.loads((out / "report.json").read_text())
    assert data["split"] == "corpus" and data["n_test"] == 100 and data["baseline"] == "aggregates/lightgbm"
    scores = {row["features"]: row["test_mean"] for row in data["rows"]}
    assert scores["aggregates"] > 0.75
    assert abs(scores["random"] - 0.5) < 0.15
    assert (out / "report.md").read_text().startswith("### Downstream evaluation: `target_flag`")
    assert (out / "report.png").stat().st_size > 1000


def test_cli_bag_and_ensemble(corpus, tmp_path):
    users = datasets.load_from_disk(str(corpus / "users"))
    ids = np.array(list(users["train"]["user_id"]) + list(users["test"]["user_id"]))
    rng = np.random.default_rng(1)
    first = write_embeddings(tmp_path / "a.parquet", ids, rng.normal(size=(len(ids), 4)))
    second = write_embeddings(tmp_path / "b.parquet", ids[:-50], rng.normal(size=(len(ids) - 50, 4)))
    args = parse(
        ["--embeddings", str(first), str(second), "--labels", str(corpus), "--target", "target_flag"]
        + ["--baselines", "bag", "--models", "logreg", "--output-dir", str(tmp_path / "out"), "--n-jobs", "1"]
        + ["--ensembles", "bag+a"]
    )
    assert evaluation.run(args) == 0
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [row["features"] for row in data["rows"]] == ["bag", "a", "b", "a+b", "bag+a"]
    assert data["rows"][0]["test_mean"] > 0.75
    assert data["feature_sets"]["a+b"]["n_features"] == 8 and data["feature_sets"]["a+b"]["kind"] == "ensemble"
    # the bag's signal survives next to a block of noise (balanced concatenation)
    assert data["rows"][-1]["test_mean"] > 0.7 and data["feature_sets"]["bag+a"]["kind"] == "ensemble"
    bad = args.__class__(**{**vars(args), "ensembles": ["bag+c"]})
    with pytest.raises(Llm4esError, match=r"ensemble 'bag\+c'.*unknown: \['c'\]"):
        evaluation.report_from_args(bad)
    assert any("dropped 50 of a, 0 of b" in note for note in data["notes"])


def test_cli_errors(corpus, tmp_path):
    with pytest.raises(Llm4esError, match="give --embeddings"):
        evaluation.run(parse(["--labels", str(corpus), "--target", "target_flag"]))
    (tmp_path / "labels.csv").write_text("user_id,target_flag\n1,0\n")
    with pytest.raises(Llm4esError, match="--baselines need --labels to be a corpus folder"):
        evaluation.run(
            parse(["--labels", str(tmp_path / "labels.csv"), "--target", "target_flag", "--baselines", "aggregates"])
        )
    with pytest.raises(Llm4esError, match=r"unknown target 'gender'; label columns: \['target_flag'\]"):
        evaluation.run(parse(["--labels", str(corpus), "--target", "gender", "--baselines", "aggregates"]))
