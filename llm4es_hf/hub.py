"""Publishing to the Hugging Face Hub: corpus, model and index folders, private by default.

This module knows folders and their on-disk formats (``artifacts``), not the stages that made
them: "build, then publish" is the CLI's and the recipes' job.

Privacy guard: published corpora carry salted hashes of user ids unless told otherwise,
and columns the schema marks sensitive are refused. Tokens are read by huggingface_hub
from the environment or its login and are never printed or written into cards.

Faults: every publication is one commit (``create_commit`` with every file; not
``upload_folder``, which with hf_xet installed commits large folders in batches, and not
``datasets.push_to_hub``, which commits each config and then the card separately), so a
reader sees the repo before or after it, never half of it. Network errors, timeouts
(``LLM4ES_HUB_TIMEOUT`` seconds per operation; huggingface_hub waits forever by default),
HTTP 408/429/5xx are retried (``LLM4ES_HUB_RETRIES`` attempts, waits doubling from
``LLM4ES_HUB_BACKOFF`` seconds, or what ``Retry-After`` asks). A retry redoes the whole
commit: files are content-addressed, so files the Hub already has are neither sent nor
committed again, and a commit that landed although its answer was lost becomes a no-op
instead of a duplicate. Past the last attempt, an ``Llm4esError`` names the repo and what
it holds of the publication; rerunning the same command completes it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import hashlib
import math
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import datasets
from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete, DatasetCard, HfApi
from huggingface_hub.errors import HfHubHTTPError

from .artifacts import CONFIGS, INDEX_FILES, load_corpus_config
from .errors import Llm4esError
from .schema import load_schema
from .shards import shard_name

SALT_ENV = "LLM4ES_USER_ID_SALT"
TIMEOUT_ENV, RETRIES_ENV, BACKOFF_ENV = "LLM4ES_HUB_TIMEOUT", "LLM4ES_HUB_RETRIES", "LLM4ES_HUB_BACKOFF"
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)
ALWAYS_IGNORED = [".git/*", "*/.git/*", ".cache/*", "*/.cache/*", ".user_id_salt"]
SHARD_BYTES = 500 * 2**20  # as datasets' push_to_hub
T = TypeVar("T")


# ----- retries -------------------------------------------------------------------------


@dataclass
class RetryPolicy:
    """How hard publishing tries: attempts, the first wait (doubled each time, at most
    ``max_wait``) and the timeout of each network operation, in seconds."""

    attempts: int = 5
    first_wait: float = 2.0
    max_wait: float = 60.0
    timeout: float = 60.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """Defaults, overridden by $LLM4ES_HUB_RETRIES, $LLM4ES_HUB_BACKOFF, $LLM4ES_HUB_TIMEOUT."""
        policy = cls()
        for env, attr, kind in (
            (RETRIES_ENV, "attempts", int),
            (BACKOFF_ENV, "first_wait", float),
            (TIMEOUT_ENV, "timeout", float),
        ):
            if os.environ.get(env):
                try:
                    value = kind(os.environ[env])
                except ValueError:
                    raise Llm4esError(f"${env} must be a number, got {os.environ[env]!r}", key=env) from None
                if value <= 0 if attr != "first_wait" else value < 0:
                    raise Llm4esError(f"${env} must be positive, got {value}", key=env)
                setattr(policy, attr, value)
        return policy


def transient(err: BaseException) -> tuple[bool, float | None]:
    """Whether ``err`` (or what caused it) is worth retrying, and the wait the server asked for."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, HfHubHTTPError) and current.response is not None:
            status = current.response.status_code
            if status in TRANSIENT_STATUS:
                return True, _retry_after(current.response.headers.get("Retry-After"))
            return False, None
        names = {cls.__name__ for cls in type(current).__mro__}
        if names & {"TimeoutException", "NetworkError", "RemoteProtocolError", "TimeoutError", "ConnectionError"}:
            return True, None
        current = current.__cause__ or current.__context__
    return False, None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP date: wait the default
        return None


def with_retries(action: Callable[[], T], policy: RetryPolicy, what: str) -> T:
    """``action()``, again after transient failures (see ``transient``), at most ``policy.attempts`` times."""
    wait = policy.first_wait
    for attempt in range(1, policy.attempts + 1):
        try:
            return action()
        except Exception as err:
            retry, asked = transient(err)
            if not retry or attempt == policy.attempts:
                raise
            pause = min(policy.max_wait, asked if asked is not None else wait)
            print(f"{what}: attempt {attempt} failed ({_short(err)}); retrying in {pause:g} s")
            time.sleep(pause)
            wait = min(policy.max_wait, wait * 2)
    raise AssertionError("unreachable")


def step(action: Callable[[], T], policy: RetryPolicy, repo_id: str, what: str) -> T:
    """A step before anything is committed (``with_retries``); its final failure names the repo."""
    try:
        return with_retries(action, policy, f"{what} ({repo_id})")
    except Llm4esError:
        raise
    except Exception as err:
        retry, _ = transient(err)
        why = f"after {policy.attempts} attempts" if retry else "(not retried: not a transient error)"
        raise Llm4esError(
            f"publishing to repo {repo_id}: {what} failed {why}: {_short(err)}. Nothing was committed; "
            "rerun the same command when the Hub answers again.",
            key="repo_id",
        ) from err


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}"[:200]


