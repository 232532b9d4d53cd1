"""Fine-tuning through recipes/sft.py: parser precedence, full and LoRA runs, DDP on CPU, resume,
card, Hub push through the loopback server, and bad input caught before training."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from trl import ModelConfig

from llm4es_hf.config import parse_config
from llm4es_hf.errors import Llm4esError
from llm4es_hf.training.sft import LLM4ESSFTConfig, SFTScriptArguments, tokenize_for_lm
from tests.support import tiny

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("sft_recipe", ROOT / "recipes" / "sft.py")
sft_recipe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sft_recipe)

FAST = [
    "--bf16",
    "false",
    "--activation_checkpointing",
    "false",
    "--report_to",
    "none",
    "--logging_steps",
    "1",
    "--per_device_train_batch_size",
    "2",
    "--max_length",
    "96",
    "--learning_rate",
    "1e-2",
    "--save_strategy",
    "no",
]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before if k in after)


def test_parser_precedence_defaults_yaml_cli(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"learning_rate": 3e-4, "max_length": 256, "corpus": "a", "lora_r": 4}))
    script, training, model = parse_config(
        [SFTScriptArguments, LLM4ESSFTConfig, ModelConfig],
        ["--config", str(recipe), "--max_length", "128", "--output_dir", "o"],
        prog="t",
    )
    assert training.learning_rate == 3e-4  # YAML over the default
    assert training.max_length == 128  # command line over YAML
    assert training.per_device_train_batch_size == 8  # dataclass default
    assert script.corpus == "a" and model.lora_r == 4 and script.truncation_side == "left"
    assert training.use_cpu is True or torch.cuda.is_available()


def test_help_lists_every_group(capsys):
    with pytest.raises(SystemExit):
        sft_recipe.main(["--help"])
    out = capsys.readouterr().out
    assert "--corpus_recipe" in out and "--max_length" in out and "--use_peft" in out


def test_tokenize_keeps_latest_tokens_and_appends_eos(tiny_tokenizer):
    texts = datasets.Dataset.from_dict({"text": ["a b c d e f g h i j k l m n o p", "short"]})
    out, report = tokenize_for_lm(texts, tiny_tokenizer, max_length=6)
    full = tiny_tokenizer("a b c d e f g h i j k l m n o p", add_special_tokens=False)["input_ids"]
    assert out[0]["input_ids"] == full[-5:] + [tiny_tokenizer.eos_token_id]
    assert out[1]["input_ids"][-1] == tiny_tokenizer.eos_token_id
    assert report.truncated_users == 1 and report.users == 2
    right, _ = tokenize_for_lm(texts, tiny_tokenizer, max_length=6, truncation_side="right")
    assert right[0]["input_ids"] == full[:5] + [tiny_tokenizer.eos_token_id]


def test_tokenize_keeps_the_bos_the_tokenizer_prepends(tmp_path, tiny_tokenizer):
    """Like Gemma-3's tokenizer: add_bos_token is False, yet its post-processor prepends <bos>;
    training texts must start with it as the texts embedded later do."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny.tiny_gemma3_dir(tmp_path / "gemma"))
    bos = tokenizer.bos_token_id
    assert not getattr(tokenizer, "add_bos_token", False) and tokenizer("a b")["input_ids"][0] == bos
    texts = datasets.Dataset.from_dict({"text": ["a b c d e f g h i j k l m n o p", "short"]})
    out, _ = tokenize_for_lm(texts, tokenizer, max_length=6)
    full = tokenizer("a b c d e f g h i j k l m n o p", add_special_tokens=False)["input_ids"]
    assert out[0]["input_ids"] == [bos] + full[-4:] + [tokenizer.eos_token_id]
    assert out[1]["input_ids"][0] == bos
    plain, _ = tokenize_for_lm(texts, tiny_tokenizer, max_length=6)
    assert plain[1]["input_ids"][0] != bos


