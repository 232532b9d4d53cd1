"""Model and index folders: ``llm4es_embedding.json`` (pooling) and ``llm4es_serialization.json`` +
``schema.yaml`` (how raw events became the texts the model was trained on); an index folder's files
(``INDEX_FILES``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..assets import model_file
from ..schema import EventSchema, load_schema, save_schema

INDEX_FILES = ("index.faiss", "users.parquet", "projection.npz", "index.json")
EMBEDDING_SETTINGS = "llm4es_embedding.json"
SERIALIZATION_SETTINGS = "llm4es_serialization.json"
SERIALIZATION_KEYS = ("format", "max_events", "max_tokens", "tokenizer")


def corpus_serialization_settings(corpus: Path) -> dict[str, Any]:
    """How the corpus turned events into text (format, event cap, token budget, tokenizer)."""
    summary_path = corpus / "corpus_summary.json"
    if not summary_path.exists():
        return {}
    config = json.loads(summary_path.read_text()).get("config", {})
    return {key: config.get(key) for key in SERIALIZATION_KEYS}


def embedding_settings(model_dir: str | Path) -> dict[str, Any]:
    """The pooling settings saved with a model by export_sentence_transformer ({} when absent);
    a Hub model id is looked up on the Hub (or its cache)."""
    path = model_file(model_dir, EMBEDDING_SETTINGS)
    return json.loads(path.read_text()) if path is not None else {}


def write_serialization_settings(model_dir: str | Path, corpus: str | Path) -> bool:
    """Copy a local corpus' schema and serialization settings into a model folder, so that the
    model turns raw events into text exactly as its corpus did. False when the corpus has none."""
    corpus, model_dir = Path(corpus), Path(model_dir)
    settings = corpus_serialization_settings(corpus)
    if not settings or not (corpus / "schema.yaml").exists():
        return False
    save_schema(load_schema(corpus / "schema.yaml"), model_dir / "schema.yaml")
    (model_dir / SERIALIZATION_SETTINGS).write_text(json.dumps(settings, indent=2))
    return True


def serialization_settings(model: str | Path) -> tuple[EventSchema, dict[str, Any]] | None:
    """``(schema, settings)`` saved in a model folder or Hub repo, None when it carries none."""
    settings_path = model_file(model, SERIALIZATION_SETTINGS)
    schema_file = model_file(model, "schema.yaml") if settings_path is not None else None
    if settings_path is None or schema_file is None:
        return None
    return load_schema(schema_file), json.loads(settings_path.read_text())
