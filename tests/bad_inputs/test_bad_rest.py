"""Bad inputs for the `rest` source kind, table-driven: settings millpond.yml refuses (naming
the key path), and APIs that answer what the settings did not expect, against the real local
test server (tests/rest_server.py) and a closed port.

Each case asserts what a user meets: the error (ConfigError, which `millpond` turns into exit
code 2; RestSourceError / CursorStalled, not retried; ConnectionError, retried), a message
naming the source, table, page or key to change, no secret in it, and that nothing changed:
the lake (partitions, manifests, the reads record) is byte for byte as before. A good read
after the bad ones lands as usual.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import millpond
from rest_server import TOKEN, Api, serve_api

from millpond.core.config_file import ConfigError
from millpond.core.config_loading import load_config
from millpond.ingest.lake import Lake
from millpond.ingest.landing import CursorStalled, land_table
from millpond.ingest.sources.rest import RestSource
from millpond.ingest.sources.rest.config import RestSourceConfig, RestSourceError

DAY = dt.date(2026, 11, 28)
SECRET = "sekret-tok-51f0"  # a credential put in bad configs: never in an error

# --- settings millpond.yml refuses ------------------------------------------------------------

GOOD: dict[str, Any] = {
    "kind": "rest",
    "base_url": "https://api.example.com/v1",
    "tables": {"events": {"path": "/events"}},
}
INCREMENTAL = {"cursor_field": "updated_at", "param": "updated_since"}


def table(**spec: Any) -> dict[str, Any]:
    return {"tables": {"events": {"path": "/events", **spec}}}


# (case id, settings merged over GOOD, what the message must name)
CONFIG_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("ftp-base-url", {"base_url": "ftp://x"}, ["sources.crm.base_url", "http:// or https://"]),
    ("no-scheme", {"base_url": "api.example.com"}, ["sources.crm.base_url"]),
    ("base-url-missing", {"base_url": None}, ["sources.crm.base_url"]),
    ("no-tables", {"tables": {}}, ["sources.crm.tables", "at least one table"]),
    ("tables-missing", {"tables": None}, ["sources.crm.tables"]),
    ("table-without-path", {"tables": {"events": {}}}, ["sources.crm.tables.events.path"]),
    ("bad-table-name", {"tables": {"ev ents!": {"path": "/e"}}}, ["ev ents!"]),
    ("misspelt-table-key", table(record_paht="data"), ["tables.events.record_paht"]),
    ("params-not-a-mapping", table(params=["a"]), ["tables.events.params"]),
    ("primary-key-not-a-list", table(primary_key="id"), ["tables.events.primary_key"]),
    ("headers-not-a-mapping", {"headers": ["Accept"]}, ["sources.crm.headers"]),
    ("header-value-not-text", {"headers": {"X-A": {"b": 1}}}, ["sources.crm.headers.X-A"]),
    ("timeout-zero", {"timeout_seconds": 0}, ["sources.crm.timeout_seconds", "greater than 0"]),
    ("timeout-text", {"timeout_seconds": "soon"}, ["sources.crm.timeout_seconds"]),
    ("retries-negative", {"retries": -1}, ["sources.crm.retries"]),
    ("retries-too-many", {"retries": 21}, ["sources.crm.retries", "20"]),
    ("max-pages-zero", {"max_pages": 0}, ["sources.crm.max_pages"]),
    ("stall-runs-zero", {"stall_runs": 0}, ["sources.crm.stall_runs", "greater than or equal"]),
    ("stall-runs-text", {"stall_runs": "three"}, ["sources.crm.stall_runs"]),
    ("on-stall-unknown", {"on_stall": "maybe"}, ["sources.crm.on_stall", "'warn' or 'fail'"]),
    (
        "table-stall-runs-zero",
        table(incremental={**INCREMENTAL, "stall_runs": 0}),
        ["tables.events.incremental.stall_runs"],
    ),
    (
        "table-on-stall-unknown",
        table(incremental={**INCREMENTAL, "on_stall": "loud"}),
        ["tables.events.incremental.on_stall"],
    ),
    (
        "incremental-without-param",
        table(incremental={"cursor_field": "updated_at"}),
        ["tables.events.incremental.param", "missing"],
    ),
    (
        "incremental-without-cursor-field",
        table(incremental={"param": "since"}),
        ["tables.events.incremental.cursor_field"],
    ),
    (
        "incremental-misspelt-key",
        table(incremental={**INCREMENTAL, "lookback": 60}),
        ["tables.events.incremental.lookback"],
    ),
    ("paginate-unknown-style", table(paginate={"style": "magic"}), ["paginate.style"]),
    ("paginate-misspelt-key", table(paginate={"style": "offset", "limt": 5}), ["paginate.limt"]),
    ("paginate-limit-text", table(paginate={"style": "offset", "limit": "ten"}), ["limit"]),
    ("auth-unknown-type", {"auth": {"type": "oauth3"}}, ["sources.crm.auth.type"]),
    (
        "bearer-without-token",
        {"auth": {"type": "bearer"}},
        ["sources.crm.auth", "bearer needs token"],
    ),
    (
        "bearer-empty-token",
        {"auth": {"type": "bearer", "token": ""}},
        ["sources.crm.auth", "bearer needs token"],
    ),
    (
        "api-key-without-value",
        {"auth": {"type": "api_key", "name": "X-API-Key"}},
        ["sources.crm.auth", "api_key needs value"],
    ),
    (
        "api-key-in-body",
        {"auth": {"type": "api_key", "name": "k", "value": SECRET, "in": "body"}},
        ["sources.crm.auth.in"],
    ),
    (
        "basic-without-username",
        {"auth": {"type": "basic", "password": SECRET}},
        ["sources.crm.auth", "basic needs username"],
    ),
    (
        "auth-misspelt-key",
        {"auth": {"type": "bearer", "token": SECRET, "scheme": "Token"}},
        ["sources.crm.auth.scheme"],
    ),
    ("unknown-source-key", {"pagination": {"style": "offset"}}, ["sources.crm.pagination"]),
]


@pytest.mark.parametrize(
    ("settings", "named"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_a_bad_rest_setting_is_refused_naming_its_key(
    tmp_path: Path, settings: dict[str, Any], named: list[str]
) -> None:
    source = {k: v for k, v in {**GOOD, **settings}.items() if v is not None}
    config = tmp_path / "millpond.yml"
    config.write_text(yaml.safe_dump({"project": "p", "sources": {"crm": source}}))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ConfigError) as refused:
        load_config(config, env={})
    message = str(refused.value)
    assert str(config) in message
    for part in named:
        assert part in message, message
    assert SECRET not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_the_cli_refuses_a_bad_rest_setting_with_exit_code_2_and_writes_nothing(
    tmp_path: Path,
) -> None:
    source = {**GOOD, "on_stall": "maybe", "auth": {"type": "bearer", "token": "${CRM_TOKEN}"}}
    (tmp_path / "millpond.yml").write_text(
        yaml.safe_dump({"project": "p", "sources": {"crm": source}})
    )
    shown = millpond(tmp_path, "config", env={"CRM_TOKEN": SECRET})
    assert shown.returncode == 2, shown.stdout + shown.stderr
    assert "sources.crm.on_stall" in shown.stderr and "'warn' or 'fail'" in shown.stderr
    assert SECRET not in shown.stdout + shown.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["millpond.yml"]  # no state dir made


# --- APIs that answer what the settings did not expect ---------------------------------------


def lake_state(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[str, Api]]:
    with serve_api() as served:
        yield served


@pytest.fixture(scope="module")
def shared_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, Path]:
    """One lake for every case, with a landed partition of `crm.events` to keep intact."""
    root = tmp_path_factory.mktemp("rest-bad") / "lake"
    return Lake.from_url(f"file://{root}"), root


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


EVENTS = {
    "path": "/secure/events/inclusive",
    "record_path": "events",
    "incremental": INCREMENTAL,
    "primary_key": ["id"],
}
BEARER = {"type": "bearer", "token": TOKEN}

# (case id, source settings, table spec, error type, what the message must name)
API_CASES: list[tuple[str, dict[str, Any], dict[str, Any], type[Exception], list[str]]] = [
    (
        "wrong-token",
        {"auth": {"type": "bearer", "token": SECRET}},
        EVENTS,
        RestSourceError,
        ["crm.events, page 1", "HTTP 401"],
    ),
    ("no-token", {}, EVENTS, RestSourceError, ["crm.events, page 1", "HTTP 401"]),
    (
        "wrong-path",
        {"auth": BEARER},
        {**EVENTS, "path": "/secure/nowhere"},
        RestSourceError,
        ["crm.events, page 1", "/secure/nowhere", "HTTP 404"],
    ),
    (
        "record-path-not-in-body",
        {"auth": BEARER},
        {**EVENTS, "record_path": "data.events"},
        RestSourceError,
        ["no 'data.events' in the response", "events", "tables.events.record_path"],
    ),
    (
        "record-path-not-a-list",
        {},
        {"path": "/cursor", "record_path": "meta.next_cursor"},
        RestSourceError,
        ["crm.events, page 1", "record_path does not lead to a list"],
    ),
    (
        "cursor-field-no-record-has",
        {"auth": BEARER},
        {**EVENTS, "incremental": {"cursor_field": "changed_at", "param": "updated_since"}},
        RestSourceError,
        ["cursor field 'changed_at'", "sources.crm.tables.events.incremental.cursor_field"],
    ),
    (
        "redirect-loop",
        {"auth": BEARER},
        {**EVENTS, "path": "/loop-redirect"},
        RestSourceError,
        ["crm.events, page 1", "more than 20 redirects"],
    ),
    (
        "pages-beyond-max-pages",
        {"max_pages": 2},
        {
            "path": "/endless",
            "record_path": "items",
            "paginate": {"style": "cursor", "cursor_path": "meta.next_cursor", "param": "cursor"},
        },
        RestSourceError,
        ["crm.events, page 3", "max_pages=2", "sources.crm.max_pages"],
    ),
    (
        "cursor-that-loops",
        {},
        {
            "path": "/loop",
            "record_path": "items",
            "paginate": {"style": "cursor", "cursor_path": "meta.next_cursor", "param": "cursor"},
        },
        RestSourceError,
        ["crm.events, page 3", "same next page again"],
    ),
    (
        "server-keeps-failing",
        {"retries": 0},
        {"path": "/always-503"},
        ConnectionError,
        ["crm.events, page 1", "HTTP 503 after 1 attempts", "sources.crm.retries"],
    ),
]


@pytest.mark.parametrize(
    ("settings", "spec", "error", "named"),
    [c[1:] for c in API_CASES],
    ids=[c[0] for c in API_CASES],
)
def test_an_api_answering_what_the_settings_did_not_expect_fails_and_changes_nothing(
    api: tuple[str, Api],
    shared_lake: tuple[Lake, Path],
    settings: dict[str, Any],
    spec: dict[str, Any],
    error: type[Exception],
    named: list[str],
) -> None:
    base, server = api
    lake, root = shared_lake
    server.redirects["/loop-redirect"] = f"{base}/loop-redirect"
    server.fail_first["/always-503"] = (10**6, 503, {})
    _landed_once(base, server, lake)
    before = lake_state(root)
    config = RestSourceConfig.model_validate(
        {"kind": "rest", "base_url": base, "tables": {"events": spec}, **settings}
    )
    with pytest.raises(error) as failed:
        land_table(lake, "crm", RestSource("crm", config), "events", "bad", today=DAY)
    message = str(failed.value)
    for part in named:
        assert part in message, message
    assert SECRET not in message and TOKEN not in message
    assert getattr(failed.value, "retryable", True) is (error is ConnectionError)
    assert lake_state(root) == before


def test_a_closed_port_is_a_retryable_error_naming_the_url(shared_lake) -> None:
    lake, root = shared_lake
    before = lake_state(root)
    base = f"http://127.0.0.1:{closed_port()}"
    config = RestSourceConfig.model_validate(
        {"kind": "rest", "base_url": base, "retries": 0, "tables": {"events": EVENTS}}
    )
    with pytest.raises(ConnectionError) as failed:
        land_table(lake, "crm", RestSource("crm", config), "events", "bad", today=DAY)
    assert base in str(failed.value) and "sources.crm.retries" in str(failed.value)
    assert lake_state(root) == before


def test_a_stalled_cursor_under_on_stall_fail_names_the_settings_and_lands_nothing(
    api, shared_lake
) -> None:
    base, server = api
    lake, root = shared_lake
    _landed_once(base, server, lake)
    ignoring = {**EVENTS, "path": "/secure/events/ignoring"}
    config = RestSourceConfig.model_validate(
        {
            "kind": "rest",
            "base_url": base,
            "auth": BEARER,
            "stall_runs": 1,
            "on_stall": "fail",
            "tables": {"events": ignoring},
        }
    )
    # The API ignores `updated_since`: it sends a record older than the cursor, every time.
    server.events.insert(0, {"id": 0, "status": "old", "updated_at": "2025-12-31T00:00:00Z"})
    before = lake_state(root)
    with pytest.raises(CursorStalled) as stalled:
        land_table(lake, "crm", RestSource("crm", config), "events", "stalled", today=DAY)
    message = str(stalled.value)
    assert "crm.events: cursor stalled" in message and "updated_since" in message
    assert "sources.crm.on_stall" in message and "sources.crm.stall_runs" in message
    after = lake_state(root)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == {"reads/crm/events.json"}  # only the count of stalled runs, no data


def test_after_the_bad_inputs_a_good_read_lands(api, shared_lake) -> None:
    base, server = api
    lake, _ = shared_lake
    _landed_once(base, server, lake)
    server.events.append({"id": 9, "status": "new", "updated_at": "2026-02-01T00:00:00Z"})
    config = RestSourceConfig.model_validate(
        {"kind": "rest", "base_url": base, "auth": BEARER, "tables": {"events": EVENTS}}
    )
    result = land_table(lake, "crm", RestSource("crm", config), "events", "good", today=DAY)
    assert result.rows == 1 and result.manifest is not None


def _landed_once(base: str, server: Api, lake: Lake) -> None:
    """The shared lake's first partition (once per module), so every case has state to keep."""
    if lake.manifests("crm", "events"):
        return
    server.events = [{"id": 1, "status": "new", "updated_at": "2026-01-01T10:00:00Z"}]
    config = RestSourceConfig.model_validate(
        {"kind": "rest", "base_url": base, "auth": BEARER, "tables": {"events": EVENTS}}
    )
    assert land_table(lake, "crm", RestSource("crm", config), "events", "r0", today=DAY).rows
