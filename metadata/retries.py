"""Which runs can be retried, said once for `millpond retry` and `POST /runs/{id}/retry`.

A retry reruns what a run did not finish (millpond.runtime.retry): only a run that ended
without finishing has anything to rerun. A run still open is refused (it may still finish;
a run whose process died is closed `abandoned` by the next start, or by `millpond retry`
itself), and so is one that succeeded: nothing failed, so nothing would run.
"""

from __future__ import annotations

from typing import Any

RETRYABLE = frozenset({"failed", "abandoned"})
# Node statuses a retry keeps: every other one (failed, skipped, abandoned, never run) reruns.
FINISHED_NODE = frozenset({"success", "unchanged"})


class RetryRefused(Exception):
    """A run that cannot be retried; `unknown` when the ledger has no such run (the API's
    404), else it is not a failed run (409). The message names the run and what to do."""

    def __init__(self, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.unknown = unknown


def check_retryable(run_id: str, run: dict[str, Any] | None) -> None:
    """Raise RetryRefused unless `run` (the ledger's row of `run_id`, None if there is none)
    ended failed or abandoned."""
    if run is None:
        raise RetryRefused(f"no run {run_id[:100]!r} in the ledger", unknown=True)
    status = run.get("status")
    if status in RETRYABLE:
        return
    if status in ("queued", "running"):
        raise RetryRefused(
            f"run {run_id} is still {status}: retry it once it has finished "
            "(a run whose process died is closed `abandoned` by the next start)"
        )
    if status == "success":
        raise RetryRefused(
            f"run {run_id} succeeded: nothing to retry (`millpond run` starts a new run)"
        )
    raise RetryRefused(f"run {run_id} is {status}: only a failed or abandoned run is retried")
