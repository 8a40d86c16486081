"""Demo data: the 8 TPC-H tables as an ERP's export files, CSV plus two Excel workbooks.

tpchgen-cli (a Rust generator shipped as a wheel) writes the CSVs in seconds; nation and region
are converted to .xlsx because real ERP drops mix formats, and the pipeline should show both.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from millpond.core.logs import logger

TABLES = ["region", "nation", "customer", "supplier", "part", "partsupp", "orders", "lineitem"]
EXCEL_TABLES = {"nation", "region"}


def inbox_has_files(inbox: Path) -> bool:
    return inbox.is_dir() and any(
        p.is_file() and not p.name.startswith(".") for p in inbox.iterdir()
    )


def generate(inbox: Path, scale: float) -> list[Path]:
    """Write the export files into the inbox; returns their paths."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    inbox.mkdir(parents=True, exist_ok=True)
    tool = Path(sys.executable).with_name("tpchgen-cli")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [str(tool), "csv", "-s", str(scale), "--output-dir", tmp],
            check=True,
            capture_output=True,
            text=True,
        )
        written = []
        for table in TABLES:
            source = Path(tmp) / f"{table}.csv"
            if table in EXCEL_TABLES:
                written.append(csv_to_xlsx(source, inbox / f"{table}.xlsx"))
            else:
                written.append(Path(shutil.move(source, inbox / f"{table}.csv")))
    logger.info(f"demo data at scale {scale}: {len(written)} files in {inbox}")
    return written


def csv_to_xlsx(source: Path, target: Path) -> Path:
    """One sheet, header row first; numbers stay numbers."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(source.stem)
    with source.open(newline="", encoding="utf-8") as fh:
        for index, row in enumerate(csv.reader(fh)):
            cells: list[int | float | str] = [*row] if index == 0 else [_number(v) for v in row]
            sheet.append(cells)
    workbook.save(target)
    return target


def _number(value: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value
