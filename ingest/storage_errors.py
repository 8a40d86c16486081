"""A lake whose storage fails while landing (disk full, read-only, I/O error) is not the file's
fault: the file is not rejected, the extract fails as retryable and lands once it is fixed.
"""

from __future__ import annotations

import errno


class StorageError(Exception):
    """The lake's storage failed while landing (disk full, read-only, I/O error): the file is
    not at fault and is not rejected; the node fails and may be retried once it is fixed."""

    retryable = True


_STORAGE = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EIO: "I/O error",
}
_STORAGE_TEXT = {
    "no space left on device": "disk full",
    "disk quota exceeded": "disk quota exceeded",
    "read-only file system": "read-only file system",
}


def raise_if_storage(exc: BaseException, target: str, name: str) -> None:
    """Raise StorageError when `exc` (or what it was raised from: readers wrap DuckDB's and
    Arrow's errors) says the storage failed, not the file."""
    seen: BaseException | None = exc
    while seen is not None:
        code = seen.errno if isinstance(seen, OSError) else None
        what = _STORAGE.get(code or -1)
        text = str(seen).lower()
        what = what or next((w for t, w in _STORAGE_TEXT.items() if t in text), None)
        if what:
            raise StorageError(
                f"cannot write {target} while landing {name}: {what} ({seen}); the file is "
                "not rejected: free space (or fix the lake's storage) and run again"
            ) from exc
        seen = seen.__cause__ or seen.__context__
    return None
