"""The volume judgement (median and MAD of a history, its floors) and the `monitors:` keys
of millpond.yml, whose errors name the key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from millpond.core.config import ConfigError
from millpond.core.config_loading import load_config
from millpond.core.monitoring import (
    MonitorsConfig,
    VolumeSettings,
    parse_duration,
    table_cadence,
    table_volume,
)
from millpond.nodes.monitors.stats import judge, median_and_mad

DEFAULTS = VolumeSettings()


def test_median_and_mad_of_an_odd_and_an_even_history() -> None:
    assert median_and_mad([1, 2, 3, 4, 100]) == (3.0, 1.0)  # one outlier moves neither
    assert median_and_mad([10, 20]) == (15.0, 5.0)
    with pytest.raises(ValueError, match="at least one"):
        median_and_mad([])


def test_a_tenth_of_the_usual_rows_is_an_anomaly_and_the_usual_rows_are_not() -> None:
    history = [1000, 1040, 980, 1010, 995, 1020, 990]
    assert judge(100, history, DEFAULTS).anomalous
    assert not judge(1005, history, DEFAULTS).anomalous
    assert judge(10_000, history, DEFAULTS).anomalous  # ten times as many, too


def test_too_little_history_is_no_judgement() -> None:
    verdict = judge(1, [1000, 1000, 1000, 1000], DEFAULTS)  # 4 runs < min_history 5
    assert not verdict.judged and not verdict.anomalous and verdict.history == 4
    assert judge(1, [1000] * 5, DEFAULTS).anomalous
    assert not judge(1, [], DEFAULTS).judged


def test_a_flat_history_has_a_relative_floor_not_a_zero_band() -> None:
    """MAD 0 (every run the same count): a few rows more is noise, a tenth is not."""
    flat = [1000] * 10
    verdict = judge(1030, flat, DEFAULTS)
    assert verdict.mad == 0 and not verdict.anomalous
    assert (verdict.low, verdict.high) == (800.0, 1200.0)  # ± min_relative 0.2 of 1000
    assert judge(100, flat, DEFAULTS).anomalous
    tight = DEFAULTS.model_copy(update={"min_relative": 0.0, "min_rows": 0})
    assert judge(1001, flat, tight).anomalous  # without floors any change would be one


def test_a_tiny_table_has_an_absolute_floor() -> None:
    assert not judge(9, [3, 3, 4, 3, 3], DEFAULTS).anomalous  # within ± min_rows 10
    assert judge(30, [3, 3, 4, 3, 3], DEFAULTS).anomalous
    assert judge(0, [1000] * 5, DEFAULTS).low == 800.0  # the band never goes below zero...
    assert judge(0, [5] * 5, DEFAULTS).low == 0.0


def test_only_the_newest_runs_count() -> None:
    """History is newest first: an old regime beyond `runs` no longer sets the band."""
    history = [100] * 14 + [100_000] * 20
    assert not judge(100, history, DEFAULTS).anomalous
    assert judge(100_000, history, DEFAULTS).anomalous


def test_durations() -> None:
    assert parse_duration("1d") == timedelta(days=1)
    assert parse_duration("6h") == timedelta(hours=6)
    assert parse_duration("1d12h") == timedelta(hours=36)
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("2w") == timedelta(weeks=2)
    for bad in ("", "1x", "d", "1 day", "0h", "-1d"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_per_table_overrides_and_off_switches() -> None:
    monitors = MonitorsConfig()
    assert table_volume(monitors, None) == DEFAULTS  # a kind without monitor keys
    off = MonitorsConfig.model_validate({"volume": {"enabled": False}})
    assert table_volume(off, None) is None
    table = {"volume": {"severity": "error", "k": 3}, "expect_every": "6h"}
    from millpond.core.monitoring import TableMonitors

    spec = TableMonitors.model_validate(table)
    settings = table_volume(monitors, spec)
    assert settings is not None and settings.severity == "error" and settings.k == 3
    assert table_volume(monitors, TableMonitors.model_validate({"volume": False})) is None
    assert table_cadence(monitors, spec) == timedelta(hours=6)
    assert table_cadence(monitors, TableMonitors()) is None  # no cadence, no freshness check
    every = MonitorsConfig.model_validate({"freshness": {"expect_every": "1d"}})
    assert table_cadence(every, TableMonitors()) == timedelta(days=1)
    assert table_cadence(every, TableMonitors.model_validate({"expect_every": False})) is None
    quiet = MonitorsConfig.model_validate({"freshness": {"enabled": False}})
    assert table_cadence(quiet, spec) is None
    marts = MonitorsConfig.model_validate(
        {"volume": {"relations": {"fct_orders": False, "main.agg_x": {"severity": "error"}}}}
    )
    assert marts.volume.for_relation("main.fct_orders") is None
    agg = marts.volume.for_relation("main.agg_x")
    assert agg is not None and agg.severity == "error"
    no_marts = MonitorsConfig.model_validate({"volume": {"marts": False}})
    assert no_marts.volume.for_relation("main.fct_orders") is None


def write(tmp_path: Path, extra: str, table: str = "orders: {}") -> Path:
    (tmp_path / "inbox").mkdir(exist_ok=True)
    path = tmp_path / "millpond.yml"
    path.write_text(
        f"sources:\n  shop: {{kind: files, path: inbox, tables: {{{table}}}}}\n" + extra
    )
    return path


@pytest.mark.parametrize(
    ("extra", "table", "named"),
    [
        ("", "orders: {expect_every: 1 day}", "sources.shop.tables.orders.expect_every"),
        ("", "orders: {expect_every: true}", "sources.shop.tables.orders.expect_every"),
        ("", "orders: {volume: {k: 0}}", "sources.shop.tables.orders.volume.k"),
        ("", "orders: {volum: false}", "sources.shop.tables.orders.volum"),
        ("monitors: {volume: {k: -1}}\n", "orders: {}", "monitors.volume.k"),
        ("monitors: {volume: {runs: 3, min_history: 5}}\n", "orders: {}", "min_history"),
        ("monitors: {volume: {severity: fatal}}\n", "orders: {}", "monitors.volume.severity"),
        ("monitors: {freshness: {expect_every: soon}}\n", "orders: {}", "expect_every"),
        ("monitors: {freshnes: {}}\n", "orders: {}", "monitors.freshnes"),
        ("notify: [{on: [anomalies], webhook: 'http://x/'}]\n", "orders: {}", "notify.0.on"),
    ],
)
def test_a_bad_monitor_key_is_named(tmp_path: Path, extra: str, table: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, extra, table))
    assert named in str(caught.value), str(caught.value)


def test_good_monitor_keys_load(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "monitors:\n  volume: {k: 4, runs: 10, min_history: 3, severity: error}\n"
            "  freshness: {expect_every: 2d, severity: error}\n"
            "notify: [{on: [anomaly, freshness], webhook: 'http://127.0.0.1:9/'}]\n",
            "orders: {expect_every: 6h, volume: false}, items: {expect_every: false}",
        )
    )
    assert config.monitors.volume.k == 4
    orders = config.sources["shop"].tables["orders"]
    assert table_cadence(config.monitors, orders) == timedelta(hours=6)
    assert table_volume(config.monitors, orders) is None
    assert table_cadence(config.monitors, config.sources["shop"].tables["items"]) is None


def test_notifications_raise_the_anomaly_and_freshness_events(tmp_path: Path) -> None:
    from millpond.notify.formats import body
    from millpond.notify.report import alert_report, build_report, events_of

    config = load_config(write(tmp_path, ""))
    volume = {"monitor": "volume", "severity": "warn", "message": "shop.orders landed 100 rows"}
    stale = {"monitor": "freshness", "severity": "error", "message": "shop.orders: stale"}
    plain = build_report(config, "r1", "success", None, [], rows=5, duration_ms=10)
    assert events_of(plain) == {"success"} and plain["anomalies"] == []
    both = build_report(
        config, "r1", "success", None, [], rows=5, duration_ms=10, anomalies=[volume, stale]
    )
    assert events_of(both) == {"success", "anomaly", "freshness"}
    assert "volume (warn): shop.orders landed 100 rows" in body("slack", both, ["anomaly"])["text"]
    outside = alert_report(config, [stale])
    assert events_of(outside) == {"freshness"}  # no run: neither success nor failure
    assert body("slack", outside, ["freshness"])["text"].startswith(
        "millpond millpond: 1 freshness alert\n"
    )
    assert body("teams", outside, ["freshness"])["title"].endswith("1 freshness alert")


def test_the_example_of_docs_monitoring_is_a_valid_configuration(tmp_path: Path) -> None:
    import re

    import yaml
    from conftest import REPO

    from millpond.core.config import config_model

    text = (REPO / "docs" / "monitoring.md").read_text()
    example = yaml.safe_load(re.findall(r"```yaml\n(.*?)```", text, re.S)[0])
    config = config_model()(root=tmp_path, **example)
    tables = config.sources["erp"].tables
    assert table_cadence(config.monitors, tables["orders"]) == timedelta(days=1)
    assert table_cadence(config.monitors, tables["nation"]) is None
    assert table_volume(config.monitors, tables["nation"]) is None
    lineitem = table_volume(config.monitors, tables["lineitem"])
    assert lineitem is not None and lineitem.severity == "error"
    assert config.monitors.volume.for_relation("main.agg_daily_revenue") is None
