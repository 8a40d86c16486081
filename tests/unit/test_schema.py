"""Reconciling a raw relation's columns with an incoming partition: lossless or refused."""

from __future__ import annotations

import pytest

from millpond.ingest.schema import SchemaMismatch, common_type, reconciled_columns


@pytest.mark.parametrize(
    ("raw", "incoming", "expected"),
    [
        ("BIGINT", "DOUBLE", "DOUBLE"),
        ("DOUBLE", "BIGINT", "DOUBLE"),
        ("INTEGER", "BIGINT", "BIGINT"),
        ("DATE", "TIMESTAMP", "TIMESTAMP"),
        ("VARCHAR", "BIGINT", "VARCHAR"),
        ("BIGINT", "VARCHAR", None),
        ("DATE", "BIGINT", None),
        ("DECIMAL(15,2)", "DOUBLE", "DOUBLE"),
    ],
)
def test_common_type_is_lossless_or_none(raw: str, incoming: str, expected: str | None) -> None:
    assert common_type(raw, incoming) == expected


def test_a_new_relation_takes_the_incoming_columns_as_they_are():
    incoming = {"id": "BIGINT", "amount": "DOUBLE"}

    assert reconciled_columns({}, incoming) == (incoming, [])


def test_the_same_columns_change_nothing():
    raw = {"id": "BIGINT", "amount": "DOUBLE"}

    assert reconciled_columns(raw, dict(raw)) == (raw, [])


def test_integers_after_decimals_keep_the_wider_type():
    columns, changes = reconciled_columns({"amount": "DOUBLE"}, {"amount": "BIGINT"})

    assert columns == {"amount": "DOUBLE"}
    assert changes == []


def test_decimals_after_integers_widen_the_column():
    columns, changes = reconciled_columns(
        {"id": "BIGINT", "amount": "BIGINT"}, {"id": "BIGINT", "amount": "DOUBLE"}
    )

    assert columns == {"id": "BIGINT", "amount": "DOUBLE"}
    assert changes == ["widened column amount from BIGINT to DOUBLE"]


def test_a_new_column_is_appended_after_the_existing_ones():
    columns, changes = reconciled_columns(
        {"id": "BIGINT", "amount": "DOUBLE"},
        {"note": "VARCHAR", "id": "BIGINT", "amount": "DOUBLE"},
    )

    assert list(columns.items()) == [("id", "BIGINT"), ("amount", "DOUBLE"), ("note", "VARCHAR")]
    assert changes == ["added column note VARCHAR"]


def test_a_text_column_takes_numbers_without_change():
    columns, changes = reconciled_columns({"code": "VARCHAR"}, {"code": "BIGINT"})

    assert columns == {"code": "VARCHAR"}
    assert changes == []


def test_text_in_a_numeric_column_is_refused_naming_column_and_types():
    with pytest.raises(
        SchemaMismatch, match=r"column id: the raw table has BIGINT, this partition has VARCHAR"
    ):
        reconciled_columns({"id": "BIGINT"}, {"id": "VARCHAR"})


def test_a_column_missing_from_the_partition_is_refused_by_name():
    with pytest.raises(SchemaMismatch, match=r"columns missing from this partition: amount$"):
        reconciled_columns({"id": "BIGINT", "amount": "DOUBLE"}, {"id": "BIGINT"})


def test_bookkeeping_columns_are_not_expected_in_a_partition():
    raw = {"id": "BIGINT", "_partition_id": "VARCHAR", "_loaded_at": "TIMESTAMP"}

    columns, changes = reconciled_columns(raw, {"id": "BIGINT"})

    assert columns["id"] == "BIGINT"
    assert changes == []
