"""Parts stay invisible until their partition is complete.

A part is written as `.part-00000.parquet.tmp` beside its final name and renamed to
`part-00000.parquet` only once every part of the partition is written, just before the
manifest. Why a hidden name in the same folder rather than a `_tmp/` prefix or readers that
follow manifests only: millpond's own readers do follow manifests, but anything else that globs
the lake (`**/*.parquet` in DuckDB, Spark, a notebook) would read a half-written or rejected
part; a name that starts with a dot and does not end in `.parquet` is skipped by all of them.
S3 has no rename: pyarrow's `move` there is a server-side copy and a delete, so the window in
which a complete part is visible without its manifest is the few requests of the rename, never
a partial file; a landing that fails deletes its folder, and one killed midway leaves a folder
without a manifest that the next landing of the table removes (Lake.remove_orphans).
"""

from __future__ import annotations

import contextlib

from millpond.ingest.lake import Lake


def staged_name(part_name: str) -> str:
    """The temporary name a part is written under."""
    return f".{part_name}.tmp"


def publish_parts(lake: Lake, folder: str, part_names: list[str]) -> None:
    """Give every written part its final name (the manifest comes right after)."""
    for name in part_names:
        lake.fs.move(f"{folder}/{staged_name(name)}", f"{folder}/{name}")


def discard(lake: Lake, folder: str) -> None:
    """Remove what a failed landing wrote; the original error is what the caller reports."""
    with contextlib.suppress(OSError):
        if lake.exists(folder):
            lake.fs.delete_dir(folder)
