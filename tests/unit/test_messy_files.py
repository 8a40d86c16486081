"""Files as teams really export them: a corpus generated here lands with exact rows and values.

Encodings (cp1252, UTF-16 with BOM, UTF-8 with BOM), delimiters (semicolon, tab, TSV), quoting
with embedded delimiters and newlines, non-ASCII names and values, workbooks with data on their
second sheet or two sheets feeding two tables, Parquet, JSON lines and arrays, decimal commas,
date formats, and a 10 MB field; and the short errors of the files that cannot be read.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from millpond.ingest.lake import Lake
from millpond.ingest.landing import LandingResult, land_table
from millpond.ingest.sources.files import FilesSource
from millpond.ingest.sources.files.config import FilesSourceConfig

DAY = dt.date(2024, 3, 1)


def land(lake: Lake, inbox: Path, tables: Any, table: str, run: str = "r1", **source: Any):
    config = FilesSourceConfig(kind="files", path="inbox", tables=tables, **source)
    return land_table(lake, "erp", FilesSource("erp", config, inbox), table, run, today=DAY)


def landed_rows(lake: Lake, result: LandingResult) -> list[dict[str, Any]]:
    assert result.manifest is not None, result.rejected
    tables = [pq.read_table(p) for p in lake.part_paths(result.manifest)]
    return pa.concat_tables(tables).to_pylist()


def write_workbook(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(row)
    workbook.save(path)
    return path


# --- encodings ---------------------------------------------------------------------------------


def test_a_cp1252_export_with_semicolons_and_decimal_commas_lands_its_values(lake, inbox):
    text = (
        "Kundennr;Straße;Betrag;Größe\n1;Müllerstraße 5 \u2013 Œ;1,50;€ 3\n2;Gänsemarkt;12,25;x\n"
    )
    (inbox / "kunden.csv").write_bytes(text.encode("cp1252"))
    tables = {"kunden": {"csv": {"encoding": "cp1252", "decimal_comma": True}}}

    result = land(lake, inbox, tables, "kunden")

    assert landed_rows(lake, result) == [
        {"Kundennr": 1, "Straße": "Müllerstraße 5 \u2013 Œ", "Betrag": 1.5, "Größe": "€ 3"},
        {"Kundennr": 2, "Straße": "Gänsemarkt", "Betrag": 12.25, "Größe": "x"},
    ]


def test_a_cp1252_file_read_as_utf8_is_rejected_asking_for_the_encoding(lake, inbox):
    (inbox / "kunden.csv").write_bytes("id,city\n1,Köln\n".encode("cp1252"))

    result = land(lake, inbox, ["kunden"], "kunden")

    assert result.manifest is None
    (rejection,) = result.rejected
    assert "kunden.csv, line 2" in rejection.reason
    assert "csv.encoding" in rejection.reason


def test_a_utf16_export_with_a_bom_is_recognised_without_configuration(lake, inbox):
    (inbox / "cities.csv").write_bytes("id\tcity\n1\tZürich\n2\tKraków\n".encode("utf-16"))

    result = land(lake, inbox, ["cities"], "cities")

    assert landed_rows(lake, result) == [{"id": 1, "city": "Zürich"}, {"id": 2, "city": "Kraków"}]


def test_a_utf8_bom_does_not_stick_to_the_first_column_name(lake, inbox):
    (inbox / "cities.csv").write_bytes("\ufeffid,city\n1,Orléans\n".encode())

    assert landed_rows(lake, land(lake, inbox, ["cities"], "cities")) == [
        {"id": 1, "city": "Orléans"}
    ]


# --- delimiters and quoting ---------------------------------------------------------------------


def test_a_tsv_file_lands_when_its_name_matches(lake, inbox):
    (inbox / "orders_2024-01-31.tsv").write_text("id\tnote\n1\ta, b; c\n2\t\n")

    result = land(lake, inbox, ["orders"], "orders")

    assert landed_rows(lake, result) == [{"id": 1, "note": "a, b; c"}, {"id": 2, "note": None}]
    assert result.manifest is not None
    assert [f.name for f in result.manifest.files] == ["orders_2024-01-31.tsv"]


def test_a_txt_export_with_tabs_lands(lake, inbox):
    (inbox / "orders.txt").write_text("id\tname\n1\tAnn\n")

    assert landed_rows(lake, land(lake, inbox, ["orders"], "orders")) == [{"id": 1, "name": "Ann"}]


def test_quoted_fields_keep_embedded_delimiters_quotes_and_newlines(lake, inbox):
    (inbox / "notes.csv").write_text(
        'id,note,city\n1,"Smith, J.",Lyon\n2,"two\nlines, really",Köln\n3,"say ""hi""",\n'
    )

    assert landed_rows(lake, land(lake, inbox, ["notes"], "notes")) == [
        {"id": 1, "note": "Smith, J.", "city": "Lyon"},
        {"id": 2, "note": "two\nlines, really", "city": "Köln"},
        {"id": 3, "note": 'say "hi"', "city": None},
    ]


