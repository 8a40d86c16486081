"""`millpond` that stops at a named point of a stage and waits there, so a test can kill it
with SIGKILL exactly there (or do something to a server and let it go on).

    python paused_millpond.py <point> <folder> run ...

At the point it writes `<folder>/<point>.reached` and waits until `<folder>/<point>.go`
exists (a test that kills the process never writes it). Nothing else changes: the command
is the real CLI in one process, the pause only holds the thread that reached the point, so a
kill there is a kill at that moment of the real code. Points:

- `landing`: the parts of a partition are in the lake, its manifest is not written yet;
- `landed`: the partition's manifest is written, the ledger is not told yet;
- `load`: inside the warehouse transaction that registers partitions, before its commit;
- `loaded`: the warehouse has committed a load, the ledger is not told yet;
- `dbt`: dbt has finished its first resource of a build and waits to go on;
- `publish`: the snapshot of the marts is half copied (before `current` moves);
- `switch`: the snapshot is complete, `current` still points at the one before;
- `ledger`: the first load node starts (extract done), before it writes anything.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from typing import Any


def _pause(folder: Path, point: str) -> None:
    (folder / f"{point}.reached").touch()
    while not (folder / f"{point}.go").exists():
        time.sleep(0.05)


def _once(folder: Path, point: str) -> Any:
    """A pause that holds only its first caller."""
    done: list[bool] = []

    def pause() -> None:
        if not done:
            done.append(True)
            _pause(folder, point)

    return pause


def pause_before_writing(kind: type, pause: Any) -> None:
    """Hold the process before the ledger's writer writes (or buffers) a record of a kind."""
    from millpond.metadata.ledger import Ledger

    write = Ledger.write

    def paused_write(self: Ledger, record: Any) -> bool:
        if isinstance(record, kind):
            pause()
        return write(self, record)

    Ledger.write = paused_write  # type: ignore[method-assign]


def install(point: str, folder: Path) -> None:  # noqa: C901 (one patch per pause point)
    pause = _once(folder, point)
    if point == "landing":
        from millpond.ingest.lake import MANIFEST, Lake

        write = Lake.write_text_atomic

        def write_manifest(self: Lake, path: str, text: str) -> None:
            if path.endswith(f"/{MANIFEST}"):
                pause()
            write(self, path, text)

        Lake.write_text_atomic = write_manifest  # type: ignore[method-assign]
    elif point == "landed":
        from millpond.metadata.records import PartitionLanded

        pause_before_writing(PartitionLanded, pause)
    elif point == "load":
        from millpond.targets.duckdb import raw

        recreate = raw._recreate_view

        def recreate_view(*args: Any, **kwargs: Any) -> Any:
            pause()
            return recreate(*args, **kwargs)

        raw._recreate_view = recreate_view
    elif point == "loaded":
        from millpond.metadata.records import PartitionLoaded

        pause_before_writing(PartitionLoaded, pause)
    elif point == "dbt":
        from millpond.nodes.dbt import runner

        listener = runner._finished_listener

        def finished_listener(on_result: Any) -> Any:
            def heard(result: Any) -> None:
                on_result(result)
                pause()  # in dbt's own thread: dbt waits with it

            return listener(heard)

        runner._finished_listener = finished_listener
    elif point == "publish":
        publish = importlib.import_module("millpond.targets.duckdb.publish")
        quote = publish.quote
        calls: list[str] = []

        def counted_quote(identifier: str) -> str:
            calls.append(identifier)
            if len(calls) == 6:  # the snapshot file is attached, its first table copied
                pause()
            return quote(identifier)

        publish.quote = counted_quote
    elif point == "switch":
        publish = importlib.import_module("millpond.targets.duckdb.publish")
        point_current = publish.point_current

        def switch(*args: Any, **kwargs: Any) -> None:
            pause()
            point_current(*args, **kwargs)

        publish.point_current = switch
    elif point == "ledger":
        from millpond.nodes import load

        run = load.LOAD.run

        def load_run(*args: Any, **kwargs: Any) -> Any:
            pause()
            return run(*args, **kwargs)

        object.__setattr__(load.LOAD, "run", load_run)  # the registered kind calls it
    else:
        raise SystemExit(f"unknown point {point!r}")


if __name__ == "__main__":
    point, folder = sys.argv[1], Path(sys.argv[2])
    sys.argv = ["millpond", *sys.argv[3:]]
    install(point, folder)
    from millpond.cli import main

    main()
