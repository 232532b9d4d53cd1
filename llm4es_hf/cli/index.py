"""`llm4es index`: a FAISS index of user embeddings (exact or HNSW) with labels, texts and a 2-D map."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import parse_config
from ..errors import Llm4esError
from ..hub import push_index
from ..search import EXACT_MAX_USERS, INDEX_KINDS, build_index_from_files


@dataclass
class IndexConfig:
    """Options of `llm4es index`."""

    embeddings: str | None = field(
        default=None, metadata={"help": "Parquet written by `llm4es embed` (user_id, embedding)"}
    )
    output: str | None = field(default=None, metadata={"help": "index folder to write"})
    labels: str | None = field(
        default=None,
        metadata={"help": "corpus folder (labels, split, schema and texts come along) or a CSV/Parquet label table"},
    )
    model: str | None = field(
        default=None, metadata={"help": "the model that made the embeddings (folder or Hub id), recorded for queries"}
    )
    kind: str = field(default="auto", metadata={"help": f"one of {list(INDEX_KINDS)}: exact inner product, HNSW"})
    exact_max_users: int = field(
        default=EXACT_MAX_USERS,
        metadata={"help": f"auto: exact up to this many users, HNSW above ({EXACT_MAX_USERS:,})"},
    )
    push_to_hub: str | None = field(
        default=None, metadata={"help": "ORG/NAME: also push the folder as a Hub data set repo"}
    )
    public: bool = field(default=False, metadata={"help": "with --push-to-hub: public (default: private)"})


def main(argv: list[str]) -> int:
    (config,) = parse_config([IndexConfig], argv, prog="llm4es index", description=__doc__)
    if not config.embeddings or not config.output:
        raise Llm4esError(
            "--embeddings and --output are required", key="embeddings" if not config.embeddings else "output"
        )
    index = build_index_from_files(
        config.embeddings,
        config.output,
        labels=config.labels,
        model=config.model,
        kind=config.kind,
        exact_max_users=config.exact_max_users,
    )
    print(
        f"indexed {index.info['n_users']:,} users x {index.info['dimension']} dims ({index.info['kind']}; "
        f"labels: {', '.join(index.label_columns) or 'none'}) -> {config.output}"
    )
    if config.push_to_hub:
        url = push_index(config.output, config.push_to_hub, private=not config.public)
        print(f"pushed to {url} ({'public' if config.public else 'private'})")
    return 0
