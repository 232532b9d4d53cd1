"""Enrich many texts: cache lookup, generation, quality checks, retries, report.

Every result goes to the cache the moment the backend hands it over, so a run can be
killed at any point and rerun: stored records are not generated again. Unusable
outputs (empty, truncated at the token limit, refusals, server-side errors) are
retried with another seed (``seed + attempt``) up to ``max_retries`` times, then
stored as failed and returned as None.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import Llm4esError
from ..schema import EventSchema
from .backends import Backend, Generation, SamplingConfig
from .cache import EnrichmentCache, record_key
from .prompts import PromptVariant, build_messages, get_variant

REFUSAL = re.compile(
    r"(?:^|[.!?]\s+)(?:i['’]m sorry|i am sorry|sorry, (?:but )?i|i apologi[sz]e|i can['’]?t|i cannot|i can not"
    r"|i['’]m (?:not able|unable)|i am (?:not able|unable)|i won['’]t|as an ai\b|as a language model)",
    re.IGNORECASE,
)
_REFUSAL_WINDOW = 300


def classify(generation: Generation) -> str | None:
    """Why an output is unusable ("error", "empty", "truncated", "refused"), or None when it is fine.

    Refusals are looked for at sentence starts in the first few hundred characters only,
    so that data quoted later in the text cannot trigger them.
    """
    if generation.finish_reason == "error":
        return "error"
    if not generation.text.strip():
        return "empty"
    if generation.finish_reason == "length":
        return "truncated"
    if REFUSAL.search(generation.text.strip()[:_REFUSAL_WINDOW]):
        return "refused"
    return None


@dataclass
class EnrichmentReport:
    """What a run did. Record counts (total, from_cache, ok, failed) are per input text;
    ``generated`` and ``retried`` count generation requests (first tries, retries) and
    ``empty``/``truncated``/``refused``/``errors`` count the unusable outputs among them."""

    total: int = 0
    from_cache: int = 0
    generated: int = 0
    ok: int = 0
    empty: int = 0
    truncated: int = 0
    refused: int = 0
    errors: int = 0
    retried: int = 0
    failed: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    tokens_per_second: float = 0.0

    def lines(self) -> list[str]:
        """Human-readable lines for the CLI."""
        return [
            f"texts: {self.total:,} (from cache {self.from_cache:,}, to generate {self.total - self.from_cache:,})",
            f"ok: {self.ok:,}; failed after retries (left out): {self.failed:,}",
            f"generation requests: {self.generated:,} first tries + {self.retried:,} retries",
            f"unusable outputs: empty {self.empty:,}, truncated {self.truncated:,}, refused {self.refused:,}, "
            f"server errors {self.errors:,}",
            f"generated tokens: {self.completion_tokens:,} in {self.seconds:,.1f} s "
            f"({self.tokens_per_second:,.1f} tokens/s)",
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return dataclasses.asdict(self)


class _Progress:
    """A tqdm bar over texts done, with generated tokens/s."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, disable=not enabled, unit="user", desc="Enriching")
        self.start = time.perf_counter()
        self.tokens = 0

    def update(self, users: int, tokens: int) -> None:
        self.tokens += tokens
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{self.tokens / elapsed:,.1f} tok/s", refresh=False)
        self.bar.update(users)

    def close(self) -> None:
        self.bar.close()


@dataclass(frozen=True)
class EnrichedRecord:
    """The outcome for one input text; ``text`` is None when it failed (see ``problem``)."""

    text: str | None
    finish_reason: str | None
    problem: str | None
    attempts: int
    completion_tokens: int


