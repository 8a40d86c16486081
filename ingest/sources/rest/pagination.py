"""Pages of a `rest` endpoint: the first request, the next one, the records of each, guarded.

Styles: page_number, offset, cursor (in the body), next_url (in the body), link_header, none.
A guard stops pagination that repeats a page (the same request or the same content twice) or
passes `max_pages`, so an API that loops never makes a run hang or land a page twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import httpx

from millpond.core.logs import logger
from millpond.core.masking import mask
from millpond.ingest.sources.records import Record, dig
from millpond.ingest.sources.rest.client import ApiClient, shown
from millpond.ingest.sources.rest.config import Endpoint, Paginate, RestSourceError

Request = tuple[str, dict[str, Any]]


def first_request(base_url: str, spec: Endpoint, start: Any) -> Request:
    """The first page's URL and params: the endpoint's own, the cursor, the paging's start."""
    paging = spec.paginate
    url = urljoin(base_url, spec.path.lstrip("/"))
    params: dict[str, Any] = dict(spec.params)
    if spec.incremental is not None and start is not None:
        params[spec.incremental.param] = start
    if paging.style == "page_number":
        params[paging.param or "page"] = paging.start
        if paging.size_param and paging.size:
            params[paging.size_param] = paging.size
    elif paging.style == "offset":
        params[paging.offset_param] = 0
        params[paging.limit_param] = paging.limit
    return url, params


def next_request(
    paging: Paginate, body: Any, response: httpx.Response, params: dict[str, Any], count: int
) -> Request | None:
    """The next request (URL, params), or None after the last page."""
    url = str(response.request.url.copy_with(query=None))
    if paging.style == "none":
        return None
    if paging.style == "page_number":
        if count == 0 or (paging.size and count < paging.size):
            return None
        key = paging.param or "page"
        return url, {**params, key: int(params[key]) + 1}
    if paging.style == "offset":
        if count < paging.limit:
            return None
        return url, {**params, paging.offset_param: int(params[paging.offset_param]) + count}
    if paging.style == "cursor":
        cursor = dig(body, paging.cursor_path)
        if cursor in (None, ""):
            return None
        return url, {**params, paging.param or "cursor": cursor}
    if paging.style == "next_url":
        link = dig(body, paging.next_url_path)
    else:
        link = response.links.get("next", {}).get("url")
    if not link:
        return None
    # The link's own query becomes the params (httpx would replace it with `params`).
    following = httpx.URL(urljoin(url, str(link)))
    return str(following.copy_with(query=None)), dict(following.params)


def page_body(response: httpx.Response, table: str, where: str) -> Any:
    """A page's JSON body; a page that is not JSON is a RestSourceError naming the path."""
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        raise RestSourceError(
            f"{where}: the response is not JSON ({kind}: "
            f"{mask(response.text[:80])!r}); check tables.{table}.path"
        ) from None


def page_records(body: Any, spec: Endpoint, table: str, where: str) -> list[Any]:
    """The records of one page, where `record_path` says (one object counts as one record)."""
    records = dig(body, spec.record_path)
    if records is None and spec.record_path:
        keys = ", ".join(list(body)[:10]) if isinstance(body, dict) else "none"
        raise RestSourceError(
            f"{where}: no {spec.record_path!r} in the response (top-level keys: "
            f"{keys}); set tables.{table}.record_path"
        )
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list):
        raise RestSourceError(f"{where}: record_path does not lead to a list")
    return records


def records(api: ApiClient, table: str, spec: Endpoint, start: Any) -> Iterator[Record]:
    """Every record of every page of one endpoint, in order (a value that is not an object
    becomes `{"value": ...}`)."""
    source, max_pages = api.source, api.config.max_pages
    url, params = first_request(api.config.base_url, spec, start)
    seen_requests: set[str] = set()
    seen_pages: set[str] = set()
    for page in range(1, max_pages + 2):
        where = f"{source}.{table}, page {page} ({shown(url, params)})"
        if page > max_pages:
            raise RestSourceError(
                f"{where}: more than max_pages={max_pages} pages; raise "
                f"sources.{source}.max_pages if the API really is that long"
            )
        request_key = json.dumps([url, sorted(params.items())], default=str)
        if request_key in seen_requests:
            raise RestSourceError(f"{where}: the API sent the same next page again")
        seen_requests.add(request_key)
        response = api.get(url, params, where)
        body = page_body(response, table, where)
        found = page_records(body, spec, table, where)
        digest = hashlib.sha256(response.content).hexdigest()
        if found and digest in seen_pages:
            raise RestSourceError(f"{where}: the API sent a page it sent before")
        seen_pages.add(digest)
        yield from (r if isinstance(r, dict) else {"value": r} for r in found)
        following = next_request(spec.paginate, body, response, params, len(found))
        if following is None:
            return
        url, params = following
        logger.debug(f"{source}.{table}: page {page} had {len(found)} records")
