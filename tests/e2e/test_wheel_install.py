"""millpond installed from its wheel is one top-level package: a team's project folder with
its own `flows/` and `serve/` packages neither shadows millpond nor is shadowed by it.

The wheel is built offline from the checkout (`pip wheel --no-build-isolation`, setuptools from
the dev extra) and installed into a fresh venv whose dependencies are the dev venv's, linked
one by one, without the dev venv's editable millpond; so the venv holds millpond only as the
wheel installed it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, clear_user_env, write_acme_project

pytestmark = pytest.mark.e2e

DEV_SITE = Path(sys.prefix) / "lib" / "python3.11" / "site-packages"
TEAM_ROUTER = """\
from fastapi import APIRouter

import flows

router = APIRouter()


@router.get("/team/hello")
def hello() -> dict[str, str]:
    return {"from": flows.WHO}
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"  # a copy: the build writes build/ and egg-info beside the code
    shutil.copytree(
        REPO,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(".venv", ".git", ".millpond", "build", "*.egg-info"),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("millpond-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed and the dev venv's other packages linked in."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    deps = venv / "deps"
    deps.mkdir()
    for entry in DEV_SITE.iterdir():
        if not entry.name.lower().startswith(("millpond", "__editable__")):
            (deps / entry.name).symlink_to(entry)
    site = venv / "lib" / "python3.11" / "site-packages"
    (site / "dev-deps.pth").write_text(f"{deps}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--no-deps", "--no-index", "-q", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return venv


def test_the_wheel_holds_millpond_and_nothing_else_at_the_top_level(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        names = set(archive.namelist())
    assert tops == {"millpond", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1]
                    + ".dist-info"}  # fmt: skip
    # the card's folders arrive under the namespace, with their data files
    assert "millpond/serve/app.py" in names and "millpond/flows/pipeline.py" in names
    assert "millpond/metadata/migrations/env.py" in names
    assert any(n.startswith("millpond/serve/static/") for n in names)


def test_a_team_folder_with_its_own_flows_and_serve_runs_beside_millpond(
    wheel_venv: Path, tmp_path: Path, prefect_api: str
) -> None:
    project = write_acme_project(
        tmp_path / "team", extra="serve:\n  routers: ['serve.routes:router']\n"
    )
    (project / "flows").mkdir()
    (project / "flows" / "__init__.py").write_text('WHO = "the team\'s flows"\n')
    (project / "serve").mkdir()
    (project / "serve" / "__init__.py").write_text("")
    (project / "serve" / "routes.py").write_text(TEAM_ROUTER)
    env = dict(os.environ)
    clear_user_env(env)
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{wheel_venv / 'bin'}:{env['PATH']}"
    env["PREFECT_API_URL"] = prefect_api

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=project, env=env, capture_output=True, text=True, timeout=600
        )

    where = run("python", "-c", "import millpond, flows; print(millpond.__file__, flows.WHO)")
    assert where.returncode == 0, where.stderr
    assert str(wheel_venv) in where.stdout and "the team's flows" in where.stdout

    try:
        ran = run(str(wheel_venv / "bin" / "millpond"), "run")
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        served = run(
            "python",
            "-c",
            "from fastapi.testclient import TestClient\n"
            "from millpond.serve.app import app\n"
            "with TestClient(app) as client:\n"
            "    print(client.get('/team/hello').json(), client.get('/marts').status_code)\n",
        )
        assert served.returncode == 0, served.stderr[-3000:]
        assert "{'from': \"the team's flows\"} 200" in served.stdout
    finally:
        run(str(wheel_venv / "bin" / "millpond"), "down")


def test_millpond_init_gives_a_project_that_runs_and_tests_with_the_wheel(
    wheel_venv: Path, tmp_path: Path, prefect_api: str
) -> None:
    """As the README's first steps for a team: `millpond init x && cd x && just run && just
    test`, with only the wheel's millpond on PATH."""
    env = dict(os.environ)
    clear_user_env(env)
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{wheel_venv / 'bin'}:{env['PATH']}"
    env["PREFECT_API_URL"] = prefect_api
    # the dev extra's binary: a pyenv shim for `just` would put its own python first on PATH
    just = str(Path(sys.executable).parent / "just")

    def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)

    made = run(tmp_path, "millpond", "init", "shop-data")
    assert made.returncode == 0, made.stderr
    project = tmp_path / "shop-data"
    try:
        ran = run(project, just, "run")
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        assert "run " in ran.stdout and ": success" in ran.stdout
        tested = run(project, just, "test")
        assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-3000:]
        assert "no problems found" in tested.stdout and "1 passed" in tested.stdout
    finally:
        run(project, "millpond", "down")
