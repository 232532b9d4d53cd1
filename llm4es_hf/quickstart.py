"""The main job, offline, on a laptop CPU: on the embedded defaults, or on any source of events.

With no arguments: bundled MovieLens-100K -> serialize (compact layout: "title, stars" per rating) -> enrich a
small sample with SmolLM2 -> fine-tune SmolLM2 with LoRA on each viewer's latest ``max_tokens``
tokens (recipes/movielens/sft_lora.yaml, CPU-sized) -> export as SentenceTransformer (the
forward stopping at ``layer_end``) -> embed every viewer's latest ``embed_tokens`` tokens with
the fine-tuned model (and the frozen one with ``frozen_baseline``) -> evaluate the target:
the aggregates and the bag of categories alone and with LLM4ES added -> model card with the
results -> index the users for search -> print the table.

``--source csv|parquet|rosbank|gender|age|synthetic`` (with ``--input``, ``--schema``,
``--labels``, ``--target``) runs the same stages on those events: the target is checked against the
users before any training, budgets shrink to the data (at most ``max_epochs`` passes over the
train users), and an estimate is printed before the long stages. Every output lands in one run
folder that ``llm4es search``, the Space (``--run FOLDER``) and ``UserEncoder.from_pretrained``
take as they are.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import datasets
import polars as pl
import torch
from rich.console import Console
from rich.table import Table
from trl import ModelConfig

from .artifacts import embedding_settings
from .assets import recipes_dir, resolve_model
from .cards import write_model_card
from .config import load_recipe
from .corpus import CorpusConfig, build_corpus
from .embedding import (
    Embedder,
    early_layer_end,
    embed_corpus,
    export_sentence_transformer,
    resolve_embedding_settings,
)
from .errors import Llm4esError
from .evaluation import EvaluationConfig, EvaluationReport, run_evaluation
from .hardware import pick_dtype
from .metrics import PairedDifference
from .models import load_model
from .schema import EventSchema
from .search import build_index_from_files
from .sources import SourceConfig, check_labels, event_user_ids, source_schema, user_rows
from .training.sft import LLM4ESSFTConfig, SFTScriptArguments, run_sft

console = Console(width=max(Console().width, 132))  # the results table is 130 characters wide


FINETUNED = "llm4es-finetuned"


# What a source's run is called in the table and the card when it is not its schema's name.
DATASET_TITLES = {"movielens": "MovieLens-100K"}
# The quickstart's layout of a source when --schema is not given (else the source's built-in schema).
DEFAULT_SCHEMAS = {"movielens": "movielens_compact"}
FOLDS = 5
# The downstream model each classical set is read with when LLM4ES is added to it: its strongest here.
ADDED_TO = {"aggregates": "lightgbm", "bag": "logreg"}
# A LoRA step's time per token over a frozen forward+backward's, with model load and export
# (bf16 AMX: 543 against 607 tokens/s, 114 s for the stage against 96 s of steps).
LORA_STEP_COST = 1.2


@dataclass
class QuickstartConfig(SourceConfig):
    """The quickstart's budget, sized for 20 minutes on a 2-core CPU on MovieLens (docs/cli.md gives the
    stage times); the source options are those of `llm4es corpus`."""

    output_dir: str = field(default="outputs/quickstart", metadata={"help": "the run folder every output goes in"})
    model: str = field(
        default="smollm2-135m",
        metadata={"help": "base model: bundled name (smollm2-135m, gemma3-270m), folder or Hub id"},
    )
    generator: str = field(
        default="smollm2-135m",
        metadata={"help": "enrichment LLM: an instruct model with a chat template (gemma3-270m is a pretrained one)"},
    )
    # MovieLens: "title, stars" per rating, 2.5x more history per token than date/title/genres/rating, and
    # frozen SmolLM2 gender ROC-AUC 0.73 instead of 0.60 at 512 tokens (benchmarks/quality_movielens.py)
    schema: str | None = field(
        default=None,
        metadata={
            "help": "EventSchema YAML or built-in name (csv/parquet: required, `llm4es schema infer` writes one); "
            "default: movielens_compact for movielens, else the source's built-in schema"
        },
    )
    max_tokens: int = field(default=256, metadata={"help": "tokens per user (most recent events) in training"})
    # 768: what fits the 20 minutes on a 2-core CPU beside training (docs/cli.md#quickstart); whole histories
    # (2048) beat the aggregates significantly, 256 tokens did not (benchmarks/README.md)
    embed_tokens: int = field(
        default=768,
        metadata={"help": "tokens per user (most recent events) at embedding time: history is what moves quality"},
    )
    layer_end: int | None = field(
        default=None,
        metadata={
            "help": "the embedding forward stops at this layer and averages layers L/3..layer_end "
            "(default: 2L/3, 20 of SmolLM2's 30; L: the whole forward)"
        },
    )
    # LoRA r 16 at lr 1e-3, 30 steps of 8 viewers: the best CPU recipe of benchmarks/quality_movielens.py
    # at 256 tokens (gender out-of-fold +0.032 over the frozen model, p 0.02; full fine-tuning +0.012, p 0.34)
    recipe: str = field(
        default="sft_lora",
        metadata={
            "help": "SFT recipe: a YAML file, or a name in recipes/<source>/, else in recipes/movielens/ "
            "(sft_lora, sft_full)"
        },
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate (sft_full: use 5e-5)"})
    train_steps: int = field(default=30, metadata={"help": "optimizer steps"})
    # one micro-batch of 8 per step: the same gradient as 4 x 2 accumulated, with larger matmuls (benchmarks/train.py)
    batch_size: int = field(default=8, metadata={"help": "training micro-batch size"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    enrich_users: int = field(default=4, metadata={"help": "users rewritten by the LLM (0: no enrichment)"})
    enrich_new_tokens: int = field(default=128, metadata={"help": "tokens each rewrite may have"})
    embed_batch_size: int = field(default=8, metadata={"help": "texts per embedding forward pass"})
    frozen_baseline: bool = field(
        default=False,
        metadata={"help": "also embed with the frozen base model and compare the fine-tuned one with it (+1 pass)"},
    )
    target: str | None = field(
        default=None,
        metadata={"help": "label to evaluate, a label of the schema (default: its first; MovieLens: gender)"},
    )
    max_epochs: float = field(
        default=3.0, metadata={"help": "small data: train_steps is cut to this many passes over the train users"}
    )


def base_label(model: str) -> str:
    """Short name of the base model for result rows: ``smollm2-135m`` -> ``smollm2``, ``org/Gemma-3`` -> ``gemma``."""
    return Path(model.rstrip("/")).name.split("-")[0].lower() or "base"


def dataset_title(config: QuickstartConfig, schema: EventSchema) -> str:
    """What the table and the card call the data: ``MovieLens-100K`` for the bundled one, else the schema's name."""
    return DATASET_TITLES.get(config.source, schema.name) if config.input is None else schema.name


