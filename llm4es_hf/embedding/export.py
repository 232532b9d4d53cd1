"""``export_sentence_transformer``: the embedding as SentenceTransformer modules inside a model folder
(Transformer -> WeightedLayerPooling -> Pooling), so ``SentenceTransformer(path).encode`` gives
``llm4es embed``'s vectors without ``trust_remote_code``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import Llm4esError
from .embedder import DEFAULT_MAX_LENGTH, POOLINGS, check_layer_range, default_layer_start


def export_sentence_transformer(
    model_dir: str | Path,
    *,
    layer_start: int | None = None,
    layer_end: int | None = None,
    pooling: str = "mean",
    max_length: int = DEFAULT_MAX_LENGTH,
) -> Path:
    """Add SentenceTransformer modules to a saved model folder: Transformer at the root (with
    ``output_hidden_states``, and ``num_hidden_layers=layer_end`` when the forward stops early),
    ``1_WeightedLayerPooling`` (equal weights over hidden_states[k:e]) and ``2_Pooling`` (mean or
    lasttoken). The root weights, config and card are left as they are, so AutoModel /
    AutoModelForCausalLM keep loading the folder.
    """
    from sentence_transformers.sentence_transformer.modules import Pooling, WeightedLayerPooling
    from transformers import AutoConfig

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise Llm4esError("not a saved model folder (no config.json)", file=model_dir)
    if pooling not in POOLINGS:
        raise Llm4esError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}", key="pooling")
    config = AutoConfig.from_pretrained(model_dir)
    num_layers, hidden = config.num_hidden_layers, config.hidden_size
    start = default_layer_start(num_layers) if layer_start is None else layer_start
    end = num_layers if layer_end is None else layer_end
    check_layer_range(start, end, num_layers)
    config_kwargs: dict[str, Any] = {"output_hidden_states": True}
    if end < num_layers:
        config_kwargs["num_hidden_layers"] = end  # the Transformer module loads the first `end` layers only
    modules = [
        ("", "sentence_transformers.base.modules.transformer.Transformer"),
        (
            "1_WeightedLayerPooling",
            "sentence_transformers.sentence_transformer.modules.weighted_layer_pooling.WeightedLayerPooling",
        ),
        ("2_Pooling", "sentence_transformers.sentence_transformer.modules.pooling.Pooling"),
    ]
    (model_dir / "modules.json").write_text(
        json.dumps(
            [{"idx": i, "name": str(i), "path": path, "type": kind} for i, (path, kind) in enumerate(modules)], indent=2
        )
    )
    (model_dir / "sentence_bert_config.json").write_text(
        json.dumps(
            {
                "transformer_task": "feature-extraction",
                "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
                "module_output_name": "token_embeddings",
                "config_kwargs": config_kwargs,
                # keep the most recent events (left truncation), as training and `llm4es embed` do
                "processor_kwargs": {
                    "truncation_side": "left",
                    "padding_side": "right",
                    "model_max_length": max_length,
                },
            },
            indent=2,
        )
    )
    (model_dir / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "model_type": "SentenceTransformer",
                "prompts": {},
                "default_prompt_name": None,
                "similarity_fn_name": "cosine",
            },
            indent=2,
        )
    )
    layer_folder = model_dir / "1_WeightedLayerPooling"
    layer_folder.mkdir(exist_ok=True)
    WeightedLayerPooling(hidden, num_hidden_layers=end, layer_start=start).save(str(layer_folder))
    pool_folder = model_dir / "2_Pooling"
    pool_folder.mkdir(exist_ok=True)
    Pooling(hidden, pooling_mode="lasttoken" if pooling == "last" else "mean").save(str(pool_folder))
    (model_dir / "llm4es_embedding.json").write_text(
        json.dumps(
            {
                "layer_start": start,
                "layer_end": end,
                "num_layers": num_layers,
                "pooling": pooling,
                "max_length": max_length,
            },
            indent=2,
        )
    )
    return model_dir
