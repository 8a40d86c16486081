"""The service's settings: one pydantic-settings object, read from MILLPOND_* variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from millpond.core.config import MillpondConfig, load_config


class ServeSettings(BaseSettings):
    """Which stack to serve; everything else comes from that stack's millpond.yml."""

    model_config = SettingsConfigDict(env_prefix="MILLPOND_", extra="ignore")

    config: Path = Path("millpond.yml")


@lru_cache
def get_stack_config() -> MillpondConfig:
    return load_config(ServeSettings().config)