def resolve_recipe(config: QuickstartConfig) -> Path:
    """The SFT recipe: a YAML file, or ``recipes/<source>/<recipe>.yaml``, else the CPU recipe of MovieLens."""
    recipe = Path(config.recipe)
    if recipe.suffix in (".yaml", ".yml"):
        if not recipe.exists():
            raise Llm4esError("recipe file not found", file=recipe, key="recipe")
        return recipe
    for folder in (config.source, "movielens"):
        candidate = recipes_dir() / folder / f"{config.recipe}.yaml"
        if candidate.exists():
            return candidate
    raise Llm4esError(f"no recipe {config.recipe!r} in {recipes_dir() / 'movielens'}", key="recipe")


def resolve_target(config: QuickstartConfig, schema: EventSchema) -> str:
    """The label to evaluate: ``--target``, else the schema's first label; one the schema lists."""
    names = [label.name for label in schema.labels]
    target = config.target or (names[0] if names else None)
    if target is None or target not in names:
        raise Llm4esError(
            f"no label {target!r} in schema {schema.name!r}; its labels: {names or 'none'} (give --labels FILE "
            "with a label column and --target NAME; `llm4es schema infer EVENTS --labels FILE` lists them)",
            file=schema.path,
            key="target",
        )
    return target


def users_labels(corpus_dir: Path, target: str) -> pl.DataFrame:
    """Every user of a built corpus with its split and ``target`` value (null where unlabeled)."""
    users = datasets.load_from_disk(str(corpus_dir / "users"))
    frame = pl.concat(
        [
            split.select_columns(["user_id", target]).to_polars().with_columns(pl.lit(name).alias("split"))
            for name, split in users.items()
        ]
    )
    return frame.with_columns(pl.col("user_id").cast(pl.Utf8), pl.col(target).cast(pl.Utf8))


def check_test_users(labeled: pl.DataFrame, target: str, test_size: float, where: Path) -> None:
    """The held-out users must hold two classes at least, or the test score is undefined."""
    test = labeled.filter(pl.col("split") == "test").drop_nulls(target)
    classes = test[target].unique().sort().to_list()
    if len(classes) < 2:
        raise Llm4esError(
            f"the {len(test):,} test users ({test_size:.0%} of the labeled users) all have the {target!r} class "
            f"{classes[0] if classes else None!r}: too few users to score a held-out set; give more users or raise "
            "--test-size",
            file=where,
            column=target,
        )


