"""Strict readers of export files: CSV (sniffed types, exact error lines) and Excel."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import pyarrow as pa
import pytest

from millpond.ingest.formats import CsvOptions, SourceFileError, read_batches


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def read_table(path: Path, fmt: str = "csv", options: CsvOptions | None = None) -> pa.Table:
    schema, batches = read_batches(path, fmt, options or CsvOptions())
    return pa.Table.from_batches(list(batches), schema=schema)


def read_error(path: Path, fmt: str = "csv", options: CsvOptions | None = None) -> SourceFileError:
    with pytest.raises(SourceFileError) as info:
        read_table(path, fmt, options)
    return info.value


def assert_error_at(error: SourceFileError, path: Path, line: int) -> None:
    assert error.line == line
    assert str(path) in str(error)
    assert f"line {line}" in str(error)


# --- valid CSV -------------------------------------------------------------------------------


def test_csv_rows_and_sniffed_types(tmp_path):
    path = write(
        tmp_path / "orders.csv",
        "id,amount,ratio,order_date,customer\n"
        "1,10.50,0.125,2024-01-02,alice\n"
        "2,3.25,1.5,2024-02-29,bob\n"
        "3,7.00,2.75,2024-12-31,carol\n",
    )

    table = read_table(path)

    assert table.column_names == ["id", "amount", "ratio", "order_date", "customer"]
    assert table.schema.field("id").type == pa.int64()
    assert pa.types.is_floating(table.schema.field("amount").type) or pa.types.is_decimal(
        table.schema.field("amount").type
    )
    assert pa.types.is_floating(table.schema.field("ratio").type)
    assert table.schema.field("order_date").type == pa.date32()
    assert table.schema.field("customer").type == pa.string()
    assert table.num_rows == 3
    assert table.to_pylist()[1] == {
        "id": 2,
        "amount": 3.25,
        "ratio": 1.5,
        "order_date": dt.date(2024, 2, 29),
        "customer": "bob",
    }


def test_csv_with_quoted_delimiters_and_empty_values(tmp_path):
    path = write(tmp_path / "c.csv", 'id,name,note\n1,"Smith, J.",\n2,"say ""hi""",x\n')

    rows = read_table(path).to_pylist()

    assert rows == [
        {"id": 1, "name": "Smith, J.", "note": None},
        {"id": 2, "name": 'say "hi"', "note": "x"},
    ]


def test_csv_with_utf8_bom_keeps_the_first_column_name_clean(tmp_path):
    path = write(tmp_path / "bom.csv", "\ufeffid,name\n1,a\n".encode())

    assert read_table(path).column_names == ["id", "name"]


def test_semicolon_delimited_file_is_split_into_its_columns(tmp_path):
    path = write(tmp_path / "semi.csv", "id;name;city\n1;Ann;Lyon\n2;Bo;Köln\n")

    table = read_table(path)

    assert table.column_names == ["id", "name", "city"]
    assert table.column("city").to_pylist() == ["Lyon", "Köln"]
    assert table.column("id").to_pylist() == [1, 2]


def test_tab_delimited_file_is_split_into_its_columns(tmp_path):
    path = write(tmp_path / "tab.csv", "id\tname\tnote\n1\tAnn Lee\ta, b\n2\tBo\tc\n")

    table = read_table(path)

    assert table.column_names == ["id", "name", "note"]
    assert table.to_pylist()[0] == {"id": 1, "name": "Ann Lee", "note": "a, b"}


def test_configured_delimiter_wins_over_detection(tmp_path):
    # The header has more commas than pipes, but the export is pipe-delimited.
    path = write(tmp_path / "p.csv", "id|label\n1|a,b,c\n2|d\n")

    table = read_table(path, options=CsvOptions(delimiter="|"))

    assert table.column_names == ["id", "label"]
    assert table.column("label").to_pylist() == ["a,b,c", "d"]