def enrich_records(
    texts: Sequence[str],
    variant: str | PromptVariant,
    schema: EventSchema | None,
    backend: Backend,
    cache: EnrichmentCache,
    *,
    sampling: SamplingConfig | None = None,
    max_retries: int = 2,
    keep_truncated: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
) -> tuple[list[EnrichedRecord], EnrichmentReport]:
    """Like ``enrich_texts``, with each text's finish reason, problem and attempts."""
    if max_retries < 0:
        raise Llm4esError(f"max_retries must be >= 0, got {max_retries}", key="max_retries")
    spec = get_variant(variant)
    sampling = sampling or SamplingConfig()
    start = time.perf_counter()
    report = EnrichmentReport(total=len(texts))

    conversations: dict[str, list[dict[str, str]]] = {}
    users_of: dict[str, list[int]] = {}
    keys = []
    for index, text in enumerate(texts):
        messages = build_messages(text, spec, schema)
        key = record_key(backend.name, spec.name, messages, sampling.key_fields())
        keys.append(key)
        conversations.setdefault(key, messages)
        users_of.setdefault(key, []).append(index)

    def accepted(problem: str | None) -> bool:
        return problem is None or (keep_truncated and problem == "truncated")

    final: dict[str, EnrichedRecord] = {}
    next_attempt: dict[str, int] = {}
    for key, record in cache.get_many(conversations).items():
        if accepted(record.problem) or (record.attempts > max_retries and not retry_failed):
            ok = accepted(record.problem)
            final[key] = EnrichedRecord(
                record.text if ok else None,
                record.finish_reason,
                record.problem,
                record.attempts,
                record.completion_tokens,
            )
        else:
            next_attempt[key] = 0 if retry_failed else record.attempts
    for key in conversations:
        if key not in final and key not in next_attempt:
            next_attempt[key] = 0
    report.from_cache = sum(len(users_of[key]) for key in final)

    bar = _Progress(len(texts), report.from_cache, progress)
    try:
        for attempt in range(max_retries + 1):
            todo = [key for key, n in next_attempt.items() if n == attempt]
            if not todo:
                continue
            if attempt == 0:
                report.generated += len(todo)
            else:
                report.retried += len(todo)

            def store(i: int, generation: Generation, todo: list[str] = todo, attempt: int = attempt) -> None:
                key = todo[i]
                problem = classify(generation)
                report.completion_tokens += generation.completion_tokens
                if problem is not None:
                    counter = "errors" if problem == "error" else problem
                    setattr(report, counter, getattr(report, counter) + 1)
                ok = accepted(problem)
                note = f"error: {generation.error}" if problem == "error" else problem
                cache.put(
                    key,
                    generator=backend.name,
                    variant=spec.name,
                    status="ok" if ok else "failed",
                    text=generation.text,
                    finish_reason=generation.finish_reason,
                    completion_tokens=generation.completion_tokens,
                    attempts=attempt + 1,
                    problem=note,
                )
                done = ok or attempt >= max_retries
                if done:
                    final[key] = EnrichedRecord(
                        generation.text if ok else None,
                        generation.finish_reason,
                        note,
                        attempt + 1,
                        generation.completion_tokens,
                    )
                    del next_attempt[key]
                else:
                    next_attempt[key] = attempt + 1
                bar.update(len(users_of[key]) if done else 0, generation.completion_tokens)

            round_sampling = dataclasses.replace(sampling, seed=sampling.seed + attempt)
            backend.generate([conversations[key] for key in todo], round_sampling, callback=store)
    finally:
        bar.close()

    records = [final[key] for key in keys]
    report.ok = sum(record.text is not None for record in records)
    report.failed = len(records) - report.ok
    report.seconds = time.perf_counter() - start
    report.tokens_per_second = report.completion_tokens / report.seconds if report.seconds > 0 else 0.0
    return records, report


def enrich_texts(
    texts: Sequence[str],
    variant: str | PromptVariant,
    schema: EventSchema | None,
    backend: Backend,
    cache: EnrichmentCache,
    *,
    sampling: SamplingConfig | None = None,
    max_retries: int = 2,
    keep_truncated: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
) -> tuple[list[str | None], EnrichmentReport]:
    """Rewrite every text with the backend; see the module docstring.

    Identical texts are generated once. Records stored as failed are not tried again
    unless ``retry_failed`` (or a larger ``max_retries`` leaves them tries). With
    ``keep_truncated`` an output cut by the token limit is kept instead of retried.
    Returns the enriched texts (None for failures) in input order, and the report.
    """
    records, report = enrich_records(
        texts,
        variant,
        schema,
        backend,
        cache,
        sampling=sampling,
        max_retries=max_retries,
        keep_truncated=keep_truncated,
        retry_failed=retry_failed,
        progress=progress,
    )
    return [record.text for record in records], report


def pick_users(n: int, fraction: float, seed: int) -> np.ndarray:
    """Indices of a seeded random ``fraction`` of ``n`` users, in their original order."""
    if not 0.0 <= fraction <= 1.0:
        raise Llm4esError(f"fraction must be in [0, 1], got {fraction}", key="fraction")
    count = int(round(fraction * n))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=count, replace=False)) if count else np.zeros(0, dtype=np.int64)
