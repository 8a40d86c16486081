"""A DuckDB warehouse over an S3 lake: httpfs and a secret on every connection that reads it.

The raw views read `s3://` Parquet in place, so every connection that may scan them (millpond's
own, and dbt-duckdb's) needs the httpfs extension (installed offline from the
duckdb-extension-httpfs wheel) and an S3 secret. The secret is always TEMPORARY (in memory):
a persistent one would write the credentials under ~/.duckdb. In the generated dbt profile its
credentials are env_var() references that millpond sets in its own process (dbt_env), so the
profile file holds no secret value.
"""

from __future__ import annotations

from typing import Any

import duckdb

from millpond.core.config import LakeConfig
from millpond.ingest import s3
from millpond.ingest.duckdb_extensions import load_extension

SECRET_NAME = "millpond_lake"
KEY_ID_ENV = "MILLPOND_LAKE_S3_KEY_ID"
SECRET_ENV = "MILLPOND_LAKE_S3_SECRET"


class LakeAccess:
    """How DuckDB reaches the lake's bucket."""

    def __init__(self, lake: LakeConfig) -> None:
        self.lake = lake
        bucket, _ = s3.split_url(lake.url)
        self.scope = f"s3://{bucket}"

    def setup(self, con: duckdb.DuckDBPyConnection) -> None:
        """Load httpfs and create the lake's temporary secret on this connection."""
        load_extension(con, "httpfs")
        options = s3.duckdb_secret_options(self.lake)
        con.execute(s3.create_secret_sql(SECRET_NAME, options, self.scope))

    def dbt_secret(self) -> dict[str, Any]:
        """The secret for dbt-duckdb's profile `secrets:`, credentials as env_var() calls."""
        options: dict[str, Any] = s3.duckdb_secret_options(self.lake)
        if "key_id" in options:
            options["key_id"] = "{{ env_var('" + KEY_ID_ENV + "') }}"
            options["secret"] = "{{ env_var('" + SECRET_ENV + "') }}"
        return {"type": "s3", "name": SECRET_NAME, "scope": self.scope, **options}

    def dbt_env(self) -> dict[str, str]:
        if self.lake.access_key_id and self.lake.secret_access_key:
            return {KEY_ID_ENV: self.lake.access_key_id, SECRET_ENV: self.lake.secret_access_key}
        return {}

    def install(self) -> None:
        """Make sure httpfs sits in DuckDB's extension folder, so dbt-duckdb's autoload finds
        it on a fresh machine (nothing can be downloaded here)."""
        con = duckdb.connect()
        try:
            load_extension(con, "httpfs")
        finally:
            con.close()
