"""CoLES baseline: the EventSchema -> ptls mapping, recipes, bad input, and a tiny run with ptls itself."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import datasets
import numpy as np
import polars as pl
import pytest

from llm4es_hf.baselines import coles
from llm4es_hf.baselines.coles import ColesConfig, coles_features, embedding_size, load_coles_recipe
from llm4es_hf.cli import main as llm4es
from llm4es_hf.config import parse_config
from llm4es_hf.errors import Llm4esError
from llm4es_hf.evaluation import EvaluationConfig, run_evaluation
from llm4es_hf.schema import save_schema, schema_from_dict
from tests.test_baselines import TINY_SCHEMA

DAY = 86400.0
# test_baselines' tiny schema, with the title kept out of the text (CoLES still embeds it)
SCHEMA = {**TINY_SCHEMA, "fields": [*TINY_SCHEMA["fields"][:3], {**TINY_SCHEMA["fields"][3], "in_text": False}]}


def tiny_users() -> datasets.Dataset:
    """Four users; ``a``'s events are out of time order, ``c`` has missing values, ``d`` has none."""
    return datasets.Dataset.from_dict(
        {
            "user_id": ["a", "b", "c", "d"],
            "event_time": [[0.0, 4 * DAY, DAY], [10 * DAY], [0.0, 0.5 * DAY], []],
            "amount": [[1.0, 2.0, 6.0], [5.0], [None, 4.0], []],
            "mcc": [["x", "y", "x"], ["z"], ["x", None], []],
            "title": [["Up", "Up", "Heat"], ["Heat"], ["Up", "Alien"], []],
            "flag": ["1", "0", "1", "0"],
        }
    )


# ----- the mapping -----


def test_schema_to_ptls_mapping_by_hand():
    features = coles_features(tiny_users(), schema_from_dict(SCHEMA))
    assert features.skipped_empty == 1  # d: no events, nothing to embed
    assert features.vocabularies == {"mcc": ["x", "y", "z"], "title": ["Up", "Heat", "Alien"]}  # by frequency
    # codes: 0 is ptls' padding, 1 missing/rare, 2.. the vocabulary; in = 3 values + 2
    assert features.spec["embeddings"] == {
        "c_mcc": {"in": 5, "out": embedding_size(5, 64)},
        "c_title": {"in": 5, "out": embedding_size(5, 64)},
    }
    assert features.spec["numeric_values"] == {"d_event_time_gap": "identity", "n_amount": "identity"}
    assert {name: info["kind"] for name, info in features.spec["fields"].items()} == {
        "event_time": "date",
        "amount": "number",
        "mcc": "category",
        "title": "text",  # in_text: false fields are CoLES input too: it sees the raw events
    }
    rows = {row["user_id"]: row for row in features.frame.iter_rows(named=True)}
    assert list(rows) == ["a", "b", "c"]
    a = rows["a"]  # sorted by time: 0, 1 day, 4 days
    assert a["event_time"] == [0.0, DAY, 4 * DAY] and a["n_events"] == 3
    np.testing.assert_allclose(a["d_event_time_gap"], [0.0, math.log1p(1.0), math.log1p(3.0)], rtol=1e-6)
    assert a["n_amount"] == [1.0, 6.0, 2.0]  # the amounts follow their events
    assert a["c_mcc"] == [2, 2, 3] and a["c_title"] == [2, 3, 2]
    c = rows["c"]
    assert c["n_amount"] == [0.0, 4.0] and c["c_mcc"] == [2, 1]  # missing number -> 0, missing category -> 1
    np.testing.assert_allclose(c["d_event_time_gap"], [0.0, math.log1p(0.5)], rtol=1e-6)
    assert rows["b"]["d_event_time_gap"] == [0.0]
    assert features.frame.schema["c_mcc"] == pl.List(pl.Int64)
    assert features.frame.schema["n_amount"] == pl.List(pl.Float32)


