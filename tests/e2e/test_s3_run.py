"""The demo pipeline with the lake on S3 and the ERP exports pulled from an S3 prefix (moto
over real HTTP), on every registered target: the published marts equal a local-lake run's; a
backfill run twice changes nothing; no file millpond writes holds the S3 secret."""

from __future__ import annotations

from pathlib import Path

import duckdb
import psycopg
import pytest
import yaml
from conftest import REPO, S3_KEY_ID, S3_SECRET, millpond, s3_client, s3_env, write_project
from contract.kinds import target_case
from test_postgres_target import differences, published_marts, target_env

from millpond.core.registry import TARGETS

pytestmark = pytest.mark.e2e


def deploy_config() -> dict:
    """The millpond.yml keys docs/deploy.md shows (lake and inbox on MinIO, ledger on
    PostgreSQL): the test runs exactly that configuration."""
    text = (REPO / "docs" / "deploy.md").read_text()
    block = text.split("## millpond.yml", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    return yaml.safe_load(block)


def s3_project(root: Path, bucket: str) -> Path:
    write_project(root, None)
    config = yaml.safe_load((root / "millpond.yml").read_text()) | deploy_config()
    text = yaml.safe_dump(config, sort_keys=False).replace("s3://millpond/", f"s3://{bucket}/")
    assert f"s3://{bucket}/lake" in text and f"s3://{bucket}/exports/" in text
    (root / "millpond.yml").write_text(text)
    return root


def raw_profile(project: Path, endpoint: str) -> dict[str, tuple]:
    """Rows and a checksum per raw table, without millpond's bookkeeping columns."""
    with duckdb.connect(str(project / ".millpond" / "warehouse.duckdb"), read_only=True) as con:
        con.execute("load httpfs")
        con.execute(
            "create temporary secret (type s3, key_id ?, secret ?, endpoint ?, url_style 'path', "
            "use_ssl false)",
            [S3_KEY_ID, S3_SECRET, endpoint.removeprefix("http://")],
        )
        return {
            t: con.execute(
                f"select count(*), sum(hash(columns(* exclude (_partition_id, _loaded_at)))) "
                f"from raw.erp__{t}"
            ).fetchone()
            for t in ("orders", "lineitem", "region")
        }


def test_the_demo_on_an_s3_lake_and_inbox_equals_the_local_run(
    reference_run, prefect_api, tmp_path, s3_server, s3_bucket, demo_files, machine_pg, request
):
    first, *others = TARGETS.names()  # the default target, then every other registered one
    # The local run: the session's reference run of the same files on a local lake.
    expected = published_marts(reference_run.project, first, {})
    assert len(expected) == 8

    client = s3_client(s3_server)
    for path in sorted(demo_files.iterdir()):
        client.upload_file(str(path), s3_bucket, f"exports/{path.name}")
    remote = s3_project(tmp_path / "s3project", s3_bucket)
    env = {
        **s3_env(s3_server),
        "PG_PASSWORD": "",
        # The test server's PostgreSQL instead of docs/deploy.md's, for ledger and warehouse.
        "MILLPOND_METADATA__URL": machine_pg,
        "MILLPOND_WAREHOUSE__URL": machine_pg,
    }
    try:
        on_s3 = millpond(remote, "run", env=env)
        assert on_s3.returncode == 0, on_s3.stdout + on_s3.stderr
        assert differences(expected, published_marts(remote, first, env)) == []
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
        assert sum(k.startswith("lake/raw/erp/") and k.endswith(".parquet") for k in keys) == 8
        assert not (remote / ".millpond" / "lake").exists()

        # Every other target loads the same S3 partitions.
        for name in others:
            with target_case(name, request, tmp_path / name) as case:
                on_target = {**env, **target_env(case)}
                done = millpond(remote, "run", "--target", name, env=on_target)
                assert done.returncode == 0, done.stdout + done.stderr
                assert differences(expected, published_marts(remote, name, on_target)) == []

        listed = millpond(remote, "lake", "ls", "erp", env=env)
        assert listed.returncode == 0, listed.stderr
        lines = [line for line in listed.stdout.splitlines() if line.startswith("erp/")]
        assert len(lines) == 8 and all(line.endswith(" loaded") for line in lines), listed.stdout

        # Backfill today's partitions twice (re-landed from the S3 exports): raw unchanged,
        # and the marts of the next run too.
        before = raw_profile(remote, s3_server)
        day = lines[0].split("ingest_date=")[1][:10]
        for _ in range(2):
            done = millpond(
                remote, "backfill", "--source", "erp", "--from", day, "--to", day, env=env
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert done.stdout.count("reland ") == 8, done.stdout
            assert raw_profile(remote, s3_server) == before
        rerun = millpond(remote, "run", env=env)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert differences(expected, published_marts(remote, first, env)) == []

        # Secrets never reach a file millpond wrote (profile, logs, warehouse, dbt target).
        leaked = [
            p
            for p in (remote / ".millpond").rglob("*")
            if p.is_file() and S3_SECRET.encode() in p.read_bytes()
        ]
        assert leaked == []
        assert not (remote / ".millpond" / "pg").exists()  # the ledger is on PostgreSQL
        with psycopg.connect(machine_pg) as conn:
            runs = conn.execute("select count(*) from millpond.runs where status = 'success'")
            # One on S3, one per other target, the rerun.
            assert runs.fetchone()[0] == 2 + len(others)
            relanded = conn.execute(
                "select count(*) from millpond.lake_actions where action = 'reland'"
            )
            assert relanded.fetchone()[0] == 16
    finally:
        from millpond.metadata.embedded import stop_embedded

        stop_embedded(remote / ".millpond" / "pg")
