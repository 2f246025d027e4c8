"""The content-addressed blob store shared by the local registry, the download cache and ``ahl serve``.

Layout under a store's root (``registry/SPEC.md`` 12 and 14.5)::

    ROOT/blobs/sha256/<2 hex>/<64 hex>      file contents, read-only, never changed
    ROOT/tmp/                               staging: a blob lands by an atomic rename from here
    ROOT/locks/<64 hex>.lock                one writer per blob across processes (the cache's downloads)

This is the only code that turns a digest into a path, and it accepts nothing but 64 lowercase
hex characters: a digest read from a manifest, a cache record or a server can never name a
file outside ``blobs/`` (``../x`` or an absolute path is refused before any file operation).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO

from ...errors import IntegrityError
from ...files import locked, sha256_file

SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: object) -> bool:
    """Whether ``value`` is a sha256 as the store names blobs: 64 lowercase hex characters."""
    return isinstance(value, str) and SHA256.fullmatch(value) is not None


def check_sha256(value: object, what: str = "sha256") -> str:
    """Return ``value`` if it is 64 lowercase hex characters, else raise :class:`IntegrityError`."""
    if not is_sha256(value):
        raise IntegrityError(f"{what} {str(value)[:80]!r} is not a sha256 (64 lowercase hex digits)")
    return str(value)


class BlobStore:
    """Blobs named by their sha256 under ``root`` (see the module docstring).

    Example:
        >>> store = BlobStore(Path("registry"))
        >>> sha = store.write_bytes(b"hello")
        >>> store.path(sha).read_bytes()
        b'hello'
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.dir = self.root / "blobs" / "sha256"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"
        for directory in (self.dir, self.tmp, self.locks):
            directory.mkdir(parents=True, exist_ok=True)

    # -- names --------------------------------------------------------------------------------

    def path(self, sha256: str) -> Path:
        """Where the blob with this sha256 lives (whether or not it is stored)."""
        check_sha256(sha256)
        return self.dir / sha256[:2] / sha256

    def part_path(self, sha256: str) -> Path:
        """The partial download of this blob (resumed by the next try)."""
        return self.tmp / f"{check_sha256(sha256)}.part"

    def lock(self, sha256: str) -> AbstractContextManager[None]:
        """The cross-process lock of one blob (held while it is downloaded or evicted)."""
        return locked(self.locks / f"{check_sha256(sha256)}.lock")

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def __iter__(self) -> Iterator[tuple[str, Path]]:
        """``(sha256, path)`` of every stored blob; files with other names are not blobs."""
        for path in self.dir.glob("*/*"):
            if is_sha256(path.name) and path.parent.name == path.name[:2] and path.is_file():
                yield path.name, path

    # -- writing ------------------------------------------------------------------------------

    @contextmanager
    def _staged(self, target: Path, mode: int) -> Iterator[BinaryIO]:
        """A temporary file under ``tmp/`` that replaces ``target`` (fsynced, chmod ``mode``)
        only if the block completes."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def write_atomic(self, target: Path, data: bytes, mode: int = 0o644) -> None:
        """Write ``data`` to any file of the store's owner (a manifest, a record) by an atomic
        rename from ``tmp/``: a crash leaves the old file or the new one, never half of it."""
        with self._staged(target, mode) as handle:
            handle.write(data)

    def write_bytes(self, data: bytes) -> str:
        """Store content already in memory; return its sha256."""
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.has(sha256):
            with self._staged(self.path(sha256), 0o444) as handle:
                handle.write(data)
        return sha256

    def store_file(self, source: Path, sha256: str) -> bool:
        """Copy ``source`` in as the blob ``sha256``, hashing in the same pass; whether its
        content matched (nothing is stored when it does not).

        A blob stored already is trusted: it was checked against its name when it was written
        and is never changed (:meth:`verify` finds damage). ``source`` is then hashed once to
        check it, unless it is that very blob (a hard link of it), which needs no reading."""
        target = self.path(sha256)
        if target.is_file():
            return os.path.samefile(source, target) or sha256_file(source) == sha256
        try:
            with self._staged(target, 0o444) as handle:
                if copy_hashed(source, handle) != sha256:
                    raise _Mismatch
        except _Mismatch:
            return False
        return True

    def adopt(self, source: Path, sha256: str) -> None:
        """Move ``source``, a file under ``tmp/`` whose sha256 the caller computed from the very
        bytes it wrote, in as a blob without reading it again: fsynced and made read-only before
        the rename, as every blob. If the blob is stored already, nothing changes."""
        target = self.path(sha256)
        if target.is_file():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(source, 0o444)
        os.replace(source, target)

    # -- checking -----------------------------------------------------------------------------

    def verify(self, sha256: str) -> bool:
        """Whether the blob is stored and its content still hashes to its name."""
        path = self.path(sha256)
        return path.is_file() and sha256_file(path) == sha256

    def evict(self, sha256: str) -> int:
        """Remove a blob (damaged, or no longer referred to); the bytes freed."""
        path = self.path(sha256)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size


class _Mismatch(Exception):
    """Internal: a copied file did not hash to the sha256 it was stored under."""


def copy_hashed(source: Path, out: BinaryIO) -> str:
    """Copy a file into ``out`` and return its sha256, reading it once."""
    digest = hashlib.sha256()
    with source.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    return digest.hexdigest()
