"""Where `millpond run-node` looks for the warm node worker, found without the full config."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from millpond.cli.warm.wire import MAX_SOCKET_PATH, socket_path
from millpond.core.config_file import state_dir
from millpond.core.config_loading import load_config

SOURCES = "sources:\n  erp: {kind: files, path: inbox, tables: [region]}\n"


@pytest.mark.parametrize(
    ("text", "env"),
    [
        (SOURCES, {}),
        ("state_dir: var/state\n" + SOURCES, {}),
        ("state_dir: /srv/millpond-state\n" + SOURCES, {}),
        ("state_dir: ${STATE:-fallback}\n" + SOURCES, {"STATE": "from-env"}),
        ("state_dir: ${STATE:-fallback}\n" + SOURCES, {}),
        ("state_dir: var/state\n" + SOURCES, {"MILLPOND_STATE_DIR": "overridden"}),
    ],
)
def test_the_light_state_dir_is_the_configs_own(
    tmp_path: Path, text: str, env: dict[str, str]
) -> None:
    config_file = tmp_path / "project" / "millpond.yml"
    config_file.parent.mkdir()
    config_file.write_text(text)
    assert state_dir(config_file, env) == load_config(config_file, env).state


def test_the_socket_lives_in_the_state_dir_or_under_tmp_when_that_is_too_long(
    tmp_path: Path,
) -> None:
    near = Path(tempfile.mkdtemp(prefix="mp-"))  # tmp_path itself may be long (xdist workers)
    try:
        assert socket_path(near / ".millpond").parent == near / ".millpond" / "run"
    finally:
        near.rmdir()
    deep = tmp_path / ("a-long-folder-name" * 8) / ".millpond"
    moved = socket_path(deep)
    assert str(moved).startswith(f"/tmp/millpond-{os.getuid()}/")
    assert len(os.fsencode(moved)) <= MAX_SOCKET_PATH
    assert moved == socket_path(deep) != socket_path(deep.parent / "other")
