"""The `rest` source kind: JSON APIs declared in millpond.yml, paginated, incremental.

httpx for the requests and tenacity for the retries, both already millpond dependencies:
dlt's RESTClient does this well too, but dlt cannot share millpond's environment cheaply (its
pins) and brings its own state and normalizer, which millpond already has (the lake, manifests,
cursors). Retries: exponential backoff on 5xx, timeouts and connection errors; a 429 waits what
its Retry-After says (bounded). A guard stops pagination that repeats a page (the same request
or the same content twice) or passes `max_pages`.

Records become one Arrow table per run: nested objects are flattened to `parent__child`
columns, lists kept as JSON text, and a column whose values mix types (numbers and text) is
kept as text, so a run's types are stable; types across runs are reconciled losslessly at load.
The records of one run are held in memory: right for the APIs small teams pull from.

Cursors: the largest `cursor_field` value read, compared as instants when the values are ISO
timestamps (so `...10:00:00.5Z` is later than `...10:00:00Z`, and `+01:00` offsets count) and
as numbers when they are numbers; the value is committed as the API sent it. A read that finds
nothing lands nothing (the table keeps its last partition).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Iterable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urljoin

import httpx
import pyarrow as pa
from pydantic import Field, field_validator, model_validator
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from millpond.core.config import MillpondConfig, SourceConfigBase, StrictModel
from millpond.core.logs import logger
from millpond.core.masking import (
    SECRET_NAME,
    mask,
    mask_inline,
    mask_url,
    register_secrets,
    url_password,
)
from millpond.core.registry import SourceItem, SourceKind, TableState

MAX_RETRY_AFTER_SECONDS = 120.0
# Header and query parameter names whose values are credentials (beyond SECRET_NAME's).
SECRET_PARAM = re.compile(
    r"(?i)(key$|^(proxy-)?authorization$|^auth$|signature|^sig$|session|cookie|^pass$)"
)
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


class RestSourceError(Exception):
    """A response or a pagination that cannot be used as configured; says source, table, URL
    (secrets masked) and what to change. Retrying cannot help."""

    retryable = False


class RetryableHttpError(Exception):
    """A 5xx, a 429, a timeout: worth another attempt."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class Auth(StrictModel):
    """bearer (token), api_key (name, value, in header or query) or basic (username,
    password); values from `${ENV}`."""

    type: Literal["bearer", "api_key", "basic"]
    token: str | None = None
    name: str | None = None
    value: str | None = None
    location: Literal["header", "query"] = Field("header", alias="in")
    username: str | None = None
    password: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Auth:
        needed = {"bearer": ("token",), "api_key": ("name", "value"), "basic": ("username",)}
        missing = [f for f in needed[self.type] if not getattr(self, f)]
        if missing:
            raise ValueError(f"auth type {self.type} needs {', '.join(missing)}")
        return self

    def secrets(self) -> list[str]:
        return [s for s in (self.token, self.value, self.password) if s]


class Paginate(StrictModel):
    """How to get the next page: page_number, offset, cursor (in the body), next_url (in the
    body), link_header, or none."""

    style: Literal["none", "page_number", "offset", "cursor", "next_url", "link_header"] = "none"
    param: str | None = None  # page_number: the page param; cursor: the cursor param
    start: int = 1  # page_number: the first page
    size_param: str | None = None  # page_number: page size param (optional)
    size: int | None = None
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = 100
    cursor_path: str | None = None  # cursor: where the next cursor is in the body
    next_url_path: str | None = None  # next_url: where the next URL is in the body


class RestIncremental(StrictModel):
    """Ask only for what is new: `param` gets the cursor (the largest `cursor_field` seen)."""

    cursor_field: str
    param: str
    initial: Any = None


class Endpoint(StrictModel):
    """One table: a path under base_url, its params, where its records are, its paging."""

    path: str
    params: dict[str, Any] = Field(default_factory=dict)
    record_path: str | None = None  # dotted path to the list of records; unset: the body
    paginate: Paginate = Paginate()
    incremental: RestIncremental | None = None
    primary_key: list[str] = Field(default_factory=list)


