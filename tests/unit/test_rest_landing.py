"""The `rest` source landing through `land_table` into a local lake, against a real HTTP server
on 127.0.0.1 (no mocks): cursors in mixed ISO formats over three runs, a page that repeats,
Retry-After as an HTTP date, responses that are not JSON, and credentials put in headers and
query params that must never reach a manifest, an error or a log line."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from millpond.core.logs import logger
from millpond.ingest.lake import Lake
from millpond.ingest.landing import land_table, table_state
from millpond.ingest.sources.records import cursor_order, latest
from millpond.ingest.sources.rest import RestSource
from millpond.ingest.sources.rest.config import RestSourceConfig, RestSourceError

DAY = dt.date(2026, 11, 28)
KEY = "qk-5d1e0a77c3"  # an API key the test puts in a query param and a header
SESSION = "sess-82b4f1e9"


class Api:
    """State the tests change between runs, and what the server saw."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.seen: list[dict[str, str]] = []
        self.calls: Counter[str] = Counter()
        self.limited = 0
        self.base = ""

    def respond(self, path: str, query: dict[str, str], headers: dict[str, str]) -> Any:
        self.calls[path] += 1
        self.seen.append({"path": path, **query})
        if path == "/events":
            since = query.get("since")
            fresh = [
                e
                for e in self.events
                if since is None or cursor_order(e["changed"]) > cursor_order(since)
            ]
            return 200, {}, {"data": {"events": fresh}}
        if path == "/nested":
            return (
                200,
                {},
                [{"id": e["id"], "meta": {"changed": e["changed"]}} for e in self.events],
            )
        if path == "/stuck":  # ignores `page`: every page is the first one
            return 200, {}, [{"id": 1}, {"id": 2}]
        if path == "/limited":
            if self.limited:
                self.limited -= 1
                when = email.utils.formatdate(time.time() + 2, usegmt=True)
                return 429, {"Retry-After": when}, {"error": "slow down"}
            return 200, {}, [{"id": 1}]
        if path == "/html":
            return 200, {"Content-Type": "text/html"}, "<html>login</html>"
        if path == "/keyed":
            if query.get("access_token") != KEY or headers.get("x-session") != SESSION:
                return 403, {}, {"error": f"bad key {query.get('access_token')}"}
            start = int(query.get("from", 0))
            following = f"{self.base}/keyed?access_token={KEY}&from={start + 2}"
            return 200, {}, {"rows": [{"id": start}, {"id": start + 1}], "next": following}
        return 404, {}, {"error": "no such endpoint"}


@contextmanager
def serve() -> Iterator[tuple[str, Api]]:
    api = Api()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, body = api.respond(parts.path, query, headers)
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Type", extra.pop("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield api.base, api
    finally:
        server.shutdown()
        server.server_close()


def rest(base: str, tables: dict[str, Any], **extra: Any) -> RestSource:
    config = RestSourceConfig.model_validate(
        {"kind": "rest", "base_url": base, "tables": tables, **extra}
    )
    return RestSource("crm", config)


