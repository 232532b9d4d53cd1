"""`llm4es quickstart`: the main job, offline: corpus, LoRA fine-tuning, embeddings, evaluation against the
aggregates (and the bag), model card, index and the results table. With no arguments on the embedded defaults
(bundled MovieLens-100K and SmolLM2); on your own events with `--source csv --input EVENTS.csv --schema
SCHEMA.yaml --labels LABELS.csv --target NAME` (`llm4es schema infer` writes the schema)."""

from __future__ import annotations

from ..config import parse_config
from ..quickstart import QuickstartConfig, quickstart


def main(argv: list[str]) -> int:
    (config,) = parse_config([QuickstartConfig], argv, prog="llm4es quickstart", description=__doc__)
    quickstart(config)
    return 0
