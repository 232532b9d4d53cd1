"""New users at query time: raw events -> text -> vector, exactly as the index's users were made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from ..artifacts import FILE, ROW, read_table
from ..embedding import UserEncoder
from ..errors import Llm4esError
from ..schema import EventSchema, load_schema
from .index import UserIndex


def event_columns(schema: EventSchema) -> list[str]:
    """The raw columns an events file has: user id (optional for one user), time, fields."""
    fields = [f.source_column for f in schema.fields if f.name != "event_time"]
    return [schema.user_id, schema.time.column, *fields]


class QueryEncoder:
    """Embeds new users' raw events exactly as the index's users were: a ``UserEncoder`` over the
    model with the index's schema and serialization settings (its corpus'), the model's pooling.
    ``max_events`` and ``max_users`` bound one upload."""

    def __init__(
        self,
        index: UserIndex,
        model: str | None = None,
        *,
        max_events: int = 5000,
        max_users: int = 16,
    ) -> None:
        if index.folder is None or not (index.folder / "schema.yaml").exists():
            raise Llm4esError(
                "this index has no schema.yaml (build it with --labels CORPUS_FOLDER to embed new events)",
                file=index.folder,
            )
        model = model or index.info.get("model")
        if not model:
            raise Llm4esError("no model given and the index does not name one (pass --model)", key="model")
        self.encoder = UserEncoder.from_pretrained(
            model,
            schema=load_schema(index.folder / "schema.yaml"),
            serialization={"max_events": max_events, **(index.info.get("serialization") or {})},
        )
        if self.encoder.dimension != index.dimension:
            raise Llm4esError(
                f"model {model!r} gives {self.encoder.dimension}-dim vectors, the index holds {index.dimension}",
                key="model",
            )
        self.schema = self.encoder.schema
        self.index = index
        self.max_events = max_events
        self.max_users = max_users

    @property
    def columns(self) -> list[str]:
        return event_columns(self.schema)

    def read_events(self, path: str | Path) -> pl.DataFrame:
        """Read an events CSV/Parquet in the schema's raw columns, checking columns and size."""
        frame = read_table(path, encoding=self.schema.encoding)
        present = [c for c in frame.columns if c not in (ROW, FILE)]
        unknown = [c for c in present if c not in self.columns]
        if unknown:
            raise Llm4esError(f"unknown columns {unknown}; expected {self.columns}", file=path, column=unknown[0])
        if len(frame) == 0:
            raise Llm4esError("the file has no events", file=path)
        if len(frame) > self.max_events:
            raise Llm4esError(f"too many events: {len(frame):,} rows (at most {self.max_events:,})", file=path)
        return frame

    def texts(self, path: str | Path) -> tuple[list[str], list[str]]:
        """``(user_ids, texts)`` of the users in an events file, serialized as the index's corpus."""
        users = self.encoder.users_of(self.read_events(path), source=str(path))
        if len(users) > self.max_users:
            raise Llm4esError(f"the file holds {len(users)} users (at most {self.max_users})", file=path)
        texts = self.encoder.serializer(users)
        return [str(u) for u in texts["user_id"]], list(texts["text"])

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode_texts(texts)
