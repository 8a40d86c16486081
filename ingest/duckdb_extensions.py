"""DuckDB extensions from their wheels, offline.

The `duckdb-extension-<name>` wheels carry the extension binary but do not register it, and a
fresh machine has nothing in ~/.duckdb/extensions: LOAD is tried first, and only when it fails
is the bundled file installed (once per machine) and loaded.
"""

from __future__ import annotations

import glob
import importlib
import os

import duckdb

# extension name -> the module of its wheel
WHEELS = {
    "postgres_scanner": "duckdb_extension_postgres",
    "mysql_scanner": "duckdb_extension_mysql",
    "httpfs": "duckdb_extension_httpfs",
}


class ExtensionMissing(Exception):
    """An extension that is neither installed nor bundled in an installed wheel."""

    retryable = False


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """LOAD the extension, installing it from its wheel first when needed."""
    try:
        con.execute(f"LOAD {name}")
        return
    except duckdb.Error:
        pass
    module_name = WHEELS.get(name)
    try:
        module = importlib.import_module(module_name or "")
    except ImportError:
        raise ExtensionMissing(
            f"DuckDB extension {name!r} is not installed and no wheel bundles it "
            f"(pip install {(module_name or name).replace('_', '-')})"
        ) from None
    folder = os.path.dirname(module.__file__ or "")
    found = glob.glob(os.path.join(folder, "extensions", "*", "*.duckdb_extension"))
    if not found:
        raise ExtensionMissing(f"{module_name} holds no extension binary")
    con.execute(f"INSTALL '{found[0]}'")
    con.execute(f"LOAD {name}")
