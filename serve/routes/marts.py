"""Marts as an API, generated from the dbt manifest: list, describe and query them.

Every mart of the catalog gets its own documented path (typed filter parameters in the OpenAPI
schema); `/marts/{name}` answers for marts published after the service started."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse

from millpond.core.config import MillpondConfig
from millpond.core.masking import mask
from millpond.core.registry import MartsReader
from millpond.serve.deps import (
    ApiKey,
    MartsCatalog,
    RequestConfig,
    Settings,
    catalog_or_503,
    reader_or_503,
)
from millpond.serve.errors import unavailable
from millpond.serve.marts import formats
from millpond.serve.marts.catalog import Catalog, Mart, load_catalog
from millpond.serve.marts.page_cache import PAGES, SMALL_PAGE_ROWS, CachedPage, page_key
from millpond.serve.marts.query import (
    LIST_OPERATORS,
    OPERATORS,
    MartQuery,
    QueryProblem,
    build_sql,
    parse_query,
)
from millpond.serve.marts.types import json_type
from millpond.serve.schemas import MartInfo, MartList

router = APIRouter(prefix="/marts", tags=["marts"], dependencies=[ApiKey])
Format = Literal["json", "csv", "parquet", "arrow"]


def describe(mart: Mart) -> dict[str, Any]:
    return {
        "name": mart.name,
        "schema_name": mart.schema,
        "description": mart.description,
        "columns": [
            {"name": c.name, "type": c.type, "description": c.description} for c in mart.columns
        ],
        "path": f"/marts/{mart.name}",
    }


@router.get("", response_model=MartList)
def list_marts(catalog: MartsCatalog) -> dict[str, Any]:
    """Every published mart with its columns, types and descriptions (from the dbt manifest)."""
    return {"snapshot": catalog.snapshot, "marts": [describe(m) for m in catalog.marts.values()]}


@router.get("/{name}/schema", response_model=MartInfo, responses={404: {"description": "no mart"}})
def mart_schema(name: str, catalog: MartsCatalog) -> dict[str, Any]:
    """One mart's columns, types and descriptions."""
    return describe(_mart(catalog, name))


def _mart(catalog: Catalog, name: str) -> Mart:
    mart = catalog.marts.get(name)
    if mart is None:
        known = ", ".join(catalog.marts) or "none published"
        raise HTTPException(404, f"no mart {name[:100]!r} (marts: {known})")
    return mart


def _format(request: Request, chosen: str | None) -> str:
    if chosen:
        return chosen
    accept = request.headers.get("accept", "")
    for name, media in formats.MEDIA_TYPES.items():
        if media.split(";")[0] in accept:
            return name
    return "json"


def query_mart(
    name: str,
    request: Request,
    config: MillpondConfig,
    settings: Any,
    chosen: str | None,
) -> Response:
    """The rows a request asks for, from one snapshot, in the chosen format: small pages
    whole (and kept per snapshot, serve.marts.page_cache), larger ones streamed."""
    catalog = catalog_or_503(config)
    mart = _mart(catalog, name)
    fmt = _format(request, chosen)
    try:
        query = parse_query(
            mart, request.query_params.multi_items(), settings.default_limit, settings.max_limit
        )
    except QueryProblem as exc:
        raise HTTPException(400, str(exc)) from None
    reader = reader_or_503(config)
    whole = query.limit <= SMALL_PAGE_ROWS
    try:
        page, count, params = build_sql(
            reader.relation(mart.schema, mart.name), query, reader.placeholder
        )
        key = page_key(reader.location, fmt, page, params) if reader.snapshot else None
        cached = PAGES.get(key) if key and whole else None
        if cached is not None:
            reader.close()
            return Response(cached.body, media_type=MEDIA[fmt], headers=dict(cached.headers))
        total = int(reader.scalar(count, params) or 0)
        batches = reader.batches(page, params)
        headers, head = _head(mart, fmt, reader.snapshot, total, query)
        chunks = _write(fmt, batches, head)
        if whole:  # a small page: one body, no thread hop per chunk, kept for this snapshot
            body = b"".join(chunks)
            reader.close()
            if key:
                PAGES.put(key, CachedPage(body, headers))
            return Response(body, media_type=MEDIA[fmt], headers=headers)
    except reader.bad_input as exc:
        reader.close()
        raise HTTPException(400, f"query refused: {mask(str(exc)).splitlines()[0][:300]}") from None
    except Exception as exc:
        reader.close()
        raise unavailable(f"published marts unreadable: {type(exc).__name__}", exc) from None
    return StreamingResponse(_closing(reader, chunks), media_type=MEDIA[fmt], headers=headers)


