"""The kinds the contract suite runs against: every registered one, plus the toys defined
only in this folder, and the case each needs (a kind without one fails)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from millpond.core.registry import SOURCES, TARGETS, SourceKind, TargetKind

from .cases import TARGET_CASES, Kit, TargetCase
from .toy_source import INLINE
from .toy_target import FOLDER

C = TypeVar("C")

# The toys' one registration each, in force during each contract test only (registered for
# good, they would show up in other tests' lists of kinds run by the same worker).
TOY_SOURCES: dict[str, SourceKind] = {"inline": INLINE}
TOY_TARGETS: dict[str, TargetKind] = {"folder": FOLDER}

SOURCE_KINDS = [*SOURCES.names(), *(n for n in TOY_SOURCES if n not in SOURCES.names())]
TARGET_KINDS = [*TARGETS.names(), *(n for n in TOY_TARGETS if n not in TARGETS.names())]


@contextmanager
def toys_registered() -> Iterator[None]:
    """The toys registered as a team's own kinds would be, and taken out again afterwards."""
    for name, source in TOY_SOURCES.items():
        SOURCES.register(name, source)
    for name, target in TOY_TARGETS.items():
        TARGETS.register(name, target)
    try:
        yield
    finally:
        for name in TOY_SOURCES:
            SOURCES.unregister(name)
        for name in TOY_TARGETS:
            TARGETS.unregister(name)


@contextmanager
def kind_case(
    family: str,
    kind: str,
    cases: dict[str, Callable[[Kit], C]],
    request: pytest.FixtureRequest,
    tmp: Path,
) -> Iterator[C]:
    """The kind's case, with whatever it started stopped afterwards; a kind registered
    without a case fails the suite (and every test that takes its kinds from the registry)."""
    factory = cases.get(kind)
    if factory is None:
        pytest.fail(
            f"{family} kind {kind!r} is registered but has no contract case: add a factory "
            f"for it to {family.upper()}_CASES in tests/contract/cases.py"
        )
    tmp.mkdir(parents=True, exist_ok=True)
    with ExitStack() as exits:
        yield factory(Kit(tmp, request, exits))


@contextmanager
def target_case(kind: str, request: pytest.FixtureRequest, tmp: Path) -> Iterator[TargetCase]:
    """A registered target's case (for the tests outside this folder that run every target)."""
    with kind_case("target", kind, TARGET_CASES, request, tmp) as case:
        yield case
