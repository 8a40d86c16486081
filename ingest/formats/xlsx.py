"""Workbooks (.xlsx): one sheet, by name or index, with its header on a given row.

A workbook read from the wrong sheet lands nothing and looks fine, so a chosen sheet without
data rows while another sheet has some is an error naming the sheets.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa

from millpond.ingest.formats.base import FileRead, arrow_read, with_declared_types
from millpond.ingest.formats.errors import SourceFileError
from millpond.ingest.formats.options import ReadOptions


def _rows(sheet: Any) -> list[list[Any]]:
    return sheet.to_python(skip_empty_area=True)


def _has_data(rows: list[list[Any]]) -> bool:
    return sum(1 for r in rows if any(v not in ("", None) for v in r)) > 1


def open_xlsx(path: Path, read: ReadOptions) -> FileRead:
    from python_calamine import CalamineWorkbook

    try:
        workbook = CalamineWorkbook.from_path(str(path))
        names = list(workbook.sheet_names)
    except Exception as exc:
        raise SourceFileError(str(path), f"cannot read workbook: {exc}") from None
    sheet = read.sheet
    try:
        chosen = (
            workbook.get_sheet_by_name(sheet)
            if isinstance(sheet, str)
            else workbook.get_sheet_by_index(sheet)
        )
        rows = _rows(chosen)
    except Exception:
        raise SourceFileError(
            str(path), f"no sheet {sheet!r}; the workbook has sheets {names} (set sheet:)"
        ) from None
    label = sheet if isinstance(sheet, str) else names[sheet]
    rows = rows[read.header_row - 1 :]
    if not _has_data(rows):
        others = [
            n for n in names if n != label and _has_data(_rows(workbook.get_sheet_by_name(n)))
        ]
        if others:
            raise SourceFileError(
                str(path),
                f"sheet {label!r} has no data rows but sheets {others} do; choose one with "
                f"sheet: (the workbook has {names})",
            )
    table = _table(str(path), rows, read.header_row)
    return arrow_read(path.name, with_declared_types(str(path), table, read.declared))


def _table(shown: str, rows: list[list[Any]], header_row: int) -> pa.Table:
    if not rows:
        raise SourceFileError(shown, "sheet is empty (no header row)", header_row)
    header = [str(h).strip() if h is not None else "" for h in rows[0]]
    header = header[: max((i + 1 for i, h in enumerate(header) if h), default=1)]  # trailing ""
    if len(set(header)) != len(header) or any(not h for h in header):
        raise SourceFileError(
            shown, f"header has empty or duplicate column names: {header}", header_row
        )
    data = rows[1:]
    for index, row in enumerate(data, start=header_row + 1):
        if len(row) > len(header) and any(v not in ("", None) for v in row[len(header) :]):
            raise SourceFileError(
                shown, f"row has values beyond the {len(header)} header columns", index
            )
    arrays = [
        _column([row[i] if i < len(row) else None for row in data]) for i in range(len(header))
    ]
    return pa.table(arrays, names=header)


def _column(values: list[Any]) -> pa.Array:
    """One typed column: whole numbers as int64, dates as date32, anything mixed as text."""
    present = [v for v in values if v not in ("", None)]
    cleaned = [None if v in ("", None) else v for v in values]
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        if all(float(v).is_integer() for v in present):
            return pa.array([None if v is None else int(v) for v in cleaned], pa.int64())
        return pa.array([None if v is None else float(v) for v in cleaned], pa.float64())
    if present and all(isinstance(v, dt.datetime) for v in present):
        return pa.array(cleaned, pa.timestamp("us"))
    if present and all(isinstance(v, dt.date) and not isinstance(v, dt.datetime) for v in present):
        return pa.array(cleaned, pa.date32())
    whole = [int(v) if isinstance(v, float) and v.is_integer() else v for v in cleaned]  # 7.0 -> 7
    return pa.array([None if v is None else str(v) for v in whole], pa.string())
