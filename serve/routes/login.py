"""`/login` and `/logout`: how a browser carries an API key to the dashboard.

The form posts the key once; the answer sets an HttpOnly, SameSite=Strict session cookie
(serve.auth: an expiry and an HMAC under the key, never the key itself) and sends the browser
back where it was going. The cookie is good for reading only, so the dashboard, /docs and
/metrics work in a browser while triggering a run still needs the X-API-Key header.
"""

from __future__ import annotations

import re
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
    if not key or not key_matches(key, keys):
        return login_page("That key is not accepted.", next_path, 403)
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
