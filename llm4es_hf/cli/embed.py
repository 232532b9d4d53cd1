"""`llm4es embed`: user embeddings of a corpus' plain texts (Parquet: user_id, split, embedding).

Put `accelerate launch [--config_file ...] -m llm4es_hf.cli` in front to split users over processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from accelerate import PartialState

from ..artifacts import embedding_settings, load_texts, save_embeddings
from ..config import parse_config
from ..embed import DTYPES, POOL_TOKENS, POOLINGS, Embedder, embed_dataset
from ..errors import Llm4esError


@dataclass
class EmbedConfig:
    """Options of `llm4es embed`."""

    model: str | None = field(
        default=None, metadata={"help": "model folder, Hub id, or bundled name (smollm2-135m, gemma3-270m)"}
    )
    corpus: str | None = field(default=None, metadata={"help": "corpus folder or Hub data set id (plain texts)"})
    output: str | None = field(default=None, metadata={"help": "Parquet file to write (user_id, split, embedding)"})
    corpus_config: str = field(default="serialized", metadata={"help": "corpus config holding the plain texts"})
    splits: list[str] = field(default_factory=list, metadata={"help": "splits to embed (default: all)"})
    layer_start: int | None = field(
        default=None, metadata={"help": "first hidden state averaged (default: the model's export, else L/3)"}
    )
    pooling: str | None = field(default=None, metadata={"help": f"one of {list(POOLINGS)} (default: mean)"})
    max_length: int | None = field(
        default=None, metadata={"help": "tokens per user, most recent kept (default: the model's export, else 2048)"}
    )
    batch_size: int = field(default=8, metadata={"help": "texts per forward pass"})
    dtype: str = field(
        default="auto", metadata={"help": f"one of {list(DTYPES)}; auto: bf16 where the hardware has it"}
    )
    pool_tokens: str = field(
        default="all", metadata={"help": f"one of {list(POOL_TOKENS)}; events: average the event tokens only"}
    )
    weight_field: int | None = field(
        default=None, metadata={"help": "weight each event by this comma-separated value of its line (-1: the last)"}
    )
    echo: bool = field(default=False, metadata={"help": "run the text twice, pool the second copy"})
    suffix: str | None = field(
        default=None, metadata={"help": "text appended after each user's text (a summarizing prompt; --pooling last)"}
    )


def main(argv: list[str]) -> int:
    (config,) = parse_config([EmbedConfig], argv, prog="llm4es embed", description=__doc__)
    missing = [name for name in ("model", "corpus", "output") if not getattr(config, name)]
    if missing:
        raise Llm4esError(f"--{missing[0]} is required", key=missing[0])
    saved = embedding_settings(config.model)  # what the model was exported with, if it was
    embedder = Embedder(
        config.model,
        layer_start=config.layer_start if config.layer_start is not None else saved.get("layer_start"),
        pooling=config.pooling or saved.get("pooling", "mean"),
        max_length=config.max_length or saved.get("max_length", 2048),
        dtype=config.dtype,
        pool_tokens=config.pool_tokens,
        weight_field=config.weight_field,
        echo=config.echo,
        suffix=config.suffix,
    )
    texts = load_texts(config.corpus, config.corpus_config, config.splits or None)
    embeddings = embed_dataset(embedder, texts, batch_size=config.batch_size)
    if PartialState().is_main_process:
        save_embeddings(config.output, texts["user_id"], embeddings, extra={"split": texts["split"]})
        print(
            f"{len(texts):,} users x {embeddings.shape[1]} dims (layers {embedder.layer_start}..."
            f"{embedder.num_layers}, {embedder.pooling} pooling, {str(embedder.dtype).replace('torch.', '')}) "
            f"-> {config.output}"
        )
    return 0