@contextlib.contextmanager
def network_timeout(seconds: float) -> Iterator[None]:
    """huggingface_hub's shared HTTP client with a timeout per operation (its default has none:
    a stalled answer would hang forever), restored afterwards."""
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http

    previous = getattr(_http, "_GLOBAL_CLIENT_FACTORY", None) or _http.default_client_factory

    def factory() -> Any:
        client = previous()
        client.timeout = seconds
        return client

    set_client_factory(factory)
    try:
        yield
    finally:
        set_client_factory(previous)


# ----- one atomic commit of a folder ---------------------------------------------------


def _local_files(folder: Path, ignore: list[str]) -> dict[str, Path]:
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not any(fnmatch.fnmatch(rel, pattern) for pattern in ignore):
            files[rel] = path
    return files


def commit_folder(
    api: HfApi,
    repo_id: str,
    folder: Path,
    *,
    repo_type: str,
    message: str,
    ignore: list[str] | None = None,
    replace: list[str] | None = None,
    policy: RetryPolicy,
) -> CommitInfo:
    """Every file of ``folder`` in one commit to ``main``, deleting the repo's files that match
    ``replace`` patterns and are not in the folder (stale shards). Retried as a whole (see the
    module docstring); the final failure says what the repo holds of it."""
    files = _local_files(folder, [*ALWAYS_IGNORED, *(ignore or [])])

    def attempt() -> CommitInfo:
        operations: list[Any] = [
            CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(path)) for rel, path in files.items()
        ]
        if replace:
            remote = api.list_repo_files(repo_id, repo_type=repo_type)
            operations += [
                CommitOperationDelete(path_in_repo=rel)
                for rel in remote
                if rel not in files and rel != ".gitattributes" and any(fnmatch.fnmatch(rel, p) for p in replace)
            ]
        return api.create_commit(repo_id, operations=operations, commit_message=message, repo_type=repo_type)

    try:
        return with_retries(attempt, policy, f"publishing {folder} to {repo_id}")
    except Exception as err:
        raise Llm4esError(_failure(api, repo_id, repo_type, files, err, policy), key="repo_id") from err


def _git_oid(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _failure(
    api: HfApi, repo_id: str, repo_type: str, files: dict[str, Path], err: BaseException, policy: RetryPolicy
) -> str:
    """The final error: the repo, why, and which of our files it holds now (asked once more)."""
    retry, _ = transient(err)
    why = f"after {policy.attempts} attempts" if retry else "(not retried: not a transient error)"
    head = f"publishing to {repo_type} repo {repo_id} failed {why}: {_short(err)}."
    try:
        with network_timeout(min(policy.timeout, 30.0)):
            remote = {
                e.path: e
                for e in api.list_repo_tree(repo_id, repo_type=repo_type, recursive=True)
                if hasattr(e, "blob_id")
            }
    except Exception as check:  # noqa: BLE001 - the Hub may still be down: say so
        return (
            f"{head} Could not read what {repo_id} holds now ({_short(check)}). Rerun the same command to complete it."
        )
    held, missing = [], []
    for rel, path in files.items():
        entry = remote.get(rel)
        same = entry is not None and (
            entry.lfs.sha256 == _sha256(path) if entry.lfs else entry.blob_id == _git_oid(path)
        )
        (held if same else missing).append(rel)
    if not missing:
        state = f"{repo_id} already holds all {len(files)} files of this publication."
    elif not held:
        state = (
            f"nothing of this publication was committed: {repo_id} is as it was "
            f"({len(missing)} files not uploaded: {_listing(missing)})."
        )
    else:
        state = (
            f"{repo_id} holds {len(held)} of the {len(files)} files (uploaded earlier: {_listing(held)}); "
            f"not uploaded: {_listing(missing)}."
        )
    return f"{head} {state} Rerun the same command to complete it: files already on the Hub are not sent again."


def _listing(paths: list[str], at_most: int = 6) -> str:
    shown = ", ".join(paths[:at_most])
    return shown + (f" and {len(paths) - at_most} more" if len(paths) > at_most else "")


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
    policy: RetryPolicy | None = None,
) -> str:
    """Push both configs of a corpus folder and its card, in one commit; returns the repo URL.

    The configs are written as Parquet shards in the layout ``datasets.push_to_hub`` uses
    (``{config}/{split}-00000-of-00001.parquet``), the card gets their ``dataset_info``
    metadata, and everything goes in one commit that also removes stale shards of earlier
    publications, so a reader never sees one config without the other.
    """
    folder = Path(folder)
    if not (folder / "README.md").exists() or not (folder / "schema.yaml").exists():
        raise Llm4esError(
            "not a corpus folder (no README.md / schema.yaml); build it with `llm4es corpus`", file=folder
        )
    schema = load_schema(folder / "schema.yaml")
    salt = user_id_salt(folder) if hash_user_ids else None
    policy = policy or RetryPolicy.from_env()
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="llm4es-publish-") as staging:
        stage = Path(staging)
        infos = datasets.info.DatasetInfosDict()
        configs = [config for config in CONFIGS if (folder / config).is_dir()]  # sharded corpora: serialized only
        if "serialized" not in configs:
            raise Llm4esError("corpus has no 'serialized' config folder", file=folder)
        for config in configs:
            splits = load_corpus_config(folder, config)
            split_infos = datasets.SplitDict()
            for split, ds in splits.items():
                check_sensitive(ds, schema.sensitive, f"{folder}/{config}/{split}")
                if salt is not None:
                    ds = hash_ids(ds, salt)
                shards = max(1, math.ceil(ds.data.nbytes / SHARD_BYTES))
                for index in range(shards):
                    part = ds.shard(shards, index, contiguous=True)
                    part.to_parquet(stage / config / shard_name(split, index, shards))
                split_infos.add(datasets.SplitInfo(name=split, num_bytes=ds.data.nbytes, num_examples=len(ds)))
            infos[config] = datasets.DatasetInfo(features=ds.features, splits=split_infos, config_name=config)
        card = DatasetCard.load(folder / "README.md")
        infos.to_dataset_card_data(card.data)
        (stage / "README.md").write_text(str(card), encoding="utf-8")
        with network_timeout(policy.timeout):
            step(
                lambda: api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True),
                policy,
                repo_id,
                "creating the repo",
            )
            commit_folder(
                api,
                repo_id,
                stage,
                repo_type="dataset",
                message="LLM4ES corpus",
                replace=[f"{config}/*" for config in CONFIGS],
                policy=policy,
            )
    return f"{api.endpoint}/datasets/{repo_id}"


