"""Run ids: what the deployment adopts as a run id, and what it renames."""

from __future__ import annotations

from types import SimpleNamespace

from millpond.core.runid import is_run_id, new_run_id
from millpond.runtime.deployment import trigger_of


def test_new_run_ids_are_run_ids_and_prefect_names_are_not() -> None:
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50 and all(is_run_id(i) for i in ids)
    assert sorted(ids)[0][:8].isdigit()
    for name in ("elfish-mayfly", "", None, "20261202T035000Z-abc", "x20261202T035000Z-abcdef"):
        assert not is_run_id(name)


def test_the_trigger_comes_from_how_the_flow_run_was_made() -> None:
    assert trigger_of(SimpleNamespace(auto_scheduled=True, tags=["millpond"])) == "schedule"
    assert trigger_of(SimpleNamespace(auto_scheduled=False, tags=["millpond:api"])) == "api"
    assert trigger_of(SimpleNamespace(auto_scheduled=False, tags=[])) == "ui"
