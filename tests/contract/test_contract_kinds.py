"""The suite itself: it runs against every registered kind, the toys included, and a kind
registered without a case fails it."""

from __future__ import annotations

from pathlib import Path

import pytest

from millpond.core.registry import SOURCES, TARGETS

from .kinds import SOURCE_KINDS, TARGET_KINDS, TOY_SOURCES, TOY_TARGETS, kind_case


def test_every_registered_kind_and_every_toy_is_in_the_suite() -> None:
    assert set(SOURCES.names()) | set(TOY_SOURCES) == set(SOURCE_KINDS)
    assert set(TARGETS.names()) | set(TOY_TARGETS) == set(TARGET_KINDS)
    # The toys are registered for the contract tests only, like any kind: one registration.
    assert all(SOURCES.get(name) is kind for name, kind in TOY_SOURCES.items())
    assert all(TARGETS.get(name) is kind for name, kind in TOY_TARGETS.items())


def test_a_kind_registered_without_a_case_fails_the_suite(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    refused = pytest.raises(pytest.fail.Exception, match="'nameless' is registered but has no")
    with refused, kind_case("target", "nameless", {}, request, tmp_path):
        pass
