"""`millpond check` against real servers: each kind of mistake named by its key or file with
what to do and exit 1, the demo project passing with exit 0, and nothing written either way
(no state folder, no dbt target/, no ledger row)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import database_url, mariadb_available, millpond, require_server

from .conftest import state_snapshot

pytestmark = pytest.mark.integration  # the machine's PostgreSQL and MariaDB


def checked(root: Path, *args: str) -> tuple[int, str]:
    """Run `millpond check` in `root`; assert it wrote nothing; its exit code and output."""
    before = state_snapshot(root)
    cache = root.parent / f"{root.name}-parse-cache"  # the machine-wide dbt parse cache
    done = millpond(root, "check", *args, env={"MILLPOND_CACHE_DIR": str(cache)})
    assert state_snapshot(root) == before
    assert not (root / ".millpond").exists()  # not even an empty state folder or a lock
    assert not cache.exists()
    return done.returncode, done.stdout + done.stderr


def add_source(root: Path, text: str) -> None:
    """Add a source to the tiny project's millpond.yml (its `sources:` section is last)."""
    with (root / "millpond.yml").open("a") as config:
        config.write(text)


def test_the_demo_project_passes_and_shows_what_each_extract_reads(project: Path) -> None:
    rc, output = checked(project)
    assert rc == 0, output
    assert "no problems found" in output
    assert "extract.erp.lineitem" in output and "lineitem.csv" in output  # what it would read
    assert "dbt.fct_orders" in output and "publish" in output  # the graph it would run
    assert "embedded PostgreSQL not created yet" in output  # reported, not started


def test_a_tiny_project_passes_and_its_dbt_project_gets_no_target_folder(
    tiny_project: Callable[..., Path],
) -> None:
    root = tiny_project()
    rc, output = checked(root)
    assert rc == 0, output
    assert "extract.shop.orders  1 file(s)" in output and "orders.csv" in output
    assert not (root / "dbt" / "target").exists() and not (root / "dbt" / "logs").exists()


def test_a_missing_inbox_folder_is_named_with_its_key(tiny_project: Callable[..., Path]) -> None:
    root = tiny_project()
    for file in (root / "inbox" / "shop").iterdir():
        file.unlink()
    (root / "inbox" / "shop").rmdir()
    rc, output = checked(root)
    assert rc == 1
    assert "sources.shop.path: inbox folder" in output and "does not exist" in output
    assert "create it or correct the path" in output


def test_a_misspelt_table_is_named_with_the_nearest_name(tiny_project: Callable[..., Path]) -> None:
    root = tiny_project()
    config = root / "millpond.yml"
    config.write_text(config.read_text().replace("tables: [orders]", "tables: [orderz]"))
    rc, output = checked(root)
    assert rc == 1
    # Both halves of the typo: the dbt source no table loads, the table no dbt source reads.
    assert "dbt source shop.orders" in output and "correct 'orderz' there" in output
    assert "table shop.orderz of millpond.yml" in output and "did you mean 'orders'?" in output
    assert "matching no table (not landed): orders.csv" in output  # the file it would have read


def test_a_dbt_parse_error_is_named_with_its_file(tiny_project: Callable[..., Path]) -> None:
    root = tiny_project()
    (root / "dbt" / "models" / "broken.sql").write_text("select {{ ref('no_such_model') }}\n")
    rc, output = checked(root)
    assert rc == 1
    assert "dbt parse failed" in output and "broken" in output and "no_such_model" in output
    assert not (root / "dbt" / "target").exists()


def test_a_bad_database_url_is_named_with_its_key(
    tiny_project: Callable[..., Path], pg_server: str
) -> None:
    root = tiny_project()
    missing_db = database_url(pg_server, "millpond_no_such_database")
    add_source(root, f"  billing: {{kind: sql, url: '{missing_db}', tables: [invoices]}}\n")
    add_source(root, "  old: {kind: sql, url: 'postgresql://u@127.0.0.1:1/x', tables: [a]}\n")
    rc, output = checked(root)
    assert rc == 1
    assert "sources.billing.url: " in output and "millpond_no_such_database" in output
    assert "sources.old.url: nothing answers at 127.0.0.1:1" in output


