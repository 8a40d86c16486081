"""The one error a source file raises, kept short enough to read in a terminal and a ledger."""

from __future__ import annotations

# A reason (and the offending line inside it) is cut here: a runaway quote once made DuckDB's
# message 10,447 characters long, ~300 data rows of it.
MAX_REASON = 300


def clip(text: str, limit: int = MAX_REASON) -> str:
    """`text` on one line, at most `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class SourceFileError(Exception):
    """A source file that cannot be read; says which file, where, and why."""

    retryable = False

    def __init__(self, file: str, reason: str, line: int | None = None) -> None:
        self.file, self.reason, self.line = file, clip(reason), line
        where = f"{file}, line {line}" if line is not None else file
        super().__init__(f"{where}: {self.reason}")