MEDIA = formats.MEDIA_TYPES


def _head(
    mart: Mart, fmt: str, snapshot: str | None, total: int, query: MartQuery
) -> tuple[dict[str, str], dict[str, Any]]:
    """(HTTP headers, the JSON answer's head) of one page."""
    headers = {"X-Total-Count": str(total), "X-Millpond-Snapshot": snapshot or ""}
    if fmt in ("csv", "parquet", "arrow"):
        ext = {"csv": "csv", "parquet": "parquet", "arrow": "arrows"}[fmt]
        headers["Content-Disposition"] = f'attachment; filename="{mart.name}.{ext}"'
    head = {
        "mart": mart.name,
        "snapshot": snapshot,
        "total": total,
        "limit": query.limit,
        "offset": query.offset,
        "columns": query.columns,
    }
    return headers, head


def _write(fmt: str, batches: Any, head: dict[str, Any]) -> Iterator[bytes]:
    if fmt == "json":
        return formats.write_json(batches, head)
    return {
        "csv": formats.write_csv,
        "parquet": formats.write_parquet,
        "arrow": formats.write_arrow,
    }[fmt](batches)


def _closing(reader: MartsReader, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The reader stays open until the last byte is sent (or the client goes away)."""
    try:
        yield from chunks
    finally:
        reader.close()


FORMAT_DOC = "json (default), csv, parquet or arrow (IPC stream); or send an Accept header"


@router.get(
    "/{name}", responses={400: {"description": "a bad filter"}, 404: {"description": "no mart"}}
)
def mart_rows(  # noqa: PLR0913 (a route's parameters are its documented query)
    name: str,
    request: Request,
    config: RequestConfig,
    settings: Settings,
    format: Annotated[Format | None, Query(description=FORMAT_DOC)] = None,
    columns: Annotated[str | None, Query(description="comma-separated columns")] = None,
    sort: Annotated[str | None, Query(description="comma-separated, `-col` descending")] = None,
    limit: Annotated[int | None, Query(ge=0, description="rows per page")] = None,
    offset: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """Rows of a mart. Filters: `<column>=v`, `<column>__<op>=v` with op in
    eq, ne, gt, gte, lt, lte, like, in (comma-separated values)."""
    return query_mart(name, request, config, settings, format)


def mart_parameters(mart: Mart) -> list[dict[str, Any]]:
    """OpenAPI query parameters of one mart: a typed filter per column and operator."""
    params: list[dict[str, Any]] = []
    for column in mart.columns:
        typed = json_type(column.kind)
        for op in [*OPERATORS, *LIST_OPERATORS]:
            schema = {"type": "string"} if op in {"like", "in"} else typed
            params.append(
                {
                    "name": column.name if op == "eq" else f"{column.name}__{op}",
                    "in": "query",
                    "required": False,
                    "schema": schema,
                    "description": f"{op} filter on {column.name} ({column.type}) "
                    f"{column.description}".strip(),
                }
            )
    return params


def add_mart_routes(router_: APIRouter, config: MillpondConfig) -> None:
    """One documented GET per mart known at start (typed filters in the OpenAPI schema)."""
    try:
        catalog = load_catalog(config)
    except Exception:  # nothing published yet: /marts/{name} still serves later marts
        return
    for mart in catalog.marts.values():
        router_.add_api_route(
            f"/marts/{mart.name}",
            _endpoint_for(mart.name),
            methods=["GET"],
            tags=["marts"],
            summary=f"Rows of {mart.name}",
            description=mart.description,
            dependencies=[ApiKey],
            operation_id=f"mart_{mart.name}",
            openapi_extra={"parameters": mart_parameters(mart)},
            responses={400: {"description": "a bad filter"}},
        )


def _endpoint_for(name: str) -> Any:
    """A GET handler bound to one mart (a closure, so the name is no query parameter)."""

    def endpoint(
        request: Request,
        config: RequestConfig,
        settings: Settings,
        format: Annotated[Format | None, Query(description=FORMAT_DOC)] = None,
        columns: Annotated[str | None, Query()] = None,
        sort: Annotated[str | None, Query()] = None,
        limit: Annotated[int | None, Query(ge=0)] = None,
        offset: Annotated[int | None, Query(ge=0)] = None,
    ) -> Response:
        return query_mart(name, request, config, settings, format)

    return endpoint
