"""Optional dependencies, each behind an extra: a missing one is an error that names the extra.

``eval`` (lightgbm, matplotlib), ``search`` (faiss), ``space`` (gradio), ``coles``
(pytorch-lifestream); ``dev`` installs them all. The core install serializes, trains and embeds.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import Llm4esError

EXTRAS = {"lightgbm": "eval", "matplotlib": "eval", "faiss": "search", "gradio": "space", "ptls": "coles"}


def require(module: str) -> ModuleType:
    """Import an optional dependency (``module`` may be dotted: ``matplotlib.pyplot``)."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra = EXTRAS.get(top, "dev")
        raise Llm4esError(f"{top} is not installed; install the extra: pip install 'llm4es-hf[{extra}]'") from err
