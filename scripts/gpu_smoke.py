#!/usr/bin/env python3
"""One-shot GPU smoke check of llm4es_hf's CUDA code paths, with tiny random models (no downloads).

Run from the repository root (so that `llm4es_hf` and `tests/support/tiny.py` import):

    python scripts/gpu_smoke.py                                     # on a CUDA machine (make gpu-smoke)
    python scripts/gpu_smoke.py --cpu-ok [--only hardware,embed]    # dry run on CPU

Checks: bf16 is the automatic precision on the GPU; embeddings on the GPU (bf16) against CPU fp32,
left vs right padding, padding-free batching and every pooling lever; the SentenceTransformer
export on the GPU; sharded `llm4es embed` interrupted and resumed; `llm4es sft` (full, plain LM
head, LoRA) and the contrastive stage (full and LoRA) train on the GPU in bf16.

Prints one JSON line per check ({"check": name, "status": "ok"|"failed"|"skipped", ...}) and a final
summary line {"gpu_smoke": "ok"|"failed", ...}. Each check runs in its own try/except. Without a GPU
(and without --cpu-ok) the summary is "failed". With --cpu-ok the CUDA-only assertions are skipped but
every code path runs on CPU. Exit code: 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS: list[dict] = []
ON_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if ON_CUDA else "cpu"

TEXTS = [
    "Date|Movie\n1997-09-22, Toy Story, 5\n1997-09-23, Heat, 4",
    "short",
    "Date|Movie\n" + "1997-09-22, Toy Story, Animation/Comedy, 5\n" * 12,
    "Date|Movie|Rating (1-5)\n1997-09-22, Toy Story, 5\n1997-09-23, Heat, 2\n1997-09-24, Fargo, 3",
]
LEVER_TEXTS = [
    "Date|Movie|Rating (1-5)\n1997-09-22, Toy Story, 5\n1997-09-23, Heat, 2",
    "Movie|Rating (1-5)\nEmpire Strikes Back, The, 4\nFargo, 1\nHeat, 3",
]
LONG_TEXTS = [  # >= PADDING_FREE_MIN_TOKENS tokens, of different lengths: padding-free batching kicks in
    "Movie|Rating (1-5)\n" + "".join(f"Film {i}, {1 + i % 5}\n" for i in range(n)) for n in (90, 120, 90, 150)
]


def emit(record: dict) -> None:
    print(json.dumps(record, default=str), flush=True)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


class Check:
    """Collects facts and assertions of one check; CUDA-only assertions are skipped on CPU."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.facts: dict = {}
        self.notes: list[str] = []

    def fact(self, **kwargs) -> None:
        self.facts.update(kwargs)

    def require(self, condition: bool, message: str, *, cuda_only: bool = False) -> None:
        if cuda_only and not ON_CUDA:
            self.notes.append(f"skipped on CPU: {message}")
            return
        if not condition:
            raise AssertionError(message)