def test_embedding_sizes_and_vocabularies():
    assert embedding_size(3, 64) == 3 and embedding_size(200, 64) == 31 and embedding_size(2000, 64) == 64
    schema = schema_from_dict(SCHEMA)
    # a cap on the values kept: the rarer ones share code 1 with the missing ones
    capped = coles_features(tiny_users(), schema, ColesConfig(max_categories=1, skip_fields=["title"]))
    assert capped.vocabularies["mcc"] == ["x"] and capped.spec["embeddings"]["c_mcc"]["in"] == 3
    assert [row["c_mcc"] for row in capped.frame.iter_rows(named=True)] == [[2, 2, 1], [1], [2, 1]]
    # a saved encoder's vocabularies encode new users as the training users were
    fixed = coles_features(tiny_users(), schema, vocabularies={"mcc": ["z", "x"], "title": ["Heat"]})
    assert [row["c_mcc"] for row in fixed.frame.iter_rows(named=True)] == [[3, 3, 1], [2], [3, 1]]
    skipped = coles_features(tiny_users(), schema, ColesConfig(skip_fields=["title", "amount"]))
    assert set(skipped.spec["fields"]) == {"event_time", "mcc"}
    assert "c_title" not in skipped.frame.columns and "n_amount" not in skipped.frame.columns


# ----- bad input -----


def test_free_text_is_an_error_naming_the_field():
    schema = schema_from_dict(SCHEMA)
    with pytest.raises(Llm4esError, match=r"key 'fields.title'.*text field 'title' has 3 distinct values.*skip_fields"):
        coles_features(tiny_users(), schema, ColesConfig(max_categories=2))
    # a category field with as many values is clipped (ptls' out_of_index='clip'), not refused
    assert coles_features(tiny_users(), schema, ColesConfig(max_categories=2, skip_fields=["title"]))


def test_bad_fields_and_columns():
    schema = schema_from_dict(SCHEMA)
    users = tiny_users()
    words = users.remove_columns("amount").add_column("amount", [["1", "lots", "2"], ["5"], ["3", "4"], []])
    with pytest.raises(Llm4esError, match=r"number field 'amount' has values that are not numbers"):
        coles_features(words, schema)
    uneven = users.remove_columns("mcc").add_column("mcc", [["x", "y"], ["z"], ["x", None], []])
    with pytest.raises(Llm4esError, match=r"column 'mcc': user 'a' has 2 values of 'mcc' but 3 event times"):
        coles_features(uneven, schema)
    absent = users.remove_columns("mcc").add_column("mcc", [["x", "y", "x"], None, ["x", None], []])
    with pytest.raises(Llm4esError, match=r"column 'mcc': user 'b' has 0 values of 'mcc' but 1 event times"):
        coles_features(absent, schema)
    with pytest.raises(Llm4esError, match=r"column 'title'.*has no column 'title'"):
        coles_features(users.remove_columns("title"), schema)
    with pytest.raises(Llm4esError, match=r"needs a date field 'event_time'"):
        coles_features(users, schema, ColesConfig(skip_fields=["event_time"]))
    with pytest.raises(Llm4esError, match=r"skip_fields names no schema field: \['nope'\]"):
        coles_features(users, schema, ColesConfig(skip_fields=["nope"]))
    with pytest.raises(Llm4esError, match="no user has any event"):
        coles_features(users.select([3]), schema)


