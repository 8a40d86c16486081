"""Airflow's run type, however Airflow renders it, is recorded as millpond's trigger."""

from __future__ import annotations

from typing import Any

import pytest

from millpond.runtime import task_run


@pytest.mark.parametrize(
    ("rendered", "trigger"),
    [
        ("DagRunType.MANUAL", "manual"),
        ("manual", "manual"),
        ("DagRunType.SCHEDULED", "schedule"),
        ("scheduled", "schedule"),
        ("asset_triggered", "asset_triggered"),
        ("", None),
    ],
)
def test_run_type_becomes_the_trigger(
    rendered: str, trigger: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(
        task_run, "open_run", lambda ctx, value, process: seen.update(t=value, p=process)
    )
    monkeypatch.setattr(task_run, "check_warehouse", lambda ctx: None)  # no warehouse here
    task_run.open_task_run(None, rendered)  # type: ignore[arg-type]
    assert seen == {"t": trigger, "p": False}
