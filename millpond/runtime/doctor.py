"""`millpond doctor`: the warehouse, its snapshots, the lake and the ledger, checked against
each other, and repaired where the lake allows.

The lake is the source of truth: its partitions (with their manifests) are what was landed.
The warehouse, the published snapshots and the ledger's bookkeeping are all derived from it,
so each can be rebuilt or corrected from it:
- warehouse missing or unreadable: set aside (kept as `<file>.damaged-<time>`), every
  partition registered again from the lake, every model's fingerprint voided so the next
  `millpond run` rebuilds and publishes every model;
- `current` dangling or unreadable: the marts published again from the warehouse (when it is
  sound; else the next run does it), temp files of killed publishes deleted;
- a manifest that cannot be read: its partition set aside under `_damaged/` in the lake, out
  of the warehouse and the ledger (the next run lands its files again if the source still has
  them); a partition the warehouse reads whose folder is gone: taken out of the warehouse;
- the ledger: partitions the warehouse holds but the ledger does not mark loaded (a kill
  between the two writes) marked, partitions it marks loaded that the warehouse misses loaded,
  `running` runs whose lease is gone closed as abandoned.
A repair is recorded in the ledger as a run of its own (orchestrator and trigger `doctor`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pyarrow.fs as pafs

from millpond.core.locks import run_lock
from millpond.core.logs import logger
from millpond.ingest.lake import Manifest
from millpond.metadata import reads
from millpond.metadata.records import Fingerprints, LakeAction, RunFinished, RunStarted
from millpond.nodes.fingerprints import PUBLISH_KIND
from millpond.nodes.load import mark_loaded
from millpond.nodes.publish import PUBLISH_NODE
from millpond.runtime.context import RunContext
from millpond.runtime.damage import landed_anything
from millpond.runtime.lake_actions import tables_of
from millpond.runtime.lifecycle import close_dead_runs, lease_gone, task_lease_expiry, this_host

DAMAGED = "_damaged"  # where a damaged partition is set aside, under the lake's root
ORDER = ["lake", "warehouse", "ledger", "snapshot"]


@dataclass
class Finding:
    """One problem: where (file, partition or ledger row), what, and what --repair does."""

    area: str  # warehouse | snapshot | lake | ledger
    where: str
    problem: str
    repair: str  # what `--repair` does; "" when only a person can
    fix: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    done: str | None = None  # what the repair did
    failed: str | None = None  # why the repair did not work


@dataclass
class Examination:
    """Every finding, and what the repairs decided for the run after them."""

    findings: list[Finding] = field(default_factory=list)
    rebuild_marts: bool = False  # the warehouse was rebuilt: the next run rebuilds every model

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.done is None]


def examine(ctx: RunContext) -> Examination:
    """Check everything; change nothing."""
    exam = Examination()
    warehouse_ok = _check_warehouse(ctx, exam)
    _check_lake(ctx, exam, warehouse_ok)
    _check_snapshots(ctx, exam, warehouse_ok)
    _check_ledger(ctx, exam, warehouse_ok)
    return exam


def repair(ctx: RunContext, exam: Examination) -> None:
    """Fix what can be fixed, in order (lake, warehouse, ledger, snapshots), under the run lock
    (re-entrant: the caller may hold it since the examination) so no run changes the state
    under the repair; recorded in the ledger as a run."""
    if not any(f.fix for f in exam.findings):
        return
    ctx.ledger.write(RunStarted(ctx.run_id, "doctor", "doctor", ctx.config.target_name))
    with run_lock(ctx.config.locks_dir, wait_seconds=60):
        # The lake first (a damaged partition would stop the warehouse's rebuild), the
        # warehouse before the ledger and the snapshots that are read from it.
        for finding in sorted(exam.findings, key=lambda f: ORDER.index(f.area)):
            if finding.fix is None:
                continue
            try:
                finding.done = finding.fix()
                logger.info(f"{finding.where}: {finding.done}")
            except Exception as exc:
                finding.failed = f"{type(exc).__name__}: {exc}"
                logger.error(f"{finding.where}: repair failed: {finding.failed}")
    failed = [f for f in exam.findings if f.failed]
    ctx.ledger.write(
        RunFinished(
            ctx.run_id,
            "failed" if failed else "success",
            error="; ".join(f"{f.where}: {f.failed}" for f in failed) or None,
            summary={
                "repairs": [{"where": f.where, "done": f.done} for f in exam.findings if f.done]
            },
        )
    )


# --- the warehouse -----------------------------------------------------------------------


def _check_warehouse(ctx: RunContext, exam: Examination) -> bool:
    """Whether the warehouse can be trusted (a target that cannot tell, PostgreSQL, is)."""
    health = getattr(ctx.target, "health", None)
    if health is None:
        return True
    damage = health(deep=True)
    if damage is None:
        return True
    if damage.problem == "missing" and not landed_anything(ctx):
        return True  # nothing landed yet: the first run makes it
    detail = f": {damage.detail}" if damage.detail else ""
    exam.findings.append(
        Finding(
            "warehouse",
            str(damage.path),
            f"{damage.problem}{detail}",
            ("set aside, then " if damage.problem != "missing" else "")
            + "rebuilt from the lake (every partition registered again); the next "
            "`millpond run` rebuilds and publishes every model",
            lambda: _rebuild_warehouse(ctx, exam, damage.problem != "missing"),
        )
    )
    return False


def _rebuild_warehouse(ctx: RunContext, exam: Examination, set_aside: bool) -> str:
    # First, before anything changes: a rebuilt warehouse whose models the ledger still
    # calls unchanged would be the very silent failure this repairs. (Raises while the
    # ledger cannot be read.)
    _void_fingerprints(ctx)
    said = ""
    if set_aside:
        stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        aside = ctx.target.set_aside(f"damaged-{stamp}")  # type: ignore[attr-defined]
        said = f"set aside as {aside}; "
    partitions = 0
    for source, table in tables_of(ctx, None):
        loaded = ctx.target.load_table(ctx.lake, source, table)
        mark_loaded(ctx.ledger, ctx.lake, source, table, set(loaded.partitions))
        partitions += len(loaded.partitions)
    exam.rebuild_marts = True
    return f"{said}{partitions} partitions registered from the lake; every model is rebuilt"


def _void_fingerprints(ctx: RunContext) -> None:
    """Every model rebuilt by the next run, whatever orchestrator runs it."""
    _, latest = reads.fingerprints(ctx.ledger, PUBLISH_KIND)
    ctx.ledger.write(Fingerprints(ctx.run_id, {node: (None, None) for node in latest}))


# --- the lake -----------------------------------------------------------------------------


def _check_lake(ctx: RunContext, exam: Examination, warehouse_ok: bool) -> None:
    lake = ctx.lake
    for source, table in tables_of(ctx, None):
        manifests, damaged = lake.scan(source, table)
        for broken in damaged:
            exam.findings.append(
                Finding(
                    "lake",
                    broken.manifest,
                    f"manifest cannot be read ({broken.reason})",
                    f"partition set aside under {DAMAGED}/ and taken out of the warehouse and "
                    "the ledger; the next run lands its files again if the source has them",
                    _set_aside_partition(ctx, source, table, broken.partition_id, broken.folder),
                )
            )
        for manifest in manifests:
            missing = _missing_parts(ctx, manifest)
            if missing:
                exam.findings.append(
                    Finding(
                        "lake",
                        lake.uri(
                            lake.partition_dir(source, table, manifest.ingest_date, manifest.run_id)
                        ),
                        f"partition {manifest.partition_id}: {missing}",
                        f"partition set aside under {DAMAGED}/ and taken out of the warehouse "
                        "and the ledger; the next run lands its files again if the source "
                        "has them",
                        _set_aside_partition(
                            ctx,
                            source,
                            table,
                            manifest.partition_id,
                            lake.partition_dir(
                                source, table, manifest.ingest_date, manifest.run_id
                            ),
                        ),
                    )
                )
        if not warehouse_ok:
            continue
        known = {m.partition_id for m in manifests} | {d.partition_id for d in damaged}
        for gone in sorted(ctx.target.loaded_partitions(source, table) - known):
            exam.findings.append(
                Finding(
                    "lake",
                    lake.uri(lake.path("raw", gone)),
                    f"partition {gone} is read by the warehouse but its folder is gone",
                    "taken out of the warehouse's raw relation and the ledger",
                    _forget_partition(ctx, source, table, gone),
                )
            )


def _missing_parts(ctx: RunContext, manifest: Manifest) -> str | None:
    """What is wrong with a partition's parts (gone, or not the size the manifest says)."""
    infos = ctx.lake.fs.get_file_info(ctx.lake.part_paths(manifest))
    for part, info in zip(manifest.parts, infos, strict=True):
        if info.size is None:
            return f"part {part.name} is missing"
        if part.bytes and info.size != part.bytes:
            return f"part {part.name} has {info.size:,} bytes, its manifest says {part.bytes:,}"
    return None


