"""The `rest` source kind against a real HTTP server on 127.0.0.1 (tests/rest_server.py)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from rest_server import CUSTOMERS, TOKEN, serve_api

from millpond.core.logs import logger
from millpond.ingest.lake import Lake
from millpond.ingest.landing import CursorStalled, land_table, table_state
from millpond.ingest.sources.rest import RestSource
from millpond.ingest.sources.rest.config import RestSourceConfig, RestSourceError
from millpond.targets.duckdb.raw import load_table

pytestmark = pytest.mark.integration
DAY = dt.date(2026, 11, 28)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.from_url(f"file://{tmp_path / 'lake'}")


def source(base: str, tables: dict[str, Any], **extra: Any) -> RestSource:
    config = RestSourceConfig.model_validate(
        {"kind": "rest", "base_url": base, "tables": tables, **extra}
    )
    return RestSource("crm", config)


def landed_ids(lake: Lake, src: RestSource, table: str, run: str = "r1") -> list[int]:
    result = land_table(lake, "crm", src, table, run, today=DAY)
    assert result.manifest is not None
    import pyarrow.parquet as pq

    paths = lake.part_paths(result.manifest)
    return sorted(pq.read_table(paths[0], filesystem=lake.fs).column("id").to_pylist())


ALL = [c["id"] for c in CUSTOMERS]


@pytest.mark.parametrize(
    ("path", "table_spec"),
    [
        (
            "/pages",
            {
                "record_path": "data.items",
                "paginate": {
                    "style": "page_number",
                    "param": "page",
                    "size_param": "per_page",
                    "size": 3,
                },
            },
        ),
        (
            "/offset",
            {
                "record_path": "rows",
                "paginate": {
                    "style": "offset",
                    "offset_param": "offset",
                    "limit_param": "limit",
                    "limit": 3,
                },
            },
        ),
        (
            "/cursor",
            {
                "record_path": "items",
                "paginate": {
                    "style": "cursor",
                    "cursor_path": "meta.next_cursor",
                    "param": "cursor",
                },
            },
        ),
        (
            "/next",
            {"record_path": "results", "paginate": {"style": "next_url", "next_url_path": "next"}},
        ),
        ("/link", {"paginate": {"style": "link_header"}}),
    ],
)
def test_every_pagination_style_reads_every_record_once(lake, path, table_spec) -> None:
    with serve_api() as (base, _):
        src = source(base, {"customers": {"path": path, **table_spec}})
        assert landed_ids(lake, src, "customers") == ALL


def test_nested_objects_become_columns(lake) -> None:
    with serve_api() as (base, _):
        src = source(base, {"customers": {"path": "/link", "paginate": {"style": "link_header"}}})
        result = land_table(lake, "crm", src, "customers", "r1", today=DAY)
    names = [column["name"] for column in result.manifest.schema]
    assert names == ["id", "name", "address__city", "address__zip"]


def test_5xx_and_429_bursts_are_retried_honouring_retry_after(lake) -> None:
    spec = {
        "record_path": "data.items",
        "paginate": {"style": "page_number", "param": "page", "size_param": "per_page", "size": 3},
    }
    with serve_api() as (base, api):
        api.fail_first["/flaky"] = (2, 503, {})
        api.fail_first["/limited"] = (2, 429, {"Retry-After": "1"})
        flaky = source(
            base, {"flaky": {"path": "/flaky", **spec}, "limited": {"path": "/limited", **spec}}
        )
        assert landed_ids(lake, flaky, "flaky") == ALL
        started = dt.datetime.now()
        assert landed_ids(lake, flaky, "limited") == ALL
        assert (dt.datetime.now() - started).total_seconds() >= 2  # waited as told, twice


def test_a_server_that_keeps_failing_is_a_retryable_error(lake) -> None:
    with serve_api() as (base, api):
        api.fail_first["/flaky"] = (99, 500, {})
        src = source(base, {"flaky": {"path": "/flaky"}}, retries=2)
        with pytest.raises(ConnectionError, match="HTTP 500 after 3 attempts"):
            land_table(lake, "crm", src, "flaky", "r1", today=DAY)
        assert api.calls["/flaky"] == 3


def test_a_repeating_cursor_is_stopped_naming_the_page(lake) -> None:
    paging = {"style": "cursor", "cursor_path": "meta.next_cursor", "param": "cursor"}
    with serve_api() as (base, _):
        src = source(base, {"loop": {"path": "/loop", "record_path": "items", "paginate": paging}})
        with pytest.raises(RestSourceError, match=r"crm\.loop, page 3 .*same next page again"):
            land_table(lake, "crm", src, "loop", "r1", today=DAY)
        assert lake.manifests("crm", "loop") == []


def test_pagination_that_never_ends_stops_at_max_pages(lake) -> None:
    paging = {"style": "cursor", "cursor_path": "meta.next_cursor", "param": "cursor"}
    with serve_api() as (base, _):
        src = source(
            base,
            {"endless": {"path": "/endless", "record_path": "items", "paginate": paging}},
            max_pages=5,
        )
        with pytest.raises(RestSourceError, match="more than max_pages=5"):
            land_table(lake, "crm", src, "endless", "r1", today=DAY)


@pytest.mark.parametrize(
    ("path", "auth"),
    [
        ("/secure/pages", {"type": "bearer", "token": TOKEN}),
        ("/key", {"type": "api_key", "name": "X-API-Key", "value": TOKEN, "in": "header"}),
        ("/key", {"type": "api_key", "name": "api_key", "value": TOKEN, "in": "query"}),
        ("/basic", {"type": "basic", "username": "ann", "password": TOKEN}),
    ],
)
def test_each_auth_style_is_accepted_and_its_secret_stays_out_of_manifests(
    lake, path, auth
) -> None:
    with serve_api() as (base, _):
        good = source(
            base,
            {
                "t": {
                    "path": path,
                    "record_path": "data"
                    if path == "/basic"
                    else ("data.items" if "pages" in path else None),
                }
            },
            auth=auth,
        )
        result = land_table(lake, "crm", good, "t", "r1", today=DAY)
        assert result.rows >= 1 and TOKEN not in result.manifest.to_json()
        wrong = source(
            base,
            {"t": {"path": path}},
            auth={**auth, **{k: "nope" for k in ("token", "value", "password") if k in auth}},
        )
        with pytest.raises(RestSourceError, match="HTTP 401") as refused:
            land_table(lake, "crm", wrong, "t", "r2", today=DAY)
        assert TOKEN not in str(refused.value)


def test_a_missing_record_path_says_what_the_body_has(lake) -> None:
    with serve_api() as (base, _):
        src = source(base, {"t": {"path": "/offset", "record_path": "data"}})
        with pytest.raises(RestSourceError, match=r"no 'data' in the response.*rows"):
            land_table(lake, "crm", src, "t", "r1", today=DAY)


def test_incremental_runs_land_each_version_once_and_commit_the_max_cursor(lake, tmp_path) -> None:
    import duckdb

    spec = {
        "path": "/events",
        "record_path": "events",
        "incremental": {"cursor_field": "updated_at", "param": "updated_since"},
        "primary_key": ["id"],
    }
    warehouse = duckdb.connect(str(tmp_path / "w.duckdb"))
    with serve_api() as (base, api):
        src = source(base, {"events": spec})
        api.events = [
            {"id": 1, "status": "new", "updated_at": "2026-01-01T10:00:00Z"},
            {"id": 2, "status": "new", "updated_at": "2026-01-01T11:00:00Z"},
        ]
        land_table(lake, "crm", src, "events", "r1", today=DAY)
        api.events[0] = {"id": 1, "status": "paid", "updated_at": "2026-01-02T09:00:00Z"}
        api.events.append({"id": 3, "status": "new", "updated_at": "2026-01-02T10:00:00Z"})
        land_table(lake, "crm", src, "events", "r2", today=DAY)
        nothing = land_table(lake, "crm", src, "events", "r3", today=DAY)
    load_table(warehouse, lake, "raw", "crm", "events")

    assert nothing.manifest is None
    history = warehouse.execute(
        "select id, status from raw.crm__events order by id, updated_at"
    ).fetchall()
    assert history == [(1, "new"), (1, "paid"), (2, "new"), (3, "new")]
    latest = warehouse.execute(
        "select id, status from raw.crm__events__latest order by id"
    ).fetchall()
    assert latest == [(1, "paid"), (2, "new"), (3, "new")]
    assert table_state(lake.manifests("crm", "events")).cursor == "2026-01-02T10:00:00Z"


# --- incremental reads that cannot stall -----------------------------------------------------

BEARER = {"type": "bearer", "token": TOKEN}
EVENTS = {
    "record_path": "events",
    "incremental": {"cursor_field": "updated_at", "param": "updated_since"},
    "primary_key": ["id"],
}


def event(id_: int, status: str, at: str) -> dict[str, Any]:
    return {"id": id_, "status": status, "updated_at": f"2026-01-0{at}Z"}


def landed_events(lake: Lake) -> list[tuple[int, str]]:
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for manifest in lake.manifests("crm", "events"):
        for path in lake.part_paths(manifest):
            rows += pq.read_table(path, filesystem=lake.fs).to_pylist()
    return sorted((r["id"], r["status"]) for r in rows)


@pytest.mark.parametrize("path", ["/secure/events/inclusive", "/secure/events/ignoring"])
def test_an_inclusive_or_ignoring_api_is_asked_every_run_and_later_records_land_once(
    lake, path
) -> None:
    with serve_api() as (base, api):
        src = source(base, {"events": {"path": path, **EVENTS}}, auth=BEARER)
        api.events = [event(1, "new", "1T10:00:00"), event(2, "new", "1T11:00:00")]
        runs = [land_table(lake, "crm", src, "events", f"r{n}", today=DAY) for n in (1, 2, 3)]
        asked_before = api.calls[path]
        # Added later: one after the cursor, one at the cursor's very instant.
        api.events += [event(3, "new", "2T09:00:00"), event(4, "new", "1T11:00:00")]
        later = land_table(lake, "crm", src, "events", "r4", today=DAY)
        after = land_table(lake, "crm", src, "events", "r5", today=DAY)
        asked = api.calls[path]
        wrong = source(
            base, {"events": {"path": path, **EVENTS}}, auth={"type": "bearer", "token": "nope"}
        )
        with pytest.raises(RestSourceError, match=r"crm\.events, page 1 .*HTTP 401"):
            land_table(lake, "crm", wrong, "events", "r6", today=DAY)

    assert [r.rows for r in runs] == [2, 0, 0] and asked_before == 3  # asked, nothing twice
    assert [r.rejected for r in runs] == [[], [], []]  # nothing new is not a broken file
    assert runs[1].read["returned"] > 0 and runs[1].read["dropped"] == runs[1].read["returned"]
    assert later.rows == 2 and after.manifest is None and asked == 5
    assert landed_events(lake) == [(1, "new"), (2, "new"), (3, "new"), (4, "new")]
    assert table_state(lake.manifests("crm", "events")).cursor == "2026-01-02T09:00:00Z"
    assert len(lake.manifests("crm", "events")) == 2  # the failed run landed nothing


def test_a_cursor_that_stays_put_while_the_api_sends_records_warns_then_fails(lake) -> None:
    def ignoring(**settings: Any) -> RestSource:
        spec = {"path": "/secure/events/ignoring", **EVENTS}
        return source(base, {"events": spec}, auth=BEARER, stall_runs=2, **settings)

    with serve_api() as (base, api):
        api.events = [event(1, "new", "1T10:00:00"), event(2, "new", "1T11:00:00")]
        first = land_table(lake, "crm", ignoring(), "events", "r1", today=DAY)
        quiet = land_table(lake, "crm", ignoring(), "events", "r2", today=DAY)
        loud = land_table(lake, "crm", ignoring(), "events", "r3", today=DAY)
        with pytest.raises(CursorStalled) as strict:
            land_table(lake, "crm", ignoring(on_stall="fail"), "events", "r4", today=DAY)
        api.events.append(event(3, "new", "3T00:00:00"))
        moved = land_table(lake, "crm", ignoring(on_stall="fail"), "events", "r5", today=DAY)

    assert first.rows == 2 and not first.warnings
    assert quiet.warnings == [] and quiet.read["stalled_runs"] == 1
    (warning,) = loud.warnings
    assert "crm.events: cursor stalled" in warning and "for 2 runs" in warning
    assert "updated_since" in warning and "sources.crm.on_stall" in warning
    assert "crm.events" in str(strict.value) and "for 3 runs" in str(strict.value)
    assert strict.value.retryable is False
    assert moved.rows == 1 and moved.warnings == [] and moved.read["stalled_runs"] == 0
    assert [m.run_id for m in lake.manifests("crm", "events")] == ["r1", "r5"]


def test_an_inclusive_api_with_nothing_new_never_counts_as_stalled(lake) -> None:
    with serve_api() as (base, api):
        spec = {"path": "/secure/events/inclusive", **EVENTS}
        src = source(base, {"events": spec}, auth=BEARER, stall_runs=1, on_stall="fail")
        api.events = [event(1, "new", "1T10:00:00"), event(2, "new", "1T11:00:00")]
        results = [land_table(lake, "crm", src, "events", f"r{n}", today=DAY) for n in range(4)]
    assert [r.rows for r in results] == [2, 0, 0, 0]
    assert all(r.read["stalled_runs"] == 0 for r in results[1:])


# --- credentials and redirects ---------------------------------------------------------------

HEADER_SECRETS = {
    "X-Auth-Token": "hdr-tok-9f1a",
    "Cookie": "sid=cookie-sec-7731",
    "X-Client-Secret": "cs-552190",
    "X-Tenant-Key": "tk-3e0b21",
    "X-Signature": "sig-0042aa",
}


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "bearer", "token": TOKEN},
        {"type": "api_key", "name": "X-API-Key", "value": TOKEN, "in": "header"},
        {"type": "api_key", "name": "api_key", "value": TOKEN, "in": "query"},
        {"type": "basic", "username": "ann", "password": TOKEN},
    ],
    ids=["bearer", "header-key", "query-key", "basic"],
)
def test_a_redirect_to_another_origin_carries_no_credential(lake, auth) -> None:
    headers = {"Accept": "application/json", **HEADER_SECRETS}
    with serve_api() as (base, api), serve_api() as (other, elsewhere):
        api.redirects["/moved"] = f"{other}/landing"
        src = source(
            base, {"t": {"path": "/moved", "record_path": "data"}}, auth=auth, headers=headers
        )
        result = land_table(lake, "crm", src, "t", "r1", today=DAY)

    assert result.rows == 2
    (first,) = api.requests
    (hop,) = elsewhere.requests
    secrets = [TOKEN, *(v.split("=")[-1] for v in HEADER_SECRETS.values())]
    home = json.dumps(first)  # the API's own origin got every credential
    assert TOKEN in home or "authorization" in first["headers"]
    assert all(s in home for s in secrets[1:])
    sent = json.dumps(hop)
    assert [s for s in secrets if s in sent] == []
    assert {"authorization", "cookie", "x-api-key"}.isdisjoint(hop["headers"])
    assert hop["headers"]["accept"] == "application/json"  # a harmless header still goes


def test_a_next_page_link_to_another_origin_carries_no_credential(lake) -> None:
    auth = {"type": "api_key", "name": "X-API-Key", "value": TOKEN, "in": "header"}
    spec = {
        "path": "/hand-off",
        "record_path": "data",
        "paginate": {"style": "next_url", "next_url_path": "next"},
    }
    with serve_api() as (base, api), serve_api() as (other, elsewhere):
        api.hand_off = f"{other}/landing"
        src = source(base, {"t": spec}, auth=auth, headers=HEADER_SECRETS)
        assert land_table(lake, "crm", src, "t", "r1", today=DAY).rows == 3
    (hop,) = elsewhere.requests
    assert TOKEN in json.dumps(api.requests) and TOKEN not in json.dumps(hop)
    assert [v for v in HEADER_SECRETS.values() if v in json.dumps(hop)] == []


@pytest.mark.parametrize("where", ["header", "query"])
def test_a_redirect_within_the_origin_keeps_the_credentials(lake, where) -> None:
    auth = {"type": "api_key", "name": "X-API-Key" if where == "header" else "api_key"}
    with serve_api() as (base, api):
        api.redirects["/old-key"] = f"{base}/key"
        src = source(base, {"t": {"path": "/old-key"}}, auth={**auth, "value": TOKEN, "in": where})
        assert land_table(lake, "crm", src, "t", "r1", today=DAY).rows == 1
    assert [r["path"] for r in api.requests] == ["/old-key", "/key"]


def test_each_retry_is_logged_at_info_with_the_status_and_the_wait(lake) -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m), level="INFO", format="{level} {message}")
    try:
        with serve_api() as (base, api):
            api.fail_first["/flaky"] = (1, 503, {})
            api.fail_first["/limited"] = (1, 429, {"Retry-After": "1"})
            src = source(
                base,
                {
                    "flaky": {"path": "/flaky", "record_path": "data.items"},
                    "limited": {"path": "/limited", "record_path": "data.items"},
                },
            )
            land_table(lake, "crm", src, "flaky", "r1", today=DAY)
            land_table(lake, "crm", src, "limited", "r1", today=DAY)
    finally:
        logger.remove(sink)
    retries = [line for line in lines if "retry 1 of 5 in" in line]
    assert len(retries) == 2 and all(line.startswith("INFO ") for line in retries)
    assert "crm.flaky, page 1" in retries[0] and "HTTP 503" in retries[0]
    assert "HTTP 429" in retries[1] and "in 1.0 s (as its Retry-After said)" in retries[1]