def test_full_run_changes_weights_and_saves_card(tmp_path, tiny_model, tiny_corpus, capsys):
    out = tmp_path / "full"
    code = sft_recipe.main(
        [
            "--corpus",
            str(tiny_corpus),
            "--model_name_or_path",
            str(tiny_model),
            "--output_dir",
            str(out),
            "--max_steps",
            "3",
            *FAST,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "global batch size: 2 = 2 per device x 1 accumulation x 1 process(es)" in printed
    assert "longer than max_length=96 were cut on the left" in printed and "trained 3 steps" in printed
    assert changed(weights(tiny_model), weights(out))
    from transformers import AutoModel, AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)
    AutoModel.from_pretrained(out)
    info = json.loads((out / "llm4es_training.json").read_text())
    assert info["training"]["steps"] == 3 and len(info["loss_curve"]) == 3
    card = (out / "README.md").read_text()
    assert "pipeline_tag: feature-extraction" in card and "| learning_rate | 0.01 |" in card
    assert "hidden_states[k:]" in card or "layers k..L" in card
    # the card names the folder, the precision actually used, rounded figures, no link to nowhere
    assert "\n# full\n" in card and "| precision (as trained) | fp32 |" in card and "| bf16 |" not in card
    loss = info["training"]["final_loss"]
    assert f"→ {loss:.4f}," in card and f"{loss}," not in card.replace(f"{loss:.4f}", "")
    assert "https://github.com/)" not in card and "arxiv.org/abs/2508.05688" in card and "@inproceedings" in card
    # the model carries its corpus' schema and serialization, so it can embed raw events
    assert (out / "schema.yaml").exists() and (out / "llm4es_serialization.json").exists()
    assert "UserEncoder.from_pretrained" in card and info["serialization_saved"] is True


def test_llm4es_sft_is_the_recipe_script(tmp_path, tiny_model, tiny_corpus):
    from llm4es_hf.cli import main as llm4es

    args = ["--corpus", str(tiny_corpus), "--model_name_or_path", str(tiny_model), "--max_steps", "1", *FAST]
    assert llm4es(["sft", *args, "--output_dir", str(tmp_path / "cli")]) == 0
    assert sft_recipe.main([*args, "--output_dir", str(tmp_path / "script")]) == 0
    assert weights(tmp_path / "cli").keys() == weights(tmp_path / "script").keys()
    assert not changed(weights(tmp_path / "cli"), weights(tmp_path / "script"))  # same seed, same run


def test_plain_loss_path_matches_trl_fused_head(tmp_path, tiny_model, tiny_corpus):
    """fused_lm_head=False (the CPU default) trains exactly like TRL's fused head: same loss, same
    token-weighted accumulation over users of different lengths, so the same weights after 2 SGD steps."""
    runs = {}
    for fused in ("true", "false"):
        out = tmp_path / f"fused-{fused}"
        args = ["--corpus", str(tiny_corpus), "--model_name_or_path", str(tiny_model), "--output_dir", str(out)]
        args += [*FAST, "--max_steps", "2", "--per_device_train_batch_size", "1"]
        args += ["--gradient_accumulation_steps", "3", "--fused_lm_head", fused, "--optim", "sgd"]
        assert sft_recipe.main(args) == 0
        info = json.loads((out / "llm4es_training.json").read_text())
        runs[fused] = (weights(out), [e["loss"] for e in info["loss_curve"]])
    assert runs["true"][1] == pytest.approx(runs["false"][1], rel=1e-4)
    base = weights(tiny_model)
    for name, fused_weight in runs["true"][0].items():
        plain_weight = runs["false"][0][name]
        assert torch.allclose(fused_weight, plain_weight, atol=1e-6), name  # SGD: a wrong scale would show
    assert changed(base, runs["false"][0])


def test_lora_step_the_new_way_matches_the_old(tmp_path, tiny_model, tiny_corpus):
    """The quickstart's faster LoRA step (one micro-batch, eager attention) against the way it ran before
    (two accumulated micro-batches, sdpa): the same loss curve and the same merged weights after 2 SGD steps.
    (Dropout, the third change, is off in both: with it on, no two runs share a loss.)"""
    runs = {}
    for name, batch, accumulation, attention in (("new", 4, 1, "eager"), ("old", 2, 2, "sdpa")):
        out = tmp_path / name
        args = ["--corpus", str(tiny_corpus), "--model_name_or_path", str(tiny_model), "--output_dir", str(out)]
        args += [*FAST, "--max_steps", "2", "--per_device_train_batch_size", str(batch), "--optim", "sgd"]
        args += ["--gradient_accumulation_steps", str(accumulation), "--attn_implementation", attention]
        args += ["--use_peft", "true", "--lora_r", "4", "--lora_dropout", "0", "--merge_lora", "true"]
        args += ["--learning_rate", "0.05"]
        assert sft_recipe.main(args) == 0
        info = json.loads((out / "llm4es_training.json").read_text())
        runs[name] = (weights(out), [e["loss"] for e in info["loss_curve"]])
    assert len(runs["new"][1]) == 2 and runs["new"][1] == pytest.approx(runs["old"][1], rel=1e-4)
    assert changed(weights(tiny_model), runs["new"][0])
    for name, new_weight in runs["new"][0].items():
        assert torch.allclose(new_weight, runs["old"][0][name], atol=1e-5), name


def test_lora_run_merges_adapter(tmp_path, tiny_model, tiny_corpus):
    out = tmp_path / "lora"
    code = sft_recipe.main(
        [
            "--corpus",
            str(tiny_corpus),
            "--model_name_or_path",
            str(tiny_model),
            "--output_dir",
            str(out),
            "--max_steps",
            "3",
            "--use_peft",
            "--lora_r",
            "4",
            "--lora_target_modules",
            "q_proj",
            "v_proj",
            "--merge_lora",
            *FAST,
        ]
    )
    assert code == 0
    assert not (out / "adapter_config.json").exists()
    after = weights(out)
    before = weights(tiny_model)
    assert set(after) == set(before)
    assert changed(before, after)


def test_shipped_lora_recipe_trains_a_gemma3_that_exports_and_embeds(tmp_path, tiny_corpus):
    """recipes/movielens/sft_lora.yaml on the bundled Gemma-3's architecture (a tiny random one):
    its LoRA target modules exist, training starts each text with <bos>, the merged model exports
    as a SentenceTransformer that reproduces the Embedder."""
    from sentence_transformers import SentenceTransformer

    from llm4es_hf.embedding import Embedder, export_sentence_transformer

    base = tiny.tiny_gemma3_dir(tmp_path / "gemma")
    out = tmp_path / "lora"
    recipe = ["--config", str(ROOT / "recipes" / "movielens" / "sft_lora.yaml"), "--corpus", str(tiny_corpus)]
    code = sft_recipe.main(
        [
            *recipe,
            "--model_name_or_path",
            str(base),
            "--output_dir",
            str(out),
            "--max_steps",
            "1",
            "--warmup_steps",
            "0",
            *FAST,
        ]
    )
    assert code == 0 and not (out / "adapter_config.json").exists()
    assert changed(weights(base), weights(out))
    export_sentence_transformer(out, max_length=32)
    texts = ["Movie|Rating (1-5)\nToy Story, 5\nFargo, 3", "Movie|Rating (1-5)\nHeat, 2"]
    ours = Embedder(str(out), dtype="fp32", max_length=32).encode(texts, progress=False)
    st = SentenceTransformer(str(out), device="cpu").encode(texts)
    assert ours.shape == (2, 32) and np.allclose(ours, st, atol=1e-4)


def test_resume_from_last_checkpoint(tmp_path, tiny_model, tiny_corpus):
    out = tmp_path / "resume"
    base = [
        "--corpus",
        str(tiny_corpus),
        "--model_name_or_path",
        str(tiny_model),
        "--output_dir",
        str(out),
        *FAST[:-2],
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
    ]
    assert sft_recipe.main([*base, "--max_steps", "2"]) == 0
    assert (out / "checkpoint-2").is_dir()
    assert sft_recipe.main([*base, "--max_steps", "4", "--resume_from_checkpoint", "true"]) == 0
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    steps = [e["step"] for e in state["log_history"] if "loss" in e]
    assert steps == [1, 2, 3, 4]  # steps 1-2 come from the first run's checkpoint


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--corpus", "/nonexistent/corpus"], "cannot load corpus"),
        (["--text_column", "body"], "no 'body' column"),
        (["--model_name_or_path", "org/not-here"], "cannot load model"),
        (["--use_peft", "--lora_target_modules", "query_key_value"], "LoRA target modules"),
        (["--attn_implementation", "flash_attention_2"], "set attn_implementation: sdpa"),  # no flash-attn here
        (["--max_length", "None"], None),
    ],
)
def test_bad_input_fails_before_training(tmp_path, tiny_model, tiny_corpus, capsys, extra, message):
    args = [
        "--corpus",
        str(tiny_corpus),
        "--model_name_or_path",
        str(tiny_model),
        "--output_dir",
        str(tmp_path / "o"),
        "--max_steps",
        "1",
        *FAST,
    ]
    if extra == ["--max_length", "None"]:
        args = [a for a in args if a not in ("--max_length", "96")] + extra
        message = "max_length"
    assert sft_recipe.main([*args, *extra] if extra[0] != "--max_length" else args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_empty_texts_and_unknown_yaml_keys(tmp_path, tiny_model, capsys):
    corpus = tmp_path / "empty"
    datasets.Dataset.from_dict({"text": ["ok text here", "  "]}).to_parquet(str(corpus / "train.parquet"))
    assert (
        sft_recipe.main(
            [
                "--corpus",
                str(corpus),
                "--corpus_config",
                "default",
                "--model_name_or_path",
                str(tiny_model),
                "--output_dir",
                str(tmp_path / "o"),
                *FAST,
            ]
        )
        == 2
    )
    assert "empty text" in capsys.readouterr().err
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"max_seq_length": 512}))
    assert sft_recipe.main(["--config", str(recipe)]) == 2
    assert "max_seq_length" in capsys.readouterr().err