def _set_aside_partition(
    ctx: RunContext, source: str, table: str, partition_id: str, folder: str
) -> Callable[[], str]:
    def fix() -> str:
        lake = ctx.lake
        aside = lake.path(DAMAGED, partition_id)
        if lake.exists(aside):
            lake.fs.delete_dir(aside)
        lake.fs.create_dir(aside, recursive=True)
        _unregister(ctx, source, table, partition_id)  # while its files are still there
        # File by file: S3 has no folders to rename.
        for info in lake.fs.get_file_info(pafs.FileSelector(folder, recursive=True)):
            if info.type == pafs.FileType.File:
                moved = f"{aside}/{info.path.removeprefix(folder).lstrip('/')}"
                lake.fs.create_dir(moved.rsplit("/", 1)[0], recursive=True)
                lake.fs.copy_file(info.path, moved)
        lake.fs.delete_dir(folder)
        return f"set aside as {lake.uri(aside)}"

    return fix


def _forget_partition(
    ctx: RunContext, source: str, table: str, partition_id: str
) -> Callable[[], str]:
    def fix() -> str:
        _unregister(ctx, source, table, partition_id)
        return "taken out of the warehouse and the ledger"

    return fix


def _unregister(ctx: RunContext, source: str, table: str, partition_id: str) -> None:
    """Out of the raw relation (when the warehouse opens) and out of the ledger's partitions
    (a `drop` lake action deletes the row), so nothing remembers it as landed or loaded."""
    was_loaded = False
    try:
        was_loaded = ctx.target.drop_partition(source, table, partition_id)
    except Exception as exc:  # a damaged warehouse is rebuilt without it anyway
        logger.warning(f"{partition_id}: not taken out of the warehouse ({exc})")
    ctx.ledger.write(
        LakeAction(
            "drop", partition_id, source, table, None, {"doctor": True, "was_loaded": was_loaded}
        )
    )