def landed(lake: Lake, table: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for manifest in lake.manifests("crm", table):
        for path in lake.part_paths(manifest):
            rows += pq.read_table(path, filesystem=lake.fs).to_pylist()
    return rows


EVENTS = {
    "path": "/events",
    "record_path": "data.events",
    "incremental": {"cursor_field": "changed", "param": "since"},
    "primary_key": ["id"],
}


def test_three_incremental_runs_land_every_version_once_and_commit_the_latest_instant(
    lake: Lake,
) -> None:
    with serve() as (base, api):
        src = rest(base, {"events": EVENTS})
        api.events = [
            {"id": 1, "v": 1, "changed": "2026-01-01T10:00:00Z"},
            {"id": 2, "v": 1, "changed": "2026-01-01T10:00:00.500Z"},  # later, lexically less
        ]
        first = land_table(lake, "crm", src, "events", "r1", today=DAY)
        assert first.manifest.cursor == "2026-01-01T10:00:00.500Z"
        api.events += [
            {"id": 1, "v": 2, "changed": "2026-01-02T09:00:00+01:00"},  # 08:00 UTC
            {"id": 3, "v": 1, "changed": "2026-01-02T08:30:00Z"},
        ]
        second = land_table(lake, "crm", src, "events", "r2", today=DAY)
        assert second.rows == 2 and second.manifest.cursor == "2026-01-02T08:30:00Z"
        api.events += [
            {"id": 2, "v": 2, "changed": "2026-01-03T00:00:00Z"},
            {"id": 4, "v": 1, "changed": "2026-01-02T23:30:00-01:00"},  # 00:30 UTC, the max
        ]
        third = land_table(lake, "crm", src, "events", "r3", today=DAY)
        assert third.rows == 2
        assert land_table(lake, "crm", src, "events", "r4", today=DAY).manifest is None
        asked = [call.get("since") for call in api.seen]

    versions = sorted((r["id"], r["v"]) for r in landed(lake, "events"))
    assert versions == [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (4, 1)]  # each exactly once
    committed = table_state(lake.manifests("crm", "events")).cursor
    assert committed == "2026-01-02T23:30:00-01:00"
    assert committed == latest(r["changed"] for r in landed(lake, "events"))
    assert asked == [None, "2026-01-01T10:00:00.500Z", "2026-01-02T08:30:00Z", committed]
    assert [m.order_by for m in lake.manifests("crm", "events")] == ["changed"] * 3


def test_a_rerun_of_the_same_run_lands_nothing_twice(lake: Lake) -> None:
    with serve() as (base, api):
        api.events = [{"id": 1, "v": 1, "changed": "2026-01-01T10:00:00Z"}]
        src = rest(base, {"events": EVENTS})
        once = land_table(lake, "crm", src, "events", "r1", today=DAY)
        again = land_table(lake, "crm", src, "events", "r1", today=DAY)
        assert again.manifest == once.manifest
        assert api.calls["/events"] == 1
        # Another run from the same committed cursor asks again, and finds nothing new.
        again = land_table(lake, "crm", src, "events", "r2", today=DAY)
        assert again.manifest is None and again.rejected == []  # nothing new, nothing wrong
        assert api.calls["/events"] == 2
    assert len(lake.manifests("crm", "events")) == 1


def test_a_nested_cursor_field_is_read_from_its_flattened_column(lake: Lake) -> None:
    spec = {
        "path": "/nested",
        "incremental": {"cursor_field": "meta.changed", "param": "since"},
        "primary_key": ["id"],
    }
    with serve() as (base, api):
        api.events = [{"id": 1, "changed": "2026-01-01T10:00:00Z"}, {"id": 2, "changed": 5}]
        result = land_table(lake, "crm", rest(base, {"n": spec}), "n", "r1", today=DAY)
    assert result.manifest.cursor == "2026-01-01T10:00:00Z"  # mixed kinds: no TypeError
    assert result.manifest.order_by == "meta__changed"
    assert {c["name"] for c in result.manifest.schema} == {"id", "meta__changed"}


def test_a_page_that_comes_back_unchanged_is_stopped_naming_the_page(lake: Lake) -> None:
    paging = {"style": "page_number", "param": "page"}
    with serve() as (base, _):
        src = rest(base, {"stuck": {"path": "/stuck", "paginate": paging}})
        with pytest.raises(RestSourceError, match=r"crm\.stuck, page 2 .*page=2.*sent before"):
            land_table(lake, "crm", src, "stuck", "r1", today=DAY)
    assert RestSourceError.retryable is False
    assert lake.manifests("crm", "stuck") == []


def test_retry_after_as_an_http_date_is_waited_for(lake: Lake) -> None:
    with serve() as (base, api):
        api.limited = 1
        src = rest(base, {"limited": {"path": "/limited"}})
        started = time.monotonic()
        assert land_table(lake, "crm", src, "limited", "r1", today=DAY).rows == 1
        assert time.monotonic() - started >= 0.9  # the date was ~2 s ahead (1 s resolution)
        assert api.calls["/limited"] == 2


def test_a_response_that_is_not_json_says_so(lake: Lake) -> None:
    with serve() as (base, _):
        src = rest(base, {"page": {"path": "/html"}})
        with pytest.raises(RestSourceError, match=r"crm\.page, page 1 .*not JSON \(text/html"):
            land_table(lake, "crm", src, "page", "r1", today=DAY)


def test_a_cursor_field_no_record_has_is_a_config_error(lake: Lake) -> None:
    with serve() as (base, api):
        api.events = [{"id": 1, "v": 1, "changed": "2026-01-01T10:00:00Z"}]
        spec = {**EVENTS, "incremental": {"cursor_field": "updated", "param": "since"}}
        src = rest(base, {"events": spec})
        with pytest.raises(RestSourceError, match=r"no record has the cursor field 'updated'"):
            land_table(lake, "crm", src, "events", "r1", today=DAY)


def test_an_empty_full_read_keeps_the_last_snapshot(lake: Lake) -> None:
    full = {"path": "/events", "record_path": "data.events"}
    with serve() as (base, api):
        src = rest(base, {"events": full})
        api.events = [{"id": 1, "v": 1, "changed": "2026-01-01T10:00:00Z"}]
        assert land_table(lake, "crm", src, "events", "r1", today=DAY).manifest.replaces
        api.events = []
        assert land_table(lake, "crm", src, "events", "r2", today=DAY).manifest is None
    assert [m.run_id for m in lake.manifests("crm", "events")] == ["r1"]


def test_credentials_in_query_params_and_headers_never_reach_manifests_errors_or_logs(
    lake: Lake,
) -> None:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    tables = {
        "keyed": {
            "path": "/keyed",
            "params": {"access_token": KEY},
            "record_path": "rows",
            "paginate": {"style": "next_url", "next_url_path": "next"},
        }
    }
    try:
        with serve() as (base, _):
            good = rest(base, tables, headers={"X-Session": SESSION}, max_pages=3)
            with pytest.raises(RestSourceError, match="more than max_pages=3") as endless:
                land_table(lake, "crm", good, "keyed", "r1", today=DAY)
            shown = rest(base, tables, headers={"X-Session": "wrong-session"})
            with pytest.raises(RestSourceError, match="HTTP 403") as refused:
                land_table(lake, "crm", shown, "keyed", "r2", today=DAY)
            tables["keyed"]["paginate"] = {"style": "none"}
            once = rest(base, tables, headers={"X-Session": SESSION})
            result = land_table(lake, "crm", once, "keyed", "r3", today=DAY)
    finally:
        logger.remove(sink)
    assert result.rows == 2
    assert "access_token=***" in str(endless.value)
    texts = [str(endless.value), str(refused.value), result.manifest.to_json(), *lines]
    texts += [f.name + f.sha256 for f in result.manifest.files]
    assert sum(text.count(KEY) + text.count(SESSION) for text in texts) == 0


def test_a_4xx_is_permanent_and_says_what_to_change(lake: Lake) -> None:
    with serve() as (base, _):
        src = rest(base, {"gone": {"path": "/nowhere"}})
        with pytest.raises(
            RestSourceError, match=r"crm\.gone, page 1 \(http.*/nowhere\): HTTP 404"
        ):
            land_table(lake, "crm", src, "gone", "r1", today=DAY)


def test_cursor_values_compare_as_instants_and_numbers() -> None:
    assert latest(["2026-01-01T10:00:00Z", "2026-01-01T10:00:00.5Z"]) == "2026-01-01T10:00:00.5Z"
    assert latest(["2026-01-01T10:00:00+01:00", "2026-01-01T09:30:00Z"]) == ("2026-01-01T09:30:00Z")
    assert latest([9, 10, None]) == 10
    assert latest([None, ""]) is None
    assert latest(["b", 3]) == "b"  # kinds never compare with each other


def test_auth_must_be_complete() -> None:
    def config(auth: dict[str, Any]) -> None:
        RestSourceConfig.model_validate(
            {"kind": "rest", "base_url": "https://x", "auth": auth, "tables": {"t": {"path": "/"}}}
        )

    with pytest.raises(ValidationError, match="bearer needs token"):
        config({"type": "bearer"})
    with pytest.raises(ValidationError, match="api_key needs name, value"):
        config({"type": "api_key"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        config({"type": "bearer", "token": "abcd", "scheme": "x"})
