"""A loopback OpenAI-compatible chat server for offline tests (127.0.0.1 only).

It answers ``POST /v1/chat/completions`` with a deterministic rewrite of the last
user message, and has knobs: a delay per request (``delay``, or ``delay_fn(prompt)``), fail the first N requests with
500, answer garbage (not JSON, or JSON without ``choices``), and per-input behaviour
driven by markers in the prompt:

- ``[[REFUSE]]``: always "I'm sorry, but I can't help with that."
- ``[[EMPTY]]``: always an empty answer
- ``[[LONG]]``: always cut, finish_reason "length"
- ``[[FLAKY]]``: a refusal the first time this prompt is seen, a good answer afterwards
- ``[[TOOLONG]]``: HTTP 400, as vLLM answers a prompt over the context length

It counts requests per prompt (the last user message) so tests can assert that no
prompt was generated twice.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class FakeOpenAI:
    """The server's state and knobs; ``url`` is the base URL to give the client (``.../v1``)."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.delay_fn: Callable[[str], float] | None = None
        self.fail_first = 0
        self.garbage: str | None = None
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.served = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def reset(self) -> None:
        """Forget counts and knobs."""
        with self.lock:
            self.delay, self.delay_fn, self.fail_first, self.garbage, self.served = 0.0, None, 0, None, 0
            self.counts.clear()
            self.requests.clear()
            self.headers.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, body: dict[str, Any]) -> tuple[int, str]:
        """Status and body for one request (called from the handler threads)."""
        prompt = next((m["content"] for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        with self.lock:
            self.served += 1
            failing = self.served <= self.fail_first
            self.counts[prompt] += 1
            seen = self.counts[prompt]
            self.requests.append(body)
        delay = self.delay_fn(prompt) if self.delay_fn else self.delay
        if delay:
            time.sleep(delay)
        if failing:
            return 500, json.dumps({"error": {"message": "overloaded"}})
        if self.garbage == "not_json":
            return 200, "<html>502 Bad Gateway</html>"
        if self.garbage == "no_choices":
            return 200, json.dumps({"id": "x", "object": "chat.completion", "usage": {"completion_tokens": 1}})
        if "[[TOOLONG]]" in prompt:
            return 400, json.dumps({"error": {"message": "This model's maximum context length is 8192 tokens"}})
        reason = "stop"
        if "[[REFUSE]]" in prompt or ("[[FLAKY]]" in prompt and seen == 1):
            content = "I'm sorry, but I can't help with that."
        elif "[[EMPTY]]" in prompt:
            content = "  "
        else:
            data = prompt.split("```")[1].strip() if "```" in prompt else prompt
            content = f"Rewritten (seed {body.get('seed')}):\n" + data.upper()
            if "[[LONG]]" in prompt:
                reason = "length"
        answer = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": reason}],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(content.split())},
        }
        return 200, json.dumps(answer)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                with fake.lock:
                    fake.headers.append(dict(self.headers))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, json.dumps({"error": "not found"}))
                    return
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    self._send(400, json.dumps({"error": "bad json"}))
                    return
                self._send(*fake.answer(body))

            def _send(self, status: int, text: str) -> None:
                data = text.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A fresh loopback OpenAI-compatible server for one test."""
    server = FakeOpenAI()
    try:
        yield server
    finally:
        server.close()
