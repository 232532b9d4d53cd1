"""The one exception type the toolkit raises for bad input, with where the problem is."""

from __future__ import annotations

from pathlib import Path


class Llm4esError(Exception):
    """Bad input or configuration, located as precisely as we know (file, row, column, key).

    `row` is the 1-based line number in the file (the header is line 1) when the
    input is a text table, else the 0-based row index of a table.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        self.key = key
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file:
            where.append(f"file {self.file}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column {self.column!r}")
        if self.key:
            where.append(f"key {self.key!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message