def test_a_table_setting_overrides_the_source_delimiter(lake, inbox):
    (inbox / "a.csv").write_text("id,label\n1,x\n")
    (inbox / "b.csv").write_text("id|label\n1|a,b,c\n")
    tables = {"a": {}, "b": {"csv": {"delimiter": "|"}}}

    a = land(lake, inbox, tables, "a", csv={"delimiter": ","})
    b = land(lake, inbox, tables, "b", csv={"delimiter": ","})

    assert landed_rows(lake, a) == [{"id": 1, "label": "x"}]
    assert landed_rows(lake, b) == [{"id": 1, "label": "a,b,c"}]


# --- workbooks ----------------------------------------------------------------------------------


def test_a_workbook_with_data_on_another_sheet_is_rejected_naming_the_sheets(lake, inbox):
    write_workbook(
        inbox / "sales.xlsx",
        {"Cover": [["Sales export"]], "Data": [["id", "amount"], [1, 9.5], [2, 3.0]]},
    )

    result = land(lake, inbox, ["sales"], "sales")

    assert result.manifest is None
    reason = result.rejected[0].reason
    assert "sheet 'Cover' has no data rows" in reason and "['Data']" in reason


def test_the_chosen_sheet_and_header_row_land(lake, inbox):
    write_workbook(
        inbox / "sales.xlsx",
        {
            "Cover": [["Sales export"]],
            "Data": [["Sales, January"], [], ["id", "amount"], [1, 9.5], [2, 3.0]],
        },
    )

    result = land(lake, inbox, {"sales": {"sheet": "Data", "header_row": 3}}, "sales")

    assert landed_rows(lake, result) == [{"id": 1, "amount": 9.5}, {"id": 2, "amount": 3.0}]


def test_two_sheets_of_one_workbook_feed_two_tables(lake, inbox):
    write_workbook(
        inbox / "erp_export.xlsx",
        {
            "Orders": [["id", "customer"], [1, "Ann"], [2, "Bo"]],
            "Lines": [["order_id", "sku", "qty"], [1, "A-1", 2], [1, "B-7", 1], [2, "A-1", 5]],
        },
    )
    tables = {
        "orders": {"pattern": "erp_export*.xlsx", "sheet": "Orders"},
        "lines": {"pattern": "erp_export*.xlsx", "sheet": 1},
    }

    orders = land(lake, inbox, tables, "orders")
    lines = land(lake, inbox, tables, "lines")

    assert landed_rows(lake, orders) == [{"id": 1, "customer": "Ann"}, {"id": 2, "customer": "Bo"}]
    assert landed_rows(lake, lines) == [
        {"order_id": 1, "sku": "A-1", "qty": 2},
        {"order_id": 1, "sku": "B-7", "qty": 1},
        {"order_id": 2, "sku": "A-1", "qty": 5},
    ]


def test_a_sheet_that_does_not_exist_is_rejected_listing_the_sheets(lake, inbox):
    write_workbook(inbox / "sales.xlsx", {"Data": [["id"], [1]]})

    result = land(lake, inbox, {"sales": {"sheet": "Daten"}}, "sales")

    assert "no sheet 'Daten'; the workbook has sheets ['Data']" in result.rejected[0].reason


# --- Parquet and JSON ---------------------------------------------------------------------------


def test_a_parquet_export_keeps_its_types(lake, inbox):
    table = pa.table(
        {
            "id": pa.array([1, 2], pa.int32()),
            "at": pa.array([dt.datetime(2024, 1, 1, 8), None], pa.timestamp("us")),
            "name": ["Zoë", "Ærø"],
        }
    )
    pq.write_table(table, inbox / "events.parquet")

    result = land(lake, inbox, ["events"], "events")

    assert landed_rows(lake, result) == table.to_pylist()
    assert result.manifest is not None
    assert [c["type"] for c in result.manifest.schema] == ["int32", "timestamp[us]", "string"]


