"""``UserEncoder``: raw events (or texts) -> one vector per user, serialized and pooled the way the
model's corpus and export were (the settings saved in the model folder)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
import polars as pl

from ..artifacts import (
    FILE,
    ROW,
    serialization_settings,
)
from ..errors import Llm4esError
from ..models import load_tokenizer
from ..schema import EventSchema
from ..serialize import Serializer
from ..sources.base import SourceReport, build_users
from .embedder import Embedder, resolve_embedding_settings


class UserEncoder:
    """Raw events (or texts) -> one vector per user, the way a model's corpus was made.

    ``from_pretrained`` reads what a trained or exported model folder (or Hub repo) carries:
    ``schema.yaml`` and ``llm4es_serialization.json`` (format, event cap, token budget and its
    tokenizer) for the events -> text step, ``llm4es_embedding.json`` for the pooling. So
    ``encode_events`` on a corpus user's raw rows gives the vector ``llm4es embed`` gives on
    the corpus. ``schema`` and ``serialization`` override what the folder says (an index
    built from a corpus passes the corpus' own).
    """

    def __init__(self, embedder: Embedder, serializer: Serializer | None = None) -> None:
        self.embedder = embedder
        self.serializer = serializer

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        *,
        schema: EventSchema | None = None,
        serialization: dict[str, Any] | None = None,
        dtype: str = "auto",
        device: str | None = None,
    ) -> UserEncoder:
        """Load the model and its saved settings (see the class docstring)."""
        saved = serialization_settings(model)
        if schema is None and saved is not None:
            schema = saved[0]
        settings = {**(saved[1] if saved is not None else {}), **(serialization or {})}
        pooling = resolve_embedding_settings(model, token_budget=settings.get("max_tokens"))
        embedder = Embedder(model, **pooling, dtype=dtype, device=device)
        serializer = None
        if schema is not None:
            budget = settings.get("max_tokens")
            serializer = Serializer(
                dataclasses.replace(schema, labels=[]),  # events only: labels are not expected
                settings.get("format") or "llm4es",
                max_events=settings.get("max_events", 5000),
                max_tokens=budget,
                tokenizer=load_tokenizer(settings.get("tokenizer") or model) if budget else None,
            )
        return cls(embedder, serializer)

    @property
    def schema(self) -> EventSchema:
        if self.serializer is None:
            raise Llm4esError(
                "this model carries no schema.yaml / llm4es_serialization.json (train it with a local corpus, "
                "or `llm4es export-st MODEL --corpus CORPUS`), so it cannot read raw events; use encode_texts",
                key="model",
            )
        return self.serializer.schema

    @property
    def dimension(self) -> int:
        return self.embedder.dimension

    def users_of(self, events: Any, *, source: str = "events") -> datasets.Dataset:
        """Group a raw events table (pandas or polars, the schema's raw columns) into one row per user."""
        frame = events if isinstance(events, pl.DataFrame) else pl.from_pandas(events)
        if ROW not in frame.columns:  # rows as read by artifacts.read_table keep their file lines
            frame = frame.select(pl.all().cast(pl.Utf8)).with_row_index(ROW, offset=1)
            frame = frame.with_columns(pl.lit(source).alias(FILE))
        if self.schema.user_id not in frame.columns:  # one user's events, without an id column
            frame = frame.with_columns(pl.lit("query").alias(self.schema.user_id))
        return build_users(frame, self.schema, SourceReport(source=source))

    def texts_of_events(self, events: Any, *, source: str = "events") -> tuple[list[str], list[str]]:
        """``(user_ids, texts)``: the raw events serialized as the model's corpus was."""
        users = self.users_of(events, source=source)
        texts = self.serializer(users, desc="Serializing")
        return [str(u) for u in texts["user_id"]], list(texts["text"])

    def encode_events(
        self, events: Any, *, batch_size: int = 8, progress: bool = False
    ) -> tuple[list[str], np.ndarray]:
        """``(user_ids, vectors)``: one float32 row per user of the events table."""
        user_ids, texts = self.texts_of_events(events)
        return user_ids, self.encode_texts(texts, batch_size=batch_size, progress=progress)

    def encode_texts(self, texts: Sequence[str], *, batch_size: int = 8, progress: bool = False) -> np.ndarray:
        """One float32 row per text (texts already serialized)."""
        return self.embedder.encode(list(texts), batch_size=batch_size, progress=progress)
