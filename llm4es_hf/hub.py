"""Publishing to the Hugging Face Hub: corpus, model and index folders, private by default.

This module knows folders and their on-disk formats (``artifacts``), not the stages that made
them: "build, then publish" is the CLI's and the recipes' job.

Privacy guard: published corpora carry salted hashes of user ids unless told otherwise,
and columns the schema marks sensitive are refused. Tokens are read by huggingface_hub
from the environment or its login and are never printed or written into cards.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
from pathlib import Path

import datasets
from huggingface_hub import DatasetCard, HfApi

from .artifacts import CONFIGS, INDEX_FILES, load_corpus_config
from .errors import Llm4esError
from .schema import load_schema

SALT_ENV = "LLM4ES_USER_ID_SALT"


def user_id_salt(folder: Path) -> str:
    """The salt for hashing user ids: $LLM4ES_USER_ID_SALT, else one kept in the corpus folder
    (created once, never published) so the local mapping stays reproducible."""
    if os.environ.get(SALT_ENV):
        return os.environ[SALT_ENV]
    path = folder / ".user_id_salt"
    if not path.exists():
        path.write_text(secrets.token_hex(16))
        path.chmod(0o600)
    return path.read_text().strip()


def hash_ids(ds: datasets.Dataset, salt: str) -> datasets.Dataset:
    """Replace ``user_id`` by the first 16 hex digits of sha256(salt + id)."""

    def _hash(batch: dict) -> dict:
        return {"user_id": [hashlib.sha256((salt + str(u)).encode()).hexdigest()[:16] for u in batch["user_id"]]}

    return ds.map(_hash, batched=True, desc="Hashing user ids")


def check_sensitive(ds: datasets.Dataset, sensitive: list[str], where: str) -> None:
    """Refuse to publish a column the schema marks sensitive."""
    leaked = [column for column in ds.column_names if column in set(sensitive)]
    if leaked:
        raise Llm4esError(
            f"refusing to publish sensitive column(s) {leaked} (schema `sensitive`)", file=where, column=leaked[0]
        )


def publish_corpus(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = True,
    hash_user_ids: bool = True,
    token: str | None = None,
) -> str:
    """Push both configs of a corpus folder and its card; returns the repo URL.

    The card is loaded back from the Hub after the configs are pushed (push_to_hub wrote
    its ``configs``/``dataset_info`` metadata), our text and metadata are merged in, and
    the card is pushed again, so that metadata is kept.
    """
    folder = Path(folder)
    if not (folder / "README.md").exists() or not (folder / "schema.yaml").exists():
        raise Llm4esError(
            "not a corpus folder (no README.md / schema.yaml); build it with `llm4es corpus`", file=folder
        )
    schema = load_schema(folder / "schema.yaml")
    salt = user_id_salt(folder) if hash_user_ids else None
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    for config in CONFIGS:
        if not (folder / config).is_dir():
            raise Llm4esError(f"corpus has no {config!r} config folder", file=folder)
        splits = load_corpus_config(folder, config)
        for split, ds in splits.items():
            check_sensitive(ds, schema.sensitive, f"{folder}/{config}/{split}")
            if salt is not None:
                splits[split] = hash_ids(ds, salt)
        splits.push_to_hub(repo_id, config_name=config, private=private, token=token)

    local = DatasetCard.load(folder / "README.md")
    card = DatasetCard.load(repo_id, repo_type="dataset", token=token)
    merged = card.data.to_dict()
    for key, value in local.data.to_dict().items():
        if key not in ("configs", "dataset_info"):
            merged[key] = value
    card.data = type(card.data)(**merged)
    card.text = local.text
    card.push_to_hub(repo_id, repo_type="dataset", token=token)
    return f"{api.endpoint}/datasets/{repo_id}"


MODEL_IGNORE = ["checkpoint-*", "checkpoint-*/**", "runs/**", "*.pt", "training_args.bin"]


def push_model(
    folder: str | Path, repo_id: str, *, revision: str | None = None, private: bool = True, token: str | None = None
) -> str:
    """Push a saved model folder to ``main`` and record the run as its own branch.

    Checkpoints are excluded. An existing run branch is never overwritten (open-r1's rule):
    pick another ``revision``. Returns the commit URL.
    """
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise Llm4esError("not a saved model folder (no config.json)", file=folder)
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    revision = revision or "run-" + dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    branches = {ref.name for ref in api.list_repo_refs(repo_id).branches}
    if revision in branches:
        raise Llm4esError(
            f"revision {revision!r} already exists in {repo_id}; refusing to overwrite it", key="hub_revision"
        )
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        ignore_patterns=MODEL_IGNORE,
        commit_message=f"LLM4ES model, run {revision}",
    )
    api.create_branch(repo_id, branch=revision, revision=commit.oid)
    print(f"pushed {folder} to {repo_id} (main and branch {revision!r}, {'private' if private else 'public'})")
    return commit.commit_url


def push_index(folder: str | Path, repo_id: str, *, private: bool = True, token: str | None = None) -> str:
    """Push a user index folder (``llm4es index``) as a Hub data set repo, private by default,
    so a Space can load it with ``LLM4ES_INDEX=org/name``. Returns the commit URL."""
    folder = Path(folder)
    missing = [name for name in INDEX_FILES if not (folder / name).exists()]
    if missing:
        raise Llm4esError(f"not an index folder: missing {missing}", file=folder)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id, repo_type="dataset", folder_path=str(folder), commit_message="LLM4ES user index"
    )
    return commit.commit_url
