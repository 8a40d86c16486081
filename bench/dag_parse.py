"""How long Airflow takes to parse the generated DAG file, at the demo's size and at 2,000 nodes.

The DAG processor parses every DAG file again and again, so the rendered file's shape (a table
of nodes read by a loop, airflow_compat/render.py) must not make that slower. This renders the
demo project's graph (`millpond graph --json`, 33 nodes) and a synthetic graph of `--nodes`
nodes, then parses each file with the real Airflow the e2e tests use (its cached venv,
tests/conftest.py `airflow_venv`): a fresh `DagBag.process_file` per parse, in one process
with Airflow already imported, the files compiled from source every time (no bytecode cache,
as after each `just dag`). The files are parsed in turn, forwards then backwards, so load on
the machine hits each alike; the median of `--repeats` parses (after a warm-up parse) is
reported.

With `--against REV`, the renderer of that git revision renders the same graphs too, and the
parsed DAGs are checked to be the same (dag settings, task ids, edges, commands, env, pools,
retries, delays, timeouts, trigger rules), so the comparison is of two spellings of one DAG.

    .venv/bin/python bench/dag_parse.py                       # this checkout's renderer
    .venv/bin/python bench/dag_parse.py --against 4bd5167     # before/after a change
    .venv/bin/python bench/dag_parse.py --nodes 500 --repeats 11

Needs the Airflow venv (run tests/e2e/test_airflow_dag.py once to create it, or point
--airflow-python at any Python with apache-airflow 3 installed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import types
from collections.abc import Callable
from pathlib import Path

from millpond.core.config import MillpondConfig
from millpond.core.graph import Graph, Node

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_VERSION = "3.3.2"  # tests/conftest.py
CONFIG_PATH = Path("/srv/millpond/millpond.yml")  # any absolute path: the env overrides it

# Runs with the Airflow venv's Python: parses each file `repeats` times, prints one JSON line.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from airflow.dag_processing.dagbag import DagBag

    files, repeats = json.loads(sys.argv[1]), int(sys.argv[2])

    def parse(path):
        bag = DagBag(dag_folder=path, collect_dags=False)
        started = time.perf_counter()
        dags = bag.process_file(path, only_if_updated=False)
        elapsed = time.perf_counter() - started
        assert not bag.import_errors and len(dags) == 1, bag.import_errors
        return elapsed, dags[0]

    def fingerprint(dag):
        def seconds(delta):
            return None if delta is None else delta.total_seconds()

        return {
            "dag": [dag.dag_id, repr(vars(dag.timetable)), str(dag.start_date), dag.catchup,
                    dag.max_active_runs, sorted(dag.tags)],
            "tasks": [
                [t.task_id, sorted(t.upstream_task_ids), type(t).__name__, t.bash_command,
                 t.env, t.append_env, t.pool, t.retries, seconds(t.retry_delay),
                 seconds(t.execution_timeout), str(t.trigger_rule)]
                for t in dag.tasks
            ],
        }

    times = {label: [] for label in files}
    shapes = {label: fingerprint(parse(path)[1]) for label, path in files.items()}  # warm-up
    for repeat in range(repeats):
        order = list(files.items())
        for label, path in order if repeat % 2 else reversed(order):
            times[label].append(parse(path)[0])
    print(json.dumps({"times": times, "shapes": shapes}))
    """
)

Renderer = Callable[..., str]