# --- snapshots ----------------------------------------------------------------------------


def _check_snapshots(ctx: RunContext, exam: Examination, warehouse_ok: bool) -> None:
    target = ctx.target
    # Temp files first: publishing again would delete them on its own.
    orphan_files = getattr(target, "orphan_files", None)
    for orphan in orphan_files() if orphan_files else []:
        size = orphan.lstat().st_size if orphan.is_symlink() or orphan.exists() else 0
        exam.findings.append(
            Finding(
                "snapshot",
                str(orphan),
                f"temp file of a killed publish ({size:,} bytes)",
                "deleted",
                partial(_remove_orphan, ctx, orphan),
            )
        )
    published_health = getattr(target, "published_health", None)
    damage = published_health(expected=_published(ctx)) if published_health else None
    if damage is not None:
        exam.findings.append(
            Finding(
                "snapshot",
                str(damage.path),
                f"{damage.problem}" + (f": {damage.detail}" if damage.detail else ""),
                "marts published again from the warehouse"
                if warehouse_ok
                else "published again by the next `millpond run` (the warehouse is rebuilt)",
                (lambda: _republish(ctx)) if warehouse_ok else None,
            )
        )


def _published(ctx: RunContext) -> bool:
    """Whether the ledger says some run published (then `current` must exist)."""
    try:
        return bool(reads.fingerprints(ctx.ledger, PUBLISH_KIND)[0])
    except Exception:
        return False


