"""What every ledger record is: a frozen value that carries its own SQL.

A record is written the same way whoever writes it: live by the run's `metadata.ledger.Ledger`
(buffered when the database is down), replayed from a buffer line, or directly on a connection
by a writer without a buffer (`commit`, the API). So a record kind is defined once, as one
subclass: its fields, a `write(cur)` holding its SQL, and the name its buffer lines carry
(`op`), by which a buffered record is read back (`from_buffer`).

Every record's SQL is an upsert or a guarded update: writing one twice leaves the same rows as
writing it once, so a retried node, a re-sent record or a replayed buffer line never
duplicates a row. Timestamps are taken on the client when the record is made, not by the
database, so records replayed later keep their real time.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar

import psycopg
from psycopg.types.json import Jsonb

from millpond.core.masking import mask

# Record fields holding free text (an exception's message can quote a URL, a connection string,
# compiled SQL): masked whoever made the record, before the database or a buffer sees it.
TEXT_FIELDS = frozenset({"error", "errors", "reason", "message", "detail"})


def now() -> datetime:
    """The client's clock, in UTC: when a record was made."""
    return datetime.now(UTC)


def masked_text(value: Any, key: str = "") -> Any:
    """The value with every registered secret masked in its free-text fields (identifiers
    such as node ids and paths are left as they are)."""
    if isinstance(value, dict):
        return {k: masked_text(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked_text(v, key) for v in value]
    if isinstance(value, str) and key in TEXT_FIELDS:
        return mask(value)
    return value


def check_one_of(name: str, value: str, allowed: Iterable[str]) -> None:
    """Refuse a value outside its closed set (a status, an action) with a ValueError."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")


def as_jsonb(value: Any) -> Jsonb:
    """Wrap a value for a jsonb column; odd types (dates, decimals) become strings, not errors."""
    return Jsonb(value, dumps=lambda obj: json.dumps(obj, default=str))


def ensure_run(cur: psycopg.Cursor, run_id: str, at: datetime) -> None:
    """Create a bare run row if needed: an Airflow task may be the first writer of its run."""
    cur.execute(
        "INSERT INTO millpond.runs (run_id, started_at, status) VALUES (%s, %s, 'running') "
        "ON CONFLICT (run_id) DO NOTHING",
        (run_id, at),
    )


@dataclasses.dataclass(frozen=True)
class LedgerRecord:
    """One ledger write. Subclasses are frozen dataclasses declared with their buffer name,
    `class NodeStarted(LedgerRecord, op="node_started")`, and define `write`."""

    op: ClassVar[str]
    # False for a record that must never be buffered (a replayed heartbeat would say that a
    # dead run was alive): `Ledger.try_write` writes it, or says the ledger could not.
    replayable: ClassVar[bool] = True
    _kinds: ClassVar[dict[str, type[LedgerRecord]]] = {}

    def __init_subclass__(cls, op: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if op is not None:  # a shared base of several kinds has no name of its own
            if op in LedgerRecord._kinds:
                raise TypeError(f"two ledger records are named {op!r}")
            cls.op = op
            LedgerRecord._kinds[op] = cls

    def __post_init__(self) -> None:
        self.tidy()
        for field in dataclasses.fields(self):
            self._set(field.name, masked_text(getattr(self, field.name), field.name))

    def tidy(self) -> None:
        """Check and normalise the fields (a ValueError for a value the ledger must not hold);
        runs when the record is made, and again when it is read back from a buffer."""

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # only while the record is being made

    @property
    def empty(self) -> bool:
        """True when the record holds nothing to write (no rows of a many-row record)."""
        return False

    def write(self, cur: psycopg.Cursor) -> Any:
        """Apply the record inside the caller's transaction."""
        raise NotImplementedError

    def args(self) -> dict[str, Any]:
        """The fields by name, as a buffer line stores them."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    @staticmethod
    def from_buffer(op: str, args: dict[str, Any]) -> LedgerRecord:
        """The record a buffer line holds (KeyError: no such kind; TypeError, ValueError: not
        a record of it)."""
        return LedgerRecord._kinds[op](**args)


def commit(conn: psycopg.Connection, record: LedgerRecord) -> Any:
    """Apply one record on an open autocommit connection, in a transaction of its own (the
    one way a record reaches the database, for the buffered writer and the API alike)."""
    with conn.transaction(), conn.cursor() as cur:
        return record.write(cur)
