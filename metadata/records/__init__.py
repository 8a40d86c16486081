"""The ledger's records: one frozen class per kind of write, carrying its own SQL.

Adding a ledger write is defining one record class (`metadata.records.base.LedgerRecord`) in
the module of its tables: `runs` (a run's life), `nodes` (what its nodes did, built and
tested), `lake` (partitions, cursors, lake actions, rejected files). Writers take any record:
the run's buffered `metadata.ledger.Ledger.write`, or `commit(conn, record)` on a connection.
Importing the package registers every kind, so a buffered record can always be read back.
"""

from millpond.metadata.records.base import LedgerRecord, commit
from millpond.metadata.records.lake import (
    LakeAction,
    PartitionLanded,
    PartitionLoaded,
    Rejection,
    SourceState,
)
from millpond.metadata.records.nodes import (
    DataTestResults,
    Fingerprints,
    NodeFinished,
    NodeStarted,
    RowCounts,
)
from millpond.metadata.records.runs import (
    RUN_STATUSES,
    LeaseClaimed,
    LeaseHeartbeat,
    QueuedRunFailed,
    RunAbandoned,
    RunFinished,
    RunQueued,
    RunStarted,
    RunStatus,
)

__all__ = [
    "RUN_STATUSES",
    "DataTestResults",
    "Fingerprints",
    "LakeAction",
    "LeaseClaimed",
    "LeaseHeartbeat",
    "LedgerRecord",
    "NodeFinished",
    "NodeStarted",
    "PartitionLanded",
    "PartitionLoaded",
    "QueuedRunFailed",
    "Rejection",
    "RowCounts",
    "RunAbandoned",
    "RunFinished",
    "RunQueued",
    "RunStarted",
    "RunStatus",
    "SourceState",
    "commit",
]
