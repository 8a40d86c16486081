"""`/login` and `/logout`: how a browser carries an API key to the dashboard.

The form posts the key once; the answer sets an HttpOnly, SameSite=Strict session cookie
(serve.auth: an expiry and an HMAC under the key, never the key itself) and sends the browser
back where it was going. The cookie is good for reading only, so the dashboard, /docs and
/metrics work in a browser while triggering a run still needs the X-API-Key header.

`/login` is open to anyone, so guessing keys through it is slowed down: after
`MAX_FAILURES` refused keys from one client address within `WINDOW_S`, that client gets 429
with `Retry-After` (the right key included, so a guess cannot tell) until the oldest failure
is older than the window.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from html import escape
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from millpond.serve.auth import COOKIE, SESSION_S, key_matches, session_token
from millpond.serve.settings import get_settings

router = APIRouter(include_in_schema=False)
MAX_FORM_BYTES = 8192
# Only a path of this service: never `//other.host/` or a scheme (no open redirect).
LOCAL_PATH = re.compile(r"/(?![/\\])[^\s\\]*")


MAX_FAILURES = 10
WINDOW_S = 60.0
MAX_CLIENTS = 10_000  # addresses remembered at most (the oldest forgotten first)


class FailedLogins:
    """Refused keys per client address within a sliding window; memory stays bounded."""

    def __init__(
        self,
        limit: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client, deque())
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again; None when it may now."""
        with self._lock:
            now = self.clock()
            failures = self._recent(client, now)
            if len(failures) < self.limit:
                return None
            return max(1, math.ceil(failures[0] + self.window_s - now))

    def failed(self, client: str) -> None:
        with self._lock:
            now = self.clock()
            failures = self._recent(client, now)
            failures.append(now)
            self._failures[client] = failures
            self._failures.move_to_end(client)
            while len(self._failures) > MAX_CLIENTS:
                self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


def failed_logins(request: Request) -> FailedLogins:
    """The app's own tally (one per app, so each service and each test app starts clean)."""
    state = request.app.state
    if getattr(state, "failed_logins", None) is None:
        state.failed_logins = FailedLogins()
    tally: FailedLogins = state.failed_logins
    return tally


def safe_next(value: str | None) -> str:
    return value if value and len(value) <= 2000 and LOCAL_PATH.fullmatch(value) else "/"


def login_page(message: str = "", next_path: str = "/", status: int = 401) -> HTMLResponse:
    """The form (self-contained: static files need a key too)."""
    note = f"<p class='note'>{escape(message)}</p>" if message else ""
    return HTMLResponse(
        LOGIN_PAGE.format(note=note, next=escape(safe_next(next_path), quote=True)),
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


@router.get("/login", response_class=HTMLResponse)
def login_form(next: str = "/") -> Response:
    if not get_settings().keys:
        return RedirectResponse(safe_next(next), 303)
    return login_page(next_path=next, status=200)


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the key from the form; on success set the session cookie and go on."""
    body = b""
    async for chunk in request.stream():  # /login is open to anyone: read no more than a form
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return login_page(f"The form is over {MAX_FORM_BYTES} bytes.", "/", 413)
    fields = parse_qs(body.decode("utf-8", "replace"))
    key = (fields.get("key") or [""])[0].strip()
    next_path = safe_next((fields.get("next") or ["/"])[0])
    keys = get_settings().keys
    if not keys:
        return RedirectResponse(next_path, 303)
    tally, client = failed_logins(request), request.client.host if request.client else "?"
    wait = tally.retry_after(client)
    if wait is not None:  # before the key is looked at: a blocked guess learns nothing
        page = login_page(f"Too many refused keys: try again in {wait} s.", next_path, 429)
        page.headers["Retry-After"] = str(wait)
        return page
    if not key or not key_matches(key, keys):
        tally.failed(client)
        return login_page("That key is not accepted.", next_path, 403)
    tally.succeeded(client)
    response = RedirectResponse(next_path, 303)
    response.set_cookie(
        COOKIE,
        session_token(key),
        max_age=SESSION_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.get("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/")
    return response


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>millpond: log in</title>
<style>body {{ font: 14px system-ui, sans-serif; margin: 3em auto; max-width: 28em; color: #222; }}
input {{ font: inherit; padding: 4px; width: 100%; box-sizing: border-box; margin: .5em 0; }}
.note {{ color: #cf222e; }}</style>
</head><body>
<h1>millpond</h1>
<p>This service needs an API key (one of <code>MILLPOND_API_KEYS</code>).</p>
{note}
<form method="post" action="/login">
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" autofocus required>
<input type="hidden" name="next" value="{next}">
<input id="login" type="submit" value="Log in">
</form>
</body></html>
"""
