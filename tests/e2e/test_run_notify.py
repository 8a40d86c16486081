"""A webhook tells the run the ledger tells: the same rows and the same duration, for a run
that loads data and for a nothing-new run (TPC-H 0.01, a real receiver on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import millpond
from webhook_receiver import Receiver

from millpond.metadata import queries
from millpond.metadata.db import connect

pytestmark = pytest.mark.e2e


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_webhook_rows_and_duration_are_the_ledgers(
    project: Path, machine_pg: str, receiver: Receiver, prefect_api: str
) -> None:
    with (project / "millpond.yml").open("a") as config:
        config.write(f"\nnotify:\n  - {{on: [success, failure], webhook: '{receiver.url}'}}\n")
    env = {"MILLPOND_METADATA_URL": machine_pg}
    for _ in range(2):  # the second run has nothing new
        result = millpond(project, "run", env=env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert len(receiver.bodies) == 2
    with connect(machine_pg) as conn:
        served = [queries.get_run(conn, body["run_id"]) for body in receiver.bodies]
    for body, run in zip(receiver.bodies, served, strict=True):
        assert run is not None
        assert body["rows"] == run["summary"]["rows"]
        assert body["duration_ms"] == run["duration_ms"]
        assert body["duration_seconds"] == round(run["duration_ms"] / 1000, 1)
    loaded, nothing_new = receiver.bodies
    assert loaded["rows"] > 0
    assert set(nothing_new_nodes(served[1])) == {"unchanged"}
    assert nothing_new["rows"] == 0  # no node's unchanged rows are counted as this run's
    status = millpond(project, "status", nothing_new["run_id"], env=env)
    assert "0 rows loaded" in status.stdout, status.stdout


def nothing_new_nodes(run: dict) -> list[str]:
    return list(run["summary"]["nodes"].values())
