"""Two runs at once over the same inbox: each new file is landed and loaded exactly once."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from millpond.core.config_loading import load_config
from millpond.runtime.execute import RunContext, run_node

pytestmark = pytest.mark.integration


def test_two_concurrent_runs_land_and_load_each_file_once(project: Path, machine_pg: str) -> None:
    config = load_config(project / "millpond.yml", env={"MILLPOND_METADATA__URL": machine_pg})
    contexts = [RunContext(config, f"run-{i}", orchestrator="test") for i in range(2)]
    for ctx in contexts:  # parse and connect up front, as `millpond run` does
        ctx.graph  # noqa: B018
    errors: list[BaseException] = []

    def run(ctx: RunContext) -> None:
        try:
            for node_id in ("extract.erp.orders", "load.erp.orders"):
                run_node(ctx, node_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(ctx,)) for ctx in contexts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    landed = [ctx.outcomes["extract.erp.orders"].rows for ctx in contexts]
    assert sorted(landed) == [0, 15_000]
    manifests = list(
        (project / ".millpond" / "lake" / "raw" / "erp" / "orders").rglob("_manifest.json")
    )
    assert len(manifests) == 1
    with duckdb.connect(str(project / ".millpond" / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from raw.erp__orders").fetchone() == (15_000,)


def test_after_a_dbt_node_another_process_can_write_the_warehouse(
    project: Path, machine_pg: str
) -> None:
    config = load_config(project / "millpond.yml", env={"MILLPOND_METADATA__URL": machine_pg})
    ctx = RunContext(config, "run-dbt", orchestrator="test")
    for node_id in ("extract.erp.region", "load.erp.region", "dbt.stg_erp__region"):
        run_node(ctx, node_id)
    assert ctx.outcomes["dbt.stg_erp__region"].rows == 5
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; duckdb.connect(sys.argv[1]).close()",
            str(config.resolve(config.target_config.path)),
        ],
        capture_output=True,
        text=True,
    )
    assert other.returncode == 0, other.stderr  # dbt-duckdb no longer holds the file open