DDP_SCRIPT = """
import hashlib, json, os, sys
import torch
import llm4es_hf.corpus as corpus
import llm4es_hf.training.sft as train

out = sys.argv[1]
rank = int(os.environ.get("RANK", "0"))
seen, built, data = [], [], []
original = train.LLM4ESSFTTrainer.compute_loss
def recording(self, model, inputs, *args, **kwargs):
    seen.append(hashlib.sha1(inputs["input_ids"].numpy().tobytes()).hexdigest())
    return original(self, model, inputs, *args, **kwargs)
train.LLM4ESSFTTrainer.compute_loss = recording
builder = corpus.build_corpus
def recording_build(config):
    built.append(config.output_dir)
    return builder(config)
corpus.build_corpus = recording_build
tokenize = train.tokenize_for_lm
def recording_tokenize(texts, *args, **kwargs):
    data.append(hashlib.sha1("\\x00".join(texts["text"]).encode()).hexdigest())
    return tokenize(texts, *args, **kwargs)
train.tokenize_for_lm = recording_tokenize
saver = train.save_trained_model
def recording_save(trainer, output_dir, **kwargs):
    params = trainer.accelerator.unwrap_model(trainer.model).state_dict()
    digest = hashlib.sha1(b"".join(p.detach().float().numpy().tobytes() for p in params.values())).hexdigest()
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"batches": seen, "weights": digest, "world": world, "built": built, "data": data}, f)
    return saver(trainer, output_dir, **kwargs)
train.save_trained_model = recording_save
sys.argv = ["sft.py", *sys.argv[2:]]
sys.path.insert(0, "recipes")
import runpy
runpy.run_path("recipes/sft.py", run_name="__main__")
"""


