"""API keys: who may read marts, trigger runs and scrape metrics.

Keys come from MILLPOND_API_KEYS. Every configured key is compared with `hmac.compare_digest`
(all of them, always), so the time a request takes says nothing about how close a guess was.
"""

from __future__ import annotations

import hmac

HEADER = "X-API-Key"


def presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    """The key a client sent: `X-API-Key: <key>` or `Authorization: Bearer <key>`."""
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def key_matches(presented: str, keys: list[str]) -> bool:
    """True if `presented` equals one of `keys`, compared in constant time."""
    given = presented.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found
