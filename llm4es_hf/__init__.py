"""llm4es-hf: user embeddings from event sequences with a fine-tuned LLM (LLM4ES) on the Hugging Face stack.

The front door for Python users::

    from llm4es_hf import UserEncoder
    encoder = UserEncoder.from_pretrained("org/llm4es-rosbank")   # or a local model folder
    user_ids, vectors = encoder.encode_events(events)               # raw events, the schema's columns

``EventSchema`` describes a data set, ``Serializer`` turns users into text, ``UserIndex`` finds
nearest users, ``evaluate_embeddings`` scores vectors with the paper's protocol.
"""

import importlib
from typing import Any

# name -> module: loaded on first use, so `import llm4es_hf` stays light and the evaluation's and
# the index's optional extras (lightgbm, faiss) are needed only by those who use them.
_EXPORTS = {
    "Embedder": "embedding",
    "UserEncoder": "embedding",
    "Llm4esError": "errors",
    "EvaluationReport": "evaluation",
    "evaluate_embeddings": "evaluation",
    "EventSchema": "schema",
    "load_schema": "schema",
    "UserIndex": "search",
    "Serializer": "serialize",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'llm4es_hf' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
