"""dbt and secrets: a dbt var marked secret (`dbt.secret_vars`), one named like a secret and a
secret environment variable read with `env_var()`, all rendered into a model's SQL, reach none
of dbt's files (target/compiled, target/run, manifest.json, partial_parse.msgpack, dbt.log)
nor its console lines, whether the model builds or fails; the scrubbed parse still decodes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from millpond.core.config_loading import load_config
from millpond.core.masking import env_secrets, mask, register_secrets
from millpond.nodes.dbt import manifest_cache
from millpond.nodes.dbt.runner import DbtProject
from millpond.runtime.context import RunContext

pytestmark = pytest.mark.integration

SALT = "salt-int-5b0e71"
VAR_TOKEN = "var-tok-c2d9a4"
ENV_TOKEN = "env-tok-8e4f13"
SECRETS = (SALT, VAR_TOKEN, ENV_TOKEN)


def tiny_project(root: Path) -> Path:
    dbt = root / "dbt"
    (dbt / "models").mkdir(parents=True)
    (dbt / "dbt_project.yml").write_text(
        "name: tiny\nversion: '1.0'\nprofile: tiny\nmodels: {tiny: {+materialized: table}}\n"
    )
    (dbt / "models" / "salted.sql").write_text(
        "select md5('{{ var(\"salt\") }}' || '{{ var(\"api_token\") }}') as fingerprint,\n"
        "  length('{{ env_var(\"SCAN_API_TOKEN\") }}') as token_length\n"
    )
    (dbt / "models" / "broken.sql").write_text(
        "select '{{ var(\"salt\") }}' || '{{ env_var(\"SCAN_API_TOKEN\") }}' as s from nowhere\n"
    )
    config = {
        "project": "tiny",
        "dbt": {
            "project_dir": "dbt",
            "vars": {"salt": "${SALT_V}", "api_token": "${TOK_V}", "region": "eu"},
            "secret_vars": ["salt"],
        },
    }
    (root / "millpond.yml").write_text(yaml.safe_dump(config))
    return root / "millpond.yml"


def test_secret_vars_and_env_vars_reach_no_dbt_file_or_console_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MILLPOND_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SCAN_API_TOKEN", ENV_TOKEN)
    env = {"SALT_V": SALT, "TOK_V": VAR_TOKEN}
    config = load_config(tiny_project(tmp_path), env)
    register_secrets(config.secrets() + env_secrets())  # as every millpond command does
    project = DbtProject(config, RunContext(config, "dbt-secrets").target)

    project.parse()
    good = project.build(["salted"])
    bad = project.build(["broken"])

    console = capfd.readouterr()
    assert good.success, good.failure_message()
    assert not bad.success and "nowhere" in bad.failure_message()
    assert SALT not in mask(bad.failure_message())  # what the ledger gets
    state = config.state / "dbt"
    files = {p: p.read_bytes() for p in state.rglob("*") if p.is_file()}
    names = {p.name for p in files}
    assert {"dbt.log", "salted.sql", "broken.sql", "partial_parse.msgpack"} <= names
    assert any("run" in p.parts for p in files) and any("compiled" in p.parts for p in files)
    leaks = [(str(p), s) for p, data in files.items() for s in SECRETS if s.encode() in data] + [
        ("console", s) for s in SECRETS if s in console.out + console.err
    ]
    assert leaks == []
    # The scrubbed parse is still dbt's: the next process decodes it instead of parsing.
    saved = manifest_cache.load(project.target_dir, project.project_key())
    assert saved is not None
    decode, _ = saved
    assert "model.tiny.salted" in decode().nodes
