"""millpond.yml loading: interpolation, environment overrides, validation errors, paths, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from millpond.core.config import ConfigError, MillpondConfig
from millpond.core.config_loading import apply_env_overrides, interpolate, load_config
from millpond.ingest.sources.files.config import FilesSourceConfig


def write_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "millpond.yml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {})
    return str(info.value)


# --- interpolation -------------------------------------------------------------------------


def test_interpolation_replaces_variables_in_nested_values():
    data = {"metadata": {"url": "postgresql://app:${PG_PASSWORD}@db/ledger"}, "x": ["${A}-${B}"]}

    result = interpolate(data, {"PG_PASSWORD": "pw", "A": "1", "B": "2"})

    assert result == {"metadata": {"url": "postgresql://app:pw@db/ledger"}, "x": ["1-2"]}


def test_interpolation_uses_default_only_when_variable_is_unset():
    data = {"a": "${HOST:-localhost}", "b": "${PORT:-5432}"}

    assert interpolate(data, {"PORT": "6543"}) == {"a": "localhost", "b": "6543"}


def test_interpolation_accepts_an_empty_default():
    assert interpolate({"a": "x${SUFFIX:-}"}, {}) == {"a": "x"}


def test_interpolation_leaves_non_strings_alone():
    data = {"port": 8000, "on": True, "none": None}

    assert interpolate(data, {}) == data


def test_missing_variable_names_key_path_and_variable(tmp_path):
    path = write_config(tmp_path, "metadata:\n  url: postgresql://app:${PG_PASSWORD}@db/ledger\n")

    message = config_error(path)

    assert "metadata.url" in message
    assert "PG_PASSWORD" in message


def test_missing_variable_inside_a_list_names_the_index():
    with pytest.raises(ConfigError, match=r"publish\.schemas\[1\].*MISSING_SCHEMA"):
        interpolate({"publish": {"schemas": ["marts", "${MISSING_SCHEMA}"]}}, {})


def test_interpolated_value_from_environment_reaches_the_config(tmp_path):
    path = write_config(tmp_path, "metadata: {url: 'postgresql://app:${PG_PW}@db:5432/ledger'}\n")

    config = load_config(path, {"PG_PW": "hunter22"})

    assert config.metadata.url == "postgresql://app:hunter22@db:5432/ledger"


# --- environment overrides -----------------------------------------------------------------


def test_env_override_replaces_a_nested_key(tmp_path):
    path = write_config(tmp_path, "metadata: {url: embedded}\n")

    config = load_config(path, {"MILLPOND_METADATA__URL": "postgresql://db.example/ledger"})

    assert config.metadata.url == "postgresql://db.example/ledger"


def test_env_override_creates_missing_sections_and_parses_scalars(tmp_path):
    path = write_config(tmp_path, "project: demo\n")

    config = load_config(
        path, {"MILLPOND_PREFECT__CONCURRENCY": "8", "MILLPOND_PUBLISH__SCHEMAS": "[marts]"}
    )

    assert config.prefect.concurrency == 8
    assert config.publish.schemas == ["marts"]


def test_env_override_wins_over_interpolated_file_value(tmp_path):
    path = write_config(tmp_path, "serve: {port: '${PORT:-8000}'}\n")

    config = load_config(path, {"MILLPOND_SERVE__PORT": "9100"})

    assert config.serve.port == 9100


def test_runtime_variables_set_by_orchestrators_are_not_overrides(tmp_path):
    # Airflow tasks run with these set; they must neither fail the load nor change the config.
    path = write_config(tmp_path, "warehouse: {path: w.duckdb}\n")
    env = {
        "MILLPOND_CONFIG": str(path),
        "MILLPOND_RUN_ID": "r1",
        "MILLPOND_ATTEMPT": "2",
        "MILLPOND_BIN": "/opt/millpond/bin/millpond",
    }

    assert load_config(path, env) == load_config(path, {})


def test_env_override_applies_only_with_double_underscores():
    env = {"MILLPOND_WAREHOUSE_PATH": "/tmp/other.duckdb", "MILLPOND_WAREHOUSE__THREADS": "4"}
    data = {"warehouse": {"path": "w.duckdb"}}

    result = apply_env_overrides(data, env)

    assert result == {"warehouse": {"path": "w.duckdb", "threads": "4"}}


def test_old_warehouse_path_variable_does_not_change_the_warehouse(tmp_path):
    path = write_config(tmp_path, "warehouse: {path: w.duckdb}\n")

    config = load_config(path, {"MILLPOND_WAREHOUSE_PATH": "/tmp/other.duckdb"})

    assert config.resolve(config.target_config.path) == tmp_path / "w.duckdb"


def test_variables_of_unknown_top_level_keys_are_ignored(tmp_path):
    path = write_config(tmp_path, "project: demo\n")

    config = load_config(path, {"MILLPOND_LOG_LEVEL": "DEBUG", "OTHER__X": "1"})

    assert config.project == "demo"


def test_env_override_keeps_a_cron_schedule_starting_with_star(tmp_path):
    # A schedule such as '*/15 * * * *' is not valid YAML (an alias), yet is a plain string.
    path = write_config(tmp_path, "project: demo\n")

    config = load_config(path, {"MILLPOND_SCHEDULE": "*/15 * * * *"})

    assert config.schedule == "*/15 * * * *"


def test_env_override_keeps_a_numeric_looking_secret_as_text(tmp_path):
    path = write_config(tmp_path, "lake: {url: 's3://bucket/lake'}\n")

    config = load_config(
        path,
        {
            "MILLPOND_LAKE__ACCESS_KEY_ID": "0123",
            "MILLPOND_LAKE__SECRET_ACCESS_KEY": "12345678",
        },
    )

    assert config.lake.access_key_id == "0123"
    assert config.lake.secret_access_key == "12345678"


# --- validation errors ---------------------------------------------------------------------


def test_concurrency_zero_error_names_file_key_value_and_bound(tmp_path):
    path = write_config(tmp_path, "prefect: {concurrency: 0}\n")

    message = config_error(path)

    assert str(path) in message
    assert "prefect.concurrency" in message
    assert "got 0" in message
    assert "greater than or equal to 1" in message


def test_lake_url_with_unknown_scheme_is_rejected_with_expected_schemes(tmp_path):
    path = write_config(tmp_path, "lake: {url: 'ftp://x'}\n")

    message = config_error(path)

    assert str(path) in message
    assert "lake.url" in message
    assert "ftp://x" in message
    assert "file://" in message and "s3://" in message


def test_unknown_key_is_rejected_by_name(tmp_path):
    path = write_config(tmp_path, "warehouse: {duckdb: {path: w.duckdb, pth: typo.duckdb}}\n")

    message = config_error(path)

    assert str(path) in message
    assert "warehouse.duckdb.pth" in message
    assert "typo.duckdb" in message
    assert "did you mean warehouse.duckdb.path?" in message


def test_unknown_key_in_the_short_warehouse_form_shows_the_value_written(tmp_path):
    path = write_config(tmp_path, "warehouse: {path: w.duckdb, pth: typo.duckdb}\n")

    message = config_error(path)

    assert str(path) in message
    assert "pth" in message
    assert "did you mean warehouse.path?" in message
    assert "typo.duckdb" in message  # what the user wrote, not "got None"


def test_bad_url_in_the_short_warehouse_form_shows_it_masked(tmp_path):
    path = write_config(
        tmp_path, "warehouse: {target: postgres, url: 'mysql://app:hunter22@db/dw'}\n"
    )

    message = config_error(path)

    assert "url" in message
    assert "postgresql://" in message
    assert "hunter22" not in message
    assert "mysql://app:***@db/dw" in message  # what the user wrote, not "got None"


def test_source_of_unknown_kind_is_rejected(tmp_path):
    path = write_config(tmp_path, "sources:\n  erp: {kind: ftp, path: inbox}\n")

    message = config_error(path)

    assert str(path) in message
    assert "sources.erp" in message
    assert "'ftp'" in message
    assert "'files'" in message


def test_bad_table_name_is_rejected_with_the_name_and_the_rule(tmp_path):
    path = write_config(
        tmp_path, "sources:\n  erp: {kind: files, path: inbox, tables: [Orders-2024]}\n"
    )

    message = config_error(path)

    assert str(path) in message
    assert "sources.erp.tables" in message
    assert "Orders-2024" in message
    assert "lower-case" in message


def test_source_without_tables_reports_the_missing_key(tmp_path):
    path = write_config(tmp_path, "sources:\n  erp: {kind: files, path: inbox}\n")

    message = config_error(path)

    assert "sources.erp.tables" in message
    assert "missing" in message


def test_bad_source_name_is_rejected(tmp_path):
    path = write_config(tmp_path, "sources:\n  ERP: {kind: files, path: inbox, tables: [a]}\n")

    message = config_error(path)

    assert "'ERP'" in message


def test_every_problem_is_reported_on_its_own_line(tmp_path):
    path = write_config(tmp_path, "prefect: {concurrency: 0}\nlake: {url: 'ftp://x'}\n")

    lines = config_error(path).splitlines()

    assert any("prefect.concurrency" in line for line in lines)
    assert any("lake.url" in line for line in lines)
    assert len(lines) == 3  # the file line and one per problem


def test_validation_error_does_not_print_a_password(tmp_path):
    # postgres:// instead of postgresql:// is a typical typo; the message must not leak the secret.
    path = write_config(tmp_path, "metadata: {url: 'postgres://app:hunter22@db/ledger'}\n")

    message = config_error(path)

    assert "metadata.url" in message
    assert "hunter22" not in message


def test_validation_error_does_not_print_a_secret_key(tmp_path):
    path = write_config(tmp_path, "lake: {url: 's3://b/l', secret_access_key: [s3cr3tvalue]}\n")

    message = config_error(path)

    assert "lake.secret_access_key" in message
    assert "s3cr3tvalue" not in message


def test_invalid_yaml_is_a_config_error(tmp_path):
    path = write_config(tmp_path, "lake: {url: [unclosed\n")

    assert str(path) in config_error(path)


def test_a_list_at_top_level_is_a_config_error(tmp_path):
    path = write_config(tmp_path, "- a\n- b\n")

    assert "mapping" in config_error(path)


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yml", {})


def test_one_key_gives_the_defaults_for_the_rest(tmp_path):
    path = write_config(tmp_path, "project: demo\n")

    config = load_config(path, {})

    assert config.metadata.url == "embedded"
    assert config.sources == {}


@pytest.mark.parametrize(
    ("text", "says"),
    [("", "is empty"), ("# only a comment\n", "is empty"), ("{}\n", "has no keys")],
)
def test_an_empty_or_keyless_file_is_refused_not_run_on_defaults(tmp_path, text, says):
    path = write_config(tmp_path, text)

    with pytest.raises(ConfigError) as error:
        load_config(path, {"MILLPOND_PROJECT": "x"})

    assert str(path) in str(error.value) and says in str(error.value)
    assert "docs/configuration.md" in str(error.value)


# --- paths ---------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_folder_not_the_cwd(tmp_path, monkeypatch):
    project = tmp_path / "project"
    path = write_config(
        project,
        "state_dir: state\nwarehouse: {path: data/w.duckdb}\nlake: {url: 'file://lake'}\n"
        "dbt: {project_dir: transform}\n",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    config = load_config(path, {})

    assert config.resolve(config.target_config.path) == project / "data" / "w.duckdb"
    assert config.state == project / "state"
    assert config.published_dir == project / "state" / "published"
    assert config.logs_dir == project / "state" / "logs"
    assert config.dbt_project_dir == project / "transform"
    assert config.dbt_profiles_dir == project / "state" / "dbt" / "profile" / "duckdb"
    assert config.lake_url == f"file://{project / 'lake'}"


def test_config_found_through_millpond_config_variable(tmp_path, monkeypatch):
    path = write_config(tmp_path / "p", "project: viaenv\n")
    monkeypatch.setenv("MILLPOND_CONFIG", str(path))
    monkeypatch.chdir(tmp_path)

    assert load_config(None, {}).project == "viaenv"


def test_absolute_paths_are_kept(tmp_path):
    target = tmp_path / "abs" / "w.duckdb"
    path = write_config(
        tmp_path / "p", f"warehouse: {{path: '{target}'}}\nlake: {{url: 's3://b'}}\n"
    )

    config = load_config(path, {})

    assert config.resolve(config.target_config.path) == target
    assert config.lake_url == "s3://b"


def test_explicit_dbt_profiles_dir_resolves_against_the_config_folder(tmp_path, monkeypatch):
    path = write_config(tmp_path / "p", "dbt: {project_dir: transform, profiles_dir: profiles}\n")
    monkeypatch.chdir(tmp_path)

    config = load_config(path, {})

    assert config.dbt_profiles_dir == tmp_path / "p" / "profiles"


# --- masking and secrets -------------------------------------------------------------------


def test_masked_hides_metadata_password_and_lake_keys(tmp_path):
    path = write_config(
        tmp_path,
        "metadata: {url: 'postgresql://app:hunter22@db:5432/ledger'}\n"
        "lake: {url: 's3://bucket/lake', access_key_id: AKIAXYZ1, secret_access_key: s3cr3tkey}\n"
        "prefect: {api_url: 'http://u:pfpass99@prefect:4200/api'}\n",
    )
    config = load_config(path, {})

    masked = config.masked()

    text = repr(masked)
    for secret in ("hunter22", "AKIAXYZ1", "s3cr3tkey", "pfpass99"):
        assert secret not in text
    assert masked["metadata"]["url"] == "postgresql://app:***@db:5432/ledger"
    assert masked["lake"]["access_key_id"] == "***"
    assert masked["lake"]["secret_access_key"] == "***"
    assert masked["prefect"]["api_url"] == "http://u:***@prefect:4200/api"
    assert masked["lake"]["url"] == "s3://bucket/lake"


def test_masked_leaves_unset_keys_unset():
    masked = MillpondConfig().masked()

    assert masked["lake"]["access_key_id"] is None
    assert masked["metadata"]["url"] == "embedded"


def test_secrets_lists_every_secret_value(tmp_path):
    path = write_config(
        tmp_path,
        "metadata: {url: 'postgresql://app:hunter22@db/ledger'}\n"
        "lake: {url: 's3://b', access_key_id: AKIAXYZ1, secret_access_key: s3cr3tkey}\n",
    )

    secrets = load_config(path, {}).secrets()

    assert sorted(secrets) == ["AKIAXYZ1", "hunter22", "s3cr3tkey"]


def test_no_secrets_in_the_default_config():
    assert MillpondConfig().secrets() == []


# --- tables ---------------------------------------------------------------------------------


def test_tables_as_a_list_become_tables_without_pattern():
    source = FilesSourceConfig(kind="files", path="inbox", tables=["orders", "customers"])

    assert set(source.tables) == {"orders", "customers"}
    assert all(t.pattern is None for t in source.tables.values())


def test_tables_as_a_mapping_keep_their_pattern(tmp_path):
    path = write_config(
        tmp_path,
        "sources:\n"
        "  erp:\n"
        "    kind: files\n"
        "    path: inbox/erp\n"
        "    tables:\n"
        "      orders: {pattern: 'ORD_*.csv'}\n"
        "      customers: {}\n",
    )

    source = load_config(path, {}).sources["erp"]

    assert source.tables["orders"].pattern == "ORD_*.csv"
    assert source.tables["customers"].pattern is None
    assert source.extract.retries == 2


def test_empty_table_list_is_rejected(tmp_path):
    path = write_config(tmp_path, "sources:\n  erp: {kind: files, path: inbox, tables: []}\n")

    assert "at least one table" in config_error(path)


def test_masked_hides_values_under_secret_looking_keys_anywhere(tmp_path):
    config_file = tmp_path / "millpond.yml"
    config_file.write_text("dbt:\n  vars: {api_token: tok-123456, region: eu}\n")

    masked = load_config(config_file, env={}).masked()

    assert masked["dbt"]["vars"] == {"api_token": "***", "region": "eu"}


def test_sources_are_validated_as_their_kind(tmp_path):
    path = write_config(tmp_path, "sources:\n  erp: {kind: files, path: inbox, tables: [orders]}\n")

    source = load_config(path, {}).sources["erp"]

    assert isinstance(source, FilesSourceConfig)
    assert source.table_names() == ["orders"]


def test_unknown_key_of_a_source_is_rejected_by_its_path(tmp_path):
    path = write_config(
        tmp_path, "sources:\n  erp: {kind: files, path: inbox, tables: [a], pth: x}\n"
    )

    message = config_error(path)

    assert "sources.erp.pth" in message
    assert "did you mean sources.erp.path?" in message


# --- warehouse -------------------------------------------------------------------------------


def test_the_default_warehouse_is_a_duckdb_file_in_the_state_dir(tmp_path):
    config = load_config(write_config(tmp_path, "project: p\n"), {})

    assert config.target_name == "duckdb"
    assert config.resolve(config.target_config.path) == tmp_path / ".millpond" / "warehouse.duckdb"
    assert config.target_config.raw_schema == "raw"


def test_publish_schemas_are_unset_by_default(tmp_path):
    config = load_config(write_config(tmp_path, "project: p\n"), {})

    assert config.publish.schemas is None
    assert config.publish.keep == 5


def test_short_postgres_form_fills_the_postgres_section(tmp_path):
    path = write_config(
        tmp_path, "warehouse: {target: postgres, url: 'postgresql://app:hunter22@db/dw'}\n"
    )

    config = load_config(path, {})

    assert config.target_name == "postgres"
    assert config.target_config.url == "postgresql://app:hunter22@db/dw"
    assert config.target_config.raw_schema == "raw"


def test_long_form_keeps_every_target_section_and_uses_the_chosen_one(tmp_path):
    path = write_config(
        tmp_path,
        "warehouse:\n"
        "  target: postgres\n"
        "  duckdb: {path: w.duckdb}\n"
        "  postgres: {url: 'postgresql://app@db/dw', raw_schema: landing}\n",
    )

    config = load_config(path, {})

    assert config.target_name == "postgres"
    assert config.target_config.raw_schema == "landing"
    assert config.warehouse.duckdb.path == Path("w.duckdb")


def test_switching_target_by_env_keeps_the_other_targets_short_form_keys(tmp_path):
    # `url` belongs to no DuckDB setting, so it is kept for postgres while duckdb is chosen.
    path = write_config(
        tmp_path, "warehouse: {target: duckdb, path: w.duckdb, url: 'postgresql://app@db/dw'}\n"
    )

    on_duckdb = load_config(path, {})
    on_postgres = load_config(path, {"MILLPOND_WAREHOUSE__TARGET": "postgres"})

    assert on_duckdb.target_name == "duckdb"
    assert on_duckdb.resolve(on_duckdb.target_config.path) == tmp_path / "w.duckdb"
    assert on_postgres.target_name == "postgres"
    assert on_postgres.target_config.url == "postgresql://app@db/dw"
    assert on_postgres.warehouse.duckdb.path == Path("w.duckdb")


def test_postgres_target_without_url_names_what_is_missing(tmp_path):
    path = write_config(tmp_path, "warehouse: {target: duckdb, path: w.duckdb}\n")

    message = config_error(path, {"MILLPOND_WAREHOUSE__TARGET": "postgres"})

    assert "warehouse" in message
    assert "postgres" in message
    assert "url" in message


def test_unknown_target_is_rejected_with_the_known_ones(tmp_path):
    path = write_config(tmp_path, "warehouse: {target: oracle}\n")

    message = config_error(path)

    assert "warehouse.target" in message
    assert "'oracle'" in message
    assert "'duckdb'" in message and "'postgres'" in message


def test_warehouse_passwords_are_secrets_and_masked(tmp_path):
    path = write_config(
        tmp_path,
        "warehouse:\n"
        "  target: postgres\n"
        "  url: 'postgresql://app:hunter22@db/dw'\n"
        "  reader_password: r3aderpw\n",
    )
    config = load_config(path, {})

    masked = config.masked()

    assert config.secrets() == ["hunter22", "r3aderpw"]
    assert masked["warehouse"]["postgres"]["url"] == "postgresql://app:***@db/dw"
    assert masked["warehouse"]["postgres"]["reader_password"] == "***"
    assert "hunter22" not in repr(masked) and "r3aderpw" not in repr(masked)


def test_a_schedule_that_is_not_cron_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "millpond.yml"
    path.write_text("schedule: every morning\n")
    with pytest.raises(ConfigError, match=r"schedule: .*not a cron expression"):
        load_config(path, env={})


def test_an_override_of_no_key_is_an_error_not_ignored(tmp_path: Path) -> None:
    path = tmp_path / "millpond.yml"
    path.write_text("project: p\n")
    with pytest.raises(ConfigError, match="MILLPOND_WAREHOUS__TARGET: 'warehous' is not a key"):
        load_config(path, env={"MILLPOND_WAREHOUS__TARGET": "postgres"})
    # Variables of other tools with the prefix but no __ stay free to use.
    assert load_config(path, env={"MILLPOND_API_KEYS": "k"}).project == "p"


@pytest.mark.parametrize(
    ("variable", "says"),
    [
        (
            "MILLPOND_LAKE__ENDPOINT",
            "'endpoint' is not a key of lake; did you mean MILLPOND_LAKE__ENDPOINT_URL?",
        ),
        ("MILLPOND_PREFECT__PROT", "did you mean MILLPOND_PREFECT__PORT?"),
        ("MILLPOND_WAREHOUSE__PAHT", "did you mean MILLPOND_WAREHOUSE__PATH?"),
        ("MILLPOND_WAREHOUSE__DUCKDB__PAHT", "did you mean MILLPOND_WAREHOUSE__DUCKDB__PATH?"),
        (
            "MILLPOND_SOURCES__ERP__PAT",
            "'pat' is not a key of sources.erp; did you mean MILLPOND_SOURCES__ERP__PATH?",
        ),
        ("MILLPOND_METADAT__URL", "did you mean MILLPOND_METADATA?"),
        ("MILLPOND_SHEDULE", "did you mean MILLPOND_SCHEDULE?"),
    ],
)
def test_an_override_of_an_unknown_key_names_the_nearest_key(tmp_path, variable, says):
    path = write_config(tmp_path, "sources:\n  erp: {kind: files, path: inbox, tables: [orders]}\n")

    with pytest.raises(ConfigError) as error:
        load_config(path, {variable: "x"})

    assert str(error.value).startswith(f"{variable}: ") and says in str(error.value)


def test_overrides_of_nested_keys_that_exist_still_apply(tmp_path):
    path = write_config(tmp_path, "sources:\n  erp: {kind: files, path: inbox, tables: [orders]}\n")

    config = load_config(
        path,
        {
            "MILLPOND_SOURCES__ERP__PATH": "elsewhere",
            "MILLPOND_WAREHOUSE__DUCKDB__PATH": "w2.duckdb",
            "MILLPOND_DBT__VARS__ANY_NAME": "1",  # dbt vars are free-form
            "MILLPOND_LAKE__ENDPOINT_URL": "http://127.0.0.1:9000",
        },
    )

    assert config.sources["erp"].path == "elsewhere"
    assert config.target_config.path.name == "w2.duckdb"
    assert config.dbt.vars == {"any_name": "1"}
    assert config.lake.endpoint_url == "http://127.0.0.1:9000"
