"""Monitors in real runs (the acme project, a real PostgreSQL ledger, a real webhook receiver on
127.0.0.1): with a history of normal landings, a normal run raises nothing, a run whose orders
file has a tenth of the usual rows raises a volume anomaly (recorded, in `millpond status`,
posted), a nothing-new run past `expect_every` raises a freshness alert (posted), and at
`severity: error` the tenth blocks publish."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from conftest import millpond, write_acme_project
from webhook_receiver import Receiver

from millpond.metadata import queries
from millpond.metadata.db import connect, migrate
from millpond.metadata.ledger import Ledger
from millpond.metadata.records import PartitionLanded, RunFinished, RunStarted

pytestmark = pytest.mark.e2e

USUAL = [1000, 1040, 980, 1010, 995, 1020]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def orders_file(path: Path, rows: int, first_id: int) -> None:
    pick = random.Random(first_id)
    lines = ["order_id,country,amount"] + [
        f"{first_id + i},{pick.choice(['DE', 'FR', 'NL'])},{pick.randint(100, 9999) / 100}"
        for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")


def project(tmp_path: Path, receiver: Receiver, volume: str = "") -> Path:
    root = write_acme_project(
        tmp_path / "acme",
        "notify:\n  - {on: [anomaly, freshness], webhook: '${HOOK}'}\n"
        + (f"monitors: {{volume: {volume}}}\n" if volume else ""),
    )
    config = root / "millpond.yml"
    config.write_text(
        config.read_text().replace("tables: [orders]", "tables: {orders: {expect_every: 1d}}")
    )
    orders_file(root / "inbox" / "shop" / "orders.csv", 1000, 1)
    return root


def seed_history(url: str, folder: Path) -> None:
    """Six earlier successful runs that landed about 1,000 orders each, days ago."""
    migrate(url)
    start = datetime.now(UTC) - timedelta(days=10)
    with Ledger(url, folder / "seed-buffer.jsonl") as ledger:
        for i, rows in enumerate(USUAL):
            run_id, at = f"seed-{uuid.uuid4().hex[:8]}", start + timedelta(days=i)
            ledger.write(RunStarted(run_id, "prefect", "schedule", "duckdb", at=at))
            ledger.write(
                PartitionLanded("shop", "orders", f"seed-{i}", "sha", rows, rows * 20, at, run_id)
            )
            ledger.write(RunFinished(run_id, "success", at=at + timedelta(minutes=1)))


def run(root: Path, env: dict[str, str], code: int = 0) -> str:
    result = millpond(root, "run", env=env)
    assert result.returncode == code, result.stdout[-3000:] + result.stderr[-3000:]
    with connect(env["MILLPOND_METADATA__URL"]) as conn:
        return str(queries.list_runs(conn, 1)[0]["run_id"])


def test_a_tenth_of_the_usual_orders_is_an_anomaly_and_a_stale_table_alerts(
    tmp_path: Path, machine_pg: str, receiver: Receiver, prefect_api: str
) -> None:
    root = project(tmp_path, receiver)
    seed_history(machine_pg, tmp_path)
    env = {"MILLPOND_METADATA__URL": machine_pg, "HOOK": receiver.url}

    normal = run(root, env)  # 1,000 orders, as usual
    with connect(machine_pg) as conn:
        assert queries.anomalies(conn, run_id=normal) == []
    assert receiver.bodies == []  # nothing to say: the hook asked for anomalies only

    orders_file(root / "inbox" / "shop" / "orders_2.csv", 100, 5000)  # a tenth
    tenth = run(root, env)  # a warning: the run succeeds and publishes
    with connect(machine_pg) as conn:
        (anomaly,) = queries.anomalies(conn, run_id=tenth)
        summary = queries.get_run(conn, tenth)["summary"]  # type: ignore[index]
    assert (anomaly["monitor"], anomaly["subject"], anomaly["observed"]) == (
        "volume",
        "shop.orders",
        100,
    )
    assert summary["anomalies"][0]["subject"] == "shop.orders"
    (posted,) = receiver.for_run(tenth)
    assert posted["events"] == ["anomaly"] and posted["status"] == "success"
    assert "shop.orders landed 100 rows" in posted["anomalies"][0]["message"]
    status = millpond(root, "status", tenth, env=env)
    assert "volume warn: shop.orders landed 100 rows" in " ".join(status.stdout.split())

    # Nothing new arrives; the last landing is made two days old: the next run is stale.
    with psycopg.connect(machine_pg, autocommit=True) as conn:
        conn.execute("UPDATE millpond.partitions SET landed_at = landed_at - interval '2 days'")
    stale = run(root, env)
    with connect(machine_pg) as conn:
        (alert,) = queries.anomalies(conn, run_id=stale)
        nodes = queries.get_run(conn, stale)["summary"]["nodes"]  # type: ignore[index]
    assert set(nodes.values()) == {"unchanged"}  # a nothing-new run, settled without Prefect
    assert alert["monitor"] == "freshness" and alert["subject"] == "shop.orders"
    (posted,) = receiver.for_run(stale)
    assert posted["events"] == ["freshness"]
    assert "no new landing for 2d" in posted["anomalies"][0]["message"]


def test_a_tenth_at_severity_error_blocks_publish(
    tmp_path: Path, machine_pg: str, receiver: Receiver, prefect_api: str
) -> None:
    root = project(tmp_path, receiver, volume="{severity: error}")
    seed_history(machine_pg, tmp_path)
    env = {"MILLPOND_METADATA__URL": machine_pg, "HOOK": receiver.url}
    (root / "inbox" / "shop" / "orders.csv").unlink()
    orders_file(root / "inbox" / "shop" / "orders_1.csv", 100, 1)
    failed = run(root, env, code=1)
    with connect(machine_pg) as conn:
        nodes = {n["node_id"]: n for n in queries.run_nodes(conn, failed)}
        (anomaly,) = queries.anomalies(conn, run_id=failed)
    assert nodes["extract.shop.orders"]["status"] == "failed"
    assert "volume anomaly" in nodes["extract.shop.orders"]["error"]
    assert nodes["extract.shop.orders"]["attempt"] == 1  # not retried: same data, same verdict
    assert nodes["publish"]["status"] == "skipped"
    assert anomaly["severity"] == "error"
    assert not (root / ".millpond" / "published" / "current").exists()
    (posted,) = receiver.for_run(failed)
    assert posted["events"] == ["anomaly"] and posted["status"] == "failed"
