"""`kind: sql` end to end: docs/sources.md's example, run by `millpond run` as a user would.

The example's YAML is read from the doc itself, so the doc cannot drift from what works. A run
killed with SIGKILL in the middle of an extract, then rerun, gives what an uninterrupted run
gives: every row once and the cursor at the largest value read.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from conftest import BIN, REPO, millpond, postgres_execute

pytestmark = pytest.mark.e2e


def doc_example(kind: str) -> dict[str, Any]:
    """The first ```yaml block under `## <kind>` in docs/sources.md."""
    text = (REPO / "docs" / "sources.md").read_text()
    section = text.split(f"\n## {kind}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block, f"no yaml example under ## {kind}"
    return yaml.safe_load(block.group(1))


SETUP = [
    "create table customers (id integer primary key, name text)",
    "insert into customers values (1, 'Ada'), (2, 'Bob'), (3, 'Cy')",
    "create table invoices (id integer primary key, customer_id integer, amount numeric(12, 2), "
    "updated_at timestamptz)",
    "insert into invoices values (1, 1, 100.00, '2026-01-01 10:00+00'), "
    "(2, 1, 50.00, '2026-01-01 11:00+00'), (3, 2, 75.50, '2026-01-02 09:00+00')",
    "create table orders (id integer primary key, amount numeric(12, 2), placed_at timestamp)",
    "insert into orders select g, 500 + g, '2026-01-01'::timestamp + g * interval '1 minute' "
    "from generate_series(1, 1000) g",
]


@pytest.fixture
def billing(tmp_path: Path, machine_pg: str) -> Path:
    postgres_execute(machine_pg, *SETUP)
    root = tmp_path / "billing"
    shutil.copytree(REPO / "tests" / "fixtures" / "billing_dbt", root / "dbt")
    config = {"project": "billing", "dbt": {"project_dir": "dbt"}, **doc_example("sql")}
    (root / "millpond.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    yield root
    millpond(root, "down")


def published(project: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(
        str(project / ".millpond" / "published" / "current"), read_only=True
    ) as con:
        return con.execute(sql).fetchall()


def test_the_documented_sql_source_runs_incrementally_end_to_end(
    billing: Path, machine_pg: str, prefect_api: str
) -> None:
    env = {"BILLING_URL": machine_pg}
    first = millpond(billing, "run", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    query = "select customer_name, invoice_count, revenue from main.revenue_by_customer order by 1"
    assert [(n, c, float(r or 0)) for n, c, r in published(billing, query)] == [
        ("Ada", 2, 150.0),
        ("Bob", 1, 75.5),
        ("Cy", 0, 0.0),
    ]

    postgres_execute(
        machine_pg,
        "update invoices set amount = 60.00, updated_at = '2026-01-03 08:00+00' where id = 2",
        "insert into invoices values (4, 3, 10.00, '2026-01-03 09:00+00')",
        "insert into customers values (4, 'Dee')",
    )
    second = millpond(billing, "run", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert [(n, c, float(r or 0)) for n, c, r in published(billing, query)] == [
        ("Ada", 2, 160.0),
        ("Bob", 1, 75.5),
        ("Cy", 1, 10.0),
        ("Dee", 0, 0.0),
    ]
    with duckdb.connect(str(billing / ".millpond" / "warehouse.duckdb"), read_only=True) as con:
        history = con.execute("select count(*) from raw.billing__invoices").fetchone()
        big = con.execute("select count(*), max(id) from raw.billing__big_orders").fetchone()
    # 3 rows, then row 2's new version and row 4, plus row 3 re-read inside the 1 h look-back.
    assert history == (6,)
    assert big == (500, 1000)


def test_a_run_killed_during_an_extract_then_rerun_lands_every_row_once(
    billing: Path, machine_pg: str, prefect_api: str
) -> None:
    postgres_execute(
        machine_pg,
        "insert into orders select g, 500 + g, '2026-02-01'::timestamp + g * interval '1 second' "
        "from generate_series(1001, 400000) g",
    )
    config = yaml.safe_load((billing / "millpond.yml").read_text())
    config["sources"]["billing"]["chunk_rows"] = 1000  # a slow, many-batch extract to kill
    (billing / "millpond.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "BILLING_URL": machine_pg}
    lake = billing / ".millpond" / "lake" / "raw" / "billing" / "big_orders"
    run = subprocess.Popen(
        [str(BIN / "millpond"), "run"],
        cwd=billing,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    # Parts are written under a hidden name until the partition is complete (ingest.staging).
    while not list(lake.rglob(".part-*.parquet.tmp")) and time.monotonic() < deadline:
        assert run.poll() is None, "the run ended before its extract could be killed"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not list(lake.rglob("_manifest.json")), "killed mid-extract: no partition may exist"
    assert not list(lake.rglob("part-*.parquet")), "killed mid-extract: no part may be readable"

    rerun = millpond(billing, "run", env={"BILLING_URL": machine_pg})
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    with duckdb.connect(str(billing / ".millpond" / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select count(*), count(distinct id), max(id) from raw.billing__big_orders"
        ).fetchone()
    assert rows == (399_500, 399_500, 400_000)
    manifests = [p.read_text() for p in lake.rglob("_manifest.json")]
    assert len(manifests) == 1 and '"cursor": 400000' in manifests[0]
