"""Bad S3 settings for the lake, against real servers over HTTP: the session's moto S3 server,
a moto server that checks credentials, a closed port, plain HTTP servers that are not S3.

Each case asserts what a user meets: a refusal (an `S3Error`, or exit code 2 from a command)
whose message names the millpond.yml key to change (`lake.url`, `lake.endpoint_url`, the
credentials or the AWS_* variables), and that nothing was written: no object in any bucket,
no file in the project's state dir.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import S3_KEY_ID, S3_SECRET, free_port, millpond, s3_client

from millpond.core.config_file import ConfigError
from millpond.core.config_loading import load_config
from millpond.ingest.lake import Lake
from millpond.ingest.s3 import S3Error

from .conftest import state_snapshot

# --- servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_s3() -> Iterator[tuple[str, str]]:
    """A moto S3 server of its own process that checks credentials (moto checks none unless
    told, process-wide), with one bucket made before the check starts: (endpoint, bucket)."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1)
            break
        except httpx.HTTPError:
            assert server.poll() is None and time.monotonic() < deadline, "moto did not start"
            time.sleep(0.1)
    s3_client(endpoint).create_bucket(Bucket="guarded")  # the one unchecked action
    yield endpoint, "guarded"
    server.terminate()
    server.wait(10)


class _Html(http.server.BaseHTTPRequestHandler):
    """A web server that is not S3: 200 and a page for every request, PUTs included."""

    def _page(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", "19")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(b"<html>hello</html>\n")

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _page

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def html_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m http.server`: 404 pages for a bucket, 501 for a PUT."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(port)],
        cwd=tmp_path_factory.mktemp("www"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert server.poll() is None and time.monotonic() < deadline, "http.server did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="module")
def closed_port() -> str:
    return f"http://127.0.0.1:{free_port()}"


# --- the cases --------------------------------------------------------------------------------

Servers = dict[str, str]
CREDENTIALS = "  access_key_id: ${S3_KEY_ID}\n  secret_access_key: ${S3_SECRET}\n"


def lake_block(url: str, endpoint: str | None, credentials: str = CREDENTIALS) -> str:
    text = f"lake:\n  url: {url}\n"
    if endpoint:
        text += f"  endpoint_url: {endpoint}\n"
    return text + credentials


# (id, millpond.yml's lake block from the servers, words the message must hold)
CASES: list[tuple[str, Callable[[Servers], str], list[str]]] = [
    (
        "closed-port",
        lambda s: lake_block(f"s3://{s['bucket']}/lake", s["closed"]),
        ["cannot connect", "nothing answers", "lake.endpoint_url"],
    ),
    (
        "wrong-credentials",
        lambda s: lake_block("s3://guarded/lake", s["auth"]),
        ["refused the credentials", "lake.access_key_id", "lake.secret_access_key"],
    ),
    (
        # Unsigned requests: MinIO and AWS answer 403, moto a bare 500; either way the
        # message says where credentials come from when the lake sets none.
        "no-credentials-anywhere",
        lambda s: lake_block("s3://guarded/lake", s["auth"], credentials=""),
        ["AWS_ACCESS_KEY_ID", "lake.access_key_id", "lake.endpoint_url"],
    ),
    (
        "missing-bucket",
        lambda s: lake_block("s3://no-such-bucket-5e1/lake", s["moto"]),
        ["bucket 'no-such-bucket-5e1' does not exist", "lake.url", "create it"],
    ),
    (
        "url-without-bucket",
        lambda s: lake_block("s3://", s["moto"]),
        ["lake.url 's3://' names no bucket", "s3://<bucket>/<prefix>"],
    ),
    (
        "url-with-empty-bucket",
        lambda s: lake_block("s3:///lake", s["moto"]),
        ["names no bucket", "lake.url"],
    ),
    (
        "invalid-bucket-name",
        lambda s: lake_block("s3://My_Lake/raw", s["moto"]),
        ["'My_Lake' is not a valid S3 bucket name", "lake.url"],
    ),
    (
        "web-server-not-s3",
        lambda s: lake_block(f"s3://{s['bucket']}/lake", s["html"]),
        ["does not answer as an S3 server", "lake.endpoint_url"],
    ),
    (
        "file-server-not-s3",
        lambda s: lake_block(f"s3://{s['bucket']}/lake", s["files"]),
        ["does not answer as an S3 server", "lake.endpoint_url"],
    ),
    (
        "https-to-a-plain-http-server",
        lambda s: lake_block(f"s3://{s['bucket']}/lake", s["moto"].replace("http:", "https:")),
        ["no TLS connection", "write http://", "lake.endpoint_url"],
    ),
]
# Settings that would silently mean something else, refused before any server is asked.
CASES += [
    (
        "key-id-without-secret",
        lambda s: lake_block(f"s3://{s['bucket']}/lake", s["moto"], "  access_key_id: abc\n"),
        ["lake.access_key_id is set but lake.secret_access_key is not", "set both"],
    ),
    (
        "secret-without-key-id",
        lambda s: lake_block(
            f"s3://{s['bucket']}/lake", s["moto"], "  secret_access_key: ${S3_SECRET}\n"
        ),
        ["lake.secret_access_key is set but lake.access_key_id is not"],
    ),
    (
        "secret-variable-set-to-nothing",
        lambda s: lake_block(
            f"s3://{s['bucket']}/lake",
            s["moto"],
            "  access_key_id: ${S3_KEY_ID}\n  secret_access_key: ${EMPTY_SECRET}\n",
        ),
        ["lake.secret_access_key is empty", "${VAR}"],
    ),
    (
        "endpoint-with-the-bucket-in-its-path",
        lambda s: lake_block("s3://lake-prefix-only", s["moto"] + f"/{s['bucket']}"),
        ["lake.endpoint_url", "has a path", "belong in lake.url"],
    ),
]

# Refused by the config itself, naming the key (before any server is asked).
CONFIG_CASES: list[tuple[str, Callable[[Servers], str], list[str]]] = [
    (
        "endpoint-without-scheme",
        lambda s: lake_block(f"s3://{s['bucket']}/lake", s["moto"].removeprefix("http://")),
        ["lake.endpoint_url", "http://"],
    ),
    (
        "url-with-one-slash",
        lambda s: lake_block(f"s3:/{s['bucket']}/lake", s["moto"]),
        ["lake.url", "s3://"],
    ),
]


@pytest.fixture
def servers(s3_server, s3_bucket, auth_s3, html_server, file_server, closed_port) -> Servers:
    return {
        "moto": s3_server,
        "bucket": s3_bucket,
        "auth": auth_s3[0],
        "html": html_server,
        "files": file_server,
        "closed": closed_port,
    }


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AWS credentials but the ones a case sets (and no instance metadata lookups)."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "MILLPOND_LAKE")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


def objects(endpoint: str) -> dict[str, list[str]]:
    """Every object of every bucket of the session's S3 server."""
    client = s3_client(endpoint)
    return {
        b["Name"]: sorted(
            o["Key"] for o in client.list_objects_v2(Bucket=b["Name"]).get("Contents", [])
        )
        for b in client.list_buckets()["Buckets"]
    }


def write_config(root: Path, lake: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "millpond.yml").write_text(lake + "sources: {}\n")
    return root / "millpond.yml"


ENV = {"S3_KEY_ID": S3_KEY_ID, "S3_SECRET": S3_SECRET, "EMPTY_SECRET": ""}


@pytest.mark.parametrize(("case", "lake", "words"), CASES, ids=[c[0] for c in CASES])
def test_a_lake_that_cannot_work_is_refused_naming_the_key(
    case, lake, words, servers, no_aws_env, tmp_path
) -> None:
    config = load_config(write_config(tmp_path, lake(servers)), ENV)
    before = objects(servers["moto"])

    with pytest.raises(S3Error) as refused:
        Lake.from_config(config)

    message = str(refused.value)
    for word in words:
        assert word in message, message
    assert S3_SECRET not in message
    assert objects(servers["moto"]) == before  # nothing written anywhere


@pytest.mark.parametrize(("case", "lake", "words"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_a_lake_setting_of_the_wrong_shape_is_refused_by_the_config(
    case, lake, words, servers, tmp_path
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(write_config(tmp_path, lake(servers)), ENV)
    for word in words:
        assert word in str(refused.value), str(refused.value)


def test_a_server_gone_after_the_lake_opened_is_named_by_its_key(no_aws_env) -> None:
    """The S3 server stops while the lake is in use: reading manifests fails naming
    lake.endpoint_url, as pyarrow's 'curlCode: 7' did not."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    bucket = f"gone-{uuid.uuid4().hex[:8]}"
    s3_client(endpoint).create_bucket(Bucket=bucket)
    lake = Lake.from_url(f"s3://{bucket}/lake", endpoint, "us-east-1", S3_KEY_ID, S3_SECRET)
    assert lake.manifests("erp", "orders") == []
    server.stop()

    with pytest.raises(S3Error) as refused:
        lake.manifests("erp", "orders")
    assert "cannot connect" in str(refused.value) and "lake.endpoint_url" in str(refused.value)
    assert refused.value.retryable  # a server restarting may be back on the next attempt


def test_a_refused_lake_is_not_worth_a_retry_but_a_closed_port_is(servers, no_aws_env) -> None:
    with pytest.raises(S3Error) as bucket:
        Lake.from_url("s3://no-such-bucket-5e1/x", servers["moto"], None, S3_KEY_ID, S3_SECRET)
    with pytest.raises(S3Error) as closed:
        Lake.from_url(f"s3://{servers['bucket']}/x", servers["closed"], None, "k", "s")
    assert not bucket.value.retryable and closed.value.retryable


# --- the same through the command a user types ------------------------------------------------

CLI_CASES = ["closed-port", "missing-bucket", "url-without-bucket", "web-server-not-s3"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_lake_ls_refuses_a_lake_that_cannot_work_with_exit_2_and_changes_nothing(
    case, servers, tiny_project
) -> None:
    _, lake, words = next(c for c in CASES if c[0] == case)
    root = tiny_project(case, lake(servers))
    before = state_snapshot(root), objects(servers["moto"])

    result = millpond(root, "lake", "ls", env=ENV | {"AWS_EC2_METADATA_DISABLED": "true"})

    assert result.returncode == 2, result.stdout + result.stderr
    output = " ".join((result.stdout + result.stderr).split())  # the console wraps lines
    for word in words:
        assert word in output, output
    assert "Traceback" not in output
    assert (state_snapshot(root), objects(servers["moto"])) == before
