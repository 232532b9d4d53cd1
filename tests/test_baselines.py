"""Baselines: aggregates and the bag of categories against hand computations."""

from __future__ import annotations

import datasets
import numpy as np
import scipy.sparse as sp

from llm4es_hf.baselines import aggregate_features, bag_of_categories
from llm4es_hf.schema import schema_from_dict

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
