"""A Python node's `context.warehouse()` on each target: a real connection, held under the
writer lock (loads, dbt and publish wait for it), whose writes are there after the block."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from millpond.core.config_loading import load_config
from millpond.core.graph import Node
from millpond.core.registry import TARGETS
from millpond.nodes.python import PythonContext

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("target", ["duckdb", "postgres"])
def test_the_warehouse_connection_holds_the_writer_lock(
    tmp_path: Path, target: str, machine_pg: str
) -> None:
    warehouse = (
        "{target: duckdb}" if target == "duckdb" else f"{{target: postgres, url: '{machine_pg}'}}"
    )
    (tmp_path / "millpond.yml").write_text(f"sources: {{}}\nwarehouse: {warehouse}\n")
    config = load_config(tmp_path / "millpond.yml", {})
    made = TARGETS.get(target).create(config.target_config, config)
    scope = SimpleNamespace(config=config, run_id="r-1", target=made)
    context = PythonContext(scope, Node("python.step", "python"), 1)  # type: ignore[arg-type]

    other_writer = threading.Event()

    def write_too() -> None:
        with made.writer_lock():
            other_writer.set()

    with context.warehouse() as con:
        con.execute("create table step_output as select 42 as answer")
        waiting = threading.Thread(target=write_too)
        waiting.start()
        waiting.join(0.5)
        assert not other_writer.is_set(), "another writer got the lock during the block"
    waiting.join(60)
    assert other_writer.is_set()
    with context.warehouse() as con:
        assert con.execute("select answer from step_output").fetchone() == (42,)
