"""The marts readers may query: dbt models from the manifest that exist in the published marts.

Names, descriptions and the column list come from the dbt manifest (what the team documented),
column types from the published relation itself (the manifest rarely declares them). Every
identifier the query builder ever writes into SQL comes from here, never from a request.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from millpond.core.config import MillpondConfig
from millpond.core.registry import MartsReader
from millpond.serve.marts.readers import open_reader, snapshot_key
from millpond.serve.marts.types import kind_of

TABLE_MATERIALIZATIONS = {"table", "incremental", "snapshot"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    kind: str
    description: str = ""


@dataclass(frozen=True)
class Mart:
    name: str
    schema: str  # the dbt schema (`marts`); readers resolve the published one
    description: str
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class Catalog:
    marts: dict[str, Mart] = field(default_factory=dict)
    snapshot: str | None = None


def manifest_path(config: MillpondConfig) -> Path:
    """Where millpond's dbt parse writes the manifest (the runner's target dir)."""
    # The copy millpond replaces atomically after each parse (dbt rewrites its own in place).
    return config.state / "dbt" / "manifest.json"


def manifest_models(path: Path) -> list[dict[str, Any]]:
    """Table-like dbt models of the manifest (views are not published)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no dbt manifest yet; run `just run` first")
    nodes = json.loads(path.read_text(encoding="utf-8")).get("nodes", {})
    return [
        n
        for n in nodes.values()
        if n.get("resource_type") in {"model", "snapshot"}
        and n.get("config", {}).get("materialized") in TABLE_MATERIALIZATIONS
    ]


def build_catalog(models: list[dict[str, Any]], reader: MartsReader) -> Catalog:
    """Models of the manifest that the published marts hold, typed from the relations."""
    published = reader.relations()
    marts: dict[str, Mart] = {}
    for model in sorted(models, key=lambda m: m["name"]):
        name = model.get("alias") or model["name"]
        actual = published.get((model["schema"], name))
        if actual is None or name in marts:
            continue
        documented = model.get("columns") or {}
        columns = tuple(
            Column(
                col, sql_type, kind_of(sql_type), (documented.get(col) or {}).get("description", "")
            )
            for col, sql_type in actual
            if not documented or col in documented
        )
        marts[name] = Mart(name, model["schema"], model.get("description", ""), columns)
    return Catalog(marts, reader.snapshot)


_cache: dict[tuple[Any, ...], Catalog] = {}
_cache_lock = threading.Lock()


def load_catalog(config: MillpondConfig) -> Catalog:
    """The catalog, rebuilt only when the manifest or the published snapshot changed (parsing
    a manifest costs tens of milliseconds: not something to do per request)."""
    path = manifest_path(config)
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no dbt manifest yet; run `just run` first") from None
    key = (str(path), mtime, snapshot_key(config))
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    models = manifest_models(path)
    reader = open_reader(config)
    try:
        catalog = build_catalog(models, reader)
    finally:
        reader.close()
    with _cache_lock:
        _cache.clear()
        _cache[key] = catalog
    return catalog