class RestSourceConfig(SourceConfigBase):
    """An HTTP JSON API; each table is an endpoint."""

    kind: Literal["rest"]
    base_url: str
    headers: dict[str, str] = Field(default_factory=dict)
    auth: Auth | None = None
    tables: dict[str, Endpoint]
    timeout_seconds: float = Field(30, gt=0)
    retries: int = Field(5, ge=0, le=20)
    max_pages: int = Field(10_000, ge=1)

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") + "/"

    def secrets(self) -> list[str]:
        """Credentials wherever they were put: auth, the base URL's password, and headers or
        query params whose names say they hold one (`access_token`, `X-API-Key`, ...)."""
        found = list(self.auth.secrets()) if self.auth else []
        found.append(url_password(self.base_url) or "")
        named = [self.headers] + [spec.params for spec in self.tables.values()]
        for values in named:
            for key, value in values.items():
                if key.lower() in ("authorization", "proxy-authorization") or _secret_name(key):
                    text = str(value)
                    found.append(text)
                    found.append(text.split(" ", 1)[-1])  # the credential after `Token `
        return [s for s in found if s]


def _secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name) or SECRET_PARAM.search(name))


def dig(body: Any, path: str | None) -> Any:
    """The value at a dotted path of a JSON body (None when a step is missing)."""
    if not path:
        return body
    for step in path.split("."):
        if not isinstance(body, dict) or step not in body:
            return None
        body = body[step]
    return body


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as `parent__child` columns; lists as JSON text."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}__"))
        elif isinstance(value, list):
            flat[name] = json.dumps(value, sort_keys=True)
        else:
            flat[name] = value
    return flat


def to_table(records: list[dict[str, Any]]) -> pa.Table:
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


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER_SECONDS))


