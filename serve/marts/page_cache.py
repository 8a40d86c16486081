"""Answers of small mart pages, kept per published snapshot.

A published DuckDB snapshot never changes once `current` points at it, so the bytes a query
gave for it are the bytes it gives again: a page is read once per snapshot, not once per
request (the sort behind `?limit=10` over a mart of 600k rows costs milliseconds). The key
holds the snapshot's file, so once `current` moves, requests read the new one and never see an
answer from the old one; targets without immutable snapshots (snapshot None) are not cached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

SMALL_PAGE_ROWS = 1_000  # pages up to this many rows are answered whole, not streamed
MAX_ENTRY_BYTES = 256 * 1024  # larger answers are not kept
MAX_CACHE_BYTES = 32 * 1024 * 1024  # least recently used answers go first


@dataclass(frozen=True)
class CachedPage:
    body: bytes
    headers: dict[str, str]


def page_key(location: str, fmt: str, sql: str, params: list[Any]) -> tuple[Any, ...]:
    """What identifies an answer: the snapshot, the format, the SQL and its typed values (1,
    1.0 and True are equal in Python but not as bound SQL values)."""
    return (location, fmt, sql, tuple((type(p).__name__, p) for p in params))


class PageCache:
    """A thread-safe LRU of answers, bounded in bytes."""

    def __init__(self, max_bytes: int = MAX_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._pages: OrderedDict[tuple[Any, ...], CachedPage] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> CachedPage | None:
        with self._lock:
            page = self._pages.get(key)
            if page is not None:
                self._pages.move_to_end(key)
            return page

    def put(self, key: tuple[Any, ...], page: CachedPage) -> None:
        if len(page.body) > MAX_ENTRY_BYTES:
            return
        with self._lock:
            old = self._pages.pop(key, None)
            if old is not None:
                self._bytes -= len(old.body)
            self._pages[key] = page
            self._bytes += len(page.body)
            while self._bytes > self.max_bytes:
                _, dropped = self._pages.popitem(last=False)
                self._bytes -= len(dropped.body)

    def clear(self) -> None:
        with self._lock:
            self._pages.clear()
            self._bytes = 0


PAGES = PageCache()
