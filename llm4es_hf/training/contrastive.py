"""Stage 3b: contrastive fine-tuning on users, CoLES-style on text (the body of recipes/contrastive.py).

Two random contiguous slices of one user's events, each serialized with the corpus' schema and
format, are a positive pair; the other users of the batch are the negatives
(sentence-transformers' MultipleNegativesRankingLoss, symmetric, or its cached variant that
holds large batches in little memory). The model is the LLM4ES SentenceTransformer that
`llm4es embed` computes (mean over tokens of the mean of hidden_states[k:]), with the layer
weights frozen, so the trained vectors are exactly the ones `llm4es embed` returns afterwards.
It starts from a base model or from an NTP-fine-tuned folder, full or LoRA (TRL ModelConfig).

Slices are drawn per round: each round holds every user once, with two fresh slices, and a
batch never mixes rounds, so no user meets itself as a negative. Every user of the corpus'
splits takes part (no label is read: this is self-supervised, as CoLES).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch
from sentence_transformers import SentenceTransformerTrainingArguments
from sentence_transformers.base.sampler import DefaultBatchSampler

from ..assets import resolve_model
from ..cards import write_model_card
from ..embedding import default_layer_start, export_sentence_transformer
from ..errors import Llm4esError
from ..hardware import process_state, training_precision
from ..models import load_tokenizer, quiet_transformers
from ..schema import load_schema
from ..serialize import Serializer
from .sft import ThroughputCallback, check_lora_targets, training_hyperparameters

LOSSES = ("mnrl", "cached_mnrl")


@dataclass
class ContrastiveScriptArguments:
    """Our data and objective options for recipes/contrastive.py (the training arguments and
    TRL's ModelConfig hold the rest)."""

    corpus: str | None = field(default=None, metadata={"help": "corpus folder (from `llm4es corpus`): users/ + schema"})
    corpus_recipe: str | None = field(
        default=None, metadata={"help": "build `corpus` from this corpus recipe first when the folder is missing"}
    )
    splits: list[str] = field(
        default_factory=lambda: ["train", "test"],
        metadata={"help": "corpus splits whose users are trained on (no label is read)"},
    )
    rounds: int = field(default=1, metadata={"help": "pairs per user per epoch (each round: fresh slices)"})
    min_events: int = field(default=10, metadata={"help": "shortest slice, in events"})
    max_events: int = field(default=30, metadata={"help": "longest slice, in events"})
    max_slice_tokens: int = field(
        default=128, metadata={"help": "token cap of a serialized slice (its most recent events that fit are kept)"}
    )
    loss: str = field(default="mnrl", metadata={"help": "mnrl (MultipleNegativesRankingLoss) or cached_mnrl"})
    scale: float = field(default=20.0, metadata={"help": "inverse temperature of the cosine similarities"})
    symmetric: bool = field(default=True, metadata={"help": "also rank the first slices given the second ones"})
    mini_batch_size: int = field(default=8, metadata={"help": "cached_mnrl: texts per forward/backward chunk"})
    layer_start: int | None = field(default=None, metadata={"help": "k of hidden_states[k:] (default: L/3)"})
    embed_max_length: int = field(default=2048, metadata={"help": "max_length saved for `llm4es embed` and ST"})
    merge_lora: bool = field(default=True, metadata={"help": "merge the LoRA adapter into the base at save"})
    max_users: int | None = field(default=None, metadata={"help": "use only the first N users (smoke runs)"})


@dataclass
class LLM4ESContrastiveConfig(SentenceTransformerTrainingArguments):
    """sentence-transformers' training arguments where ``bf16`` left unset means automatic
    (bf16 where the hardware has it fast, fp32 on other CPUs), as in LLM4ESSFTConfig."""

    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision; unset: automatic"})

    def __post_init__(self) -> None:
        flags = training_precision()
        if not torch.cuda.is_available():
            self.use_cpu = True
        if self.bf16 is None:
            self.bf16 = flags["bf16"] and not self.fp16
            self.fp16 = self.fp16 or flags["fp16"]
        super().__post_init__()


def load_users(corpus: str, splits: list[str]) -> tuple[datasets.Dataset, Any, str]:
    """All users of the chosen splits, the corpus' EventSchema and its text format."""
    folder = Path(corpus)
    if not (folder / "users" / "dataset_dict.json").exists() or not (folder / "schema.yaml").exists():
        raise Llm4esError("not a corpus folder (expected users/ and schema.yaml from `llm4es corpus`)", file=folder)
    users, schema = datasets.load_from_disk(str(folder / "users")), load_schema(folder / "schema.yaml")
    missing = [s for s in splits if s not in users]
    if missing:
        raise Llm4esError(f"corpus has no split {missing[0]!r}; it has {list(users)}", file=folder, key="splits")
    summary = folder / "corpus_summary.json"
    text_format = json.loads(summary.read_text())["config"].get("format", "llm4es") if summary.exists() else "llm4es"
    return datasets.concatenate_datasets([users[s] for s in splits]), schema, text_format


def event_counts(table: pa.Table, column: str) -> np.ndarray:
    """Events per user: the lengths of one list column."""
    return np.diff(pa.chunked_array(table.column(column)).combine_chunks().offsets.to_numpy()).astype(np.int64)


def check_inputs(n_events: np.ndarray, user_ids: list[str], args: ContrastiveScriptArguments, batch_size: int) -> None:
    """Bad input fails here, before any model is loaded: too few users for a batch, slices
    longer than a user's history, impossible slice bounds."""
    if args.loss not in LOSSES:
        raise Llm4esError(f"loss must be one of {list(LOSSES)}, got {args.loss!r}", key="loss")
    if args.min_events < 1 or args.max_events < args.min_events:
        raise Llm4esError(
            f"need 1 <= min_events <= max_events, got {args.min_events} and {args.max_events}", key="min_events"
        )
    if args.rounds < 1:
        raise Llm4esError(f"rounds must be >= 1, got {args.rounds}", key="rounds")
    if batch_size < 2:
        raise Llm4esError(
            f"a contrastive batch needs at least 2 users (the others are the negatives), got {batch_size}",
            key="per_device_train_batch_size",
        )
    if len(n_events) < batch_size:
        raise Llm4esError(
            f"{len(n_events)} user(s) cannot fill a contrastive batch of {batch_size} distinct users; "
            "lower per_device_train_batch_size (x processes) or add users",
            key="per_device_train_batch_size",
        )
    short = np.flatnonzero(n_events < args.min_events)
    if len(short):
        first = int(short[0])
        raise Llm4esError(
            f"{len(short)} user(s) have fewer events than min_events={args.min_events} (user {user_ids[first]!r} has "
            f"{int(n_events[first])}, the shortest {int(n_events.min())}); lower min_events or drop those users",
            row=first,
            key="min_events",
        )


def slice_users(table: pa.Table, columns: list[str], lengths: np.ndarray, starts: np.ndarray) -> pa.Table:
    """Row i of the result holds events ``starts[i] : starts[i] + lengths[i]`` of user ``i % n_users``
    in every list column (vectorized: one Arrow ``take`` per column)."""
    n_users = table.num_rows
    user = np.arange(len(lengths)) % n_users
    out = {}
    for name in columns:
        column = pa.chunked_array(table.column(name)).combine_chunks()
        offsets = column.offsets.to_numpy().astype(np.int64)
        values = column.flatten()
        base = offsets[:-1] - offsets[0]
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        index = np.repeat(base[user] + starts, lengths) + within
        new_offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        out[name] = pa.ListArray.from_arrays(new_offsets, values.take(pa.array(index)))
    return pa.table(out)


def sample_views(
    n_events: np.ndarray, *, rounds: int, views: int, min_events: int, max_events: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, starts) of ``rounds * views`` random contiguous slices per user, ordered
    round-major then view then user: row ``(r * views + v) * n_users + u``."""
    rng = np.random.default_rng(seed)
    reps = rounds * views
    n = np.tile(n_events, reps)
    lengths = rng.integers(min_events, np.minimum(max_events, n) + 1)
    starts = rng.integers(0, n - lengths + 1)
    return lengths.astype(np.int64), starts.astype(np.int64)


def build_pairs(
    users: datasets.Dataset,
    schema: Any,
    text_format: str,
    tokenizer: Any,
    args: ContrastiveScriptArguments,
    *,
    seed: int,
) -> datasets.Dataset:
    """``anchor`` / ``positive`` texts: two slices of the same user per row, ``rounds`` rows per user,
    round-major (rows ``r * n_users ... (r + 1) * n_users - 1`` are round r, every user once)."""
    serializer = Serializer(schema, text_format, max_events=None, max_tokens=args.max_slice_tokens, tokenizer=tokenizer)
    columns = [spec.name for spec in serializer.fields]
    table = users.select_columns(columns).with_format("arrow")[:]
    n_events = event_counts(table, columns[0])
    lengths, starts = sample_views(
        n_events, rounds=args.rounds, views=2, min_events=args.min_events, max_events=args.max_events, seed=seed
    )
    sliced = datasets.Dataset(slice_users(table, columns, lengths, starts))
    texts = serializer(sliced, desc="Serializing slices")["text"]
    n = len(n_events)
    anchors, positives = [], []
    for r in range(args.rounds):
        anchors += texts[(2 * r) * n : (2 * r + 1) * n]
        positives += texts[(2 * r + 1) * n : (2 * r + 2) * n]
    return datasets.Dataset.from_dict({"anchor": anchors, "positive": positives})


class RoundBatchSampler(DefaultBatchSampler):
    """Shuffled batches that never leave a round of ``users_per_round`` rows, so a batch holds
    each user at most once (no user is its own in-batch negative). A last batch of one row is
    always dropped (it has no negative)."""

    users_per_round: int = 0

    def __init__(self, dataset: datasets.Dataset, *args: Any, **kwargs: Any) -> None:
        super().__init__(dataset, *args, **kwargs)
        self.dataset = dataset

    def __iter__(self):  # noqa: ANN204
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        n = self.users_per_round
        batches = []
        for start in range(0, len(self.dataset), n):
            order = (start + torch.randperm(min(n, len(self.dataset) - start), generator=generator)).tolist()
            for i in range(0, len(order), self.batch_size):
                batch = order[i : i + self.batch_size]
                if len(batch) >= 2 and not (self.drop_last and len(batch) < self.batch_size):
                    batches.append(batch)
        for i in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[i]

    def __len__(self) -> int:
        n, total = self.users_per_round, 0
        for start in range(0, len(self.dataset), n):
            size = min(n, len(self.dataset) - start)
            full, rest = divmod(size, self.batch_size)
            total += full + (1 if rest >= 2 and not self.drop_last else 0)
        return total


def round_batch_sampler(users_per_round: int) -> type[RoundBatchSampler]:
    """A RoundBatchSampler class bound to the round size (sentence-transformers takes a class)."""
    return type("RoundBatchSampler", (RoundBatchSampler,), {"users_per_round": users_per_round})


def llm4es_sentence_transformer(
    model_path: str, *, layer_start: int | None, max_length: int, device: str | None = None
) -> Any:
    """The LLM4ES embedding as a trainable SentenceTransformer: Transformer (all hidden states) ->
    WeightedLayerPooling over hidden_states[k:] with equal, frozen weights -> mean pooling."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling, WeightedLayerPooling

    with quiet_transformers():
        transformer = Transformer(
            model_path,
            config_kwargs={"output_hidden_states": True},
            model_kwargs={"dtype": torch.float32},
            processor_kwargs={"truncation_side": "left", "padding_side": "right", "model_max_length": max_length},
            max_seq_length=max_length,
        )
    tokenizer = transformer.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = transformer.auto_model.config
    num_layers, hidden = config.num_hidden_layers, config.hidden_size
    start = default_layer_start(num_layers) if layer_start is None else layer_start
    if not 0 <= start <= num_layers:
        raise Llm4esError(f"layer_start must be in [0, {num_layers}], got {start}", key="layer_start")
    layers = WeightedLayerPooling(hidden, num_hidden_layers=num_layers, layer_start=start)
    layers.layer_weights.requires_grad_(False)  # the equal weights of `llm4es embed`, not learned
    pooling = Pooling(hidden, pooling_mode="mean")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return SentenceTransformer(modules=[transformer, layers, pooling], device=device)


def run_contrastive(script_args: ContrastiveScriptArguments, training_args: Any, model_args: Any) -> dict[str, Any]:
    """Validate, build the pairs, train, save (AutoModelForCausalLM + SentenceTransformer + card)."""
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )
    from trl import get_peft_config

    state = process_state()
    if not script_args.corpus:
        raise Llm4esError("give a corpus folder (--corpus DIR)", key="corpus")
    users, schema, text_format = load_users(script_args.corpus, script_args.splits)
    if script_args.max_users is not None:
        users = users.select(range(min(script_args.max_users, len(users))))
    first_list = next((f.name for f in schema.fields if f.name in users.column_names), None)
    if first_list is None:
        raise Llm4esError("the corpus' users have none of the schema's event columns", file=script_args.corpus)
    n_events = event_counts(users.select_columns([first_list]).with_format("arrow")[:], first_list)
    batch_size = training_args.per_device_train_batch_size * state.num_processes
    check_inputs(n_events, [str(u) for u in users["user_id"]], script_args, batch_size)

    model_name = model_args.model_name_or_path or "smollm2-135m"
    resolved = resolve_model(model_name)
    tokenizer = load_tokenizer(resolved)
    with state.main_process_first():
        pairs = build_pairs(users, schema, text_format, tokenizer, script_args, seed=training_args.seed)
    model = llm4es_sentence_transformer(
        resolved, layer_start=script_args.layer_start, max_length=script_args.max_slice_tokens
    )
    peft_config = get_peft_config(model_args)
    if peft_config is not None:
        from peft import get_peft_model

        check_lora_targets(model[0].auto_model, peft_config.target_modules)
        peft_config.task_type = "FEATURE_EXTRACTION"  # TRL's CAUSAL_LM expects an LM head; the body has none
        model[0].model = get_peft_model(model[0].auto_model, peft_config)
    if script_args.loss == "cached_mnrl":
        loss = CachedMultipleNegativesRankingLoss(
            model,
            scale=script_args.scale,
            mini_batch_size=script_args.mini_batch_size,
            directions=("query_to_doc", "doc_to_query") if script_args.symmetric else ("query_to_doc",),
        )
    else:
        loss = MultipleNegativesRankingLoss(
            model,
            scale=script_args.scale,
            directions=("query_to_doc", "doc_to_query") if script_args.symmetric else ("query_to_doc",),
        )
    training_args.batch_sampler = round_batch_sampler(len(users))
    # sentence-transformers' trainer does not count input tokens: the slices' tokens, once, for the
    # summary line below and the one ThroughputCallback prints at the end
    tokens = [len(ids) for ids in tokenizer(list(pairs["anchor"]) + list(pairs["positive"]))["input_ids"]]
    if state.is_main_process:
        print(
            f"{len(users):,} users x {script_args.rounds} round(s) = {len(pairs):,} pairs of slices of "
            f"{script_args.min_events}-{script_args.max_events} events (<= {script_args.max_slice_tokens} tokens, "
            f"mean {np.mean(tokens):.0f}); {batch_size} users per batch; loss {script_args.loss}, "
            f"scale {script_args.scale}; precision {'bf16' if training_args.bf16 else 'fp32'}; "
            f"{'LoRA' if peft_config is not None else 'full'} fine-tuning"
        )
    # The caller publishes once, at the end (cli/contrastive.py); the Trainer's own push would not
    # carry the card and the serialization settings.
    training_args.push_to_hub = False
    throughput = ThroughputCallback(tokens_per_epoch=sum(tokens))
    trainer = SentenceTransformerTrainer(
        model=model, args=training_args, train_dataset=pairs, loss=loss, callbacks=[throughput]
    )
    trainer.train()

    output_dir = Path(training_args.output_dir)
    info = {
        "objective": "contrastive (CoLES-style: two random slices of a user's events are positives, the other "
        f"users of the batch negatives; {'Cached' if script_args.loss == 'cached_mnrl' else ''}"
        "MultipleNegativesRankingLoss)",
        "base_model": model_name,
        "base_model_path": resolved,
        "corpora": [script_args.corpus],
        "corpus_config": "users (" + "+".join(script_args.splits) + ")",
        "contrastive": {
            "users": len(users),
            "pairs": len(pairs),
            "rounds": script_args.rounds,
            "slice_events": [script_args.min_events, script_args.max_events],
            "max_slice_tokens": script_args.max_slice_tokens,
            "loss": script_args.loss,
            "scale": script_args.scale,
            "symmetric": script_args.symmetric,
        },
        "training": throughput.summary,
        "loss_curve": [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e],
        "hyperparameters": _hyperparameters(training_args, model_args, script_args),
        "world_size": state.num_processes,
    }
    if state.is_main_process:
        save_contrastive_model(model, resolved, output_dir, script_args, merge_lora=peft_config is not None)
        (output_dir / "llm4es_training.json").write_text(json.dumps(info, indent=2, default=str))
        write_model_card(output_dir, info)
    state.wait_for_everyone()
    return info


