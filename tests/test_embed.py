"""Embeddings: pooling against a hand computation, padding sides, SentenceTransformer export,
several processes through accelerate, the CLI and its bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llm4es_hf.cli import main
from llm4es_hf.embedding import Embedder, default_layer_start, export_sentence_transformer
from llm4es_hf.errors import Llm4esError

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "Date|Movie\n1997-09-22, Toy Story, 5\n1997-09-23, Heat, 4",
    "short",
    "Date|Movie\n" + "1997-09-22, Toy Story, Animation/Comedy, 5\n" * 12,
]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_default_layer_start_is_the_papers_k():
    assert default_layer_start(28) == 9 and default_layer_start(30) == 10


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_pooling_matches_a_hand_computation(tiny_model, pooling):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ours = Embedder(str(tiny_model), pooling=pooling, dtype="fp32", layer_start=1).encode(TEXTS, progress=False)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    for i, text in enumerate(TEXTS):  # one text at a time: no padding at all
        ids = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**ids, output_hidden_states=True).hidden_states
        layers = torch.stack(hidden[1:]).mean(0)[0]  # average of hidden_states[1:], (tokens, dim)
        expected = layers.mean(0) if pooling == "mean" else layers[-1]
        np.testing.assert_allclose(ours[i], expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_early_exit_gives_the_full_forwards_vectors(tiny_model, pooling):
    """layer_end=2 of 3 layers: the forward stops after layer 2, and the vectors are the full forward's
    hidden_states[1..2] with the final norm on layer 2's output (what num_hidden_layers=2 loads)."""
    from transformers import AutoModel, AutoTokenizer

    early = Embedder(str(tiny_model), pooling=pooling, dtype="fp32", layer_start=1, layer_end=2)
    assert len(early.model.layers) == 2 and early.layer_end == 2 and early.num_layers == 3
    ours = early.encode(TEXTS, progress=False)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    full = AutoModel.from_pretrained(tiny_model).eval()
    short = AutoModel.from_pretrained(tiny_model, num_hidden_layers=2).eval()  # the model card's snippet
    for i, text in enumerate(TEXTS):
        ids = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            hidden = full(**ids, output_hidden_states=True).hidden_states
            layers = torch.stack([hidden[1], full.norm(hidden[2])]).mean(0)[0]
            snippet = torch.stack(short(**ids, output_hidden_states=True).hidden_states[1:]).mean(0)[0]
        expected = layers.mean(0) if pooling == "mean" else layers[-1]
        np.testing.assert_allclose(ours[i], expected.numpy(), atol=1e-5)
        np.testing.assert_allclose(snippet.numpy(), layers.numpy(), atol=1e-5)
    to_the_top = Embedder(str(tiny_model), pooling=pooling, dtype="fp32", layer_start=1, layer_end=3)
    np.testing.assert_array_equal(
        to_the_top.encode(TEXTS, progress=False),
        Embedder(str(tiny_model), pooling=pooling, dtype="fp32", layer_start=1).encode(TEXTS, progress=False),
    )


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_left_and_right_padding_agree(tiny_model, pooling):
    left = Embedder(str(tiny_model), pooling=pooling, dtype="fp32", padding_side="left").encode(TEXTS, progress=False)
    right = Embedder(str(tiny_model), pooling=pooling, dtype="fp32", padding_side="right").encode(TEXTS, progress=False)
    np.testing.assert_allclose(left, right, atol=1e-5)
    unsorted = Embedder(str(tiny_model), pooling=pooling, dtype="fp32").encode(
        TEXTS, sort_by_length=False, batch_size=1, progress=False
    )
    np.testing.assert_allclose(left, unsorted, atol=1e-5)


