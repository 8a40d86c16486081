"""The PostgreSQL target end to end: the same project, the same lake, `--target postgres`.

An equality test builds scale 0.01 on DuckDB and on PostgreSQL and compares every published
mart: row counts, and per column the non-null count, min and max, and for numbers the sum.
Numeric tolerance: |a - b| <= 1e-6 * max(1, |a|) (averages are floating point on both engines;
decimal sums agree exactly). A model broken on one engine only must make the comparison fail.
"""

from __future__ import annotations

import decimal
import shutil
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from conftest import REPO, millpond
from psycopg import sql
from serve_helpers import api_for

pytestmark = pytest.mark.e2e

NUMERIC = ("int", "numeric", "decimal", "double", "real", "float", "bigint", "hugeint")


def duckdb_marts(project: Path) -> dict[str, dict[str, Any]]:
    snapshot = project / ".millpond" / "published" / "current"
    with duckdb.connect(str(snapshot), read_only=True) as con:
        relations = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('marts', 'aggregates') order by 1, 2"
        ).fetchall()
        return {
            f"{schema}.{name}": profile(
                lambda q: con.execute(q).fetchall(),
                f'"{schema}"."{name}"',
                con.execute(
                    "select column_name, data_type from information_schema.columns "
                    "where table_schema = ? and table_name = ? order by ordinal_position",
                    [schema, name],
                ).fetchall(),
            )
            for schema, name in relations
        }


def postgres_marts(url: str, prefix: str = "published_") -> dict[str, dict[str, Any]]:
    with psycopg.connect(url) as conn:
        relations = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in (%s, %s) order by 1, 2",
            [f"{prefix}marts", f"{prefix}aggregates"],
        ).fetchall()
        return {
            f"{schema.removeprefix(prefix)}.{name}": profile(
                lambda q: conn.execute(q).fetchall(),
                sql.SQL("{}.{}")
                .format(sql.Identifier(schema), sql.Identifier(name))
                .as_string(conn),
                conn.execute(
                    "select column_name, data_type from information_schema.columns "
                    "where table_schema = %s and table_name = %s order by ordinal_position",
                    [schema, name],
                ).fetchall(),
                collate=' collate "C"',
            )
            for schema, name in relations
        }


def profile(
    query: Any, relation: str, columns: list[tuple[str, str]], collate: str = ""
) -> dict[str, Any]:
    """Row count plus a checksum per column: non-null count, min, max, sum for numbers."""
    result: dict[str, Any] = {"rows": query(f"select count(*) from {relation}")[0][0]}
    for column, data_type in columns:
        numeric = any(t in data_type.lower() for t in NUMERIC)
        text = "char" in data_type.lower() or "text" in data_type.lower()
        expr = f'"{column}"' + (collate if text else "")
        total = f', sum("{column}")' if numeric else ""
        row = query(f'select count("{column}"), min({expr}), max({expr}){total} from {relation}')
        result[column] = tuple(row[0])
    return result


def close(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float, decimal.Decimal)) and isinstance(
        b, (int, float, decimal.Decimal)
    ):
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)))
    return a == b


def differences(left: dict[str, dict[str, Any]], right: dict[str, dict[str, Any]]) -> list[str]:
    found = [f"{m}: only on one engine" for m in sorted(set(left) ^ set(right))]
    for mart in sorted(set(left) & set(right)):
        for key in sorted(set(left[mart]) | set(right[mart])):
            a, b = left[mart].get(key), right[mart].get(key)
            pairs = (
                zip(a, b, strict=True)
                if isinstance(a, tuple) and isinstance(b, tuple)
                else [(a, b)]
            )
            if (a is None) != (b is None) or not all(close(x, y) for x, y in pairs):
                found.append(f"{mart}.{key}: duckdb {a} vs postgres {b}")
    return found


def test_both_targets_build_equal_marts_and_a_broken_model_is_caught(
    project: Path,
    prefect_api: str,
    machine_pg: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"MILLPOND_WAREHOUSE__URL": machine_pg}
    on_duckdb = millpond(project, "run", env=env)
    assert on_duckdb.returncode == 0, on_duckdb.stdout + on_duckdb.stderr
    on_postgres = millpond(project, "run", "--target", "postgres", env=env)
    assert on_postgres.returncode == 0, on_postgres.stdout + on_postgres.stderr
    assert "published_marts" in on_postgres.stdout

    left, right = duckdb_marts(project), postgres_marts(machine_pg)
    assert len(left) == 8 and left["marts.fct_orders"]["rows"] > 0
    assert differences(left, right) == []

    # Raw tables hold every landed row on PostgreSQL, once, with their partition ids.
    with psycopg.connect(machine_pg) as conn:
        raw = conn.execute("select count(*), count(distinct _partition_id) from raw.erp__orders")
        assert raw.fetchone() == (left["marts.fct_orders"]["rows"], 1)

    # The API serves the PostgreSQL target's published marts (the same rows as DuckDB's).
    monkeypatch.setenv("MILLPOND_WAREHOUSE__TARGET", "postgres")
    monkeypatch.setenv("MILLPOND_WAREHOUSE__URL", machine_pg)
    with api_for(project / "millpond.yml", monkeypatch) as api:
        served = api.get("/marts/agg_pricing_summary", params={"limit": 10})
        assert served.status_code == 200, served.text
        assert served.json()["total"] == left["aggregates.agg_pricing_summary"]["rows"] == 4
        orders = api.get("/marts/fct_orders", params={"limit": 1, "format": "json"}).json()
        assert orders["total"] == left["marts.fct_orders"]["rows"]
    monkeypatch.delenv("MILLPOND_WAREHOUSE__TARGET")

    # The same project with one model broken on PostgreSQL only: the comparison fails there.
    broken = tmp_path / "broken_dbt"
    shutil.copytree(REPO / "transform", broken)
    model = broken / "models" / "aggregates" / "agg_monthly_revenue.sql"
    model.write_text(
        model.read_text().replace(
            "    from orders\n\n),",
            "    from orders\n"
            "    {% if target.type == 'postgres' %}where order_key % 7 <> 0{% endif %}\n\n),",
        )
    )
    rerun = millpond(
        project,
        "run",
        "--target",
        "postgres",
        env={**env, "MILLPOND_DBT__PROJECT_DIR": str(broken)},
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    found = differences(left, postgres_marts(machine_pg))
    assert found and all(f.startswith("aggregates.agg_monthly_revenue.") for f in found), found
