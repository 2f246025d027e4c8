"""The one way the registry's SQLite indexes are opened (the local registry's search index and
``ahl serve``'s repository index)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote


@contextmanager
def connect(target: Path | str) -> Iterator[sqlite3.Connection]:
    """A connection to a search index whose block is one transaction; several processes may use
    the file at once (WAL: readers never wait for the writer).

    ``target``: the index file, or a URI from :func:`read_only_uri` or :func:`memory_uri`.
    """
    uri = isinstance(target, str) and target.startswith("file:")
    db = sqlite3.connect(target, timeout=60, uri=uri)
    try:
        if not uri:
            db.execute("PRAGMA journal_mode=WAL")
        with db:
            yield db
    finally:
        db.close()


def read_only_uri(path: Path) -> str:
    """The index file opened without writing anything, not even a lock or WAL file: for a registry
    on a directory or mount its user cannot write. ``immutable``: SQLite then assumes the file does
    not change while open, which only the directory's owner could break."""
    return f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"


def memory_uri() -> str:
    """A fresh in-memory database that every connection of this process to the same URI shares,
    for as long as one of them stays open."""
    return f"file:ahl-index-{uuid.uuid4().hex}?mode=memory&cache=shared"
