"""Publishing on PostgreSQL: a shadow schema swapped in by one transaction, and the reader role.

Real PostgreSQL (the machine's, or the embedded one on a laptop): readers in other sessions
query the published schemas in a loop while publishes swap them.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from millpond.targets.postgres.publish import ensure_reader_role, publish

pytestmark = pytest.mark.integration


def build_marts(url: str, version: int, rows: int = 200) -> None:
    """What dbt does between publishes: rebuild both marts with a new version."""
    with psycopg.connect(url) as conn:
        conn.execute("create schema if not exists marts")
        for table in ("orders", "customers"):
            conn.execute(f"drop table if exists marts.{table}")
            conn.execute(
                f"create table marts.{table} as select g as id, %s::int as version "
                "from generate_series(1, %s) g",
                [version, rows],
            )


def test_readers_see_old_or_new_marts_never_a_mix_and_never_an_error(machine_pg: str) -> None:
    build_marts(machine_pg, 0)
    publish(machine_pg, ["marts"], "published_", None)
    seen: list[tuple[int, int, int, int]] = []
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        with psycopg.connect(machine_pg, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    row = conn.execute(
                        "select (select min(version) from published_marts.orders), "
                        "(select max(version) from published_marts.orders), "
                        "(select min(version) from published_marts.customers), "
                        "(select max(version) from published_marts.customers)"
                    ).fetchone()
                    seen.append(row)
                except psycopg.Error as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        for version in range(1, 16):
            build_marts(machine_pg, version)
            publish(machine_pg, ["marts"], "published_", None)
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=30)

    assert errors == []
    mixed = [row for row in seen if len(set(row)) != 1]
    assert mixed == [], f"readers saw a mix of versions: {mixed[:5]}"
    assert len({row[0] for row in seen}) > 3, "the readers should have seen several versions"
    with psycopg.connect(machine_pg) as conn:
        assert conn.execute("select max(version) from published_marts.orders").fetchone() == (15,)
        leftovers = conn.execute(
            "select nspname from pg_namespace where nspname like 'published_marts__%'"
        ).fetchall()
    assert leftovers == []


def test_publish_of_nothing_fails_and_keeps_the_published_marts(machine_pg: str) -> None:
    build_marts(machine_pg, 1)
    publish(machine_pg, ["marts"], "published_", None)
    with pytest.raises(RuntimeError, match="nothing to publish"):
        publish(machine_pg, ["no_such_schema"], "published_", None)
    with psycopg.connect(machine_pg) as conn:
        assert conn.execute("select count(*) from published_marts.orders").fetchone() == (200,)


def test_the_reader_role_reads_published_marts_only_and_cannot_write(machine_pg: str) -> None:
    dbname = urlsplit(machine_pg).path.lstrip("/")
    role = f"reader_{dbname[-10:]}"
    assert ensure_reader_role(machine_pg, role, "s3cret-reader", dbname)
    build_marts(machine_pg, 3)
    publish(machine_pg, ["marts"], "published_", role)
    as_reader = urlunsplit(
        urlsplit(machine_pg)._replace(netloc=f"{role}@{urlsplit(machine_pg).netloc.split('@')[-1]}")
    )
    try:
        # A BI tool logs in as the reader: published marts yes, dbt's schemas no, writes never.
        with psycopg.connect(as_reader, user=role, autocommit=True) as conn:
            assert conn.execute("select count(*) from published_marts.orders").fetchone() == (200,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select count(*) from marts.orders")
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("create temp table scratch (x int)")
    finally:
        with psycopg.connect(machine_pg, autocommit=True) as conn:
            for schema in ("published_marts", "marts"):
                conn.execute(
                    sql.SQL("revoke all on all tables in schema {} from {}").format(
                        sql.Identifier(schema), sql.Identifier(role)
                    )
                )
                conn.execute(
                    sql.SQL("revoke all on schema {} from {}").format(
                        sql.Identifier(schema), sql.Identifier(role)
                    )
                )
            conn.execute(
                sql.SQL("revoke all on database {} from {}").format(
                    sql.Identifier(dbname), sql.Identifier(role)
                )
            )
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
