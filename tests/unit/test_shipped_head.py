"""The ledger's fast "already at head" check reads the same head as alembic does."""

from __future__ import annotations

from millpond.metadata.db import head_revision, shipped_head


def test_the_head_read_from_the_files_is_alembics() -> None:
    assert shipped_head() == head_revision() is not None
