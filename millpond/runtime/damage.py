"""Before a run trusts the ledger's bookkeeping, the warehouse it describes is checked.

The ledger says which partitions are loaded and what every model was built from; a run with
nothing new trusts it and rebuilds nothing. That is only true while the warehouse is the one
the ledger describes. A deleted warehouse file once gave a green run ("39 unchanged") with no
warehouse at all, and the next run with data failed on missing tables; a damaged one failed
every load with DuckDB's checksum error naming no file. So every run start asks the target
first (`Target.health`, where the target can tell):
- missing, while the ledger remembers loads or models or the lake holds partitions: every
  model's fingerprint is voided in the ledger (so every orchestrator and process rebuilds it;
  a ledger that cannot be read makes the run a full refresh instead), the run cannot be
  settled as "nothing new" (every load registers the lake's partitions again), and the run
  says why in a warning and its summary;
- unreadable: the run cannot be settled either; its loads fail naming the file and
  `millpond doctor --repair`.
"""

from __future__ import annotations

from dataclasses import dataclass

from millpond.core.logs import logger
from millpond.metadata import reads
from millpond.metadata.records import Fingerprints
from millpond.nodes.fingerprints import PUBLISH_KIND
from millpond.runtime.context import RunContext

REPAIR = "`millpond doctor --repair` rebuilds it from the lake"


@dataclass(frozen=True)
class WarehouseCheck:
    """What the run start found: a note for the warning and summary (None: all is well), and
    whether the ledger's bookkeeping may settle the run without running it."""

    note: str | None = None
    can_settle: bool = True


def check_warehouse(ctx: RunContext) -> WarehouseCheck:
    """The run's warehouse check, done once per run (a run resource) and logged once."""
    return ctx.resource("warehouse-check", lambda: _check(ctx))


def warehouse_note(ctx: RunContext) -> str | None:
    """What the summary says about the warehouse, if the run's check found anything."""
    if "warehouse-check" not in ctx.resource_keys():
        return None
    return check_warehouse(ctx).note


def _check(ctx: RunContext) -> WarehouseCheck:
    health = getattr(ctx.target, "health", None)
    if health is None:  # a target that cannot tell (PostgreSQL: a server, not a file)
        return WarehouseCheck()
    try:
        damage = health()
    except Exception as exc:  # e.g. the lock wait ran out: the run meets it itself
        logger.debug(f"cannot check the warehouse ({exc})")
        return WarehouseCheck(can_settle=False)
    if damage is None:
        return WarehouseCheck()
    if damage.problem != "missing":
        note = f"the warehouse {damage.path} cannot be read ({damage.detail}); {REPAIR}"
        logger.error(note)
        return WarehouseCheck(note, can_settle=False)
    latest = _known_models(ctx)
    if not latest and latest is not None and not _known_loads(ctx) and not landed_anything(ctx):
        return WarehouseCheck()  # a first run: nothing was ever landed or built
    if latest:
        ctx.ledger.write(Fingerprints(ctx.run_id, {node: (None, None) for node in latest}))
    if latest is None:
        # The ledger cannot say what it believes now, and may answer later in the run:
        # this run rebuilds everything whatever it says then.
        ctx.full_refresh = True
    note = (
        f"the warehouse {damage.path} is missing: every landed partition is registered again "
        "from the lake and every model rebuilt"
    )
    logger.warning(note)
    return WarehouseCheck(note, can_settle=False)


def _known_models(ctx: RunContext) -> list[str] | None:
    """Every node the ledger holds a fingerprint for (what it believes the warehouse holds);
    None when the ledger cannot be read."""
    try:
        _, latest = reads.fingerprints(ctx.ledger, PUBLISH_KIND)
    except Exception:
        return None
    return sorted(node for node, record in latest.items() if record[0] is not None)


def landed_anything(ctx: RunContext) -> bool:
    """Whether the lake holds any partition of a configured table (damaged ones count)."""
    for name, source in ctx.config.sources.items():
        for table in source.table_names():
            if ctx.lake.scan(name, table) != ([], []):
                return True
    return False


def _known_loads(ctx: RunContext) -> bool:
    """Whether the ledger says some partition of a configured table is in the warehouse."""
    for name, source in ctx.config.sources.items():
        for table in source.table_names():
            try:
                if reads.loaded_partitions(ctx.ledger, name, table):
                    return True
            except Exception:
                return False
    return False
