"""Secrets: how they are recognised and how they are hidden, in one place.

Config output, validation errors, log records, ledger errors, dbt's files and API responses all
mask through these helpers, so the rule for what counts as a secret cannot drift between them.

The policy, for any value a source, target, notifier or dbt var can hold:
- a key named like a secret (`password`, `*_token`, `api_key`, `secret_access_key`, ...);
- every field of an `auth` mapping but its `type`, `in` and header `name`;
- a header or query parameter named like a credential (`Authorization`, `X-API-Key`, `Cookie`,
  anything with token, secret, key, password, session or signature in its name);
- a notifier's `webhook` (Slack and Teams put the token in the path);
- whatever the key: a URL's password, `PWD=`-style pairs of a connection string or query;
- a dbt var listed in `dbt.secret_vars` (or named like a secret).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

MASK = "***"
# Names (of environment variables or config keys) whose values are secrets.
SECRET_NAME = re.compile(
    r"(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API[_-]?KEY|ACCESS[_-]?KEY|PRIVATE[_-]?KEY"
    r"|CREDENTIAL|AUTHORIZATION|COOKIE)",
    re.I,
)
# Header and query parameter names whose values are credentials (beyond SECRET_NAME's).
CREDENTIAL_PARAM = re.compile(
    r"(?i)(key|^auth$|auth[_-]?token|signature|^sig$|session|cookie|passw|^pass$|^pwd$)"
)
# The mappings whose keys are header or query parameter names.
NAMED_VALUES = {"headers", "params", "query", "cookies"}
# The fields of an `auth` mapping that say how, not what: everything else in it is secret.
AUTH_SHAPE = {"type", "in", "location", "name", "header", "param"}
# Keys named like secrets that hold none (the names of the dbt vars that do).
NOT_SECRET = {"secret_vars"}
# Keys whose whole value is a secret URL (the token sits in its path).
SECRET_URL_KEYS = {"webhook", "webhook_url"}

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secrets(values: Sequence[str]) -> None:
    """Mask these values (passwords, keys, tokens) in every later `mask` call and log record."""
    with _lock:
        _secrets.update(v for v in values if v and len(v) >= 4)


def registered() -> bool:
    return bool(_secrets)


def registered_secrets() -> list[str]:
    """The registered values, longest first (for handing on to dbt's own scrubbing)."""
    with _lock:
        return sorted(_secrets, key=len, reverse=True)


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
    try:
        return urlsplit(url).password
    except ValueError:  # a malformed port or bracket: no password to find
        return None


# `key=value` secrets inside connection strings: ODBC `PWD=...;`, libpq DSNs, URL queries.
INLINE_SECRET = re.compile(
    r"(?i)(?<![a-z0-9_])(pwd|password|passwd|secret|token|access_token|api_?key|access_?key)"
    r"\s*=\s*(\{[^}]*\}|[^;&\s]*)"
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


def is_credential_param(name: str) -> bool:
    """A header or query parameter whose value is a credential (`Authorization`,
    `X-API-Key`, `Cookie`, `access_token`, `X-Session-Id`, ...)."""
    return bool(SECRET_NAME.search(name) or CREDENTIAL_PARAM.search(name))


def is_secret_path(path: Sequence[Any], secret_vars: Sequence[str] = ()) -> bool:
    """Whether the value at this config key path is a secret as a whole (the policy above):
    `("sources", "crm", "auth", "value")`, `("sources", "crm", "headers", "X-API-Key")`."""
    keys = [str(p) for p in path if not isinstance(p, int)]
    if not keys:
        return False
    key, parent = keys[-1], (keys[-2] if len(keys) > 1 else "")
    if key in NOT_SECRET:
        return False
    if SECRET_NAME.search(key) or key in SECRET_URL_KEYS:
        return True
    if parent == "auth" and key not in AUTH_SHAPE:
        return True
    if parent in NAMED_VALUES and is_credential_param(key):
        return True
    return parent == "vars" and key in secret_vars


def value_secrets(text: str) -> list[str]:
    """Secrets inside a value whatever its key: a URL's password (as written and decoded),
    the values of its credential-named query parameters and `PWD=`-style pairs."""
    found = inline_secrets(text)
    password = url_password(text)
    if password:
        found += [password, unquote(password)]
    if "://" in text and "?" in text:
        try:
            query = urlsplit(text).query
        except ValueError:
            query = ""
        found += [v for k, v in parse_qsl(query) if is_credential_param(k)]
    return [s for s in found if s]


def whole_secrets(text: str) -> list[str]:
    """What to mask of a value that is a secret as a whole: itself, and the credential after
    a scheme word (`Bearer x`, `Basic x`), a URL's path and query (a webhook's token)."""
    found = [text]
    if " " in text.strip():
        found.append(text.strip().split(" ", 1)[-1])
    if "=" in text and "://" not in text:  # a cookie's `sid=...; csrf=...` pairs
        found += [pair.split("=", 1)[1].strip() for pair in text.split(";") if "=" in pair]
    if "://" in text:
        try:
            parts = urlsplit(text)
        except ValueError:
            return found
        found += [p for p in parts.path.split("/") if _token_like(p)]
        found += [parts.path] if len(parts.path) > 1 else []
        found += [parts.query] if parts.query else []
    return [s for s in found if s]


def _token_like(segment: str) -> bool:
    """A URL path segment that looks like a token rather than a word (`services`, `hooks`)."""
    return len(segment) >= 20 or (len(segment) >= 8 and any(c.isdigit() for c in segment))


def collect_secrets(
    value: Any, secret_vars: Sequence[str] = (), path: tuple[Any, ...] = ()
) -> list[str]:
    """Every secret value in a config's plain data (a model_dump), by the policy above."""
    secret_value = getattr(value, "get_secret_value", None)
    if callable(secret_value):  # a pydantic SecretStr is a secret wherever it sits
        text = str(secret_value())
        return whole_secrets(text) + value_secrets(text) if text else []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in collect_secrets(v, secret_vars, (*path, k))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in collect_secrets(v, secret_vars, path)]
    if value is None or isinstance(value, bool):
        return []
    text = str(value)
    found = whole_secrets(text) if is_secret_path(path, secret_vars) and text else []
    if found and _is_plain_username(path, text):
        # A basic-auth username is masked where the config is shown, but registered for
        # masking everywhere only when it looks like a key (some APIs take the key as the
        # username): a plain one ("orders", "etl") would mask every word it spells.
        found = []
    return found + (value_secrets(text) if isinstance(value, str) else [])


def _is_plain_username(path: tuple[Any, ...], text: str) -> bool:
    keys = [str(p) for p in path if not isinstance(p, int)]
    return keys[-2:] == ["auth", "username"] and not _token_like(text)


def mask_data(value: Any, secret_vars: Sequence[str] = (), path: tuple[Any, ...] = ()) -> Any:
    """The config's plain data with secrets replaced by *** (unset values stay unset); a
    secret URL keeps its scheme and host (`https://hooks.slack.com/***`), so it can be told
    apart from another."""
    secret_value = getattr(value, "get_secret_value", None)
    if callable(secret_value):  # a pydantic SecretStr is a secret wherever it sits
        return _masked_whole(str(secret_value())) if secret_value() else secret_value()
    if isinstance(value, dict):
        return {k: mask_data(v, secret_vars, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_data(v, secret_vars, path) for v in value]
    if value in (None, "") or isinstance(value, bool):
        return value
    if is_secret_path(path, secret_vars):
        return _masked_whole(str(value))
    if not isinstance(value, str):
        return value
    return mask_inline(mask_url(value) if "://" in value else value)


def _masked_whole(text: str) -> str:
    if text.startswith(("http://", "https://")):
        try:
            parts = urlsplit(text)
            host = parts.hostname or ""
        except ValueError:
            return MASK
        return f"{parts.scheme}://{host}/{MASK}"
    return MASK


def mask_secret_keys(value: Any, path: Sequence[Any] = (), secret_vars: Sequence[str] = ()) -> Any:
    """Values under keys that look secret (e.g. dbt.vars.api_token) become ***; `path` is
    where `value` sits in the config (an `auth` mapping's fields are all secret)."""
    return mask_data(value, secret_vars, tuple(path))


def literal_secrets(
    data: Any, secret_vars: Sequence[str] = (), path: tuple[Any, ...] = ()
) -> list[str]:
    """Where the raw file (before `${VAR}` interpolation) holds a secret written out rather
    than read from the environment: key paths such as `sources.crm.auth.token`."""
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in literal_secrets(v, secret_vars, (*path, k))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in literal_secrets(v, secret_vars, (*path, i))]
    if data is None or isinstance(data, bool) or data == "":
        return []
    text = str(data)
    written = [text] if is_secret_path(path, secret_vars) else value_secrets(text)
    if any("${" not in secret for secret in written):
        return [key_path(path)]
    return []


def key_path(path: Sequence[Any]) -> str:
    """`("notify", 0, "webhook")` as a user writes it: `notify[0].webhook`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def env_secrets(env: dict[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret, for masking."""
    env = dict(os.environ if env is None else env)
    return [v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= 4]
