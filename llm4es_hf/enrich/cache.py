"""A crash-safe store of enrichment results: one SQLite row per (generator, prompt, sampling).

Each result is committed as soon as it exists. In WAL mode a commit is in the
write-ahead log before ``put`` returns, so killing the process at any moment
(even ``kill -9``) loses no finished record; a rerun skips what is stored.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Llm4esError

STATUSES = ("ok", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    key TEXT PRIMARY KEY,
    generator TEXT NOT NULL,
    variant TEXT NOT NULL,
    status TEXT NOT NULL,
    text TEXT,
    finish_reason TEXT,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 1,
    problem TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
)
"""


def record_key(generator: str, variant: str, prompt: Any, sampling: dict[str, Any]) -> str:
    """sha256 of what determines a result: generator, variant, prompt (text or messages), sampling and seed."""
    payload = json.dumps(
        {"generator": generator, "variant": variant, "prompt": prompt, "sampling": sampling},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheRecord:
    """A stored result. ``status`` "failed" with ``problem`` (empty, truncated, refused, error)
    means the last of ``attempts`` tries gave an unusable output."""

    key: str
    generator: str
    variant: str
    status: str
    text: str | None
    finish_reason: str | None
    completion_tokens: int
    attempts: int
    problem: str | None
    created_at: float
    updated_at: float


class EnrichmentCache:
    """SQLite-backed results, keyed by ``record_key``; safe to share between processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as err:
            raise Llm4esError(f"cannot open the enrichment cache: {err}", file=self.path) from err

    def close(self) -> None:
        """Close the database (everything is already committed)."""
        self._db.close()

    def __enter__(self) -> EnrichmentCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def put(
        self,
        key: str,
        *,
        generator: str,
        variant: str,
        status: str,
        text: str | None,
        finish_reason: str | None,
        completion_tokens: int,
        attempts: int,
        problem: str | None = None,
    ) -> None:
        """Insert or replace one record and commit it at once."""
        if status not in STATUSES:
            raise Llm4esError(f"status must be one of {list(STATUSES)}, got {status!r}", key="status")
        now = time.time()
        self._db.execute(
            """INSERT INTO records (key, generator, variant, status, text, finish_reason, completion_tokens,
                                    attempts, problem, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(key) DO UPDATE SET status=excluded.status, text=excluded.text,
                   finish_reason=excluded.finish_reason, completion_tokens=excluded.completion_tokens,
                   attempts=excluded.attempts, problem=excluded.problem, updated_at=excluded.updated_at""",
            (key, generator, variant, status, text, finish_reason, completion_tokens, attempts, problem, now, now),
        )

    def get(self, key: str) -> CacheRecord | None:
        """The record of that key, if stored."""
        row = self._db.execute("SELECT * FROM records WHERE key = ?", (key,)).fetchone()
        return CacheRecord(*row) if row else None

    def get_many(self, keys: Iterable[str]) -> dict[str, CacheRecord]:
        """The stored records among ``keys``."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, CacheRecord] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(f"SELECT * FROM records WHERE key IN ({marks})", chunk):
                found[row[0]] = CacheRecord(*row)
        return found

    def records(self) -> Iterator[CacheRecord]:
        """Every stored record, oldest first."""
        for row in self._db.execute("SELECT * FROM records ORDER BY created_at, key"):
            yield CacheRecord(*row)

    def counts(self) -> dict[str, int]:
        """Number of records per status."""
        return dict(self._db.execute("SELECT status, COUNT(*) FROM records GROUP BY status").fetchall())
