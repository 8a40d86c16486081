"""Connecting to the ledger database and bringing its schema up to date.

Two URL spellings circulate: libpq/psycopg wants ``postgresql://`` while SQLAlchemy needs the
driver named (``postgresql+psycopg://``, since psycopg2 is not installed). Inside millpond the
canonical form is the libpq one; :func:`sqlalchemy_url` converts at the SQLAlchemy boundary.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from loguru import logger

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SCHEMA = "millpond"
# Arbitrary but fixed key ("mpmg"): every process migrating the same database queues on it.
MIGRATION_LOCK_KEY = 0x6D706D67
CONNECT_TIMEOUT_S = 3

_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://", "postgresql+psycopg3://")


def normalize_url(url: str) -> str:
    """Return the libpq form (``postgresql://...``) of a PostgreSQL URL, or raise ValueError."""
    for scheme in _SCHEMES:
        if url.startswith(scheme):
            return "postgresql://" + url[len(scheme) :]
    raise ValueError(f"not a PostgreSQL URL (expected postgresql://...): {url!r}")


def sqlalchemy_url(url: str) -> str:
    """Return the URL with the psycopg 3 driver named, as SQLAlchemy and alembic need it."""
    return "postgresql+psycopg://" + normalize_url(url)[len("postgresql://") :]


def resolve_url(url: str, state_dir: Path, *, keep_running: bool = False) -> str:
    """Turn the configured ledger URL into a connectable libpq URL.

    ``"embedded"`` starts (or reuses) the embedded PostgreSQL under ``state_dir / "pg"``, which is
    what a laptop without a PostgreSQL server uses; any PostgreSQL URL is only normalized.
    """
    if url.strip().lower() == "embedded":
        from millpond.metadata.embedded import start_embedded

        return start_embedded(Path(state_dir) / "pg", keep_running=keep_running)
    return normalize_url(url)


def connect(url: str, *, connect_timeout: int = CONNECT_TIMEOUT_S) -> psycopg.Connection:
    """Open an autocommit psycopg connection; the short timeout keeps a down DB from stalling."""
    return psycopg.connect(normalize_url(url), autocommit=True, connect_timeout=connect_timeout)


def _alembic_config(connection: Any | None = None) -> Config:
    """Build the alembic Config in code so no alembic.ini has to ship or be found at runtime."""
    from alembic.config import Config

    config = Config()
    # configparser interpolation would read a '%' in the path as a placeholder.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest revision shipped with this code (what :func:`migrate` brings a DB up to)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(url: str) -> str | None:
    """The revision a database is at, or None if it was never migrated."""
    with connect(url) as conn:
        exists = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.alembic_version",)
        ).fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute(f"SELECT version_num FROM {SCHEMA}.alembic_version").fetchone()
        return row[0] if row else None


_REVISION = re.compile(r"^(down_revision|revision)\b[^=]*=\s*(.+)$", re.M)


def shipped_head() -> str | None:
    """The newest revision shipped, read from the migration files without importing alembic
    (a second in every Airflow task process); None when that is not one clear head."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for key, value in _REVISION.findall(path.read_text(encoding="utf-8")):
            names = set(re.findall(r"['\"]([^'\"]+)['\"]", value))
            (revisions if key == "revision" else parents).update(names)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def migrate(url: str) -> None:
    """Bring the ledger schema to the newest revision; cheap no-op when it already is.

    Meant to run at every run start, possibly by several processes at once (Airflow tasks,
    ``serve`` and a CLI run): the whole upgrade runs in one transaction holding a transaction-level
    advisory lock, so a second process waits, then finds the schema at head and does nothing.
    PostgreSQL DDL is transactional, so a failed migration leaves the previous schema intact.
    """
    started = time.perf_counter()
    head = shipped_head()
    if head is not None and current_revision(url) == head:
        logger.debug("ledger schema at head ({:.0f} ms)", (time.perf_counter() - started) * 1000)
        return
    import sqlalchemy as sa
    from alembic import command

    engine = sa.create_engine(
        sqlalchemy_url(url),
        poolclass=sa.NullPool,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            command.upgrade(_alembic_config(conn), "head")
    finally:
        engine.dispose()
    logger.debug("ledger schema at head ({:.0f} ms)", (time.perf_counter() - started) * 1000)
