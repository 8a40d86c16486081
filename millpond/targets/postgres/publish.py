"""Publish on PostgreSQL: marts copied into shadow schemas, swapped in by one transaction.

dbt builds into its own schemas (e.g. `marts`), which change model by model during a run.
Readers (BI tools, the API) read `<prefix><schema>` (e.g. `published_marts`) instead. Publish
copies every relation of the built schemas into `<prefix><schema>__next`, then one transaction
renames the published schemas away and the shadow ones in, and a later transaction drops the
old ones. The swap first locks every published table: a query that is running keeps its old
tables until it ends, a query that starts after the swap resolves the new ones, and none sees a
mix. If the lock cannot be had (a reader holds a table and waits for another), the swap gives up
and retries rather than make a reader fail. A failed run never reaches publish.
"""

from __future__ import annotations

import psycopg
from psycopg import sql
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from millpond.core.logs import logger

NEXT, OLD = "__next", "__old"
# millpond's own tables in the raw schema (the partitions a raw table holds) are not data: a
# published raw schema leaves them out.
BOOKKEEPING_PREFIX = "_millpond"
SWAP_ERRORS = (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected)
# The swap and the drop of old schemas give up on a lock conflict and try again, briefly.
retry_lock_conflicts = retry(
    retry=retry_if_exception_type(SWAP_ERRORS),
    stop=stop_after_attempt(20),
    wait=wait_exponential(multiplier=0.05, max=2),
    reraise=True,
)