def test_json_lines_and_a_json_array_land_the_same_rows(lake, inbox):
    rows = [{"id": 1, "name": "Ann", "score": 1.5}, {"id": 2, "name": "Bø", "score": None}]
    (inbox / "people_1.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (inbox / "scores_1.json").write_text(json.dumps(rows))

    people = land(lake, inbox, ["people", "scores"], "people")
    scores = land(lake, inbox, ["people", "scores"], "scores")

    assert landed_rows(lake, people) == rows
    assert landed_rows(lake, scores) == rows


def test_a_broken_json_line_is_rejected_naming_its_line(lake, inbox):
    (inbox / "people.jsonl").write_text('{"id": 1}\n{"id": 2,\n')

    result = land(lake, inbox, ["people"], "people")

    assert "people.jsonl, line" in result.rejected[0].reason


def test_a_table_format_overrides_the_extension(lake, inbox):
    (inbox / "export_1.dat").write_text("id;x\n1;a\n")

    result = land(lake, inbox, {"export": {"pattern": "export_*.dat", "format": "csv"}}, "export")

    assert landed_rows(lake, result) == [{"id": 1, "x": "a"}]


# --- dates, numbers, declared types -------------------------------------------------------------


def test_an_ambiguous_date_without_a_format_is_rejected_with_the_column_and_examples(lake, inbox):
    (inbox / "orders.csv").write_text("id,order_date\n1,02/06/2024\n2,03/07/2024\n")

    result = land(lake, inbox, ["orders"], "orders")

    assert result.manifest is None
    reason = result.rejected[0].reason
    assert "column order_date" in reason and "02/06/2024" in reason
    assert "date_format" in reason


@pytest.mark.parametrize(
    ("date_format", "expected"),
    [("%m/%d/%Y", dt.date(2024, 2, 6)), ("%d/%m/%Y", dt.date(2024, 6, 2))],
)
def test_a_declared_date_format_decides_day_and_month(lake, inbox, date_format, expected):
    (inbox / "orders.csv").write_text("id,order_date\n1,02/06/2024\n2,03/07/2024\n")
    tables = {"orders": {"csv": {"date_format": date_format}}}

    rows = landed_rows(lake, land(lake, inbox, tables, "orders"))

    assert rows[0] == {"id": 1, "order_date": expected}


def test_dates_that_tell_day_from_month_need_no_format(lake, inbox):
    (inbox / "orders.csv").write_text("id,order_date\n1,02/06/2024\n2,25/12/2024\n")

    rows = landed_rows(lake, land(lake, inbox, ["orders"], "orders"))

    assert [r["order_date"] for r in rows] == [dt.date(2024, 6, 2), dt.date(2024, 12, 25)]


def test_a_declared_timestamp_format_and_thousands_separator(lake, inbox):
    (inbox / "pay.csv").write_text(
        "id;at;amount\n1;02.06.2024 08:30;1.234,50\n2;03.07.2024 17:05;7,00\n"
    )
    tables = {
        "pay": {
            "csv": {
                "timestamp_format": "%d.%m.%Y %H:%M",
                "decimal_comma": True,
                "thousands": ".",
            }
        }
    }

    rows = landed_rows(lake, land(lake, inbox, tables, "pay"))

    assert rows == [
        {"id": 1, "at": dt.datetime(2024, 6, 2, 8, 30), "amount": 1234.5},
        {"id": 2, "at": dt.datetime(2024, 7, 3, 17, 5), "amount": 7.0},
    ]


def test_declared_types_apply_to_workbooks_too(lake, inbox):
    write_workbook(inbox / "codes.xlsx", {"Sheet": [["code", "n"], [1001, 1], [1002, 2]]})

    result = land(lake, inbox, {"codes": {"types": {"code": "VARCHAR"}}}, "codes")

    assert landed_rows(lake, result) == [{"code": "1001", "n": 1}, {"code": "1002", "n": 2}]


# --- long lines and short errors ----------------------------------------------------------------


def test_a_10_mb_field_lands_with_max_line_size_and_is_refused_without(lake, inbox):
    blob = "x" * (10 << 20)
    (inbox / "docs.csv").write_text(f"id,body\n1,{blob}\n2,short\n")

    refused = land(lake, inbox, ["docs"], "docs")
    landed = land(lake, inbox, {"docs": {"csv": {"max_line_size": 16 << 20}}}, "docs", run="r2")

    assert "max_line_size" in refused.rejected[0].reason
    assert len(refused.rejected[0].reason) < 500
    rows = landed_rows(lake, landed)
    assert [r["id"] for r in rows] == [1, 2]
    assert rows[0]["body"] == blob


def test_an_unterminated_quote_gives_a_short_error_naming_file_and_line(lake, inbox):
    rows = "".join(f"{i},customer {i},{i * 1.5}\n" for i in range(3, 400))
    (inbox / "orders.csv").write_text(f'id,name,amount\n1,ok,1.0\n2,"broken,2.0\n{rows}')

    result = land(lake, inbox, ["orders"], "orders")

    reason = result.rejected[0].reason
    assert len(reason) < 500
    assert "orders.csv, line 3" in reason
    assert "quote" in reason
