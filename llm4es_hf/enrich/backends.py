"""Generators for enrichment: in-process transformers, or an OpenAI-compatible server.

Both take lists of chat messages and return one ``Generation`` per conversation, in
order. ``callback(index, generation)`` is called as soon as each result exists, so
the caller can store it before the rest finish (the cache relies on it to lose
nothing on a kill). ``name`` identifies the generator in cache keys.

Long (about 500 lines) because the two backends share one contract (the order, the callback, the
sampling settings, the bad-output checks), read best side by side.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import Llm4esError
from ..hardware import pick_device, pick_dtype
from ..models import load_model
from .prompts import render_prompt

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]
Callback = Callable[[int, "Generation"], None]
FINISH_REASONS = ("stop", "length", "error")


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling parameters, as the authors used them with vLLM (temperature 0.6, top_p 0.9).

    ``top_k`` 0 means no top-k cut (vLLM's default; transformers would otherwise apply 50).
    ``temperature`` 0 means greedy decoding.
    """

    temperature: float = 0.6
    top_p: float = 0.9
    max_new_tokens: int = 512
    seed: int = 42
    top_k: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise Llm4esError(f"temperature must be >= 0, got {self.temperature}", key="temperature")
        if not 0 < self.top_p <= 1:
            raise Llm4esError(f"top_p must be in (0, 1], got {self.top_p}", key="top_p")
        if self.max_new_tokens < 1:
            raise Llm4esError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}", key="max_new_tokens")
        if self.top_k < 0:
            raise Llm4esError(f"top_k must be >= 0, got {self.top_k}", key="top_k")

    def key_fields(self) -> dict[str, Any]:
        """The parameters that change what is generated (for cache keys)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class Generation:
    """One generated text; ``finish_reason`` is "stop", "length" (hit max_new_tokens) or "error"."""

    text: str
    finish_reason: str
    completion_tokens: int
    error: str | None = None


class Backend(Protocol):
    """What the runner needs from a generator."""

    @property
    def name(self) -> str: ...

    @property
    def batch_size(self) -> int: ...

    def generate(
        self, conversations: Sequence[Messages], sampling: SamplingConfig, callback: Callback | None = None
    ) -> list[Generation]: ...


# ----- transformers ---------------------------------------------------------------------


def batch_seed(seed: int, prompts: Sequence[str]) -> int:
    """A seed for one batch, from the configured seed and the batch's prompts (reproducible runs)."""
    digest = hashlib.sha256(str(seed).encode())
    for prompt in prompts:
        digest.update(b"\x00" + prompt.encode("utf-8"))
    return int.from_bytes(digest.digest()[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def finish_of(new_tokens: Sequence[int], eos_ids: set[int], max_new_tokens: int) -> tuple[int, str]:
    """(completion tokens, finish reason) of one row of generated ids.

    The row ends at the first EOS (counted, as servers count it). Without an EOS the
    model was cut by the token limit: "length".
    """
    for position, token in enumerate(new_tokens):
        if token in eos_ids:
            return position + 1, "stop"
    return min(len(new_tokens), max_new_tokens), "length"


class TransformersBackend:
    """Batched sampling with a causal LM in this process (left padding, seeded per batch).

    ``model`` is a bundled name (``smollm2-135m``), a local folder or a Hub id. ``dtype``
    ``auto`` picks bfloat16 on GPUs and CPUs that compute it natively, float32 elsewhere.
    Prompts are sorted by length inside a call so that batches carry little padding;
    the same inputs with the same seed and ``batch_size`` give the same outputs.
    """

    def __init__(
        self,
        model: str = "smollm2-135m",
        *,
        batch_size: int = 16,
        device: str = "auto",
        dtype: str = "auto",
    ) -> None:
        import torch

        if batch_size < 1:
            raise Llm4esError(f"batch_size must be >= 1, got {batch_size}", key="batch_size")
        self._name = model
        self.batch_size = batch_size
        self.device = pick_device(device)
        self.tokenizer, self.model, _ = load_model(
            model, dtype=pick_dtype(dtype, self.device), padding_side="left", key="generator"
        )
        self.model.to(self.device).eval()
        self.eos_ids = self._eos_ids()
        self._torch = torch

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        configured = self.model.generation_config.eos_token_id
        if configured is not None:
            ids.update([configured] if isinstance(configured, int) else configured)
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    @property
    def name(self) -> str:
        return f"transformers:{self._name}"

    def render(self, messages: Messages) -> str:
        """The conversation through the generator's chat template."""
        return render_prompt(messages, self.tokenizer)

    def generate(
        self, conversations: Sequence[Messages], sampling: SamplingConfig, callback: Callback | None = None
    ) -> list[Generation]:
        """Generate for every conversation, batch by batch; see the class docstring."""
        prompts = [self.render(messages) for messages in conversations]
        lengths = [len(ids) for ids in self.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        results: list[Generation | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            indices = order[start : start + self.batch_size]
            batch = self._generate_batch([prompts[i] for i in indices], sampling)
            for index, generation in zip(indices, batch, strict=True):
                results[index] = generation
                if callback is not None:
                    callback(index, generation)
        return [r for r in results if r is not None]

    def _generate_batch(self, prompts: list[str], sampling: SamplingConfig) -> list[Generation]:
        torch = self._torch
        # Rendered chat templates already hold their special tokens.
        inputs = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        options: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": sorted(self.eos_ids) or None,
        }
        if sampling.temperature > 0:
            options.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(batch_seed(sampling.seed, prompts))
            output = self.model.generate(**inputs, **options)
        new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
        generations = []
        for row in new_tokens:
            count, reason = finish_of(row, self.eos_ids, sampling.max_new_tokens)
            text = self.tokenizer.decode(row[:count], skip_special_tokens=True)
            generations.append(Generation(text=text, finish_reason=reason, completion_tokens=count))
        return generations


# ----- OpenAI-compatible server ---------------------------------------------------------

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_PER_REQUEST_STATUS = {400, 413, 422}
_FINISH_MAP = {"stop": "stop", "eos": "stop", "eos_token": "stop", "stop_sequence": "stop", "length": "length"}


class _Retryable(Exception):
    """A failure worth another try (connection error, 5xx, 429)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OpenAIBackend:
    """Chat completions from an OpenAI-compatible server (vLLM, TGI, llama.cpp server, ...).

    POSTs ``{base_url}/chat/completions``, ``concurrency`` requests at a time, retrying
    connection errors, 5xx and 429 with exponential backoff (``backoff * 2**attempt``
    seconds, or the server's Retry-After). A prompt the server rejects (400, 413, 422:
    e.g. too long) yields an "error" generation; anything else that goes wrong after the
    retries raises Llm4esError naming the URL. The API key goes only into the
    Authorization header: it is never logged or shown.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        import httpx

        if concurrency < 1:
            raise Llm4esError(f"concurrency must be >= 1, got {concurrency}", key="concurrency")
        if max_retries < 0:
            raise Llm4esError(f"max_retries must be >= 0, got {max_retries}", key="max_retries")
        if not base_url.startswith(("http://", "https://")):
            raise Llm4esError(f"base URL must start with http:// or https://, got {base_url!r}", key="base_url")
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._httpx = httpx
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"OpenAIBackend(url={self.url!r}, model={self.model!r}, concurrency={self.concurrency})"

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    @property
    def batch_size(self) -> int:
        return self.concurrency

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def payload(self, messages: Messages, sampling: SamplingConfig) -> dict[str, Any]:
        """The request body for one conversation."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "seed": sampling.seed,
        }
        if sampling.top_k:
            body["top_k"] = sampling.top_k
        return body

    def generate(
        self, conversations: Sequence[Messages], sampling: SamplingConfig, callback: Callback | None = None
    ) -> list[Generation]:
        """Send every conversation, ``concurrency`` at a time; results come back in input order."""
        results: list[Generation | None] = [None] * len(conversations)
        self._stop.clear()
        executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="llm4es-openai")
        pending: dict[Future, int] = {}
        items = iter(enumerate(conversations))
        try:
            # Keep a bounded window in flight, so that an abort leaves little queued work.
            for index, messages in items:
                pending[executor.submit(self._request, self.payload(messages, sampling))] = index
                if len(pending) >= 2 * self.concurrency:
                    break
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    generation = future.result()
                    results[index] = generation
                    if callback is not None:
                        callback(index, generation)
                for index, messages in items:
                    pending[executor.submit(self._request, self.payload(messages, sampling))] = index
                    if len(pending) >= 2 * self.concurrency:
                        break
        finally:
            self._stop.set()
            executor.shutdown(wait=True, cancel_futures=True)
        return [r for r in results if r is not None]

    def _request(self, body: dict[str, Any]) -> Generation:
        """One request with retries; see the class docstring."""
        last: _Retryable | None = None
        for attempt in range(self.max_retries + 1):
            if self._stop.is_set():
                raise Llm4esError("cancelled", key="base_url")
            if attempt:
                delay = self.backoff * 2 ** (attempt - 1)
                if last is not None and last.retry_after is not None:
                    delay = max(delay, min(last.retry_after, 60.0))
                logger.info("retrying %s in %.2fs (%s)", self.url, delay, last)
                self._stop.wait(delay)
            try:
                return self._request_once(body)
            except _Retryable as err:
                last = err
        raise Llm4esError(
            f"the generation server at {self.url} failed after {self.max_retries + 1} attempt(s): {last}",
            key="base_url",
        )

    def _request_once(self, body: dict[str, Any]) -> Generation:
        httpx = self._httpx
        try:
            response = self._client.post(self.url, json=body)
        except httpx.TransportError as err:
            raise _Retryable(f"cannot connect ({type(err).__name__}: {err})") from err
        status = response.status_code
        if status in _RETRY_STATUS:
            raise _Retryable(f"HTTP {status}: {_snippet(response.text)}", _retry_after(response))
        if status in _PER_REQUEST_STATUS:
            return Generation("", "error", 0, error=f"HTTP {status}: {_snippet(response.text)}")
        if status >= 400:
            raise Llm4esError(f"{self.url} answered HTTP {status}: {_snippet(response.text)}", key="base_url")
        return self._parse(response.text)

    def _parse(self, raw: str) -> Generation:
        """A chat completion's first choice; garbage raises Llm4esError saying what was wrong."""
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as err:
            raise Llm4esError(f"{self.url} returned a body that is not JSON ({err}): {_snippet(raw)}") from err
        if not isinstance(data, dict):
            raise Llm4esError(f"{self.url} returned JSON that is not an object: {_snippet(raw)}")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise Llm4esError(f"{self.url} returned no `choices[0]` in its answer: {_snippet(raw)}")
        message = choices[0].get("message")
        if not isinstance(message, dict) or "content" not in message:
            raise Llm4esError(f"{self.url} returned no `choices[0].message.content` in its answer: {_snippet(raw)}")
        content = message["content"]
        if content is not None and not isinstance(content, str):
            raise Llm4esError(f"{self.url} returned a non-text `choices[0].message.content`: {_snippet(raw)}")
        raw_reason = choices[0].get("finish_reason")
        reason = "stop" if raw_reason is None else _FINISH_MAP.get(str(raw_reason), "error")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        tokens = usage.get("completion_tokens")
        return Generation(
            text=content or "",
            finish_reason=reason,
            completion_tokens=int(tokens) if isinstance(tokens, int | float) else 0,
            error=None if reason != "error" else f"finish_reason {raw_reason!r}",
        )


def _snippet(text: str, limit: int = 200) -> str:
    text = text.strip().replace("\n", " ")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


BACKENDS = ("transformers", "openai")


def make_backend(
    kind: str,
    *,
    generator: str = "smollm2-135m",
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    batch_size: int = 16,
    concurrency: int = 8,
    device: str = "auto",
    dtype: str = "auto",
    timeout: float = 60.0,
    max_retries: int = 3,
) -> TransformersBackend | OpenAIBackend:
    """A backend by kind: ``transformers`` runs ``generator`` in process; ``openai`` asks the server at
    ``base_url`` for ``model`` (default: ``generator``, the served model's name)."""
    if kind == "transformers":
        return TransformersBackend(generator, batch_size=batch_size, device=device, dtype=dtype)
    if kind == "openai":
        if not base_url:
            raise Llm4esError("the openai backend needs a base URL (e.g. http://localhost:8000/v1)", key="base_url")
        return OpenAIBackend(
            base_url,
            model or generator,
            api_key=api_key,
            concurrency=concurrency,
            timeout=timeout,
            max_retries=max_retries,
        )
    raise Llm4esError(f"unknown backend {kind!r}; known: {list(BACKENDS)}", key="backend")


@dataclass
class GenerationConfig:
    """The generator and how it samples: the options `llm4es enrich` and corpus recipes share."""

    backend: str = field(default="transformers", metadata={"help": f"generator: one of {list(BACKENDS)}"})
    generator: str = field(default="smollm2-135m", metadata={"help": "transformers: bundled name, folder or Hub id"})
    device: str = field(default="auto", metadata={"help": "transformers: cpu, cuda, cuda:1, mps or auto"})
    dtype: str = field(default="auto", metadata={"help": "transformers: auto, float32, bfloat16 or float16"})
    batch_size: int = field(default=16, metadata={"help": "transformers: prompts per generate call"})
    base_url: str | None = field(
        default=None, metadata={"help": "openai: server URL up to /v1, e.g. http://localhost:8000/v1"}
    )
    model: str | None = field(default=None, metadata={"help": "openai: the served model's name (default: generator)"})
    api_key_env: str | None = field(
        default=None, metadata={"help": "openai: name of the environment variable holding the API key"}
    )
    concurrency: int = field(default=8, metadata={"help": "openai: requests in flight"})
    timeout: float = field(default=60.0, metadata={"help": "openai: seconds per request"})
    request_retries: int = field(default=3, metadata={"help": "openai: retries on connection errors/5xx/429"})
    max_new_tokens: int = field(default=512, metadata={"help": "generation length cap"})
    temperature: float = field(default=0.6, metadata={"help": "sampling temperature"})
    top_p: float = field(default=0.9, metadata={"help": "nucleus sampling"})
    max_retries: int = field(default=2, metadata={"help": "new tries for empty, truncated or refused outputs"})
    keep_truncated: bool = field(
        default=False, metadata={"help": "keep outputs cut by max_new_tokens instead of retrying them"}
    )

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise Llm4esError(f"unknown backend {self.backend!r}; known: {list(BACKENDS)}", key="backend")

    def make_backend(self) -> TransformersBackend | OpenAIBackend:
        """The generator these options ask for; the API key is read from the named environment variable."""
        api_key = None
        if self.api_key_env:
            api_key = os.environ.get(self.api_key_env)
            if not api_key:
                raise Llm4esError(f"environment variable {self.api_key_env} is not set", key="api_key_env")
        return make_backend(
            self.backend,
            generator=self.generator,
            model=self.model,
            base_url=self.base_url,
            api_key=api_key,
            batch_size=self.batch_size,
            concurrency=self.concurrency,
            device=self.device,
            dtype=self.dtype,
            timeout=self.timeout,
            max_retries=self.request_retries,
        )

    def sampling(self, seed: int) -> SamplingConfig:
        return SamplingConfig(
            temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens, seed=seed
        )
