"""The `monitors:` section of millpond.yml and the per-table monitor keys every source table has.

Freshness and volume checks are computed from the run ledger (no warehouse query): how many
rows each source table landed per run and when it last landed, how many rows each published
mart had per published run. Defaults are on for volume (it needs a history of runs before it
can say anything) and on for freshness only where a cadence is declared (`expect_every`).
See docs/monitoring.md.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Severity = Literal["warn", "error"]

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")


def parse_duration(text: str) -> timedelta:
    """`1d`, `6h`, `90m`, `1d12h`, `2w` as a timedelta; a ValueError says what is accepted."""
    value = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit (w, d, h, m, s), "
            "e.g. 1d, 6h, 90m or 1d12h"
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return timedelta(seconds=seconds)


def _duration_text(value: Any) -> Any:
    """Check a duration where it is read, keeping the user's spelling (`1d`) in the config."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        value = f"{value}s"  # a bare number is seconds
    if isinstance(value, str):
        parse_duration(value)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VolumeOverride(_Strict):
    """A table's or a mart's own volume settings (`volume: false` switches its check off,
    `volume: {severity: error}` changes one setting); unset keys take `monitors.volume`'s."""

    enabled: bool = True
    k: float | None = Field(None, gt=0)
    runs: int | None = Field(None, ge=2, le=1000)
    min_history: int | None = Field(None, ge=2)
    min_relative: float | None = Field(None, ge=0)
    min_rows: int | None = Field(None, ge=0)
    severity: Severity | None = None

    @model_validator(mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        """`false` / `true` are the off and on switches."""
        return {"enabled": value} if isinstance(value, bool) else value


class VolumeSettings(_Strict):
    """How a row count is judged against its history (see millpond.nodes.monitors.stats)."""

    k: float = Field(5.0, gt=0)  # how many MADs from the median a count may be
    runs: int = Field(14, ge=2, le=1000)  # the history: the last N successful runs
    min_history: int = Field(5, ge=2)  # fewer runs than this: no judgement yet
    # The band is at least ± this share of the median (a flat history is not a zero band)...
    min_relative: float = Field(0.2, ge=0)
    min_rows: int = Field(10, ge=0)  # ...and at least ± this many rows
    severity: Severity = "warn"


class VolumeMonitor(VolumeSettings):
    """`monitors.volume`: row counts per run against the history of earlier runs."""

    enabled: bool = True
    # Check the published marts' row counts too (before publish, so an error blocks it).
    marts: bool = True
    # Per mart (`schema.name` as the ledger's row counts name it, or the bare name): false to
    # leave it out, or its own settings.
    relations: dict[str, VolumeOverride] = Field(default_factory=dict)

    @field_validator("min_history")
    @classmethod
    def _history_fits(cls, value: int, info: Any) -> int:
        runs = info.data.get("runs")
        if runs is not None and value > runs:
            raise ValueError(f"must be at most `runs` ({runs}), the runs the history holds")
        return value

    def settings(self, override: VolumeOverride | None = None) -> VolumeSettings | None:
        """The settings that apply to one table or mart, or None when it is not checked."""
        if not self.enabled or (override is not None and not override.enabled):
            return None
        base = VolumeSettings(
            k=self.k,
            runs=self.runs,
            min_history=self.min_history,
            min_relative=self.min_relative,
            min_rows=self.min_rows,
            severity=self.severity,
        )
        if override is not None:
            chosen = override.model_dump(exclude_none=True, exclude={"enabled"})
            base = base.model_copy(update=chosen)
            if base.min_history > base.runs:
                base = base.model_copy(update={"min_history": base.runs})
        return base

    def for_relation(self, relation: str) -> VolumeSettings | None:
        if not self.marts:
            return None
        name = relation.rsplit(".", 1)[-1]
        override = self.relations.get(relation, self.relations.get(name))
        return self.settings(override)


class FreshnessMonitor(_Strict):
    """`monitors.freshness`: a source table that has not landed for longer than its
    `expect_every` raises an alert, checked at the end of every run (a run with nothing new
    included) and by `millpond check-freshness`."""

    enabled: bool = True
    severity: Severity = "warn"
    # The cadence of every table that does not set its own (unset: only tables with one).
    expect_every: str | None = None

    @field_validator("expect_every", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return _duration_text(value)


class MonitorsConfig(_Strict):
    """The `monitors:` section: volume and freshness checks from the run ledger."""

    volume: VolumeMonitor = VolumeMonitor()
    freshness: FreshnessMonitor = FreshnessMonitor()


class TableMonitors(_Strict):
    """The monitor keys of one source table (every source kind's table config has them):
    `expect_every: 1d` (or false: no freshness check for this table) and `volume: false` (or
    its own volume settings)."""

    expect_every: str | Literal[False] | None = None
    volume: VolumeOverride = VolumeOverride()

    @field_validator("expect_every", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is True:
            raise ValueError("write a duration such as 1d or 6h, or false for no check")
        return _duration_text(value)

    def read_spec(self) -> dict[str, Any]:
        """The table's settings without its monitor keys: what identifies a read (a cadence
        or a volume setting changed is not a new read of the table)."""
        return self.model_dump(mode="json", exclude={"expect_every", "volume"})


def table_monitors(table_config: Any) -> TableMonitors:
    """A table's monitor keys; a source kind whose table config has none gets the defaults."""
    if isinstance(table_config, TableMonitors):
        return table_config
    return TableMonitors(
        expect_every=getattr(table_config, "expect_every", None),
        volume=getattr(table_config, "volume", VolumeOverride()),
    )


def table_volume(monitors: MonitorsConfig, table_config: Any) -> VolumeSettings | None:
    """The volume settings of one source table, or None when it is not checked."""
    return monitors.volume.settings(table_monitors(table_config).volume)


def table_cadence(monitors: MonitorsConfig, table_config: Any) -> timedelta | None:
    """How often a source table is expected to land, or None when freshness is not checked."""
    if not monitors.freshness.enabled:
        return None
    own = table_monitors(table_config).expect_every
    if own is False:
        return None
    chosen = own or monitors.freshness.expect_every
    return parse_duration(chosen) if chosen else None
