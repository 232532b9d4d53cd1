"""Training-step speed: a bundled model (SmolLM2 by default, --model gemma3-270m) on MovieLens user texts, this CPU.

Same model, same batches (sequential order), same AdamW settings (the paper's betas/eps/wd,
grad clip 1.0), a few optimizer steps each. Each configuration runs in a fresh process of its own
(as a training run does) and is timed from the end of its first, warm-up step to the end of its
last: in one shared process the configuration that ran second looked up to 1.5x faster than the
same one run first (allocator and kernel state carried over), whichever it was. Compared:
- ours (TRL SFTTrainer via llm4es_hf.training.sft) against a minimal hand-written PyTorch loop, both
  in the same precision and the same batching (padded batches; one user per pass): useful
  (non-padding) tokens/s, target ratio >= 0.9;
- plain padding against the padding-free ways, on the real MovieLens length distribution
  (target >= 1.5): packing (TRL bfd: full rows, position ids reset per user) and one user per
  micro-batch with gradient accumulation (same users per optimizer step, no pad token and no
  attention across users, the cheap padding-free way where there is no varlen attention
  kernel, as on CPU); and length-grouped batches;
- bf16 autocast against fp32: tokens/s and the loss after the same steps;
- the model's own loss (our CPU default) against TRL's fused, chunked LM head (`fused`).
Peak RSS per configuration is reported. Last line: one JSON object, ratio = the faster
padding-free way over plain padding (`ours_is` names it; both ratios are reported).

``--lora`` times the quickstart's LoRA fine-tuning instead (r 16 on the 7 projections, lr 1e-3,
the quickstart's 257-token windows of the compact layout, 8 viewers per optimizer step, the same
viewers in the same order) the way it runs now (no LoRA dropout, one micro-batch of 8, eager
attention, the chunked loss and no fp32 round trip of llm4es_hf.training.fast_step) against the
way the recipe shipped before (dropout 0.05, 4 x 2 accumulated, sdpa, the model's own loss), each in
its own process, and measures torch's GEMM rate at the model's shapes in the same run, in the
run's precision and in fp32. Last line: `lora_speedup` (new over old tokens/s),
`lora_gemm_fraction` (model FLOPs per token x tokens/s over the GEMM rate in the run's precision;
`lora_gemm_fraction_of_fp32_gemm` over the fp32 rate, the same figure where the run is fp32):
forward and input-gradient backward of every matmul, LM head and causal attention included) and
the loss of each after the same steps. ``--precision fp32`` runs both in fp32 on a CPU that would
choose bf16. ``--lora-runs lora-new-plain-step`` adds the new settings without fast_step.

    python benchmarks/train.py [--max-length 512 --batch-size 2 --steps 3 --runs padded packed ...]
        [--model gemma3-270m]
    python benchmarks/train.py --lora [--steps 30] [--precision fp32] [--lora-runs lora-new-plain-step]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import peak_rss_mb, report  # noqa: E402

from llm4es_hf.assets import resolve_model  # noqa: E402
from llm4es_hf.hardware import cpu_has_native_bf16, describe  # noqa: E402
from llm4es_hf.models import load_tokenizer
from llm4es_hf.serialize import Serializer  # noqa: E402
from llm4es_hf.sources import load_source  # noqa: E402
from llm4es_hf.training.fast_step import skip_adapter_input_cast  # noqa: E402
from llm4es_hf.training.sft import LLM4ESSFTConfig, tokenize_for_lm  # noqa: E402

CONFIGS = ("hand", "hand-micro", "padded", "packed", "grouped", "micro", "fp32", "fused")
LORA_NEW = {"lora_dropout": 0.0, "batch_size": 8, "accumulation": 1, "attention": "eager", "wait": "ACTIVE"}
LORA_CONFIGS = {  # the quickstart's LoRA step: now, and as the recipe and `make quickstart` shipped before
    "lora-new": {**LORA_NEW, "fast_step": True},
    "lora-old": {
        "lora_dropout": 0.05,
        "batch_size": 4,
        "accumulation": 2,
        "attention": "sdpa",
        "wait": "PASSIVE",
        "fast_step": False,
    },
    # the new settings with the old OpenMP wait policy: what the code alone gains (--lora-runs to time it)
    "lora-new-passive": {**LORA_NEW, "wait": "PASSIVE", "fast_step": True},
    # the new settings with the model's own loss and PEFT's input cast: what training.fast_step gains
    "lora-new-plain-step": {**LORA_NEW, "fast_step": False},
}
LORA = {
    "r": 16,
    "lora_alpha": 32,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
OPTIM = {"lr": 5e-5, "betas": (0.9, 0.95), "eps": 1e-5, "weight_decay": 1e-6}


def hand_loop(
    model_path: str, batches: list[list[list[int]]], pad_id: int, bf16: bool, micro: bool = False
) -> tuple[int, float, float]:
    """The minimal loop: pad right, mask pads out of the labels, autocast, AdamW, clip. With
    ``micro`` each user is its own forward/backward (no pad), losses weighted by predicted
    tokens so the step equals the padded one. Returns (tokens, seconds) of the steps after the
    first, and the last loss."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), **OPTIM)
    tokens, loss, start = 0, float("nan"), 0.0
    for step, rows in enumerate(batches):
        predicted = sum(len(r) - 1 for r in rows)
        loss = 0.0
        for group in [[r] for r in rows] if micro else [rows]:
            width = max(len(r) for r in group)
            ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in group])
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in group])
            labels = ids.masked_fill(mask == 0, -100)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(input_ids=ids, attention_mask=mask, labels=labels)
            share = sum(len(r) - 1 for r in group) / predicted
            (out.loss * share).backward()
            loss += float(out.loss) * share
            if step:
                tokens += int(mask.sum())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step == 0:
            start = time.perf_counter()
    return tokens, time.perf_counter() - start, loss


