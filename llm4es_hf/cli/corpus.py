"""`llm4es corpus`: build a corpus (serialized + enriched configs, dataset card) from a recipe YAML,
and publish it when asked: `llm4es corpus --recipe recipes/movielens/corpus.yaml --output-dir DIR`."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import parse_config
from ..corpus import CorpusConfig, build_corpus
from ..errors import Llm4esError
from ..hardware import process_state
from ..hub import publish_corpus


def _corpus_ready(folder: Path, config: str) -> bool:
    """The folder is a built corpus whose ``config`` holds what was asked for (enriched: real rewrites)."""
    summary = folder / "corpus_summary.json"
    if not (folder / config).is_dir() or not summary.exists():
        return False
    return config != "enriched" or bool(json.loads(summary.read_text()).get("enrichment"))


def ensure_corpus(corpus: str | None, recipe: str | None, config: str = "serialized") -> None:
    """Build ``corpus`` from ``recipe`` when it is missing, once per launch (`llm4es sft`, `contrastive`).

    Under a multi-process launch the main process builds while the others wait, then all read the
    same folder. A run that needs only plain texts skips the recipe's LLM rewrites (minutes of
    generation on a CPU that it would not use); `llm4es corpus --recipe ...` builds them.
    """
    if not (corpus and recipe) or _corpus_ready(Path(corpus), config):
        return
    state = process_state()
    with state.main_process_first():
        if state.is_main_process and not _corpus_ready(Path(corpus), config):
            (corpus_config,) = parse_config(
                [CorpusConfig], ["--config", recipe, "--output_dir", corpus], prog="llm4es corpus"
            )
            if config == "serialized":
                corpus_config.enrich_variants = []
            print(f"building the corpus {corpus} from {recipe} (config {config})")
            build_corpus(corpus_config)


def main(argv: list[str]) -> int:
    (config,) = parse_config([CorpusConfig], argv, prog="llm4es corpus", description=__doc__)
    if config.push_to_hub and not config.hub_repo_id:  # checked before minutes of building
        raise Llm4esError("--push_to_hub needs --hub_repo_id org/name", key="hub_repo_id")
    output = build_corpus(config)
    print(f"corpus written to {output}")
    if config.push_to_hub:
        url = publish_corpus(output, config.hub_repo_id, private=config.hub_private, hash_user_ids=config.hash_user_ids)
        print(f"published to {url} ({'private' if config.hub_private else 'public'})")
    return 0
