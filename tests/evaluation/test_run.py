"""`llm4es evaluate` and `evaluate_embeddings`: files in, report out, every bad option named."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import datasets
import numpy as np
import pytest

from llm4es_hf.cli import main as llm4es
from llm4es_hf.config import parse_config
from llm4es_hf.corpus import CorpusConfig, build_corpus
from llm4es_hf.errors import Llm4esError
from llm4es_hf.evaluation import EvaluationConfig, evaluate_embeddings, run_evaluation
from tests.evaluation.helpers import write_embeddings


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_tokenizer) -> Path:
    """The synthetic Rosbank-format corpus (1000 users, planted churn signal, label target_flag)."""
    tokenizer = tmp_path_factory.mktemp("tok")
    tiny_tokenizer.save_pretrained(tokenizer)
    output = tmp_path_factory.mktemp("corpus") / "synthetic"
    return build_corpus(
        CorpusConfig(output_dir=str(output), source="synthetic", max_tokens=None, tokenizer=str(tokenizer))
    )


def parse(argv: list[str]) -> EvaluationConfig:
    (config,) = parse_config([EvaluationConfig], argv, prog="llm4es evaluate")
    return config


def test_cli_end_to_end(corpus, tmp_path, capsys):
    users = datasets.load_from_disk(str(corpus / "users"))
    ids = list(users["train"]["user_id"]) + list(users["test"]["user_id"])
    rng = np.random.default_rng(0)
    random_path = write_embeddings(tmp_path / "random.parquet", ids, rng.normal(size=(len(ids), 16)))
    out = tmp_path / "report"
    argv = [
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
    assert llm4es(["evaluate", *argv]) == 0
    printed = capsys.readouterr().out
    assert "| aggregates | lightgbm |" in printed and "| random | lightgbm |" in printed
    data = json.loads((out / "report.json").read_text())
    assert data["split"] == "corpus" and data["n_test"] == len(users["test"]) > 50
    assert data["baseline"] == "aggregates/lightgbm"
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
    run_evaluation(args)
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [row["features"] for row in data["rows"]] == ["bag", "a", "b", "a+b", "bag+a"]
    assert data["rows"][0]["test_mean"] > 0.75
    assert data["feature_sets"]["a+b"]["n_features"] == 8 and data["feature_sets"]["a+b"]["kind"] == "ensemble"
    # the bag's signal survives next to a block of noise (balanced concatenation)
    assert data["rows"][-1]["test_mean"] > 0.7 and data["feature_sets"]["bag+a"]["kind"] == "ensemble"
    bad = dataclasses.replace(args, ensembles=["bag+c"])
    with pytest.raises(Llm4esError, match=r"ensemble 'bag\+c'.*unknown: \['c'\]"):
        run_evaluation(bad)
    assert any("dropped 50 of a, 0 of b" in note for note in data["notes"])


def test_cli_errors(corpus, tmp_path):
    with pytest.raises(Llm4esError, match="give --embeddings"):
        run_evaluation(parse(["--labels", str(corpus), "--target", "target_flag"]))
    (tmp_path / "labels.csv").write_text("user_id,target_flag\n1,0\n")
    with pytest.raises(Llm4esError, match="baselines need labels from a corpus folder"):
        run_evaluation(
            parse(["--labels", str(tmp_path / "labels.csv"), "--target", "target_flag", "--baselines", "aggregates"])
        )
    with pytest.raises(Llm4esError, match=r"unknown target 'gender'; label columns: \['target_flag'\]"):
        run_evaluation(parse(["--labels", str(corpus), "--target", "gender", "--baselines", "aggregates"]))


def test_python_api_takes_arrays_and_files(corpus, tmp_path):
    users = datasets.load_from_disk(str(corpus / "users"))
    ids = np.array(list(users["train"]["user_id"]) + list(users["test"]["user_id"]))
    rng = np.random.default_rng(2)
    matrix = rng.normal(size=(len(ids), 4))
    from_arrays = evaluate_embeddings(
        {"noise": (ids, matrix)}, corpus, "target_flag", models=["logreg"], output_dir=None, baselines=["aggregates"]
    )
    path = write_embeddings(tmp_path / "noise.parquet", ids, matrix)
    from_files = evaluate_embeddings([str(path)], corpus, "target_flag", models=["logreg"], output_dir=str(tmp_path))
    assert [r.features for r in from_arrays.rows] == ["aggregates", "noise"]
    noise = next(r for r in from_arrays.rows if r.features == "noise")
    assert from_files.rows[0].test_mean == pytest.approx(noise.test_mean)
    assert (tmp_path / "report.md").exists()
    with pytest.raises(Llm4esError, match=r"unknown option\(s\) \['fold'\]"):
        evaluate_embeddings([str(path)], corpus, "target_flag", fold=3)
