"""`llm4es search`: nearest users of a known user (--user-id) or of new events (--events FILE.csv)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from ..config import parse_config
from ..errors import Llm4esError
from ..search import QueryEncoder, UserIndex, label_distribution


@dataclass
class SearchConfig:
    """Options of `llm4es search`."""

    index: str | None = field(default=None, metadata={"help": "index folder (`llm4es index`) or Hub data set id"})
    user_id: str | None = field(default=None, metadata={"help": "a user in the index (left out of its neighbours)"})
    events: str | None = field(
        default=None, metadata={"help": "CSV/Parquet of new events in the index's schema (embedded with --model)"}
    )
    k: int = field(default=10, metadata={"aliases": ["-k"], "help": "neighbours per query"})
    model: str | None = field(default=None, metadata={"help": "model for --events (default: the one the index names)"})
    json: bool = field(default=False, metadata={"help": "print JSON lines instead of tables"})

    def __post_init__(self) -> None:
        if (self.user_id is None) == (self.events is None):
            raise Llm4esError("give exactly one of --user-id or --events", key="user_id")


def main(argv: list[str]) -> int:
    (config,) = parse_config([SearchConfig], argv, prog="llm4es search", description=__doc__)
    if not config.index:
        raise Llm4esError("--index is required", key="index")
    index = UserIndex.load(config.index)
    if config.user_id is not None:
        results = {config.user_id: index.neighbors_of(config.user_id, config.k)}
    else:
        encoder = QueryEncoder(index, config.model)
        ids, texts = encoder.texts(config.events)
        results = dict(zip(ids, index.search(encoder.embed(texts), config.k), strict=True))
    console = Console()
    for user_id, neighbors in results.items():
        shares = {label: label_distribution(neighbors, label) for label in index.label_columns}
        if config.json:
            print(json.dumps({"query": user_id, "neighbors": neighbors.to_dicts(), "label_shares": shares}))
            continue
        table = Table(title=f"{len(neighbors)} nearest users of {user_id}")
        for column in neighbors.columns:
            table.add_column(column)
        for row in neighbors.iter_rows():
            table.add_row(*("" if value is None else str(value) for value in row))
        console.print(table)
        for label, share in shares.items():
            console.print(f"{label} among neighbours: " + ", ".join(f"{k} {v:.0%}" for k, v in share.items()))
    return 0
