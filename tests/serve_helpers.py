"""Helpers shared by the API tests: the app over a given stack, with fresh cached settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient


def reset_caches() -> None:
    from millpond.serve import deps, settings

    settings.get_stack_config.cache_clear()
    settings.get_settings.cache_clear()
    deps.ledger_url.cache_clear()
    if deps.ledger_pool.cache_info().currsize:
        deps.ledger_pool().close()
    deps.ledger_pool.cache_clear()


@contextmanager
def api_for(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app serving the stack of `config_file`."""
    monkeypatch.setenv("MILLPOND_CONFIG", str(config_file))
    from millpond.serve.app import create_app

    reset_caches()
    try:
        with TestClient(create_app()) as test_client:
            yield test_client
    finally:
        reset_caches()


@contextmanager
def api_over(
    ledger_url: str, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """The app serving a stack whose ledger is at `ledger_url`."""
    (folder / "millpond.yml").write_text(f"metadata: {{url: '{ledger_url}'}}\n")
    with api_for(folder / "millpond.yml", monkeypatch) as client:
        yield client
