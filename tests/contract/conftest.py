"""The contract suite's fixtures: the toys registered for each test, and one case per kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .cases import SOURCE_CASES, TARGET_CASES, SourceCase, TargetCase
from .kinds import SOURCE_KINDS, TARGET_KINDS, kind_case, toys_registered


@pytest.fixture(autouse=True)
def toy_kinds() -> Iterator[None]:
    with toys_registered():
        yield


@pytest.fixture(params=SOURCE_KINDS)
def source_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=TARGET_KINDS)
def target_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def source_case(
    source_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[SourceCase]:
    with kind_case("source", source_kind, SOURCE_CASES, request, tmp_path) as case:
        yield case


@pytest.fixture
def target_case(
    target_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[TargetCase]:
    with kind_case("target", target_kind, TARGET_CASES, request, tmp_path) as case:
        yield case