def test_padding_free_batches_hold_one_length_and_give_the_same_vectors(tiny_model, monkeypatch):
    import llm4es_hf.embedding.embedder as embed_module

    texts = TEXTS + [TEXTS[0], TEXTS[2], "another short one"]
    padded = Embedder(str(tiny_model), dtype="fp32", padding_free=False)
    free = Embedder(str(tiny_model), dtype="fp32", padding_free=True)
    assert Embedder(str(tiny_model), dtype="fp32").padding_free  # the default on CPU
    lengths = np.array([len(ids) for ids in free.tokenizer(texts)["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    # short texts (under PADDING_FREE_MIN_TOKENS) still share padded batches
    assert [len(b) for b in free._batches(order, lengths, 8)] == [6]
    monkeypatch.setattr(embed_module, "PADDING_FREE_MIN_TOKENS", 1)
    batches = free._batches(order, lengths, 8)
    assert all(len(set(lengths[b])) == 1 for b in batches) and sorted(np.concatenate(batches)) == list(range(6))
    assert sorted(len(b) for b in batches) == [1, 1, 2, 2]  # the repeated texts pair up
    assert [len(b) for b in padded._batches(order, lengths, 4)] == [4, 2]
    np.testing.assert_allclose(
        free.encode(texts, batch_size=8, progress=False), padded.encode(texts, batch_size=8, progress=False), atol=1e-5
    )


def test_truncation_keeps_the_latest_tokens(tiny_model):
    embedder = Embedder(str(tiny_model), dtype="fp32", max_length=8)
    ids = embedder.tokenizer(TEXTS[2], add_special_tokens=False)["input_ids"]
    tail = embedder.tokenizer.decode(ids[-8:])
    np.testing.assert_allclose(
        embedder.encode([TEXTS[2]], progress=False),
        Embedder(str(tiny_model), dtype="fp32", max_length=64).encode([tail], progress=False),
        atol=1e-5,
    )


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_sentence_transformer_export_reproduces_embed(tmp_path, tiny_model, pooling):
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoModelForCausalLM

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    (folder / "README.md").write_text("our card")
    before = load_file(str(folder / "model.safetensors"))
    export_sentence_transformer(folder, pooling=pooling, max_length=16)
    assert (folder / "modules.json").exists() and (folder / "2_Pooling" / "config.json").exists()
    assert (folder / "README.md").read_text() == "our card"
    after = load_file(str(folder / "model.safetensors"))
    assert set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)
    st = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, batch_size=3)
    ours = Embedder(str(folder), pooling=pooling, dtype="fp32", max_length=16).encode(TEXTS, progress=False)
    assert cosine(st, ours).min() >= 0.9999
    AutoModel.from_pretrained(folder)
    AutoModelForCausalLM.from_pretrained(folder)


def test_early_exit_is_the_same_vector_on_every_path(tmp_path, tiny_model):
    """A model exported with layer_end: SentenceTransformer, UserEncoder and `llm4es embed` all stop there."""
    from sentence_transformers import SentenceTransformer

    from llm4es_hf import UserEncoder
    from llm4es_hf.artifacts import embedding_settings

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    export_sentence_transformer(folder, layer_start=1, layer_end=2, max_length=16)
    assert embedding_settings(folder)["layer_end"] == 2
    ours = Embedder(str(folder), dtype="fp32", layer_start=1, layer_end=2, max_length=16).encode(TEXTS, progress=False)
    full = Embedder(str(folder), dtype="fp32", layer_start=1, max_length=16).encode(TEXTS, progress=False)
    assert cosine(ours, full).max() < 0.9999  # stopping early changes the vector: the paths below must agree
    st = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, batch_size=3)
    assert cosine(st, ours).min() >= 0.9999
    encoder = UserEncoder.from_pretrained(str(folder), dtype="fp32")
    assert encoder.embedder.layer_end == 2
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), ours, atol=1e-6)


