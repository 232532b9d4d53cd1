"""`llm4es <command>`: one CLI for every stage, one small module per command (as `trl <command>`).

Each command's options are dataclasses parsed by TRL's parser (``config.parse_config``):
dataclass defaults < ``--config FILE.yaml`` < command line, unknown YAML keys are errors. Our
errors become one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from ..errors import Llm4esError

# name -> (module under llm4es_hf.cli, one-line help); a command's module loads only when it runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "schema": ("schema", "`schema infer EVENTS`: propose an EventSchema YAML from a sample of your events"),
    "serialize": ("serialize", "raw events -> users Dataset with a `text` column (LLM4ES or another format)"),
    "synthetic": ("synthetic", "write synthetic bank transactions in Rosbank's raw format (train.csv.gz)"),
    "enrich": ("enrich", "rewrite serialized users with an instruct LLM (in-process or an OpenAI-compatible server)"),
    "corpus": ("corpus", "build serialized + enriched corpora with a dataset card from a recipe YAML"),
    "publish-corpus": ("publish_corpus", "push a corpus folder (both configs and its card) to the Hub, private"),
    "sft": ("sft", "fine-tune a causal LM on a corpus with TRL (the same as `accelerate launch recipes/sft.py`)"),
    "contrastive": (
        "contrastive",
        "contrastive fine-tuning on slices of users' events (the same as `accelerate launch recipes/contrastive.py`)",
    ),
    "export-st": ("export_st", "add SentenceTransformer modules (layer averaging + pooling) to a model folder"),
    "embed": ("embed", "user embeddings: mean of hidden states of layers k..L, mean over tokens (Parquet)"),
    "evaluate": ("evaluate", "score embeddings and baselines on a label: 5 folds, LightGBM/logreg, report"),
    "index": ("index", "build a FAISS index of user embeddings (exact or HNSW) with labels and a 2-D map"),
    "search": ("search", "nearest users of a known user (--user-id) or of new events (--events FILE.csv)"),
    "quickstart": ("quickstart", "the main job: bundled MovieLens-100K and SmolLM2, or your events (--source csv ...)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return (
        "usage: llm4es <command> [--config FILE.yaml] [--key value ...]\n\n"
        "LLM4ES on the Hugging Face stack: event sequences -> text -> fine-tuned LLM -> user embeddings.\n\n"
        "commands:\n" + "\n".join(lines) + "\n\n`llm4es <command> --help` lists a command's options."
    )


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    argv = list(sys.argv[1:] if argv is None else argv)
    # Before torch loads its libgomp: spinning OpenMP threads slow LightGBM and torch 3-100x on busy cores;
    # the quickstart is one process on its own, where spinning made LoRA steps 1.24x faster (benchmarks/train.py)
    os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE" if argv[:1] == ["quickstart"] else "PASSIVE")
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name = argv[0]
    if name not in COMMANDS:
        print(f"llm4es: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    command = importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
    return reporting_errors(name, lambda: command.main(argv[1:]))


def reporting_errors(name: str, run: Callable[[], int]) -> int:
    """Run a command; our errors become one line on stderr and exit code 2 (no traceback)."""
    try:
        return run()
    except Llm4esError as err:
        print(f"llm4es {name}: error: {err}", file=sys.stderr)
        return 2
