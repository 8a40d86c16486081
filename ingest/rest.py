"""The `rest` source kind: JSON APIs declared in millpond.yml, paginated, incremental.

httpx for the requests and tenacity for the retries, both already millpond dependencies:
dlt's RESTClient does this well too, but dlt cannot share millpond's environment cheaply (its
pins) and brings its own state and normalizer, which millpond already has (the lake, manifests,
cursors). Retries: exponential backoff on 5xx, timeouts and connection errors; a 429 waits what
its Retry-After says (bounded); each retry is logged at info with the status and the wait. A
guard stops pagination that repeats a page (the same request or the same content twice) or
passes `max_pages`. Redirects are followed by hand: one to another origin (scheme, host, port)
carries no credential, whatever header or query parameter held it.

Records become one Arrow table per run: nested objects are flattened to `parent__child`
columns, lists kept as JSON text, and a column whose values mix types (numbers and text) is
kept as text, so a run's types are stable; types across runs are reconciled losslessly at load.
The records of one run are held in memory: right for the APIs small teams pull from.

Cursors: the largest `cursor_field` value read, compared as instants when the values are ISO
timestamps (so `...10:00:00.5Z` is later than `...10:00:00Z`, and `+01:00` offsets count) and
as numbers when they are numbers; the value is committed as the API sent it. A read that finds
nothing lands nothing (the table keeps its last partition).

Every run asks the API (a read is known by what it returned, not by where it started). What
comes back is filtered as dlt's incremental does: records older than the cursor are dropped (an
API that ignores the parameter, or filters by day), and so are records at the cursor value
identical to ones already landed (an API that filters inclusively, `>= cursor`, sends them
again); their hashes are kept in the manifest (`boundary`). When the cursor stays put for
`stall_runs` runs while the API keeps sending records, landing warns (or fails: `on_stall`).
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
    collect_secrets,
    is_credential_param,
    mask,
    mask_inline,
    mask_url,
    register_secrets,
)
from millpond.core.registry import ReadReport, SourceItem, SourceKind, StallCheck, TableState

MAX_RETRY_AFTER_SECONDS = 120.0
MAX_REDIRECTS = 20
# Headers a user may set that never carry a credential: the only configured headers still
# sent after a redirect to another origin.
HARMLESS_HEADERS = frozenset(
    {"accept", "accept-encoding", "accept-language", "user-agent", "cache-control"}
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
    """Ask only for what is new: `param` gets the cursor (the largest `cursor_field` seen).
    `stall_runs` and `on_stall` override the source's for this table."""

    cursor_field: str
    param: str
    initial: Any = None
    stall_runs: int | None = Field(None, ge=1)
    on_stall: Literal["warn", "fail"] | None = None


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
    # An incremental table whose cursor has not moved for this many runs in a row while the
    # API kept sending records is a warning in the log, the summary and the ledger (`fail`:
    # the extract fails instead).
    stall_runs: int = Field(3, ge=1)
    on_stall: Literal["warn", "fail"] = "warn"

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") + "/"

    def secrets(self) -> list[str]:
        """Credentials wherever they were put (auth, the base URL's password, headers or query
        params whose names say they hold one), by millpond.core.masking's one policy."""
        return collect_secrets(self.model_dump(), (), ("sources", "rest"))


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port (the scheme's default when unset): what must match for a
    request to get the credentials."""
    port = url.port if url.port is not None else {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, port


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


def record_hash(record: dict[str, Any]) -> str:
    """A flattened record's content hash (what `boundary` keeps)."""
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def since(
    records: list[dict[str, Any]], field: str, start: Any, boundary: frozenset[str]
) -> tuple[list[dict[str, Any]], Any, ReadReport]:
    """The records not landed yet, the cursor once they are, and the read's report.

    Dropped: records whose `field` is older than `start` (the API ignored the parameter, or
    filters more coarsely) and records at `start` identical to ones landed there (`boundary`:
    an inclusive API sends them again). Records without a value are kept. The new boundary
    holds the kept records at the new cursor value (and the old boundary when the cursor did
    not move)."""
    low = cursor_order(start) if start is not None else None
    kept: list[dict[str, Any]] = []
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
        identity=f"rest:{identity}",
        returned=len(records),
        fresh=len(records) - repeats,
        moved=moved,
        dropped=older + repeats,
        boundary=tuple(sorted(edge)),
    )
    return kept, cursor, report


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
        self._origin = _origin(httpx.URL(config.base_url))
        # Configured headers that cannot hold a credential go everywhere; every other one,
        # and the auth, only to base_url's origin (never after a redirect elsewhere).
        self._headers = {k: v for k, v in config.headers.items() if k.lower() in HARMLESS_HEADERS}
        self._home_headers = {
            k: v for k, v in config.headers.items() if k.lower() not in HARMLESS_HEADERS
        }
        self._home_params: dict[str, str] = {}
        self._basic: httpx.Auth | None = None
        credentials = config.auth
        if credentials is not None:
            if credentials.type == "bearer":
                self._home_headers["Authorization"] = f"Bearer {credentials.token}"
            elif credentials.type == "basic":
                self._basic = httpx.BasicAuth(
                    credentials.username or "", credentials.password or ""
                )
            elif credentials.location == "header":
                self._home_headers[credentials.name or "X-API-Key"] = credentials.value or ""
            else:
                self._home_params[credentials.name or "api_key"] = credentials.value or ""

    def items(self, table: str, state: TableState | None = None) -> list[SourceItem]:
        spec = self.config.tables[table]
        incremental = spec.incremental
        start = None
        boundary: frozenset[str] = frozenset()
        if incremental is not None:
            if state is not None and state.cursor is not None:
                start, boundary = state.cursor, frozenset(state.boundary)
            else:
                start = incremental.initial
        what = {"table": table, "spec": spec.model_dump(mode="json"), "from": start}
        fingerprint = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode())
        # Every read asks the API: a full read lands a snapshot, an incremental read is
        # recorded under what it returned (its report's identity).
        key = f"{fingerprint.hexdigest()}:{time.time_ns()}"
        found: dict[str, Any] = {"max": start, "report": None}

        def read() -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
            records = [flatten(r) for r in self._records(table, start)]
            if incremental is not None:
                field = incremental.cursor_field.replace(".", "__")  # flattened name
                if records and latest(r.get(field) for r in records) is None:
                    raise RestSourceError(
                        f"{self.name}.{table}: no record has the cursor field "
                        f"{incremental.cursor_field!r} (fields: "
                        f"{', '.join(list(records[0])[:10])}); set "
                        f"sources.{self.name}.tables.{table}.incremental.cursor_field"
                    )
                records, found["max"], found["report"] = since(records, field, start, boundary)
                if found["report"].dropped:
                    logger.info(
                        f"{self.name}.{table}: {found['report'].dropped} of "
                        f"{found['report'].returned} records sent were landed already "
                        f"(at or before the cursor {start}); not landed again"
                    )
            data = to_table(records)
            return data.schema, iter(data.to_batches())

        return [
            SourceItem(
                name=f"{self.name}.{table}" + (f" after {start}" if start is not None else ""),
                fingerprint=f"rest:{key}",
                size=0,
                read=read,
                cursor=(lambda: found["max"]) if incremental else None,
                report=(lambda: found["report"]) if incremental else None,
                stall=self._stall(table) if incremental else None,
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

    def _stall(self, table: str) -> StallCheck:
        """The table's stall check, with what to look at when it fires."""
        incremental = self.config.tables[table].incremental
        assert incremental is not None
        where = f"sources.{self.name}"
        runs = incremental.stall_runs or self.config.stall_runs
        on_stall = incremental.on_stall or self.config.on_stall
        hint = (
            f"Check that the API filters on `{incremental.param}` "
            f"({where}.tables.{table}.incremental.param) by `{incremental.cursor_field}` "
            f"(cursor_field): records at or before the cursor are dropped before landing, so "
            f"nothing lands twice, but every run reads them again. Set {where}.on_stall: "
            f"fail to fail the run instead, or {where}.stall_runs to change how many runs."
        )
        return StallCheck(runs=runs, fail=on_stall == "fail", hint=hint)

    def _client(self) -> httpx.Client:
        """A client without credentials: `_request` adds them to requests for base_url's
        origin only, and `_send` follows redirects itself."""
        return httpx.Client(
            headers=self._headers, timeout=self.config.timeout_seconds, follow_redirects=False
        )

    def _request(
        self, client: httpx.Client, url: str | httpx.URL, params: dict[str, Any] | None = None
    ) -> httpx.Request:
        """A GET, with the credentials when it goes to base_url's origin."""
        request = client.build_request("GET", url, params=params)
        if _origin(request.url) == self._origin:
            request.headers.update(self._home_headers)
            if self._home_params:
                request.url = request.url.copy_merge_params(self._home_params)
        return request

    def _send(
        self, client: httpx.Client, url: str, params: dict[str, Any], where: str
    ) -> httpx.Response:
        """The response, redirects followed: a hop to another origin than base_url's gets
        no credential (no auth, no configured header but harmless ones, no query key)."""
        request = self._request(client, url, params)
        for _ in range(MAX_REDIRECTS + 1):
            home = _origin(request.url) == self._origin
            response = client.send(request, auth=self._basic if home else None)
            following = response.next_request
            if following is None or not response.has_redirect_location:
                return response
            response.close()
            request = self._request(client, following.url)
            if home and _origin(request.url) != self._origin:
                logger.info(
                    f"{where}: redirected to another origin ({self._shown(str(request.url), {})}); "
                    "no credentials are sent there"
                )
        raise RestSourceError(f"{where}: more than {MAX_REDIRECTS} redirects")

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
            before_sleep=self._log_retry,
            reraise=True,
        )
        def attempt() -> httpx.Response:
            try:
                response = self._send(client, url, params, where)
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

    def _log_retry(self, state: RetryCallState) -> None:
        """Each retry at info: what failed (status, URL masked) and how long it waits."""
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        told = isinstance(error, RetryableHttpError) and error.wait is not None
        logger.info(
            f"{error}: retry {state.attempt_number} of {self.config.retries} in {wait:.1f} s"
            + (" (as its Retry-After said)" if told else "")
        )

    def _shown(self, url: str, params: dict[str, Any]) -> str:
        query = "&".join(f"{k}={'***' if is_credential_param(k) else v}" for k, v in params.items())
        return mask(mask_inline(mask_url(f"{url}?{query}" if query else url)))

    def warnings(self) -> list[str]:
        return []


def _create(name: str, config: RestSourceConfig, stack: MillpondConfig) -> RestSource:
    return RestSource(name, config)


REST = SourceKind(config_model=RestSourceConfig, create=_create)