def publish(url: str, schemas: list[str], prefix: str, reader_role: str | None) -> dict[str, int]:
    """Copy and swap; returns `<published schema>.<relation>` -> rows.

    Three transactions on an autocommit connection: the copy (one snapshot of every built
    relation), the swap, and dropping the old schemas. A crash between them leaves `__next` or
    `__old` schemas that the next publish clears first. Publishers are serialized by an
    advisory lock, which holds across machines (Airflow workers) as well."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(hashtext('millpond.publish'))")
        relations = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema = any(%s) and not starts_with(table_name::text, %s) "
            "order by 1, 2",
            [schemas, BOOKKEEPING_PREFIX],
        ).fetchall()
        if not relations:
            raise RuntimeError(f"nothing to publish: no tables in schemas {schemas}")
        built = sorted({s for s, _ in relations})
        published = [f"{prefix}{s}" for s in built]
        _drop_schemas(conn, [s + OLD for s in published])  # left by a crash after a swap
        tables = _copy_to_shadow(conn, relations, prefix, reader_role)
        _swap(conn, published)
        _drop_schemas(conn, [s + OLD for s in published])
    logger.info(f"published {len(tables)} tables to schemas {', '.join(prefix + s for s in built)}")
    return tables


def _copy_to_shadow(
    conn: psycopg.Connection,
    relations: list[tuple[str, str]],
    prefix: str,
    reader_role: str | None,
) -> dict[str, int]:
    tables: dict[str, int] = {}
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # one snapshot for all
    try:
        with conn.transaction():
            _fill_shadow(conn, relations, prefix, reader_role, tables)
    finally:
        conn.isolation_level = None
    return tables


def _fill_shadow(
    conn: psycopg.Connection,
    relations: list[tuple[str, str]],
    prefix: str,
    reader_role: str | None,
    tables: dict[str, int],
) -> None:
    for schema in sorted({s for s, _ in relations}):
        shadow = sql.Identifier(f"{prefix}{schema}{NEXT}")
        conn.execute(sql.SQL("drop schema if exists {} cascade").format(shadow))
        conn.execute(sql.SQL("create schema {}").format(shadow))
        if reader_role:
            conn.execute(
                sql.SQL("grant usage on schema {} to {}").format(
                    shadow, sql.Identifier(reader_role)
                )
            )
    for schema, name in relations:
        shadow = sql.Identifier(f"{prefix}{schema}{NEXT}")
        conn.execute(
            sql.SQL("create table {}.{} as table {}.{}").format(
                shadow, sql.Identifier(name), sql.Identifier(schema), sql.Identifier(name)
            )
        )
        row = conn.execute(
            sql.SQL("select count(*) from {}.{}").format(shadow, sql.Identifier(name))
        ).fetchone()
        tables[f"{prefix}{schema}.{name}"] = int(row[0]) if row else 0
    if reader_role:
        for schema in sorted({s for s, _ in relations}):
            conn.execute(
                sql.SQL("grant select on all tables in schema {} to {}").format(
                    sql.Identifier(f"{prefix}{schema}{NEXT}"), sql.Identifier(reader_role)
                )
            )


@retry_lock_conflicts
def _swap(conn: psycopg.Connection, published: list[str]) -> None:
    with conn.transaction():
        # The swap, not a reader, is the one to give up and try again: it waits briefly, and
        # it looks for deadlocks (a reader holding one table, waiting for another) first.
        conn.execute("set local lock_timeout = '2s'")
        _prefer_swap_as_deadlock_victim(conn)
        current = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema = any(%s) order by 1, 2",
            [published],
        ).fetchall()
        if current:
            conn.execute(
                sql.SQL("lock table {} in access exclusive mode").format(
                    sql.SQL(", ").join(
                        sql.SQL("{}.{}").format(sql.Identifier(s), sql.Identifier(n))
                        for s, n in current
                    )
                )
            )
        existing = set(_schemas(conn, published))
        for schema in published:
            if schema in existing:
                conn.execute(
                    sql.SQL("alter schema {} rename to {}").format(
                        sql.Identifier(schema), sql.Identifier(schema + OLD)
                    )
                )
            conn.execute(
                sql.SQL("alter schema {} rename to {}").format(
                    sql.Identifier(schema + NEXT), sql.Identifier(schema)
                )
            )


def _prefer_swap_as_deadlock_victim(conn: psycopg.Connection) -> None:
    """A short deadlock_timeout makes this session check first, so it is the one aborted;
    only superusers may set it, and without it PostgreSQL may abort a reader instead."""
    try:
        with conn.transaction():
            conn.execute("set local deadlock_timeout = '20ms'")
    except psycopg.errors.InsufficientPrivilege:
        logger.debug("deadlock_timeout cannot be lowered by this user")


@retry_lock_conflicts
def _drop_schemas(conn: psycopg.Connection, names: list[str]) -> None:
    """Drop old published schemas; a query still reading them finishes first (and, as in the
    swap, this transaction is the one to give up on a deadlock, not the reader)."""
    with conn.transaction():
        conn.execute("set local lock_timeout = '2s'")
        _prefer_swap_as_deadlock_victim(conn)
        for name in names:
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name)))


def _schemas(conn: psycopg.Connection, names: list[str]) -> list[str]:
    rows = conn.execute(
        "select nspname from pg_namespace where nspname = any(%s)", [names]
    ).fetchall()
    return [r[0] for r in rows]


def ensure_reader_role(url: str, role: str, password: str | None, database: str) -> bool:
    """Create the read-only login role BI tools use; False (with a warning) when the
    configured user may not create roles."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_roles where rolname = %s", [role]).fetchone()
        try:
            if not exists:
                conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
            if password:
                # The server's own verifier, computed here: the plain password is never sent
                # in a statement (statement logs would keep it).
                verifier = conn.pgconn.encrypt_password(password.encode(), role.encode())
                conn.execute(
                    sql.SQL("alter role {} password {}").format(
                        sql.Identifier(role), sql.Literal(verifier.decode())
                    )
                )
            conn.execute(
                sql.SQL("alter role {} set default_transaction_read_only = on").format(
                    sql.Identifier(role)
                )
            )
            conn.execute(
                sql.SQL("grant connect on database {} to {}").format(
                    sql.Identifier(database), sql.Identifier(role)
                )
            )
        except psycopg.errors.InsufficientPrivilege as exc:
            logger.warning(f"cannot set up the read-only role {role!r}: {exc}")
            return bool(exists)
    return True
