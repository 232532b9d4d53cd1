"""A loopback Hugging Face Hub for tests.

`LoopbackHub` is an in-memory HTTP server (stdlib `ThreadingHTTPServer`, bound to 127.0.0.1 only) that speaks
the subset of the Hub HTTP API used by `huggingface_hub` 2.4, `datasets` 5.2 and `transformers` 5.x: repo
creation/settings/deletion, branches and tags, the preupload + NDJSON commit endpoints, the legacy LFS "basic"
transfer, repo info, tree/paths-info listings, commit history and `resolve` downloads (HEAD/GET, ranges).

Faults can be injected (`LoopbackHub.inject(Fault...)`): an HTTP error status (500, 503, 429 with `Retry-After`),
the connection dropped mid-upload (part of the body read, no answer), or an answer slower than the client's timeout
(the request is carried out, then the answer waits); `Fault.apply=True` on a dropped request carries it out first
(the commit lands, its answer is lost). Each fault hits the first `times` matching requests after `skip` of them.

Use the `loopback_hub` pytest fixture, which also points the already-imported libraries at the server (they
copy `HF_ENDPOINT` and friends into module constants at import time, so setting the environment is not enough).
See `patch_hf_environment` for the full list of what is patched.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import importlib
import importlib.util
import itertools
import json
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

__all__ = [
    "DEFAULT_LFS_PATTERNS",
    "Fault",
    "HubCommit",
    "HubRepo",
    "LoopbackHub",
    "loopback_hub",
    "patch_hf_environment",
]

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


def _truthy(value: Any) -> bool:
    """Interpret a query-string / form / JSON flag."""
    if isinstance(value, list):
        value = value[-1] if value else ""
    return str(value).strip().lower() in ("1", "true", "yes", "on")


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


@dataclass
class Fault:
    """A failure injected into the requests whose method and path (fnmatch patterns, e.g.
    `"/api/*/commit/*"`, `"/_lfs/*"`) match: the first `times` of them after `skip` (`times=-1`: all).

    kind: `"status"` answers `status` (with a `Retry-After: retry_after` header when set) without
    carrying the request out; `"drop"` reads half the body and closes the connection without an
    answer (with `apply`, carries the request out and drops the answer); `"slow"` carries the request
    out and answers after `delay` seconds.
    """

    kind: str = "status"
    method: str = "*"
    path: str = "*"
    times: int = 1
    skip: int = 0
    status: int = 500
    retry_after: float | None = None
    delay: float = 0.0
    apply: bool = False
    seen: int = 0
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("status", "drop", "slow"):
            raise ValueError(f"unknown fault kind {self.kind!r}")

    def take(self, method: str, path: str) -> bool:
        """Whether this request is hit (counts it; call under the hub's lock)."""
        if not (fnmatch.fnmatch(method, self.method) and fnmatch.fnmatch(path, self.path)):
            return False
        self.seen += 1
        if self.seen <= self.skip or (self.times >= 0 and self.hits >= self.times):
            return False
        self.hits += 1
        return True


class _HttpError(Exception):
    """An error answered to the client, with the Hub's `X-Error-Code` convention."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})


@dataclass
class _Response:
    """A response to write back."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> _Response:
        """Build a JSON response."""
        return cls(status=status, body=json.dumps(payload).encode())


@dataclass
class _Request:
    """A parsed request."""

    method: str
    segments: list[str]  # still percent-encoded
    query: dict[str, list[str]]
    headers: Message
    body: bytes

    @property
    def authorized(self) -> bool:
        """Any bearer token is accepted."""
        return self.headers.get("Authorization", "").lower().startswith("bearer ")

    def json(self) -> Any:
        """Decode a JSON body (empty body -> {})."""
        return json.loads(self.body) if self.body.strip() else {}


class LoopbackHub:
    """In-memory Hugging Face Hub served on 127.0.0.1.

    Args:
        user: name returned by `whoami` and used as default namespace.
        lfs_patterns: glob patterns (on the file name or full path) of files stored with LFS. Pass `()` to answer
            every preupload with `uploadMode: "regular"`.
        lfs_threshold: files larger than this are stored with LFS too (`None` disables it).
        port: TCP port, 0 for a free one.

    Uploading LFS files requires the legacy LFS protocol, i.e. `HF_HUB_DISABLE_XET=1` (the fixture sets it);
    with `hf_xet` enabled, `huggingface_hub` would try to reach a Xet CAS server instead.
    """

    def __init__(
        self,
        *,
        user: str = "loopback-user",
        lfs_patterns: tuple[str, ...] = DEFAULT_LFS_PATTERNS,
        lfs_threshold: int | None = DEFAULT_LFS_THRESHOLD,
        port: int = 0,
    ) -> None:
        self.user = user
        self.lfs_patterns = tuple(lfs_patterns)
        self.lfs_threshold = lfs_threshold
        self.requests: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self._port = port
        self._repos: dict[tuple[str, str], HubRepo] = {}
        self._lfs_objects: dict[str, bytes] = {}
        self._lock = threading.RLock()
        self._counter = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Start serving in a background thread and return the endpoint URL."""
        if self._server is None:
            self._server = _Server(("127.0.0.1", self._port), _Handler, self)
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="loopback-hub", daemon=True
            )
            self._thread.start()
        return self.endpoint

    def stop(self) -> None:
        """Stop the server (state is kept and can still be inspected)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None
            self._thread = None

    def __enter__(self) -> LoopbackHub:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """Base URL of the running server, e.g. `http://127.0.0.1:54321`."""
        if self._server is None:
            raise RuntimeError("LoopbackHub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ------------------------------------------------------------------ faults

    def inject(self, *faults: Fault) -> LoopbackHub:
        """Add faults (see `Fault`); they act on requests from now on."""
        with self._lock:
            self.faults.extend(faults)
        return self

    def clear_faults(self) -> None:
        """Remove every fault: the hub answers normally again."""
        with self._lock:
            self.faults.clear()

    def _fault_for(self, method: str, path: str) -> Fault | None:
        """The fault hitting this request, if any (a request refused by a fault is logged too)."""
        with self._lock:
            fault = next((fault for fault in self.faults if fault.take(method, path)), None)
            if fault is not None and fault.kind in ("status", "drop") and not fault.apply:
                self.requests.append((method, path))
            return fault

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

    def _get_repo(self, request: _Request, repo_type: str, repo_id: str) -> HubRepo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not request.authorized):
            raise _HttpError(404, "Repository not found", "RepoNotFound")
        return repo

    @staticmethod
    def _get_commit(repo: HubRepo, revision: str) -> HubCommit:
        commit = repo.resolve(revision)
        if commit is None:
            raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _repo_url(self, repo: HubRepo) -> str:
        return f"{self.endpoint}/{_URL_PREFIX[repo.repo_type]}{repo.repo_id}"

    # ------------------------------------------------------------------ internals: routing

    def _handle(self, request: _Request) -> _Response:
        """Route a request; raises `_HttpError` for Hub-style errors."""
        with self._lock:
            self.requests.append((request.method, "/" + "/".join(request.segments)))
        segs = request.segments
        method = request.method
        if segs[:1] == ["_lfs"] and len(segs) >= 2:
            return self._lfs_object(request, unquote(segs[1]), segs[2:])
        if segs[:1] != ["api"]:
            return self._repo_web(request)
        rest = segs[1:]
        if rest == ["whoami-v2"]:
            return self._whoami(request)
        if rest == ["validate-yaml"] and method == "POST":
            return self._validate_yaml(request)
        if rest[:1] == ["repos"] and len(rest) == 2:
            action = {"create": self._create_repo, "delete": self._delete_repo, "move": self._move_repo}.get(rest[1])
            if action is not None:
                return action(request)
        if len(rest) >= 3 and rest[0] in _PLURAL_TO_TYPE:
            repo_type = _PLURAL_TO_TYPE[rest[0]]
            repo_id = f"{unquote(rest[1])}/{unquote(rest[2])}"
            return self._repo_api(request, repo_type, repo_id, [unquote(s) for s in rest[3:]])
        raise _HttpError(404, f"Sorry, we can't find the page you are looking for ({method} /{'/'.join(segs)})")

    def _repo_api(self, request: _Request, repo_type: str, repo_id: str, rest: list[str]) -> _Response:
        method = request.method
        with self._lock:
            repo = self._get_repo(request, repo_type, repo_id)
            head, args = (rest[0], rest[1:]) if rest else ("", [])
            if method == "GET" and (not rest or (head == "revision" and args)):
                revision = "/".join(args) if args else "main"
                return _Response.json(self._info(repo, revision, _truthy(request.query.get("blobs", ""))))
            if method == "GET" and head == "tree" and args:
                return self._tree(request, repo, args[0], "/".join(args[1:]))
            if method == "POST" and head == "paths-info" and args:
                return self._paths_info(request, repo, "/".join(args))
            if method == "GET" and head == "refs":
                return self._refs(request, repo)
            if method == "GET" and head == "commits" and args:
                return self._commits(repo, "/".join(args))
            if head == "branch" and args:
                return self._branch(request, repo, "/".join(args))
            if head == "tag" and args:
                return self._tag(request, repo, "/".join(args))
            if method == "POST" and head == "preupload" and args:
                return self._preupload(request, repo, "/".join(args))
            if method == "POST" and head == "commit" and args:
                return self._commit(request, repo, "/".join(args))
            if method == "PUT" and head == "settings":
                return self._settings(request, repo)
        raise _HttpError(404, f"Not implemented by LoopbackHub: {method} {repo_type} {repo_id} {'/'.join(rest)}")

    def _repo_web(self, request: _Request) -> _Response:
        """`/{repo}/resolve/...` downloads and `/{repo}.git/info/lfs/objects/batch`."""
        segs = request.segments
        repo_type = "model"
        if segs and segs[0] in _PLURAL_TO_TYPE and segs[0] != "models":
            repo_type = _PLURAL_TO_TYPE[segs[0]]
            segs = segs[1:]
        if len(segs) < 3:
            raise _HttpError(404, "Not found")
        namespace, name, rest = unquote(segs[0]), unquote(segs[1]), segs[2:]
        if name.endswith(".git") and [unquote(s) for s in rest] == ["info", "lfs", "objects", "batch"]:
            with self._lock:
                return self._lfs_batch(request, self._get_repo(request, repo_type, f"{namespace}/{name[:-4]}"))
        if rest[0] == "resolve" and len(rest) >= 3 and request.method in ("GET", "HEAD"):
            revision = unquote(rest[1])
            path = "/".join(unquote(s) for s in rest[2:])
            return self._resolve(request, repo_type, f"{namespace}/{name}", revision, path)
        raise _HttpError(404, f"Not implemented by LoopbackHub: {request.method} /{'/'.join(request.segments)}")

    # ------------------------------------------------------------------ endpoints

    def _whoami(self, request: _Request) -> _Response:
        if not request.authorized:
            raise _HttpError(401, "Invalid credentials in Authorization header")
        return _Response.json(
            {
                "type": "user",
                "id": "loopback",
                "name": self.user,
                "fullname": "Loopback User",
                "email": "loopback@example.invalid",
                "emailVerified": True,
                "isPro": False,
                "canPay": False,
                "orgs": [],
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": "loopback", "role": "write", "createdAt": _iso(_now())},
                },
            }
        )

    def _validate_yaml(self, request: _Request) -> _Response:
        content = request.json().get("content", "")
        try:
            _front_matter(content, strict=True)
        except Exception as err:  # noqa: BLE001 - report any YAML problem as a validation error
            return _Response.json({"errors": [{"message": str(err)}], "warnings": []}, status=400)
        return _Response.json({"errors": [], "warnings": []})

    def _create_repo(self, request: _Request) -> _Response:
        payload = request.json()
        repo_type = payload.get("type") or "model"
        if repo_type not in _TYPE_TO_PLURAL:
            raise _HttpError(400, f"Invalid repo type {repo_type!r}")
        repo_id = f"{payload.get('organization') or self.user}/{payload['name']}"
        private = payload.get("visibility", "private" if payload.get("private") else "public") != "public"
        with self._lock:
            existing = self._repos.get((repo_type, repo_id))
            if existing is not None:
                return _Response.json(
                    {"error": f"You already created this {repo_type} repo", "url": self._repo_url(existing)}, status=409
                )
            repo = self.create_repo(repo_id, repo_type, private=private)
            return _Response.json({"url": self._repo_url(repo), "name": repo_id, "id": repo_id})

    def _delete_repo(self, request: _Request) -> _Response:
        payload = request.json()
        key = (payload.get("type") or "model", f"{payload.get('organization') or self.user}/{payload['name']}")
        with self._lock:
            if key not in self._repos:
                raise _HttpError(404, "Repository not found", "RepoNotFound")
            del self._repos[key]
        return _Response.json({})

    def _move_repo(self, request: _Request) -> _Response:
        payload = request.json()
        repo_type = payload.get("type") or "model"
        with self._lock:
            repo = self._get_repo(request, repo_type, payload["fromRepo"])
            if (repo_type, payload["toRepo"]) in self._repos:
                raise _HttpError(409, "A repo with this name already exists")
            del self._repos[(repo_type, repo.repo_id)]
            repo.repo_id = payload["toRepo"]
            self._repos[(repo_type, repo.repo_id)] = repo
        return _Response.json({})

    def _settings(self, request: _Request, repo: HubRepo) -> _Response:
        payload = request.json()
        if "visibility" in payload:
            repo.private = payload["visibility"] != "public"
        if "private" in payload:
            repo.private = bool(payload["private"])
        if "gated" in payload:
            repo.gated = payload["gated"]
        return _Response.json({})

    def _info(self, repo: HubRepo, revision: str, blobs: bool) -> dict[str, Any]:
        commit = self._get_commit(repo, revision)
        siblings = []
        for path, blob in sorted(commit.blobs.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=len(blob.data), blobId=blob.git_oid)
                if blob.lfs:
                    sibling["lfs"] = {"size": len(blob.data), "sha256": blob.sha256, "pointerSize": blob.pointer_size}
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(f"{repo.repo_type}/{repo.repo_id}".encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": _iso(commit.date),
            "createdAt": _iso(repo.created_at),
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(len(b.data) for b in commit.blobs.values()),
        }
        readme = commit.blobs.get("README.md")
        card_data = _front_matter(readme.data.decode("utf-8", "replace")) if readme is not None else None
        if card_data:
            info["cardData"] = card_data
            info["tags"] = list(card_data.get("tags") or [])
        if repo.repo_type == "space":
            info.update(sdk=(card_data or {}).get("sdk"), runtime=None)
        return info

    @staticmethod
    def _directories(commit: HubCommit) -> set[str]:
        dirs: set[str] = set()
        for path in commit.blobs:
            parts = path.split("/")[:-1]
            dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return dirs

    def _entry(self, repo: HubRepo, commit: HubCommit, path: str, is_dir: bool, expand: bool) -> dict[str, Any]:
        if is_dir:
            entry: dict[str, Any] = {"type": "directory", "oid": _tree_oid(commit, path), "size": 0, "path": path}
        else:
            blob = commit.blobs[path]
            entry = {"type": "file", "oid": blob.git_oid, "size": len(blob.data), "path": path}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": blob.pointer_size}
        if expand:
            last = _last_commit_touching(repo, commit, path, is_dir)
            entry["lastCommit"] = {"id": last.oid, "title": last.title, "date": _iso(last.date)}
        return entry

    def _tree(self, request: _Request, repo: HubRepo, revision: str, path: str) -> _Response:
        commit = self._get_commit(repo, revision)
        path = path.strip("/")
        dirs = self._directories(commit)
        if path and path not in dirs:
            raise _HttpError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        recursive = _truthy(request.query.get("recursive", ""))
        expand = _truthy(request.query.get("expand", ""))
        prefix = f"{path}/" if path else ""

        def selected(candidate: str) -> bool:
            return candidate.startswith(prefix) and (recursive or "/" not in candidate[len(prefix) :])

        entries = [self._entry(repo, commit, d, True, expand) for d in sorted(dirs) if selected(d)]
        entries += [self._entry(repo, commit, f, False, expand) for f in sorted(commit.blobs) if selected(f)]
        return _Response.json(entries)

    def _paths_info(self, request: _Request, repo: HubRepo, revision: str) -> _Response:
        commit = self._get_commit(repo, revision)
        if request.headers.get("Content-Type", "").startswith("application/json"):
            payload = request.json()
            paths, expand = payload.get("paths", []), _truthy(payload.get("expand", False))
        else:
            form = parse_qs(request.body.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), _truthy(form.get("expand", ""))
        dirs = self._directories(commit)
        out = []
        for raw in [paths] if isinstance(paths, str) else paths:
            path = raw.strip("/")
            if path in commit.blobs:
                out.append(self._entry(repo, commit, path, False, expand))
            elif path in dirs:
                out.append(self._entry(repo, commit, path, True, expand))
        return _Response.json(out)

    def _refs(self, request: _Request, repo: HubRepo) -> _Response:
        def refs(kind: str, items: Mapping[Any, str]) -> list[dict[str, str]]:
            return [
                {"name": str(name), "ref": f"refs/{kind}/{name}", "targetCommit": oid} for name, oid in items.items()
            ]

        payload: dict[str, Any] = {
            "branches": refs("heads", repo.branches),
            "converts": [],
            "tags": refs("tags", repo.tags),
        }
        if _truthy(request.query.get("include_prs", "")):
            payload["pullRequests"] = refs("pr", repo.pull_requests)
        return _Response.json(payload)

    def _commits(self, repo: HubRepo, revision: str) -> _Response:
        self._get_commit(repo, revision)
        return _Response.json(
            [
                {
                    "id": c.oid,
                    "title": c.title,
                    "message": c.message,
                    "date": _iso(c.date),
                    "authors": [{"user": self.user, "avatar": ""}],
                }
                for c in repo.history(revision)
            ]
        )

    def _branch(self, request: _Request, repo: HubRepo, branch: str) -> _Response:
        if request.method == "DELETE":
            if branch not in repo.branches:
                raise _HttpError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            if branch == "main":
                raise _HttpError(403, "Cannot delete the default branch")
            del repo.branches[branch]
            return _Response.json({})
        if request.method != "POST":
            raise _HttpError(405, "Method not allowed")
        if branch.startswith("refs/") or not branch:
            raise _HttpError(400, f"Invalid reference for a branch: {branch}")
        if branch in repo.branches:
            raise _HttpError(409, f"Reference already exists: refs/heads/{branch}")
        repo.branches[branch] = self._get_commit(repo, request.json().get("startingPoint") or "main").oid
        return _Response.json({})

    def _tag(self, request: _Request, repo: HubRepo, name: str) -> _Response:
        if request.method == "DELETE":
            if repo.tags.pop(name, None) is None:
                raise _HttpError(404, f"Invalid rev id: {name}", "RevisionNotFound")
            return _Response.json({})
        tag = request.json()["tag"]
        if tag in repo.tags:
            raise _HttpError(409, f"Tag already exists: {tag}")
        repo.tags[tag] = self._get_commit(repo, name).oid
        return _Response.json({})

    def _preupload(self, request: _Request, repo: HubRepo, revision: str) -> _Response:
        commit = self._get_commit(repo, revision)
        files = []
        for item in request.json().get("files", []):
            path, size = item["path"], int(item.get("size", 0))
            existing = commit.blobs.get(path)
            lfs = self._is_lfs(path, size) and size > 0
            oid = None if existing is None else (existing.sha256 if lfs else existing.git_oid)
            files.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return _Response.json({"files": files, "commitOid": commit.oid})

    def _commit(self, request: _Request, repo: HubRepo, revision: str) -> _Response:
        lines = [json.loads(line) for line in request.body.decode().splitlines() if line.strip()]
        header: dict[str, Any] = next((line["value"] for line in lines if line.get("key") == "header"), {})
        parent = self._get_commit(repo, revision)
        pr_num: int | None = None
        if _truthy(request.query.get("create_pr", "")):
            pr_num = max(repo.pull_requests, default=0) + 1
        elif revision.removeprefix("refs/heads/") not in repo.branches and not revision.startswith("refs/pr/"):
            raise _HttpError(400, f"Invalid rev id: {revision} is not a branch")
        parent_commit = header.get("parentCommit")
        if parent_commit and not parent.oid.startswith(parent_commit):
            raise _HttpError(412, f"Parent commit {parent_commit} is not the head of {revision} ({parent.oid})")
        blobs = dict(parent.blobs)
        for line in lines:
            key, value = line.get("key"), line.get("value", {})
            if key == "file":
                data = (
                    base64.b64decode(value["content"])
                    if value.get("encoding") == "base64"
                    else value["content"].encode()
                )
                blobs[value["path"]] = self._blob(value["path"], data)
            elif key == "lfsFile":
                data = self._lfs_objects.get(value["oid"])
                if data is None:
                    raise _HttpError(422, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                blobs[value["path"]] = _Blob.create(data, lfs=True)
            elif key == "deletedFile":
                if blobs.pop(value["path"], None) is None:
                    raise _HttpError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
            elif key == "deletedFolder":
                prefix = value["path"].strip("/") + "/"
                doomed = [p for p in blobs if p.startswith(prefix)]
                if not doomed:
                    raise _HttpError(404, f"A folder with this name doesn't exist: {value['path']}", "EntryNotFound")
                for path in doomed:
                    del blobs[path]
            elif key != "header":
                raise _HttpError(400, f"Unsupported commit operation {key!r}")
        commit = self._new_commit(repo, parent, header.get("summary", ""), header.get("description", ""), blobs)
        pr_url = None
        if pr_num is not None:
            repo.pull_requests[pr_num] = commit.oid
            pr_url = f"{self._repo_url(repo)}/discussions/{pr_num}"
        elif revision.startswith("refs/pr/"):
            repo.pull_requests[int(revision[8:])] = commit.oid
        else:
            repo.branches[revision.removeprefix("refs/heads/")] = commit.oid
        return _Response.json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self._repo_url(repo)}/commit/{commit.oid}",
                "hookOutput": "",
                "pullRequestUrl": pr_url,
            }
        )

    def _lfs_batch(self, request: _Request, repo: HubRepo) -> _Response:
        payload = request.json()
        if payload.get("operation") != "upload":
            raise _HttpError(400, "LoopbackHub only implements LFS uploads")
        objects = []
        for obj in payload.get("objects", []):
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self._lfs_objects:
                href = f"{self.endpoint}/_lfs/{obj['oid']}"
                entry["actions"] = {"upload": {"href": href, "header": {}}, "verify": {"href": f"{href}/verify"}}
            objects.append(entry)
        response = _Response.json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})
        response.content_type = "application/vnd.git-lfs+json"
        return response

    def _lfs_object(self, request: _Request, oid: str, rest: list[str]) -> _Response:
        if request.method == "PUT" and not rest:
            if hashlib.sha256(request.body).hexdigest() != oid:
                raise _HttpError(400, f"sha256 mismatch for LFS object {oid}")
            with self._lock:
                self._lfs_objects[oid] = request.body
            return _Response.json({})
        if request.method == "POST" and rest == ["verify"]:
            with self._lock:
                if oid not in self._lfs_objects:
                    raise _HttpError(404, f"LFS object {oid} not found")
            return _Response.json({})
        raise _HttpError(404, "Not found")

    def _resolve(self, request: _Request, repo_type: str, repo_id: str, revision: str, path: str) -> _Response:
        with self._lock:
            repo = self._get_repo(request, repo_type, repo_id)
            commit = self._get_commit(repo, revision)
            blob = commit.blobs.get(path)
        if blob is None:
            raise _HttpError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        headers = {"ETag": f'"{blob.etag}"', "X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"}
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.etag}"', "X-Linked-Size": str(len(blob.data))})
        data, status = blob.data, 200
        range_header = request.headers.get("Range")
        if range_header and range_header.startswith("bytes="):
            start_s, _, end_s = range_header[6:].split(",")[0].partition("-")
            size = len(blob.data)
            start = int(start_s) if start_s else max(size - int(end_s), 0)
            end = min(int(end_s), size - 1) if start_s and end_s else size - 1
            if start >= size:
                raise _HttpError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
            data, status = blob.data[start : end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return _Response(status=status, body=data, headers=headers, content_type="application/octet-stream")


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


class _Server(ThreadingHTTPServer):
    """Threading HTTP server holding a reference to its `LoopbackHub`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], hub: LoopbackHub) -> None:
        if address[0] != "127.0.0.1":
            raise ValueError("LoopbackHub only binds loopback addresses")
        super().__init__(address, handler)
        self.hub = hub


class _Handler(BaseHTTPRequestHandler):
    """Translate raw HTTP into `_Request`/`_Response` (HTTP/1.0: one request per connection)."""

    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature imposed by the base class
        """Silence the default stderr access log."""

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        split = urlsplit(self.path)
        fault = self.server.hub._fault_for(self.command, split.path)
        if fault is not None and fault.kind == "drop" and not fault.apply:
            self._drop_mid_body()
            return
        if fault is not None and fault.kind == "status":
            self._read_body()
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            message = f"injected fault: HTTP {fault.status}"
            self._write(
                _Response.json({"error": message}, status=fault.status), {**headers, "X-Error-Message": message}
            )
            return
        try:
            request = _Request(
                method=self.command,
                segments=[s for s in split.path.split("/") if s],
                query=parse_qs(split.query, keep_blank_values=True),
                headers=self.headers,
                body=self._read_body(),
            )
            response = self.server.hub._handle(request)
        except _HttpError as err:
            response = _Response.json({"error": err.message}, status=err.status)
            response.headers.update(err.headers)
            response.headers["X-Error-Message"] = err.message.replace("\n", " ")
            if err.code:
                response.headers["X-Error-Code"] = err.code
        except Exception as err:  # noqa: BLE001 - surface server bugs as 500s with the traceback
            traceback.print_exc(file=sys.stderr)
            response = _Response.json({"error": f"LoopbackHub internal error: {err!r}"}, status=500)
        if fault is not None and fault.kind == "drop":  # carried out; the answer is lost
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        try:
            self._write(response)
        except OSError:  # the client gave up waiting
            self.close_connection = True

    def _write(self, response: _Response, extra_headers: Mapping[str, str] | None = None) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in {**response.headers, **(extra_headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _drop_mid_body(self) -> None:
        """Read half the announced body, then close the connection without answering."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > 1:
            self.rfile.read(length // 2)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve


# ---------------------------------------------------------------------- pytest integration


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
