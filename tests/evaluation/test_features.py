"""Feature sets: ensembles by concatenation, sparse matrices."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from llm4es_hf.errors import Llm4esError
from llm4es_hf.evaluation import concat_features
from tests.evaluation.helpers import FAST, evaluate_features, planted


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
