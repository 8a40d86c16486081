"""Bad input to millpond.yml, MILLPOND_* variables and the CLI's arguments, as a user makes it.

Each case runs one `millpond` command in-process (typer's runner, the same code path as the
console script) in a fresh project folder and asserts what the user sees: exit code 2, a
message naming the key, variable or option to change (and the nearest valid key for a typo),
and that the refused command left the folder as it was (no `.millpond` state made).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from millpond.cli.main import app

GOOD = """\
project: demo
lake: {url: file://.millpond/lake}
warehouse: {target: duckdb, path: .millpond/warehouse.duckdb}
dbt: {project_dir: transform}
metadata: {url: embedded}
sources:
  erp: {kind: files, path: inbox/erp, tables: [orders, customer]}
publish: {keep: 5}
prefect: {port: 4200}
airflow: {warm_worker: true}
serve: {port: 8000}
schedule: "0 6 * * *"
"""


@dataclass(frozen=True)
class Case:
    """One bad input: the config text (default GOOD), extra environment, the command line,
    and the texts the message must hold."""

    id: str
    says: tuple[str, ...]
    config: str = GOOD
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ("config",)
    code: int = 2


def misspelt(key: str, typo: str) -> str:
    """GOOD with one top-level key misspelt."""
    lines = GOOD.splitlines()
    return "\n".join(
        typo + line[len(key) :] if line.startswith(key + ":") else line for line in lines
    )


def with_line(text: str) -> str:
    return GOOD + text + "\n"


def replaced(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new)


TOP_LEVEL_TYPOS = [
    ("project", "projekt"),
    ("lake", "lakes"),
    ("warehouse", "warehose"),
    ("dbt", "dbtt"),
    ("metadata", "metadta"),
    ("sources", "sorces"),
    ("publish", "publsh"),
    ("prefect", "prefct"),
    ("airflow", "airflw"),
    ("serve", "serv"),
    ("schedule", "schedul"),
]

CASES = [
    # every top-level key misspelt: the nearest key, with its path
    *[
        Case(f"top-{key}", (typo, f"did you mean {key}?"), config=misspelt(key, typo))
        for key, typo in TOP_LEVEL_TYPOS
    ],
    Case("top-state_dir", ("state_dri", "did you mean state_dir?"), with_line("state_dri: x")),
    Case(
        "top-notify",
        ("notfy", "did you mean notify?"),
        with_line("notfy: [{webhook: 'http://x'}]"),
    ),
    # misspelt keys inside sections
    Case(
        "lake.ur",
        ("lake.ur", "did you mean lake.url?"),
        replaced("lake: {url:", "lake: {ur:"),
    ),
    Case(
        "warehouse.pth",
        ("warehouse.pth", "did you mean warehouse.path?"),
        replaced("path: .millpond/warehouse.duckdb", "pth: w.duckdb"),
    ),
    Case(
        "dbt.project_dri",
        ("dbt.project_dri", "did you mean dbt.project_dir?"),
        replaced("dbt: {project_dir:", "dbt: {project_dri:"),
    ),
    Case(
        "metadata.ulr",
        ("metadata.ulr", "did you mean metadata.url?"),
        replaced("metadata: {url:", "metadata: {ulr:"),
    ),
    Case(
        "publish.kep",
        ("publish.kep", "did you mean publish.keep?"),
        replaced("publish: {keep: 5}", "publish: {kep: 5}"),
    ),
    Case(
        "prefect.prot",
        ("prefect.prot", "did you mean prefect.port?"),
        replaced("prefect: {port: 4200}", "prefect: {prot: 4200}"),
    ),
    Case(
        "airflow.warm_worke",
        ("airflow.warm_worke", "did you mean airflow.warm_worker?"),
        replaced("warm_worker: true", "warm_worke: true"),
    ),
    Case(
        "serve.prot",
        ("serve.prot", "did you mean serve.port?"),
        replaced("serve: {port: 8000}", "serve: {prot: 8000}"),
    ),
    Case(
        "sources.erp.pth",
        ("sources.erp.pth", "did you mean sources.erp.path?"),
        replaced("path: inbox/erp", "pth: inbox/erp"),
    ),
    Case(
        "sources.erp.tabels",
        ("sources.erp.tabels", "did you mean sources.erp.tables?"),
        replaced("tables: [orders, customer]", "tables: [orders], tabels: [customer]"),
    ),
    Case(
        "sources.erp.tables.orders.patern",
        ("sources.erp.tables.orders.patern", "did you mean sources.erp.tables.orders.pattern?"),
        replaced("tables: [orders, customer]", "tables: {orders: {patern: 'o*.csv'}}"),
    ),
    Case(
        "dbt.policy.retrys",
        ("dbt.policy.retrys", "did you mean dbt.policy.retries?"),
        replaced("dbt: {project_dir: transform}", "dbt: {project_dir: t, policy: {retrys: 1}}"),
    ),
    Case(
        "notify.0.webhok",
        ("notify.0.webhok", "did you mean notify.0.webhook?"),
        with_line("notify: [{webhok: 'http://x'}]"),
    ),
    # wrong types and bad values
    Case("prefect.port-text", ("prefect.port", "'abc'"), replaced("port: 4200", "port: abc")),
    Case("prefect.port-range", ("prefect.port", "65535"), replaced("port: 4200", "port: 99999")),
    Case(
        "prefect.port-zero",
        ("prefect.port", "greater than or equal to 1"),
        replaced("port: 4200", "port: 0"),
    ),
    Case("serve.port-range", ("serve.port", "65535"), replaced("port: 8000", "port: 70000")),
    Case(
        "prefect.concurrency",
        ("prefect.concurrency", "greater than or equal to 1"),
        replaced("prefect: {port: 4200}", "prefect: {concurrency: 0}"),
    ),
    Case("publish.keep-zero", ("publish.keep",), replaced("keep: 5", "keep: 0")),
    Case("publish.keep-text", ("publish.keep", "'many'"), replaced("keep: 5", "keep: many")),
    Case("schedule", ("schedule", "cron"), replaced('"0 6 * * *"', '"every day"')),
    Case(
        "sources-list",
        ("sources", "not be a list", "sources: {}"),
        replaced(
            "sources:\n  erp: {kind: files, path: inbox/erp, tables: [orders, customer]}",
            "sources: [erp]",
        ),
    ),
    Case(
        "sources-text",
        ("sources", "dictionary"),
        replaced(
            "sources:\n  erp: {kind: files, path: inbox/erp, tables: [orders, customer]}",
            "sources: erp",
        ),
    ),
    Case("lake-text", ("lake",), replaced("lake: {url: file://.millpond/lake}", "lake: file://x")),
    Case(
        "lake.url-scheme",
        ("lake.url", "file://", "s3://"),
        replaced("file://.millpond/lake", "ftp://x"),
    ),
    Case(
        "metadata.url",
        ("metadata.url", "postgresql://"),
        replaced("url: embedded", "url: mysql://x"),
    ),
    Case(
        "warehouse.target",
        ("warehouse.target", "duckdb"),
        replaced("target: duckdb", "target: oracle"),
    ),
    Case(
        "notify.webhook",
        ("notify.0.webhook", "http"),
        with_line("notify: [{webhook: 'ftp://x'}]"),
    ),
    Case(
        "notify.on",
        ("notify.0.on", "failure"),
        with_line("notify: [{webhook: 'http://x', on: [sometimes]}]"),
    ),
    Case(
        "dbt.policy.retries",
        ("dbt.policy.retries", "20"),
        replaced("dbt: {project_dir: transform}", "dbt: {policy: {retries: 99}}"),
    ),
    Case(
        "state_dir-proc",
        ("state_dir", "/proc", "kernel filesystem"),
        with_line("state_dir: /proc/millpond"),
    ),
    Case("state_dir-empty", ("state_dir", "must be a folder"), with_line("state_dir: ''")),
    Case(
        "state_dir-a-file", ("state_dir", "is a file"), with_line("state_dir: millpond.yml/state")
    ),
    Case(
        "sources.erp.path-empty",
        ("sources.erp.path", "project folder"),
        replaced("path: inbox/erp", "path: ''"),
    ),
    Case("source-name", ("source name 'Erp'", "lower-case"), replaced("  erp:", "  Erp:")),
    Case(
        "table-name",
        ("table name 'Orders'", "lower-case"),
        replaced("[orders, customer]", "[Orders]"),
    ),
    Case(
        "tables-empty",
        ("sources.erp.tables", "at least one table"),
        replaced("[orders, customer]", "[]"),
    ),
    Case("source-kind", ("sources.erp", "ftp"), replaced("kind: files", "kind: ftp")),
    Case(
        "serve.routers",
        ("serve.routers", "package.module:router"),
        replaced("serve: {port: 8000}", "serve: {routers: [nocolon]}"),
    ),
    Case("yaml-syntax", ("not valid YAML",), with_line("dbt: {project_dir: [")),
    Case("top-list", ("mapping of keys at the top level",), config="- project: demo\n"),
    Case("empty-file", ("is empty", "sources:"), config="# nothing yet\n"),
    Case(
        "unset-variable",
        ("sources.erp.path", "${INBOX_DIR}"),
        replaced("inbox/erp", "'${INBOX_DIR}'"),
    ),
    # environment variables
    Case(
        "env-one-underscore",
        ("MILLPOND_PREFECT_PORT", "MILLPOND_PREFECT__PORT"),
        env={"MILLPOND_PREFECT_PORT": "4300"},
    ),
    Case(
        "env-one-underscore-nested",
        ("MILLPOND_SOURCES_ERP_PATH", "MILLPOND_SOURCES__ERP__PATH"),
        env={"MILLPOND_SOURCES_ERP_PATH": "x"},
    ),
    Case(
        "env-one-underscore-serve",
        ("MILLPOND_SERVE_PORT", "MILLPOND_SERVE__PORT"),
        env={"MILLPOND_SERVE_PORT": "8001"},
    ),
    Case(
        "env-one-underscore-and-a-typo",
        ("MILLPOND_PREFECT_PROT", "MILLPOND_PREFECT__PORT"),
        env={"MILLPOND_PREFECT_PROT": "4300"},
    ),
    Case(
        "env-port-range",
        ("prefect.port", "MILLPOND_PREFECT__PORT", "65535"),
        env={"MILLPOND_PREFECT__PORT": "99999"},
    ),
    Case(
        "env-port-text",
        ("prefect.port", "MILLPOND_PREFECT__PORT", "'abc'"),
        env={"MILLPOND_PREFECT__PORT": "abc"},
    ),
    Case(
        "env-key-typo",
        ("MILLPOND_PREFECT__PROT", "did you mean MILLPOND_PREFECT__PORT?"),
        env={"MILLPOND_PREFECT__PROT": "1"},
    ),
    Case(
        "env-section-typo",
        ("MILLPOND_METADAT__URL", "did you mean MILLPOND_METADATA"),
        env={"MILLPOND_METADAT__URL": "embedded"},
    ),
    Case(
        "env-top-typo",
        ("MILLPOND_SHEDULE", "MILLPOND_SCHEDULE"),
        env={"MILLPOND_SHEDULE": "0 1 * * *"},
    ),
    Case(
        "env-landing-threads-text",
        ("MILLPOND_LANDING_THREADS", "whole number"),
        env={"MILLPOND_LANDING_THREADS": "abc"},
    ),
    Case(
        "env-landing-threads-zero",
        ("MILLPOND_LANDING_THREADS", "whole number"),
        env={"MILLPOND_LANDING_THREADS": "0"},
    ),
    Case(
        "env-state-dir-proc",
        ("state_dir", "MILLPOND_STATE_DIR", "/proc"),
        env={"MILLPOND_STATE_DIR": "/proc/x"},
    ),
    Case(
        "env-metadata-url",
        ("metadata.url", "MILLPOND_METADATA__URL"),
        env={"MILLPOND_METADATA__URL": "mysql://x"},
    ),
    Case(
        "env-bad-yaml-list",
        ("MILLPOND_PUBLISH__SCHEMAS", "YAML"),
        env={"MILLPOND_PUBLISH__SCHEMAS": "[marts"},
    ),
    Case(
        "env-empty-source-path",
        ("sources.erp.path", "MILLPOND_SOURCES__ERP__PATH"),
        env={"MILLPOND_SOURCES__ERP__PATH": " "},
    ),
    Case(
        "env-target",
        ("warehouse.target", "MILLPOND_WAREHOUSE__TARGET"),
        env={"MILLPOND_WAREHOUSE__TARGET": "oracle"},
    ),
    # CLI arguments
    Case(
        "cli-target",
        ("warehouse.target", "--target", "'oracle'"),
        args=("config", "--target", "oracle"),
    ),
    Case("cli-run-target", ("warehouse.target", "--target"), args=("run", "--target", "oracle")),
    Case(
        "cli-graph-target", ("warehouse.target", "--target"), args=("graph", "--target", "oracle")
    ),
    Case(
        "cli-status-limit",
        ("--limit", "greater than or equal to 1"),
        args=("status", "--limit", "0"),
    ),
    Case("cli-logs-level", ("--level", "LOUD"), args=("logs", "last", "--level", "LOUD")),
    Case(
        "cli-logs-run-id", ("no log of run", "../../etc/passwd"), args=("logs", "../../etc/passwd")
    ),
    Case("cli-demo-scale", ("--scale", "positive"), args=("demo-data", "--scale", "0")),
    Case(
        "cli-demo-if-empty", ("--demo-if-empty", "positive"), args=("run", "--demo-if-empty", "-1")
    ),
    Case("cli-option-typo", ("--selec", "--select"), args=("run", "--selec", "x")),
    Case("cli-unknown-command", ("rnu",), args=("rnu",)),
    Case(
        "cli-config-missing",
        ("nowhere.yml", "not found"),
        args=("config", "--config", "nowhere.yml"),
    ),
    Case(
        "cli-status-needs-ledger-variable",
        ("millpond status needs metadata.url", "${LEDGER_URL}"),
        replaced("url: embedded", "url: '${LEDGER_URL}'"),
        args=("status",),
    ),
    Case(
        "cli-run-unset-source-variable",
        ("sources.erp.path", "${INBOX_DIR}"),
        replaced("inbox/erp", "'${INBOX_DIR}'"),
        args=("run",),
    ),
]


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_by_name_and_changes_nothing(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "inbox" / "erp").mkdir(parents=True)
    (project / "millpond.yml").write_text(case.config)
    before = listing(project)
    monkeypatch.chdir(project)
    monkeypatch.delenv("MILLPOND_CONFIG", raising=False)

    result = CliRunner().invoke(app, list(case.args), env=case.env)

    said = result.output
    assert result.exit_code == case.code, said
    for text in case.says:
        assert text in said, f"{text!r} not in: {said}"
    assert listing(project) == before  # no .millpond, nothing else either
    assert not (project / ".millpond").exists()


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 50
    assert len({c.id for c in CASES}) == len(CASES)


# What the refusals above must not catch: the forms that are right.
@pytest.mark.parametrize(
    "config, env",
    [
        (GOOD, {"MILLPOND_PREFECT__PORT": "4300"}),
        (
            replaced("prefect: {port: 4200}", "prefect: {port: '${MILLPOND_PREFECT_PORT}'}"),
            {"MILLPOND_PREFECT_PORT": "4300"},
        ),
        (
            GOOD,
            {
                "MILLPOND_API_KEYS": "k",
                "MILLPOND_WAREHOUSE_PATH": "w.duckdb",
                "MILLPOND_LANDING_THREADS": "2",
            },
        ),
        (
            replaced(
                "sources:\n  erp: {kind: files, path: inbox/erp, tables: [orders, customer]}",
                "sources: []",
            ),
            {},
        ),
        (
            replaced(
                "sources:\n  erp: {kind: files, path: inbox/erp, tables: [orders, customer]}",
                "sources:",
            ),
            {},
        ),
        (with_line("notify:"), {}),
    ],
    ids=[
        "double-underscore",
        "read-by-the-file",
        "other-settings",
        "sources-empty-list",
        "sources-null",
        "notify-null",
    ],
)
def test_the_right_forms_are_accepted(
    config: str, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "millpond.yml").write_text(config)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MILLPOND_CONFIG", raising=False)

    result = CliRunner().invoke(app, ["config"], env=env)

    assert result.exit_code == 0, result.output
    if "MILLPOND_PREFECT_PORT" in env or "MILLPOND_PREFECT__PORT" in env:
        assert "port: 4300" in result.output
    assert not (tmp_path / ".millpond").exists()
