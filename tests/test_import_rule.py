"""The import rule of docs/architecture.md, enforced on every first-party import.

- the kernel (millpond.core) imports no other first-party package;
- stage packages import the kernel, libraries and only the stage packages listed for them;
- nothing imports the composition root (millpond.runtime, millpond.cli) but the composition
  root itself (the entry points reach it through the console script and the entry point);
- the packages' import graph has no cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The card's top-level folders, installed as millpond.<name> (millpond/<name> links to them).
CARD_FOLDERS = ("ingest", "metadata", "flows", "airflow_compat", "serve")
FIRST_PARTY = ("millpond", *CARD_FOLDERS)
KERNEL = "millpond.core"
ROOT = ("millpond.runtime", "millpond.cli")
# Stage package -> the other stage packages it may import (besides the kernel).
ALLOWED = {
    "millpond.ingest": set(),
    "millpond.metadata": set(),
    "millpond.nodes": {"millpond.ingest", "millpond.metadata"},
    "millpond.targets": {"millpond.ingest"},
    "millpond.flows": set(),
    "millpond.airflow_compat": set(),
    "millpond.notify": set(),
    "millpond.scaffold": set(),  # millpond init's template and the code that fills it in
    # serve: the ledger, and where the Prefect API and the deployment are (flows.prefect_api,
    # which imports no Prefect at import); the published marts through the registry's reader;
    # the webhooks, told of a run `POST /runs` could not start (millpond.notify).
    "millpond.serve": {"millpond.metadata", "millpond.flows", "millpond.notify"},
}
PACKAGES = [KERNEL, *ROOT, *ALLOWED]


def package_of(module: str) -> str | None:
    """The rule's package for a dotted module name (longest prefix wins); the top-level
    `millpond` package (its version) belongs to the kernel."""
    if module == "millpond":
        return KERNEL
    found = [p for p in PACKAGES if module == p or module.startswith(p + ".")]
    return max(found, key=len) if found else None


def module_name(path: Path) -> str:
    """The installed name: a card folder's module is millpond.<folder>...."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts[0] in CARD_FOLDERS:
        parts.insert(0, "millpond")
    return ".".join(parts)


def first_party_files() -> list[Path]:
    """Every first-party module once: millpond/ without its links, then each card folder."""
    found = [p for p in (REPO / "millpond").rglob("*.py") if p.parent.resolve() == p.parent]
    found = [p for p in found if p.relative_to(REPO / "millpond").parts[0] not in CARD_FOLDERS]
    # `millpond init`'s template is a team's code to be (it imports millpond.serve as a
    # team's router would), not a module of millpond.
    found = [p for p in found if "template" not in p.relative_to(REPO / "millpond").parts]
    return sorted(found) + sorted(p for top in CARD_FOLDERS for p in (REPO / top).rglob("*.py"))


def imports_of(path: Path) -> set[str]:
    """First-party modules a file imports, at any depth (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in FIRST_PARTY}
    return found


def package_edges() -> dict[tuple[str, str], list[str]]:
    """(importer package, imported package) -> the files where it happens."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in first_party_files():
        source = package_of(module_name(path))
        if source is None:
            continue
        for imported in imports_of(path):
            target = package_of(imported)
            if target is not None and target != source:
                edges.setdefault((source, target), []).append(str(path.relative_to(REPO)))
    return edges


EDGES = package_edges()


def test_every_first_party_module_belongs_to_a_package_of_the_rule() -> None:
    strays = [module_name(p) for p in first_party_files() if package_of(module_name(p)) is None]
    assert strays == [], f"modules outside the rule's packages: {strays}"


def test_first_party_code_imports_only_under_the_millpond_namespace() -> None:
    """Installed, millpond is one top-level package: `import serve` would find a team's own
    serve/ folder (or nothing), so every first-party import names millpond.<folder>."""
    roots = [REPO / "tests", REPO / "bench", *(REPO / top for top in FIRST_PARTY)]
    bare = {
        str(path.relative_to(REPO)): sorted(names)
        for root in roots
        for path in root.rglob("*.py")
        if (names := {n for n in imports_of(path) if n.split(".")[0] in CARD_FOLDERS})
    }
    assert bare == {}, f"imports of a card folder outside the millpond namespace: {bare}"


def test_the_kernel_imports_no_other_first_party_package() -> None:
    bad = {edge: files for edge, files in EDGES.items() if edge[0] == KERNEL}
    assert bad == {}, f"the kernel imports stage or root packages: {bad}"


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_a_stage_package_imports_only_the_kernel_and_its_allowed_stages(stage: str) -> None:
    allowed = ALLOWED[stage] | {KERNEL}
    bad = {t: files for (s, t), files in EDGES.items() if s == stage and t not in allowed}
    assert bad == {}, f"{stage} imports what the rule forbids: {bad}"


def test_nothing_but_the_composition_root_imports_it() -> None:
    bad = {e: f for e, f in EDGES.items() if e[1] in ROOT and e[0] not in ROOT}
    assert bad == {}, f"the composition root is imported from outside it: {bad}"


def test_packages_import_each_other_without_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for source, target in EDGES:
        graph.setdefault(source, set()).add(target)
    cycles = find_cycles(graph)
    assert cycles == [], f"import cycles between packages: {cycles}"


def find_cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Every node's first cycle back to itself (an empty list: the graph has none)."""

    def cycle_from(start: str, node: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return (*seen, nxt)
            if nxt not in seen:
                found = cycle_from(start, nxt, (*seen, nxt))
                if found:
                    return found
        return None

    return [c for p in sorted(graph) if (c := cycle_from(p, p, (p,)))]


def module_graph(package: str) -> dict[str, set[str]]:
    """The modules of one package -> the modules of the same package they import (at any
    depth; `from pkg import mod` counts as importing `pkg.mod` when that is a module)."""
    folder = REPO.joinpath(*package.split("."))  # millpond.<card folder> through its link
    modules = {module_name(path): path for path in folder.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found = [
                    f"{node.module}.{alias.name}"
                    if f"{node.module}.{alias.name}" in modules
                    else node.module
                    for alias in node.names
                ]
            else:
                continue
            graph.setdefault(name, set()).update(m for m in found if m in modules and m != name)
    return graph


def test_the_cli_modules_import_each_other_without_cycles() -> None:
    """The typer app and the shared options live in millpond.cli.app, so no command module
    needs another one (millpond.cli.main adds every command to the app)."""
    graph = module_graph("millpond.cli")
    assert "millpond.cli.main" in graph and "millpond.cli.app" in graph["millpond.cli.main"]
    assert find_cycles(graph) == [], "import cycles between the modules of millpond.cli"


def test_the_rule_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: a kernel module importing a stage package is found."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f():\n    from millpond.ingest.lake import Lake\n    import millpond.metadata.db\n"
    )
    assert imports_of(bad) == {"millpond.ingest.lake", "millpond.metadata.db"}
    assert package_of("millpond.core.graph") == KERNEL
    assert package_of("millpond.targets.duckdb.raw") == "millpond.targets"
