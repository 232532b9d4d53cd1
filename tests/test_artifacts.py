"""On-disk formats: embeddings files (both layouts, every bad input) and label tables."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from llm4es_hf.artifacts import load_embeddings, load_labels
from llm4es_hf.errors import Llm4esError
from tests.evaluation.helpers import evaluate_features, planted, write_embeddings


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
