"""The test tree itself: pytest imports a test module outside a package by its basename, so
two such test files with one name in different folders break collection of the whole suite.
A folder with an `__init__.py` (tests/bad_inputs) is a package: its modules are imported by
their qualified name (`bad_inputs.test_api`) and may share a basename with another folder's."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_module_basenames_are_unique() -> None:
    names = Counter(
        p.name
        for p in TESTS.rglob("test_*.py")
        if "fixtures" not in p.parts and not (p.parent / "__init__.py").is_file()
    )
    assert [name for name, count in names.items() if count > 1] == []


def test_packages_under_tests_do_not_shadow_the_shared_conftest() -> None:
    """`from conftest import ...` must find tests/conftest.py: a package's own conftest is
    `<package>.conftest`, a plain folder's would replace it for the whole session."""
    plain = [
        p.relative_to(TESTS)
        for p in TESTS.rglob("conftest.py")
        if p.parent != TESTS and not (p.parent / "__init__.py").is_file()
    ]
    assert plain == []
