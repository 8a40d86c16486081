"""Secrets: how they are recognised and how they are hidden, in one place.

Config output, validation errors, log records, ledger errors and API responses all mask through
these helpers, so the rule for what counts as a secret cannot drift between them.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# Names (of environment variables or config keys) whose values are secrets.
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_KEY|CREDENTIAL)", re.I)

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secrets(values: list[str]) -> None:
    """Mask these values (passwords, keys, tokens) in every later `mask` call and log record."""
    with _lock:
        _secrets.update(v for v in values if v and len(v) >= 4)


def registered() -> bool:
    return bool(_secrets)


def contains_secret(text: str) -> bool:
    return any(secret in text for secret in _secrets)


def mask(text: str) -> str:
    """The text with every registered secret replaced by ***."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def url_password(url: str | None) -> str | None:
    if not url or "://" not in url:
        return None
    return urlsplit(url).password


# `key=value` secrets inside connection strings: ODBC (`PWD=...;`), libpq DSNs, URL queries.
INLINE_SECRET = re.compile(
    r"(?i)(?<![a-z0-9_])(pwd|password|passwd|secret|token|api_?key|access_?key)\s*=\s*"
    r"(\{[^}]*\}|[^;&\s]*)"
)


def inline_secrets(text: str) -> list[str]:
    """The values of `password=...`-style pairs in a connection string."""
    return [m.group(2).strip("{}") for m in INLINE_SECRET.finditer(text) if m.group(2).strip("{}")]


def mask_inline(text: str) -> str:
    """The connection string with the values of its secret pairs replaced by ***."""
    return INLINE_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", text)


def mask_url(url: str) -> str:
    """The URL with its password (if any) replaced by ***."""
    password = url_password(url)
    if not password:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc.replace(f":{password}@", f":{MASK}@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def mask_secret_keys(value: Any) -> Any:
    """Values under keys that look secret (e.g. dbt.vars.api_token) become ***."""
    if isinstance(value, dict):
        return {
            k: MASK if SECRET_NAME.search(str(k)) and v not in (None, "") else mask_secret_keys(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secret_keys(v) for v in value]
    return value


def env_secrets(env: dict[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret, for masking."""
    env = dict(os.environ if env is None else env)
    return [v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= 4]
