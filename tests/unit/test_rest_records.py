"""How API records become Arrow columns, and what a rest source's config accepts."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pydantic import ValidationError

from ingest.rest import RestSourceConfig, dig, flatten, to_table


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
