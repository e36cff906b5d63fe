"""Settings that travel with a store: what any later process needs to re-read its catalogue.

A catalogue loaded from local folders (``clik demo``, ``clik index FOLDER``) can only be read
again by a process allowed to read those folders. Keeping the roots in the store itself means a
later ``clik models activate`` or ``clik serve`` on the same store reads the same images without
the operator repeating ``CLIK_FILE_ROOTS``. Only operator commands write this record (there is
no API route for it): whoever can write it can already write the store itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from indexer.store import VectorStore

SOURCES_RECORD = "settings:sources"


def stored_file_roots(store: VectorStore) -> tuple[str, ...]:
    """Folders this store's images were loaded from (absolute paths; empty when none)."""
    record = store.get_job(SOURCES_RECORD) or {}
    roots = record.get("file_roots", [])
    return tuple(r for r in roots if isinstance(r, str) and r)


def remember_file_roots(store: VectorStore, roots: Iterable[str | Path]) -> tuple[str, ...]:
    """Add folders to the store's recorded file roots (resolved, kept in first-seen order)."""
    known = list(stored_file_roots(store))
    for root in roots:
        path = str(Path(root).resolve())
        if path not in known:
            known.append(path)
    record = store.get_job(SOURCES_RECORD) or {}
    if record.get("file_roots") != known:
        store.put_job(SOURCES_RECORD, {**record, "file_roots": known})
    return tuple(known)
