"""Every tokenizer and model load: a bundled name, a local folder or a Hub id, one clear error.

Bundled names (``smollm2-135m``, ``gemma3-270m``) resolve to the checkpoint converted once from the packaged
GGUF file (``assets``); anything else goes to ``from_pretrained`` as it is. A tokenizer
without a pad token gets its EOS token as pad, since every stage here pads batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .assets import BUNDLED_MODELS, resolve_model
from .errors import Llm4esError

HEADS = ("causal-lm", "base")


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report (a base model loaded from a causal-LM checkpoint always
    'drops' lm_head, which is expected here)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _cannot_load(what: str, name: str, err: Exception, key: str) -> Llm4esError:
    return Llm4esError(
        f"cannot load {what} {name!r}: not a bundled name ({', '.join(BUNDLED_MODELS)}), a local folder, "
        f"or a Hub id reachable now (offline?): {err}",
        key=key,
    )


def load_tokenizer(
    name_or_path: str, *, padding_side: str | None = None, key: str = "tokenizer", what: str = "tokenizer"
) -> Any:
    """The (fast) tokenizer of a bundled model name, a folder or a Hub id, with a pad token."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(name_or_path))
    except (OSError, ValueError) as err:
        raise _cannot_load(what, name_or_path, err, key) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if padding_side is not None:
        tokenizer.padding_side = padding_side
    return tokenizer


def load_model(
    name_or_path: str,
    *,
    head: str = "causal-lm",
    dtype: torch.dtype = torch.float32,
    padding_side: str | None = None,
    key: str = "model",
    attn_implementation: str | None = None,
) -> tuple[Any, Any, str]:
    """``(tokenizer, model, resolved path)``; ``head`` "causal-lm" keeps the LM head (training,
    generation), "base" loads the decoder body alone (embeddings). ``attn_implementation``
    (``sdpa``, ``flash_attention_2``, ``eager``): None is transformers' default."""
    from transformers import AutoModel, AutoModelForCausalLM

    if head not in HEADS:
        raise Llm4esError(f"head must be one of {list(HEADS)}, got {head!r}", key="head")
    resolved = resolve_model(name_or_path)
    if Path(resolved).is_dir() and not (Path(resolved) / "config.json").exists():
        raise Llm4esError("model folder has no config.json (not a saved transformers model)", file=resolved)
    tokenizer = load_tokenizer(name_or_path, padding_side=padding_side, key=key, what="model")
    loader = AutoModelForCausalLM if head == "causal-lm" else AutoModel
    attention = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        with quiet_transformers():
            model = loader.from_pretrained(resolved, dtype=dtype, **attention)
    except OSError as err:
        raise _cannot_load("model", name_or_path, err, key) from err
    except ImportError as err:  # flash_attention_2 without the flash-attn package
        raise Llm4esError(
            f"attn_implementation {attn_implementation!r} cannot be used here ({err}); install its package "
            "or set attn_implementation: sdpa",
            key="attn_implementation",
        ) from err
    return tokenizer, model, resolved