def test_bad_model_and_options(tmp_path, tiny_model):
    (tmp_path / "empty").mkdir()
    with pytest.raises(Llm4esError, match="config.json"):
        Embedder(str(tmp_path / "empty"))
    with pytest.raises(Llm4esError, match="layer_start"):
        Embedder(str(tiny_model), layer_start=99)
    for start, end in ((2, 2), (2, 1), (1, 4)):
        with pytest.raises(Llm4esError, match=rf"layer_end={end} must be above layer_start={start} .* 3 layers"):
            Embedder(str(tiny_model), layer_start=start, layer_end=end)
    with pytest.raises(Llm4esError, match="layer_end=9 must be above layer_start=1 .* 3 layers"):
        export_sentence_transformer(tiny_model, layer_start=1, layer_end=9)
    with pytest.raises(Llm4esError, match="pooling"):
        Embedder(str(tiny_model), pooling="max")
    with pytest.raises(Llm4esError, match="config.json"):
        export_sentence_transformer(tmp_path / "empty")


def test_embed_cli_writes_parquet_and_dataset(tmp_path, tiny_model, tiny_corpus):
    out = tmp_path / "emb.parquet"
    assert (
        main(
            [
                "embed",
                "--model",
                str(tiny_model),
                "--corpus",
                str(tiny_corpus),
                "--output",
                str(out),
                "--dtype",
                "fp32",
                "--max-length",
                "64",
                "--batch-size",
                "32",
            ]
        )
        == 0
    )
    table = pd.read_parquet(out)
    assert len(table) == 1000 and set(table["split"]) == {"train", "test"}
    assert len(table["embedding"][0]) == 32 and table["user_id"].is_unique
    import datasets

    assert len(datasets.load_from_disk(str(tmp_path / "emb_dataset"))) == 1000
    assert (
        main(
            [
                "embed",
                "--model",
                str(tiny_model),
                "--corpus",
                str(tiny_corpus),
                "--output",
                str(out),
                "--splits",
                "nope",
            ]
        )
        == 2
    )


@pytest.mark.slow
def test_two_processes_keep_order_lose_and_repeat_nothing(tmp_path, tiny_model, tiny_corpus):
    single = tmp_path / "single.parquet"
    assert (
        main(
            [
                "embed",
                "--model",
                str(tiny_model),
                "--corpus",
                str(tiny_corpus),
                "--output",
                str(single),
                "--dtype",
                "fp32",
                "--max-length",
                "64",
                "--batch-size",
                "32",
            ]
        )
        == 0
    )
    double = tmp_path / "double.parquet"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "recipes" / "accelerate_configs" / "cpu.yaml"),
        "-m",
        "llm4es_hf.cli",
        "embed",
        "--model",
        str(tiny_model),
        "--corpus",
        str(tiny_corpus),
        "--output",
        str(double),
        "--dtype",
        "fp32",
        "--max-length",
        "64",
        "--batch-size",
        "32",
    ]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "; 2 processes) ->" in result.stdout  # not two single processes writing the same file
    a, b = pd.read_parquet(single), pd.read_parquet(double)
    assert a["user_id"].tolist() == b["user_id"].tolist()
    np.testing.assert_allclose(np.stack(a["embedding"]), np.stack(b["embedding"]), atol=1e-5)


LEVER_TEXTS = [
    "Date|Movie|Rating (1-5)\n1997-09-22, Toy Story, 5\n1997-09-23, Heat, 2",
    "Movie|Rating (1-5)\nEmpire Strikes Back, The, 4\nFargo, 1\nHeat, 3",
]


def _layer_average(model, ids: list[int]) -> torch.Tensor:
    """Average of hidden_states[1:] for one unpadded text: (tokens, dim)."""
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    return torch.stack(hidden[1:]).mean(0)[0]