def test_a_reachable_database_passes(
    tiny_project: Callable[..., Path], machine_pg: str, request: pytest.FixtureRequest
) -> None:
    root = tiny_project()
    add_source(root, f"  billing: {{kind: sql, url: '{machine_pg}', tables: [invoices]}}\n")
    if mariadb_available():
        mariadb = request.getfixturevalue("mariadb")
        add_source(root, f"  shopdb: {{kind: sql, url: '{mariadb}', tables: [items]}}\n")
    rc, output = checked(root)
    assert rc == 0, output
    assert "extract.billing.invoices  table invoices" in output
    # Tables no dbt model reads are said, not failed.
    assert "sources.billing.tables: 'invoices' is read by no dbt model" in output


def test_mariadb_unreachable_or_wrong_database_is_named(
    tiny_project: Callable[..., Path],
) -> None:
    require_server(mariadb_available(), "no MariaDB at 127.0.0.1:3306")
    root = tiny_project()
    add_source(
        root, "  shopdb: {kind: sql, url: 'mysql://root@127.0.0.1:3306/no_such_db', tables: [a]}\n"
    )
    rc, output = checked(root)
    assert rc == 1
    assert "sources.shopdb.url: " in output and "no_such_db" in output


def test_the_ledger_and_a_postgres_warehouse_are_probed_without_a_row_or_a_schema(
    tiny_project: Callable[..., Path], machine_pg: str, pg_server: str
) -> None:
    root = tiny_project(config_extra=f"metadata: {{url: '{machine_pg}'}}\n")
    before = state_snapshot(root, ledger_url=machine_pg)
    rc, output = checked(root)
    assert rc == 0, output
    assert (
        state_snapshot(root, ledger_url=machine_pg)
        == before
        == {str(root): before[str(root)], "ledger": {}}
    )

    bad = database_url(pg_server, "millpond_no_such_ledger")
    config = root / "millpond.yml"
    config.write_text(
        config.read_text().replace(machine_pg, bad)
        + f"warehouse: {{target: postgres, url: '{database_url(pg_server, 'no_such_wh')}'}}\n"
    )
    rc, output = checked(root)
    assert rc == 1
    assert "metadata.url: cannot connect to" in output and "millpond_no_such_ledger" in output
    assert "warehouse.postgres.url: cannot connect to" in output and "no_such_wh" in output


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str]] = []

    def do_HEAD(self) -> None:
        self.seen.append((self.command, self.path, str(self.headers)))
        self.send_response(401)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """An HTTP server that records what it is sent."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    seen: list[tuple[str, str, str]] = []
    _Recorder.seen = seen
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_a_rest_base_url_is_asked_once_without_credentials(
    tiny_project: Callable[..., Path], api: tuple[str, list[tuple[str, str, str]]]
) -> None:
    url, seen = api
    root = tiny_project()
    add_source(
        root,
        f"  crm:\n    kind: rest\n    base_url: {url}/v1?api_key=${{CRM_KEY}}\n"
        "    auth: {type: bearer, token: '${CRM_TOKEN}'}\n"
        "    headers: {X-Api-Key: '${CRM_KEY}'}\n"
        "    tables: {contacts: {path: contacts}}\n"
        "  down: {kind: rest, base_url: 'http://127.0.0.1:1/', tables: {x: {path: x}}}\n",
    )
    before = state_snapshot(root)
    done = millpond(root, "check", env={"CRM_TOKEN": "tok-s3cret", "CRM_KEY": "key-s3cret"})
    assert state_snapshot(root) == before
    output = done.stdout + done.stderr
    assert done.returncode == 1  # the second API does not answer
    assert "sources.down.base_url: http://127.0.0.1:1/ does not answer" in output
    assert [(method, path) for method, path, _ in seen] == [("HEAD", "/v1")]
    assert "s3cret" not in seen[0][2] and "authorization" not in seen[0][2].lower()
    assert "HTTP 401" in output and "s3cret" not in output
    assert f"GET {url}/v1/contacts" in output


def test_check_is_listed_in_help(tmp_path: Path) -> None:
    done = millpond(tmp_path, "--help")
    assert "check" in done.stdout
    done = millpond(tmp_path, "check", "--help")
    assert done.returncode == 0 and "Writes nothing" in done.stdout


def test_an_s3_lake_and_inbox_are_asked_for_without_writing_an_object(
    tiny_project: Callable[..., Path], s3_server: str, s3_bucket: str
) -> None:
    from conftest import s3_client, s3_env

    lake = (
        "lake:\n  url: s3://{bucket}/lake\n  endpoint_url: ${{S3_ENDPOINT}}\n"
        "  access_key_id: ${{S3_KEY_ID}}\n  secret_access_key: ${{S3_SECRET}}\n"
    )
    drops = f"  drops: {{kind: files, path: 's3://{s3_bucket}/drops/', tables: [orders]}}\n"
    root = tiny_project(config_extra=drops + lake.format(bucket=s3_bucket))
    client = s3_client(s3_server)
    client.put_object(Bucket=s3_bucket, Key="drops/orders.csv", Body=b"id\n1\n")

    def objects() -> list[str]:
        return sorted(
            o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])
        )

    before = objects()
    done = millpond(root, "check", env=s3_env(s3_server))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "bucket answers" in output and f"s3://{s3_bucket}/drops/: orders.csv" in output
    assert objects() == before and not (root / ".millpond").exists()

    config = root / "millpond.yml"
    config.write_text(
        config.read_text()
        .replace(f"s3://{s3_bucket}/lake", "s3://no-such-bucket-4f9c/lake")
        .replace("/drops/", "/nothing-here/")
    )
    done = millpond(root, "check", env=s3_env(s3_server))
    output = done.stdout + done.stderr
    assert done.returncode == 1
    assert "no-such-bucket-4f9c" in output and "lake." in output
    assert (
        f"sources.drops.path: inbox folder s3://{s3_bucket}/nothing-here/ does not exist" in output
    )
    assert objects() == before


def test_an_odbc_source_logs_in_or_is_named(
    tiny_project: Callable[..., Path], machine_pg: str
) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(machine_pg)
    driver = "PostgreSQL Unicode"
    ini = Path("/etc/odbcinst.ini")  # as tests/integration/test_odbc_source.py asks
    require_server(ini.is_file() and f"[{driver}]" in ini.read_text(), "psqlODBC not installed")
    if not parts.hostname:
        pytest.skip("psqlODBC is tested over TCP (the machine's PostgreSQL), not a socket")
    good = (
        f"Driver={{{driver}}};Server={parts.hostname};Port={parts.port};"
        f"Database={parts.path.lstrip('/')};Uid={parts.username};"
    )
    root = tiny_project()
    add_source(root, f"  erp: {{kind: odbc, connection_string: '{good}', tables: [t]}}\n")
    rc, output = checked(root)
    assert rc == 0, output
    assert "logs in" in output

    config = root / "millpond.yml"
    config.write_text(config.read_text().replace(f"Port={parts.port}", "Port=1"))
    add_source(
        root, "  old: {kind: odbc, connection_string: 'Driver={No Such Driver};', tables: [t]}\n"
    )
    rc, output = checked(root)
    assert rc == 1
    assert "sources.erp.connection_string: cannot connect" in output
    assert "sources.old.connection_string: cannot connect" in output


def test_a_duckdb_warehouse_is_opened_read_only_and_a_damaged_one_named(
    tiny_project: Callable[..., Path],
) -> None:
    import duckdb

    root = tiny_project()
    state = root / ".millpond"
    state.mkdir()
    with duckdb.connect(str(state / "warehouse.duckdb")) as con:
        con.execute("create table t as select 1 as x")
    before = state_snapshot(root)
    done = millpond(root, "check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "opens, 1 table(s)" in done.stdout
    assert state_snapshot(root) == before and sorted(p.name for p in state.iterdir()) == [
        "warehouse.duckdb"
    ]  # no lock file, no WAL, no state folder beside it

    (state / "warehouse.duckdb").write_bytes(b"not a duckdb file" * 512)
    before = state_snapshot(root)
    done = millpond(root, "check")
    assert done.returncode == 1
    assert "warehouse.duckdb.path: " in done.stderr and "millpond doctor --repair" in done.stderr
    assert state_snapshot(root) == before


def test_a_config_that_does_not_load_exits_2_naming_the_key(
    tiny_project: Callable[..., Path],
) -> None:
    root = tiny_project()
    config = root / "millpond.yml"
    config.write_text(config.read_text().replace("path: inbox/shop", "pathh: inbox/shop"))
    rc, output = checked(root)
    assert rc == 2
    assert "sources.shop" in output and "pathh" in output
