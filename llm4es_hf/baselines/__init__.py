"""The baselines LLM4ES embeddings are compared with, by ``llm4es evaluate --baselines``.

- ``classic``: hand-made features from the raw events (aggregates, bag of categories) and the registry
  ``BASELINES`` the evaluation looks them up in;
- ``coles``: CoLES (pytorch-lifestream) trained in its own environment, through
- ``ptls_worker``: the script that runs inside that environment (a subprocess, never imported here).
"""

from typing import Any

__all__ = ["BASELINES", "aggregate_features", "bag_of_categories"]


def __getattr__(name: str) -> Any:
    """The names of ``classic``, loaded on first use: ``python -m llm4es_hf.baselines.coles setup`` then
    runs ``coles`` without importing it twice."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import classic

    return getattr(classic, name)
