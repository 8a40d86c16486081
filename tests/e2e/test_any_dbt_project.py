"""Any dbt project runs unchanged: its own profile name, no profiles.yml, models in `main`.

Tried as a new user would: a team's project with a seed and models in DuckDB's default schema,
pointed at from millpond.yml, nothing else.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from conftest import REPO, millpond

pytestmark = pytest.mark.e2e

FIXTURES = REPO / "tests" / "fixtures"
SECRET = "tok-3f9a7c1e5d"


@pytest.fixture
def acme(tmp_path: Path) -> Path:
    root = tmp_path / "acme"
    shutil.copytree(FIXTURES / "acme_dbt", root / "dbt")
    shutil.copytree(FIXTURES / "acme_inbox", root / "inbox" / "shop")
    (root / "millpond.yml").write_text(
        "project: acme\n"
        "dbt:\n"
        "  project_dir: dbt\n"
        "  vars: {api_token: '${MY_API_TOKEN}'}\n"
        "sources:\n"
        "  shop: {kind: files, path: inbox/shop, tables: [orders]}\n"
    )
    yield root
    millpond(root, "down")


def test_a_third_party_project_runs_without_profiles_and_publishes_main(
    acme: Path, prefect_api: str
) -> None:
    assert not (acme / "dbt" / "profiles.yml").exists()
    result = millpond(acme, "run", env={"MY_API_TOKEN": SECRET})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "published snapshot" in result.stdout

    # The profile millpond wrote carries the project's profile name and the warehouse path.
    profile = (acme / ".millpond" / "dbt" / "profile" / "duckdb" / "profiles.yml").read_text()
    assert profile.startswith("acme_analytics:")
    assert str(acme / ".millpond" / "warehouse.duckdb") in profile

    # The table model and the seed, in schema main, are what readers get.
    with duckdb.connect(str(acme / ".millpond" / "published" / "current"), read_only=True) as con:
        rows = con.execute(
            "select country_name, order_count, revenue from main.orders_by_country order by 1"
        ).fetchall()
        seed = con.execute("select count(*) from main.country_codes").fetchone()
    assert [(r[0], r[1], float(r[2])) for r in rows] == [
        ("France", 2, 21.0),
        ("Germany", 2, 15.75),
        ("Netherlands", 1, 7.0),
    ]
    assert seed == (3,)

    # A dbt var filled from a secret never reaches dbt's own log files.
    logs = list((acme / ".millpond" / "dbt" / "logs").glob("*"))
    assert logs, "dbt wrote no log file"
    for log in logs:
        assert SECRET not in log.read_text(errors="replace"), log


def test_an_explicit_profiles_dir_still_wins(acme: Path, prefect_api: str, tmp_path: Path) -> None:
    own = tmp_path / "own-profile"
    own.mkdir()
    elsewhere = tmp_path / "elsewhere.duckdb"
    (own / "profiles.yml").write_text(
        f"acme_analytics:\n  target: dev\n  outputs:\n"
        f"    dev: {{type: duckdb, path: '{elsewhere}', threads: 1}}\n"
    )
    result = millpond(
        acme,
        "graph",
        env={"MY_API_TOKEN": SECRET, "MILLPOND_DBT__PROFILES_DIR": str(own)},
    )
    assert result.returncode == 0, result.stderr
    assert "dbt.orders_by_country" in result.stdout
    assert not (acme / ".millpond" / "dbt" / "profile").exists()
