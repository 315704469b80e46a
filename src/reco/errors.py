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


class DataContractError(RecoError):
    """The day's data broke its contract (``reco.contract``): the same on every attempt, so never retried."""


class RetryableError(RecoError):
    """A failure of something reco depends on (a server down or overloaded) that a later attempt may not meet."""


class NoChampionError(RecoError):
    """The registry has no version behind the alias asked for (no model passed the gate yet)."""


class StepError(RecoError):
    """A pipeline step that failed for good (after its retries): which step, which date, and why.

    ``cause`` is the original exception; when it is not a ``RecoError`` it is a defect of reco
    rather than of the input, and the CLI says so (with the log file that holds its traceback).
    """

    def __init__(self, step: str, day: str, cause: BaseException):
        self.step = step
        self.day = day
        self.cause = cause
        detail = str(cause) if isinstance(cause, RecoError) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"step {step} failed for {day}: {detail}")

    @property
    def unexpected(self) -> bool:
        return not isinstance(self.cause, RecoError)

    @property
    def retryable(self) -> bool:
        """Whether another attempt may succeed: anything but a clear error of the input or the data."""
        return self.unexpected or isinstance(self.cause, RetryableError)
