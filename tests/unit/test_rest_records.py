"""How API records become Arrow columns, and what a rest source's config accepts."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pydantic import ValidationError

from millpond.ingest.sources.records import dig, flatten, record_hash, since, to_table
from millpond.ingest.sources.rest.config import RestSourceConfig


def test_nested_objects_flatten_and_lists_become_json() -> None:
    record = {"id": 1, "address": {"city": "Graz", "geo": {"lat": 47.1}}, "tags": ["a", "b"]}
    assert flatten(record) == {
        "id": 1,
        "address__city": "Graz",
        "address__geo__lat": 47.1,
        "tags": '["a", "b"]',
    }


def test_a_column_mixing_numbers_and_text_is_kept_as_text() -> None:
    table = to_table([{"code": 7, "n": 1}, {"code": "A-7", "n": 2.5}, {"n": None}])
    assert table.schema.field("code").type == pa.string()
    assert table.column("code").to_pylist() == ["7", "A-7", None]
    assert table.schema.field("n").type == pa.float64()  # ints and floats widen, not text


def test_dig_follows_a_dotted_path_and_says_none_when_a_step_is_missing() -> None:
    body = {"data": {"items": [1, 2]}}
    assert dig(body, "data.items") == [1, 2]
    assert dig(body, "data.rows") is None
    assert dig(body, None) is body


def test_config_wants_an_http_base_url_and_a_known_paging_style() -> None:
    with pytest.raises(ValidationError, match="http:// or https://"):
        RestSourceConfig.model_validate(
            {"kind": "rest", "base_url": "ftp://x", "tables": {"t": {"path": "/t"}}}
        )
    with pytest.raises(ValidationError, match="style"):
        RestSourceConfig.model_validate(
            {
                "kind": "rest",
                "base_url": "https://x",
                "tables": {"t": {"path": "/t", "paginate": {"style": "magic"}}},
            }
        )


AT = "2026-01-01T10:00:00Z"


def test_since_drops_records_older_than_the_cursor_and_repeats_of_the_landed_boundary() -> None:
    landed = {"id": 1, "at": AT}
    records = [
        {"id": 0, "at": "2026-01-01T09:00:00Z"},  # older: the API ignored the parameter
        landed,  # sent again by an inclusive API
        {"id": 2, "at": "2026-01-01T10:00:00+00:00"},  # new, at the same instant
        {"id": 3, "at": "2026-01-01T11:00:00Z"},
        {"id": 4, "at": None},  # no value: kept, it cannot be placed
    ]
    kept, cursor, report = since(records, "at", AT, frozenset({record_hash(landed)}), kind="rest")
    assert [r["id"] for r in kept] == [2, 3, 4]
    assert cursor == "2026-01-01T11:00:00Z" and report.moved
    assert (report.returned, report.fresh, report.dropped) == (5, 4, 2)
    assert report.boundary == (record_hash({"id": 3, "at": "2026-01-01T11:00:00Z"}),)


def test_since_at_the_same_cursor_keeps_the_old_boundary_and_the_start_text() -> None:
    landed = {"id": 1, "at": AT}
    same_instant = {"id": 2, "at": "2026-01-01T10:00:00+00:00"}
    kept, cursor, report = since(
        [landed, same_instant], "at", AT, frozenset({record_hash(landed)}), kind="rest"
    )
    assert kept == [same_instant] and cursor == AT and not report.moved
    assert set(report.boundary) == {record_hash(landed), record_hash(same_instant)}
    assert report.fresh == 1  # a record at the cursor that was not landed: counts as stalled


def test_since_identity_is_what_was_kept_not_where_it_started() -> None:
    records = [{"id": 1, "at": AT}]
    first = since(records, "at", None, frozenset(), kind="rest")[2]
    again = since(records, "at", "2025-12-31T00:00:00Z", frozenset(), kind="rest")[2]
    other = since([{"id": 1, "at": AT, "v": 2}], "at", None, frozenset(), kind="rest")[2]
    assert first.identity == again.identity != other.identity
    assert since([], "at", None, frozenset(), kind="rest")[1] is None  # nothing read, no cursor
