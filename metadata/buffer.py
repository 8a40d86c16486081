"""The ledger's local buffer: records kept on disk while the ledger database is unreachable.

One JSON line per record, `{"op": <its kind's name>, "args": <its fields>, ...}` (datetimes
tagged so they come back as datetimes), read back as the same `metadata.records` class, appended and
replayed under an inter-process lock because several millpond processes on one machine may share
the file. Replay removes a line only after it was applied, so a crash mid-replay at worst applies
a few records twice (harmless: ledger writes are upserts). A line the database refuses is set
aside in `<buffer>.rejected`, so it cannot block the records after it.

Records belong to the ledger they were written for: a run's records replayed into another
database would show a run that never ran there, and leave it `running` (later `abandoned`) in
its own. So each ledger has its own buffer file, `<state>/ledger-buffer/<key>.jsonl`, keyed by
a hash of the ledger's URL without its password (`ledger_identity`), with `<key>.ledger`
beside it saying which ledger that is. A ledger replays only its own file; `stranded_buffers`
lists the others (and a `<state>/ledger-buffer.jsonl` from before buffers had keys), which are
kept until their ledger is configured again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from loguru import logger

from millpond.core.locks import file_lock
from millpond.metadata.db import normalize_url
from millpond.metadata.records import LedgerRecord

Apply = Callable[[LedgerRecord], Any]
R = TypeVar("R", bound=LedgerRecord)

BUFFER_DIR = "ledger-buffer"
# Where buffered records went before buffers were kept per ledger (their ledger is unknown).
LEGACY_BUFFER = "ledger-buffer.jsonl"


def ledger_identity(url: str) -> str:
    """Which ledger a URL points at, as a URL without its password (and with libpq's
    defaults spelt out): two spellings of one database give one identity."""
    parts = urlsplit(normalize_url(url))
    query = parse_qs(parts.query)
    socket = (query.get("host") or [""])[0]  # a unix socket folder (the embedded server)
    host = parts.hostname or ("" if socket else "localhost")
    port = parts.port or int((query.get("port") or ["5432"])[0])
    user = parts.username or (query.get("user") or [""])[0]
    database = parts.path.lstrip("/") or (query.get("dbname") or [""])[0] or user
    where = f"{user}@" if user else ""
    identity = f"postgresql://{where}{host}:{port}/{database}"
    return f"{identity}?host={socket}" if socket else identity


def ledger_key(url: str) -> str:
    """A short, stable name for a ledger's buffer file (no password goes into it)."""
    return hashlib.sha256(ledger_identity(url).encode()).hexdigest()[:16]


def buffer_path(state_dir: Path, url: str) -> Path:
    """The buffer file of the ledger at `url` in a stack's state folder."""
    return Path(state_dir) / BUFFER_DIR / f"{ledger_key(url)}.jsonl"


def buffer_files(state_dir: Path) -> list[Path]:
    """Every buffer file of a state folder with records in it, whatever its ledger."""
    folder = Path(state_dir) / BUFFER_DIR
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    files.append(Path(state_dir) / LEGACY_BUFFER)
    return [f for f in files if RecordBuffer(f).has_records()]


def stranded_buffers(state_dir: Path, url: str) -> list[tuple[Path, str | None]]:
    """Buffer files with records meant for another ledger than `url`'s, each with the ledger
    it is for (None: written before buffers had keys, so nobody knows): kept, never replayed
    into this one."""
    mine = buffer_path(state_dir, url)
    return [(f, RecordBuffer(f).ledger()) for f in buffer_files(state_dir) if f != mine]


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

    def __init__(self, path: Path, ledger: str | None = None) -> None:
        self.path = Path(path)
        self.rejected_path = self.path.with_name(self.path.name + ".rejected")
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._ledger_path = self.path.with_suffix(".ledger")
        self._for = ledger  # the ledger identity the records are written for

    def ledger(self) -> str | None:
        """The ledger this file's records are for, as recorded beside it (None: unknown)."""
        try:
            return str(json.loads(self._ledger_path.read_text(encoding="utf-8"))["ledger"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def check_owner(self) -> None:
        """Refuse a file recorded for another ledger: its records must never be replayed here."""
        found = self.ledger()
        if self._for is not None and found is not None and found != self._for:
            raise ValueError(
                f"{self.path} buffers records for the ledger {found}, not {self._for}: "
                "pass each ledger its own buffer file (metadata.buffer.buffer_path)"
            )

    def has_records(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def append(self, record: LedgerRecord) -> None:
        """Keep a record as one line: its kind's name (`op`), its fields, when and by whom."""
        entry = {
            "op": record.op,
            "args": record.args(),
            "buffered_at": datetime.now(UTC),
            "pid": os.getpid(),
        }
        line = json.dumps(entry, default=_encode) + "\n"
        with file_lock(self._lock_path, "ledger buffer"):
            if self._for is not None and not self._ledger_path.exists():
                self._ledger_path.write_text(json.dumps({"ledger": self._for}), encoding="utf-8")
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)

    def latest(self, kind: type[R], **match: Any) -> R | None:
        """The newest buffered record of a kind whose fields include `match`."""
        found: dict[str, Any] | None = None
        with file_lock(self._lock_path, "ledger buffer"):
            if not self.path.exists():
                return None
            for line in self.path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):
                    entry = json.loads(line, object_hook=_decode)
                    args = entry.get("args", {})
                    if entry.get("op") == kind.op and all(
                        args.get(k) == v for k, v in match.items()
                    ):
                        found = args
        return None if found is None else kind(**found)

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
                        entry = json.loads(line, object_hook=_decode)
                        apply(LedgerRecord.from_buffer(entry["op"], entry["args"]))
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
