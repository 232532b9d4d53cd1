"""The loopback Hub's server: `LoopbackHub` (start, stop, injected faults) and the raw HTTP handler."""

from __future__ import annotations

import fnmatch
import socket
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback_hub.handlers import HubApi, _HttpError, _Request, _Response
from tests.support.loopback_hub.repository import DEFAULT_LFS_PATTERNS, DEFAULT_LFS_THRESHOLD


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


class LoopbackHub(HubApi):
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
        super().__init__(lfs_patterns, lfs_threshold)
        self.user = user
        self.requests: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self._port = port
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
