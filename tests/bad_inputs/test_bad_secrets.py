"""Bad inputs around secrets in millpond.yml: what `millpond config` says and exits with.

Each case is a millpond.yml (and environment) a user could write: a `${VAR}` the environment
lacks, a secret written into the file instead of read with `${VAR}`, a malformed value under a
secret key, a misspelt `dbt.secret_vars`. Each asserts the exit code, a message naming the key
(and what to do), that the secret itself is printed nowhere, and that nothing was written
(no state dir appears). In-process through the CLI app: no run, no server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

SECRET = "sekrit-9f31c0"  # the value every case hides somewhere

REST = "kind: rest, base_url: 'https://api.example.com', tables: {a: {path: /a}}"


@dataclass(frozen=True)
class Case:
    id: str
    yaml: str
    rc: int
    says: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


CASES = [
    # --- a ${VAR} the environment does not have: refused, naming the key and the variable
    Case(
        "unset var in bearer token",
        f"sources:\n  crm: {{{REST}, auth: {{type: bearer, token: '${{CRM_TOKEN}}'}}}}\n",
        2,
        ("sources.crm.auth.token", "${CRM_TOKEN}", "not set"),
    ),
    Case(
        "unset var in a sql url password",
        "sources:\n  db: {kind: sql, url: 'postgresql://u:${DB_PW}@h/d', tables: [t]}\n",
        2,
        ("sources.db.url", "${DB_PW}", "not set"),
    ),
    Case(
        "unset var in a webhook",
        "notify:\n  - {webhook: '${SLACK_HOOK}'}\n",
        2,
        ("notify[0].webhook", "${SLACK_HOOK}", "not set"),
    ),
    Case(
        "unset var in a dbt secret var",
        "dbt: {vars: {salt: '${HASH_SALT}'}, secret_vars: [salt]}\n",
        2,
        ("dbt.vars.salt", "${HASH_SALT}", "not set"),
    ),
    Case(
        "unset var in an odbc connection string",
        "sources:\n  erp: {kind: odbc, connection_string: 'Driver={X};PWD=${ODBC_PW};', "
        "tables: [a]}\n",
        2,
        ("sources.erp.connection_string", "${ODBC_PW}", "not set"),
    ),
    Case(
        "unset var in a credential header",
        f"sources:\n  crm: {{{REST}, headers: {{X-API-Key: '${{CRM_KEY}}'}}}}\n",
        2,
        ("sources.crm.headers.X-API-Key", "${CRM_KEY}", "not set"),
    ),
    Case(
        "unset var in the lake's S3 secret key",
        "lake: {url: 's3://b/lake', secret_access_key: '${LAKE_SECRET}'}\n",
        2,
        ("lake.secret_access_key", "${LAKE_SECRET}", "not set"),
    ),
    Case(
        "unset var in a second webhook",
        "notify:\n  - {webhook: 'https://a.example/x'}\n  - {webhook: '${TEAMS_HOOK}'}\n",
        2,
        ("notify[1].webhook", "${TEAMS_HOOK}", "not set"),
    ),
    Case(
        "empty default for a bearer token",
        f"sources:\n  crm: {{{REST}, auth: {{type: bearer, token: '${{CRM_TOKEN:-}}'}}}}\n",
        2,
        ("sources.crm.auth", "needs token"),
    ),
    Case(
        "notifier without a webhook",
        "notify:\n  - {on: [failure]}\n",
        2,
        ("notify.0.webhook", "missing"),
    ),
    # --- a secret written into the file: works, masked, with a warning naming the key
    Case(
        "literal password in the metadata url",
        f"metadata: {{url: 'postgresql://app:{SECRET}@db/ledger'}}\n",
        0,
        ("metadata.url", "written in the file"),
    ),
    Case(
        "literal lake secret key",
        f"lake: {{url: 's3://b/lake', access_key_id: AKIA1, secret_access_key: {SECRET}}}\n",
        0,
        ("lake.secret_access_key", "written in the file"),
    ),
    Case(
        "literal password in the prefect api url",
        f"prefect: {{api_url: 'http://u:{SECRET}@prefect:4200/api'}}\n",
        0,
        ("prefect.api_url", "written in the file"),
    ),
    Case(
        "literal reader password of the postgres target",
        "warehouse: {target: postgres, url: 'postgresql://app@db/dw', "
        f"reader_password: {SECRET}}}\n",
        0,
        ("warehouse.reader_password", "written in the file"),
    ),
    Case(
        "literal Proxy-Authorization header",
        f"sources:\n  crm: {{{REST}, headers: {{Proxy-Authorization: 'Basic {SECRET}'}}}}\n",
        0,
        ("sources.crm.headers.Proxy-Authorization", "written in the file"),
    ),
    Case(
        "literal password in a sql url query",
        f"sources:\n  db: {{kind: sql, url: 'postgresql://h/d?user=u&password={SECRET}', "
        "tables: [t]}\n",
        0,
        ("sources.db.url", "written in the file"),
    ),
    Case(
        "literal api_key value",
        f"sources:\n  crm: {{{REST}, auth: {{type: api_key, name: X-API-Key, value: {SECRET}}}}}\n",
        0,
        ("sources.crm.auth.value", "written in the file", "${"),
    ),
    Case(
        "literal basic password",
        f"sources:\n  crm: {{{REST}, auth: {{type: basic, username: ann, password: {SECRET}}}}}\n",
        0,
        ("sources.crm.auth.password", "written in the file"),
    ),
    Case(
        "literal Authorization header",
        f"sources:\n  crm: {{{REST}, headers: {{Authorization: 'Token {SECRET}'}}}}\n",
        0,
        ("sources.crm.headers.Authorization", "written in the file"),
    ),
    Case(
        "literal Cookie header",
        f"sources:\n  crm: {{{REST}, headers: {{Cookie: 'sid={SECRET}'}}}}\n",
        0,
        ("sources.crm.headers.Cookie", "written in the file"),
    ),
    Case(
        "literal token in a table's query params",
        f"sources:\n  crm:\n    kind: rest\n    base_url: https://api.example.com\n"
        f"    tables: {{a: {{path: /a, params: {{access_token: {SECRET}}}}}}}\n",
        0,
        ("sources.crm.tables.a.params.access_token", "written in the file"),
    ),
    Case(
        "literal password in a sql url",
        f"sources:\n  db: {{kind: sql, url: 'postgresql://u:{SECRET}@h/d', tables: [t]}}\n",
        0,
        ("sources.db.url", "written in the file"),
    ),
    Case(
        "literal PWD in an odbc connection string",
        f"sources:\n  erp: {{kind: odbc, connection_string: 'Driver={{X}};PWD={SECRET};', "
        "tables: [a]}\n",
        0,
        ("sources.erp.connection_string", "written in the file"),
    ),
    Case(
        "literal S3 secret key of a files source",
        "sources:\n  shop: {kind: files, path: 's3://b/x/', tables: [orders], "
        f"s3: {{access_key_id: AKIA1, secret_access_key: {SECRET}}}}}\n",
        0,
        ("sources.shop.s3.secret_access_key", "written in the file"),
    ),
    Case(
        "literal password in the postgres target url",
        f"warehouse: {{target: postgres, url: 'postgresql://app:{SECRET}@db/dw'}}\n",
        0,
        ("warehouse.url", "written in the file"),
    ),
    Case(
        "literal webhook with its token",
        f"notify:\n  - {{webhook: 'https://hooks.slack.com/services/T1/B2/{SECRET}'}}\n",
        0,
        ("notify[0].webhook", "written in the file"),
    ),
    Case(
        "literal dbt secret var",
        f"dbt: {{vars: {{salt: {SECRET}}}, secret_vars: [salt]}}\n",
        0,
        ("dbt.vars.salt", "written in the file"),
    ),
    # --- malformed values under secret keys: the error names the key, never the value
    Case(
        "api_key auth without its header name",
        f"sources:\n  crm: {{{REST}, auth: {{type: api_key, value: {SECRET}}}}}\n",
        2,
        ("sources.crm.auth", "needs name"),
    ),
    Case(
        "webhook that is not an http url",
        f"notify:\n  - {{webhook: 'ftp://hooks.example/{SECRET}'}}\n",
        2,
        ("notify.0.webhook", "http"),
    ),
    Case(
        "unknown auth type beside a token",
        f"sources:\n  crm: {{{REST}, auth: {{type: oauth, token: {SECRET}}}}}\n",
        2,
        ("sources.crm.auth.type", "bearer"),
    ),
    Case(
        "unknown key inside auth",
        f"sources:\n  crm: {{{REST}, auth: {{type: bearer, token: t0ken-ok, secret: {SECRET}}}}}\n",
        2,
        ("sources.crm.auth.secret",),
    ),
    Case(
        "secret_vars naming a var that does not exist",
        "dbt: {vars: {salt: '${SALT}'}, secret_vars: [slat]}\n",
        2,
        ("dbt", "secret_vars", "'slat'", "not in dbt.vars", "salt"),
        env={"SALT": SECRET},
    ),
    Case(
        "secret passed through a misspelt override",
        "sources: {}\n",
        2,
        ("MILLPOND_METADATA__URLL", "did you mean MILLPOND_METADATA__URL"),
        env={"MILLPOND_METADATA__URLL": f"postgresql://u:{SECRET}@h/d"},
    ),
    Case(
        "metadata url that is not postgres, with a password",
        f"metadata: {{url: 'mysql://u:{SECRET}@h/d'}}\n",
        2,
        ("metadata.url", "postgresql://", "***"),
    ),
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in [n for n in os.environ if n.startswith("MILLPOND_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_secret_config_inputs(case: Case, tmp_path: Path, clean_env: None) -> None:
    from millpond.cli.main import app

    (tmp_path / "millpond.yml").write_text(case.yaml)
    before = sorted(p.name for p in tmp_path.iterdir())

    result = CliRunner().invoke(app, ["config", "-c", str(tmp_path / "millpond.yml")], env=case.env)

    output = result.stdout + result.stderr
    assert result.exit_code == case.rc, output
    for words in case.says:
        assert words in " ".join(output.split()), f"{words!r} not in: {output}"
    assert SECRET not in output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no state dir, no file
