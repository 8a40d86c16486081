"""What the database source kinds (sql, odbc) share: a table spec and incremental cursors.

A table is a whole table or a query, read full or incrementally. The cursor is the largest
value of the incremental column read so far; it is kept as JSON in the partition's manifest and
turned back into the column's own type (datetime, Decimal...) before it is compared.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from millpond.core.config import StrictModel
from millpond.core.monitoring import TableMonitors
from millpond.core.registry import ReadReport, SourceItem, TableState

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


class TableReadError(Exception):
    """A table or query that cannot be read as configured; says source, table and why."""

    retryable = False


class Incremental(StrictModel):
    """Read only what is new: rows with `column` beyond the cursor."""

    column: str
    # Re-read this much before the cursor (seconds for dates and timestamps, units for
    # numbers), for rows updated late; re-read rows land again (deduplicate by primary_key).
    lookback: float = Field(0, ge=0)
    # The cursor's starting value; unset reads everything on the first run.
    initial: Any = None


class TableSpec(TableMonitors):
    """One table of a database source: a table (`schema.name`, default the table's key) or a
    query, full or incremental, with an optional primary key (and its monitors:
    `expect_every`, `volume`, millpond.core.monitoring)."""

    table: str | None = None
    query: str | None = None
    incremental: Incremental | None = None
    primary_key: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _table_or_query(self) -> TableSpec:
        if self.table and self.query:
            raise ValueError("give `table` or `query`, not both")
        if self.table and not all(_NAME.fullmatch(p) for p in self.table.split(".")):
            raise ValueError(f"table {self.table!r} must be name or schema.name")
        return self


def starting_point(table: str, spec: TableSpec, state: TableState | None) -> tuple[Any, str]:
    """Where a read of the table starts (the committed cursor, else `initial`) and a
    fingerprint no landed read has, so every run asks the database: a full read lands a new
    snapshot every run; an incremental read is recorded under what it returned
    (`read_report`), so the same read (a `lookback` window with nothing new) lands once."""
    if spec.incremental is None:
        return None, f"full:{uuid.uuid4().hex}"
    cursor = state.cursor if state else None
    start = cursor if cursor is not None else spec.incremental.initial
    return start, f"incremental:{uuid.uuid4().hex}"


def read_report(table: str, spec: TableSpec, start: Any, state: dict[str, Any]) -> ReadReport:
    """An incremental read known by its range and its rows: table, spec, start, the largest
    value read and the row count (the server filters strictly beyond the start, so a read
    with a new row has a new largest value or more rows)."""
    end = json_value(state["max"])
    rows = int(state.get("rows", 0))
    what = {
        "table": table,
        "spec": spec.read_spec(),
        "from": start,
        "to": end,
        "rows": rows,
    }
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()
    moved = rows > 0 and json.dumps(end, default=str) != json.dumps(start, default=str)
    return ReadReport(identity=f"incremental:{digest}", returned=rows, fresh=rows, moved=moved)


def table_item(
    source: str,
    table: str,
    spec: TableSpec,
    start: Any,
    fingerprint: str,
    read: Callable[[], tuple[pa.Schema, Iterator[pa.RecordBatch]]],
    state: dict[str, Any],
) -> SourceItem:
    """The SourceItem of one read: full reads replace the table's older snapshots, incremental
    ones land only when they found rows and commit the largest cursor value read."""
    report = (lambda: read_report(table, spec, start, state)) if spec.incremental else None
    return SourceItem(
        name=f"{source}.{table}" + (f" after {start}" if start is not None else ""),
        fingerprint=fingerprint,
        size=0,
        read=read,
        cursor=(lambda: json_value(state["max"])) if spec.incremental else None,
        land_if_empty=spec.incremental is None,
        replace=spec.incremental is None,
        primary_key=tuple(spec.primary_key),
        order_by=spec.incremental.column if spec.incremental else None,
        report=report,
    )


def native(value: Any, arrow_type: pa.DataType, where: str) -> Any:
    """A cursor read back from JSON as the column's own Python type (datetime, Decimal...)."""
    try:
        return pa.scalar(value).cast(arrow_type).as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise TableReadError(
            f"{where}: cursor {value!r} does not fit {arrow_type}: {exc}"
        ) from None


def minus_lookback(value: Any, lookback: float) -> Any:
    """The cursor moved back by the lookback window (seconds for dates and times)."""
    if not lookback:
        return value
    if isinstance(value, dt.datetime):
        return value - dt.timedelta(seconds=lookback)
    if isinstance(value, dt.date):
        return value - dt.timedelta(days=max(1, int(lookback // 86_400)))
    if isinstance(value, decimal.Decimal):
        return value - decimal.Decimal(str(lookback))
    return value - type(value)(lookback)


def json_value(value: Any) -> Any:
    """A cursor value as JSON (manifests and the ledger hold it)."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def tracking_cursor(
    batches: Iterable[pa.RecordBatch],
    column: str | None,
    state: dict[str, Any],
    close: Callable[[], None],
) -> TrackedBatches:
    """The batches, keeping state["max"] at the largest `column` value seen and state["rows"]
    at the rows read; `close` runs when the batches are done, abandoned, or closed before the
    first one was read."""
    return TrackedBatches(batches, column, state, close)


class TrackedBatches:
    """An iterator of batches whose `close()` releases the connection even if no batch was
    read (a generator's `finally` does not run then): landing may refuse a read on its schema
    alone, and an open connection would hold the source table's locks."""

    def __init__(
        self,
        batches: Iterable[pa.RecordBatch],
        column: str | None,
        state: dict[str, Any],
        close: Callable[[], None],
    ) -> None:
        self._source: Any = batches
        self._batches = iter(batches)
        self._column, self._state, self._close = column, state, close
        self._closed = False

    def __iter__(self) -> TrackedBatches:
        return self

    def __next__(self) -> pa.RecordBatch:
        try:
            batch = next(self._batches)
        except BaseException:
            self.close()
            raise
        self._state["rows"] = self._state.get("rows", 0) + batch.num_rows
        if self._column is not None and batch.num_rows:
            top = pc.max(batch.column(self._column)).as_py()
            if top is not None and (self._state["max"] is None or top > self._state["max"]):
                self._state["max"] = top
        return batch

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            # The reader holds the query's result, and the result the server connection:
            # release it before the connection, and drop the references to both.
            with contextlib.suppress(Exception):
                getattr(self._source, "close", lambda: None)()
            self._source = self._batches = iter(())
            self._close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit the connection may be gone
            self.close()
