"""Logging for every millpond process: readable console lines, JSON lines per run, no secrets.

Every record carries `run_id` and `node_id` (bound with `node_context`), so one run's JSON log
can be filtered per node no matter which thread or process wrote it. Secret values registered
with `millpond.core.masking.register_secrets` are replaced by *** in every message before any sink
sees it; that is the one place log masking happens, so a new sink cannot leak them.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from millpond.core.masking import contains_secret, mask, registered

if TYPE_CHECKING:
    from loguru import Record  # only in loguru's stubs

_lock = threading.Lock()
_run_sink: dict[str, int] = {}
_console_sink: int | None = None

CONSOLE_FORMAT = (
    "<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> "
    "<cyan>{extra[node_id]}</cyan> {message}"
)


def _patch(record: Record) -> None:
    record["extra"].setdefault("run_id", "-")
    record["extra"].setdefault("node_id", "-")
    if registered():
        record["message"] = mask(record["message"])
        if record["exception"] is not None:
            exc_type, exc, _ = record["exception"]
            if exc is not None and contains_secret(str(exc)):
                record["message"] += f" ({exc_type.__name__ if exc_type else 'error'}: masked)"
                record["exception"] = None


logger.configure(patcher=_patch)  # mask secrets in every sink, even without setup_console


def setup_console(level: str = "INFO", sink: Any = None) -> None:
    """Console logging for CLI commands (to stderr, or e.g. a rich console's print)."""
    global _console_sink
    logger.configure(patcher=_patch, extra={"run_id": "-", "node_id": "-"})
    with _lock:
        if _console_sink is not None:
            logger.remove(_console_sink)
        else:
            logger.remove()
        _console_sink = logger.add(sink or sys.stderr, level=level, format=CONSOLE_FORMAT)


def open_run_log(logs_dir: Path, run_id: str) -> Path:
    """Add a JSON-lines sink holding every record of this run; returns its path."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    path = logs_dir / f"{run_id}.jsonl"
    with _lock:
        if run_id not in _run_sink:
            _run_sink[run_id] = logger.add(
                path,
                level="DEBUG",
                serialize=True,
                enqueue=False,
                filter=lambda record: record["extra"].get("run_id") == run_id,
            )
    return path


def close_run_log(run_id: str) -> None:
    """Remove the run's JSON sink (flushes the file)."""
    with _lock:
        sink = _run_sink.pop(run_id, None)
    if sink is not None:
        logger.remove(sink)


@contextmanager
def node_context(run_id: str, node_id: str = "-") -> Iterator[None]:
    """Bind run_id and node_id to every record logged inside the block."""
    with logger.contextualize(run_id=run_id, node_id=node_id):
        yield


__all__ = [
    "close_run_log",
    "logger",
    "node_context",
    "open_run_log",
    "setup_console",
]
