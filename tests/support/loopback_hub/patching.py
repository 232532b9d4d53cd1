"""Point huggingface_hub, datasets and transformers at a loopback Hub: the environment, the constants the
libraries copied at import time, their cached clients, and the `loopback_hub` pytest fixture."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.loopback_hub.server import LoopbackHub


def patch_hf_environment(monkeypatch: pytest.MonkeyPatch, endpoint: str, home: Path, token: str = "hf_fake") -> None:
    """Point huggingface_hub / datasets / transformers at `endpoint`, with caches under `home`.

    Sets the environment variables *and* the module constants the libraries copied at import time
    (`huggingface_hub.constants.ENDPOINT`, `HUGGINGFACE_CO_URL_TEMPLATE`, `HF_HUB_OFFLINE`, cache paths, the
    module-level `huggingface_hub.hf_api.api` instance used by `upload_file` & co, `datasets.config.HF_ENDPOINT`,
    `HF_HUB_OFFLINE`, cache paths, ...). Also disables Xet (uploads go through the legacy LFS protocol), the
    dataset-viewer parquet-export lookup and the datasets download counter, which would otherwise leave loopback.
    """
    home = Path(home)
    hub_cache, datasets_cache = home / "hub", home / "datasets"
    env = {
        "HF_ENDPOINT": endpoint,
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_TOKEN": token,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(hub_cache),
        "HF_DATASETS_CACHE": str(datasets_cache),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_CACHE", "HUGGINGFACE_CO_STAGING", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)

    from huggingface_hub import constants, hf_api

    host = urlsplit(endpoint).hostname or "127.0.0.1"
    hub_constants: dict[str, object] = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": frozenset(constants.HF_URL_HOSTS | {host}),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(hub_cache),
        "HUGGINGFACE_HUB_CACHE": str(hub_cache),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
    }
    for attr, constant in hub_constants.items():
        if hasattr(constants, attr):
            monkeypatch.setattr(constants, attr, constant)
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)

    if "datasets" in sys.modules or importlib.util.find_spec("datasets") is not None:
        ds_config = importlib.import_module("datasets.config")
        ds_constants: dict[str, object] = {
            "HF_ENDPOINT": endpoint,
            "HUB_DATASETS_URL": endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}",
            "HF_HUB_OFFLINE": False,
            "HF_DATASETS_OFFLINE": False,
            "HF_UPDATE_DOWNLOAD_COUNTS": False,
            "USE_PARQUET_EXPORT": False,
            "HF_CACHE_HOME": str(home),
            "HF_DATASETS_CACHE": datasets_cache,
            "HF_MODULES_CACHE": home / "modules",
            "DOWNLOADED_DATASETS_PATH": datasets_cache / "downloads",
            "EXTRACTED_DATASETS_PATH": datasets_cache / "downloads" / "extracted",
        }
        for attr, constant in ds_constants.items():
            if hasattr(ds_config, attr):
                monkeypatch.setattr(ds_config, attr, constant)

    _reset_library_caches()


def _reset_library_caches() -> None:
    """Drop cached clients that captured an endpoint (transformers' shared HfApi, fsspec HfFileSystem instances)."""
    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None and hasattr(transformers_hub, "_hf_api"):
        setattr(transformers_hub, "_hf_api", None)  # noqa: B010 - rebuilt lazily with the current ENDPOINT
    from huggingface_hub import HfFileSystem

    HfFileSystem.clear_instance_cache()


@pytest.fixture
def loopback_hub(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackHub]:
    """A started `LoopbackHub` with huggingface_hub/datasets/transformers pointed at it (fresh caches)."""
    home = tmp_path_factory.mktemp("hf_home")
    with LoopbackHub() as hub:
        patch_hf_environment(monkeypatch, hub.endpoint, home)
        try:
            yield hub
        finally:
            _reset_library_caches()
