"""`llm4es embed`: user embeddings of a corpus' plain texts (Parquet: user_id, split, embedding).

--output X.parquet: one file (and a datasets folder beside it). --output FOLDER: one file per shard,
<split>-0000k-of-0000N.parquet (one per corpus file, or --num-shards row ranges per split), each
written whole or not at all, with a manifest.json; rerunning the same command resumes (finished
shards are skipped) and a folder of another run is refused. Put `accelerate launch [--config_file
...] -m llm4es_hf.cli` in front to split users (one file) or shards (folder) over processes.
"""

from __future__ import annotations

from ..config import parse_config
from ..embedding.run import EmbedConfig, run_embed


def main(argv: list[str]) -> int:
    (config,) = parse_config([EmbedConfig], argv, prog="llm4es embed", description=__doc__)
    return run_embed(config)
