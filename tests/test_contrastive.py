"""Contrastive stage through recipes/contrastive.py: slices, batches without a user twice, a tiny run
that lowers its loss and saves a folder every embedding path reads the same way, bad input caught
before training."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest

from llm4es_hf.errors import Llm4esError
from llm4es_hf.training.contrastive import (
    ContrastiveScriptArguments,
    check_inputs,
    round_batch_sampler,
    sample_views,
    slice_users,
)

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("contrastive_recipe", ROOT / "recipes" / "contrastive.py")
recipe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipe)


def test_slices_are_contiguous_runs_of_one_users_events():
    histories = [list(range(100, 100 + n)) for n in (5, 12, 30, 7)]
    table = pa.table({"x": pa.array(histories), "y": pa.array([[f"e{v}" for v in h] for h in histories])})
    n_events = np.array([len(h) for h in histories])
    lengths, starts = sample_views(n_events, rounds=3, views=2, min_events=3, max_events=8, seed=0)
    assert len(lengths) == 3 * 2 * len(histories)
    sliced = slice_users(table, ["x", "y"], lengths, starts).to_pydict()
    for row, (length, start) in enumerate(zip(lengths, starts, strict=True)):
        user = row % len(histories)
        assert 3 <= length <= min(8, n_events[user])
        assert sliced["x"][row] == histories[user][start : start + length]
        assert sliced["y"][row] == [f"e{v}" for v in histories[user][start : start + length]]
    # views of a user differ (random starts and lengths), rows of one round cover every user once
    assert len({(int(a), int(b)) for a, b in zip(lengths[2::4], starts[2::4], strict=True)}) > 1


def test_batches_never_hold_a_user_twice():
    users, rounds, batch = 10, 4, 4
    dataset = datasets.Dataset.from_dict({"anchor": [f"u{i % users}" for i in range(users * rounds)]})
    sampler = round_batch_sampler(users)(dataset, batch_size=batch, drop_last=False, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == rounds * 3  # 4 + 4 + 2 per round
    seen = sorted(i for b in batches for i in b)
    assert seen == list(range(users * rounds))  # every pair once per epoch
    for b in batches:
        names = [dataset[i]["anchor"] for i in b]
        assert len(set(names)) == len(names) >= 2
    sampler.set_epoch(1)
    assert list(sampler) != batches  # a new order each epoch


@pytest.fixture(scope="module")
def taste_corpus(tmp_path_factory) -> Path:
    """40 viewers who each rate their own three films (tests/support/tiny.py)."""
    from tests.support import tiny

    return tiny.tiny_taste_corpus(tmp_path_factory.mktemp("taste") / "corpus")


def _args(**kwargs) -> ContrastiveScriptArguments:
    return ContrastiveScriptArguments(**kwargs)


def test_bad_input_is_caught_before_any_model_is_loaded():
    n_events = np.array([40, 25, 12, 30])
    ids = ["a", "b", "c", "d"]
    with pytest.raises(Llm4esError, match="cannot fill a contrastive batch of 8"):
        check_inputs(n_events, ids, _args(min_events=5, max_events=10), batch_size=8)
    with pytest.raises(Llm4esError, match="at least 2 users"):
        check_inputs(n_events, ids, _args(min_events=5, max_events=10), batch_size=1)
    with pytest.raises(Llm4esError, match="user 'c' has 12") as err:
        check_inputs(n_events, ids, _args(min_events=20, max_events=30), batch_size=2)
    assert err.value.row == 2 and err.value.key == "min_events"
    with pytest.raises(Llm4esError, match="min_events <= max_events"):
        check_inputs(n_events, ids, _args(min_events=8, max_events=4), batch_size=2)
    with pytest.raises(Llm4esError, match="loss"):
        check_inputs(n_events, ids, _args(loss="triplet"), batch_size=2)


def _base(taste_corpus: Path, tiny_model: Path, out: Path) -> list[str]:
    return [
        "--corpus",
        str(taste_corpus),
        "--model_name_or_path",
        str(tiny_model),
        "--output_dir",
        str(out),
        "--max_slice_tokens",
        "64",
        "--min_events",
        "3",
        "--max_events",
        "6",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--logging_steps",
        "1",
        "--seed",
        "0",
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max_users", "6", "--per_device_train_batch_size", "8"], "6 user(s) cannot fill a contrastive batch"),
        (["--min_events", "500", "--max_events", "600"], "fewer events than min_events=500"),
        (["--splits", "train", "validation"], "no split 'validation'"),
        (["--corpus", "no-such-corpus"], "not a corpus folder"),
        (["--max_slice_tokens", "3"], "smaller than the text without any event"),
    ],
)
def test_recipe_reports_bad_input_before_training(tmp_path, tiny_model, taste_corpus, capsys, extra, message):
    out = tmp_path / "out"
    assert recipe.main([*_base(taste_corpus, tiny_model, out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_tiny_run_lowers_its_loss_and_every_path_gives_the_same_vector(tmp_path, tiny_model, taste_corpus, capsys):
    """Full fine-tuning of the tiny model on 40 viewers, 6 rounds of fresh slices."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModelForCausalLM

    from llm4es_hf.cli import main as cli_main
    from llm4es_hf.embedding import Embedder

    out = tmp_path / "model"
    args = [
        *_base(taste_corpus, tiny_model, out),
        "--rounds",
        "6",
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "8",
        "--learning_rate",
        "3e-3",
        "--warmup_steps",
        "0",
        "--lr_scheduler_type",
        "constant",
    ]
    assert recipe.main(args) == 0, capsys.readouterr().err
    info = json.loads((out / "llm4es_training.json").read_text())
    # the printed summary counts the slices' tokens too (the trainer itself counts none)
    assert f"{info['training']['tokens']:,} tokens," in capsys.readouterr().out
    losses = [p["loss"] for p in info["loss_curve"]]
    assert len(losses) == 30  # 6 rounds x 40 users / 8 per batch
    assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.5, losses
    assert info["contrastive"]["pairs"] == 6 * 40
    assert info["training"]["tokens"] > 6 * 40 * 2 * 5 and info["training"]["tokens_per_second"] > 0
    card = (out / "README.md").read_text()
    assert "contrastive" in card and "MultipleNegativesRankingLoss" in card and "next-token" not in card
    AutoModelForCausalLM.from_pretrained(out)  # a later SFT stage or `AutoModel` load it too

    # the raw events of a user -> serialized text -> the same vector through every path
    from llm4es_hf.schema import load_schema
    from llm4es_hf.serialize import Serializer

    users = datasets.load_from_disk(str(taste_corpus / "users"))["test"]
    raw = users.remove_columns(["text", "n_events_kept"])
    texts = Serializer(load_schema(taste_corpus / "schema.yaml"))(raw)["text"]
    assert texts == users["text"] and texts[0].startswith("Movie|Rating (1-5)\n")
    ours = Embedder(str(out), dtype="fp32", max_length=2048).encode(texts, progress=False)
    st = SentenceTransformer(str(out), device="cpu").encode(texts, batch_size=2)
    np.testing.assert_allclose(st, ours, atol=2e-4)
    corpus_out = tmp_path / "emb.parquet"
    embed = ["embed", "--model", str(out), "--corpus", str(taste_corpus), "--output", str(corpus_out)]
    assert cli_main([*embed, "--dtype", "fp32"]) == 0  # auto is bf16 on CPUs that have it
    table = datasets.Dataset.from_parquet(str(corpus_out))
    index = {u: i for i, u in enumerate(table["user_id"])}
    cli_vectors = np.array([table[index[u]]["embedding"] for u in users["user_id"]])
    np.testing.assert_allclose(cli_vectors, ours, atol=2e-4)
    base = Embedder(str(tiny_model), dtype="fp32").encode(texts, progress=False)
    assert not np.allclose(base, ours, atol=1e-3)  # training moved the vectors


