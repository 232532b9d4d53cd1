"""Nearest-user search: exact results against brute force, HNSW above the threshold, a known
user excluded from its own neighbours, the round trip through a folder and the loopback Hub,
new events embedded exactly as the corpus was, and the bad inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest

from llm4es_hf.cli import main
from llm4es_hf.errors import Llm4esError
from llm4es_hf.search import QueryEncoder, UserIndex, label_distribution
from llm4es_hf.search.index import normalize_rows


def clustered(n: int = 600, dim: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Users around 6 centres (label = centre) plus a shared offset, as LLM states have."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, dim)) * 3
    group = rng.integers(0, 6, n)
    return (centres[group] + rng.standard_normal((n, dim)) + 50.0).astype(np.float32), group


def brute_force(matrix: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    scores = matrix @ query
    return np.argsort(-scores, kind="stable")[:k]


def test_exact_index_matches_brute_force_and_excludes_the_user():
    matrix, group = clustered()
    ids = [f"u{i}" for i in range(len(matrix))]
    labels = pl.DataFrame({"user_id": ids, "group": [str(g) for g in group]})
    index = UserIndex.build(ids, matrix, labels=labels)
    assert index.info["kind"] == "exact"
    prepared = normalize_rows(matrix, matrix.mean(0))
    for row in (0, 17, 333):
        neighbors = index.neighbors_of(ids[row], k=8)
        assert ids[row] not in neighbors["user_id"].to_list()
        expected = [ids[i] for i in brute_force(prepared, prepared[row], 9) if i != row][:8]
        assert neighbors["user_id"].to_list() == expected
        assert neighbors["rank"].to_list() == list(range(1, 9))
        assert np.all(np.diff(neighbors["similarity"].to_numpy()) <= 1e-6)
        # clusters are well separated: every neighbour shares the user's group
        assert set(neighbors["group"]) == {str(group[row])}
        assert label_distribution(neighbors, "group") == {str(group[row]): 1.0}
    # a raw (not yet normalized) embedding is prepared like the indexed ones
    top = index.search(matrix[5:6], k=3)[0]
    assert top["user_id"][0] == "u5" and top["similarity"][0] == pytest.approx(1.0, abs=1e-4)


def test_hnsw_above_the_threshold_finds_the_exact_neighbours():
    matrix, _ = clustered(n=800)
    ids = [str(i) for i in range(len(matrix))]
    approximate = UserIndex.build(ids, matrix, exact_max_users=500)
    exact = UserIndex.build(ids, matrix, kind="exact")
    assert approximate.info["kind"] == "hnsw" and exact.info["kind"] == "exact"
    recall = np.mean(
        [
            len(set(approximate.neighbors_of(u, 10)["user_id"]) & set(exact.neighbors_of(u, 10)["user_id"])) / 10
            for u in ids[:50]
        ]
    )
    assert recall >= 0.95


def test_save_load_roundtrip_and_map(tmp_path):
    matrix, group = clustered(n=100)
    ids = [f"u{i}" for i in range(100)]
    index = UserIndex.build(ids, matrix, labels=pl.DataFrame({"user_id": ids[:90], "g": list(map(str, group[:90]))}))
    index.save(tmp_path / "idx")
    loaded = UserIndex.load(tmp_path / "idx")
    assert loaded.neighbors_of("u3", 5).equals(index.neighbors_of("u3", 5))
    assert loaded.label_columns == ["g"]
    assert loaded.users["g"].null_count() == 10  # users without a label stay, unlabelled
    xy = loaded.project(loaded.vector("u7"))[0]
    assert np.allclose(xy, loaded.users.filter(pl.col("user_id") == "u7").select("x", "y").to_numpy()[0], atol=1e-5)


def test_bad_inputs(tmp_path):
    matrix, _ = clustered(n=20)
    ids = [str(i) for i in range(20)]
    index = UserIndex.build(ids, matrix)
    with pytest.raises(Llm4esError, match="unknown user id 'nope'") as err:
        index.neighbors_of("nope")
    assert err.value.column == "user_id"
    with pytest.raises(Llm4esError, match="k must be at least 1"):
        index.neighbors_of("1", 0)
    with pytest.raises(Llm4esError, match="query embeddings have 3 dimensions"):
        index.search(np.ones((1, 3)))
    with pytest.raises(Llm4esError, match="NaN"):
        UserIndex.build(ids, np.full_like(matrix, np.nan))
    with pytest.raises(Llm4esError, match="one embedding row per user"):
        UserIndex.build(ids[:5], matrix)
    with pytest.raises(Llm4esError, match="index kind"):
        UserIndex.build(ids, matrix, kind="ivf-magic")
    (tmp_path / "empty").mkdir()
    with pytest.raises(Llm4esError, match="not an index folder") as err:
        UserIndex.load(tmp_path / "empty")
    assert err.value.file == str(tmp_path / "empty")
    with pytest.raises(Llm4esError, match="not found"):
        UserIndex.load(tmp_path / "missing")
    # asking for more neighbours than there are users gives all the others
    assert len(index.neighbors_of("1", 100)) == 19


def test_index_from_a_corpus_keeps_labels_schema_texts(movielens_index):
    index = UserIndex.load(movielens_index)
    assert index.info["n_users"] == 943 and index.label_columns == ["gender", "age", "occupation"]
    assert set(index.users["split"].unique()) == {"train", "test"}
    assert index.info["serialization"]["max_tokens"] == 120
    assert (movielens_index / "schema.yaml").exists()
    texts = index.texts()
    assert len(texts) == 943 and texts["text"].str.starts_with("Movie|Rating").all()
    # the model path is stored relative to the index, so both folders can move together
    assert not json.loads((movielens_index / "index.json").read_text())["model"].startswith("/")


def _viewer_csv(path, user_id: str, extra_column: bool = False) -> None:
    from llm4es_hf.sources.movielens import read_movielens

    events, _ = read_movielens()
    rows = events.filter(pl.col("user_id") == user_id).select("user_id", "timestamp", "movie_title", "genres", "rating")
    if extra_column:
        rows = rows.with_columns(pl.lit("x").alias("zip_code"))
    rows.write_csv(path)


def test_new_events_are_embedded_like_the_corpus(movielens_index, tmp_path):
    index = UserIndex.load(movielens_index)
    encoder = QueryEncoder(index)
    _viewer_csv(tmp_path / "viewer.csv", "10")
    ids, texts = encoder.texts(tmp_path / "viewer.csv")
    stored = index.texts().filter(pl.col("user_id") == "10")["text"][0]
    assert ids == ["10"] and texts == [stored]
    neighbors = index.search(encoder.embed(texts), k=3)[0]
    assert neighbors["user_id"][0] == "10" and neighbors["similarity"][0] == pytest.approx(1.0, abs=1e-3)


def test_new_events_bad_input(movielens_index, tmp_path):
    encoder = QueryEncoder(UserIndex.load(movielens_index), max_events=50, max_users=1)
    _viewer_csv(tmp_path / "extra.csv", "10", extra_column=True)
    with pytest.raises(Llm4esError, match=r"unknown columns \['zip_code'\]") as err:
        encoder.texts(tmp_path / "extra.csv")
    assert err.value.column == "zip_code" and err.value.file.endswith("extra.csv")
    _viewer_csv(tmp_path / "many.csv", "13")  # 636 ratings
    with pytest.raises(Llm4esError, match="too many events"):
        encoder.texts(tmp_path / "many.csv")
    (tmp_path / "two.csv").write_text("user_id,timestamp,movie_title,genres,rating\na,1,X,Drama,3\nb,2,Y,Drama,4\n")
    with pytest.raises(Llm4esError, match="holds 2 users"):
        encoder.texts(tmp_path / "two.csv")
    (tmp_path / "time.csv").write_text("timestamp,movie_title,genres,rating\n1,X,Drama,3\nyesterday,Y,Drama,4\n")
    with pytest.raises(Llm4esError, match="unparsable timestamp") as err:
        encoder.texts(tmp_path / "time.csv")
    assert err.value.row == 3 and err.value.column == "timestamp"
    (tmp_path / "missing.csv").write_text("timestamp,movie_title\n1,X\n")
    with pytest.raises(Llm4esError, match="missing column") as err:
        encoder.texts(tmp_path / "missing.csv")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(Llm4esError):
        encoder.texts(tmp_path / "binary.csv")


def test_index_needs_matching_users_and_a_known_model(movielens_index, tmp_path, tiny_model):
    ids = [f"other-{i}" for i in range(5)]
    pl.DataFrame({"user_id": ids, "embedding": [[0.1 * i, 1.0] for i in range(5)]}).write_parquet(tmp_path / "e.pq")
    corpus = movielens_index.parent / "corpus"
    assert main(["index", "--embeddings", str(tmp_path / "e.pq"), "--labels", str(corpus), "--output", "x"]) == 2
    copied = tmp_path / "idx"
    shutil.copytree(movielens_index, copied)
    info = json.loads((copied / "index.json").read_text())
    info["model"] = None
    (copied / "index.json").write_text(json.dumps(info))
    with pytest.raises(Llm4esError, match="no model given"):
        QueryEncoder(UserIndex.load(copied))
    (copied / "schema.yaml").unlink()
    with pytest.raises(Llm4esError, match="no schema.yaml"):
        QueryEncoder(UserIndex.load(copied), str(tiny_model))


def test_cli_index_search_and_hub_roundtrip(movielens_index, tmp_path, capsys, loopback_hub):
    root = movielens_index.parent
    out = tmp_path / "idx"
    args = ["index", "--embeddings", str(root / "emb.parquet"), "--labels", str(root / "corpus")]
    assert main([*args, "--output", str(out), "--push-to-hub", "org/ml-index"]) == 0
    assert "indexed 943 users" in capsys.readouterr().out
    assert loopback_hub.repo("org/ml-index", "dataset").private
    assert main(["search", "--index", "org/ml-index", "--user-id", "10", "-k", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["query"] == "10" and len(result["neighbors"]) == 4
    assert "10" not in [n["user_id"] for n in result["neighbors"]]
    assert abs(sum(result["label_shares"]["gender"].values()) - 1) < 1e-6
    assert main(["search", "--index", str(out), "--user-id", "unknown-user"]) == 2
    assert "unknown user id 'unknown-user'" in capsys.readouterr().err
    _viewer_csv(tmp_path / "v.csv", "10")
    assert main(["search", "--index", str(movielens_index), "--events", str(tmp_path / "v.csv"), "-k", "2"]) == 0
    assert "2 nearest users of 10" in capsys.readouterr().out
