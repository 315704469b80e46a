"""One error base class for the project; the CLI and the service map it to messages and 4xx."""

from __future__ import annotations

from pathlib import Path


class RecoError(Exception):
    """A failure the user can act on: the message says what and where."""


class InputFileError(RecoError):
    """An input file that cannot be read or lacks what it must have."""

    def __init__(self, path: Path | str, problem: str, *, row: int | None = None, column: str | None = None):
        self.path = str(path)
        self.problem = problem
        self.row = row
        self.column = column
        where = [f"file {self.path}"]
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {problem}")


class NoDataError(RecoError):
    """A step found nothing to work on (e.g. no events for the run date)."""
