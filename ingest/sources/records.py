"""JSON records as Arrow, and incremental reads over them: what every API-like source shares.

A source that receives records as JSON objects (the `rest` kind; later an Airbyte connector's
RECORD messages) needs the same steps between the wire and landing, so they live here once:
- `dig` finds the records in a response body (a dotted path);
- `flatten` turns nested objects into `parent__child` columns and lists into JSON text;
- `to_table` makes one Arrow table whose types are stable within a run: a column whose values
  mix kinds (numbers and text) is kept as text; types across runs are reconciled losslessly
  at load (ingest.schema);
- `since` filters an incremental read as dlt's incremental does: records older than the cursor
  are dropped (a source that ignores the cursor, or filters by day), and so are records at the
  cursor value identical to ones already landed (a source that filters inclusively, `>=
  cursor`, sends them again); their hashes are the `boundary` kept in the manifest.

Cursor values compare as instants when they are ISO timestamps (so `...10:00:00.5Z` is later
than `...10:00:00Z`, and `+01:00` offsets count) and as numbers when they are numbers; the value
is kept as the source sent it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from millpond.core.registry import ReadReport

ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")

Record = dict[str, Any]


def dig(body: Any, path: str | None) -> Any:
    """The value at a dotted path of a JSON body (None when a step is missing)."""
    if not path:
        return body
    for step in path.split("."):
        if not isinstance(body, dict) or step not in body:
            return None
        body = body[step]
    return body


def flatten(record: Record, prefix: str = "") -> Record:
    """Nested objects as `parent__child` columns; lists as JSON text."""
    flat: Record = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}__"))
        elif isinstance(value, list):
            flat[name] = json.dumps(value, sort_keys=True)
        else:
            flat[name] = value
    return flat


def flattened_name(field: str) -> str:
    """The column a dotted field of a nested record becomes once flattened."""
    return field.replace(".", "__")


def to_table(records: list[Record]) -> pa.Table:
    """One Arrow table with stable types: a column mixing kinds of values is kept as text."""
    columns: dict[str, list[Any]] = {}
    for index, record in enumerate(records):
        for name in record:
            columns.setdefault(name, [None] * index)
        for name, values in columns.items():
            values.append(record.get(name))
    arrays = {}
    for name, values in columns.items():
        kinds = {_kind(v) for v in values if v is not None}
        if len(kinds) > 1 and kinds != {"int", "float"}:
            values = [
                None if v is None else (v if isinstance(v, str) else json.dumps(v)) for v in values
            ]
        arrays[name] = pa.array(values)
    return pa.table(arrays) if arrays else pa.table({})


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


def cursor_order(value: Any) -> tuple[int, Any]:
    """How cursor values compare: ISO timestamps as instants (naive ones as UTC), numbers as
    numbers, other text as text; kinds never compare with each other, so no TypeError."""
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int | float):
        return (0, value)
    text = str(value)
    if ISO_DATE.match(text):
        try:
            instant = dt.datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if instant.tzinfo is None:
                instant = instant.replace(tzinfo=dt.UTC)
            return (1, instant.astimezone(dt.UTC))
    return (2, text)


def latest(values: Iterable[Any]) -> Any:
    """The largest cursor value as it was sent (None for none)."""
    present = [v for v in values if v is not None and v != ""]
    return max(present, key=cursor_order) if present else None


def record_hash(record: Record) -> str:
    """A flattened record's content hash (what `boundary` keeps)."""
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def since(
    records: list[Record], field: str, start: Any, boundary: frozenset[str], *, kind: str
) -> tuple[list[Record], Any, ReadReport]:
    """The records not landed yet, the cursor once they are, and the read's report (its
    identity starts with the source's `kind`).

    Dropped: records whose `field` is older than `start` (the source ignored the cursor, or
    filters more coarsely) and records at `start` identical to ones landed there (`boundary`:
    an inclusive source sends them again). Records without a value are kept. The new boundary
    holds the kept records at the new cursor value (and the old boundary when the cursor did
    not move)."""
    low = cursor_order(start) if start is not None else None
    kept: list[Record] = []
    hashes: list[str] = []
    older = repeats = 0
    for record in records:
        value = record.get(field)
        digest = record_hash(record)
        if low is not None and value not in (None, ""):
            order = cursor_order(value)
            if order < low:
                older += 1
                continue
            if order == low and digest in boundary:
                repeats += 1
                continue
        kept.append(record)
        hashes.append(digest)
    cursor = latest([start, *(r.get(field) for r in kept)])  # ties keep the start's text
    top = cursor_order(cursor) if cursor is not None else None
    moved = top is not None and top != low
    edge = {
        digest
        for record, digest in zip(kept, hashes, strict=True)
        if record.get(field) not in (None, "") and cursor_order(record.get(field)) == top
    }
    if not moved:
        edge |= boundary
    identity = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    report = ReadReport(
        identity=f"{kind}:{identity}",
        returned=len(records),
        fresh=len(records) - repeats,
        moved=moved,
        dropped=older + repeats,
        boundary=tuple(sorted(edge)),
    )
    return kept, cursor, report