def token_counts(corpus_dir: Path, split: str | None = None) -> pl.Series:
    """Each user's text length in tokens (the corpus' ``n_tokens``), of one split or all."""
    files = sorted((corpus_dir / "serialized").glob(f"{split or '*'}-*.parquet"))
    return pl.read_parquet(files, columns=["n_tokens"])["n_tokens"]


def training_plan(config: QuickstartConfig, corpus_dir: Path) -> tuple[int, int, int]:
    """Optimizer steps, train users and training tokens: the configured budget, cut on small data to
    ``max_epochs`` passes over the train users."""
    lengths = token_counts(corpus_dir, "train").clip(upper_bound=config.max_tokens)
    global_batch = config.batch_size * config.gradient_accumulation_steps
    steps = max(1, min(config.train_steps, math.ceil(config.max_epochs * len(lengths) / global_batch)))
    return steps, len(lengths), round(steps * global_batch * float(lengths.mean()))


def embedding_tokens(corpus_dir: Path, embed_tokens: int) -> tuple[int, int]:
    """Users and tokens the embedding pass reads: each user's text up to ``embed_tokens``."""
    lengths = token_counts(corpus_dir)
    return len(lengths), int(lengths.clip(upper_bound=embed_tokens).sum())


@dataclass
class MachineRates:
    """What the plan's estimates are made of, measured on this machine with the run's model."""

    forward: float  # tokens/s of an inference forward: the embedding's unit
    training: float  # tokens/s of a forward and backward through the frozen weights: a LoRA step's bulk
    num_layers: int


def time_passes(model: str, *, batch: int = 4, length: int = 256) -> MachineRates:
    """Time one forward of ``model`` (inference, as the embedding runs it) and one forward and
    backward through its frozen weights (what a LoRA step costs but for the adapters' thin
    matmuls), in the precision this machine computes in, each after a short warm-up: one load."""
    _, network, _ = load_model(model, dtype=pick_dtype())
    network.requires_grad_(False)
    ids = torch.randint(0, network.config.vocab_size, (batch, length))
    with torch.inference_mode():
        network(ids[:, :16])
        start = time.perf_counter()
        network(ids)
        forward = batch * length / max(time.perf_counter() - start, 1e-6)
    embeddings = network.get_input_embeddings()(ids).detach().requires_grad_()

    def step(tokens: int) -> None:
        network(inputs_embeds=embeddings[:, :tokens], labels=ids[:, :tokens]).loss.backward()

    step(16)
    start = time.perf_counter()
    step(length)
    training = batch * length / max(time.perf_counter() - start, 1e-6)
    return MachineRates(forward=forward, training=training, num_layers=network.config.num_hidden_layers)


def minutes(seconds: float) -> str:
    """A rough duration as the plan prints it: ``~20 s``, ``~7 min``."""
    return f"~{seconds:.0f} s" if seconds < 60 else f"~{round(seconds / 60)} min"


