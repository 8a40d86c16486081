"""The dashboard behind API keys, in headless Chromium: the page asks for the key, a wrong one
is refused, the right one opens the dashboard (plots drawn), /docs and /metrics, the browser
session cannot trigger a run, and logging out closes it again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO, chromium_driver, free_port

from millpond.metadata.db import migrate
from millpond.metadata.ledger import Ledger
from millpond.metadata.records import NodeFinished, NodeStarted, RowCounts, RunFinished, RunStarted

pytestmark = pytest.mark.integration

KEY = "dashboard-key-7d1e"


def fill(url: str, buffer: Path) -> None:
    """Three runs with node durations and row counts: enough for every plot to draw."""
    ledger = Ledger(url, buffer)
    for i in range(3):
        run = f"2026112{i}T060000Z-00000{i}"
        ledger.write(RunStarted(run, "prefect", "schedule", "duckdb"))
        ledger.write(NodeStarted(run, "load.erp.orders", "load", 1))
        ledger.write(
            NodeFinished(run, "load.erp.orders", 1, "success", 100 + i, rows=1000 * (i + 1))
        )
        ledger.write(RowCounts(run, {"marts.fct_orders": 500 * (i + 1)}))
        ledger.write(RunFinished(run, "success"))
    ledger.close()


@pytest.fixture
def live_server(tmp_path: Path, machine_pg: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The app under uvicorn on a free port, with an API key set."""
    import uvicorn
    from serve_helpers import reset_caches

    migrate(machine_pg)
    fill(machine_pg, tmp_path / "buffer.jsonl")
    (tmp_path / "millpond.yml").write_text(f"metadata: {{url: '{machine_pg}'}}\n")
    monkeypatch.setenv("MILLPOND_CONFIG", str(tmp_path / "millpond.yml"))
    monkeypatch.setenv("MILLPOND_API_KEYS", KEY)
    reset_caches()
    from millpond.serve.app import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    reset_caches()


def wait_for(driver: Any, script: str, ok: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    value = driver.execute_script(script)
    while not ok(value) and time.monotonic() < deadline:
        time.sleep(0.2)
        value = driver.execute_script(script)
    return value


def log_in(driver: Any, key: str) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, "key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.ID, "login").click()


def test_the_dashboard_asks_for_the_key_and_then_renders(live_server: str) -> None:
    assert httpx.get(live_server + "/runs").status_code == 401  # no key, no data
    artifacts = REPO / ".millpond" / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    driver = chromium_driver()
    try:
        driver.get(live_server + "/")
        assert driver.execute_script("return !!document.getElementById('key')")
        assert "fct_orders" not in driver.page_source and "2026112" not in driver.page_source

        log_in(driver, "not-the-key")
        said = wait_for(driver, "return document.body.innerText", lambda t: "not accepted" in t)
        assert "not accepted" in said

        log_in(driver, KEY)
        canvases = wait_for(
            driver, "return document.querySelectorAll('.uplot canvas').length", lambda n: n >= 3
        )
        points = driver.execute_script(
            "return [...document.querySelectorAll('.plot')].map(p => Number(p.dataset.points))"
        )
        assert canvases >= 3 and len(points) == 3 and all(p > 0 for p in points), points
        assert "2026112" in driver.page_source
        driver.save_screenshot(str(artifacts / "dashboard-login.png"))

        # The session reads (what the page's links lead to) but cannot start a run.
        statuses = driver.execute_async_script(
            """const done = arguments[arguments.length - 1];
            Promise.all([fetch('/runs'), fetch('/metrics'), fetch('/runs', {method: 'POST'})])
              .then(rs => done(rs.map(r => r.status)));"""
        )
        assert statuses == [200, 200, 401], statuses

        driver.get(live_server + "/docs")
        ops = wait_for(
            driver, "return document.querySelectorAll('.opblock').length", lambda n: n >= 5
        )
        assert ops >= 5, "Swagger UI did not load the schema with the session"

        driver.get(live_server + "/")
        from selenium.webdriver.common.by import By

        driver.find_element(By.LINK_TEXT, "log out").click()
        wait_for(driver, "return !!document.getElementById('key')", bool)
        driver.get(live_server + "/runs")
        assert "2026112" not in driver.page_source
    finally:
        driver.quit()