def test_recipes(tmp_path):
    shipped = sorted(Path(__file__).resolve().parents[1].glob("recipes/*/coles.yaml"))
    assert {p.parent.name for p in shipped} >= {"movielens", "rosbank", "gender", "age"}
    for path in shipped:
        load_coles_recipe(path)
    movielens = load_coles_recipe(None, schema_from_dict({**SCHEMA, "name": "movielens"}))
    assert movielens == load_coles_recipe(shipped[[p.parent.name for p in shipped].index("movielens")])
    assert load_coles_recipe(None, schema_from_dict(SCHEMA)) == ColesConfig()  # no recipe: ptls' defaults
    bad = {
        "hiden_size: 8\n": r"key 'hiden_size': unknown key\(s\) \['hiden_size'\]",
        "cnt_min: 20\ncnt_max: 10\n": r"key 'cnt_max': cnt_max \(10\) is below cnt_min \(20\)",
        "split_count: 2\nneg_count: 5\n": r"key 'neg_count': neg_count \(5\) exceeds the 4 slices",
        "rnn_type: transformer\n": r"key 'rnn_type'",
        "epochs: 0\n": r"key 'epochs': epochs must be a positive integer",
        "batch_size: 1\n": r"key 'batch_size'",
        "number_scaler: zscore\n": r"key 'number_scaler'",
        "- 1\n": "expected a mapping",
    }
    for text, message in bad.items():
        (tmp_path / "coles.yaml").write_text(text)
        with pytest.raises(Llm4esError, match=message):
            load_coles_recipe(tmp_path / "coles.yaml")
    with pytest.raises(Llm4esError, match="CoLES recipe not found"):
        load_coles_recipe(tmp_path / "missing.yaml")


