"""Turn a request's query string into one SELECT over a mart, with every value bound.

Filters are `<column>=<value>` (eq) or `<column>__<op>=<value>` with op in eq, ne, gt, gte, lt,
lte, like, in (comma-separated). `columns=a,b`, `sort=-a,b`, `limit`, `offset` shape the page.
Column names are looked up in the catalog and written from it (quoted), so a name that is not a
column of the mart never reaches SQL: it is a 400 naming the columns that exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from millpond.core.sql import quote
from millpond.serve.marts.catalog import Mart
from millpond.serve.marts.types import ValueProblem, convert

OPERATORS = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "like": "LIKE"}
LIST_OPERATORS = {"in"}
MAX_IN_VALUES = 1000
MAX_OFFSET = 2**62


class QueryProblem(ValueError):
    """A request the API refuses (400), with a message that says what to change."""


@dataclass
class Filter:
    column: str
    op: str
    values: list[Any]


@dataclass
class MartQuery:
    columns: list[str]
    filters: list[Filter] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (column, descending)
    limit: int = 100
    offset: int = 0
    tiebreak: list[str] = field(default_factory=list)


def _known(mart: Mart, name: str, what: str) -> str:
    if mart.column(name) is None:
        names = ", ".join(c.name for c in mart.columns)
        raise QueryProblem(
            f"unknown {what} {name[:100]!r} for mart {mart.name!r} (columns: {names})"
        )
    return name


def _int(raw: str, what: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise QueryProblem(f"{what} must be an integer, got {raw[:50]!r}") from None
    if not low <= value <= high:
        raise QueryProblem(f"{what} must be between {low} and {high}, got {value}")
    return value


def parse_query(
    mart: Mart, params: Iterable[tuple[str, str]], default_limit: int, max_limit: int
) -> MartQuery:
    """The query a request asks for, checked against the mart's columns and types."""
    names = [c.name for c in mart.columns]
    query = MartQuery(columns=names, limit=default_limit, tiebreak=names[:2])
    for key, raw in params:
        if key == "format":
            continue
        if key == "columns":
            picked = [c.strip() for c in raw.split(",") if c.strip()]
            if not picked:
                raise QueryProblem("columns must name at least one column")
            query.columns = list(dict.fromkeys(_known(mart, c, "column") for c in picked))
        elif key == "sort":
            for item in (s.strip() for s in raw.split(",") if s.strip()):
                descending = item.startswith("-")
                query.sort.append((_known(mart, item.lstrip("-+"), "sort column"), descending))
        elif key == "limit":
            query.limit = _int(raw, "limit", 0, max_limit)
        elif key == "offset":
            query.offset = _int(raw, "offset", 0, MAX_OFFSET)
        else:
            query.filters.append(_filter(mart, key, raw))
    return query


def _filter(mart: Mart, key: str, raw: str) -> Filter:
    name, _, op = key.partition("__") if "__" in key else (key, "", "eq")
    if mart.column(name) is None and mart.column(key) is not None:
        name, op = key, "eq"  # a column whose own name has `__`
    column = mart.column(_known(mart, name, "filter column"))
    assert column is not None
    if op not in OPERATORS and op not in LIST_OPERATORS:
        ops = ", ".join([*OPERATORS, *LIST_OPERATORS])
        raise QueryProblem(f"unknown operator {op[:30]!r} in {key[:100]!r} (operators: {ops})")
    if op == "like":
        return Filter(name, op, [_value(column.name, "str", raw)])
    raws = raw.split(",") if op in LIST_OPERATORS else [raw]
    if len(raws) > MAX_IN_VALUES:
        raise QueryProblem(f"{key}: at most {MAX_IN_VALUES} values")
    return Filter(name, op, [_value(column.name, column.kind, r) for r in raws])


def _value(column: str, kind: str, raw: str) -> Any:
    try:
        return convert(kind, raw)
    except ValueProblem as exc:
        raise QueryProblem(f"filter on {column!r}: {raw[:50]!r} is {exc} ({kind} column)") from None


def build_sql(relation: str, query: MartQuery, placeholder: str) -> tuple[str, str, list[Any]]:
    """(page SELECT, count SELECT, bound values): identifiers quoted, values as placeholders."""
    where: list[str] = []
    params: list[Any] = []
    for f in query.filters:
        col = quote(f.column)
        if f.op == "in":
            where.append(f"{col} IN ({', '.join([placeholder] * len(f.values))})")
        elif f.op == "like":
            where.append(f"CAST({col} AS VARCHAR) LIKE {placeholder}")
        else:
            where.append(f"{col} {OPERATORS[f.op]} {placeholder}")
        params.extend(f.values)
    where_sql = f" WHERE {' AND '.join(where)}" if where else ""
    order = [f"{quote(c)} {'DESC' if d else 'ASC'} NULLS LAST" for c, d in query.sort]
    # A stable order makes limit/offset pages disjoint: the mart's leading (key) columns
    # break ties; ordering by every column would sort whole exports for nothing.
    sorted_by = {c for c, _ in query.sort}
    order += [f"{quote(c)} ASC NULLS LAST" for c in query.tiebreak if c not in sorted_by]
    select = ", ".join(quote(c) for c in query.columns)
    page = (
        f"SELECT {select} FROM {relation}{where_sql} ORDER BY {', '.join(order)} "
        f"LIMIT {int(query.limit)} OFFSET {int(query.offset)}"
    )
    count = f"SELECT count(*) FROM {relation}{where_sql}"
    return page, count, params
