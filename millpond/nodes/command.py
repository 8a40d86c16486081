"""The command node kind: any program as a node of the graph (a Spark job, a vendor's export).

    nodes:
      spark_orders:
        kind: command
        run: "spark-submit jobs/orders.py {run_id} {lake_url}"
        env: {ERP_TOKEN: "${ERP_TOKEN}"}
        after: [load.erp.orders]
        before: [dbt]

`run` is split like a shell would (shlex) but runs without one: no pipes, globs or `$VAR`s,
nothing a value can inject. Placeholders in it: {run_id} {node_id} {attempt} {lake_url}
{project_dir} {state_dir} {result_file} {python} (millpond's own interpreter). The process
gets millpond's environment, the `MILLPOND_RUN_ID`, `MILLPOND_NODE_ID`, `MILLPOND_LAKE_URL` and
`MILLPOND_RESULT` variables and `env` from the config; a value read from a `${VAR}` there is a
secret, masked in the logs and the ledger. Its stdout and stderr go to the node's log line by
line; a non-zero exit fails the node with the last lines of stderr; at its timeout the whole
process group is killed.

Rows and bytes for the ledger: the command may write `{"rows": 10, "bytes": 2048}` as JSON to
the file `$MILLPOND_RESULT` names. A command node always runs (it has no fingerprint).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import shlex
import signal
import string
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import Field, field_validator

from millpond.core.graph import Node
from millpond.core.logs import logger
from millpond.core.masking import mask, register_secrets
from millpond.core.registry import BuildScope, NodeKind, NodeReport, NodeScope, Stage
from millpond.nodes.placed import PlacedNodeConfig, build_placed

COMMAND_KIND = "command"
PLACEHOLDERS = (
    "run_id",
    "node_id",
    "attempt",
    "lake_url",
    "project_dir",
    "state_dir",
    "result_file",
    "python",
)
TAIL_LINES = 20  # lines of stderr an error keeps
KILL_GRACE_SECONDS = 5.0  # between SIGTERM and SIGKILL of a timed-out process group


class CommandNodeConfig(PlacedNodeConfig):
    """`nodes.<name>` of kind command: the command line, its environment and folder."""

    kind: Literal["command"]
    run: str
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None  # relative to the project folder; unset: the project folder

    @field_validator("run")
    @classmethod
    def _splits(cls, value: str) -> str:
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot be split into arguments ({exc}): check the quotes") from None
        if not argv:
            raise ValueError("is empty; e.g. 'spark-submit job.py {run_id}'")
        for arg in argv:
            try:
                names = [n for _, n, _, _ in string.Formatter().parse(arg) if n is not None]
            except ValueError as exc:
                raise ValueError(f"{arg!r}: {exc} (write {{{{ and }}}} for braces)") from None
            unknown = [n for n in names if n not in PLACEHOLDERS]
            if unknown:
                raise ValueError(
                    f"unknown placeholder {{{unknown[0]}}} (known: "
                    f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
                )
        return value

    @field_validator("env")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"{name!r} is not an environment variable name")
        return value


@dataclass(frozen=True)
class CommandParams:
    name: str
    run: str
    env: tuple[tuple[str, str], ...]
    cwd: str | None


class CommandFailed(Exception):
    """The command exited non-zero or timed out; retried by the node's `retries`."""

    retryable = True


def params(scope: BuildScope, name: str, config: CommandNodeConfig) -> CommandParams:
    return CommandParams(name, config.run, tuple(sorted(config.env.items())), config.cwd)