def test_missing_ptls_names_how_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv(coles.PYTHON_ENV_VAR, raising=False)
    monkeypatch.setattr(coles.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(coles, "_default_envs", lambda: [tmp_path / ".venv-coles"])
    with pytest.raises(Llm4esError, match=r"\(ptls\) is not installed.*python -m llm4es_hf.baselines.coles setup"):
        coles.coles_python()
    # a Python without ptls (this one), named by the environment variable or the recipe
    monkeypatch.setenv(coles.PYTHON_ENV_VAR, sys.executable)
    with pytest.raises(Llm4esError, match=r"\$LLM4ES_COLES_PYTHON .* has no pytorch-lifestream"):
        coles.coles_python()
    with pytest.raises(Llm4esError, match=r"the recipe's python '/no/such/python' does not exist"):
        coles.coles_python(ColesConfig(python="/no/such/python"))
    # through the command: the data are checked first, then the environment is looked for
    folder = tiny_corpus(tmp_path / "corpus", 30)
    monkeypatch.delenv(coles.PYTHON_ENV_VAR)
    args = parse(["--labels", str(folder), "--target", "flag", "--baselines", "coles", "--output-dir", str(tmp_path)])
    with pytest.raises(Llm4esError, match=r"ptls\) is not installed"):
        run_evaluation(args)


def test_too_few_long_users_is_a_clear_error(tmp_path):
    users = tiny_users()
    with pytest.raises(Llm4esError, match=r"key 'min_seq_len': .* at least 2 users with min_seq_len=25 .* 0 of 3"):
        coles.train_coles(users, schema_from_dict(SCHEMA), ColesConfig(), tmp_path / "coles")
    assert not (tmp_path / "coles").exists()


# ----- a tiny run with ptls -----


def tiny_corpus(folder: Path, n: int, *, seed: int = 0) -> Path:
    """A corpus folder (users/ train+test, schema.yaml) of ``n`` users with a planted label: flag-1
    users pay more and prefer mcc a/b. Users 0-2 have 1-2 events (shorter than the tiny recipe's
    min_seq_len), user 3 has none."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {key: [] for key in ("user_id", "event_time", "amount", "mcc", "title", "flag")}
    for i in range(n):
        flag = i % 2
        size = 0 if i == 3 else (1 + i % 2 if i < 3 else int(rng.integers(6, 40)))
        rows["user_id"].append(f"u{i:03d}")
        rows["event_time"].append(np.sort(rng.uniform(0, 90 * DAY, size)).tolist())
        rows["amount"].append(rng.gamma(2.0, 10.0 + 20.0 * flag, size).round(2).tolist())
        shares = [0.4, 0.4, 0.1, 0.1] if flag else [0.1, 0.1, 0.4, 0.4]
        rows["mcc"].append(rng.choice(list("abcd"), size, p=shares).tolist())
        rows["title"].append(rng.choice(["Up", "Heat", "Alien"], size).tolist())
        rows["flag"].append(str(flag))
    users = datasets.Dataset.from_dict(rows)
    test = list(range(n - n // 5, n))
    train = [i for i in range(n) if i not in test]
    datasets.DatasetDict({"train": users.select(train), "test": users.select(test)}).save_to_disk(str(folder / "users"))
    save_schema(schema_from_dict(SCHEMA), folder / "schema.yaml")
    return folder


def parse(argv: list[str]) -> EvaluationConfig:
    (config,) = parse_config([EvaluationConfig], argv, prog="llm4es evaluate")
    return config


TINY_RECIPE = """\
hidden_size: 8
split_count: 3
cnt_min: 8
cnt_max: 16
min_seq_len: 3
epochs: 3
batch_size: 16
neg_count: 3
lr: 0.01
threads: 1
progress: false
"""


def test_tiny_coles_run_in_the_evaluation(tmp_path, capfd):
    try:
        coles.coles_python()
    except Llm4esError as err:
        pytest.skip(f"no ptls environment ({err.message[:60]}...): `make setup` builds it")
    corpus = tiny_corpus(tmp_path / "corpus", 120)
    (tmp_path / "coles.yaml").write_text(TINY_RECIPE)
    out = tmp_path / "report"
    argv = (
        ["--labels", str(corpus), "--target", "flag", "--baselines", "aggregates", "bag", "coles"]
        + ["--coles-recipe", str(tmp_path / "coles.yaml"), "--ensembles", "coles+bag"]
        + ["--models", "logreg", "--folds", "3", "--n-jobs", "1", "--output-dir", str(out)]
    )
    assert llm4es(["evaluate", *argv]) == 0
    printed = capfd.readouterr().out  # the worker writes to the file descriptors: capfd, not capsys
    assert "coles epoch 3/3: loss" in printed  # the loss per epoch is shown
    assert "| coles | logreg |" in printed and "| coles+bag | logreg |" in printed
    data = json.loads((out / "report.json").read_text())
    assert data["feature_sets"]["coles"] == {**data["feature_sets"]["coles"], "kind": "baseline", "n_features": 8}
    assert data["feature_sets"]["coles+bag"]["kind"] == "ensemble"
    notes = " ".join(data["notes"])
    assert "trained on 116 of 119 users' events without labels" in notes  # 3 short users, 1 without events
    assert "3 users with fewer than min_seq_len=3 events were embedded but not trained on" in notes
    assert "have at most cnt_min=8 events: each of their slices is the whole sequence" in notes
    assert "1 users without events have no CoLES embedding" in notes
    # the encoder beside the report, reusable: it embeds the same users to the same vectors
    folder = out / "coles"
    assert {p.name for p in folder.iterdir()} == {
        "model.safetensors",
        "config.json",
        "schema.yaml",
        "coles_training.json",
        "README.md",
    }
    config = json.loads((folder / "config.json").read_text())
    assert config["features"]["embeddings"]["c_mcc"] == {"in": 6, "out": embedding_size(6, 64)}
    assert set(config["vocabularies"]["mcc"]) == set("abcd") and config["recipe"]["hidden_size"] == 8
    training = json.loads((folder / "coles_training.json").read_text())
    losses = training["loss_per_epoch"]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    saved = pl.read_parquet(out / "coles.parquet")
    assert saved.height == 119 and "u003" not in saved["user_id"].to_list()
    users = datasets.load_from_disk(str(corpus / "users"))["train"].select(range(10))
    ids, matrix = coles.embed_coles(folder, users, tmp_path / "again.parquet")
    expected = np.asarray(saved.filter(pl.col("user_id").is_in(list(ids)))["embedding"].to_list())
    assert list(ids) == [f"u{i:03d}" for i in range(10) if i != 3]
    np.testing.assert_allclose(matrix, expected, atol=1e-5)