@pytest.mark.parametrize("lever", ["events", "rating", "events+rating", "echo", "suffix-last"])
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_pooling_levers_match_a_hand_computation(tiny_model, lever, padding_side):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options = {
        "events": {"pool_tokens": "events"},
        "rating": {"weight_field": -1},
        "events+rating": {"pool_tokens": "events", "weight_field": -1},
        "echo": {"echo": True},
        "suffix-last": {"suffix": "\nThis viewer in one word:", "pooling": "last"},
    }[lever]
    embedder = Embedder(str(tiny_model), dtype="fp32", layer_start=1, padding_side=padding_side, **options)
    ours = embedder.encode(LEVER_TEXTS, batch_size=2, progress=False)
    plain = Embedder(str(tiny_model), dtype="fp32", layer_start=1).encode(LEVER_TEXTS, progress=False)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    for i, text in enumerate(LEVER_TEXTS):
        encoded = tokenizer(text, return_offsets_mapping=True)
        ids = encoded["input_ids"]
        weights = []
        for start, end in encoded["offset_mapping"]:
            line = text[:start].count("\n")
            value = float(text.split("\n")[line].split(", ")[-1]) if line > 0 else 1.0
            weight = 1.0
            if "events" in lever and (line == 0 or not text[start:end].strip()):
                weight = 0.0
            if "rating" in lever:
                weight *= value
            weights.append(weight)
        if lever == "echo":
            expected = _layer_average(model, ids + ids)[len(ids) :].mean(0)
        elif lever == "suffix-last":
            suffix = tokenizer("\nThis viewer in one word:", add_special_tokens=False)["input_ids"]
            expected = _layer_average(model, ids + suffix)[-1]
        else:
            w = torch.tensor(weights).unsqueeze(-1)
            assert 0 < (w > 0).sum() < len(ids) or "events" not in lever  # the lever drops some tokens
            expected = (_layer_average(model, ids) * w).sum(0) / w.sum()
        np.testing.assert_allclose(ours[i], expected.numpy(), atol=1e-5)
        assert not np.allclose(ours[i], plain[i], atol=1e-4)  # the lever changes the vector


def test_pooling_levers_keep_the_latest_tokens_within_max_length(tiny_model):
    long = "Movie|Rating (1-5)\n" + "".join(f"Film {i}, {1 + i % 5}\n" for i in range(200))
    embedder = Embedder(str(tiny_model), dtype="fp32", max_length=40, echo=True, suffix=" End")
    ids, weights = embedder.token_weights([long])
    suffix = len(embedder.suffix_ids)
    assert len(ids[0]) <= 40 and len(ids[0]) == 2 * embedder.text_budget + suffix
    assert weights[0][: embedder.text_budget].sum() == 0 and weights[0][-suffix:].sum() == 0
    tokenizer = embedder.tokenizer
    assert tokenizer.decode(ids[0][: embedder.text_budget]).endswith("Film 199, 5\n")
    with pytest.raises(Llm4esError, match="pool_tokens"):
        Embedder(str(tiny_model), pool_tokens="header")
    with pytest.raises(Llm4esError, match="max_length"):
        Embedder(str(tiny_model), max_length=4, suffix="a much longer summarizing prompt than four tokens")


def test_embed_cli_pooling_levers_match_the_embedder(tmp_path, tiny_model):
    from tests.support import tiny

    corpus = tiny.tiny_taste_corpus(tmp_path / "corpus", n_users=12)
    out = tmp_path / "levers.parquet"
    flags = ["--pool-tokens", "events", "--weight-field", "-1", "--echo", "--dtype", "fp32", "--max-length", "64"]
    assert main(["embed", "--model", str(tiny_model), "--corpus", str(corpus), "--output", str(out), *flags]) == 0
    table = pd.read_parquet(out)
    texts = pd.concat([pd.read_parquet(p) for p in sorted((corpus / "serialized").glob("*.parquet"))])
    expected = Embedder(
        str(tiny_model), dtype="fp32", max_length=64, pool_tokens="events", weight_field=-1, echo=True
    ).encode(texts["text"].tolist(), progress=False)
    by_user = dict(zip(texts["user_id"], expected, strict=True))
    got = np.stack(table["embedding"].to_numpy())
    np.testing.assert_allclose(got, np.stack([by_user[u] for u in table["user_id"]]), atol=1e-5)