def run(scope: NodeScope, node: Node, report: NodeReport) -> None:
    p: CommandParams = node.params
    config = scope.config
    register_secrets(config.env_secrets())  # whoever built this config, they are masked
    cwd = config.resolve(p.cwd) if p.cwd else config.root.resolve()
    if not cwd.is_dir():
        raise CommandFailed(f"millpond.yml nodes.{p.name}.cwd: {cwd} is not a folder")
    with tempfile.TemporaryDirectory(prefix="millpond-command-") as scratch:
        result_file = Path(scratch) / "result.json"
        values = {
            "run_id": scope.run_id,
            "node_id": node.id,
            "attempt": str(report.attempt),
            "lake_url": config.lake_url,
            "project_dir": str(config.root.resolve()),
            "state_dir": str(config.state),
            "result_file": str(result_file),
            "python": sys.executable,
        }
        argv = [arg.format_map(values) for arg in shlex.split(p.run)]
        env = {
            **os.environ,
            "MILLPOND_RUN_ID": scope.run_id,
            "MILLPOND_NODE_ID": node.id,
            "MILLPOND_LAKE_URL": config.lake_url,
            "MILLPOND_RESULT": str(result_file),
            **dict(p.env),
        }
        logger.info(f"running {shlex.join(argv)} in {cwd}")
        code, tail = _run(argv, env, cwd, node.timeout_seconds, p.name)
        if code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
            last = "\n".join(tail) if tail else "(nothing on stderr)"
            raise CommandFailed(mask(f"{argv[0]} {how}; stderr ends with:\n{last}"))
        _record(p, result_file, report)


def _run(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float, name: str
) -> tuple[int, list[str]]:
    """Run the command in a process group of its own, its output streamed to the log;
    (exit code, the last lines of stderr)."""
    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: a timeout kills all of it
        )
    except OSError as exc:
        raise CommandFailed(
            f"millpond.yml nodes.{name}.run: cannot start {argv[0]!r} ({exc.strerror})"
        ) from None
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    readers = [
        _stream(process.stdout, "stdout", None),
        _stream(process.stderr, "stderr", tail),
    ]
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        for reader in readers:
            reader.join(KILL_GRACE_SECONDS)
        raise CommandFailed(
            f"{argv[0]} did not finish within its timeout ({timeout:g} s, "
            f"nodes.{name}.timeout): its process group was killed"
        ) from None
    except BaseException:
        _kill_group(process)
        raise
    for reader in readers:
        reader.join(KILL_GRACE_SECONDS)
    if any(reader.is_alive() for reader in readers):
        # Something the command started still holds its output open: nothing is left behind.
        _kill_group(process)
    return process.returncode, list(tail)


def _stream(pipe: IO[bytes] | None, label: str, tail: deque[str] | None) -> threading.Thread:
    """A thread logging each line of the pipe (with this thread's run and node context)."""

    def pump(lines: Iterable[bytes]) -> None:
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if tail is not None:
                tail.append(line)
            logger.info(f"[{label}] {line}")

    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(pump, pipe or ()), daemon=True
    )
    thread.start()
    return thread


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the command's process group, then SIGKILL whatever of it is left after a
    grace period (children that ignore SIGTERM are not left behind)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(KILL_GRACE_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _record(p: CommandParams, result_file: Path, report: NodeReport) -> None:
    """Rows and bytes the command wrote to $MILLPOND_RESULT, if it did."""
    if not result_file.exists():
        return
    try:
        values: Any = json.loads(result_file.read_text(encoding="utf-8") or "{}")
    except ValueError as exc:
        raise CommandFailed(f"nodes.{p.name}: $MILLPOND_RESULT is not JSON ({exc})") from None
    if not isinstance(values, dict):
        raise CommandFailed(f"nodes.{p.name}: $MILLPOND_RESULT must hold a JSON object")
    for key in ("rows", "bytes"):
        number = values.pop(key, None)
        if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
            raise CommandFailed(
                f"nodes.{p.name}: $MILLPOND_RESULT {key}={number!r}, not an integer"
            )
        setattr(report, key, number)
    report.detail = values


COMMAND = NodeKind(
    build=build_placed(COMMAND_KIND, params),
    run=run,
    needs_project=True,
    stage=Stage.PLACED,
    config_model=CommandNodeConfig,
)
