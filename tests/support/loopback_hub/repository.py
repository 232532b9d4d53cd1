"""The loopback Hub's repository model: blobs, commits, repos and the store that holds them (no HTTP here)."""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Same spirit as the `.gitattributes` the real Hub writes in every new repo: these files are stored with LFS.
DEFAULT_LFS_PATTERNS: tuple[str, ...] = (
    "*.7z",
    "*.arrow",
    "*.bin",
    "*.bz2",
    "*.ckpt",
    "*.ftz",
    "*.gz",
    "*.h5",
    "*.joblib",
    "*.lz4",
    "*.mlmodel",
    "*.model",
    "*.msgpack",
    "*.npy",
    "*.npz",
    "*.onnx",
    "*.ot",
    "*.parquet",
    "*.pb",
    "*.pickle",
    "*.pkl",
    "*.pt",
    "*.pth",
    "*.safetensors",
    "*.tar",
    "*.tflite",
    "*.tgz",
    "*.wasm",
    "*.xz",
    "*.zip",
    "*.zst",
    "*tfevents*",
)
DEFAULT_LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub also forces LFS above 10 MB

_TYPE_TO_PLURAL = {"model": "models", "dataset": "datasets", "space": "spaces", "kernel": "kernels"}
_PLURAL_TO_TYPE = {plural: singular for singular, plural in _TYPE_TO_PLURAL.items()}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/", "kernel": "kernels/"}


def _git_blob_oid(data: bytes) -> str:
    """Return the git SHA-1 of a blob."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _iso(moment: datetime) -> str:
    """Format a datetime the way the Hub does (`2024-01-02T03:04:05.678Z`)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class _Blob:
    """Immutable file content plus the hashes the Hub reports for it."""

    data: bytes
    lfs: bool
    sha256: str
    git_oid: str
    pointer_size: int

    @classmethod
    def create(cls, data: bytes, lfs: bool) -> _Blob:
        """Hash `data`; for LFS files the git oid is the one of the pointer file, as on the Hub."""
        sha256 = hashlib.sha256(data).hexdigest()
        if lfs:
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n".encode()
            return cls(data, True, sha256, _git_blob_oid(pointer), len(pointer))
        return cls(data, False, sha256, _git_blob_oid(data), 0)

    @property
    def etag(self) -> str:
        """ETag served by `resolve`: sha256 for LFS files, git oid otherwise."""
        return self.sha256 if self.lfs else self.git_oid


@dataclass
class HubCommit:
    """One commit: an immutable snapshot of the repo files."""

    oid: str
    parent: str | None
    title: str
    message: str
    date: datetime
    blobs: dict[str, _Blob] = field(repr=False)

    def files(self) -> dict[str, bytes]:
        """Return `{path: content}` for this snapshot."""
        return {path: blob.data for path, blob in sorted(self.blobs.items())}


@dataclass
class HubRepo:
    """Server-side state of one repo (inspect it from tests through `LoopbackHub.repo`)."""

    repo_id: str
    repo_type: str
    private: bool
    created_at: datetime
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    pull_requests: dict[int, str] = field(default_factory=dict)
    commits: dict[str, HubCommit] = field(default_factory=dict, repr=False)
    gated: bool | str = False

    def resolve(self, revision: str | None) -> HubCommit | None:
        """Resolve a branch, tag, `refs/...` name or (possibly abbreviated) commit oid to a commit."""
        revision = revision or "main"
        for refs, name in (
            (self.branches, revision.removeprefix("refs/heads/")),
            (self.tags, revision.removeprefix("refs/tags/")),
        ):
            if name in refs:
                return self.commits[refs[name]]
        if revision.startswith("refs/pr/") and revision[8:].isdigit() and int(revision[8:]) in self.pull_requests:
            return self.commits[self.pull_requests[int(revision[8:])]]
        if revision in self.commits:
            return self.commits[revision]
        if len(revision) >= 7 and all(c in "0123456789abcdef" for c in revision):
            matches = [oid for oid in self.commits if oid.startswith(revision)]
            if len(matches) == 1:
                return self.commits[matches[0]]
        return None

    def history(self, revision: str | None = None) -> list[HubCommit]:
        """Return the first-parent history of `revision`, newest first."""
        commit = self.resolve(revision)
        out: list[HubCommit] = []
        while commit is not None:
            out.append(commit)
            commit = self.commits.get(commit.parent) if commit.parent else None
        return out

    def files(self, revision: str | None = None) -> dict[str, bytes]:
        """Return `{path: content}` at `revision` (KeyError if it does not exist)."""
        commit = self.resolve(revision)
        if commit is None:
            raise KeyError(f"revision {revision!r} not found in {self.repo_type} {self.repo_id}")
        return commit.files()


