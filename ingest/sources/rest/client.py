"""The HTTP side of a `rest` source: credentials for the API's origin only, redirects, retries.

httpx for the requests and tenacity for the retries, both already millpond dependencies:
dlt's RESTClient does this well too, but dlt cannot share millpond's environment cheaply (its
pins) and brings its own state and normalizer, which millpond already has (the lake, manifests,
cursors). Retries: exponential backoff on 5xx, timeouts and connection errors; a 429 waits what
its Retry-After says (bounded); each retry is logged at info with the status and the wait.
Redirects are followed by hand: one to another origin (scheme, host, port) carries no
credential, whatever header or query parameter held it.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from millpond.core.logs import logger
from millpond.core.masking import is_credential_param, mask, mask_inline, mask_url
from millpond.ingest.sources.rest.config import RestSourceConfig, RestSourceError

MAX_RETRY_AFTER_SECONDS = 120.0
MAX_REDIRECTS = 20
# Headers a user may set that never carry a credential: the only configured headers still
# sent after a redirect to another origin.
HARMLESS_HEADERS = frozenset(
    {"accept", "accept-encoding", "accept-language", "user-agent", "cache-control"}
)

Origin = tuple[str, str, int | None]


class RetryableHttpError(Exception):
    """A 5xx, a 429, a timeout: worth another attempt."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


def origin(url: httpx.URL) -> Origin:
    """Scheme, host and port (the scheme's default when unset): what must match for a
    request to get the credentials."""
    port = url.port if url.port is not None else {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, port


def shown(url: str, params: dict[str, Any]) -> str:
    """A request's URL with its query, credentials masked: what messages and logs show."""
    query = "&".join(f"{k}={'***' if is_credential_param(k) else v}" for k, v in params.items())
    return mask(mask_inline(mask_url(f"{url}?{query}" if query else url)))


def retry_after(response: httpx.Response) -> float | None:
    """The wait a Retry-After header asks for (seconds or an HTTP date), bounded."""
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
    waited: float = wait_exponential(multiplier=0.5, max=30)(state)
    return waited


class ApiClient:
    """GETs to one API, opened for one table's pages (`with ApiClient(...) as api:`).

    Configured headers that cannot hold a credential go everywhere; every other one, and the
    auth, only to base_url's origin (never after a redirect elsewhere)."""

    def __init__(self, source: str, config: RestSourceConfig) -> None:
        self.source = source
        self.config = config
        self._origin = origin(httpx.URL(config.base_url))
        self._headers = {k: v for k, v in config.headers.items() if k.lower() in HARMLESS_HEADERS}
        self._home_headers = {
            k: v for k, v in config.headers.items() if k.lower() not in HARMLESS_HEADERS
        }
        self._home_params: dict[str, str] = {}
        self._basic: httpx.Auth | None = None
        self._http: httpx.Client | None = None
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

    def __enter__(self) -> ApiClient:
        # Without credentials: `_request` adds them to requests for base_url's origin only,
        # and `_send` follows redirects itself.
        self._http = httpx.Client(
            headers=self._headers, timeout=self.config.timeout_seconds, follow_redirects=False
        )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            raise RuntimeError("ApiClient is used inside `with` only")
        return self._http

    def get(self, url: str, params: dict[str, Any], where: str) -> httpx.Response:
        """The response to a GET, retried on what another attempt can fix; a ConnectionError
        once the retries are spent, a RestSourceError for a 4xx (retrying cannot help)."""
        retries = self.config.retries

        @retry(
            retry=retry_if_exception(lambda e: isinstance(e, RetryableHttpError)),
            stop=stop_after_attempt(retries + 1),
            wait=_wait,
            before_sleep=self._log_retry,
            reraise=True,
        )
        def attempt() -> httpx.Response:
            try:
                response = self._send(url, params, where)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise RetryableHttpError(f"{where}: {type(exc).__name__}") from None
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryableHttpError(
                    f"{where}: HTTP {response.status_code}", retry_after(response)
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
                f"{exc} after {retries + 1} attempts (sources.{self.source}.retries)"
            ) from None

    def _request(self, url: str | httpx.URL, params: dict[str, Any] | None = None) -> httpx.Request:
        """A GET, with the credentials when it goes to base_url's origin."""
        request = self.http.build_request("GET", url, params=params)
        if origin(request.url) == self._origin:
            request.headers.update(self._home_headers)
            if self._home_params:
                request.url = request.url.copy_merge_params(self._home_params)
        return request

    def _send(self, url: str, params: dict[str, Any], where: str) -> httpx.Response:
        """The response, redirects followed: a hop to another origin than base_url's gets
        no credential (no auth, no configured header but harmless ones, no query key)."""
        request = self._request(url, params)
        for _ in range(MAX_REDIRECTS + 1):
            home = origin(request.url) == self._origin
            response = self.http.send(request, auth=self._basic if home else None)
            following = response.next_request
            if following is None or not response.has_redirect_location:
                return response
            response.close()
            request = self._request(following.url)
            if home and origin(request.url) != self._origin:
                logger.info(
                    f"{where}: redirected to another origin ({shown(str(request.url), {})}); "
                    "no credentials are sent there"
                )
        raise RestSourceError(f"{where}: more than {MAX_REDIRECTS} redirects")

    def _log_retry(self, state: RetryCallState) -> None:
        """Each retry at info: what failed (status, URL masked) and how long it waits."""
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        told = isinstance(error, RetryableHttpError) and error.wait is not None
        logger.info(
            f"{error}: retry {state.attempt_number} of {self.config.retries} in {wait:.1f} s"
            + (" (as its Retry-After said)" if told else "")
        )
