"""The main job on the embedded defaults, offline, on a laptop CPU:

bundled MovieLens-100K -> serialize (compact layout: "title, stars" per rating) -> enrich a
small sample with SmolLM2 -> fine-tune SmolLM2 with LoRA (recipes/movielens/sft_lora.yaml, CPU-sized)
-> export as SentenceTransformer -> embed every viewer with the frozen and the fine-tuned
model -> evaluate gender against the aggregate baseline -> model card with the results ->
index the users for search -> print the table.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from trl import ModelConfig

from .artifacts import load_texts, save_embeddings
from .assets import recipes_dir, resolve_model
from .cards import write_model_card
from .config import load_recipe
from .corpus import CorpusConfig, build_corpus
from .embed import Embedder, embed_dataset, export_sentence_transformer
from .evaluation import EvaluationConfig, run_evaluation
from .search import build_index_from_files
from .training.sft import LLM4ESSFTConfig, SFTScriptArguments, run_sft

console = Console()


@dataclass
class QuickstartConfig:
    """The quickstart's budget: embedding 2 x 943 viewers at 256 tokens dominates (see docs/cli.md for times)."""

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
    max_tokens: int = field(
        default=256, metadata={"help": "tokens per viewer (most recent ratings) for corpus, training and embedding"}
    )
    # LoRA r 16 at lr 1e-3, 30 steps of 8 viewers: the best CPU recipe of benchmarks/quality_movielens.py
    # at 256 tokens (gender out-of-fold +0.032 over the frozen model, p 0.02; full fine-tuning +0.012, p 0.34)
    recipe: str = field(
        default="sft_lora", metadata={"help": "SFT recipe of recipes/movielens/ (sft_lora, sft_full) or a YAML file"}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate (sft_full: use 5e-5)"})
    train_steps: int = field(default=30, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=4, metadata={"help": "training micro-batch size"})
    gradient_accumulation_steps: int = field(default=2, metadata={"help": "micro-batches per optimizer step"})
    enrich_users: int = field(default=4, metadata={"help": "viewers rewritten by the LLM"})
    enrich_new_tokens: int = field(default=128, metadata={"help": "tokens each rewrite may have"})
    embed_batch_size: int = field(default=8, metadata={"help": "texts per embedding forward pass"})
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
            max_tokens=config.max_tokens,
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
    console.rule(f"[bold]3. Fine-tune {config.model} ({config.train_steps} steps, {recipe.name})")
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
    export_sentence_transformer(model_dir, max_length=config.max_tokens)
    lap("fine-tuning")

    console.rule("[bold]4. Embed every viewer (frozen and fine-tuned model)")
    texts = load_texts(str(corpus_dir), "serialized")
    files = {}
    frozen = f"frozen-{base_label(config.model)}"
    for name, path in ((frozen, resolve_model(config.model)), ("llm4es-finetuned", str(model_dir))):
        embedder = Embedder(path, max_length=config.max_tokens)
        vectors = embed_dataset(embedder, texts, batch_size=config.embed_batch_size)
        files[name] = out / f"{name}.parquet"
        save_embeddings(files[name], texts["user_id"], vectors, extra={"split": texts["split"]})
    lap("embedding")

    console.rule(f"[bold]5. Evaluate: {config.target}, 5 folds, LightGBM and logistic regression")
    report = run_evaluation(
        EvaluationConfig(
            embeddings=[str(path) for path in files.values()],
            labels=str(corpus_dir),
            target=config.target,
            baselines=["aggregates"],
            no_ensemble=True,
            baseline="aggregates/lightgbm",
            output_dir=str(out / "evaluation"),
        )
    )
    print(report.to_markdown())
    info = json.loads((model_dir / "llm4es_training.json").read_text())
    write_model_card(
        model_dir,
        info,
        model_name=f"llm4es-{base_label(config.model)}-movielens-100k",
        eval_results=report.to_eval_results(
            "llm4es-finetuned",
            f"MovieLens-100K ({config.target})",
            dataset_type="movielens-100k",
            features="llm4es-finetuned",
        ),
    )
    lap("evaluation")

    console.rule("[bold]6. Index the fine-tuned embeddings for nearest-user search (the demo Space's index)")
    index_dir = out / "index"
    build_index_from_files(files["llm4es-finetuned"], index_dir, labels=corpus_dir, model=str(model_dir))
    lap("index")

    table = Table(
        title=f"MovieLens-100K {config.target}: test {report.metric_label} (mean ± std of 5 fold models), "
        f"out-of-fold over the train users, Δ OOF against {report.baseline} (paired bootstrap)",
        show_edge=False,
    )
    for column in ("features", "model", "test", "out-of-fold", "Δ OOF", "p"):
        table.add_column(column, no_wrap=True)
    for row in report.rows:
        table.add_row(
            row.features,
            row.model,
            f"{row.test_mean:.3f} ± {row.test_std:.3f}",
            f"{row.pooled_valid:.3f}",
            "—" if row.pooled_delta is None else f"{row.pooled_delta:+.3f}",
            "—" if row.pooled_p is None else f"{row.pooled_p:.2g}",
        )
    console.print(table)
    gain = report.compare("llm4es-finetuned/lightgbm", f"{frozen}/lightgbm").out_of_fold
    console.print(
        f"fine-tuned vs frozen (LightGBM, out-of-fold): {gain.delta:+.3f} "
        f"[{gain.ci95[0]:+.3f}, {gain.ci95[1]:+.3f}], p {gain.p_value:.2g}"
    )
    results = {
        "config": asdict(config),
        "seconds": round(time.perf_counter() - started, 1),
        "stages": timings,
        "training": training["training"],
        "scores": {f"{row.features}/{row.model}": round(row.test_mean, 4) for row in report.rows},
        "out_of_fold": {f"{row.features}/{row.model}": round(row.pooled_valid, 4) for row in report.rows},
        "finetuned_vs_frozen_out_of_fold": {"delta": round(gain.delta, 4), "ci95": gain.ci95, "p": gain.p_value},
        "model": str(model_dir),
        "report": str(out / "evaluation" / "report.md"),
        "index": str(index_dir),
    }
    (out / "quickstart.json").write_text(json.dumps(results, indent=2))
    console.rule(f"[bold green]done in {results['seconds']} s")
    console.print(f"model (AutoModel + SentenceTransformer, card with results): {model_dir}")
    console.print(f"report: {results['report']}; embeddings: {', '.join(str(p) for p in files.values())}")
    console.print(
        f"nearest users: llm4es search --index {index_dir} --user-id 10; demo: python spaces/llm4es-demo/app.py"
    )
    return results
