"""Run logs: JSON lines per run, every record bound to run and node, secrets masked."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from millpond.core.logs import close_run_log, logger, node_context, open_run_log
from millpond.core.masking import mask, register_secrets

SECRET = "s3cr3tvalue"


@pytest.fixture
def run_log(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    run_id = f"run-{tmp_path.name}"
    path = open_run_log(tmp_path / "logs", run_id)
    yield run_id, path
    close_run_log(run_id)


def records(path: Path, run_id: str) -> list[dict]:
    close_run_log(run_id)  # flushes
    return [json.loads(line)["record"] for line in path.read_text().splitlines()]


def test_registered_secret_is_masked_in_the_run_log(run_log):
    run_id, path = run_log
    register_secrets([SECRET])

    with node_context(run_id, "extract.erp.orders"):
        logger.info(f"connecting with password {SECRET} to the lake")

    text = path.read_text()
    assert SECRET not in text
    (record,) = records(path, run_id)
    assert record["message"] == "connecting with password *** to the lake"


def test_secret_in_an_exception_is_not_written_to_the_run_log(run_log):
    run_id, path = run_log
    register_secrets([SECRET])

    with node_context(run_id, "load.erp.orders"):
        try:
            raise RuntimeError(f"login failed for key {SECRET}")
        except RuntimeError:
            logger.exception("load failed")

    assert SECRET not in path.read_text()
    assert "load failed" in path.read_text()


def test_every_record_carries_run_id_and_node_id(run_log):
    run_id, path = run_log

    with node_context(run_id):
        logger.info("run started")
        with node_context(run_id, "dbt.fct_orders"):
            logger.warning("model built")
        logger.info("run finished")

    found = [
        (r["extra"]["run_id"], r["extra"]["node_id"], r["message"]) for r in records(path, run_id)
    ]
    assert found == [
        (run_id, "-", "run started"),
        (run_id, "dbt.fct_orders", "model built"),
        (run_id, "-", "run finished"),
    ]


def test_the_run_log_holds_only_its_own_run(tmp_path):
    a = open_run_log(tmp_path, "run-a")
    b = open_run_log(tmp_path, "run-b")
    try:
        with node_context("run-a", "extract.x.y"):
            logger.info("from a")
        with node_context("run-b", "extract.x.y"):
            logger.info("from b")
        logger.info("from nowhere")
    finally:
        close_run_log("run-a")
        close_run_log("run-b")

    assert [r["message"] for r in records(a, "run-a")] == ["from a"]
    assert [r["message"] for r in records(b, "run-b")] == ["from b"]


def test_node_context_follows_each_thread(run_log):
    run_id, path = run_log

    def work(node_id: str) -> None:
        with node_context(run_id, node_id):
            for i in range(5):
                logger.info(f"{node_id} step {i}")

    threads = [threading.Thread(target=work, args=(f"load.erp.t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    found = records(path, run_id)
    assert len(found) == 20
    assert all(r["message"].startswith(r["extra"]["node_id"]) for r in found)


def test_opening_the_same_run_log_twice_writes_each_record_once(tmp_path):
    path = open_run_log(tmp_path, "run-twice")
    assert open_run_log(tmp_path, "run-twice") == path
    with node_context("run-twice", "publish"):
        logger.info("once")

    assert [r["message"] for r in records(path, "run-twice")] == ["once"]


def test_mask_replaces_longer_secrets_first():
    register_secrets(["abcd", "abcdefgh", "xy"])

    assert mask("token=abcdefgh key=abcd short=xy") == "token=*** key=*** short=xy"