def test_header_only_file_gives_the_columns_and_no_rows(tmp_path):
    path = write(tmp_path / "empty.csv", "id,name,order_date\n")

    table = read_table(path)

    assert table.column_names == ["id", "name", "order_date"]
    assert table.num_rows == 0


def test_headerless_file_gets_numbered_columns(tmp_path):
    path = write(tmp_path / "nohdr.csv", "1,a\n2,b\n")

    table = read_table(path, options=CsvOptions(header=False))

    assert table.column_names == ["column0", "column1"]
    assert table.num_rows == 2


def test_large_file_is_streamed_in_several_batches_without_losing_rows(tmp_path):
    rows = "".join(f"{i},{i * 0.5}\n" for i in range(200_000))
    path = write(tmp_path / "big.csv", "id,value\n" + rows)

    schema, batches = read_batches(path, "csv", CsvOptions())
    sizes = [b.num_rows for b in batches]

    assert schema.names == ["id", "value"]
    assert len(sizes) > 1
    assert sum(sizes) == 200_000


# --- strictness ------------------------------------------------------------------------------


def test_row_with_an_extra_column_fails_on_its_line(tmp_path):
    path = write(tmp_path / "extra.csv", "id,name\n1,a\n2,b\n3,c,surprise\n4,d\n")

    error = read_error(path)

    assert_error_at(error, path, 4)
    assert "3,c,surprise" in str(error)


def test_row_with_a_missing_column_fails_on_its_line(tmp_path):
    path = write(tmp_path / "missing.csv", "id,name,city\n1,a,x\n2,b\n3,c,z\n")

    assert_error_at(read_error(path), path, 3)


def test_unterminated_quote_fails_on_its_line(tmp_path):
    path = write(tmp_path / "quote.csv", 'id,name\n1,a\n2,"b\n3,c\n')

    error = read_error(path)

    assert error.line == 3
    assert str(path) in str(error)
    assert "quote" in str(error).lower()


def test_bad_integer_after_the_sniffer_sample_fails_on_its_line(tmp_path):
    lines = [f"{i},name{i}" for i in range(1, 35_001)]
    lines[33_999] = "12O00,typo"  # data row 34,000 is line 34,001 of the file
    path = write(tmp_path / "far.csv", "id,name\n" + "\n".join(lines) + "\n")

    error = read_error(path)

    assert_error_at(error, path, 34_001)
    assert "12O00" in str(error)


def test_non_utf8_file_without_encoding_asks_for_one(tmp_path):
    path = write(tmp_path / "latin.csv", "id,city\n1,Orléans\n".encode("latin-1"))

    error = read_error(path)

    assert str(path) in str(error)
    assert "encoding" in str(error)


def test_non_utf8_byte_error_points_at_its_line(tmp_path):
    path = write(tmp_path / "latin.csv", "id,city\n1,Paris\n2,Orléans\n".encode("latin-1"))

    assert_error_at(read_error(path), path, 3)


def test_non_utf8_byte_deep_in_a_file_fails_on_its_line(tmp_path):
    body = "".join(f"{i},city{i}\n" for i in range(1, 5001)).encode()
    path = write(tmp_path / "deep.csv", b"id,city\n" + body + "5001,Orl\xe9ans\n".encode("latin-1"))

    error = read_error(path)

    assert_error_at(error, path, 5002)
    assert "utf-8" in str(error).lower()


def test_configured_encoding_reads_a_latin1_file(tmp_path):
    path = write(tmp_path / "latin.csv", "id,city\n1,Orléans\n".encode("latin-1"))

    table = read_table(path, options=CsvOptions(encoding="latin-1"))

    assert table.column("city").to_pylist() == ["Orléans"]


def test_empty_file_is_an_error_on_line_1(tmp_path):
    path = write(tmp_path / "nothing.csv", "")

    assert_error_at(read_error(path), path, 1)


