"""The paper's scale on one device: do the shipped Rosbank recipe's settings fit, and how fast do they run?

A model of Llama-3.2-3B's published shape (``benchmarks/configs/llama-3.2-3b.json``: hidden 3072,
intermediate 8192, 28 layers, 24 heads, 8 KV heads, llama3 RoPE scaling, tied embeddings) with
random weights, saved to a local folder (no hub, no weights to carry: memory and speed depend on
the shape, not on the values). **The vocabulary is the bundled SmolLM2 tokenizer's (49,152 tokens),
not Llama-3's (128,256)**: the LM head and the embedding table are 2.6x smaller, so ``model_params``
is ~2.97B rather than 3.21B (both are printed; ``--tokenizer`` takes another tokenizer folder).

1. A synthetic Rosbank-format raw file (``llm4es_hf.sources.synthetic``) -> a corpus with the shipped
   ``recipes/rosbank/corpus.yaml`` settings (no enrichment: it needs an LLM server), its users
   long enough to fill the SFT recipe's ``max_length`` and the longest embedding length.
2. ``recipes/rosbank/sft_full.yaml`` through our SFT code (``llm4es_hf.training.sft.run_sft``): bf16 where the
   device has it, activation checkpointing, the recipe's per-device batch and accumulation, a few
   optimizer steps (``--steps``). Attention: FlashAttention-2 where the ``flash_attn`` package is
   installed, else SDPA (printed). Changed from the recipe, and printed: the model (the local
   folder), the corpus config (``serialized``: there is no enriched one), ``max_steps``,
   ``logging_steps`` 1 and no checkpoints.
3. Embeddings with our embedder (``llm4es_hf.embedding``: ``Embedder``, ``embed_dataset``) at 8,192 and
   16,384 tokens.

Tokens/s are timed from the end of the first (warm-up) step or batch to the end of the last.
MFU, the model FLOPs utilisation: training 6 N + 6 L d T FLOPs per token (N the parameters in
matrix products, the LM head included and the embedding lookup not; L layers, d the attention
width, T the sequence length: causal attention, half of PaLM's 12 L d T), forward-only 2 N + 2 L d T
for embedding (no LM head); activation checkpointing's recomputed forward is not counted. The peak
is the device's dense bf16 rate from a small table (H100 SXM / H200 989 TFLOP/s, A100 312, ...;
``--peak-tflops`` to override); on a CPU, a measured matrix product in the run's precision stands
in for it. Memory: the CUDA allocator's peak per phase; on a CPU the process' peak RSS so far.

The last line is one JSON object: ``device``, ``model_params``, ``sft_tokens_per_s``,
``sft_peak_memory_gb``, ``sft_mfu``, ``embed_tokens_per_s``, ``embed_peak_memory_gb`` and
``embed_mfu`` (the last three per length), with the settings used.

    python benchmarks/paper_scale.py                      # on a GPU (make paper-scale)
    python benchmarks/paper_scale.py --dry-run            # the same code, tiny shape, on the CPU (a test)
    python scripts/pack_device.py                         # what a GPU machine without network needs

The paper: 8 x A100-80GB, FSDP, 20-24k tokens/s in all, ~2.5-3k tokens/s per A100.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")
os.environ.update({name: os.environ.get(name, "1") for name in OFFLINE})  # the GPU machine has no network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from _common import peak_rss_mb, report  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, TrainerCallback  # noqa: E402
from trl import ModelConfig  # noqa: E402

from llm4es_hf.artifacts import load_corpus_config  # noqa: E402
from llm4es_hf.config import load_recipe  # noqa: E402
from llm4es_hf.corpus import CorpusConfig, build_corpus  # noqa: E402
from llm4es_hf.embedding import Embedder, embed_dataset  # noqa: E402
from llm4es_hf.hardware import describe, pick_dtype  # noqa: E402
from llm4es_hf.models import load_tokenizer  # noqa: E402
from llm4es_hf.sources.synthetic import generate_rosbank, write_rosbank  # noqa: E402
from llm4es_hf.training.sft import LLM4ESSFTConfig, SFTScriptArguments, run_sft  # noqa: E402

CONFIG = ROOT / "benchmarks" / "configs" / "llama-3.2-3b.json"
SFT_RECIPE = ROOT / "recipes" / "rosbank" / "sft_full.yaml"
CORPUS_RECIPE = ROOT / "recipes" / "rosbank" / "corpus.yaml"
LLAMA3_VOCAB = 128256
# The tiny shape of --dry-run: the same architecture and RoPE scaling, a few thousand times smaller.
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16}  # fmt: skip
# Dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets, TFLOP/s; first match wins.
PEAK_BF16_DENSE_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)
EMBED_LENGTHS = (8192, 16384)
# Tokens per synthetic Rosbank event in the serialized text with the SmolLM2 tokenizer (~25 measured);
# users get enough events to fill the longest length with room to spare.
TOKENS_PER_EVENT = 20


def attention_implementation() -> str:
    """FlashAttention-2 where its package is installed and there is a GPU, else PyTorch's SDPA."""
    return "flash_attention_2" if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") else "sdpa"


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({os.cpu_count()} cores)"


