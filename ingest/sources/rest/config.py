"""What a `rest` source is in millpond.yml: the API, its credentials, and one endpoint per table.

Errors in the config are said when it is read (pydantic); errors an API's answers show about
the config (no JSON, no records where `record_path` points) are `RestSourceError`, which names
the setting to change.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from millpond.core.config import SourceConfigBase, StrictModel
from millpond.core.masking import collect_secrets
from millpond.core.monitoring import TableMonitors


class RestSourceError(Exception):
    """A response or a pagination that cannot be used as configured; says source, table, URL
    (secrets masked) and what to change. Retrying cannot help."""

    retryable = False


class Auth(StrictModel):
    """bearer (token), api_key (name, value, in header or query) or basic (username,
    password); values from `${ENV}`."""

    type: Literal["bearer", "api_key", "basic"]
    token: str | None = None
    name: str | None = None
    value: str | None = None
    location: Literal["header", "query"] = Field("header", alias="in")
    username: str | None = None
    password: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Auth:
        needed = {"bearer": ("token",), "api_key": ("name", "value"), "basic": ("username",)}
        missing = [f for f in needed[self.type] if not getattr(self, f)]
        if missing:
            raise ValueError(f"auth type {self.type} needs {', '.join(missing)}")
        return self


class Paginate(StrictModel):
    """How to get the next page: page_number, offset, cursor (in the body), next_url (in the
    body), link_header, or none."""

    style: Literal["none", "page_number", "offset", "cursor", "next_url", "link_header"] = "none"
    param: str | None = None  # page_number: the page param; cursor: the cursor param
    start: int = 1  # page_number: the first page
    size_param: str | None = None  # page_number: page size param (optional)
    size: int | None = None
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = 100
    cursor_path: str | None = None  # cursor: where the next cursor is in the body
    next_url_path: str | None = None  # next_url: where the next URL is in the body


class RestIncremental(StrictModel):
    """Ask only for what is new: `param` gets the cursor (the largest `cursor_field` seen).
    `stall_runs` and `on_stall` override the source's for this table."""

    cursor_field: str
    param: str
    initial: Any = None
    stall_runs: int | None = Field(None, ge=1)
    on_stall: Literal["warn", "fail"] | None = None


class Endpoint(TableMonitors):
    """One table: a path under base_url, its params, where its records are, its paging (and
    its monitors: `expect_every`, `volume`, millpond.core.monitoring)."""

    path: str
    params: dict[str, Any] = Field(default_factory=dict)
    record_path: str | None = None  # dotted path to the list of records; unset: the body
    paginate: Paginate = Paginate()
    incremental: RestIncremental | None = None
    primary_key: list[str] = Field(default_factory=list)


class RestSourceConfig(SourceConfigBase):
    """An HTTP JSON API; each table is an endpoint."""

    kind: Literal["rest"]
    base_url: str
    headers: dict[str, str] = Field(default_factory=dict)
    auth: Auth | None = None
    tables: dict[str, Endpoint]
    timeout_seconds: float = Field(30, gt=0)
    retries: int = Field(5, ge=0, le=20)
    max_pages: int = Field(10_000, ge=1)
    # An incremental table whose cursor has not moved for this many runs in a row while the
    # API kept sending records is a warning in the log, the summary and the ledger (`fail`:
    # the extract fails instead).
    stall_runs: int = Field(3, ge=1)
    on_stall: Literal["warn", "fail"] = "warn"

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") + "/"

    def secrets(self) -> list[str]:
        """Credentials wherever they were put (auth, the base URL's password, headers or query
        params whose names say they hold one), by millpond.core.masking's one policy."""
        return collect_secrets(self.model_dump(), (), ("sources", "rest"))
