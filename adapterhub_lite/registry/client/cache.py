"""The client's download cache: content-addressed blobs and resolved remote versions.

Layout (``registry/SPEC.md`` 14.5)::

    CACHE/blobs/sha256/<2 hex>/<64 hex>           verified file contents, read-only
    CACHE/remotes/<endpoint>/<namespace>/<slug>/<version>.json   a resolved remote version
    CACHE/tmp/<sha256>.part                       a partial download, resumed by the next try
    CACHE/locks/<sha256>.lock                     one downloader per blob across processes
    CACHE/artifacts/<64 hex>/                     a version pulled whole for a command that runs a
                                                  ref (predict, eval, inspect ...), by its digest

A blob becomes visible only by an atomic rename after its sha256 checked out, so readers never
see a partial or damaged file; a version record is written only after all of its blobs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...constants import cache_root
from ...errors import AhlError, IntegrityError
from ...files import replacing
from ..format.blobs import BlobStore, is_sha256

# Given the offset to start from, yield the bytes from there on; the fetcher may ignore the
# offset (a server without Range support) and then reports it by returning False from ``resumed``.
Fetch = Callable[[int], "Download"]


@dataclass
class Download:
    """An opened transfer: its chunks and whether it continues from the requested offset."""

    chunks: Iterator[bytes]
    resumed: bool


@dataclass(frozen=True)
class ArtifactCopy:
    """A version pulled whole into ``CACHE/artifacts`` (``hub.local_artifact``)."""

    digest: str
    path: Path

    def files(self) -> list[Path]:
        return [p for p in self.path.rglob("*") if p.is_file()]

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.files())


@dataclass(frozen=True)
class CachedVersion:
    """One resolved remote version the cache holds."""

    path: Path
    record: dict[str, Any]

    @property
    def size(self) -> int:
        return sum(int(f["size"]) for f in self.record["files"].values())


class DownloadCache:
    """The content-addressed cache that remote pulls download into.

    Example:
        >>> cache = DownloadCache()
        >>> cache.fetch(sha256, size, opener, what=name)   # downloads once, verified; later calls are free
    """

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else cache_root()
        (self.root / "remotes").mkdir(parents=True, exist_ok=True)
        self.blob_store = BlobStore(self.root)

    def fetch(
        self, sha256: str, size: int, opener: Fetch, *, what: str, progress: Callable[[int], None] | None = None
    ) -> bool:
        """Put the blob with this sha256 in the cache, downloaded with ``opener`` unless the cache
        holds it; whether this call downloaded it (and so hashed every byte just now).

        A partial download left by an earlier try (this or another process) is resumed from its
        length. The blob is renamed into place only once its size and sha256 match; otherwise
        the partial file is removed and :class:`IntegrityError` names ``what`` was damaged.
        """
        target = self.blob_store.path(sha256)  # refuses anything but 64 hex: no path from a server
        if target.is_file():
            return False
        with self.blob_store.lock(sha256):
            if target.is_file():  # another process finished it while we waited
                return False
            part = self.blob_store.part_path(sha256)
            offset = part.stat().st_size if part.is_file() else 0
            if offset > size:
                part.unlink()
                offset = 0
            download = opener(offset)
            digest = hashlib.sha256()
            with part.open("r+b" if offset and download.resumed else "wb") as out:
                if offset and download.resumed:
                    for block in iter(lambda: out.read(1 << 20), b""):
                        digest.update(block)
                else:
                    offset = 0
                if progress is not None and offset:
                    progress(offset)
                for chunk in download.chunks:
                    digest.update(chunk)
                    out.write(chunk)
                    offset += len(chunk)
                    if offset > size:
                        break
                    if progress is not None:
                        progress(len(chunk))
            if offset != size or digest.hexdigest() != sha256:
                part.unlink(missing_ok=True)
                raise IntegrityError(
                    f"{what} arrived damaged (got {offset:,} of {size:,} bytes, or its sha256 differs from the "
                    f"one its metadata records); nothing was cached: the registry copy may be corrupt"
                )
            self.blob_store.adopt(part, sha256)  # fsynced, read-only, renamed into place
        return True

    def store_bytes(self, data: bytes) -> str:
        """Cache content already in memory (a metadata file); return its sha256."""
        return self.blob_store.write_bytes(data)

    def copy_out(self, sha256: str, to: Path) -> None:
        """Copy a blob to ``to``. Not re-hashed here: the caller verifies the copies (one pass)
        and calls :meth:`evict_damaged` if they do not match."""
        blob = self.blob_store.path(sha256)
        if not blob.is_file():
            raise IntegrityError(f"cached blob {sha256[:12]}... disappeared (pruned meanwhile?); pull again")
        shutil.copyfile(blob, to)

    def evict_damaged(self, sha256s: Iterable[str]) -> list[str]:
        """Remove the blobs whose content no longer matches their name (a cache can rot on disk
        too), so that the next pull downloads them again; returns their sha256s."""
        damaged = [s for s in sha256s if self.blob_store.has(s) and not self.blob_store.verify(s)]
        for sha256 in damaged:
            self.blob_store.evict(sha256)
        return damaged

    # -- resolved versions --------------------------------------------------------------------

    def version_path(self, endpoint_key: str, repo_id: str, version: str) -> Path:
        return self.root / "remotes" / endpoint_key / repo_id / f"{version}.json"

    def read_version(self, endpoint_key: str, repo_id: str, version: str) -> dict[str, Any] | None:
        """A resolved version whose blobs are all cached, or None."""
        path = self.version_path(endpoint_key, repo_id, version)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            # a record of another shape, or naming a blob by something else than 64 hex, is no record
            complete = all(self.blob_store.has(f["sha256"]) for f in record["files"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError, AhlError):
            return None
        return record if complete else None

    def write_version(self, endpoint_key: str, repo_id: str, version: str, record: dict[str, Any]) -> None:
        path = self.version_path(endpoint_key, repo_id, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    def cached_versions(self, endpoint_key: str | None = None, repo_id: str | None = None) -> list[CachedVersion]:
        """Resolved versions the cache holds (of one endpoint / repository when given)."""
        root = self.root / "remotes"
        if endpoint_key is not None:
            root = root / endpoint_key
            if repo_id is not None:
                root = root / repo_id
        found = []
        for path in sorted(root.rglob("*.json")) if root.is_dir() else []:
            try:
                found.append(CachedVersion(path, json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError):
                continue
        return found

    # -- housekeeping -------------------------------------------------------------------------

    def blobs(self) -> Iterator[Path]:
        yield from (path for _, path in self.blob_store)

    def artifact_copies(self) -> list[ArtifactCopy]:
        """The versions pulled whole for commands that run a ref: full copies of their files,
        pulled again on the next use once removed."""
        root = self.root / "artifacts"
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and is_sha256(p.name)) if root.is_dir() else []
        return [ArtifactCopy(f"sha256:{name}", root / name) for name in names]

    def prune(self, *, everything: bool = False) -> tuple[int, int]:
        """Remove partial downloads, blobs no cached version refers to, and whole-artifact copies
        of versions the cache no longer holds (``everything``: the whole cache). Returns ``(files
        removed, bytes freed)``."""
        removed = freed = 0
        if everything:
            for record in self.cached_versions():
                record.path.unlink(missing_ok=True)
                removed += 1
        keep = {f["sha256"] for v in self.cached_versions() for f in v.record["files"].values()}
        for sha256, _ in list(self.blob_store):
            if sha256 not in keep:
                # Holding the blob's lock means no download of it is writing right now.
                with self.blob_store.lock(sha256):
                    freed += self.blob_store.evict(sha256)
                    removed += 1
        for path in list(self.blob_store.tmp.glob("*")):
            if path.is_file():
                key = path.name.removesuffix(".part")
                with self.blob_store.lock(key) if is_sha256(key) else nullcontext():
                    freed += path.stat().st_size
                    path.unlink(missing_ok=True)
                    removed += 1
        held = {v.record["digest"] for v in self.cached_versions()}
        for copy in self.artifact_copies():
            if everything or copy.digest not in held:
                files = copy.files()
                freed += sum(p.stat().st_size for p in files)
                removed += len(files)
                shutil.rmtree(copy.path, ignore_errors=True)
        return removed, freed
