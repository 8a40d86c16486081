"""Every registered target end to end: the same project, the same lake, `--target <name>`.

An equality test builds scale 0.01 on each registered target (DuckDB, PostgreSQL, and any
target registered after them) and compares every published mart, read through each target's
own marts reader: row counts, and per column the non-null count, min and max, and for numbers
the sum. Numeric tolerance: |a - b| <= 1e-6 * max(1, |a|) (averages are floating point on every
engine; decimal sums agree exactly). A model broken on one target only must make the
comparison fail.
"""

from __future__ import annotations

import decimal
import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import REPO, millpond
from contract.cases import TargetCase
from contract.kinds import target_case
from serve_helpers import api_for

from millpond.core.config import MillpondConfig
from millpond.core.config_loading import load_config
from millpond.core.registry import TARGETS

pytestmark = pytest.mark.e2e

PUBLISHED = ("marts", "aggregates")


def target_env(case: TargetCase) -> dict[str, str]:
    """The target's contract case as MILLPOND_WAREHOUSE__<KEY> overrides (the short form the
    repo's millpond.yml uses: a key beside `target` belongs to the chosen target)."""
    return {f"MILLPOND_WAREHOUSE__{key.upper()}": str(value) for key, value in case.section.items()}


def stack_on(project: Path, target: str, env: dict[str, str]) -> MillpondConfig:
    return load_config(project / "millpond.yml", {**env, "MILLPOND_WAREHOUSE__TARGET": target})


def published_marts(project: Path, target: str, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every published mart and aggregate of the target, read through its own marts reader
    (what the API serves), profiled alike whatever the engine."""
    config = stack_on(project, target, env)
    reader = TARGETS.get(target).reader(config)
    try:
        return {
            f"{schema}.{name}": profile(
                reader.batches(f"select * from {reader.relation(schema, name)}", []).read_all()
            )
            for schema, name in sorted(reader.relations())
            if schema in PUBLISHED
        }
    finally:
        reader.close()


def profile(table: pa.Table) -> dict[str, Any]:
    """Row count plus a checksum per column: non-null count, min, max, sum for numbers
    (computed by Arrow, so text compares byte by byte on every engine)."""
    result: dict[str, Any] = {"rows": table.num_rows}
    for name in table.column_names:
        column = table[name]
        if pa.types.is_null(column.type):
            result[name] = (0, None, None)
            continue
        bounds = pc.min_max(column)
        found = [len(column) - column.null_count, bounds["min"].as_py(), bounds["max"].as_py()]
        if (
            pa.types.is_integer(column.type)
            or pa.types.is_floating(column.type)
            or pa.types.is_decimal(column.type)
        ):
            found.append(pc.sum(column).as_py())
        result[name] = tuple(found)
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
                found.append(f"{mart}.{key}: {a} vs {b}")
    return found


def test_every_target_builds_equal_marts_and_a_broken_model_is_caught(
    project: Path,
    prefect_api: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, *others = TARGETS.names()
    assert others, "the equality test needs two registered targets"
    with ExitStack() as cases:
        envs = {
            name: target_env(cases.enter_context(target_case(name, request, tmp_path / name)))
            for name in TARGETS.names()
        }
        check_every_target(project, first, others, envs, tmp_path, monkeypatch)


def check_every_target(
    project: Path,
    first: str,
    others: list[str],
    envs: dict[str, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marts = {}
    for name in [first, *others]:
        done = millpond(project, "run", "--target", name, env=envs[name])
        assert done.returncode == 0, done.stdout + done.stderr
        assert "published snapshot: " in done.stdout
        marts[name] = published_marts(project, name, envs[name])

    left = marts[first]
    assert len(left) == 8 and left["marts.fct_orders"]["rows"] > 0
    for name in others:
        assert differences(left, marts[name]) == [], name

    for name in [first, *others]:
        # Raw relations hold every landed row on every target, once, from their partition.
        config = stack_on(project, name, envs[name])
        target = TARGETS.get(name).create(config.target_config, config)
        assert target.row_count("raw.erp__orders") == left["marts.fct_orders"]["rows"], name
        assert len(target.loaded_partitions("erp", "orders")) == 1, name
        target.release()

        # The API serves each target's published marts (the same rows as the first's).
        monkeypatch.setenv("MILLPOND_WAREHOUSE__TARGET", name)
        for key, value in envs[name].items():
            monkeypatch.setenv(key, value)
        with api_for(project / "millpond.yml", monkeypatch) as api:
            served = api.get("/marts/agg_pricing_summary", params={"limit": 10})
            assert served.status_code == 200, served.text
            assert served.json()["total"] == left["aggregates.agg_pricing_summary"]["rows"] == 4
            orders = api.get("/marts/fct_orders", params={"limit": 1, "format": "json"}).json()
            assert orders["total"] == left["marts.fct_orders"]["rows"]
        monkeypatch.delenv("MILLPOND_WAREHOUSE__TARGET")

    # The same project with one model broken on the last target only: the comparison fails.
    broken = tmp_path / "broken_dbt"
    shutil.copytree(REPO / "transform", broken)
    model = broken / "models" / "aggregates" / "agg_monthly_revenue.sql"
    model.write_text(
        model.read_text().replace(
            "    from orders\n\n),",
            "    from orders\n"
            "    {% if env_var('MILLPOND_TEST_BREAK', '') %}where order_key % 7 <> 0{% endif %}"
            "\n\n),",
        )
    )
    last = others[-1]
    rerun = millpond(
        project,
        "run",
        "--target",
        last,
        env={**envs[last], "MILLPOND_DBT__PROJECT_DIR": str(broken), "MILLPOND_TEST_BREAK": "1"},
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    found = differences(left, published_marts(project, last, envs[last]))
    assert found and all(f.startswith("aggregates.agg_monthly_revenue.") for f in found), found
