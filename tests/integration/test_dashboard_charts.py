"""The dashboard read at a glance, in headless Chromium, over a ledger of 30 runs whose last
finished run has 33 nodes, then 300: every chart draws, no two labels overlap, no label is cut
by its chart's edge, the slowest nodes and tables show the top ones by name and the rest in one
bar, the timeline shows the run's nodes, a failed node links to its log, and each size leaves
a PNG screenshot in .millpond/test-artifacts/."""

from __future__ import annotations

import datetime as dt
import json
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

START = dt.datetime(2026, 11, 1, 6, 0, tzinfo=dt.UTC)
LAST = "20261130T060000Z-last"
FAILED_NODE = "dbt.stg_erp__orders_with_a_rather_long_model_name_0008"


def node_ids(count: int) -> list[str]:
    """Extract, load and dbt nodes with long names, and publish: `count` in all."""
    ids = ["publish"]
    i = 0
    while len(ids) < count:
        kind = (
            "extract.erp.table",
            "load.erp.table",
            "dbt.stg_erp__orders_with_a_rather_long_model_name",
        )[i % 3]
        ids.insert(-1, f"{kind}_{i:04d}")
        i += 1
    return ids


def fill(url: str, buffer: Path, logs: Path, nodes: int) -> None:
    """29 finished runs (one failed, one abandoned, a nothing-new run of 0.4 s), a last
    finished run with `nodes` nodes (one failed, with a log line) and row counts up to
    1,000,000, and a run still going."""
    ledger = Ledger(url, buffer)
    for i in range(29):
        run = f"202611{i + 1:02d}T060000Z-{i:06d}"
        at = START + dt.timedelta(days=i)
        ledger.write(RunStarted(run, "prefect", "schedule", "duckdb", at=at))
        ledger.write(NodeStarted(run, "load.erp.orders", "load", 1, at=at))
        seconds = 0.4 if i == 20 else 30 + (i * 7) % 50
        ledger.write(NodeFinished(run, "load.erp.orders", 1, "success", int(seconds * 1000), at=at))
        status = "failed" if i == 10 else "abandoned" if i == 15 else "success"
        ledger.write(RunFinished(run, status, at=at + dt.timedelta(seconds=seconds)))
    at = START + dt.timedelta(days=29)
    ledger.write(RunStarted(LAST, "prefect", "schedule", "duckdb", at=at))
    ids = node_ids(nodes)
    assert FAILED_NODE in ids
    clock = 0.0
    for n, node in enumerate(ids):
        seconds = 40.0 if n % 50 == 7 else 0.5 + (n * 37 % 100) / 20
        begin = at + dt.timedelta(seconds=clock)
        ledger.write(NodeStarted(LAST, node, node.split(".")[0], 1, at=begin))
        failed = node == FAILED_NODE
        ledger.write(
            NodeFinished(
                LAST,
                node,
                1,
                "failed" if failed else "success",
                int(seconds * 1000),
                error="Runtime Error: division by zero </script><b>bold?</b>" if failed else None,
                at=begin + dt.timedelta(seconds=seconds),
            )
        )
        clock += seconds / 4  # a few nodes at a time
    counts = {
        f"marts.table_{i:04d}": (1_000_000 if i == 0 else 3 + (i * 7919) % 500_000)
        for i in range(nodes)
    }
    ledger.write(RowCounts(LAST, counts, at=at + dt.timedelta(seconds=clock)))
    ledger.write(RunFinished(LAST, "failed", at=at + dt.timedelta(seconds=clock + 50)))
    ledger.write(RunStarted("20261201T060000Z-going", "prefect", "schedule", "duckdb"))
    ledger.close()
    logs.mkdir(parents=True)
    record = {
        "time": {"timestamp": at.timestamp() + 3},
        "level": {"name": "ERROR"},
        "message": "dbt model failed: Runtime Error: division by zero",
        "extra": {"run_id": LAST, "node_id": FAILED_NODE},
    }
    (logs / f"{LAST}.jsonl").write_text(json.dumps({"text": "", "record": record}) + "\n")