@pytest.mark.slow
def test_ddp_two_cpu_processes_build_the_missing_corpus_once(tmp_path, tiny_model):
    """Two gloo processes and no corpus yet: rank 0 builds it from the recipe, rank 1 waits, both train on it."""
    recipe = tmp_path / "corpus.yaml"
    recipe.write_text(yaml.safe_dump({"source": "synthetic", "max_tokens": 400, "tokenizer": str(tiny_model)}))
    corpus_dir = tmp_path / "corpus-not-built-yet"
    script = tmp_path / "ddp_probe.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "ddp"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "recipes" / "accelerate_configs" / "cpu.yaml"),
        str(script),
        str(out),
        "--corpus",
        str(corpus_dir),
        "--corpus_recipe",
        str(recipe),
        "--model_name_or_path",
        str(tiny_model),
        "--output_dir",
        str(out / "model"),
        "--max_steps",
        "3",
        *FAST,
    ]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"]) == 3
    assert not set(ranks[0]["batches"]) & set(ranks[1]["batches"])  # each rank saw its own batches
    assert ranks[0]["weights"] == ranks[1]["weights"]  # and they ended synchronized
    assert ranks[0]["built"] == [str(corpus_dir)] and ranks[1]["built"] == []  # built once, by the main process
    assert len(ranks[0]["data"]) == 1 and ranks[0]["data"] == ranks[1]["data"]  # both ranks read the same texts
    assert (corpus_dir / "serialized" / "train-00000-of-00001.parquet").exists()
    info = json.loads((out / "model" / "llm4es_training.json").read_text())
    assert info["world_size"] == 2
    assert "global batch size: 4 = 2 per device x 1 accumulation x 2 process(es)" in result.stdout


