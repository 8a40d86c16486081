"""The monitors against a real PostgreSQL ledger whose history is seeded through the record
classes: volume anomalies of a source table's landing and of a mart, freshness alerts (also
through `millpond check-freshness` to a real webhook receiver on 127.0.0.1), off switches,
severity error, and what `/anomalies` serves."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import millpond
from serve_helpers import api_over
from webhook_receiver import Receiver

from millpond.core.config import config_model
from millpond.metadata import queries
from millpond.metadata.db import connect, migrate
from millpond.metadata.ledger import Ledger
from millpond.metadata.records import (
    NodeFinished,
    NodeStarted,
    PartitionLanded,
    RowCounts,
    RunFinished,
    RunStarted,
)
from millpond.nodes.monitors.freshness import check_freshness
from millpond.nodes.monitors.volume import VolumeAnomaly, check_landing, check_marts
from millpond.runtime.execute import NodeOutcome

pytestmark = pytest.mark.integration

USUAL = [1000, 1040, 980, 1010, 995, 1020, 990]
NOW = datetime.now(UTC)


@pytest.fixture
def ledger(machine_pg: str, tmp_path: Path) -> Iterator[Ledger]:
    migrate(machine_pg)
    with Ledger(machine_pg, tmp_path / "buffer.jsonl") as instance:
        yield instance


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def config(tmp_path: Path, monitors: dict[str, Any] | None = None, **table: Any) -> Any:
    (tmp_path / "inbox").mkdir(exist_ok=True)
    return config_model()(
        root=tmp_path,
        sources={"shop": {"kind": "files", "path": "inbox", "tables": {"orders": table}}},
        monitors=monitors or {},
    )


def seed_runs(
    ledger: Ledger,
    landed: list[int],
    *,
    marts: dict[str, list[int]] | None = None,
    status: str = "success",
    days_ago: float = 30,
) -> list[str]:
    """One successful run per count, oldest first, each landing that many orders rows (and
    publishing the marts' counts); returns their run ids."""
    ids = []
    for i, rows in enumerate(landed):
        run_id = f"seed-{uuid.uuid4().hex[:8]}"
        at = NOW - timedelta(days=days_ago) + timedelta(hours=i)
        ledger.write(RunStarted(run_id, "prefect", "schedule", "duckdb", at=at))
        ledger.write(
            PartitionLanded("shop", "orders", f"p-{run_id}", "sha", rows, rows * 10, at, run_id)
        )
        counts = {relation: values[i] for relation, values in (marts or {}).items()}
        if counts:
            ledger.write(RowCounts(run_id, counts, at=at))
            ledger.write(NodeStarted(run_id, "publish", "publish", 1, at=at))
            ledger.write(NodeFinished(run_id, "publish", 1, "success", 5, at=at))
        ledger.write(RunFinished(run_id, status, at=at + timedelta(minutes=1)))
        ids.append(run_id)
    return ids


def scope(cfg: Any, ledger: Ledger, run_id: str | None = None) -> Any:
    run_id = run_id or f"now-{uuid.uuid4().hex[:8]}"
    ledger.write(RunStarted(run_id, "prefect", "manual", "duckdb"))
    return SimpleNamespace(config=cfg, ledger=ledger, run_id=run_id)


def test_a_tenth_of_the_usual_rows_is_a_volume_anomaly_and_the_usual_is_not(
    tmp_path: Path, ledger: Ledger, machine_pg: str
) -> None:
    seed_runs(ledger, USUAL)
    cfg = config(tmp_path)
    normal, report = scope(cfg, ledger), NodeOutcome("extract.shop.orders", "running")
    assert check_landing(normal, "shop", "orders", 1003, report) is None
    assert report.detail == {}
    tenth, report = scope(cfg, ledger), NodeOutcome("extract.shop.orders", "running")
    found = check_landing(tenth, "shop", "orders", 100, report)
    assert found is not None and found.severity == "warn"
    assert "shop.orders landed 100 rows" in found.message
    assert "median of 1,000" in found.message
    assert report.detail["anomalies"][0]["subject"] == "shop.orders"
    assert any("volume anomaly" in w for w in report.detail["warnings"])
    with connect(machine_pg) as conn:
        assert queries.anomalies(conn, run_id=normal.run_id) == []
        (row,) = queries.anomalies(conn, run_id=tenth.run_id)
    assert (row["monitor"], row["subject_kind"], row["observed"]) == ("volume", "source_table", 100)
    assert row["low"] <= 1000 <= row["high"] and row["history"] == 7 and row["median"] == 1000


def test_only_successful_runs_are_history(tmp_path: Path, ledger: Ledger) -> None:
    """Failed runs (a tenth landed, the run red) neither count nor make history."""
    seed_runs(ledger, USUAL[:4])
    seed_runs(ledger, [100] * 6, status="failed", days_ago=10)
    report = NodeOutcome("extract.shop.orders", "running")
    assert check_landing(scope(config(tmp_path), ledger), "shop", "orders", 100, report) is None
    seed_runs(ledger, USUAL[4:], days_ago=5)  # now 7 successful runs of ~1000
    assert check_landing(scope(config(tmp_path), ledger), "shop", "orders", 100, report)


def test_empty_landings_are_no_history(tmp_path: Path, ledger: Ledger) -> None:
    """An incremental table's empty partition (changed keys) is not a landing of rows."""
    seed_runs(ledger, USUAL[:5])
    seed_runs(ledger, [0] * 9, days_ago=10)  # the newest: as zeros they would set the band
    report = NodeOutcome("extract.shop.orders", "running")
    assert check_landing(scope(config(tmp_path), ledger), "shop", "orders", 1000, report) is None
    assert check_landing(scope(config(tmp_path), ledger), "shop", "orders", 100, report)


def test_off_switches(tmp_path: Path, ledger: Ledger, machine_pg: str) -> None:
    seed_runs(ledger, USUAL)
    off = [
        config(tmp_path, {"volume": {"enabled": False}}),
        config(tmp_path, volume=False),
        config(tmp_path, volume={"enabled": False}),
    ]
    for cfg in off:
        run = scope(cfg, ledger)
        report = NodeOutcome("extract.shop.orders", "running")
        assert check_landing(run, "shop", "orders", 100, report) is None
        with connect(machine_pg) as conn:
            assert queries.anomalies(conn, run_id=run.run_id) == []


def test_severity_error_records_the_anomaly_and_fails_the_node(
    tmp_path: Path, ledger: Ledger, machine_pg: str
) -> None:
    seed_runs(ledger, USUAL)
    run = scope(config(tmp_path, volume={"severity": "error"}), ledger)
    report = NodeOutcome("extract.shop.orders", "running")
    with pytest.raises(VolumeAnomaly, match=r"shop\.orders landed 100 rows") as caught:
        check_landing(run, "shop", "orders", 100, report)
    assert caught.value.retryable is False  # the same history, the same verdict
    with connect(machine_pg) as conn:
        (row,) = queries.anomalies(conn, run_id=run.run_id)
    assert row["severity"] == "error"


def test_a_mart_is_judged_against_the_runs_that_published(
    tmp_path: Path, ledger: Ledger, machine_pg: str
) -> None:
    seed_runs(ledger, USUAL, marts={"main.fct_orders": USUAL, "raw.shop__orders": USUAL})
    cfg = config(tmp_path, {"volume": {"relations": {"agg_quiet": False}}})
    run = scope(cfg, ledger)
    ledger.write(
        RowCounts(
            run.run_id,
            {"main.fct_orders": 90, "raw.shop__orders": 1, "main.agg_quiet": 1},
        )
    )
    report = NodeOutcome("publish", "running")
    found = check_marts(run, ("main",), "publish", report)
    assert [a.subject for a in found] == ["main.fct_orders"]  # raw is not published
    assert found[0].subject_kind == "mart" and "has 90 rows" in found[0].message
    strict = config(tmp_path, {"volume": {"relations": {"fct_orders": {"severity": "error"}}}})
    blocked = scope(strict, ledger)
    ledger.write(RowCounts(blocked.run_id, {"main.fct_orders": 90}))
    with pytest.raises(VolumeAnomaly, match="not published"):
        check_marts(blocked, ("main",), "publish", NodeOutcome("publish", "running"))
    fine = scope(cfg, ledger)
    ledger.write(RowCounts(fine.run_id, {"main.fct_orders": 1001}))
    assert check_marts(fine, ("main",), "publish", NodeOutcome("publish", "running")) == []
    no_marts = config(tmp_path, {"volume": {"marts": False}})
    assert check_marts(scope(no_marts, ledger, run.run_id), ("main",), "publish", report) == []


def test_a_table_with_no_landing_past_expect_every_is_stale(
    tmp_path: Path, ledger: Ledger, machine_pg: str
) -> None:
    seed_runs(ledger, USUAL, days_ago=3)  # last landing: 3 days ago (+6 hours)
    stale = check_freshness(config(tmp_path, expect_every="1d"), ledger, "run-1")
    assert [a.subject for a in stale] == ["shop.orders"]
    assert "no new landing for 2d" in stale[0].message and stale[0].run_id == "run-1"
    assert check_freshness(config(tmp_path, expect_every="4d"), ledger, "run-2") == []
    every = config(tmp_path, {"freshness": {"expect_every": "12h"}})
    assert len(check_freshness(every, ledger, "run-3")) == 1  # the monitors' default cadence
    quiet = [
        config(tmp_path, {"freshness": {"enabled": False}}, expect_every="1d"),
        config(tmp_path, {"freshness": {"expect_every": "12h"}}, expect_every=False),
        config(tmp_path),  # no cadence anywhere: nothing to check
    ]
    for cfg in quiet:
        assert check_freshness(cfg, ledger, "run-4") == []
    with connect(machine_pg) as conn:
        assert [a["run_id"] for a in queries.anomalies(conn, monitor="freshness")] == [
            "run-3",
            "run-1",
        ]


def test_a_table_that_never_landed_is_measured_from_its_first_attempt(
    tmp_path: Path, ledger: Ledger
) -> None:
    cfg = config(tmp_path, expect_every="1d")
    assert check_freshness(cfg, ledger, "run-0") == []  # never run: nothing to measure from
    ledger.write(RunStarted("old", "prefect", "schedule", "duckdb", at=NOW - timedelta(days=2)))
    ledger.write(
        NodeStarted("old", "extract.shop.orders", "extract", 1, at=NOW - timedelta(days=2))
    )
    (alert,) = check_freshness(cfg, ledger, "run-1")
    assert "never landed" in alert.message and alert.last_landed_at is None


def test_check_freshness_alerts_the_webhook_and_records_without_a_run(
    tmp_path: Path, ledger: Ledger, machine_pg: str, receiver: Receiver
) -> None:
    seed_runs(ledger, USUAL, days_ago=3)
    project = tmp_path / "project"
    (project / "inbox").mkdir(parents=True)
    (project / "millpond.yml").write_text(
        "sources:\n"
        "  shop: {kind: files, path: inbox, tables: {orders: {expect_every: 1d}}}\n"
        "notify:\n  - {on: [freshness], webhook: '${HOOK}'}\n"
        "  - {on: [failure], webhook: '${HOOK}/failures-only'}\n"
    )
    env = {"MILLPOND_METADATA__URL": machine_pg, "HOOK": receiver.url}
    result = millpond(project, "check-freshness", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "shop.orders: no new landing for 2d" in result.stdout
    (body,) = receiver.bodies  # the failure-only webhook is not told
    assert body["run_id"] is None and body["status"] == "alert"
    assert body["events"] == ["freshness"]
    (alert,) = body["anomalies"]
    assert alert["monitor"] == "freshness" and alert["subject"] == "shop.orders"
    with connect(machine_pg) as conn:
        (row,) = queries.anomalies(conn, monitor="freshness")
    assert row["run_id"] is None and row["expect_every_seconds"] == 86400

    fresh = project / "millpond.yml"
    fresh.write_text(fresh.read_text().replace("expect_every: 1d", "expect_every: 7d"))
    result = millpond(project, "check-freshness", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all fresh" in result.stdout and len(receiver.bodies) == 1


def test_check_freshness_with_a_bad_cadence_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "millpond.yml").write_text(
        "sources:\n  shop: {kind: files, path: inbox, tables: {orders: {expect_every: daily}}}\n"
    )
    result = millpond(tmp_path, "check-freshness")
    assert result.returncode == 2
    assert "sources.shop.tables.orders.expect_every" in result.stdout + result.stderr
    assert not (tmp_path / ".millpond").exists()  # refused before anything was written


def test_the_api_serves_the_anomalies(
    tmp_path: Path, ledger: Ledger, machine_pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_runs(ledger, USUAL)
    run = scope(config(tmp_path), ledger)
    check_landing(run, "shop", "orders", 100, NodeOutcome("extract.shop.orders", "running"))
    check_freshness(config(tmp_path, expect_every="1d"), ledger, None)
    folder = tmp_path / "api"
    folder.mkdir()
    with api_over(machine_pg, folder, monkeypatch) as client:
        everything = client.get("/anomalies").json()
        assert {(a["monitor"], a["run_id"]) for a in everything} == {
            ("volume", run.run_id),
            ("freshness", None),
        }
        (volume,) = client.get("/anomalies", params={"run_id": run.run_id}).json()
        assert volume["observed"] == 100 and volume["subject"] == "shop.orders"
        assert client.get("/anomalies", params={"monitor": "size"}).status_code == 422
        detail = client.get(f"/runs/{run.run_id}").json()
        assert [a["subject"] for a in detail["anomalies"]] == ["shop.orders"]
        page = client.get("/")
        assert page.status_code == 200 and "2 in the last 7 days" in page.text


@pytest.mark.parametrize("severity", ["warn", "error"])
def test_a_run_closing_with_a_stale_table_alerts_and_fails_at_error(
    tmp_path: Path, ledger: Ledger, machine_pg: str, receiver: Receiver, severity: str
) -> None:
    """The run's close checks freshness (here every node succeeded): `warn` keeps the run
    green, `error` fails it naming the table; the webhook gets the alert either way."""
    from millpond.runtime.context import RunContext
    from millpond.runtime.execute import finish_run

    seed_runs(ledger, USUAL, days_ago=3)
    (tmp_path / "inbox").mkdir()
    cfg = config_model()(
        root=tmp_path,
        metadata={"url": machine_pg},
        sources={"shop": {"kind": "files", "path": "inbox", "tables": {"orders": {}}}},
        monitors={"freshness": {"expect_every": "1d", "severity": severity}},
        notify=[{"on": ["freshness", "failure"], "webhook": receiver.url}],
    )
    run_id = f"close-{severity}"
    ctx = RunContext(cfg, run_id, orchestrator="cli", sources_only=True)
    ledger.write(RunStarted(run_id, "cli", "manual", "duckdb"))
    for node in ctx.graph.nodes:
        ctx.outcomes[node.id] = NodeOutcome(node.id, "success")
    status = finish_run(ctx)
    ctx.close()
    ctx.ledger.close()
    with connect(machine_pg) as conn:
        run = queries.get_run(conn, run_id)
        (alert,) = queries.anomalies(conn, run_id=run_id)
    assert run is not None and alert["severity"] == severity
    (posted,) = receiver.for_run(run_id)
    if severity == "warn":
        assert status == "success" and run["error"] is None
        assert posted["events"] == ["freshness"]
    else:
        assert status == "failed" and "freshness: shop.orders: no new landing" in run["error"]
        assert sorted(posted["events"]) == ["failure", "freshness"]
    assert run["summary"]["anomalies"][0]["subject"] == "shop.orders"
