"""The ledger's local buffer: records kept on disk while the ledger database is unreachable.

One JSON line per record (datetimes tagged so they come back as datetimes), appended and
replayed under an inter-process lock because several millpond processes on one machine may share
the file. Replay removes a line only after it was applied, so a crash mid-replay at worst applies
a few records twice (harmless: ledger writes are upserts). A line the database refuses is set
aside in `<buffer>.rejected`, so it cannot block the records after it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from millpond.core.locks import file_lock

Apply = Callable[[str, dict[str, Any]], None]


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    raise TypeError(f"cannot buffer a {type(value).__name__}: {value!r}")


def _decode(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and "$datetime" in obj:
        return datetime.fromisoformat(obj["$datetime"])
    return obj


class RecordBuffer:
    """An append-only file of ledger records waiting for the database."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rejected_path = self.path.with_name(self.path.name + ".rejected")
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    def has_records(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def append(self, op: str, args: dict[str, Any]) -> None:
        record = {"op": op, "args": args, "buffered_at": datetime.now(UTC), "pid": os.getpid()}
        line = json.dumps(record, default=_encode) + "\n"
        with (
            file_lock(self._lock_path, "ledger buffer"),
            self.path.open("a", encoding="utf-8") as fh,
        ):
            fh.write(line)

    def latest(self, op: str, **match: Any) -> dict[str, Any] | None:
        """The arguments of the newest buffered `op` record whose arguments include `match`."""
        found: dict[str, Any] | None = None
        with file_lock(self._lock_path, "ledger buffer"):
            if not self.path.exists():
                return None
            for line in self.path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line, object_hook=_decode)
                    args = record.get("args", {})
                    if record.get("op") == op and all(args.get(k) == v for k, v in match.items()):
                        found = args
        return found

    def replay(
        self,
        apply: Apply,
        stop_on: tuple[type[BaseException], ...],
        reject_on: tuple[type[BaseException], ...],
    ) -> tuple[int, BaseException | None]:
        """Apply records in order; returns (applied, the `stop_on` error that halted replay)."""
        applied = 0
        stopped: BaseException | None = None
        with file_lock(self._lock_path, "ledger buffer"):
            if not self.path.exists():
                return 0, None
            lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
            done = 0
            for index, line in enumerate(lines):
                if line.strip():
                    try:
                        record = json.loads(line, object_hook=_decode)
                        apply(record["op"], record["args"])
                        applied += 1
                    except stop_on as exc:
                        stopped = exc
                        break
                    except reject_on as exc:
                        self._reject(line, exc)
                done = index + 1
            self._rewrite(lines[done:])
        return applied, stopped

    def _reject(self, line: str, exc: BaseException) -> None:
        logger.error("ledger: buffered record rejected ({}); kept in {}", exc, self.rejected_path)
        with self.rejected_path.open("a", encoding="utf-8") as fh:
            fh.write(line if line.endswith("\n") else line + "\n")

    def _rewrite(self, remaining: list[str]) -> None:
        if not remaining:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(remaining), encoding="utf-8")
        os.replace(tmp, self.path)
