"""`llm4es index`: a FAISS index of user embeddings (exact, HNSW or compressed IVF) with labels, texts and a 2-D map."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import parse_config
from ..errors import Llm4esError
from ..hub import push_index
from ..search import EXACT_MAX_USERS, HNSW_MAX_USERS, INDEX_KINDS, IvfSettings, build_index_from_files


@dataclass
class IndexConfig:
    """Options of `llm4es index`."""

    embeddings: str | None = field(
        default=None, metadata={"help": "Parquet file or shard folder written by `llm4es embed` (user_id, embedding)"}
    )
    output: str | None = field(default=None, metadata={"help": "index folder to write"})
    labels: str | None = field(
        default=None,
        metadata={"help": "corpus folder (labels, split, schema and texts come along) or a CSV/Parquet label table"},
    )
    model: str | None = field(
        default=None, metadata={"help": "the model that made the embeddings (folder or Hub id), recorded for queries"}
    )
    kind: str = field(
        default="auto",
        metadata={"help": f"one of {list(INDEX_KINDS)}: by size, exact inner product, HNSW, compressed IVF"},
    )
    exact_max_users: int = field(
        default=EXACT_MAX_USERS,
        metadata={"help": f"auto: exact up to this many users, HNSW above ({EXACT_MAX_USERS:,})"},
    )
    hnsw_max_users: int = field(
        default=HNSW_MAX_USERS,
        metadata={"help": f"auto: HNSW up to this many users, compressed IVF above ({HNSW_MAX_USERS:,})"},
    )
    ivf_codec: str = field(
        default=IvfSettings.codec,
        metadata={
            "help": "ivf: auto (fastscan from 256 dims, else SQ8), fastscan (4-bit PQ scan + SQ8 re-rank), "
            "SQ8 (1 byte per dimension), PQ<m> (m bytes)"
        },
    )
    ivf_nlist: int = field(default=0, metadata={"help": "ivf: inverted lists (0: about 2*sqrt(users))"})
    ivf_train_size: int = field(default=0, metadata={"help": "ivf: k-means sample (0: 50 per list, at most 200k)"})
    ivf_nprobe: int = field(default=0, metadata={"help": "ivf: lists visited per query (0: calibrated for the recall)"})
    ivf_target_recall: float = field(
        default=IvfSettings.target_recall,
        metadata={"help": "ivf: recall@10 against exact search that the calibrated nprobe must reach"},
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
        hnsw_max_users=config.hnsw_max_users,
        ivf=IvfSettings(
            codec=config.ivf_codec,
            nlist=config.ivf_nlist,
            train_size=config.ivf_train_size,
            nprobe=config.ivf_nprobe,
            target_recall=config.ivf_target_recall,
        ),
    )
    info = index.info
    detail = info["kind"]
    if info["kind"] == "ivf":
        ivf = info["ivf"]
        detail += (
            f" {ivf['codec']}, {ivf['nlist']:,} lists, nprobe {ivf['nprobe']} "
            f"(recall@{ivf['k']} {ivf['recall_at_k']:.3f} on {ivf['queries']} users)"
        )
    print(
        f"indexed {info['n_users']:,} users x {info['dimension']} dims ({detail}; "
        f"{info['memory']['index_bytes'] / 2**20:,.1f} MiB; "
        f"labels: {', '.join(index.label_columns) or 'none'}) -> {config.output}"
    )
    if config.push_to_hub:
        url = push_index(config.output, config.push_to_hub, private=not config.public)
        print(f"pushed to {url} ({'public' if config.public else 'private'})")
    return 0
