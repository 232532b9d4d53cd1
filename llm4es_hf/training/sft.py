"""Stage 3: causal-LM fine-tuning on user texts with TRL's SFTTrainer (the body of recipes/sft.py).

Plain next-token loss over each user's whole text, one user per sample, EOS appended.
We tokenize ourselves so that an over-long text loses its *oldest* tokens (TRL only keeps
the start), count the users that were cut, and refuse empty texts before training starts.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import Trainer, TrainerCallback
from trl import SFTConfig, SFTTrainer

from ..artifacts import load_corpus_config, write_serialization_settings
from ..cards import write_model_card
from ..errors import Llm4esError
from ..hardware import process_state, training_precision
from ..models import load_model
from .fast_step import NO_LOGITS, chunked_loss_head, linear_cross_entropy, skip_adapter_input_cast


@dataclass
class SFTScriptArguments:
    """Our data options for recipes/sft.py (TRL's SFTConfig and ModelConfig hold the rest)."""

    corpus: str | None = field(
        default=None, metadata={"help": "corpus folder (from `llm4es corpus`) or Hub data set id"}
    )
    corpus_config: str = field(default="serialized", metadata={"help": "serialized or enriched"})
    corpus_recipe: str | None = field(
        default=None, metadata={"help": "build `corpus` from this corpus recipe first when the folder is missing"}
    )
    mixture: list[Any] = field(
        default_factory=list,
        metadata={
            "help": "cross-dataset training: in YAML a list of {id, config, weight} (weight = share of its rows, "
            "drawn with replacement above 1); on the command line entries corpus[:config[:weight]]"
        },
    )
    text_column: str = field(default="text", metadata={"help": "column holding the user texts"})
    truncation_side: str = field(
        default="left", metadata={"help": "left keeps the most recent events (tokens); right keeps the oldest"}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "use only the first N rows (smoke runs)"})
    merge_lora: bool = field(default=False, metadata={"help": "merge the LoRA adapter into the base at save"})


MIXTURE_KEYS = ("id", "config", "weight")


def parse_mixture_entry(entry: str | dict[str, Any], default_config: str) -> tuple[str, str, float]:
    """``{id, config, weight}`` (alignment-handbook's dataset mixtures) or the shorthand
    ``'path_or_id[:config[:weight]]'`` -> (path, config, weight)."""
    if isinstance(entry, dict):
        unknown = sorted(set(entry) - set(MIXTURE_KEYS))
        if unknown or "id" not in entry:
            raise Llm4esError(
                f"a mixture entry has the keys {list(MIXTURE_KEYS)} (id required), got {entry}", key="mixture"
            )
        path, config, raw_weight = (
            str(entry["id"]),
            str(entry.get("config") or default_config),
            entry.get("weight", 1.0),
        )
    else:
        parts = str(entry).split(":")
        path = parts[0]
        config = parts[1] if len(parts) > 1 and parts[1] else default_config
        raw_weight = parts[2] if len(parts) > 2 else 1.0
    try:
        weight = float(raw_weight)
    except (TypeError, ValueError) as err:
        raise Llm4esError(f"mixture weight is not a number in {entry!r}", key="mixture") from err
    if weight <= 0:
        raise Llm4esError(f"mixture weight must be > 0 in {entry!r}", key="mixture")
    return path, config, weight


def _load_split(path: str, config: str, split: str) -> datasets.Dataset:
    splits = load_corpus_config(path, config)
    if split not in splits:
        raise Llm4esError(
            f"corpus {path!r} config {config!r} has no split {split!r}; it has {list(splits)}", key="corpus"
        )
    return splits[split]


def load_training_texts(args: SFTScriptArguments, *, seed: int, split: str = "train") -> datasets.Dataset:
    """The training rows: one corpus, or a weighted mixture of corpora (the paper's cross-dataset setup)."""
    entries = args.mixture or ([args.corpus] if args.corpus else [])
    if not entries:
        raise Llm4esError("give a corpus (--corpus DIR_OR_ID) or a mixture (--mixture a:cfg:w b:cfg:w)", key="corpus")
    parts = []
    rng = np.random.default_rng(seed)
    for entry in entries:
        path, config, weight = parse_mixture_entry(entry, args.corpus_config)
        ds = _load_split(path, config, split)
        if args.text_column not in ds.column_names:
            raise Llm4esError(
                f"corpus has no {args.text_column!r} column; it has {ds.column_names}",
                file=path,
                column=args.text_column,
            )
        ds = ds.select_columns([args.text_column])
        if args.text_column != "text":
            ds = ds.rename_column(args.text_column, "text")
        if weight != 1.0:
            n = max(1, int(round(weight * len(ds))))
            ds = ds.select(rng.choice(len(ds), size=n, replace=n > len(ds)))
        parts.append(ds.add_column("corpus", [path] * len(ds)))
    texts = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if len(parts) > 1:
        texts = texts.shuffle(seed=seed)
    if args.max_train_samples is not None:
        texts = texts.select(range(min(args.max_train_samples, len(texts))))
    empty = [i for i, text in enumerate(texts["text"]) if not text or not text.strip()]
    if empty:
        raise Llm4esError(
            f"{len(empty)} empty text(s), first at row {empty[0]}; rebuild the corpus", column="text", row=empty[0]
        )
    return texts


