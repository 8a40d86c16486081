"""The configured target's reader of the published marts, one per request.

Each target brings its own reader (`TargetKind.reader` in millpond.core.registry): the API asks
the registry for the configured target's, and names no target itself.
"""

from __future__ import annotations

from millpond.core.config import MillpondConfig
from millpond.core.registry import TARGETS, MartsReader


def open_reader(config: MillpondConfig) -> MartsReader:
    """The reader for the configured target's published marts; FileNotFoundError when nothing
    is published yet."""
    return TARGETS.get(config.target_name).reader(config)


def snapshot_key(config: MillpondConfig) -> str | None:
    """What identifies the published marts now without opening them (None: the target has
    nothing cheaper than opening a reader)."""
    published_key = TARGETS.get(config.target_name).published_key
    return published_key(config) if published_key else None