def _republish(ctx: RunContext) -> str:
    schemas = list(ctx.graph.node(PUBLISH_NODE).params.schemas)
    done = ctx.target.publish(ctx.run_id, schemas, ctx.config.publish.keep)
    return f"published again as {done.location} ({len(done.tables)} tables)"


def _remove_orphan(ctx: RunContext, path: Path) -> str:
    """Delete the temp files under the warehouse lock (the first finding's fix does all)."""
    if path.is_symlink() or path.exists():
        ctx.target.remove_orphan_files()  # type: ignore[attr-defined]
    return "deleted"


# --- the ledger ---------------------------------------------------------------------------


def _check_ledger(ctx: RunContext, exam: Examination, warehouse_ok: bool) -> None:
    ledger = ctx.ledger
    try:
        running = reads.running_runs(ledger)
    except Exception as exc:
        exam.findings.append(Finding("ledger", LEDGER_WHERE, f"unreachable ({exc})", ""))
        return
    host, now, expiry = this_host(), dt.datetime.now(dt.UTC), task_lease_expiry(ctx.config)
    for run in running:
        reason = lease_gone(run, host, now, expiry)
        if reason:
            exam.findings.append(
                Finding(
                    "ledger",
                    f"runs/{run['run_id']}",
                    f"`{run.get('status', 'running')}`, but {reason}",
                    "closed as abandoned, with its running nodes",
                    lambda: f"closed {len(close_dead_runs(ctx))} run(s) as abandoned",
                )
            )
    if not warehouse_ok:
        return  # the rebuild re-marks every partition
    for source, table in tables_of(ctx, None):
        manifests, _ = ctx.lake.scan(source, table)
        landed = {m.partition_id: m.sha256 for m in manifests}
        marked = dict(reads.loaded_partitions(ledger, source, table))
        registered = ctx.target.loaded_partitions(source, table) & set(landed)
        unmarked = sorted(registered - set(marked))
        if unmarked:
            exam.findings.append(
                Finding(
                    "ledger",
                    f"partitions/{source}.{table}",
                    f"{len(unmarked)} partition(s) in the warehouse not marked loaded "
                    f"({unmarked[0]}{', ...' if len(unmarked) > 1 else ''})",
                    "marked loaded",
                    _mark_loaded(ctx, source, table, unmarked),
                )
            )
        missing = sorted(p for p in marked if p in landed and p not in registered)
        changed = sorted(p for p, sha in marked.items() if p in landed and sha != landed[p])
        if missing or changed:
            first = (missing or changed)[0]
            exam.findings.append(
                Finding(
                    "ledger",
                    f"partitions/{source}.{table}",
                    f"{len(missing)} partition(s) marked loaded that the warehouse does not "
                    f"hold, {len(changed)} whose manifest changed since ({first})",
                    "loaded into the warehouse again",
                    _reload(ctx, source, table, changed),
                )
            )


LEDGER_WHERE = "metadata database (metadata.url)"


def _mark_loaded(
    ctx: RunContext, source: str, table: str, partition_ids: list[str]
) -> Callable[[], str]:
    def fix() -> str:
        marked = mark_loaded(ctx.ledger, ctx.lake, source, table, set(partition_ids))
        return f"marked {marked} loaded"

    return fix


def _reload(ctx: RunContext, source: str, table: str, changed: list[str]) -> Callable[[], str]:
    def fix() -> str:
        with ctx.target.writer_lock():
            for partition_id in changed:
                ctx.target.drop_partition(source, table, partition_id)
            loaded = ctx.target.load_table(ctx.lake, source, table)
        mark_loaded(ctx.ledger, ctx.lake, source, table, set(loaded.partitions))
        return f"{len(loaded.partitions)} partition(s) loaded"

    return fix