def quickstart(config: QuickstartConfig) -> dict:
    """Run every stage and return the results (also written to quickstart.json)."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = clock = time.perf_counter()
    schema_name = config.schema or DEFAULT_SCHEMAS.get(config.source)

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 1)
        clock = now
        console.print(f"[dim]{name}: {timings[name]} s[/dim]")

    recipe = resolve_recipe(config)  # a bad recipe, schema, target or labels file fails before any long stage
    schema = source_schema(config.source, schema_name)
    target = resolve_target(config, schema)
    folds = {"folds": FOLDS, "test_size": config.test_size}
    event_files = config.event_files(schema) if config.labels else None
    if event_files is not None:
        ids = event_user_ids(event_files, schema)
        console.print(check_labels(ids, config.labels, target, user_id=schema.user_id, **folds).line())
    if config.source == "synthetic":
        where = f"{config.synthetic_users:,} generated users"
    else:
        where = config.input or "the bundled data"
    console.rule(f"[bold]1-2. {config.source} ({where}) -> LLM4ES text -> enrichment sample -> corpus")
    corpus_dir = out / "corpus"
    source_options = {option.name: getattr(config, option.name) for option in fields(SourceConfig)}
    build_corpus(
        CorpusConfig(
            # the test users are drawn among the users labeled for the target
            **{**source_options, "schema": schema_name, "split_label": target},
            output_dir=str(corpus_dir),
            max_tokens=max(config.max_tokens, config.embed_tokens),  # training keeps the latest max_tokens of it
            tokenizer=config.model,
            enrich_variants=["free:0.2"] if config.enrich_users else [],
            enrich_max_users=config.enrich_users,
            enrich_max_tokens=min(256, config.max_tokens),
            generator=config.generator,
            max_new_tokens=config.enrich_new_tokens,
            batch_size=max(1, config.enrich_users),
            max_retries=1,
            keep_truncated=True,
        )
    )
    labeled = users_labels(corpus_dir, target)
    if event_files is None:  # labels read with the events: checked on the users, still before any training
        console.print(check_labels(labeled["user_id"], labeled, target, **folds).line())
    check_test_users(labeled, target, config.test_size, corpus_dir / "users")
    summary = json.loads((corpus_dir / "corpus_summary.json").read_text())
    console.print(f"corpus: {summary['counts']}, enriched rows per variant: {summary['enriched_variants']['train']}")
    lap("corpus")

    steps, train_users, train_tokens = training_plan(config, corpus_dir)
    global_batch = config.batch_size * config.gradient_accumulation_steps
    users, tokens = embedding_tokens(corpus_dir, config.embed_tokens)
    rates = time_passes(config.model)
    layer_end = config.layer_end or early_layer_end(rates.num_layers)
    passes = 2 if config.frozen_baseline else 1
    console.print(
        f"plan: fine-tune {steps} steps x {global_batch} of the {train_users:,} train users x {config.max_tokens} "
        f"tokens ({train_tokens:,} tokens, "
        f"{minutes(train_tokens * LORA_STEP_COST / rates.training)}), then embed {users:,} users ({tokens:,} tokens, "
        f"{passes} pass{'es' if passes > 1 else ''}, "
        f"{minutes(passes * tokens * layer_end / rates.num_layers / rates.forward)}); estimated from passes timed "
        f"here: forward {rates.forward:,.0f} tokens/s, forward and backward {rates.training:,.0f} tokens/s"
    )
    console.rule(
        f"[bold]3. Fine-tune {config.model} ({recipe.parent.name}/{recipe.name}): {steps} steps x {global_batch} users "
        f"x {config.max_tokens} tokens"
    )
    model_dir = out / "model"
    script_args, training_args, model_args = load_recipe(
        [SFTScriptArguments, LLM4ESSFTConfig, ModelConfig],
        recipe,
        corpus=str(corpus_dir),
        corpus_config="enriched" if config.enrich_users else "serialized",
        corpus_recipe=None,
        model_name_or_path=config.model,
        output_dir=str(model_dir),
        max_steps=steps,
        max_length=config.max_tokens + 1,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        save_strategy="no",
    )
    training = run_sft(script_args, training_args, model_args)
    export_sentence_transformer(model_dir, layer_end=layer_end, max_length=config.embed_tokens)
    lap("fine-tuning")

    settings = resolve_embedding_settings(str(model_dir))  # what the exported model embeds with, on every path
    console.rule(
        f"[bold]4. Embed every user's latest {config.embed_tokens} tokens "
        f"(layers {settings['layer_start']}..{settings['layer_end']})"
    )
    files = {FINETUNED: out / f"{FINETUNED}.parquet"}
    if config.frozen_baseline:
        files = {f"frozen-{base_label(config.model)}": out / f"frozen-{base_label(config.model)}.parquet", **files}
    for name, path in files.items():
        weights = str(model_dir) if name == FINETUNED else resolve_model(config.model)
        embed_corpus(Embedder(weights, **settings), str(corpus_dir), path, batch_size=config.embed_batch_size)
    lap("embedding")

    title = dataset_title(config, schema)
    # the bag needs category or text fields; every schema has the aggregates (counts, numbers, times)
    baselines = ["aggregates"] + (["bag"] if any(f.kind in ("category", "text") for f in schema.fields) else [])
    console.rule(f"[bold]5. Evaluate: {target}, {FOLDS} folds, LightGBM and logistic regression")
    report = run_evaluation(
        EvaluationConfig(
            embeddings=[str(path) for path in files.values()],
            labels=str(corpus_dir),
            target=target,
            baselines=baselines,
            no_ensemble=True,
            ensembles=[f"{baseline}+{FINETUNED}" for baseline in baselines],
            baseline="aggregates/lightgbm",
            folds=FOLDS,
            output_dir=str(out / "evaluation"),
        )
    )
    print(report.to_markdown())
    info = json.loads((model_dir / "llm4es_training.json").read_text())
    info["embedding"] = embedding_settings(model_dir)
    slug = title.lower().replace("_", "-").replace(" ", "-")
    write_model_card(
        model_dir,
        info,
        model_name=f"llm4es-{base_label(config.model)}-{slug}",
        eval_results=report.to_eval_results(FINETUNED, f"{title} ({target})", dataset_type=slug, features=FINETUNED),
    )
    lap("evaluation")

    console.rule("[bold]6. Index the fine-tuned embeddings for nearest-user search (the demo Space's index)")
    index_dir = out / "index"
    build_index_from_files(files[FINETUNED], index_dir, labels=corpus_dir, model=str(model_dir))
    lap("index")

    console.print(results_table(report, f"{title} {target}"))
    added = {}
    for baseline in baselines:
        model = ADDED_TO[baseline]
        gain = report.compare(f"{baseline}+{FINETUNED}/{model}", f"{baseline}/{model}").out_of_fold
        added[baseline] = gain
        console.print(f"LLM4ES added to the {baseline} ({model}, out-of-fold): {gain_line(gain)}")
    results = {
        "config": asdict(config),
        "target": target,
        "seconds": round(time.perf_counter() - started, 1),
        "stages": timings,
        "plan": {"train_steps": steps, "train_tokens": train_tokens, "embed_users": users, "embed_tokens": tokens},
        "training": training["training"],
        "embedding": settings,
        "scores": {row.name: round(row.test_mean, 4) for row in report.rows},
        "out_of_fold": {row.name: round(row.pooled_valid, 4) for row in report.rows},
        "added_out_of_fold": {baseline: gain_record(gain) for baseline, gain in added.items()},
        "model": str(model_dir),
        "report": str(out / "evaluation" / "report.md"),
        "index": str(index_dir),
    }
    if config.frozen_baseline:
        frozen = f"frozen-{base_label(config.model)}/lightgbm"
        gain = report.compare(f"{FINETUNED}/lightgbm", frozen).out_of_fold
        console.print(f"fine-tuned vs frozen (LightGBM, out-of-fold): {gain_line(gain)}")
        results["finetuned_vs_frozen_out_of_fold"] = gain_record(gain)
    else:
        console.print(
            "fine-tuned vs frozen: not run here (one more embedding pass); "
            "`llm4es quickstart --frozen-baseline` runs it"
        )
    (out / "quickstart.json").write_text(json.dumps(results, indent=2))
    example_user = str(labeled.filter(pl.col("split") == "test")["user_id"][0])
    example_files = event_files or config.event_files(schema)
    if example_files:  # the Space's upload example: one held-out user's rows as the user's files spell them
        rows = user_rows(example_files, schema, example_user)
        if len(rows):
            rows.write_csv(out / "example_events.csv")
    console.rule(f"[bold green]done in {results['seconds']} s")
    console.print(f"model (AutoModel + SentenceTransformer, card with results): {model_dir}")
    console.print(f"report: {results['report']}; embeddings: {', '.join(str(p) for p in files.values())}")
    console.print(f"nearest users: llm4es search --index {index_dir} --user-id {example_user}")
    console.print(f"demo: python spaces/llm4es-demo/app.py --run {out}")
    return results


def gain_line(gain: PairedDifference) -> str:
    """``+0.012 [-0.010, +0.035], p 0.28``: a paired difference as the quickstart prints it."""
    return f"{gain.delta:+.3f} [{gain.ci95[0]:+.3f}, {gain.ci95[1]:+.3f}], p {gain.p_value:.2g}"


def gain_record(gain: PairedDifference) -> dict:
    """A paired difference as quickstart.json keeps it."""
    return {"delta": round(gain.delta, 4), "ci95": gain.ci95, "p": gain.p_value}


def results_table(report: EvaluationReport, title: str) -> Table:
    """What LLM4ES adds to the classical features: every row against the aggregates (LightGBM),
    test score of the 5 fold models and out-of-fold over the train users, paired bootstrap."""
    table = Table(
        title=f"{title}: test {report.metric_label} (mean ± std of 5 fold models), "
        f"out-of-fold over the train users, Δ OOF against {report.baseline} [95% CI] (paired bootstrap)",
        show_edge=False,
    )
    for column in ("features", "model", "test", "out-of-fold", "Δ OOF [95% CI]", "p"):
        table.add_column(column, no_wrap=True)
    for row in report.rows:
        delta = "—"
        if row.pooled_delta is not None and row.pooled_delta_ci95 is not None:
            delta = f"{row.pooled_delta:+.3f} [{row.pooled_delta_ci95[0]:+.3f}, {row.pooled_delta_ci95[1]:+.3f}]"
        table.add_row(
            row.features,
            row.model,
            f"{row.test_mean:.3f} ± {row.test_std:.3f}",
            f"{row.pooled_valid:.3f}",
            delta,
            "—" if row.pooled_p is None else f"{row.pooled_p:.2g}",
        )
    return table
