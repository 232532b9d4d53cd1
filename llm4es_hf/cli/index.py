"""`llm4es index`: a FAISS index of user embeddings (exact, HNSW or compressed IVF) with labels, texts and a 2-D map."""

from __future__ import annotations

from ..config import parse_config
from ..errors import Llm4esError
from ..hub import push_index
from ..search import IndexConfig, IvfSettings, build_index_from_files


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
