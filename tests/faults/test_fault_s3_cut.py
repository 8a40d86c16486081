"""The S3 server cut mid-landing: the run fails naming the setting, nothing is half-landed as a
partition, and the next run with the server back is green."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import S3_KEY_ID, S3_SECRET, free_port, millpond, s3_client

from faults.harness import (
    ORDERS,
    REVENUE,
    go_on,
    half_landed,
    published,
    start_paused,
    tiny_project,
)

pytestmark = pytest.mark.e2e


def test_an_s3_server_cut_mid_landing_leaves_nothing_half_landed(
    tmp_path: Path, machine_pg: str, prefect_api: str
) -> None:
    from moto.server import ThreadedMotoServer

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server: ThreadedMotoServer | None = ThreadedMotoServer(
        ip_address="127.0.0.1", port=port, verbose=False
    )
    server.start()
    client = s3_client(endpoint)
    client.create_bucket(Bucket="cut-lake")
    root = tiny_project(
        tmp_path / "acme",
        f"lake:\n  url: s3://cut-lake/lake\n  endpoint_url: {endpoint}\n"
        "  access_key_id: ${S3_KEY_ID}\n  secret_access_key: ${S3_SECRET}\n",
    )
    env = {
        "MILLPOND_METADATA__URL": machine_pg,
        "S3_KEY_ID": S3_KEY_ID,
        "S3_SECRET": S3_SECRET,
        "AWS_EC2_METADATA_DISABLED": "true",
    }

    def keys() -> list[str]:
        return [o["Key"] for o in client.list_objects_v2(Bucket="cut-lake").get("Contents", [])]

    try:
        run = start_paused(root, "landing", env)
        assert half_landed(keys()), keys()  # parts on S3, no manifest yet
        server.stop()
        server = None  # stopped: a second stop() would wait for ever
        go_on(root, "landing")
        run.wait(600)
        log = (root / ".fault" / "landing.log").read_text()
        assert run.returncode == 1, log
        assert "lake.endpoint_url" in log, log  # the message names the key, not a curl code

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        assert half_landed(keys())  # what the cut left: never a partition (no manifest)
        green = millpond(root, "run", env=env)
        assert green.returncode == 0, green.stdout + green.stderr
        assert half_landed(keys()) == []
        assert published(root) == (ORDERS, REVENUE)
    finally:
        if server is not None:
            server.stop()
        millpond(root, "down")
