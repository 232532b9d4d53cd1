"""`llm4es export-st MODEL_DIR`: add SentenceTransformer modules (layer averaging + pooling) to a model
folder, and with `--corpus` the schema and serialization settings that let it embed raw events."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..artifacts import write_serialization_settings
from ..config import parse_config
from ..embedding import DEFAULT_MAX_LENGTH, POOLINGS, export_sentence_transformer
from ..errors import Llm4esError


@dataclass
class ExportConfig:
    """Options of `llm4es export-st`."""

    model_dir: str | None = field(default=None, metadata={"help": "a saved model folder"})
    layer_start: int | None = field(default=None, metadata={"help": "first hidden state averaged (default: L/3)"})
    layer_end: int | None = field(
        default=None, metadata={"help": "last hidden state averaged: the forward stops there (default: L)"}
    )
    pooling: str = field(default="mean", metadata={"help": f"one of {list(POOLINGS)}"})
    max_length: int = field(default=DEFAULT_MAX_LENGTH, metadata={"help": "tokens per user (most recent kept)"})
    corpus: str | None = field(
        default=None, metadata={"help": "corpus folder whose schema and serialization the model should carry"}
    )


def main(argv: list[str]) -> int:
    (config,) = parse_config(
        [ExportConfig], argv, prog="llm4es export-st", description=__doc__, positional=["model_dir"]
    )
    if not config.model_dir:
        raise Llm4esError("give the model folder: llm4es export-st MODEL_DIR", key="model_dir")
    export_sentence_transformer(
        config.model_dir,
        layer_start=config.layer_start,
        layer_end=config.layer_end,
        pooling=config.pooling,
        max_length=config.max_length,
    )
    if config.corpus and not write_serialization_settings(config.model_dir, config.corpus):
        raise Llm4esError("not a local corpus folder with schema.yaml and corpus_summary.json", file=config.corpus)
    print(f"{config.model_dir} now loads with SentenceTransformer (and still with AutoModel)")
    return 0