def test_lora_run_merges_into_a_plain_checkpoint(tmp_path, tiny_model, taste_corpus, capsys):
    out = tmp_path / "lora"
    args = [
        *_base(taste_corpus, tiny_model, out),
        "--max_users",
        "16",
        "--per_device_train_batch_size",
        "8",
        "--use_peft",
        "true",
        "--lora_r",
        "4",
        "--lora_alpha",
        "8",
        "--lora_target_modules",
        "q_proj",
        "v_proj",
        "--learning_rate",
        "1e-2",
    ]
    assert recipe.main(args) == 0, capsys.readouterr().err
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").exists()
    from llm4es_hf.embedding import Embedder

    users = datasets.load_from_disk(str(taste_corpus / "users"))["test"]
    tuned = Embedder(str(out), dtype="fp32").encode(users["text"], progress=False)
    base = Embedder(str(tiny_model), dtype="fp32").encode(users["text"], progress=False)
    assert not np.allclose(tuned, base, atol=1e-4)
    assert "use_peft | True" in (out / "README.md").read_text()


def test_help_lists_the_objective_options(capsys):
    with pytest.raises(SystemExit):
        recipe.main(["--help"])
    text = capsys.readouterr().out
    for key in ("--min_events", "--max_slice_tokens", "--loss", "--scale", "--use_peft", "--learning_rate"):
        assert key in text


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
