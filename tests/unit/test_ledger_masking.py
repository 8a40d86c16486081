"""Whoever writes a record, the ledger masks registered secrets in its free-text fields (an
error quoting a connection string, a test's message quoting compiled SQL) before the database
or the local buffer sees them; identifiers (node ids) are kept as they are."""

from __future__ import annotations

import socket
from pathlib import Path

from millpond.core.masking import register_secrets
from millpond.metadata.ledger import Ledger
from millpond.metadata.records import DataTestResults, NodeFinished, RunFinished

SECRET = "ledger-pw-6a1f0e"


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/nowhere"


def test_buffered_records_hold_no_registered_secret(tmp_path: Path) -> None:
    register_secrets([SECRET])
    buffer = tmp_path / "ledger-buffer.jsonl"
    with Ledger(closed_port_url(), buffer, connect_timeout=1) as ledger:
        ledger.write(
            NodeFinished(
                "r1", "extract.db.t", 1, "failed", 5, error=f"cannot connect: password={SECRET}"
            )
        )
        ledger.write(
            DataTestResults("r1", "dbt.m", [{"test": "t", "status": "fail", "message": SECRET}])
        )
        ledger.write(RunFinished("r1", "failed", error=f"db: {SECRET}", summary={"error": SECRET}))

    text = buffer.read_text()
    assert SECRET not in text
    assert text.count("***") >= 4 and "extract.db.t" in text
