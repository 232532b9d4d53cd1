"""`llm4es quickstart`: the main job on the embedded defaults (bundled MovieLens-100K and SmolLM2), offline."""

from __future__ import annotations

from ..config import parse_config
from ..quickstart import QuickstartConfig, quickstart


def main(argv: list[str]) -> int:
    (config,) = parse_config([QuickstartConfig], argv, prog="llm4es quickstart", description=__doc__)
    quickstart(config)
    return 0
