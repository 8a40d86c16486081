"""Column kinds: the few families of SQL types a filter value is converted to before binding."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal, InvalidOperation
from typing import Any

INT64_MAX = 2**63 - 1


class ValueProblem(ValueError):
    """A filter value that does not fit its column's type."""


def kind_of(sql_type: str) -> str:
    """int, decimal, float, date, timestamp, bool or str for a DuckDB or PostgreSQL type name."""
    t = sql_type.upper()
    if t.startswith(("DECIMAL", "NUMERIC")):
        return "decimal"
    if t in {"DOUBLE", "FLOAT", "REAL", "DOUBLE PRECISION", "FLOAT4", "FLOAT8"}:
        return "float"
    if any(w in t for w in ("INT", "SERIAL")) and "INTERVAL" not in t:
        return "int"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    if t == "DATE":
        return "date"
    if t in {"BOOLEAN", "BOOL"}:
        return "bool"
    return "str"


def json_type(kind: str) -> dict[str, Any]:
    """The OpenAPI schema of a value of this kind (as the API accepts it in a query string)."""
    return {
        "int": {"type": "integer"},
        "decimal": {"type": "number"},
        "float": {"type": "number"},
        "date": {"type": "string", "format": "date"},
        "timestamp": {"type": "string", "format": "date-time"},
        "bool": {"type": "boolean"},
    }.get(kind, {"type": "string"})


def convert(kind: str, raw: str) -> Any:
    """The Python value to bind for a query-string value; ValueProblem says why it does not fit."""
    try:
        if kind == "int":
            value = int(raw)
            if abs(value) > INT64_MAX:
                raise ValueProblem("out of the 64-bit integer range")
            return value
        if kind == "decimal":
            number = Decimal(raw)
            if not number.is_finite():
                raise ValueProblem("not a finite number")
            return number
        if kind == "float":
            real = float(raw)
            if not math.isfinite(real):
                raise ValueProblem("not a finite number")
            return real
        if kind == "date":
            return dt.date.fromisoformat(raw)
        if kind == "timestamp":
            return dt.datetime.fromisoformat(raw)
        if kind == "bool":
            lowered = raw.lower()
            if lowered not in {"true", "false", "1", "0"}:
                raise ValueProblem("expected true or false")
            return lowered in {"true", "1"}
    except (ValueError, InvalidOperation) as exc:
        if isinstance(exc, ValueProblem):
            raise
        raise ValueProblem(f"not a valid {kind}") from None
    if "\x00" in raw:
        raise ValueProblem("NUL characters are not allowed")
    return raw
