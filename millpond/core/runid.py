"""Run ids: made in one place so every entry point (CLI, deployment, API) makes the same kind.

The API creates a Prefect flow run already named with a fresh run id, and the deployment's flow
adopts a name that is a run id instead of making another one: so the API can answer with the
run id at once, and the Prefect flow run, the ledger row and the log file share one name.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets

_RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a random suffix."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def is_run_id(text: str | None) -> bool:
    """True for what `new_run_id` makes (a Prefect name like 'elfish-mayfly' is not one)."""
    return bool(text and _RUN_ID.fullmatch(text))