MODEL_IGNORE = ["checkpoint-*", "checkpoint-*/**", "runs/**", "*.pt", "training_args.bin"]


def push_model(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = True,
    token: str | None = None,
    policy: RetryPolicy | None = None,
) -> str:
    """Push a saved model folder to ``main`` (one commit) and record the run as its own branch.

    Checkpoints are excluded. An existing run branch is never overwritten (open-r1's rule):
    pick another ``revision``. Returns the commit URL.
    """
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise Llm4esError("not a saved model folder (no config.json)", file=folder)
    policy = policy or RetryPolicy.from_env()
    api = HfApi(token=token)
    revision = revision or "run-" + dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    with network_timeout(policy.timeout):
        step(lambda: api.create_repo(repo_id, private=private, exist_ok=True), policy, repo_id, "creating the repo")
        branches = step(lambda: _branches(api, repo_id), policy, repo_id, "listing the branches")
        if revision in branches:
            raise Llm4esError(
                f"revision {revision!r} already exists in {repo_id}; refusing to overwrite it", key="hub_revision"
            )
        commit = commit_folder(
            api,
            repo_id,
            folder,
            repo_type="model",
            message=f"LLM4ES model, run {revision}",
            ignore=MODEL_IGNORE,
            policy=policy,
        )

        def branch() -> None:
            try:
                api.create_branch(repo_id, branch=revision, revision=commit.oid)
            except HfHubHTTPError as err:  # a retry after an answer was lost: the branch is there
                if (
                    err.response is None
                    or err.response.status_code != 409
                    or _branches(api, repo_id).get(revision) != commit.oid
                ):
                    raise

        try:
            with_retries(branch, policy, f"creating branch {revision} of {repo_id}")
        except Exception as err:
            raise Llm4esError(
                f"model repo {repo_id}: the files are committed to main (commit {commit.oid[:12]}) but branch "
                f"{revision!r} could not be created: {_short(err)}. Rerun the same command to add it.",
                key="repo_id",
            ) from err
    print(f"pushed {folder} to {repo_id} (main and branch {revision!r}, {'private' if private else 'public'})")
    return commit.commit_url


def _branches(api: HfApi, repo_id: str) -> dict[str, str]:
    return {ref.name: ref.target_commit for ref in api.list_repo_refs(repo_id).branches}


def push_index(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = True,
    token: str | None = None,
    policy: RetryPolicy | None = None,
) -> str:
    """Push a user index folder (``llm4es index``) as a Hub data set repo in one commit, private
    by default, so a Space can load it with ``LLM4ES_INDEX=org/name``. Returns the commit URL."""
    folder = Path(folder)
    missing = [name for name in INDEX_FILES if not (folder / name).exists()]
    if missing:
        raise Llm4esError(f"not an index folder: missing {missing}", file=folder)
    policy = policy or RetryPolicy.from_env()
    api = HfApi(token=token)
    with network_timeout(policy.timeout):
        step(
            lambda: api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True),
            policy,
            repo_id,
            "creating the repo",
        )
        commit = commit_folder(api, repo_id, folder, repo_type="dataset", message="LLM4ES user index", policy=policy)
    return commit.commit_url
