# millpond: `just run` and `just test` are all a new user needs (see README.md).
set shell := ["bash", "-euo", "pipefail", "-c"]
set dotenv-load := false

venv := ".venv"
bin := venv / "bin"
export DBT_SEND_ANONYMOUS_USAGE_STATS := "false"
export DO_NOT_TRACK := "1"
export PIP_DISABLE_PIP_VERSION_CHECK := "1"

# list the recipes
default:
    @just --list

# create .venv and install millpond (with dev tools) when missing or pyproject.toml changed
install:
    #!/usr/bin/env bash
    set -euo pipefail
    stamp={{venv}}/.installed
    if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ -x {{bin}}/millpond ]; then exit 0; fi
    command -v python3.11 >/dev/null && py=python3.11 || py=python3
    $py -c 'import sys; assert sys.version_info[:2] == (3, 11), "millpond needs Python 3.11"'
    [ -x {{bin}}/python ] || $py -m venv {{venv}}
    echo "installing millpond into {{venv}} (about a minute, once)"
    if ! {{bin}}/pip install -e '.[dev]' > {{venv}}/install.log 2>&1; then
        grep -v '^WARNING: Location' {{venv}}/install.log | tail -30; exit 1
    fi
    {{bin}}/python -c 'import millpond, duckdb, dbt, prefect' && touch "$stamp"

# the whole pipeline: demo data if the inbox is empty, extract, load, dbt, publish, summary
run *ARGS: install
    {{bin}}/millpond run --demo-if-empty 0.1 {{ARGS}}

# every test: unit, integration (real PostgreSQL, dbt, Prefect) and end-to-end, a file per
# worker at a time on every core (up to 4; `just test -n 0` runs them in one process)
test *ARGS: install
    {{bin}}/pytest -q -n auto --maxprocesses 4 --dist loadfile {{ARGS}}

# the fast tier for your own loop: unit tests only
test-fast *ARGS: install
    {{bin}}/pytest -q -n auto --maxprocesses 4 tests/unit {{ARGS}}

# ruff lint + format check, mypy on the product packages, and the dbt project parses
lint: install
    {{bin}}/ruff check .
    {{bin}}/ruff format --check .
    {{bin}}/mypy
    DBT_TARGET_PATH=.millpond/dbt/target DBT_LOG_PATH=.millpond/dbt/logs {{bin}}/dbt --quiet parse --project-dir transform --profiles-dir transform

# format the code
fmt: install
    {{bin}}/ruff format .
    {{bin}}/ruff check --fix .

# after a failed run: rerun its failed and skipped nodes with their descendants, keep the rest
retry RUN="last": install
    {{bin}}/millpond retry {{RUN}}

# the task graph as text (ARGS: --json, --mermaid)
graph *ARGS: install
    {{bin}}/millpond graph {{ARGS}}

# TPC-H ERP export files into the inbox (SCALE 0.1 is ~100 MB of CSV)
demo-data SCALE="0.1": install
    {{bin}}/millpond demo-data --scale {{SCALE}}

# millpond vs bare DuckDB, one dbt build, DuckDB's COPY and dlt (`just bench --scale 0.1 1 --repeat 3 --json`)
bench *ARGS: install
    #!/usr/bin/env bash
    set -euo pipefail
    stamp={{venv}}/.bench-installed
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "installing the bench extra (dlt, matplotlib) into {{venv}} (once)" >&2
        if ! {{bin}}/pip install -e '.[dev,bench]' > {{venv}}/bench-install.log 2>&1; then
            grep -v '^WARNING: Location' {{venv}}/bench-install.log | tail -30; exit 1
        fi
        touch "$stamp"
    fi
    {{bin}}/python bench/compare.py {{ARGS}}

# JupyterLab on notebooks/ at http://127.0.0.1:8888 (installs the notebook extra once); docs in README.md
notebook *ARGS: install
    #!/usr/bin/env bash
    set -euo pipefail
    stamp={{venv}}/.notebook-installed
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ ! -x {{bin}}/jupyter-lab ]; then
        echo "installing the notebook extra (JupyterLab) into {{venv}} (once)" >&2
        if ! {{bin}}/pip install -e '.[dev,notebook]' > {{venv}}/notebook-install.log 2>&1; then
            grep -v '^WARNING: Location' {{venv}}/notebook-install.log | tail -30; exit 1
        fi
        touch "$stamp"
    fi
    root=(); [ "$(id -u)" != 0 ] || root=(--allow-root)  # a container's root user
    {{bin}}/jupyter lab --ip 127.0.0.1 --ServerApp.root_dir=notebooks "${root[@]}" {{ARGS}}

# the Prefect UI (starts the local Prefect server if needed)
ui: install
    {{bin}}/millpond ui

# the API and dashboard (127.0.0.1 unless MILLPOND_API_KEYS is set or --host given); docs/serving.md
serve *ARGS: install
    {{bin}}/millpond serve {{ARGS}}

# write the Airflow DAG to airflow_compat/dags/millpond.py
dag: install
    {{bin}}/millpond dag

# stop what `just run` started (Prefect server, embedded PostgreSQL)
down:
    [ ! -x {{bin}}/millpond ] || {{bin}}/millpond down

# remove all local state (lake, warehouse, snapshots, ledger, logs); keeps the inbox and .venv
clean: down
    rm -rf .millpond
