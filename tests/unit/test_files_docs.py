"""Every ```yaml example of docs/sources.md's `## files` section is a valid configuration, and
says what the docs say it does."""

from __future__ import annotations

import re
from typing import Any

import yaml
from conftest import REPO

from millpond.core.config import config_model
from millpond.ingest.sources.files.config import FilesSourceConfig


def files_examples() -> list[dict[str, Any]]:
    text = (REPO / "docs" / "sources.md").read_text()
    section = text.split("\n## files\n", 1)[1].split("\n## ", 1)[0]
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]


def example(source: str) -> dict[str, Any]:
    """The first example declaring this source."""
    return next(e for e in files_examples() if source in e["sources"])


def test_the_files_section_has_its_examples():
    assert len(files_examples()) >= 3
    assert all(example(s) for s in ("erp", "finance", "shop"))


def test_every_files_example_is_a_valid_configuration(tmp_path):
    for found in files_examples():
        if "${" in str(found):
            continue  # needs its environment (the S3 inbox example is run by its own test)
        config = config_model()(root=tmp_path, **found)
        for source in config.sources.values():
            assert isinstance(source, FilesSourceConfig)


def test_table_settings_override_the_source_settings_as_documented(tmp_path):
    erp = config_model()(root=tmp_path, **example("erp")).sources["erp"]

    orders = erp.read_options("orders")
    web = erp.read_options("web_orders")

    assert (orders.csv.delimiter, orders.csv.encoding, orders.csv.decimal_comma) == (
        ";",
        "cp1252",
        True,
    )
    assert orders.csv.date_format == "%d/%m/%Y" and orders.declared == {"customer_code": "VARCHAR"}
    assert (web.csv.delimiter, web.csv.encoding, web.csv.decimal_comma) == (";", "utf-8", False)
    assert erp.read_options("events").format == "jsonl"
    assert erp.read_options("notes").csv.max_line_size == 16_777_216


def test_the_workbook_and_bad_row_examples_mean_what_they_say(tmp_path):
    finance, shop = (config_model()(root=tmp_path, **example(s)) for s in ("finance", "shop"))
    budget = finance.sources["finance"].read_options("budget")
    assert (budget.sheet, budget.header_row) == ("Budget", 3)
    assert finance.sources["finance"].read_options("actuals").sheet == 1

    source = shop.sources["shop"]
    orders, payments, clicks = (source.policy("shop", t) for t in ("orders", "payments", "clicks"))
    assert (orders.on_bad_rows, orders.max_bad_rows) == ("quarantine", 100)
    assert payments.on_bad_rows == "fail"
    assert (clicks.on_bad_rows, clicks.max_bad_fraction) == ("quarantine", 0.05)
    assert (
        source.read_options("orders").quarantine and not source.read_options("payments").quarantine
    )
