"""Bundled defaults: SmolLM2 converted once (even with two processes asking), MovieLens from the wheel."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from llm4es_hf.assets import movielens_100k_dir, resolve_model


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
