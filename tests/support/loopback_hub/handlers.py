"""The loopback Hub's HTTP API: requests and answers, the routing and one handler per Hub endpoint."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, unquote

from tests.support.loopback_hub.repository import (
    _PLURAL_TO_TYPE,
    _TYPE_TO_PLURAL,
    _URL_PREFIX,
    HubCommit,
    HubRepo,
    RepoStore,
    _Blob,
    _front_matter,
    _iso,
    _last_commit_touching,
    _now,
    _tree_oid,
)


def _truthy(value: Any) -> bool:
    """Interpret a query-string / form / JSON flag."""
    if isinstance(value, list):
        value = value[-1] if value else ""
    return str(value).strip().lower() in ("1", "true", "yes", "on")


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


class HubApi(RepoStore):
    """The Hub endpoints over a `RepoStore`; `LoopbackHub` serves them over HTTP."""

    requests: list[tuple[str, str]]  # (method, path) of every request, kept by `LoopbackHub`
    endpoint: str  # the base URL, a property of `LoopbackHub`

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