def test_push_model_to_loopback_hub(tmp_path, tiny_model, tiny_corpus, loopback_hub):
    from huggingface_hub import HfApi
    from transformers import AutoModel

    from llm4es_hf.hub import push_model

    out = tmp_path / "pushed"
    assert (
        sft_recipe.main(
            [
                "--corpus",
                str(tiny_corpus),
                "--model_name_or_path",
                str(tiny_model),
                "--output_dir",
                str(out),
                "--max_steps",
                "2",
                *FAST[:-2],
                "--save_strategy",
                "steps",
                "--save_steps",
                "1",
                "--push_to_hub",
                "--hub_model_id",
                "org/llm4es-tiny",
                "--hub_revision",
                "run-1",
            ]
        )
        == 0
    )
    assert loopback_hub.repo("org/llm4es-tiny").private
    files = loopback_hub.files("org/llm4es-tiny")
    assert "model.safetensors" in files and "README.md" in files
    assert not any(path.startswith("checkpoint-") for path in files)
    assert "run-1" in {ref.name for ref in HfApi().list_repo_refs("org/llm4es-tiny").branches}
    model = AutoModel.from_pretrained("org/llm4es-tiny")
    assert model.config.hidden_size == 32
    assert {"schema.yaml", "llm4es_serialization.json"} <= set(files)
    assert "\n# org/llm4es-tiny\n" in (out / "README.md").read_text()  # pushed: named by its repo id
    with pytest.raises(Llm4esError, match="refusing to overwrite"):
        push_model(out, "org/llm4es-tiny", revision="run-1")


@pytest.mark.parametrize(
    "recipe", sorted((ROOT / "recipes").glob("*/sft_*.yaml")), ids=lambda p: p.parent.name + "/" + p.name
)
def test_every_shipped_sft_recipe_parses(recipe):
    script, training, model = parse_config(
        [SFTScriptArguments, LLM4ESSFTConfig, ModelConfig], ["--config", str(recipe)], prog="t"
    )
    assert training.max_length and training.output_dir and (script.corpus or script.mixture)


@pytest.mark.parametrize(
    "recipe", sorted((ROOT / "recipes").glob("*/corpus*.yaml")), ids=lambda p: p.parent.name + "/" + p.name
)
def test_every_shipped_corpus_recipe_parses(recipe):
    from llm4es_hf.corpus import CorpusConfig

    (config,) = parse_config([CorpusConfig], ["--config", str(recipe), "--output_dir", "x"], prog="t")
    assert config.variants()


def test_mixture_entries_structured_or_shorthand(tiny_corpus):
    from llm4es_hf.artifacts import load_corpus_config
    from llm4es_hf.training.sft import load_training_texts, parse_mixture_entry

    plain = len(load_corpus_config(tiny_corpus, "serialized")["train"])
    enriched = len(load_corpus_config(tiny_corpus, "enriched")["train"])
    args = SFTScriptArguments(mixture=[{"id": str(tiny_corpus), "weight": 0.5}, f"{tiny_corpus}:enriched:0.25"])
    texts = load_training_texts(args, seed=0)
    assert len(texts) == round(0.5 * plain) + round(0.25 * enriched)
    assert parse_mixture_entry({"id": "a/b", "config": "enriched"}, "serialized") == ("a/b", "enriched", 1.0)
    with pytest.raises(Llm4esError, match=r"keys \['id', 'config', 'weight'\]"):
        parse_mixture_entry({"path": "x"}, "serialized")
    with pytest.raises(Llm4esError, match="must be > 0"):
        parse_mixture_entry({"id": "x", "weight": 0}, "serialized")
    with pytest.raises(Llm4esError, match="not a number"):
        parse_mixture_entry("x:serialized:lots", "serialized")
