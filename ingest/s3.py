"""One way to reach an S3-compatible server, for Arrow and for DuckDB.

The lake and a `files` source reading an S3 prefix share `S3Connection` (millpond.core.config).
Arrow gets an `S3FileSystem`; DuckDB gets the statement of a temporary (in-memory) secret, so
a DuckDB warehouse can read `s3://` Parquet through httpfs. Addressing is path-style whenever
an endpoint is set: MinIO and other self-hosted servers need it, and AWS accepts it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from millpond.core.config import S3Connection


def split_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix/` -> ("bucket", "prefix")."""
    rest = url.removeprefix("s3://").strip("/")
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix


def filesystem(conn: S3Connection) -> pafs.S3FileSystem:
    """An Arrow filesystem for the server (credentials from the config, else AWS defaults)."""
    options: dict[str, Any] = {"region": conn.region or "us-east-1"}
    if conn.endpoint_url:
        parts = urlsplit(conn.endpoint_url)
        options |= {
            "endpoint_override": parts.netloc,
            "scheme": parts.scheme,
            "force_virtual_addressing": False,
        }
    if conn.access_key_id and conn.secret_access_key:
        options |= {"access_key": conn.access_key_id, "secret_key": conn.secret_access_key}
    return pafs.S3FileSystem(**options)


def duckdb_secret_options(conn: S3Connection) -> dict[str, str]:
    """The options of a DuckDB S3 secret for this server, credentials included (values only
    for statements run in memory, never for files: see `millpond.targets.duckdb.s3`)."""
    options: dict[str, str] = {"region": conn.region or "us-east-1"}
    if conn.endpoint_url:
        parts = urlsplit(conn.endpoint_url)
        options |= {
            "endpoint": parts.netloc,
            "url_style": "path",
            "use_ssl": "true" if parts.scheme == "https" else "false",
        }
    if conn.access_key_id and conn.secret_access_key:
        options |= {"key_id": conn.access_key_id, "secret": conn.secret_access_key}
    return options


def create_secret_sql(name: str, options: dict[str, str], scope: str | None = None) -> str:
    """`CREATE OR REPLACE TEMPORARY SECRET`: lives in the connection's memory only."""
    pairs = [f"{key} {_literal(value)}" for key, value in options.items()]
    if scope:
        pairs.append(f"scope {_literal(scope)}")
    return f"create or replace temporary secret {name} (type s3, {', '.join(pairs)})"


def _literal(text: str) -> str:
    if text in ("true", "false"):
        return text
    return "'" + text.replace("'", "''") + "'"