class RepoStore:
    """The repos of one loopback Hub, with their LFS objects; every access holds `_lock` (the server is threaded).

    Args:
        lfs_patterns: glob patterns (on the file name or full path) of files stored with LFS.
        lfs_threshold: files larger than this are stored with LFS too (`None` disables it).
    """

    def __init__(
        self, lfs_patterns: tuple[str, ...] = DEFAULT_LFS_PATTERNS, lfs_threshold: int | None = DEFAULT_LFS_THRESHOLD
    ) -> None:
        self.lfs_patterns = tuple(lfs_patterns)
        self.lfs_threshold = lfs_threshold
        self._repos: dict[tuple[str, str], HubRepo] = {}
        self._lfs_objects: dict[str, bytes] = {}
        self._lock = threading.RLock()
        self._counter = itertools.count(1)

    # ------------------------------------------------------------------ inspection helpers

    def repo(self, repo_id: str, repo_type: str = "model") -> HubRepo:
        """Return the stored repo (KeyError if missing)."""
        with self._lock:
            return self._repos[(repo_type, repo_id)]

    def repo_ids(self, repo_type: str | None = None) -> list[str]:
        """List stored repo ids, optionally of one type."""
        with self._lock:
            return sorted(rid for rtype, rid in self._repos if repo_type is None or rtype == repo_type)

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """Return `{path: content}` of a repo at `revision` (includes the initial `.gitattributes`)."""
        with self._lock:
            return self.repo(repo_id, repo_type).files(revision)

    def create_repo(self, repo_id: str, repo_type: str = "model", *, private: bool = False) -> HubRepo:
        """Create a repo directly (server side), with the usual initial `.gitattributes` commit."""
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                raise ValueError(f"{repo_type} repo {repo_id} already exists")
            repo = HubRepo(repo_id=repo_id, repo_type=repo_type, private=private, created_at=_now())
            gitattributes = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in self.lfs_patterns)
            blobs = {".gitattributes": self._blob(".gitattributes", gitattributes.encode())}
            repo.branches["main"] = self._new_commit(repo, None, "initial commit", "", blobs).oid
            self._repos[(repo_type, repo_id)] = repo
            return repo

    # ------------------------------------------------------------------ internals: storage

    def _is_lfs(self, path: str, size: int) -> bool:
        name = path.rsplit("/", 1)[-1]
        if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in self.lfs_patterns):
            return True
        return self.lfs_threshold is not None and size > self.lfs_threshold

    def _blob(self, path: str, data: bytes) -> _Blob:
        return _Blob.create(data, lfs=len(data) > 0 and self._is_lfs(path, len(data)))

    def _new_commit(
        self, repo: HubRepo, parent: HubCommit | None, title: str, message: str, blobs: dict[str, _Blob]
    ) -> HubCommit:
        """Record a commit whose snapshot is `blobs` (the full file map)."""
        parent_oid = parent.oid if parent is not None else None
        seed = f"{next(self._counter)}|{parent_oid}|{title}|{sorted((p, b.git_oid) for p, b in blobs.items())}"
        commit = HubCommit(hashlib.sha1(seed.encode()).hexdigest(), parent_oid, title, message, _now(), blobs)
        repo.commits[commit.oid] = commit
        return commit


def _now() -> datetime:
    return datetime.now(UTC)


def _tree_oid(commit: HubCommit, directory: str) -> str:
    """Deterministic pseudo tree oid for a folder."""
    prefix = directory + "/"
    listing = "".join(f"{p}:{b.git_oid}\n" for p, b in sorted(commit.blobs.items()) if p.startswith(prefix))
    return hashlib.sha1(listing.encode()).hexdigest()


def _last_commit_touching(repo: HubRepo, commit: HubCommit, path: str, is_dir: bool) -> HubCommit:
    """Newest commit in the first-parent history of `commit` that changed `path`."""

    def state(c: HubCommit) -> str | None:
        if is_dir:
            return _tree_oid(c, path) if any(p.startswith(path + "/") for p in c.blobs) else None
        blob = c.blobs.get(path)
        return blob.git_oid if blob is not None else None

    current = commit
    while current.parent is not None:
        parent = repo.commits[current.parent]
        if state(parent) != state(current):
            return current
        current = parent
    return current


def _front_matter(content: str, strict: bool = False) -> dict[str, Any] | None:
    """Parse the YAML metadata block of a README (None when absent or, unless strict, invalid)."""
    import yaml  # PyYAML is a dependency of huggingface_hub

    if not content.startswith("---"):
        return None
    end = content.find("\n---", 3)
    if end == -1:
        return None
    try:
        data = yaml.safe_load(content[3:end])
    except yaml.YAMLError:
        if strict:
            raise
        return None
    if data is not None and not isinstance(data, dict):
        if strict:
            raise ValueError("README metadata must be a YAML mapping")
        return None
    return data
