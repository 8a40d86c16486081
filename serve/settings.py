"""The service's settings: one pydantic-settings object, read from MILLPOND_* variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from millpond.core.config import MillpondConfig
from millpond.core.config_loading import load_config
from millpond.core.masking import env_secrets, register_secrets


class ServeSettings(BaseSettings):
    """Which stack to serve and how to guard it; the rest comes from that stack's millpond.yml.

    Keys live in the environment, never in millpond.yml, so the file can be committed."""

    model_config = SettingsConfigDict(env_prefix="MILLPOND_", extra="ignore")

    config: Path = Path("millpond.yml")
    # Comma-separated; empty means no auth, which is why the service then binds 127.0.0.1 only.
    api_keys: str = Field("", repr=False)
    # The most rows one /marts request may ask for: protects the one worker from a huge page.
    max_limit: int = 1_000_000
    default_limit: int = 100
    # The dashboard's address in notifications and links; unset: http://<host>:<port>/.
    public_url: str | None = None

    @property
    def keys(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]


@lru_cache
def get_settings() -> ServeSettings:
    return ServeSettings()


@lru_cache
def get_stack_config() -> MillpondConfig:
    """The stack's config; its secrets are registered with the log masker as it is read, so the
    service's own log lines (errors naming a source, a URL) mask them as the CLI's do."""
    config = load_config(get_settings().config)
    register_secrets(config.secrets() + env_secrets() + get_settings().keys)
    return config