def run_check(name: str, fn, *args) -> None:
    check = Check(name)
    start = time.perf_counter()
    if ON_CUDA:
        torch.cuda.reset_peak_memory_stats()
    try:
        fn(check, *args)
        status, error = "ok", None
    except BaseException as err:  # noqa: BLE001 - one failure must not hide the other checks
        if isinstance(err, (SystemExit,)) and err.code in (0, None):
            status, error = "ok", None
        else:
            status = "failed"
            tail = traceback.format_exc().strip().splitlines()[-25:]
            error = f"{type(err).__name__}: {err}"[:2000]
            print("\n".join(["--- traceback tail of " + name + " ---", *tail, "---"]), file=sys.stderr, flush=True)
    record = {"check": name, "status": status, "seconds": round(time.perf_counter() - start, 1), **check.facts}
    if ON_CUDA:
        record["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if check.notes:
        record["notes"] = list(dict.fromkeys(check.notes))
    if error:
        record["error"] = error
    RESULTS.append(record)
    emit(record)


# ---------------------------------------------------------------- checks


def check_env(check: Check) -> None:
    versions = {}
    for name in (
        "torch", "transformers", "trl", "datasets", "sentence_transformers", "peft", "accelerate",
        "huggingface_hub", "tokenizers", "safetensors", "polars", "pyarrow", "pandas", "numpy", "fsspec",
        "dill", "multiprocess", "scipy", "sklearn", "triton",
    ):  # fmt: skip
        try:
            module = importlib.import_module(name)
            versions[name] = f"{getattr(module, '__version__', '?')} @ {Path(module.__file__).parent.parent}"
        except Exception as err:  # noqa: BLE001
            versions[name] = f"IMPORT FAILED: {type(err).__name__}: {err}"[:300]
    check.fact(python=sys.version.split()[0], versions=versions, cuda_available=ON_CUDA)
    if ON_CUDA:
        check.fact(
            device_name=torch.cuda.get_device_name(0),
            capability=torch.cuda.get_device_capability(0),
            torch_cuda=torch.version.cuda,
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    failed = [k for k, v in versions.items() if v.startswith("IMPORT FAILED") and k != "triton"]
    try:  # datasets' fingerprints pickle with dill, which pickles a module it does not take for an installed
        # one (not under sys.prefix, no 'site-packages' in its path) by value: pyarrow's then fails
        from dill._dill import _is_builtin_module

        by_value = [
            name
            for name in ("pyarrow", "polars", "numpy", "datasets", "torch", "transformers", "tokenizers")
            if name in sys.modules and not _is_builtin_module(sys.modules[name])
        ]
        check.fact(dill_pickles_by_value=by_value)
        if by_value:
            check.notes.append(f"dill would pickle {by_value} by value (datasets fingerprinting may fail)")
    except Exception as err:  # noqa: BLE001
        check.fact(dill_probe_error=f"{type(err).__name__}: {err}"[:200])
    for module in ("llm4es_hf.embedding", "llm4es_hf.training.sft", "llm4es_hf.training.contrastive",
                   "llm4es_hf.cli.embed", "llm4es_hf.cli.sft", "llm4es_hf.cli.contrastive", "llm4es_hf.artifacts",
                   "tests.support.tiny"):  # fmt: skip
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001
            failed.append(f"{module}: {type(err).__name__}: {err}"[:300])
    check.require(not failed, f"imports failed: {failed}")


def check_hardware(check: Check) -> None:
    from llm4es_hf.hardware import describe, pick_device, pick_dtype, process_state, training_precision

    dtype = pick_dtype("auto", "cuda") if ON_CUDA else pick_dtype("auto", "cpu")
    state = process_state()
    check.fact(
        auto_dtype=str(dtype),
        pick_device=pick_device(),
        training_precision=training_precision(),
        describe=describe(),
        process_state_device=str(state.device),
        device_name=torch.cuda.get_device_name(0) if ON_CUDA else "cpu",
    )
    check.require(ON_CUDA, "torch.cuda.is_available() is False", cuda_only=True)
    check.require(dtype == torch.bfloat16, f"pick_dtype('auto', 'cuda') = {dtype}, expected bf16", cuda_only=True)
    check.require(pick_device() == "cuda", "pick_device() != cuda", cuda_only=True)
    check.require(training_precision()["bf16"] is True, "training_precision() has no bf16", cuda_only=True)
    check.require(str(state.device).startswith("cuda"), f"PartialState device {state.device}", cuda_only=True)


def check_embed(check: Check, model: Path) -> None:
    from llm4es_hf.embedding import Embedder

    gpu = Embedder(str(model))  # defaults: cuda when available, auto dtype
    check.fact(default_device=gpu.device, default_dtype=str(gpu.dtype), default_padding_free=gpu.padding_free)
    check.require(gpu.device == "cuda", f"default device {gpu.device}", cuda_only=True)
    check.require(gpu.dtype == torch.bfloat16, f"default dtype {gpu.dtype}", cuda_only=True)
    check.require(gpu.padding_free is False, "padding_free default is not False on cuda", cuda_only=True)
    check.require(next(gpu.model.parameters()).device.type == DEVICE, "model not on the device", cuda_only=True)
    ref = Embedder(str(model), dtype="fp32", device="cpu")
    got, want = gpu.encode(TEXTS, batch_size=3, progress=False), ref.encode(TEXTS, batch_size=3, progress=False)
    cos = cosine_rows(got, want)
    check.fact(auto_vs_cpu_fp32_min_cosine=float(cos.min()), finite=bool(np.isfinite(got).all()))
    check.require(np.isfinite(got).all(), "non-finite vectors")
    check.require(cos.min() > 0.99, f"auto-dtype vs cpu fp32 cosine {cos.tolist()}")

    # left vs right padding on the device (bf16 there), and fp32 on the device vs fp32 on CPU
    sides = {
        side: Embedder(str(model), padding_side=side).encode(TEXTS, batch_size=4, progress=False)
        for side in ("left", "right")
    }
    side_cos = cosine_rows(sides["left"], sides["right"])
    side_diff = float(np.abs(sides["left"] - sides["right"]).max())
    check.fact(left_right_min_cosine=float(side_cos.min()), left_right_max_abs_diff=side_diff)
    check.require(side_cos.min() > 0.999, f"left vs right padding cosine {side_cos.tolist()}")
    fp32_dev = Embedder(str(model), dtype="fp32", device=DEVICE)
    left32 = Embedder(str(model), dtype="fp32", device=DEVICE, padding_side="left").encode(TEXTS, progress=False)
    right32 = Embedder(str(model), dtype="fp32", device=DEVICE, padding_side="right").encode(TEXTS, progress=False)
    dev32 = fp32_dev.encode(TEXTS, batch_size=3, progress=False)
    check.fact(
        fp32_device_vs_cpu_max_abs_diff=float(np.abs(dev32 - want).max()),
        fp32_left_right_max_abs_diff=float(np.abs(left32 - right32).max()),
    )
    check.require(np.allclose(dev32, want, atol=1e-3), "fp32 on the device differs from fp32 on CPU (atol 1e-3)")
    check.require(np.allclose(left32, right32, atol=1e-4), "fp32 left vs right padding differ (atol 1e-4)")

    # one text at a time vs batched: padding must not change the vectors
    single = gpu.encode(TEXTS, batch_size=1, sort_by_length=False, progress=False)
    check.fact(batched_vs_single_min_cosine=float(cosine_rows(single, got).min()))
    check.require(cosine_rows(single, got).min() > 0.999, "batched vs one-at-a-time differ")

    # padding-free batching forced on the device (texts >= 256 tokens, different lengths)
    free = Embedder(str(model), padding_free=True).encode(LONG_TEXTS, batch_size=4, progress=False)
    padded = Embedder(str(model), padding_free=False).encode(LONG_TEXTS, batch_size=4, progress=False)
    check.fact(padding_free_vs_padded_min_cosine=float(cosine_rows(free, padded).min()))
    check.require(cosine_rows(free, padded).min() > 0.999, "padding_free=True vs False differ")

    # a larger batch of random-length texts: shape, finiteness, no error
    many = [TEXTS[i % len(TEXTS)] * (1 + i % 3) for i in range(64)]
    out = gpu.encode(many, batch_size=32, progress=False)
    check.require(out.shape == (64, gpu.dimension) and np.isfinite(out).all(), "64-text batch")


def check_embed_levers(check: Check, model: Path) -> None:
    from llm4es_hf.embedding import Embedder

    levers = {
        "events": {"pool_tokens": "events"},
        "rating": {"weight_field": -1},
        "events+rating+echo": {"pool_tokens": "events", "weight_field": -1, "echo": True},
        "suffix-last": {"suffix": "\nThis viewer in one word:", "pooling": "last"},
    }
    plain = Embedder(str(model), layer_start=1).encode(LEVER_TEXTS, progress=False)
    cosines = {}
    for name, options in levers.items():
        for side in ("left", "right"):
            dev = Embedder(str(model), layer_start=1, padding_side=side, **options)
            check.require(dev.device == "cuda", f"{name}: device {dev.device}", cuda_only=True)
            got = dev.encode(LEVER_TEXTS, batch_size=2, progress=False)
            ref = Embedder(str(model), layer_start=1, dtype="fp32", device="cpu", padding_side=side, **options)
            want = ref.encode(LEVER_TEXTS, batch_size=2, progress=False)
            cos = cosine_rows(got, want)
            cosines[f"{name}/{side}"] = float(cos.min())
            check.require(np.isfinite(got).all(), f"{name}/{side}: non-finite")
            check.require(cos.min() > 0.99, f"{name}/{side}: device vs cpu fp32 cosine {cos.tolist()}")
            check.require(not np.allclose(got, plain, atol=1e-4), f"{name}/{side}: the lever changed nothing")
    check.fact(device_vs_cpu_fp32_min_cosine=cosines)


def check_st_export(check: Check, model: Path, work: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from llm4es_hf.embedding import Embedder, export_sentence_transformer

    folder = work / "st-model"
    shutil.copytree(model, folder)
    export_sentence_transformer(folder, max_length=64)
    st = SentenceTransformer(str(folder), device=DEVICE)
    got = st.encode(TEXTS, batch_size=3)
    ours = Embedder(str(folder), max_length=64, dtype="fp32", device=DEVICE).encode(TEXTS, progress=False)
    cos = cosine_rows(np.asarray(got, dtype=np.float32), ours)
    check.fact(st_device=str(st.device), st_vs_embedder_min_cosine=float(cos.min()))
    check.require(str(st.device).startswith(DEVICE), f"SentenceTransformer on {st.device}")
    check.require(cos.min() > 0.999, f"SentenceTransformer vs Embedder cosine {cos.tolist()}")


def check_embed_shards(check: Check, model: Path, work: Path) -> None:
    import llm4es_hf.embedding.sharded as embed_module
    from llm4es_hf.artifacts import load_embeddings
    from llm4es_hf.cli import main
    from tests.support.tiny import write_sharded_corpus

    corpus = write_sharded_corpus(work / "shard-corpus")

    def embed(output: Path, *extra: str) -> int:
        argv = ["embed", "--model", str(model), "--corpus", str(corpus), "--output", str(output)]
        return main([*argv, "--batch-size", "4", *extra])  # --dtype auto: bf16 on the GPU

    one_file = work / "emb-one.parquet"
    assert embed(one_file) == 0, "embed into one file failed"
    whole = work / "emb-whole"
    assert embed(whole) == 0, "uninterrupted sharded run failed"
    manifest = json.loads((whole / "manifest.json").read_text())
    check.fact(manifest_dtype=manifest["embedding"]["dtype"], shards=[s["name"] for s in manifest["shards"]])
    check.require(manifest["embedding"]["dtype"] == "bfloat16", "sharded run not in bf16", cuda_only=True)

    written, real_write = [], embed_module.write_embedding_shard

    def dies_on_the_third(path, *args, **kwargs):
        if len(written) == 2:
            (path.parent / f".{path.name}.4242.tmp").write_bytes(b"PAR1 half a file")
            raise KeyboardInterrupt  # what a kill leaves
        written.append(path.name)
        return real_write(path, *args, **kwargs)

    out = work / "emb-resumed"
    embed_module.write_embedding_shard = dies_on_the_third
    try:
        try:
            embed(out)
            raise AssertionError("the interrupted run did not stop")
        except KeyboardInterrupt:
            pass
    finally:
        embed_module.write_embedding_shard = real_write
    check.require(sorted(p.name for p in out.glob("*.parquet")) == sorted(written), "finished shards before the kill")
    rewritten = []
    embed_module.write_embedding_shard = lambda path, *a, **k: rewritten.append(path.name) or real_write(path, *a, **k)
    try:
        assert embed(out) == 0, "resumed run failed"
    finally:
        embed_module.write_embedding_shard = real_write
    check.fact(shards_before_kill=written, rewritten_by_rerun=rewritten)
    check.require(rewritten == ["train-00001-of-00002.parquet"], f"rerun rewrote {rewritten}")
    check.require(not list(out.glob(".*")), "temporary file left")
    (ids, matrix), (want_ids, want) = load_embeddings(out), load_embeddings(whole)
    check.require(ids.tolist() == want_ids.tolist(), "user order differs")
    exact = bool(np.array_equal(matrix, want))
    diff = float(np.abs(matrix - want).max())
    check.fact(resumed_equals_uninterrupted_exactly=exact, resumed_max_abs_diff=diff, dim=matrix.shape)
    if not exact:
        check.notes.append("resumed run is not bit-identical to the uninterrupted one on this device")
    check.require(np.allclose(matrix, want, atol=1e-3), f"resumed vs uninterrupted max abs diff {diff}")
    one_ids, one = load_embeddings(one_file)
    cos = cosine_rows(matrix, one)
    check.fact(sharded_vs_one_file_min_cosine=float(cos.min()))
    check.require(one_ids.tolist() == ids.tolist(), "sharded vs one-file user order")
    check.require(cos.min() > 0.999, "sharded vs one-file vectors differ")


def _finite(values: list[float]) -> bool:
    return bool(values) and all(v is not None and math.isfinite(v) for v in values)


def check_sft(check: Check, model: Path, corpus: Path, work: Path) -> None:
    from transformers import AutoModelForCausalLM

    from llm4es_hf.cli import main
    from llm4es_hf.embedding import Embedder

    common = ["--corpus", str(corpus), "--model_name_or_path", str(model), "--report_to", "none"]
    common += ["--logging_steps", "1", "--per_device_train_batch_size", "4", "--max_length", "128"]
    common += ["--learning_rate", "1e-2", "--save_strategy", "no", "--max_steps", "8", "--disable_tqdm", "true"]
    runs = {
        # the defaults on the device: bf16, fused LM head on a GPU (forced on for a CPU dry run, to run that path)
        "full": [] if ON_CUDA else ["--fused_lm_head", "true"],
        "full_plain_head": ["--fused_lm_head", "false"],
        "lora": ["--use_peft", "--lora_r", "4", "--lora_target_modules", "q_proj", "v_proj", "--merge_lora"],
    }
    summary = {}
    for name, extra in runs.items():
        out = work / f"sft-{name}"
        code = main(["sft", *common, "--output_dir", str(out), *extra])
        check.require(code == 0, f"{name}: llm4es sft returned {code}")
        info = json.loads((out / "llm4es_training.json").read_text())
        losses = [e["loss"] for e in info["loss_curve"]]
        card = (out / "README.md").read_text()
        summary[name] = {
            "precision": info.get("precision"),
            "hp_bf16": info["hyperparameters"].get("bf16"),
            "fused_lm_head": info["hyperparameters"].get("fused_lm_head"),
            "steps": info["training"].get("steps"),
            "losses": [round(v, 4) for v in losses],
            "tokens_per_second": info["training"].get("tokens_per_second"),
        }
        check.require(_finite(losses), f"{name}: non-finite losses {losses}")
        check.require(len(losses) == 8, f"{name}: {len(losses)} logged losses, expected 8")
        check.require(info.get("precision") == "bf16", f"{name}: precision {info.get('precision')}", cuda_only=True)
        check.require("| precision (as trained) | bf16 |" in card, f"{name}: card precision", cuda_only=True)
        if name == "full":
            fused = info["hyperparameters"].get("fused_lm_head")
            check.require(fused is True, f"full: fused_lm_head default {fused} on cuda", cuda_only=True)
        if name.startswith("full"):
            check.require(np.mean(losses[-3:]) < np.mean(losses[:3]), f"{name}: loss did not decrease {losses}")
        if name == "lora":
            check.require(not (out / "adapter_config.json").exists(), "lora: adapter not merged")
        AutoModelForCausalLM.from_pretrained(out)
        vectors = Embedder(str(out)).encode(TEXTS, progress=False)  # the trained model embeds on the device
        check.require(np.isfinite(vectors).all(), f"{name}: trained model gives non-finite vectors")
    check.fact(runs=summary)


def check_contrastive(check: Check, model: Path, corpus: Path, work: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from llm4es_hf.cli import main
    from llm4es_hf.embedding import Embedder

    def base(out: Path) -> list[str]:
        return [
            "--corpus", str(corpus), "--model_name_or_path", str(model), "--output_dir", str(out),
            "--max_slice_tokens", "64", "--min_events", "3", "--max_events", "6", "--report_to", "none",
            "--save_strategy", "no", "--logging_steps", "1", "--seed", "0", "--disable_tqdm", "true",
        ]  # fmt: skip

    summary = {}
    out = work / "contrastive-full"  # tests/test_contrastive.py's tiny run: 6 rounds x 40 users / 8 = 30 steps
    args = [*base(out), "--rounds", "6", "--num_train_epochs", "1", "--per_device_train_batch_size", "8"]
    args += ["--learning_rate", "3e-3", "--warmup_steps", "0", "--lr_scheduler_type", "constant"]
    code = main(["contrastive", *args])
    check.require(code == 0, f"full: llm4es contrastive returned {code}")
    info = json.loads((out / "llm4es_training.json").read_text())
    losses = [p["loss"] for p in info["loss_curve"]]
    summary["full"] = {
        "hp_bf16": info["hyperparameters"].get("bf16"),
        "steps": len(losses),
        "loss_first6_mean": round(float(np.mean(losses[:6])), 4) if losses else None,
        "loss_last6_mean": round(float(np.mean(losses[-6:])), 4) if losses else None,
        "tokens_per_second": info["training"].get("tokens_per_second"),
    }
    check.require(_finite(losses), f"full: non-finite losses {losses}")
    check.require(len(losses) == 30, f"full: {len(losses)} steps, expected 30")
    check.require(info["hyperparameters"].get("bf16") is True, "full: not trained in bf16", cuda_only=True)
    check.require(np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.5, f"full: loss did not drop by 0.5: {losses}")
    users_texts = TEXTS
    ours = Embedder(str(out), dtype="fp32", device=DEVICE, max_length=2048).encode(users_texts, progress=False)
    st = SentenceTransformer(str(out), device=DEVICE).encode(users_texts, batch_size=2)
    cos = cosine_rows(np.asarray(st, dtype=np.float32), ours)
    summary["full"]["st_vs_embedder_min_cosine"] = float(cos.min())
    check.require(cos.min() > 0.999, f"full: SentenceTransformer vs Embedder cosine {cos.tolist()}")
    auto = Embedder(str(out)).encode(users_texts, progress=False)
    check.require(cosine_rows(auto, ours).min() > 0.99, "full: auto-dtype vs fp32 embeddings of the trained model")

    out = work / "contrastive-lora"
    args = [*base(out), "--max_users", "16", "--per_device_train_batch_size", "8", "--use_peft", "true"]
    args += ["--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "q_proj", "v_proj"]
    args += ["--learning_rate", "1e-2"]
    code = main(["contrastive", *args])
    check.require(code == 0, f"lora: llm4es contrastive returned {code}")
    info = json.loads((out / "llm4es_training.json").read_text())
    losses = [p["loss"] for p in info["loss_curve"]]
    summary["lora"] = {"hp_bf16": info["hyperparameters"].get("bf16"), "losses": [round(v, 4) for v in losses]}
    check.require(_finite(losses), f"lora: non-finite losses {losses}")
    check.require(not (out / "adapter_config.json").exists(), "lora: adapter not merged")
    tuned = Embedder(str(out)).encode(users_texts, progress=False)
    base_vectors = Embedder(str(model)).encode(users_texts, progress=False)
    check.require(np.isfinite(tuned).all() and not np.allclose(tuned, base_vectors, atol=1e-4), "lora: no change")
    check.fact(runs=summary)


CHECKS = ("env", "hardware", "embed", "embed_levers", "st_export", "embed_shards", "sft", "contrastive")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-ok", action="store_true", help="run on CPU, skipping the CUDA-only assertions")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(CHECKS)}")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    args = parser.parse_args()
    only = [c for c in args.only.split(",") if c] or list(CHECKS)
    unknown = sorted(set(only) - set(CHECKS))
    if unknown:
        parser.error(f"unknown checks {unknown}")
    started = time.perf_counter()
    if not ON_CUDA and not args.cpu_ok:
        run_check("env", check_env)  # versions and import errors still help
        emit({"check": "hardware", "status": "failed", "error": "torch.cuda.is_available() is False"})
        emit({"gpu_smoke": "failed", "reason": "no CUDA device (use --cpu-ok for a CPU dry run)"})
        return 1
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="llm4es-gpu-smoke-"))
    model = corpus = None
    try:
        from tests.support import tiny

        model = tiny.tiny_model_dir(work / "tiny-model")  # random 3-layer Llama, hidden 32, BPE vocab ~400
        corpus = tiny.tiny_taste_corpus(work / "taste-corpus")  # 40 viewers (36 train / 4 test)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
    table = {
        "env": (check_env,),
        "hardware": (check_hardware,),
        "embed": (check_embed, model),
        "embed_levers": (check_embed_levers, model),
        "st_export": (check_st_export, model, work),
        "embed_shards": (check_embed_shards, model, work),
        "sft": (check_sft, model, corpus, work),
        "contrastive": (check_contrastive, model, corpus, work),
    }
    for name in CHECKS:
        if name not in only:
            continue
        fn, *fn_args = table[name]
        if any(a is None for a in fn_args):
            RESULTS.append({"check": name, "status": "failed", "error": "tiny model/corpus could not be built"})
            emit(RESULTS[-1])
            continue
        run_check(name, fn, *fn_args)
    failed = [r["check"] for r in RESULTS if r["status"] != "ok"]
    emit(
        {
            "gpu_smoke": "failed" if failed else "ok",
            "device": torch.cuda.get_device_name(0) if ON_CUDA else "cpu (--cpu-ok dry run)",
            "passed": [r["check"] for r in RESULTS if r["status"] == "ok"],
            "failed": failed,
            "seconds": round(time.perf_counter() - started, 1),
            **({"work": str(work)} if args.keep else {}),
        }
    )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