def ours(
    model_path: str,
    dataset,
    tokenizer,
    *,
    batch_size: int,
    steps: int,
    bf16: bool,
    packing: bool = False,
    strategy: str = "sequential",
    accumulation: int = 1,
    fused_lm_head: bool | None = None,
    lora_dropout: float | None = None,
    learning_rate: float = OPTIM["lr"],
    attention: str = "sdpa",
    fast_step: bool = True,
) -> tuple[int, float, float]:
    """TRL SFTTrainer through our config and trainer: (tokens, seconds) of the steps after the first, last loss.
    ``lora_dropout`` set: LoRA (``LORA``) with that dropout, as the quickstart's recipe trains.
    ``fast_step`` False: the step as it ran before llm4es_hf.training.fast_step (the model's own loss
    over full logits, PEFT's cast of each adapter's input to fp32)."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback

    from llm4es_hf.training.sft import LLM4ESSFTTrainer

    marks: list[tuple[float, int]] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append((time.perf_counter(), int(state.num_input_tokens_seen)))

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, attn_implementation=attention)
    with tempfile.TemporaryDirectory() as tmp:
        args = LLM4ESSFTConfig(
            output_dir=tmp,
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            learning_rate=learning_rate,
            adam_beta1=0.9,
            adam_beta2=0.95,
            adam_epsilon=OPTIM["eps"],
            weight_decay=OPTIM["weight_decay"],
            max_grad_norm=1.0,
            lr_scheduler_type="constant",
            warmup_steps=0,
            bf16=bf16,
            activation_checkpointing=False,
            packing=packing,
            max_length=max(len(r) for r in dataset["input_ids"]),
            report_to="none",
            save_strategy="no",
            logging_steps=1,
            train_sampling_strategy=strategy,
            include_num_input_tokens_seen="non_padding",  # True counts pads too
            disable_tqdm=True,
            dataloader_drop_last=False,
            fused_lm_head=fused_lm_head,
        )
        peft = None if lora_dropout is None else LoraConfig(lora_dropout=lora_dropout, task_type="CAUSAL_LM", **LORA)
        trainer = LLM4ESSFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[StepClock()],
            peft_config=peft,
        )
        if not fast_step:
            trainer.loss_head = None
            skip_adapter_input_cast(trainer.model, skip=False)
        trainer.train()
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        (first_end, first_tokens), (last_end, last_tokens) = marks[0], marks[-1]
        return last_tokens - first_tokens, last_end - first_end, float(losses[-1])


def gemm_gflops(rows: int, inner: int, cols: int, repeat: int = 20, dtype: torch.dtype = torch.float32) -> float:
    """torch's GEMM rate (GFLOP/s) at one matmul shape in ``dtype`` (the training's precision: fp32,
    or bf16 where the CPU has it natively), on this run's threads: best of 3."""
    a, b = torch.randn(rows, inner, dtype=dtype), torch.randn(inner, cols, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * rows * inner * cols * repeat / best / 1e9


def lora_flops_per_token(config, context: float) -> float:  # noqa: ANN001
    """Model FLOPs of one LoRA training token: every matmul forward (2 x weights) and its
    input-gradient backward (the frozen weights get no gradient), LM head included; causal
    attention (QK^T and AV at ``context`` average keys) forward, and twice that backward.
    The rank-16 adapters' own FLOPs (under 5%) are not counted."""
    d, heads, kv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    per_layer = d * heads * head_dim * 2 + 2 * d * kv * head_dim + 3 * d * config.intermediate_size
    weights = config.num_hidden_layers * per_layer + d * config.vocab_size
    attention = config.num_hidden_layers * 4 * heads * head_dim * context
    return 2 * (2 * weights) + 3 * attention


def lora_rows(tokenizer, max_length: int, users: int) -> list[list[int]]:  # noqa: ANN001
    """The quickstart's training windows: the latest ``max_length`` tokens (EOS included) of the
    compact layout, ``users`` viewers in a fixed random order."""

    source = load_source("movielens", schema="movielens_compact")
    texts = Serializer(source.schema, max_tokens=max_length - 1, tokenizer=tokenizer)(source.users)
    tokenized, _ = tokenize_for_lm(texts.select_columns(["text"]), tokenizer, max_length=max_length)
    order = np.random.default_rng(0).permutation(len(tokenized))[:users]
    return [tokenized[int(i)]["input_ids"] for i in order]


def lora_main(args: argparse.Namespace) -> None:
    """``--lora``: the quickstart's LoRA step now against before (see the module docstring)."""
    import datasets
    from transformers import AutoConfig

    steps = args.steps or 30
    per_step = 8
    tokenizer = load_tokenizer(args.model)
    rows = lora_rows(tokenizer, args.max_length or 257, per_step * (steps + 1))
    model_path = resolve_model(args.model)
    bf16 = args.precision == "auto" and cpu_has_native_bf16()  # what training chooses, unless fp32 is asked
    if args.only:
        settings = LORA_CONFIGS[args.only]
        dataset = datasets.Dataset.from_dict({"input_ids": rows})
        tokens, seconds, loss = ours(
            model_path,
            dataset,
            tokenizer,
            batch_size=settings["batch_size"],
            accumulation=settings["accumulation"],
            lora_dropout=settings["lora_dropout"],
            attention=settings["attention"],
            fast_step=settings["fast_step"],
            steps=steps + 1,
            bf16=bf16,
            learning_rate=1e-3,
        )
        print(json.dumps({"tokens": tokens, "seconds": seconds, "loss": loss, "peak_rss_mb": peak_rss_mb()}))
        return
    config = AutoConfig.from_pretrained(model_path)
    lengths = np.array([len(r) for r in rows])
    flops = lora_flops_per_token(config, float((lengths + 1).mean() / 2))
    precision = "bf16" if bf16 else "fp32"
    print(
        f"hardware: {describe()}; precision {precision}; {args.model}, LoRA r 16 on 7 projections; {steps} timed steps "
        f"(+1 warm-up) of {per_step} viewers x ~{int(lengths.mean())} tokens; {flops / 1e9:.3f} GFLOP per token"
    )
    results = {}
    for key in args.lora_runs:
        settings = LORA_CONFIGS[key]
        command = [sys.executable, __file__, "--lora", "--only", key, "--steps", str(steps), "--model", args.model]
        command += ["--precision", args.precision]
        env = {**os.environ, "OMP_WAIT_POLICY": settings["wait"]}  # read once, when libgomp starts
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            sys.exit(f"{key} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        results[key] = json.loads(done.stdout.strip().splitlines()[-1])
        run = results[key]
        print(
            f"  {key}: dropout {settings['lora_dropout']}, {settings['batch_size']} x {settings['accumulation']}, "
            f"{settings['attention']} attention, OMP_WAIT_POLICY={settings['wait']}, "
            f"{'fast step' if settings['fast_step'] else 'plain step'}: "
            f"{run['seconds']:.1f} s, {run['tokens'] / run['seconds']:.1f} tokens/s, loss after {steps + 1} steps "
            f"{run['loss']:.4f}, peak RSS {run['peak_rss_mb']:,.0f} MB",
            flush=True,
        )
    gemm_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    gemm = gemm_gflops(2048, config.hidden_size, config.intermediate_size, dtype=gemm_dtype)
    gemm_fp32 = gemm if gemm_dtype == torch.float32 else gemm_gflops(2048, config.hidden_size, config.intermediate_size)
    speed = {key: run["tokens"] / run["seconds"] for key, run in results.items()}
    shape = f"(2048 x {config.hidden_size}) @ ({config.hidden_size} x {config.intermediate_size})"
    print(f"torch {precision} GEMM at {shape}: {gemm:.1f} GFLOP/s; fp32: {gemm_fp32:.1f} GFLOP/s")
    report(
        benchmark="train-lora",
        unit="tokens/s",
        model=args.model,
        hardware=describe(),
        precision=precision,
        steps=steps,
        ours=round(speed["lora-new"], 1),
        baseline=round(speed["lora-old"], 1),
        lora_speedup=round(speed["lora-new"] / speed["lora-old"], 2),
        gflop_per_token=round(flops / 1e9, 4),
        gemm_gflops=round(gemm, 1),
        gemm_precision=precision,
        lora_gemm_fraction=round(flops * speed["lora-new"] / 1e9 / gemm, 3),
        lora_gemm_fraction_before=round(flops * speed["lora-old"] / 1e9 / gemm, 3),
        gemm_fp32_gflops=round(gemm_fp32, 1),
        lora_gemm_fraction_of_fp32_gemm=round(flops * speed["lora-new"] / 1e9 / gemm_fp32, 3),
        lora_speedup_same_wait_policy=round(speed["lora-new-passive"] / speed["lora-old"], 2)
        if "lora-new-passive" in speed
        else None,
        fast_step_speedup=round(speed["lora-new"] / speed["lora-new-plain-step"], 2)
        if "lora-new-plain-step" in speed
        else None,
        settings={key: LORA_CONFIGS[key] for key in results},
        loss_new=round(results["lora-new"]["loss"], 4),
        loss_old=round(results["lora-old"]["loss"], 4),
        peak_rss_mb={key: round(run["peak_rss_mb"]) for key, run in results.items()},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-length", type=int, default=None, help="tokens per user (default 512; --lora 257)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default 3; --lora 30)")
    parser.add_argument("--model", default="smollm2-135m", help="bundled name, folder or Hub id")
    parser.add_argument(
        "--runs",
        nargs="+",
        default=list(CONFIGS),
        choices=CONFIGS,
        help="which configurations to time (padded is always the baseline)",
    )
    parser.add_argument("--lora", action="store_true", help="the quickstart's LoRA step, now against before")
    parser.add_argument(
        "--lora-runs",
        nargs="+",
        default=["lora-new", "lora-old"],
        choices=list(LORA_CONFIGS),
        help="--lora: which settings to time (lora-new and lora-old always)",
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32"],
        default="auto",
        help="--lora: auto (bf16 autocast where the CPU has native bf16, as training chooses) or fp32",
    )
    parser.add_argument("--only", choices=[*CONFIGS, *LORA_CONFIGS], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.lora:
        args.lora_runs = list(dict.fromkeys(["lora-new", "lora-old", *args.lora_runs]))
        lora_main(args)
        return
    args.max_length = args.max_length or 512
    args.steps = args.steps or 3
    if "padded" not in args.runs and not args.only:
        parser.error("--runs must include padded (the baseline of every ratio)")

    import datasets

    source = load_source("movielens")
    tokenizer = load_tokenizer(args.model)
    texts = Serializer(source.schema, max_tokens=args.max_length - 1, tokenizer=tokenizer)(source.users)
    tokenized, _ = tokenize_for_lm(texts.select_columns(["text"]), tokenizer, max_length=args.max_length)
    rng = np.random.default_rng(0)
    n = args.batch_size * (args.steps + 1)  # + the warm-up step
    rows = [tokenized[int(i)]["input_ids"] for i in rng.permutation(len(tokenized))[:n]]
    lengths = np.array([len(r) for r in tokenized["input_ids"]])
    if not args.only:
        print(
            f"MovieLens users: {len(lengths)} texts, tokens p25/p50/p75/max = "
            f"{np.percentile(lengths, [25, 50, 75]).astype(int).tolist()}/{lengths.max()}; "
            f"{n} of them in 1 + {args.steps} steps of {args.batch_size}; each configuration in its own process"
        )
    dataset = datasets.Dataset.from_dict({"input_ids": rows})
    batches = [rows[i : i + args.batch_size] for i in range(0, n, args.batch_size)]
    model_path = resolve_model(args.model)
    bf16 = cpu_has_native_bf16()
    precision = "bf16" if bf16 else "fp32"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def trl(**options):
        settings = {"batch_size": args.batch_size, "steps": args.steps + 1, "bf16": bf16, **options}
        return lambda: ours(model_path, dataset, tokenizer, **settings)

    runs = [
        (f"hand-written loop ({precision})", lambda: hand_loop(model_path, batches, pad, bf16)),
        (
            f"hand-written loop, one user per pass ({precision})",
            lambda: hand_loop(model_path, batches, pad, bf16, True),
        ),
        (f"ours, padding ({precision})", trl()),
        (f"ours, packed ({precision})", trl(packing=True)),
        (f"ours, grouped by length ({precision})", trl(strategy="group_by_length")),
        (f"ours, one user per micro-batch ({precision})", trl(batch_size=1, accumulation=args.batch_size)),
        ("ours, padding (fp32)", trl(bf16=False)),
        (f"ours, padding, TRL fused LM head ({precision})", trl(fused_lm_head=True)),
    ]
    by_key = dict(zip(CONFIGS, runs, strict=True))
    if args.only:
        tokens, seconds, loss = by_key[args.only][1]()
        print(json.dumps({"tokens": tokens, "seconds": seconds, "loss": loss, "peak_rss_mb": peak_rss_mb()}))
        return
    results, peaks = {}, {}
    for key in dict.fromkeys(args.runs):
        name = by_key[key][0]
        command = [sys.executable, __file__, "--only", key, "--max-length", str(args.max_length)]
        command += ["--batch-size", str(args.batch_size), "--steps", str(args.steps), "--model", args.model]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"{name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        run = json.loads(done.stdout.strip().splitlines()[-1])
        results[key] = (run["tokens"] / run["seconds"], run["loss"])
        peaks[key] = round(run["peak_rss_mb"])
        print(
            f"  {name:40s} {run['seconds']:7.1f} s ({run['seconds'] / args.steps:.1f} s/step)  "
            f"{results[key][0]:7.1f} tokens/s  last loss {run['loss']:.4f}"
            f"  peak RSS {peaks[key]:,} MB",
            flush=True,
        )

    def over(a: str, b: str) -> float | None:
        return round(results[a][0] / results[b][0], 2) if a in results and b in results else None

    # the faster padding-free way: TRL packing (bfd rows) or one user per micro-batch (no pad at all)
    free = [k for k in ("packed", "micro") if k in results]
    padding_free = max(free, key=lambda k: results[k][0]) if free else None
    report(
        benchmark="train",
        unit="tokens/s",
        model=args.model,
        precision=precision,
        batch_size=args.batch_size,
        ours=round(results[padding_free][0], 1) if padding_free else None,
        ours_is=padding_free,
        baseline=round(results["padded"][0], 1),
        ratio=over(padding_free, "padded") if padding_free else None,
        packed_over_padding=over("packed", "padded"),
        micro_batches_over_padding=over("micro", "padded"),
        grouped_over_padding=over("grouped", "padded"),
        framework_over_hand_loop=over("padded", "hand"),
        framework_over_hand_loop_micro_batches=over("micro", "hand-micro"),
        bf16_over_fp32=over("padded", "fp32") if bf16 else None,
        model_loss_over_trl_fused_head=over("padded", "fused"),
        loss_bf16=round(results["padded"][1], 4),
        loss_fp32=round(results["fp32"][1], 4) if "fp32" in results else None,
        peak_rss_mb=peaks,
    )


if __name__ == "__main__":
    main()
