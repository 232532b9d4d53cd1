"""The main job on the embedded defaults, offline, on a laptop CPU:

bundled MovieLens-100K -> serialize (compact layout: "title, stars" per rating) -> enrich a
small sample with SmolLM2 -> fine-tune SmolLM2 with LoRA on each viewer's latest ``max_tokens``
tokens (recipes/movielens/sft_lora.yaml, CPU-sized) -> export as SentenceTransformer (the
forward stopping at ``layer_end``) -> embed every viewer's latest ``embed_tokens`` tokens with
the fine-tuned model (and the frozen one with ``frozen_baseline``) -> evaluate the target:
the aggregates and the bag of categories alone and with LLM4ES added -> model card with the
results -> index the users for search -> print the table.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from transformers import AutoConfig
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
from .evaluation import EvaluationConfig, EvaluationReport, run_evaluation
from .metrics import PairedDifference
from .search import build_index_from_files
from .training.sft import LLM4ESSFTConfig, SFTScriptArguments, run_sft

console = Console(width=max(Console().width, 132))  # the results table is 130 characters wide


FINETUNED = "llm4es-finetuned"


@dataclass
class QuickstartConfig:
    """The quickstart's budget, sized for 20 minutes on a 2-core CPU (docs/cli.md gives the stage times)."""

    output_dir: str = field(default="outputs/quickstart", metadata={"help": "where every artifact goes"})
    model: str = field(
        default="smollm2-135m",
        metadata={"help": "base model: bundled name (smollm2-135m, gemma3-270m), folder or Hub id"},
    )
    generator: str = field(
        default="smollm2-135m",
        metadata={"help": "enrichment LLM: an instruct model with a chat template (gemma3-270m is a pretrained one)"},
    )
    # "title, stars" per rating: 2.5x more history per token than date/title/genres/rating, and
    # frozen SmolLM2 gender ROC-AUC 0.73 instead of 0.60 at 512 tokens (benchmarks/quality_movielens.py)
    schema: str = field(
        default="movielens_compact",
        metadata={"help": "MovieLens layout: a built-in schema name (movielens, movielens_compact) or a YAML file"},
    )
    max_tokens: int = field(default=256, metadata={"help": "tokens per viewer (most recent ratings) in training"})
    # 768: what fits the 20 minutes on a 2-core CPU beside training (docs/cli.md#quickstart); whole histories
    # (2048) beat the aggregates significantly, 256 tokens did not (benchmarks/README.md)
    embed_tokens: int = field(
        default=768,
        metadata={"help": "tokens per viewer (most recent ratings) at embedding time: history is what moves quality"},
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
        default="sft_lora", metadata={"help": "SFT recipe of recipes/movielens/ (sft_lora, sft_full) or a YAML file"}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate (sft_full: use 5e-5)"})
    train_steps: int = field(default=30, metadata={"help": "optimizer steps"})
    # one micro-batch of 8 per step: the same gradient as 4 x 2 accumulated, with larger matmuls (benchmarks/train.py)
    batch_size: int = field(default=8, metadata={"help": "training micro-batch size"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    enrich_users: int = field(default=4, metadata={"help": "viewers rewritten by the LLM"})
    enrich_new_tokens: int = field(default=128, metadata={"help": "tokens each rewrite may have"})
    embed_batch_size: int = field(default=8, metadata={"help": "texts per embedding forward pass"})
    frozen_baseline: bool = field(
        default=False,
        metadata={"help": "also embed with the frozen base model and compare the fine-tuned one with it (+1 pass)"},
    )
    target: str = field(default="gender", metadata={"help": "label to evaluate (gender, age, occupation)"})


def base_label(model: str) -> str:
    """Short name of the base model for result rows: ``smollm2-135m`` -> ``smollm2``, ``org/Gemma-3`` -> ``gemma``."""
    return Path(model.rstrip("/")).name.split("-")[0].lower() or "base"


def quickstart(config: QuickstartConfig) -> dict:
    """Run every stage and return the results (also written to quickstart.json)."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 1)
        clock = now
        console.print(f"[dim]{name}: {timings[name]} s[/dim]")

    console.rule("[bold]1-2. MovieLens-100K -> LLM4ES text -> enrichment sample -> corpus")
    corpus_dir = out / "corpus"
    build_corpus(
        CorpusConfig(
            output_dir=str(corpus_dir),
            source="movielens",
            schema=config.schema,
            max_tokens=max(config.max_tokens, config.embed_tokens),  # training keeps the latest max_tokens of it
            tokenizer=config.model,
            split_label=config.target,
            enrich_variants=["free:0.2"],
            enrich_max_users=config.enrich_users,
            enrich_max_tokens=min(256, config.max_tokens),
            generator=config.generator,
            max_new_tokens=config.enrich_new_tokens,
            batch_size=config.enrich_users,
            max_retries=1,
            keep_truncated=True,
        )
    )
    summary = json.loads((corpus_dir / "corpus_summary.json").read_text())
    console.print(f"corpus: {summary['counts']}, enriched rows per variant: {summary['enriched_variants']['train']}")
    lap("corpus")

    recipe = Path(config.recipe)
    if recipe.suffix != ".yaml":
        recipe = recipes_dir() / "movielens" / f"{config.recipe}.yaml"
    global_batch = config.batch_size * config.gradient_accumulation_steps
    console.rule(
        f"[bold]3. Fine-tune {config.model} ({recipe.name}): {config.train_steps} steps x {global_batch} viewers "
        f"x {config.max_tokens} tokens"
    )
    model_dir = out / "model"
    script_args, training_args, model_args = load_recipe(
        [SFTScriptArguments, LLM4ESSFTConfig, ModelConfig],
        recipe,
        corpus=str(corpus_dir),
        corpus_config="enriched",
        corpus_recipe=None,
        model_name_or_path=config.model,
        output_dir=str(model_dir),
        max_steps=config.train_steps,
        max_length=config.max_tokens + 1,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        save_strategy="no",
    )
    training = run_sft(script_args, training_args, model_args)
    layer_end = config.layer_end or early_layer_end(AutoConfig.from_pretrained(model_dir).num_hidden_layers)
    export_sentence_transformer(model_dir, layer_end=layer_end, max_length=config.embed_tokens)
    lap("fine-tuning")

    settings = resolve_embedding_settings(str(model_dir))  # what the exported model embeds with, on every path
    console.rule(
        f"[bold]4. Embed every viewer's latest {config.embed_tokens} tokens "
        f"(layers {settings['layer_start']}..{settings['layer_end']})"
    )
    files = {FINETUNED: out / f"{FINETUNED}.parquet"}
    if config.frozen_baseline:
        files = {f"frozen-{base_label(config.model)}": out / f"frozen-{base_label(config.model)}.parquet", **files}
    for name, path in files.items():
        weights = str(model_dir) if name == FINETUNED else resolve_model(config.model)
        embed_corpus(Embedder(weights, **settings), str(corpus_dir), path, batch_size=config.embed_batch_size)
    lap("embedding")

    console.rule(f"[bold]5. Evaluate: {config.target}, 5 folds, LightGBM and logistic regression")
    baselines = ["aggregates", "bag"]
    report = run_evaluation(
        EvaluationConfig(
            embeddings=[str(path) for path in files.values()],
            labels=str(corpus_dir),
            target=config.target,
            baselines=baselines,
            no_ensemble=True,
            ensembles=[f"{baseline}+{FINETUNED}" for baseline in baselines],
            baseline="aggregates/lightgbm",
            output_dir=str(out / "evaluation"),
        )
    )
    print(report.to_markdown())
    info = json.loads((model_dir / "llm4es_training.json").read_text())
    info["embedding"] = embedding_settings(model_dir)
    write_model_card(
        model_dir,
        info,
        model_name=f"llm4es-{base_label(config.model)}-movielens-100k",
        eval_results=report.to_eval_results(
            FINETUNED, f"MovieLens-100K ({config.target})", dataset_type="movielens-100k", features=FINETUNED
        ),
    )
    lap("evaluation")

    console.rule("[bold]6. Index the fine-tuned embeddings for nearest-user search (the demo Space's index)")
    index_dir = out / "index"
    build_index_from_files(files[FINETUNED], index_dir, labels=corpus_dir, model=str(model_dir))
    lap("index")

    console.print(results_table(report, config))
    added = {}
    for baseline, model in (("aggregates", "lightgbm"), ("bag", "logreg")):
        gain = report.compare(f"{baseline}+{FINETUNED}/{model}", f"{baseline}/{model}").out_of_fold
        added[baseline] = gain
        console.print(f"LLM4ES added to the {baseline} ({model}, out-of-fold): {gain_line(gain)}")
    results = {
        "config": asdict(config),
        "seconds": round(time.perf_counter() - started, 1),
        "stages": timings,
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
            "fine-tuned vs frozen: not run here (one more embedding pass, about 10 minutes on 2 cores); "
            "`llm4es quickstart --frozen-baseline` runs it"
        )
    (out / "quickstart.json").write_text(json.dumps(results, indent=2))
    console.rule(f"[bold green]done in {results['seconds']} s")
    console.print(f"model (AutoModel + SentenceTransformer, card with results): {model_dir}")
    console.print(f"report: {results['report']}; embeddings: {', '.join(str(p) for p in files.values())}")
    console.print(
        f"nearest users: llm4es search --index {index_dir} --user-id 10; demo: python spaces/llm4es-demo/app.py"
    )
    return results


def gain_line(gain: PairedDifference) -> str:
    """``+0.012 [-0.010, +0.035], p 0.28``: a paired difference as the quickstart prints it."""
    return f"{gain.delta:+.3f} [{gain.ci95[0]:+.3f}, {gain.ci95[1]:+.3f}], p {gain.p_value:.2g}"


def gain_record(gain: PairedDifference) -> dict:
    """A paired difference as quickstart.json keeps it."""
    return {"delta": round(gain.delta, 4), "ci95": gain.ci95, "p": gain.p_value}


def results_table(report: EvaluationReport, config: QuickstartConfig) -> Table:
    """What LLM4ES adds to the classical features: every row against the aggregates (LightGBM),
    test score of the 5 fold models and out-of-fold over the train users, paired bootstrap."""
    table = Table(
        title=f"MovieLens-100K {config.target}: test {report.metric_label} (mean ± std of 5 fold models), "
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