def _wait(state: RetryCallState) -> float:
    """Retry-After when the server said it, else exponential backoff."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, RetryableHttpError) and error.wait is not None:
        return error.wait
    return wait_exponential(multiplier=0.5, max=30)(state)


class RestSource:
    """One API; each table's pages are fetched in order within its extract."""

    def __init__(self, name: str, config: RestSourceConfig) -> None:
        self.name = name
        self.config = config
        register_secrets(config.secrets())

    def items(self, table: str, state: TableState | None = None) -> list[SourceItem]:
        spec = self.config.tables[table]
        start = None
        if spec.incremental is not None:
            start = state.cursor if state and state.cursor is not None else spec.incremental.initial
        what = {"table": table, "spec": spec.model_dump(mode="json"), "from": start}
        fingerprint = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode())
        # Incremental reads are identified by where they start; full reads land every run.
        key = (
            fingerprint.hexdigest()
            if spec.incremental
            else f"{fingerprint.hexdigest()}:{time.time_ns()}"
        )
        found: dict[str, Any] = {"max": start}

        def read() -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
            records = [flatten(r) for r in self._records(table, start)]
            if spec.incremental is not None and records:
                field = spec.incremental.cursor_field.replace(".", "__")  # flattened name
                top = latest(r.get(field) for r in records)
                if top is None:
                    raise RestSourceError(
                        f"{self.name}.{table}: no record has the cursor field "
                        f"{spec.incremental.cursor_field!r} (fields: "
                        f"{', '.join(list(records[0])[:10])}); set "
                        f"sources.{self.name}.tables.{table}.incremental.cursor_field"
                    )
                found["max"] = latest([top, found["max"]])
            data = to_table(records)
            return data.schema, iter(data.to_batches())

        return [
            SourceItem(
                name=f"{self.name}.{table}" + (f" after {start}" if start is not None else ""),
                fingerprint=f"rest:{key}",
                size=0,
                read=read,
                cursor=(lambda: found["max"]) if spec.incremental else None,
                # Nothing read, nothing landed: an empty full read would wipe the columns
                # the models select; the last snapshot stays.
                land_if_empty=False,
                replace=spec.incremental is None,
                primary_key=tuple(spec.primary_key),
                order_by=(
                    spec.incremental.cursor_field.replace(".", "__") if spec.incremental else None
                ),
            )
        ]

    def _client(self) -> httpx.Client:
        headers = dict(self.config.headers)
        auth: httpx.Auth | None = None
        params: dict[str, str] = {}
        credentials = self.config.auth
        if credentials is not None:
            if credentials.type == "bearer":
                headers["Authorization"] = f"Bearer {credentials.token}"
            elif credentials.type == "basic":
                auth = httpx.BasicAuth(credentials.username or "", credentials.password or "")
            elif credentials.location == "header":
                headers[credentials.name or "X-API-Key"] = credentials.value or ""
            else:
                params[credentials.name or "api_key"] = credentials.value or ""
        return httpx.Client(
            headers=headers,
            auth=auth,
            params=params,
            timeout=self.config.timeout_seconds,
            follow_redirects=True,
        )

    def _records(self, table: str, start: Any) -> Iterator[dict[str, Any]]:
        """Every record of every page, in order."""
        spec = self.config.tables[table]
        paging = spec.paginate
        url = urljoin(self.config.base_url, spec.path.lstrip("/"))
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
        seen_requests: set[str] = set()
        seen_pages: set[str] = set()
        with self._client() as client:
            for page in range(1, self.config.max_pages + 2):
                where = f"{self.name}.{table}, page {page} ({self._shown(url, params)})"
                if page > self.config.max_pages:
                    raise RestSourceError(
                        f"{where}: more than max_pages={self.config.max_pages} pages; raise "
                        f"sources.{self.name}.max_pages if the API really is that long"
                    )
                request_key = json.dumps([url, sorted(params.items())], default=str)
                if request_key in seen_requests:
                    raise RestSourceError(f"{where}: the API sent the same next page again")
                seen_requests.add(request_key)
                response = self._get(client, url, params, where)
                try:
                    body = response.json()
                except ValueError:
                    kind = response.headers.get("content-type", "no content type")
                    raise RestSourceError(
                        f"{where}: the response is not JSON ({kind}: "
                        f"{mask(response.text[:80])!r}); check tables.{table}.path"
                    ) from None
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
                digest = hashlib.sha256(response.content).hexdigest()
                if records and digest in seen_pages:
                    raise RestSourceError(f"{where}: the API sent a page it sent before")
                seen_pages.add(digest)
                yield from (r if isinstance(r, dict) else {"value": r} for r in records)
                following = self._next(paging, body, response, params, len(records))
                if following is None:
                    return
                url, params = following
                logger.debug(f"{self.name}.{table}: page {page} had {len(records)} records")

    def _next(
        self,
        paging: Paginate,
        body: Any,
        response: httpx.Response,
        params: dict[str, Any],
        count: int,
    ) -> tuple[str, dict[str, Any]] | None:
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

    def _get(
        self, client: httpx.Client, url: str, params: dict[str, Any], where: str
    ) -> httpx.Response:
        @retry(
            retry=retry_if_exception(lambda e: isinstance(e, RetryableHttpError)),
            stop=stop_after_attempt(self.config.retries + 1),
            wait=_wait,
            reraise=True,
        )
        def attempt() -> httpx.Response:
            try:
                response = client.get(url, params=params)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise RetryableHttpError(f"{where}: {type(exc).__name__}") from None
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryableHttpError(
                    f"{where}: HTTP {response.status_code}", _retry_after(response)
                )
            if response.status_code >= 400:
                raise RestSourceError(
                    f"{where}: HTTP {response.status_code} {mask(response.text[:200])}"
                )
            return response

        try:
            return attempt()
        except RetryableHttpError as exc:
            raise ConnectionError(
                f"{exc} after {self.config.retries + 1} attempts (sources.{self.name}.retries)"
            ) from None

    def _shown(self, url: str, params: dict[str, Any]) -> str:
        query = "&".join(f"{k}={'***' if _secret_name(k) else v}" for k, v in params.items())
        return mask(mask_inline(mask_url(f"{url}?{query}" if query else url)))

    def warnings(self) -> list[str]:
        return []


def _create(name: str, config: RestSourceConfig, stack: MillpondConfig) -> RestSource:
    return RestSource(name, config)


REST = SourceKind(config_model=RestSourceConfig, create=_create)