@pytest.fixture
def dashboard(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    machine_pg: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """The app under uvicorn on a free port over a ledger filled for `request.param` nodes."""
    import uvicorn
    from serve_helpers import reset_caches

    migrate(machine_pg)
    fill(machine_pg, tmp_path / "buffer.jsonl", tmp_path / ".millpond" / "logs", request.param)
    (tmp_path / "millpond.yml").write_text(f"metadata: {{url: '{machine_pg}'}}\n")
    monkeypatch.setenv("MILLPOND_CONFIG", str(tmp_path / "millpond.yml"))
    monkeypatch.delenv("MILLPOND_API_KEYS", raising=False)
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


# Every label of every chart: the text shown (not its tooltip), its box, and its chart's box
# (in page pixels).
LABELS = """
return [...document.querySelectorAll('.chart svg')].map(svg => {
  const s = svg.getBoundingClientRect();
  return {
    chart: svg.closest('figure').id,
    svg: [s.left, s.top, s.right, s.bottom],
    texts: [...svg.querySelectorAll('text')].map(t => {
      const r = t.getBoundingClientRect();
      const shown = [...t.childNodes].filter(n => n.nodeType === 3).map(n => n.nodeValue);
      return {
        text: shown.join(''), cls: t.getAttribute('class'), box: [r.left, r.top, r.right, r.bottom],
      };
    }),
  };
});
"""


def wait_drawn(driver: Any, times: int) -> None:
    """Until the page has drawn its charts `times` times (once at load, again on a resize)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if int(driver.execute_script("return document.body.dataset.drawn || 0")) >= times:
            return
        time.sleep(0.2)
    raise AssertionError(f"the charts were not drawn {times} time(s)")


def overlaps(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5


def label_problems(charts: list[dict[str, Any]]) -> list[str]:
    problems = []
    for chart in charts:
        texts, (left, top, right, bottom) = chart["texts"], chart["svg"]
        for t in texts:
            x0, y0, x1, y1 = t["box"]
            if x0 < left - 0.5 or x1 > right + 0.5 or y0 < top - 0.5 or y1 > bottom + 0.5:
                problems.append(f"{chart['chart']}: {t['text']!r} cut by the chart's edge")
        for i, a in enumerate(texts):
            for b in texts[i + 1 :]:
                if overlaps(a["box"], b["box"]):
                    problems.append(f"{chart['chart']}: {a['text']!r} overlaps {b['text']!r}")
    return problems


@pytest.mark.parametrize("dashboard", [33, 300], indirect=True, ids=["33-nodes", "300-nodes"])
def test_the_dashboard_stays_readable(dashboard: str, request: pytest.FixtureRequest) -> None:
    nodes = request.node.callspec.params["dashboard"]
    artifacts = REPO / ".millpond" / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    driver = chromium_driver()
    try:
        driver.set_window_size(1400, 2600)  # the whole page in one screenshot, no scrollbar
        driver.get(dashboard + "/")
        wait_drawn(driver, 1)
        bars = driver.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('figure')]"
            ".map(f => [f.id, Number(f.querySelector('.chart').dataset.bars)]))"
        )
        charts = driver.execute_script(LABELS)
        screenshot = artifacts / f"dashboard-{nodes}-nodes.png"
        driver.save_screenshot(str(screenshot))
        # a narrow window (one chart per row) redraws and stays readable too
        driver.set_window_size(760, 2600)
        wait_drawn(driver, 2)
        narrow = driver.execute_script(LABELS)
        driver.save_screenshot(str(artifacts / f"dashboard-{nodes}-nodes-narrow.png"))
        log_href = driver.execute_script(
            "return [...document.querySelectorAll('#timeline a.failed')].map(a => a.href.baseVal)"
        )
        failures = driver.execute_script(
            "return [...document.querySelectorAll('table.failures a')].map(a => a.href)"
        )
        error_shown = driver.execute_script(
            "return document.querySelector('table.failures td.error').textContent"
        )
        texts = [t["text"] for c in charts for t in c["texts"]]
    finally:
        driver.quit()

    assert screenshot.stat().st_size > 10_000
    problems = label_problems(charts) + label_problems(narrow)
    assert not problems, "\n".join(problems)
    assert max(c["svg"][2] for c in narrow) <= 760  # the charts follow the window
    assert bars["chart-runs"] == 30  # the 29 finished runs and the one still going
    # the 15 slowest by name, the rest in one bar (33 nodes: 18 others; 300: 285)
    assert bars["chart-slowest"] == 16 and f"+{nodes - 15} other nodes (total)" in texts
    assert bars["chart-tables"] == 16 and f"+{nodes - 15} other tables (total)" in texts
    assert "1,000,000" in texts and "rows (log scale)" in texts
    # the timeline: every node by name at 33; at 300 the 39 longest and one folded lane
    assert bars["timeline"] == (33 if nodes == 33 else 40)
    if nodes == 300:
        assert "+261 other nodes" in texts
    # y ticks of the runs chart are distinct (a run of 0.4 s among runs of a minute)
    runs_chart = next(c for c in charts if c["chart"] == "chart-runs")
    ticks = [t["text"] for t in runs_chart["texts"] if t["cls"] == "tick y"]
    assert len(ticks) == len(set(ticks)) >= 3, ticks
    # the failed node links to its log, from the timeline and from the failures table
    expected = f"/runs/{LAST}/nodes/{FAILED_NODE}/log"
    assert log_href == [expected]
    assert any(href.endswith(expected) for href in failures)
    assert error_shown.endswith("</script><b>bold?</b>")  # shown as text, the page intact
    log = httpx.get(dashboard + expected)
    assert log.status_code == 200 and "division by zero" in log.text and FAILED_NODE in log.text
    missing = httpx.get(dashboard + f"/runs/{LAST}/nodes/load.erp.nothing/log")
    assert missing.status_code == 404 and "load.erp.nothing" in missing.json()["detail"]
    assert httpx.get(dashboard + "/runs/no-such-run/nodes/x/log").status_code == 404
    # ?run= shows another run's nodes; a run the ledger does not know shows the default
    older = httpx.get(dashboard + "/", params={"run": "20261129T060000Z-000028"}).text
    assert '"timeline": {"run_id": "20261129T060000Z-000028"' in older
    unknown = httpx.get(dashboard + "/", params={"run": "no-such-run"})
    assert unknown.status_code == 200 and f'"timeline": {{"run_id": "{LAST}"' in unknown.text
