"""API keys: who may use the service when MILLPOND_API_KEYS is set.

With keys set, every path needs a key except `/health`, the login form and what
`serve.public` lists. A client sends the key as `X-API-Key: <key>` or `Authorization: Bearer
<key>`; a browser logs in once at `/login` and then carries a session cookie, which is good for
reading only (GET and HEAD): a page elsewhere can never make a logged-in browser trigger a run.

Every configured key is compared with `hmac.compare_digest` (all of them, always), so the time a
request takes says nothing about how close a guess was. The session cookie is not the key: it is
an expiry time and an HMAC of it under the key, so it stops working when it expires or when the
key is removed from MILLPOND_API_KEYS.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

HEADER = "X-API-Key"
COOKIE = "millpond_session"
SESSION_S = 12 * 3600
READ_METHODS = frozenset({"GET", "HEAD"})
# Always open: the health check (load balancers carry no key) and the login form itself.
ALWAYS_PUBLIC = ("/health", "/login", "/logout")


def presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    """The key a client sent: `X-API-Key: <key>` or `Authorization: Bearer <key>`."""
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip() or None
    return None


def key_matches(presented: str, keys: list[str]) -> bool:
    """True if `presented` equals one of `keys`, compared in constant time."""
    given = presented.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


def _signature(key: str, expires: int) -> str:
    message = f"millpond-session:{expires}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def session_token(key: str, now: float | None = None) -> str:
    """The cookie value for a browser that logged in with `key`: `<expires>.<hmac>`."""
    expires = int(now if now is not None else time.time()) + SESSION_S
    return f"{expires}.{_signature(key, expires)}"


def session_valid(token: str, keys: list[str], now: float | None = None) -> bool:
    """True for an unexpired cookie made with one of `keys` (all compared, in constant time)."""
    stamp, _, signature = token.partition(".")
    if not stamp.isdigit() or len(stamp) > 12 or not signature:
        return False
    expires = int(stamp)
    if expires < (now if now is not None else time.time()):
        return False
    found = False
    for key in keys:
        found |= hmac.compare_digest(signature.encode(), _signature(key, expires).encode())
    return found


def is_public(path: str, public: Iterable[str]) -> bool:
    """True if `path` is open without a key: `/health`, the login form, or an entry of
    `serve.public` (an exact path, or `/prefix/*` for everything under `/prefix/`)."""
    for entry in (*ALWAYS_PUBLIC, *public):
        if entry.endswith("/*"):
            if path.startswith(entry[:-1]):
                return True
        elif path == entry:
            return True
    return False


@dataclass(frozen=True)
class Refusal:
    status: int  # 401: no credential; 403: a credential that is not accepted
    detail: str


MISSING = Refusal(401, "API key required (X-API-Key header or Bearer token)")
WRONG = Refusal(403, "API key not accepted")
COOKIE_WRITE = Refusal(
    401, "API key required: a browser session may only read (send X-API-Key to change anything)"
)


def check(
    method: str,
    path: str,
    headers: Mapping[str, str],
    cookies: Mapping[str, str],
    keys: list[str],
    public: Iterable[str] = (),
) -> Refusal | None:
    """None if the request may go on, else why not. Without keys nothing is refused here
    (serve.guard then answers this machine only)."""
    if not keys or is_public(path, public):
        return None
    presented = presented_key(headers.get("x-api-key"), headers.get("authorization"))
    if presented is not None:
        return None if key_matches(presented, keys) else WRONG
    token = cookies.get(COOKIE)
    if token and session_valid(token, keys):
        return None if method in READ_METHODS else COOKIE_WRITE
    return MISSING