def save_contrastive_model(
    model: Any, base_path: str, output_dir: Path, script_args: ContrastiveScriptArguments, *, merge_lora: bool
) -> None:
    """Save the trained body inside the base causal LM (so AutoModelForCausalLM, AutoModel, a
    later SFT stage and `llm4es embed` all load the folder), then the SentenceTransformer modules."""
    from transformers import AutoModelForCausalLM

    body = model[0].auto_model
    if merge_lora:
        body = body.merge_and_unload()
    with quiet_transformers():
        causal = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    inner = causal.get_decoder() if hasattr(causal, "get_decoder") else causal.model
    missing, unexpected = inner.load_state_dict(body.state_dict(), strict=False)
    if missing or unexpected:
        raise Llm4esError(
            f"trained weights do not fit the base model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    causal.save_pretrained(str(output_dir))
    tokenizer = model[0].tokenizer
    tokenizer.save_pretrained(str(output_dir))
    for name in ("checkpoint-*",):
        for stale in output_dir.glob(name):
            if stale.is_dir() and not any(stale.iterdir()):
                shutil.rmtree(stale)
    export_sentence_transformer(
        output_dir, layer_start=model[1].layer_start, pooling="mean", max_length=script_args.embed_max_length
    )


def _hyperparameters(training_args: Any, model_args: Any, script_args: ContrastiveScriptArguments) -> dict[str, Any]:
    return training_hyperparameters(
        training_args,
        model_args,
        loss=script_args.loss,
        scale=script_args.scale,
        slice_events=f"{script_args.min_events}-{script_args.max_events}",
        rounds=script_args.rounds,
        max_slice_tokens=script_args.max_slice_tokens,
    )
