"""`POST /runs` picks the deployment only when one is served, and the fallback otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import free_port

from millpond.core.config_loading import load_config
from millpond.serve.prefect_trigger import served_deployment
from millpond.serve.schemas import RunRequest

pytestmark = pytest.mark.integration


def config_at(tmp_path: Path, api: str) -> object:
    (tmp_path / "millpond.yml").write_text(f"project: millpond\nprefect: {{api_url: '{api}'}}\n")
    return load_config(tmp_path / "millpond.yml", {})


def test_no_deployment_on_the_server_means_the_fallback(tmp_path: Path, prefect_api: str) -> None:
    assert served_deployment(config_at(tmp_path, prefect_api)) is None


def test_no_prefect_server_means_the_fallback(tmp_path: Path) -> None:
    assert served_deployment(config_at(tmp_path, f"http://127.0.0.1:{free_port()}/api")) is None


def test_the_fallback_gets_the_request_as_run_options() -> None:
    request = RunRequest(select=["+fct_orders"], exclude=["tag:slow"], full_refresh=True)
    assert request.args() == ["--select=+fct_orders", "--exclude=tag:slow", "--full-refresh"]
    assert RunRequest().args() == []
    with pytest.raises(ValueError, match="bogus"):
        RunRequest.model_validate({"bogus": 1})
