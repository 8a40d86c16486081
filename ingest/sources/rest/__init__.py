"""The `rest` source kind: JSON APIs declared in millpond.yml, paginated, incremental.

What is where: `config` (the millpond.yml models), `client` (credentials for the API's origin
only, redirects, retries), `pagination` (pages and their guards); the records become Arrow
through `ingest.sources.records`, which any API-like source shares. This module is the kind:
one read per table and run.

Records become one Arrow table per run: nested objects are flattened to `parent__child`
columns, lists kept as JSON text, and a column whose values mix types (numbers and text) is
kept as text, so a run's types are stable; types across runs are reconciled losslessly at load.
The records of one run are held in memory: right for the APIs small teams pull from.

Cursors: the largest `cursor_field` value read, compared as instants when the values are ISO
timestamps and as numbers when they are numbers; the value is committed as the API sent it. A
read that finds nothing lands nothing (the table keeps its last partition).

Every run asks the API (a read is known by what it returned, not by where it started). What
comes back is filtered as dlt's incremental does (`ingest.sources.records.since`): records older
than the cursor are dropped, and so are records at the cursor value identical to ones already
landed; their hashes are kept in the manifest (`boundary`). When the cursor stays put for
`stall_runs` runs while the API keeps sending records, landing warns (or fails: `on_stall`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa

from millpond.core.config import MillpondConfig
from millpond.core.logs import logger
from millpond.core.masking import mask, register_secrets
from millpond.core.registry import Probe, ReadReport, SourceItem, SourceKind, StallCheck, TableState
from millpond.ingest.sources.records import Record, flatten, flattened_name, latest, since, to_table
from millpond.ingest.sources.rest import pagination
from millpond.ingest.sources.rest.client import ApiClient
from millpond.ingest.sources.rest.config import RestIncremental, RestSourceConfig, RestSourceError


@dataclass
class _EndpointRead:
    """One run's read of one table: where it starts, and what it found once it ran (the
    cursor and the report landing asks for after the batches were read)."""

    source: str
    config: RestSourceConfig
    table: str
    start: Any
    boundary: frozenset[str]
    cursor: Any = None
    report: ReadReport | None = None

    def read(self) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """Every page's records, flattened, less what is landed already, as Arrow."""
        spec = self.config.tables[self.table]
        with ApiClient(self.source, self.config) as api:
            records = [flatten(r) for r in pagination.records(api, self.table, spec, self.start)]
        if spec.incremental is not None:
            records = self._since(spec.incremental, records)
        data = to_table(records)
        return data.schema, iter(data.to_batches())

    def _since(self, incremental: RestIncremental, records: list[Record]) -> list[Record]:
        """The records not landed yet; sets the cursor and the read's report."""
        where = f"{self.source}.{self.table}"
        field = flattened_name(incremental.cursor_field)
        if records and latest(r.get(field) for r in records) is None:
            raise RestSourceError(
                f"{where}: no record has the cursor field "
                f"{incremental.cursor_field!r} (fields: "
                f"{', '.join(list(records[0])[:10])}); set "
                f"sources.{self.source}.tables.{self.table}.incremental.cursor_field"
            )
        kept, self.cursor, report = since(records, field, self.start, self.boundary, kind="rest")
        self.report = report
        if report.dropped:
            logger.info(
                f"{where}: {report.dropped} of {report.returned} records sent were landed "
                f"already (at or before the cursor {self.start}); not landed again"
            )
        return kept

    def read_report(self) -> ReadReport:
        """The report, which landing asks for only after the read ran."""
        if self.report is None:
            raise RuntimeError("a read's report was asked for before the read ran")
        return self.report


class RestSource:
    """One API; each table's pages are fetched in order within its extract."""

    def __init__(self, name: str, config: RestSourceConfig) -> None:
        self.name = name
        self.config = config
        register_secrets(config.secrets())

    def items(self, table: str, state: TableState | None = None) -> list[SourceItem]:
        spec = self.config.tables[table]
        incremental = spec.incremental
        start = None
        boundary: frozenset[str] = frozenset()
        if incremental is not None:
            if state is not None and state.cursor is not None:
                start, boundary = state.cursor, frozenset(state.boundary)
            else:
                start = incremental.initial
        what = {"table": table, "spec": spec.model_dump(mode="json"), "from": start}
        fingerprint = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode())
        # Every read asks the API: a full read lands a snapshot, an incremental read is
        # recorded under what it returned (its report's identity).
        key = f"{fingerprint.hexdigest()}:{time.time_ns()}"
        read = _EndpointRead(self.name, self.config, table, start, boundary, cursor=start)
        return [
            SourceItem(
                name=f"{self.name}.{table}" + (f" after {start}" if start is not None else ""),
                fingerprint=f"rest:{key}",
                size=0,
                read=read.read,
                cursor=(lambda: read.cursor) if incremental else None,
                report=read.read_report if incremental else None,
                stall=self._stall(table) if incremental else None,
                # Nothing read, nothing landed: an empty full read would wipe the columns
                # the models select; the last snapshot stays.
                land_if_empty=False,
                replace=incremental is None,
                primary_key=tuple(spec.primary_key),
                order_by=flattened_name(incremental.cursor_field) if incremental else None,
            )
        ]

    def _stall(self, table: str) -> StallCheck:
        """The table's stall check, with what to look at when it fires."""
        incremental = self.config.tables[table].incremental
        assert incremental is not None
        where = f"sources.{self.name}"
        runs = incremental.stall_runs or self.config.stall_runs
        on_stall = incremental.on_stall or self.config.on_stall
        hint = (
            f"Check that the API filters on `{incremental.param}` "
            f"({where}.tables.{table}.incremental.param) by `{incremental.cursor_field}` "
            f"(cursor_field): records at or before the cursor are dropped before landing, so "
            f"nothing lands twice, but every run reads them again. Set {where}.on_stall: "
            f"fail to fail the run instead, or {where}.stall_runs to change how many runs."
        )
        return StallCheck(runs=runs, fail=on_stall == "fail", hint=hint)

    def probe(self, timeout: float) -> Probe:
        """The API's host answers one HEAD of `base_url` within `timeout`. No credentials,
        headers or query params are sent and no redirect is followed, so nothing secret goes
        anywhere; any HTTP answer (401 and 404 too) means the server is there."""
        import httpx

        parts = urlsplit(self.config.base_url)
        host = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname or ""
        bare = urlunsplit((parts.scheme, host, parts.path, "", ""))  # no user:password@
        try:
            response = httpx.head(bare, timeout=timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            return Probe(
                problems=(
                    f"sources.{self.name}.base_url: {bare} does not answer "
                    f"({type(exc).__name__}: {mask(str(exc)) or 'no detail'}); check the URL "
                    "and that the server is reachable from here",
                )
            )
        reads = {
            table: f"GET {bare.rstrip('/')}/{spec.path.lstrip('/')}"
            for table, spec in self.config.tables.items()
        }
        return Probe(detail=f"{bare}: HTTP {response.status_code}", reads=reads)

    def warnings(self) -> list[str]:
        return []


def _create(name: str, config: RestSourceConfig, stack: MillpondConfig) -> RestSource:
    return RestSource(name, config)


REST = SourceKind(config_model=RestSourceConfig, create=_create)