@dataclass
class TokenizationReport:
    """How many users' texts were longer than max_length and lost their oldest (or newest) tokens."""

    users: int
    truncated_users: int
    tokens: int
    max_length: int
    truncation_side: str

    def line(self) -> str:
        return (
            f"{self.users:,} training texts, {self.tokens:,} tokens; {self.truncated_users:,} longer than "
            f"max_length={self.max_length} were cut on the {self.truncation_side} "
            f"({'oldest' if self.truncation_side == 'left' else 'newest'} tokens dropped)"
        )


def leading_special_ids(tokenizer: Any) -> list[int]:
    """The ids the tokenizer puts before every text (``<bos>`` for Gemma and Llama, none for SmolLM2),
    found by tokenizing a probe: ``add_bos_token`` is not reliable (Gemma-3's tokenizer converted
    from GGUF reports False and still prepends ``<bos>`` through its post-processor)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    start = next((i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain), 0)
    return list(full[:start])


def tokenize_for_lm(
    texts: datasets.Dataset, tokenizer: Any, *, max_length: int, truncation_side: str = "left"
) -> tuple[datasets.Dataset, TokenizationReport]:
    """Tokenize, append EOS, cut to max_length on the chosen side; returns `input_ids` rows."""
    if truncation_side not in ("left", "right"):
        raise Llm4esError(f"truncation_side must be left or right, got {truncation_side!r}", key="truncation_side")
    if tokenizer.eos_token_id is None:
        raise Llm4esError("the tokenizer has no EOS token; set one (SFTConfig.eos_token)", key="eos_token")
    eos = tokenizer.eos_token_id
    bos = leading_special_ids(tokenizer)

    def encode(batch: dict) -> dict:
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        out, cut = [], []
        for row in ids:
            full = bos + row + [eos]
            cut.append(len(full) > max_length)
            if len(full) > max_length:
                full = (
                    bos + row[-(max_length - len(bos) - 1) :] + [eos]
                    if truncation_side == "left"
                    else (full[: max_length - 1] + [eos])
                )
            out.append(full)
        return {"input_ids": out, "truncated": cut}

    tokenized = texts.map(encode, batched=True, remove_columns=texts.column_names, desc="Tokenizing")
    lengths = [len(ids) for ids in tokenized["input_ids"]]
    too_short = [i for i, n in enumerate(lengths) if n < 2]
    if too_short:
        raise Llm4esError(
            f"{len(too_short)} text(s) give fewer than 2 tokens: no next-token loss", row=too_short[0], column="text"
        )
    report = TokenizationReport(
        users=len(tokenized),
        truncated_users=int(sum(tokenized["truncated"])),
        tokens=int(sum(lengths)),
        max_length=max_length,
        truncation_side=truncation_side,
    )
    return tokenized.remove_columns("truncated"), report


@dataclass
class LLM4ESSFTConfig(SFTConfig):
    """TRL's SFTConfig where ``bf16`` left unset means "automatic", also on CPU.

    TRL defaults bf16 to True, which transformers rejects on a CPU unless ``use_cpu`` is set.
    The automatic choice is ``hardware.training_precision``: bf16 where the hardware computes it
    natively (on CPUs with AVX512-BF16/AMX bf16 autocast trains about 2x faster than fp32 with the
    loss on track, benchmarks/train.py), fp32 elsewhere.
    """

    fused_lm_head: bool | None = field(
        default=None,
        metadata={
            "help": "score the loss with TRL's chunked LM head (logs entropy and token accuracy). Unset: on with a "
            "GPU; off on CPU, where it recomputes the head in fp32 and a training step runs 1.2-1.4x slower "
            "(benchmarks/train.py): there the loss is ours, chunked too, with the model's own numbers "
            "(llm4es_hf.training.fast_step)"
        },
    )

    def __post_init__(self) -> None:
        flags = training_precision()
        if not torch.cuda.is_available():
            self.use_cpu = True
        if self.fused_lm_head is None:
            self.fused_lm_head = not self.use_cpu  # use_cpu is set above whenever there is no GPU
        if self.bf16 is None and not self.fp16:
            self.bf16 = flags["bf16"]
            self.fp16 = flags["fp16"]
        super().__post_init__()


class LLM4ESSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer, with a cheaper loss where the fused LM head is off (the CPU default).

    TRL 1.x always scores the loss through its chunked LM head. Without Triton (on CPU) that head
    runs as torch ops, recomputes every vocabulary tile in the backward and does its gradient GEMMs
    in fp32: a SmolLM2-135M step (whose head is a third of its FLOPs) took 1.4x as long as with the
    model's plain bf16 forward. ``fused_lm_head=False`` scores the model's own loss (same numbers,
    same token-weighted gradient accumulation) without its full logits, with
    ``fast_step.linear_cross_entropy`` where the output head is a plain linear layer and through
    the model's own loss elsewhere; neither logs entropy or token accuracy. Under autocast the LoRA
    adapters' inputs skip PEFT's round trip to fp32 (``fast_step.skip_adapter_input_cast``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        unwrapped = self.accelerator.unwrap_model(self.model)
        self.loss_head = None if self.args.fused_lm_head else chunked_loss_head(unwrapped)
        if self.args.bf16 or self.args.fp16:  # trained under autocast
            skip_adapter_input_cast(unwrapped)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
        if getattr(self.args, "fused_lm_head", True):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs["use_cache"] = False
        if self.loss_head is None or return_outputs or "labels" not in inputs:
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        no_logits = NO_LOGITS.to(labels.device)
        outputs = model(**inputs, logits_to_keep=no_logits, output_hidden_states=True)
        with self.accelerator.autocast():  # accelerate autocasts the model's forward only; the loss follows it
            loss = linear_cross_entropy(outputs.hidden_states[-1], self.loss_head.weight, labels, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss: the count spans every process
        return loss


class ThroughputCallback(TrainerCallback):
    """Prints a one-line summary at the end (transformers already logs loss and tokens/s per log step).

    ``tokens_per_epoch``: for trainers that do not count input tokens (sentence-transformers'),
    the tokens seen are this times the epochs run."""

    def __init__(self, tokens_per_epoch: int | None = None) -> None:
        self.started = time.perf_counter()
        self.tokens_per_epoch = tokens_per_epoch
        self.summary: dict[str, Any] = {}

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
        self.started = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
        elapsed = time.perf_counter() - self.started
        losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
        epochs = state.epoch or 0.0
        tokens = state.num_input_tokens_seen if self.tokens_per_epoch is None else self.tokens_per_epoch * epochs
        self.summary = {
            "steps": state.global_step,
            "epochs": round(epochs, 2),
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None,
            "tokens": int(tokens),
            "seconds": round(elapsed, 1),
            "tokens_per_second": round(tokens / max(elapsed, 1e-9), 1),
        }
        if state.is_world_process_zero:
            s = self.summary
            print(
                f"trained {s['steps']} steps ({s['epochs']} epochs) in {s['seconds']} s: loss "
                f"{s['first_loss']} -> {s['final_loss']}, {s['tokens']:,} tokens, {s['tokens_per_second']:,} tokens/s"
            )


def check_lora_targets(model: torch.nn.Module, target_modules: Any) -> None:
    """Fail before training when LoRA target modules do not exist in the model."""
    if target_modules in (None, "all-linear") or target_modules == ["all-linear"]:
        return
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in target_modules if t not in names]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise Llm4esError(
            f"LoRA target modules {missing} are not in this model; its linear layers: {linear}",
            key="lora_target_modules",
        )


def run_sft(
    script_args: SFTScriptArguments,
    training_args: Any,
    model_args: Any,
    callbacks: Sequence[TrainerCallback] = (),
) -> dict[str, Any]:
    """Load data and model, validate everything, train, save with its card and, from a local
    corpus, the schema and serialization settings (so the model embeds raw events as its corpus
    was made). Publishing is the caller's (recipes/sft.py): the Trainer's own pushes are off.
    ``callbacks`` join the Trainer's (a benchmark's step timer)."""
    from transformers.trainer_utils import get_last_checkpoint
    from trl import get_peft_config

    state = process_state()
    model_name = model_args.model_name_or_path or "smollm2-135m"
    if training_args.max_length is None:
        raise Llm4esError("set max_length explicitly (tokens per user, EOS included)", key="max_length")
    # "non_padding": tokens/s counts the users' tokens, not pads (True means "all" in transformers 5)
    training_args.include_num_input_tokens_seen = "non_padding"

    texts = load_training_texts(script_args, seed=training_args.seed)
    dtype = getattr(torch, model_args.dtype) if model_args.dtype not in (None, "auto") else torch.float32
    tokenizer, model, resolved = load_model(
        model_name, dtype=dtype, key="model_name_or_path", attn_implementation=model_args.attn_implementation
    )
    peft_config = get_peft_config(model_args)
    if peft_config is not None:
        check_lora_targets(model, peft_config.target_modules)
    with state.main_process_first():
        train_dataset, report = tokenize_for_lm(
            texts, tokenizer, max_length=training_args.max_length, truncation_side=script_args.truncation_side
        )
    if state.is_main_process:
        print(report.line())
        world = state.num_processes
        global_batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * world
        print(
            f"global batch size: {global_batch} = {training_args.per_device_train_batch_size} per device x "
            f"{training_args.gradient_accumulation_steps} accumulation x {world} process(es); "
            f"precision: {'bf16' if training_args.bf16 else 'fp16' if training_args.fp16 else 'fp32'}"
        )

    # The caller pushes once, at the end, to main plus a run branch (hub.push_model); the Trainer's
    # own per-save pushes would target a revision that does not exist yet and upload checkpoints.
    training_args.push_to_hub = False
    throughput = ThroughputCallback()
    trainer = LLM4ESSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[throughput, *callbacks],
    )
    resume = training_args.resume_from_checkpoint
    if resume in (True, "true", "True", "auto"):
        resume = get_last_checkpoint(training_args.output_dir)
    trainer.train(resume_from_checkpoint=resume)

    output_dir = Path(training_args.output_dir)
    save_trained_model(trainer, output_dir, merge_lora=script_args.merge_lora and peft_config is not None)
    info = {
        "base_model": model_name,
        "base_model_path": resolved,
        "corpora": [parse_mixture_entry(e, script_args.corpus_config)[0] for e in script_args.mixture]
        or [script_args.corpus],
        "corpus_config": script_args.corpus_config,
        "tokenization": asdict(report),
        "training": throughput.summary,
        "loss_curve": [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e],
        "hyperparameters": _hyperparameters(training_args, model_args, script_args),
        "precision": {"no": "fp32"}.get(
            str(trainer.accelerator.mixed_precision), str(trainer.accelerator.mixed_precision)
        ),
        "world_size": state.num_processes,
    }
    if state.is_main_process:
        if script_args.corpus and not script_args.mixture:
            info["serialization_saved"] = write_serialization_settings(output_dir, script_args.corpus)
        (output_dir / "llm4es_training.json").write_text(json.dumps(info, indent=2, default=str))
        write_model_card(output_dir, info)
    state.wait_for_everyone()
    return info


def save_trained_model(trainer: Any, output_dir: Path, *, merge_lora: bool) -> None:
    """Save weights and tokenizer so AutoModelForCausalLM (and AutoModel) load the folder."""
    trainer.save_model(str(output_dir))
    if merge_lora and trainer.accelerator.is_main_process:
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        merged.save_pretrained(str(output_dir))
        for adapter_file in ("adapter_model.safetensors", "adapter_config.json"):
            (output_dir / adapter_file).unlink(missing_ok=True)
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(str(output_dir))


TRAINING_KEYS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "max_grad_norm",
    "bf16",
    "fp16",
    "activation_checkpointing",
    "seed",
)


def training_hyperparameters(training_args: Any, model_args: Any, **extra: Any) -> dict[str, Any]:
    """The hyperparameters a model card and llm4es_training.json report, for any of our trainers:
    the optimizer's, LoRA's when used, and the objective's own (``extra``)."""
    out = {k: getattr(training_args, k, None) for k in TRAINING_KEYS}
    out.update(use_peft=model_args.use_peft, **extra)
    if model_args.use_peft:
        out.update(lora_r=model_args.lora_r, lora_alpha=model_args.lora_alpha)
        out.update(lora_target_modules=model_args.lora_target_modules)
    return {k: _plain(v) for k, v in out.items()}


def _hyperparameters(training_args: Any, model_args: Any, script_args: SFTScriptArguments) -> dict[str, Any]:
    sft = {k: getattr(training_args, k, None) for k in ("max_length", "packing", "padding_free", "fused_lm_head")}
    merge = {"merge_lora": script_args.merge_lora} if model_args.use_peft else {}
    sft.update(truncation_side=script_args.truncation_side, **merge)
    return training_hyperparameters(training_args, model_args, **sft)


def _plain(value: Any) -> Any:
    """Enums by value, NaN as None: what a card or JSON should show."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
