"""`llm4es publish-corpus FOLDER --repo-id org/name`: push a corpus folder (both configs, its card) to the Hub."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import parse_config
from ..errors import Llm4esError
from ..hub import publish_corpus


@dataclass
class PublishCorpusConfig:
    """Options of `llm4es publish-corpus`."""

    folder: str | None = field(default=None, metadata={"help": "a corpus folder written by `llm4es corpus`"})
    repo_id: str | None = field(default=None, metadata={"help": "org/name of the Hub data set"})
    public: bool = field(default=False, metadata={"help": "publish publicly (default: private)"})
    keep_user_ids: bool = field(default=False, metadata={"help": "publish raw user ids (default: salted hashes)"})


def main(argv: list[str]) -> int:
    (config,) = parse_config(
        [PublishCorpusConfig], argv, prog="llm4es publish-corpus", description=__doc__, positional=["folder"]
    )
    if not config.folder or not config.repo_id:
        raise Llm4esError("give the corpus folder and --repo-id org/name", key="repo_id")
    url = publish_corpus(
        config.folder, config.repo_id, private=not config.public, hash_user_ids=not config.keep_user_ids
    )
    print(f"published {config.folder} to {url} ({'public' if config.public else 'private'})")
    return 0
