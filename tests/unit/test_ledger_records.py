"""Each ledger write is one record class: made, buffered as a JSON line and read back as the
same record by its kind's name, whatever writes it; a bad value is refused when the record is
made. A buffer line written before records had classes reads back the same way."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from millpond.metadata.buffer import RecordBuffer
from millpond.metadata.ledger import Ledger
from millpond.metadata.records import (
    AnomalyFound,
    DataTestResults,
    Fingerprints,
    LakeAction,
    LeaseClaimed,
    LeaseHeartbeat,
    LedgerRecord,
    NodeFinished,
    NodeStarted,
    NodeWarned,
    PartitionLanded,
    PartitionLoaded,
    QueuedRunFailed,
    Rejection,
    RowCounts,
    RunAbandoned,
    RunFinished,
    RunNotified,
    RunQueued,
    RunStarted,
    SourceState,
)

AT = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)

# One record of every kind: a new kind that is not here fails the coverage test below.
SAMPLES: list[LedgerRecord] = [
    RunQueued("r1", "prefect", "api", "duckdb", "flow-1", at=AT),
    RunStarted("r1", "prefect", "manual", "duckdb", at=AT),
    RunFinished("r1", "success", summary={"nodes": {"load.a.b": "success"}, "rows": 3}, at=AT),
    LeaseClaimed("r1", "host-1", 4242, at=AT),
    RunAbandoned("r1", "abandoned: its process died", at=AT),
    QueuedRunFailed("r1", "the run process exited with 2", at=AT),
    NodeStarted("r1", "load.a.b", "load", 1, at=AT),
    NodeFinished("r1", "load.a.b", 1, "success", 12, rows=3, bytes=300, at=AT),
    NodeWarned("r1", "extract.a.b", ["the cursor of a.b has not moved for 3 runs"], at=AT),
    RunNotified("r1", [{"url": "https://hooks.example/***", "status": 200}]),
    RowCounts("r1", {"raw.a__b": 3}, at=AT),
    DataTestResults("r1", "dbt.m", [{"test": "t", "status": "pass", "failures": 0}], at=AT),
    Fingerprints("r1", {"dbt.m": ("abc", 3), "publish": ("def", None)}, at=AT),
    PartitionLanded("a", "b", "a/b/p1", "sha", 3, 300, AT, "r1"),
    PartitionLoaded("a/b/p1", AT),
    SourceState("a", "b", {"updated_at": "2026-03-01", "id": 7}, at=AT),
    LakeAction("drop", "a/b/p1", "a", "b", 3, {"doctor": True}, action_id="x1", at=AT),
    Rejection("r1", "a", "b", "bad.csv", "fp", "not a CSV", at=AT),
    AnomalyFound(
        "r1",
        "volume",
        "source_table",
        "a.b",
        "warn",
        "a.b landed 3 rows",
        observed=3,
        low=80.0,
        high=120.0,
        median=100.0,
        mad=4.0,
        history=7,
        at=AT,
    ),
    AnomalyFound(
        None,
        "freshness",
        "source_table",
        "a.b",
        "error",
        "a.b: no new landing for 2d",
        last_landed_at=AT,
        expect_every_seconds=86400.0,
        at=AT,
    ),
]


def test_every_record_kind_has_a_sample() -> None:
    kinds = {type(record) for record in SAMPLES} | {LeaseHeartbeat}
    assert {k.op for k in kinds} == set(LedgerRecord._kinds)


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_a_buffered_record_reads_back_as_the_same_record(record: LedgerRecord, tmp_path) -> None:
    buffer = RecordBuffer(tmp_path / "buffer.jsonl")
    buffer.append(record)
    line = json.loads(buffer.path.read_text())
    assert line["op"] == record.op and set(line["args"]) == set(record.args())
    replayed: list[LedgerRecord] = []
    assert buffer.replay(replayed.append, (), ()) == (1, None)
    assert replayed == [record]
    assert not buffer.path.exists()


def test_a_line_written_before_records_had_classes_reads_back(tmp_path: Path) -> None:
    old = {
        "op": "node_finished",
        "args": {
            "run_id": "r1",
            "node_id": "dbt.m",
            "attempt": 2,
            "status": "failed",
            "duration_ms": 40,
            "rows": None,
            "bytes": None,
            "error": "boom",
            "at": {"$datetime": AT.isoformat()},
        },
        "buffered_at": {"$datetime": AT.isoformat()},
        "pid": 1,
    }
    path = tmp_path / "buffer.jsonl"
    path.write_text(json.dumps(old) + "\n")
    replayed: list[LedgerRecord] = []
    RecordBuffer(path).replay(replayed.append, (), ())
    assert replayed == [NodeFinished("r1", "dbt.m", 2, "failed", 40, error="boom", at=AT)]


@pytest.mark.parametrize(
    "make",
    [
        lambda: RunFinished("r1", "done"),
        lambda: NodeFinished("r1", "n", 1, "running", 1),
        lambda: DataTestResults("r1", "n", [{"test": "t", "status": "ok"}]),
        lambda: LakeAction("burn", "p", "a", "b"),
        lambda: Rejection("r1", "a", "b", "f", "fp", "why", outcome="lost"),
        lambda: AnomalyFound("r1", "size", "source_table", "a.b", "warn", "m"),
        lambda: AnomalyFound("r1", "volume", "table", "a.b", "warn", "m"),
        lambda: AnomalyFound("r1", "volume", "mart", "main.m", "fatal", "m"),
    ],
)
def test_a_value_outside_its_set_is_refused_when_the_record_is_made(make) -> None:
    with pytest.raises(ValueError, match="must be one of"):
        make()


def test_records_are_frozen_and_normalised() -> None:
    record = NodeFinished("r1", "n", 1, "success", 12.7)  # type: ignore[arg-type]
    assert record.duration_ms == 12
    with pytest.raises(AttributeError):
        record.status = "failed"  # type: ignore[misc]
    tests = DataTestResults("r1", "n", [{"test": 5, "status": "pass", "extra": 1}])
    assert tests.results == [{"test": "5", "status": "pass", "failures": None, "message": None}]
    assert LakeAction("drop", "p", "a", "b").detail == {}
    assert (
        LakeAction("drop", "p", "a", "b").action_id != LakeAction("drop", "p", "a", "b").action_id
    )


def test_a_heartbeat_is_never_buffered(tmp_path: Path) -> None:
    ledger = Ledger("postgresql://nobody@127.0.0.1:1/none", tmp_path / "b.jsonl")
    with pytest.raises(TypeError, match="never buffered"):
        ledger.write(LeaseHeartbeat("r1"))


def test_an_empty_many_row_record_writes_nothing(tmp_path: Path) -> None:
    ledger = Ledger("postgresql://nobody@127.0.0.1:1/none", tmp_path / "b.jsonl")
    for empty in (RowCounts("r1", {}), DataTestResults("r1", "n", []), Fingerprints("r1", {})):
        assert ledger.write(empty) is True
    assert not (tmp_path / "b.jsonl").exists()
