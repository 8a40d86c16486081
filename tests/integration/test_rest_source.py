"""The `rest` source kind against a real HTTP server on 127.0.0.1 (tests/rest_server.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from rest_server import CUSTOMERS, TOKEN, serve_api

from ingest.lake import Lake
from ingest.landing import land_table, table_state
from ingest.rest import RestSource, RestSourceConfig, RestSourceError
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
