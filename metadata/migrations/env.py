"""Alembic environment for the millpond ledger (schema ``millpond``).

At runtime ``metadata.db.migrate`` builds the alembic Config in code and hands over an open
connection (``config.attributes["connection"]``) that already holds the migration advisory lock
and has created the schema, so no alembic.ini is needed. The alembic CLI still works for a
developer with an ini file of their own: its ``sqlalchemy.url`` is used when no connection is
given.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

SCHEMA = "millpond"
VERSION_TABLE = "alembic_version"

config = context.config


def _configure(
    connection: sa.Connection | None = None, url: str | None = None, literal_binds: bool = False
) -> None:
    # The version table lives in our own schema so it never collides with another tool's
    # alembic_version (Prefect, Airflow, a user's app) in a shared database.
    context.configure(
        connection=connection,
        url=url,
        literal_binds=literal_binds,
        target_metadata=None,
        version_table=VERSION_TABLE,
        version_table_schema=SCHEMA,
        transactional_ddl=True,
    )


def run_offline() -> None:
    """Emit SQL (``alembic upgrade head --sql``) for review by a DBA."""
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        context.run_migrations()


def run_online() -> None:
    """Migrate over the caller's connection, or open one from ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic: no connection given and no sqlalchemy.url in the ini file")
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        _configure(connection=conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