def demo_graph() -> Graph:
    """The demo project's graph, as `millpond dag` in the repo builds it."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("millpond")), "graph", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    nodes = json.loads(result.stdout)["nodes"]
    return Graph(
        tuple(
            Node(
                n["id"],
                n["kind"],
                tuple(n["upstream"]),
                retries=n["retries"],
                retry_delay_seconds=n["retry_delay_seconds"],
                timeout_seconds=n["timeout_seconds"],
            )
            for n in nodes
        )
    )


def synthetic_graph(size: int, seed: int = 24) -> Graph:
    """`size` nodes shaped like a real project: an extract and a load per table (a tenth of
    the tables per size), dbt models on 1-4 loads or earlier models, one publish after the
    models nothing else waits for."""
    rng = random.Random(seed)
    tables = max(1, size // 10)
    nodes: list[Node] = []
    for t in range(tables):
        nodes.append(Node(f"extract.src{t % 7}.table_{t}", "extract", retries=2))
        nodes.append(Node(f"load.src{t % 7}.table_{t}", "load", (nodes[-1].id,), retries=1))
    loads = [n.id for n in nodes if n.kind == "load"]
    models: list[str] = []
    for m in range(size - 2 * tables - 1):
        pool = loads + models[-200:]
        upstream = sorted(set(rng.sample(pool, min(len(pool), rng.randint(1, 4)))))
        timeout = rng.choice([600.0, 1800.0, 3600.0])
        nodes.append(Node(f"dbt.model_{m}", "dbt", tuple(upstream), timeout_seconds=timeout))
        models.append(nodes[-1].id)
    waited_for = {up for n in nodes for up in n.upstream}
    leaves = tuple(m for m in models if m not in waited_for) or tuple(loads)
    nodes.append(Node("publish", "publish", leaves, retries=1))
    return Graph(tuple(nodes))


def renderer_at(revision: str | None) -> Renderer:
    """`render_dag` of this checkout, or of a git revision (loaded from its source)."""
    if revision is None:
        from millpond.airflow_compat.render import render_dag

        return render_dag
    source = subprocess.run(
        ["git", "show", f"{revision}:airflow_compat/render.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType(f"render_{revision}")
    exec(compile(source, f"{revision}:airflow_compat/render.py", "exec"), module.__dict__)
    render: Renderer = module.render_dag
    return render


def airflow_python() -> Path:
    cache = Path(os.environ.get("MILLPOND_AIRFLOW_CACHE", Path.home() / ".cache" / "millpond"))
    return cache / f"airflow-{AIRFLOW_VERSION}" / "bin" / "python"


def parse_times(python: Path, files: dict[str, Path], repeats: int) -> dict[str, object]:
    """Parse every file `repeats` times under Airflow, in a throwaway AIRFLOW_HOME."""
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MILLPOND_")}
        env.update(
            AIRFLOW_HOME=home,
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__UNIT_TEST_MODE="False",
            AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="600",
            PYTHONDONTWRITEBYTECODE="1",
            MILLPOND_BIN="millpond",
            MILLPOND_CONFIG=str(CONFIG_PATH),
        )
        arguments = json.dumps({label: str(path) for label, path in files.items()})
        result = subprocess.run(
            [str(python), "-c", CHILD, arguments, str(repeats)],
            env=env,
            capture_output=True,
            text=True,
        )
    if result.returncode != 0:
        sys.exit(result.stderr[-3000:])
    parsed: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2000, help="size of the synthetic graph")
    parser.add_argument("--repeats", type=int, default=15, help="parses per file")
    parser.add_argument("--against", metavar="REV", help="also time the renderer of REV")
    parser.add_argument("--airflow-python", type=Path, default=airflow_python())
    args = parser.parse_args()
    if not args.airflow_python.is_file():
        sys.exit(f"no Airflow at {args.airflow_python}: run tests/e2e/test_airflow_dag.py once")

    graphs = {"demo": demo_graph(), "synthetic": synthetic_graph(args.nodes)}
    renderers = {"this checkout": renderer_at(None)}
    if args.against:
        renderers[args.against] = renderer_at(args.against)
    with tempfile.TemporaryDirectory() as work:
        files: dict[str, Path] = {}
        for graph_name, graph in graphs.items():
            config = MillpondConfig(project=f"bench_{graph_name}")
            for renderer_name, render in renderers.items():
                path = Path(work) / f"{graph_name}-{len(files)}" / "millpond.py"
                path.parent.mkdir()
                path.write_text(render(graph, config, "millpond", CONFIG_PATH))
                files[f"{graph_name}|{renderer_name}"] = path
        lines = {label: len(path.read_text().splitlines()) for label, path in files.items()}
        parsed = parse_times(args.airflow_python, files, args.repeats)

    times: dict[str, list[float]] = parsed["times"]  # type: ignore[assignment]
    shapes: dict[str, object] = parsed["shapes"]  # type: ignore[assignment]
    print(f"{'graph':>16} {'renderer':>14} {'lines':>7} {'median ms':>10} {'min ms':>8}")
    for label, samples in times.items():
        graph_name, renderer_name = label.split("|")
        nodes = len(graphs[graph_name].nodes)
        print(
            f"{f'{graph_name} ({nodes})':>16} {renderer_name:>14} {lines[label]:>7} "
            f"{1000 * statistics.median(samples):>10.1f} {1000 * min(samples):>8.1f}"
        )
    for graph_name in graphs:
        same = {json.dumps(s) for label, s in shapes.items() if label.startswith(graph_name)}
        if len(same) != 1:
            sys.exit(f"the renderers' {graph_name} DAGs differ once parsed")
    if args.against:
        print("the parsed DAGs of both renderers are the same")


if __name__ == "__main__":
    main()
