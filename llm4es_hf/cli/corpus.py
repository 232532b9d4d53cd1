"""`llm4es corpus`: build a corpus (serialized + enriched configs, dataset card) from a recipe YAML,
and publish it when asked: `llm4es corpus --recipe recipes/movielens/corpus.yaml --output-dir DIR`."""

from __future__ import annotations

from ..config import parse_config
from ..corpus import CorpusConfig, build_corpus
from ..errors import Llm4esError
from ..hub import publish_corpus


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
