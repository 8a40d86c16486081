"""The `millpond` command (see millpond.cli.main).

`main` is the console script. A `millpond run-node` first tries the stack's warm node worker
(millpond.cli.warm) before the CLI, which imports pydantic and every kind, is imported at all.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["run-node"]:
        from millpond.cli.warm.client import run_in_worker

        code = run_in_worker(sys.argv[1:])
        if code is not None:
            sys.exit(code)
    from millpond.cli.main import app

    app()
