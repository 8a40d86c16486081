"""Is a row count normal for its history? Median and MAD (median absolute deviation), which a
few odd runs in the history do not drag along as a mean and a standard deviation would.

The band is `median ± max(k·MAD, min_relative·median, min_rows)`: the two floors keep a flat
history (MAD 0: every run the same count) or a tiny table from flagging ordinary noise. With
fewer than `min_history` runs in the history there is no judgement at all.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from millpond.core.monitoring import VolumeSettings


def median_and_mad(values: Sequence[float]) -> tuple[float, float]:
    """The median of the values and the median of their distances from it (unscaled)."""
    if not values:
        raise ValueError("no values: a median needs at least one")
    center = float(statistics.median(values))
    return center, float(statistics.median(abs(v - center) for v in values))


@dataclass(frozen=True)
class Verdict:
    """A count judged against its history; `low`/`high` are None without enough history."""

    observed: int
    history: int  # how many runs the judgement used
    median: float | None = None
    mad: float | None = None
    low: float | None = None
    high: float | None = None

    @property
    def judged(self) -> bool:
        return self.low is not None

    @property
    def anomalous(self) -> bool:
        if self.low is None or self.high is None:
            return False
        return not self.low <= self.observed <= self.high


def judge(observed: int, history: Sequence[int], settings: VolumeSettings) -> Verdict:
    """Judge `observed` against the newest `settings.runs` counts of `history` (newest first)."""
    recent = list(history)[: settings.runs]
    if len(recent) < settings.min_history:
        return Verdict(observed, len(recent))
    center, mad = median_and_mad(recent)
    half = max(settings.k * mad, settings.min_relative * abs(center), float(settings.min_rows))
    return Verdict(observed, len(recent), center, mad, max(0.0, center - half), center + half)
