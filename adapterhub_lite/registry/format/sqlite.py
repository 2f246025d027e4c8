"""The one way the registry's SQLite indexes are opened (the local registry's search index and
``ahl serve``'s repository index)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to a search index (WAL: readers never wait for the writer) whose block is
    one transaction; several processes may use the file at once."""
    db = sqlite3.connect(path, timeout=60)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        with db:
            yield db
    finally:
        db.close()
