"""The main job on a user's own events: `llm4es schema infer`, then `llm4es quickstart --source csv`,
on a fixture of our own (docs/examples/shop_*.csv); the synthetic Rosbank-format source; the bad
input that must fail before any training."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from huggingface_hub import ModelCard

from llm4es_hf.cli import main
from llm4es_hf.errors import Llm4esError
from llm4es_hf.quickstart import QuickstartConfig, minutes, training_plan
from tests.test_quickstart import TINY_BUDGET

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "docs" / "examples" / "shop_events.csv"
LABELS = ROOT / "docs" / "examples" / "shop_labels.csv"


@pytest.fixture(scope="module")
def shop_schema(tmp_path_factory) -> Path:
    schema = tmp_path_factory.mktemp("schema") / "shop_schema.yaml"
    assert main(["schema", "infer", str(EVENTS), "--labels", str(LABELS), "--output", str(schema)]) == 0
    return schema


def quickstart(output: Path, schema: Path, *extra: str) -> list[str]:
    return [
        "quickstart",
        "--source",
        "csv",
        "--input",
        str(EVENTS),
        "--schema",
        str(schema),
        "--output-dir",
        str(output),
        *TINY_BUDGET,
        *extra,
    ]


@pytest.mark.slow
def test_own_csv_end_to_end(shop_schema, tmp_path, capsys, monkeypatch):
    run = tmp_path / "shop"
    assert main(quickstart(run, shop_schema, "--labels", str(LABELS), "--target", "churn")) == 0
    out = capsys.readouterr().out
    assert "labels: 80 of the 80 users have a 'churn' label (2 classes: 0: 46, 1: 34)" in out
    assert "plan: fine-tune 2 steps x 2 of the 72 train users x 32 tokens" in out and "estimated from" in out
    assert "shop_events churn: test ROC-AUC" in out and "LLM4ES added to the bag (logreg, out-of-fold)" in out
    assert f"demo: python spaces/llm4es-demo/app.py --run {run}" in out
    results = json.loads((run / "quickstart.json").read_text())
    assert results["target"] == "churn" and results["plan"]["embed_users"] == 80
    assert {"aggregates/lightgbm", "bag/logreg", "llm4es-finetuned/lightgbm", "bag+llm4es-finetuned/logreg"} <= set(
        results["scores"]
    )
    card = ModelCard.load(run / "model" / "README.md")
    assert card.text.lstrip().startswith("# llm4es-smollm2-shop-events\n")
    assert card.data.eval_results[0].dataset_name == "shop_events (churn)"

    # the run folder as the other tools take it: search, UserEncoder, the Space
    assert main(["search", "--index", str(run / "index"), "--user-id", "C1000", "--k", "3"]) == 0
    assert "C1000" in capsys.readouterr().out
    from llm4es_hf import UserEncoder
    from llm4es_hf.search import UserIndex
    from llm4es_hf.space import Demo, default_locations, example_events

    encoder = UserEncoder.from_pretrained(str(run / "model"))
    example = run / "example_events.csv"
    assert pl.read_csv(example).columns == ["customer", "ts", "mcc", "amount"]
    ids, vectors = encoder.encode_events(pl.read_csv(example, infer_schema=False))
    assert ids == ["C1000"] and vectors.shape == (1, 576)
    monkeypatch.setenv("LLM4ES_RUN", str(run))
    model, index = default_locations(ROOT)
    assert (model, index) == (str(run / "model"), str(run / "index"))
    assert example_events(index, ROOT / "none.csv") == example
    demo = Demo(UserIndex.load(index), model)
    _, neighbors, shares, _ = demo.known_user("C1000", 4, "churn")
    assert len(neighbors) == 4 and set(shares) <= {"0", "1"}
    text, neighbors, _, _ = demo.new_events(str(example), None, 4, "churn")
    assert text.startswith("Date|mcc|amount") and len(neighbors) == 4


@pytest.mark.slow
def test_synthetic_rosbank_format_through_the_main_job(tmp_path, capsys):
    run = tmp_path / "synthetic"
    code = main(
        ["quickstart", "--source", "synthetic", "--synthetic-users", "60", "--synthetic-events", "12"]
        + ["--output-dir", str(run), *TINY_BUDGET, "--max-tokens", "96", "--embed-tokens", "96"]  # header: 50
    )
    assert code == 0
    results = json.loads((run / "quickstart.json").read_text())
    assert results["target"] == "target_flag" and results["plan"]["embed_users"] == 60
    assert "bag/logreg" in results["scores"] and "aggregates+llm4es-finetuned/lightgbm" in results["scores"]
    assert not (run / "example_events.csv").exists()  # generated events have no raw file to quote
    out = capsys.readouterr().out
    assert "synthetic churn" not in out  # titled by its schema: rosbank
    assert "rosbank target_flag: test ROC-AUC" in out and "60 generated users" in out


def write_labels(path: Path, edit) -> Path:
    frame = pl.read_csv(LABELS, schema_overrides={"customer": pl.Utf8})
    edit(frame).write_csv(path)
    return path


@pytest.mark.parametrize(
    ("edit", "target", "message"),
    [
        (
            lambda f: f.with_columns((pl.lit("X") + pl.col("customer")).alias("customer")),
            "churn",
            "only 0 of the 80 labeled users",
        ),
        (lambda f: f.with_columns(pl.lit(0).alias("churn")), "churn", "all have one 'churn' class ('0')"),
        (
            lambda f: f.filter((pl.col("churn") == 0) | (pl.int_range(pl.len()) < 12)),
            "churn",
            "fewer than 5 folds with 10% held out need (6 per class)",
        ),
        (lambda f: f, "gender", "no label 'gender' in schema 'shop_events'; its labels: ['churn']"),
    ],
    ids=["ids-match-none", "one-class", "too-few-per-class", "unknown-target"],
)
def test_bad_labels_fail_before_the_corpus(shop_schema, tmp_path, capsys, edit, target, message):
    labels = write_labels(tmp_path / "labels.csv", edit)
    run = tmp_path / "run"
    assert main(quickstart(run, shop_schema, "--labels", str(labels), "--target", target)) == 2
    err = capsys.readouterr().err
    assert message in err and ("labels.csv" in err or "shop_schema.yaml" in err)
    assert not (run / "corpus").exists() and not (run / "model").exists()


def test_too_few_users_to_hold_out_fail_before_training(shop_schema, tmp_path, capsys):
    few = tmp_path / "few.csv"
    few.write_text("".join(EVENTS.read_text().splitlines(keepends=True)[:40]))
    run = tmp_path / "run"
    code = main(
        [*quickstart(run, shop_schema, "--labels", str(LABELS)), "--enrich-users", "0"]
        + ["--input", str(few)]  # the last --input wins
    )
    assert code == 2
    assert "test users (10% of the labeled users) all have the 'churn' class" in capsys.readouterr().err
    assert not (run / "model").exists()


def test_events_without_a_usable_time_fail_before_training(shop_schema, tmp_path, capsys):
    events = tmp_path / "events.csv"
    events.write_text(EVENTS.read_text().replace(",2024-", ",24/"))
    config = shop_schema.read_text()
    assert main([*quickstart(tmp_path / "run", shop_schema, "--labels", str(LABELS)), "--input", str(events)]) == 2
    err = capsys.readouterr().err
    assert "events.csv" in err and "ts" in err
    assert shop_schema.read_text() == config and not (tmp_path / "run" / "model").exists()


def test_budget_follows_the_data(tmp_path):
    serialized = tmp_path / "serialized"
    serialized.mkdir()
    pl.DataFrame({"n_tokens": [10] * 72}).write_parquet(serialized / "train-00000-of-00001.parquet")
    config = QuickstartConfig(train_steps=500, batch_size=8, max_tokens=32, max_epochs=3.0)
    assert training_plan(config, tmp_path) == (27, 72, 27 * 8 * 10)  # 3 passes over 72 users
    config = QuickstartConfig(train_steps=5, batch_size=8, max_tokens=8)
    assert training_plan(config, tmp_path) == (5, 72, 5 * 8 * 8)  # the budget, texts cut to max_tokens
    assert minutes(20) == "~20 s" and minutes(420) == "~7 min"


def test_space_run_folder_must_hold_a_model_and_an_index(tmp_path):
    from llm4es_hf.space import default_locations

    (tmp_path / "nothing").mkdir()
    with pytest.raises(Llm4esError, match="not a run folder of `llm4es quickstart`"):
        default_locations(ROOT, tmp_path / "nothing")