def peak_flops(dtype: torch.dtype, override_tflops: float | None) -> tuple[float, str]:
    """(FLOP/s, where it comes from): the table's dense bf16 peak for a known GPU, else a measured
    matrix product in ``dtype`` (on a CPU there is no table entry; it makes the MFU a fraction of
    what this machine's GEMM attains)."""
    if override_tflops:
        return override_tflops * 1e12, "--peak-tflops"
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        for key, tflops in PEAK_BF16_DENSE_TFLOPS:
            if key in name:
                return tflops * 1e12, f"datasheet dense bf16 peak for {key}"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = 4096 if device == "cuda" else 512
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    a @ b  # warm-up
    repeats, start = 0, time.perf_counter()
    while repeats < 3 or time.perf_counter() - start < 0.3:
        a @ b
        repeats += 1
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return 2 * n**3 * repeats / seconds, f"measured {n}x{n} {str(dtype).replace('torch.', '')} matmul (no table entry)"


def reset_peak_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gb() -> float:
    """The CUDA allocator's peak since the last reset; on a CPU the process' peak RSS."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return peak_rss_mb() / 1024


def model_config(path: Path, tokenizer: Any, dry_run: bool) -> Any:
    """The model's config (the tiny shape for a dry run) with the tokenizer's vocabulary and ids."""
    data = json.loads(path.read_text())
    if dry_run:
        data.update(TINY)
    data.update(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return AutoConfig.for_model(**data)


def save_random_model(config: Any, tokenizer: Any, folder: Path) -> dict[str, int]:
    """Random weights of ``config`` saved with the tokenizer (a folder ``from_pretrained`` loads);
    built on the GPU in bf16 where there is one (a 3B model's CPU init takes minutes). Returns the
    parameter counts that the FLOP estimate needs."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    total = sum(p.numel() for p in model.parameters())  # a tied head is counted once
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    body = total - embedding.numel() - (0 if head is embedding else head.numel())
    del model
    reset_peak_memory()
    return {"total": total, "matmul_body": body, "head": config.vocab_size * config.hidden_size}


def build_paper_corpus(folder: Path, tokenizer_path: str, *, users: int, max_tokens: int) -> Path:
    """A synthetic Rosbank-format raw file -> a corpus with the shipped corpus recipe's settings."""
    raw = folder / "raw"
    write_rosbank(generate_rosbank(users, max_tokens / TOKENS_PER_EVENT * 1.5, seed=42), raw)
    (config,) = load_recipe(
        [CorpusConfig],
        CORPUS_RECIPE,
        input=str(raw),
        output_dir=str(folder / "corpus"),
        tokenizer=tokenizer_path,
        max_tokens=max_tokens,
        enrich_variants=[],  # enrichment needs the recipe's LLM server; the shapes are the same
    )
    return build_corpus(config)


class StepTimer(TrainerCallback):
    """Wall time and tokens seen at the end of each optimizer step (the GPU synchronized first)."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.marks.append((time.perf_counter(), int(state.num_input_tokens_seen)))

    def steady_rate(self) -> tuple[float, int, float]:
        """(tokens/s, tokens, seconds) from the end of the first step to the end of the last."""
        if len(self.marks) < 2:
            raise SystemExit("paper_scale: need at least 2 optimizer steps to time past the warm-up (--steps)")
        (t0, n0), (t1, n1) = self.marks[0], self.marks[-1]
        return (n1 - n0) / (t1 - t0), n1 - n0, t1 - t0


def sft_settings(overrides: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The shipped recipe through load_recipe, with ``overrides``. A transformers without the
    ``activation_checkpointing`` argument (older than ours) gets it as ``gradient_checkpointing``."""
    types = [SFTScriptArguments, LLM4ESSFTConfig, ModelConfig]
    if "activation_checkpointing" in {f.name for f in fields(LLM4ESSFTConfig)}:
        return load_recipe(types, SFT_RECIPE, **overrides)
    data = yaml.safe_load(SFT_RECIPE.read_text(encoding="utf-8"))
    data["gradient_checkpointing"] = data.pop("activation_checkpointing")
    return load_recipe(types, None, **{**data, **overrides})


def sft_phase(
    corpus: Path, model_dir: Path, work: Path, params: dict[str, int], config: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """The shipped SFT recipe through run_sft, timed past the first step; a CUDA out-of-memory is a
    result (``sft_error``), not a crash, so that the embedding figures still come."""
    overrides = {
        "corpus": str(corpus),
        "corpus_config": "serialized",  # no enriched config without an LLM server
        "model_name_or_path": str(model_dir),
        "attn_implementation": args.attention,
        "output_dir": str(work / "sft"),
        "max_steps": args.steps,
        "max_length": args.max_length,
        "logging_steps": 1,
        "save_strategy": "no",
        "disable_tqdm": True,
    }
    script_args, training_args, model_args = sft_settings(overrides)
    print(f"SFT: {SFT_RECIPE.relative_to(ROOT)} with {overrides}")
    out: dict[str, Any] = {
        "sft_recipe": str(SFT_RECIPE.relative_to(ROOT)),
        "sft_max_length": args.max_length,
        "sft_batch": f"{training_args.per_device_train_batch_size} per device x "
        f"{training_args.gradient_accumulation_steps} accumulation",
        "sft_activation_checkpointing": bool(
            getattr(training_args, "activation_checkpointing", None) or training_args.gradient_checkpointing
        ),
        "sft_steps": args.steps,
    }
    timer = StepTimer()
    reset_peak_memory()
    try:
        training = run_sft(script_args, training_args, model_args, callbacks=[timer])
    except torch.OutOfMemoryError as err:
        out.update(sft_error=f"out of memory: {str(err)[:300]}", sft_peak_memory_gb=round(peak_memory_gb(), 3))
        out.update(sft_tokens_per_s=None, sft_mfu=None)
        print(f"SFT: OUT OF MEMORY at max_length {args.max_length}: {err}")
        return out
    finally:
        shutil.rmtree(work / "sft", ignore_errors=True)
    peak_memory = peak_memory_gb()
    rate, tokens, seconds = timer.steady_rate()
    seq = training["tokenization"]["tokens"] / training["tokenization"]["users"]
    width = config.num_attention_heads * config.head_dim
    flops_per_token = 6 * (params["matmul_body"] + params["head"]) + 6 * config.num_hidden_layers * width * seq
    peak, peak_source = peak_flops(torch.bfloat16 if training_args.bf16 else torch.float32, args.peak_tflops)
    mfu = rate * flops_per_token / peak
    print(
        f"SFT: {rate:,.0f} tokens/s over steps 2-{args.steps} ({tokens:,} tokens in {seconds:.2f} s), peak memory "
        f"{peak_memory:.2f} GiB, MFU {mfu:.3f} of {peak / 1e12:.3g} TFLOP/s ({peak_source}); precision "
        f"{training['precision']}, loss {training['training']['first_loss']} -> {training['training']['final_loss']}"
    )
    out.update(
        sft_precision=training["precision"],
        sft_mean_tokens_per_user=round(seq, 1),
        sft_tokens_per_s=round(rate, 1),
        sft_peak_memory_gb=round(peak_memory, 3),
        sft_mfu=round(mfu, 4),
        peak_tflops=float(f"{peak / 1e12:.4g}"),
        peak_source=peak_source,
    )
    return out


def embed_phase(
    texts: Any, model_dir: Path, params: dict[str, int], config: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """Our embedder at each length, timed past a one-text warm-up; out-of-memory per length is a result."""
    rates, peaks, mfus, errors, attention = {}, {}, {}, {}, None
    sample = texts.select(range(min(args.embed_users, len(texts))))
    sample_texts = list(sample["text"])
    width = config.num_attention_heads * config.head_dim
    for length in args.embed_lengths:
        key = str(length)
        reset_peak_memory()
        embedder = Embedder(str(model_dir), max_length=length)
        attention = embedder.model.config._attn_implementation
        tokens = sum(
            len(row) for row in embedder.tokenizer(sample_texts, truncation=True, max_length=length)["input_ids"]
        )
        try:
            embedder.encode(sample_texts[:1], batch_size=1, progress=False)  # warm-up
            synchronize()
            start = time.perf_counter()
            vectors = embed_dataset(embedder, sample, batch_size=args.embed_batch_size)
            synchronize()
            seconds = time.perf_counter() - start
        except torch.OutOfMemoryError as err:
            errors[key] = f"out of memory: {str(err)[:300]}"
            rates[key], mfus[key], peaks[key] = None, None, round(peak_memory_gb(), 3)
            print(f"embed at {length:,} tokens: OUT OF MEMORY (batch {args.embed_batch_size}): {err}")
            del embedder
            continue
        if vectors is None or vectors.shape[0] != len(sample) or not np.isfinite(vectors).all():
            raise SystemExit(f"paper_scale: embedding at {length} tokens gave no or non-finite vectors")
        mean_length = tokens / len(sample)
        flops_per_token = 2 * params["matmul_body"] + 2 * config.num_hidden_layers * width * mean_length
        peak, _ = peak_flops(embedder.dtype, args.peak_tflops)
        rates[key], peaks[key] = round(tokens / seconds, 1), round(peak_memory_gb(), 3)
        mfus[key] = round(tokens / seconds * flops_per_token / peak, 4)
        print(
            f"embed at {length:,} tokens: {len(sample)} texts of {mean_length:,.0f} tokens on average, "
            f"{rates[key]:,.0f} tokens/s, peak memory {peaks[key]:.2f} GiB, MFU {mfus[key]:.3f} "
            f"({str(embedder.dtype).replace('torch.', '')}, batch {args.embed_batch_size}, {attention})"
        )
        del embedder
    out = {
        "embed_attention": attention,
        "embed_users": len(sample),
        "embed_batch_size": args.embed_batch_size,
        "embed_tokens_per_s": rates,
        "embed_peak_memory_gb": peaks,
        "embed_mfu": mfus,
    }
    return {**out, "embed_errors": errors} if errors else out


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shape, short lengths, 2 steps: runs on a CPU")
    parser.add_argument("--tokenizer", default="smollm2-135m", help="bundled name or tokenizer folder")
    parser.add_argument(
        "--model-config", default=str(CONFIG), help="a transformers config.json (default: Llama-3.2-3B)"
    )
    parser.add_argument("--max-length", type=int, default=None, help="SFT tokens per user (default: the recipe's)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps, the first is warm-up (default 6)")
    parser.add_argument("--embed-lengths", type=int, nargs="+", default=None, help="default 8192 16384")
    parser.add_argument("--embed-users", type=int, default=None, help="texts embedded per length (default 8)")
    parser.add_argument("--embed-batch-size", type=int, default=None, help="default 4")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, instead of the table")
    parser.add_argument("--work-dir", default=None, help="default: a temporary folder, removed at the end")
    args = parser.parse_args(argv)

    dry = args.dry_run
    recipe = yaml.safe_load(SFT_RECIPE.read_text(encoding="utf-8"))
    args.steps = args.steps or (2 if dry else 6)
    args.max_length = args.max_length or (64 if dry else int(recipe["max_length"]))
    args.embed_lengths = args.embed_lengths or ([64, 128] if dry else list(EMBED_LENGTHS))
    args.embed_users = args.embed_users or (3 if dry else 8)
    args.embed_batch_size = args.embed_batch_size or (2 if dry else 4)
    args.attention = attention_implementation()
    per_step = int(recipe["per_device_train_batch_size"]) * int(recipe["gradient_accumulation_steps"])
    train_users = max(per_step * args.steps, args.embed_users)
    users = math.ceil(train_users / (1 - float(yaml.safe_load(CORPUS_RECIPE.read_text())["test_size"]))) + 2

    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="paper-scale-"))
    for folder in ("model", "raw", "corpus", "sft"):  # a rerun starts clean
        shutil.rmtree(work / folder, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    dtype = pick_dtype("auto", "cuda" if torch.cuda.is_available() else "cpu")
    hardware = describe()
    versions = {}
    for name in ("torch", "transformers", "trl", "datasets", "accelerate", "polars", "pyarrow", "flash_attn"):
        try:
            versions[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    tokenizer = load_tokenizer(args.tokenizer)
    config = model_config(Path(args.model_config), tokenizer, dry)
    print(
        f"device: {device_name()}; hardware: {hardware}; precision: {str(dtype).replace('torch.', '')}; attention: "
        f"{args.attention}{' (flash_attn not installed)' if args.attention == 'sdpa' else ''}; versions: {versions}"
    )
    print(
        f"tokenizer: {args.tokenizer} (vocab {len(tokenizer):,}, not Llama-3's {LLAMA3_VOCAB:,}: the LM head and "
        f"embedding table are {LLAMA3_VOCAB / len(tokenizer):.2f}x smaller than Llama-3.2-3B's); shape: "
        f"{'TINY dry run ' if dry else ''}{config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"intermediate {config.intermediate_size}, {config.num_attention_heads} heads / "
        f"{config.num_key_value_heads} KV heads; random weights"
    )

    started = time.perf_counter()
    model_dir = work / "model"
    params = save_random_model(config, tokenizer, model_dir)
    llama_vocab_params = params["total"] + (LLAMA3_VOCAB - config.vocab_size) * config.hidden_size
    print(f"model: {params['total']:,} parameters ({llama_vocab_params:,} with Llama-3's vocabulary), {model_dir}")

    corpus_tokens = max([args.max_length, *args.embed_lengths])
    corpus = build_paper_corpus(work, str(model_dir), users=users, max_tokens=corpus_tokens)
    texts = load_corpus_config(str(corpus), "serialized")["train"]
    print(f"corpus: {len(texts)} train users of up to {corpus_tokens:,} tokens, {corpus}")

    sft = sft_phase(corpus, model_dir, work, params, config, args)
    embedding = embed_phase(texts, model_dir, params, config, args)
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    report(
        benchmark="paper_scale",
        dry_run=dry,
        device=device_name(),
        hardware=hardware,
        versions=versions,
        tokenizer=f"{args.tokenizer} (vocab {len(tokenizer)}, not Llama-3's {LLAMA3_VOCAB})",
        model_config=Path(args.model_config).name + (" (TINY dry-run shape)" if dry else ""),
        model_params=params["total"],
        model_params_with_llama3_vocab=llama_vocab_params,
        attention={"sft": args.attention, "embed": embedding.pop("embed_attention")},
        **sft,
        embed_precision=str(dtype).replace("torch.", ""),
        **embedding,
        memory_measure=(
            "torch.cuda.max_memory_allocated per phase"
            if torch.cuda.is_available()
            else "process peak RSS so far (CPU: not per phase)"
        ),
        seconds=round(time.perf_counter() - started, 1),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
