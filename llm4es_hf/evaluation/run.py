"""``evaluate_embeddings``: files or arrays in, the report (and report.md/.json/.png) out.

``EvaluationConfig`` is the one set of options of the evaluation: ``llm4es evaluate`` parses it
(defaults < YAML < command line), the quickstart and the Python API build it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..artifacts import Labels, load_labels
from ..errors import Llm4esError
from ..metrics import BACKENDS
from .features import FeatureTable, assemble_feature_sets, load_embedding_files
from .protocol import MODELS, TASKS, evaluate_features
from .report import EvaluationReport


@dataclass
class EvaluationConfig:
    """Options of the downstream evaluation (``llm4es evaluate --help``)."""

    labels: str | None = field(
        default=None, metadata={"help": "corpus folder (its users/ split and schema) or a CSV/Parquet label table"}
    )
    target: str | None = field(default=None, metadata={"help": "label column to predict, e.g. gender or target_flag"})
    embeddings: list[str] = field(
        default_factory=list,
        metadata={
            "help": "user_id + embedding Parquet files or `llm4es embed` shard folders (a set's name is the stem)"
        },
    )
    task: str | None = field(
        default=None, metadata={"help": f"one of {list(TASKS)}; default: the schema's, else by the number of classes"}
    )
    baselines: list[str] = field(
        default_factory=list,
        metadata={
            "help": "built-in baselines from the corpus' events: aggregates, bag, coles (CoLES trained with "
            "pytorch-lifestream on all users' events, no labels; encoder saved in OUTPUT_DIR/coles)"
        },
    )
    coles_recipe: str | None = field(
        default=None, metadata={"help": "CoLES hyperparameters (default: recipes/<schema name>/coles.yaml)"}
    )
    models: list[str] = field(
        default_factory=lambda: list(MODELS), metadata={"help": f"downstream models, of {list(MODELS)}"}
    )
    baseline: str | None = field(
        default=None,
        metadata={
            "help": "row the others are compared with (Δ, paired t-test and bootstraps), e.g. aggregates/lightgbm "
            "(default: first row)"
        },
    )
    no_ensemble: bool = field(default=False, metadata={"help": "several --embeddings: no concatenation row"})
    ensembles: list[str] = field(
        default_factory=list, metadata={"help": "concatenations to score by feature set name, e.g. bag+llm4es"}
    )
    folds: int = field(default=5, metadata={"help": "stratified folds on the train users"})
    seed: int = field(default=42, metadata={"help": "seed of folds, models and a split made here"})
    test_size: float = field(default=0.1, metadata={"help": "test share when the labels carry no split"})
    top_k: int = field(default=50, metadata={"help": "aggregates: frequent values per category field"})
    metric_backend: str = field(default="auto", metadata={"help": f"one of {list(BACKENDS)}"})
    n_jobs: int = field(default=2, metadata={"help": "LightGBM threads (1 is faster on a busy machine)"})
    output_dir: str | None = field(
        default="outputs/evaluate", metadata={"help": "where report.md/.json/.png go (none: write nothing)"}
    )

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise Llm4esError(f"task must be one of {list(TASKS)}, got {self.task!r}", key="task")
        bad = [m for m in self.models if m not in MODELS]
        if bad or not self.models:
            raise Llm4esError(f"models must be among {list(MODELS)}, got {self.models}", key="models")
        if self.metric_backend not in BACKENDS:
            raise Llm4esError(f"metric_backend must be one of {list(BACKENDS)}", key="metric_backend")


def evaluate_embeddings(
    embeddings: list[str] | dict[str, FeatureTable] | None = None,
    labels: str | Path | Labels | None = None,
    target: str | None = None,
    **options: Any,
) -> EvaluationReport:
    """Score user embeddings (Parquet files, or ``name -> (user_ids, matrix)``) and baselines on a
    label with the paper's protocol; ``options`` are ``EvaluationConfig``'s fields.

    >>> report = evaluate_embeddings(["emb.parquet"], "outputs/corpus-movielens", "gender", baselines=["aggregates"])
    >>> print(report.to_markdown())
    """
    known = {f.name for f in fields(EvaluationConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise Llm4esError(f"unknown option(s) {unknown}; known: {sorted(known)}")
    tables = embeddings if isinstance(embeddings, dict) else None
    config = EvaluationConfig(
        labels=None if isinstance(labels, Labels) else (str(labels) if labels is not None else None),
        target=target,
        embeddings=[] if tables is not None else list(embeddings or []),
        **options,
    )
    return run_evaluation(config, tables=tables, labels=labels if isinstance(labels, Labels) else None)


def run_evaluation(
    config: EvaluationConfig, *, tables: dict[str, FeatureTable] | None = None, labels: Labels | None = None
) -> EvaluationReport:
    """Everything ``llm4es evaluate`` does; writes the report files when ``config.output_dir`` is set."""
    if not config.target:
        raise Llm4esError("give the label to predict (--target)", key="target")
    if labels is None:
        if not config.labels:
            raise Llm4esError("give the labels (--labels CORPUS_FOLDER or a table)", key="labels")
        labels = load_labels(config.labels)
    embedded = tables if tables is not None else load_embedding_files(config.embeddings)
    if not embedded and not config.baselines:
        raise Llm4esError("give --embeddings FILE ... and/or --baselines aggregates bag", key="embeddings")
    feature_sets, kinds, notes = assemble_feature_sets(
        labels,
        embeddings=embedded,
        baselines=config.baselines,
        ensembles=config.ensembles,
        ensemble_embeddings=not config.no_ensemble,
        baseline_options={
            "top_k": config.top_k,
            "coles_recipe": config.coles_recipe,
            "output_dir": config.output_dir or tempfile.mkdtemp(prefix="llm4es-coles-"),
        },
    )
    report = evaluate_features(
        feature_sets,
        labels,
        config.target,
        config.task,
        seed=config.seed,
        folds=config.folds,
        test_size=config.test_size,
        models=config.models,
        baseline=config.baseline,
        metric_backend=config.metric_backend,
        kinds=kinds,
        n_jobs=config.n_jobs,
    )
    report.notes = notes + report.notes
    if config.output_dir:
        write_report(report, config.output_dir)
    return report


def write_report(report: EvaluationReport, output_dir: str | Path) -> Path:
    """report.md, report.json and report.png in ``output_dir``."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "report.md").write_text(report.to_markdown(), encoding="utf-8")
    (output / "report.json").write_text(report.to_json(), encoding="utf-8")
    report.plot(output / "report.png")
    return output
