"""The API's key rule, browser sessions and the address `millpond serve` listens on."""

from __future__ import annotations

import pytest

from millpond.serve.auth import COOKIE, SESSION_S, check, is_public, session_token, session_valid
from millpond.serve.launch import BindRefused, bind_host

KEYS = ["k-one", "k-two"]


@pytest.mark.parametrize(
    ("method", "path", "headers", "cookies", "status"),
    [
        ("GET", "/runs", {}, {}, 401),
        ("GET", "/health", {}, {}, None),
        ("GET", "/login", {}, {}, None),
        ("GET", "/runs", {"x-api-key": "k-two"}, {}, None),
        ("GET", "/runs", {"authorization": "Bearer k-one"}, {}, None),
        ("GET", "/runs", {"x-api-key": "nope"}, {}, 403),
        ("GET", "/runs", {}, {COOKIE: session_token("k-one")}, None),
        ("HEAD", "/runs", {}, {COOKIE: session_token("k-one")}, None),
        ("POST", "/runs", {}, {COOKIE: session_token("k-one")}, 401),
        ("GET", "/runs", {}, {COOKIE: session_token("removed-key")}, 401),
        ("GET", "/runs", {}, {COOKIE: "k-one"}, 401),  # the key itself is no cookie
        ("POST", "/runs", {"x-api-key": "k-one"}, {COOKIE: "junk"}, None),
    ],
)
def test_check(method: str, path: str, headers: dict, cookies: dict, status: int | None) -> None:
    refused = check(method, path, headers, cookies, KEYS)
    assert (refused.status if refused else None) == status


def test_without_keys_nothing_is_refused_here() -> None:
    assert check("POST", "/runs", {}, {}, []) is None


def test_public_entries_are_exact_or_a_prefix() -> None:
    public = ["/metrics", "/static/*"]
    assert is_public("/metrics", public) and is_public("/static/a/b.css", public)
    assert not is_public("/metrics/x", public) and not is_public("/staticx", public)
    assert not is_public("/", public) and is_public("/health", [])


def test_a_session_expires() -> None:
    token = session_token("k-one", now=1_000)
    assert session_valid(token, KEYS, now=1_000 + SESSION_S - 1)
    assert not session_valid(token, KEYS, now=1_000 + SESSION_S + 1)
    stamp, _, signature = token.partition(".")
    assert not session_valid(f"{int(stamp) + 10**6}.{signature}", KEYS, now=1_000)  # extended


@pytest.mark.parametrize(
    ("configured", "keys", "host", "allow", "chosen"),
    [
        ("127.0.0.1", False, None, False, "127.0.0.1"),
        ("0.0.0.0", False, None, False, "127.0.0.1"),  # serve.host needs keys
        ("0.0.0.0", True, None, False, "0.0.0.0"),
        ("127.0.0.1", True, "0.0.0.0", False, "0.0.0.0"),
        ("127.0.0.1", False, "::1", False, "::1"),
        ("127.0.0.1", False, "localhost", False, "localhost"),
        ("127.0.0.1", False, "0.0.0.0", True, "0.0.0.0"),
    ],
)
def test_bind_host(configured: str, keys: bool, host: str | None, allow: bool, chosen: str) -> None:
    assert bind_host(configured, keys, host, allow)[0] == chosen


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "api.internal"])
def test_a_public_address_without_keys_is_refused(host: str) -> None:
    with pytest.raises(BindRefused, match="MILLPOND_API_KEYS"):
        bind_host("127.0.0.1", False, host)


def test_the_serve_host_that_needs_keys_is_named() -> None:
    assert "0.0.0.0" in (bind_host("0.0.0.0", False)[1] or "")