def test_duplicate_header_names_are_an_error(tmp_path):
    path = write(tmp_path / "dup.csv", "id,name,id\n1,a,2\n")

    error = read_error(path)

    assert_error_at(error, path, 1)
    assert "duplicate" in str(error)


def test_unknown_format_is_an_error_naming_the_file(tmp_path):
    path = write(tmp_path / "x.avro", "{}")

    error = read_error(path, fmt="avro")

    assert str(path) in str(error)
    assert "avro" in str(error)


# --- Excel -----------------------------------------------------------------------------------


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


def test_xlsx_columns_get_int_float_string_and_date_types(tmp_path):
    path = write_xlsx(
        tmp_path / "orders.xlsx",
        [
            ["id", "amount", "customer", "order_date"],
            [1, 10.5, "alice", dt.date(2024, 1, 2)],
            [2, 3.25, "bob", dt.date(2024, 2, 29)],
            [3, 7, "carol", None],
        ],
    )

    table = read_table(path, fmt="xlsx")

    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("amount").type == pa.float64()
    assert table.schema.field("customer").type == pa.string()
    assert table.schema.field("order_date").type == pa.date32()
    assert table.to_pylist() == [
        {"id": 1, "amount": 10.5, "customer": "alice", "order_date": dt.date(2024, 1, 2)},
        {"id": 2, "amount": 3.25, "customer": "bob", "order_date": dt.date(2024, 2, 29)},
        {"id": 3, "amount": 7.0, "customer": "carol", "order_date": None},
    ]


def test_xlsx_mixed_column_becomes_text_keeping_whole_numbers_whole(tmp_path):
    path = write_xlsx(
        tmp_path / "m.xlsx", [["code", "n"], [1001, 1], ["A-7", 2], [None, 3], [2.5, 4]]
    )

    table = read_table(path, fmt="xlsx")

    assert table.schema.field("code").type == pa.string()
    assert table.column("code").to_pylist() == ["1001", "A-7", None, "2.5"]


def test_xlsx_trailing_empty_header_cells_are_ignored(tmp_path):
    path = write_xlsx(tmp_path / "t.xlsx", [["id", "name", " "], [1, "a"], [2, "b"]])

    table = read_table(path, fmt="xlsx")

    assert table.column_names == ["id", "name"]
    assert table.num_rows == 2


def test_xlsx_row_with_values_beyond_the_header_fails_on_its_row(tmp_path):
    path = write_xlsx(
        tmp_path / "beyond.xlsx", [["id", "name"], [1, "a"], [2, "b"], [3, "c", "stray"]]
    )

    error = read_error(path, fmt="xlsx")

    assert_error_at(error, path, 4)
    assert "beyond" in str(error)


def test_xlsx_duplicate_header_is_an_error(tmp_path):
    path = write_xlsx(tmp_path / "dup.xlsx", [["id", "id"], [1, 2]])

    assert_error_at(read_error(path, fmt="xlsx"), path, 1)


def test_not_a_workbook_is_an_error_naming_the_file(tmp_path):
    path = write(tmp_path / "fake.xlsx", "id,name\n1,a\n")

    error = read_error(path, fmt="xlsx")

    assert str(path) in str(error)
    assert "workbook" in str(error)


def test_declared_types_win_over_the_sniffer(tmp_path):
    lines = ["code,amount"] + [f"{i},{i}" for i in range(30_000)] + ["AB-1,5"]
    source = write(tmp_path / "codes.csv", "\n".join(lines) + "\n")

    table = read_table(source, options=CsvOptions(types={"code": "VARCHAR"}))

    assert table.schema.field("code").type == pa.string()
    assert table.column("code")[-1].as_py() == "AB-1"


def test_declared_types_for_unknown_columns_are_an_error(tmp_path):
    source = write(tmp_path / "codes.csv", "code,amount\n1,2\n")

    error = read_error(source, options=CsvOptions(types={"cdoe": "VARCHAR"}))

    assert "cdoe" in str(error) and error.line == 1
