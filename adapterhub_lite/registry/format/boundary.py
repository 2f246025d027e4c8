"""What a remote server sends, checked at the client's boundary before any file operation.

A Hub-compatible server is someone else's machine: every digest, size, name, commit id, JSON
body and header it sends is hostile until it passed a check here (``registry/SPEC.md`` 14.8).
Each refusal is one :class:`~adapterhub_lite.errors.RemoteError` line naming the server's
answer and what is wrong with it. Names are held to the rules of :mod:`.refs`, the same rules
the server applies to uploads; digests to what :class:`~.blobs.BlobStore` accepts.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ...errors import RefError, RemoteError
from .blobs import is_sha256
from .refs import DIGEST, Ref, check_base_id, check_file_path, check_segment, check_version

MAX_METADATA_BYTES = 16 << 20  # adapter.json / fusion.json / an adapters config: small files
MAX_FILE_BYTES = 1 << 40  # no artifact file is a terabyte; a larger size is a lie
METADATA_DEADLINE_S = 60.0  # a metadata file that takes longer is a trickle, not a download
STALL_TIMEOUT_S = 60.0  # no byte for this long: the server stalls (huggingface_hub's session waits forever)
# JSON answers the client parses itself (listings, refs, trees): each page at most
# MAX_JSON_BYTES, a paginated listing at most MAX_PAGES pages, MAX_LISTED rows and
# MAX_LISTING_BYTES in all, so an endless or bloated listing is refused, never held whole.
MAX_JSON_BYTES = 16 << 20
MAX_PAGES = 1000
MAX_LISTED = 100_000
MAX_LISTING_BYTES = 64 << 20
COMMIT = re.compile(r"[0-9a-f]{40}")


def check_commit(value: object, where: str) -> str:
    """A commit id as servers send them (40 lowercase hex: the Hub's and ahl serve's)."""
    if not isinstance(value, str) or not COMMIT.fullmatch(value):
        raise RemoteError(f"{where}: the server named commit {str(value)[:60]!r}, not 40 hex digits; refusing it")
    return value


def check_repo(value: object, where: str) -> str:
    """A repository id ``namespace/name`` a server named (a listing row)."""
    parts = value.split("/") if isinstance(value, str) else []
    try:
        if len(parts) != 2:
            raise RefError("it is not NAMESPACE/NAME")
        for part in parts:
            check_segment(part, "repository id part")
    except RefError as exc:
        raise RemoteError(f"{where}: the server named repository {str(value)[:80]!r}: {exc}") from None
    return str(value)


def check_ref(base: object, task: object, name: object, version: object, where: str) -> Ref:
    """An entry a server describes (a listing row, a tag), by the rules a ref typed by a user
    meets; ``version`` None for an entry without one."""
    try:
        if not all(isinstance(v, str) for v in (base, task, name)) or not isinstance(version, (str, type(None))):
            raise RefError("base, task, name and version must be strings")
        return Ref(
            check_base_id(str(base)),
            check_segment(str(task), "task"),
            check_segment(str(name), "name"),
            None if version is None else check_version(str(version)),
        )
    except RefError as exc:
        raise RemoteError(f"{where}: the server describes an invalid entry: {exc}") from None


def check_file_record(name: str, record: object, where: str) -> dict[str, Any]:
    """``{"sha256", "size"}`` of one file as a server lists it: 64 hex, 0 <= size <= 1 TiB."""
    if not isinstance(record, Mapping):
        raise RemoteError(f"{where}: the record of {name!r} is not an object with sha256 and size")
    sha256, size = record.get("sha256"), record.get("size")
    if not is_sha256(sha256):
        raise RemoteError(f"{where}: the sha256 of {name!r} is {str(sha256)[:80]!r}, not 64 lowercase hex digits")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FILE_BYTES:
        raise RemoteError(
            f"{where}: the size of {name!r} is {str(size)[:40]}, not a whole number of bytes "
            f"from 0 to {MAX_FILE_BYTES:,}"
        )
    return {"sha256": sha256, "size": size}


def check_files(files: object, where: str, *, prefix: str = "") -> dict[str, dict[str, Any]]:
    """A ``files`` mapping a server sent, each name joined to ``prefix``: safe names, valid
    records. Names are checked here; clashes once everything is merged (:func:`merge_files`)."""
    if not isinstance(files, Mapping):
        raise RemoteError(f"{where}: 'files' is not an object mapping file names to records")
    checked = {}
    for name, record in files.items():
        path = f"{prefix}{name}" if isinstance(name, str) else name
        try:
            check_file_path(path, "file name")
        except RefError as exc:
            raise RemoteError(f"{where} lists an unsafe file name: {exc}") from None
        checked[path] = check_file_record(path, record, where)
    return checked


def merge_files(parts: Iterable[dict[str, dict[str, Any]]], where: str) -> dict[str, dict[str, Any]]:
    """One file list from several (the metadata file's own record first): a later part may not
    override an earlier record, and no name may be both a file and a directory."""
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        for name, record in part.items():
            if name in merged:
                raise RemoteError(
                    f"{where}: the record of {name!r} is given twice (a listed file may not override "
                    f"the metadata file's own record); refusing the version"
                )
            merged[name] = record
    directories = {"/".join(name.split("/")[:i]) for name in merged for i in range(1, name.count("/") + 1)}
    clash = sorted(directories & merged.keys())
    if clash:
        raise RemoteError(f"{where}: {clash[0]!r} is listed both as a file and as a directory; refusing the version")
    return merged


def parse_json(data: bytes, where: str) -> Any:
    """A JSON body a server sent; one line when it is not JSON."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        start = data[:40].decode("utf-8", "replace")
        raise RemoteError(
            f"{where}: the server sent {len(data):,} bytes that are not JSON ({start!r}...: {str(exc).splitlines()[0]})"
        ) from None


def check_content_length(headers: Mapping[str, str], limit: int, where: str) -> int | None:
    """The body length a response declares, refused when it is malformed or over ``limit``
    (before a byte of the body is read)."""
    value = headers.get("content-length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise RemoteError(f"{where}: the server declared Content-Length {value[:40]!r}; refusing the answer")
    length = int(value)
    if length > limit:
        raise RemoteError(
            f"{where}: the server declared {length:,} bytes, over the {limit:,} this file may have; refusing it"
        )
    return length


def read_bounded(chunks: Iterable[bytes], limit: int, where: str, *, deadline_s: float | None = None) -> bytes:
    """Read a body while it streams in, refusing it as soon as it passes ``limit`` bytes or
    takes longer than ``deadline_s`` (default ``METADATA_DEADLINE_S``): a huge or trickling
    body is never held whole."""
    deadline_s = METADATA_DEADLINE_S if deadline_s is None else deadline_s
    body = bytearray()
    started = time.monotonic()
    for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise RemoteError(
                f"{where}: the server sent more than {limit:,} bytes for an answer that is at most "
                f"that large; refusing it"
            )
        if time.monotonic() - started > deadline_s:
            raise RemoteError(
                f"{where}: the server took over {deadline_s:.0f} s to send {len(body):,} bytes; refusing the trickle"
            )
    return bytes(body)


def check_digest(value: object, where: str) -> str:
    """A ``sha256:<64 hex>`` content digest a server or a cache record states."""
    if not isinstance(value, str) or not DIGEST.fullmatch(value):
        raise RemoteError(f"{where}: digest {str(value)[:80]!r} is not sha256: followed by 64 lowercase hex digits")
    return value


def check_rows(page: object, where: str) -> list[dict[str, Any]]:
    """One page of a listing (models, a tree): a JSON list of objects."""
    if not isinstance(page, list) or not all(isinstance(row, dict) for row in page):
        raise RemoteError(f"{where}: the server answered a listing that is not a list of objects")
    return page


def check_model_row(row: Mapping[str, Any], where: str) -> tuple[str, list[str]]:
    """``(repository id, tags)`` of one ``/api/models`` row; the id is a string here, checked
    with :func:`check_repo` where it is used (the Hub lists some ids without a namespace)."""
    repo_id, tags = row.get("id"), row.get("tags") or []
    if not isinstance(repo_id, str) or not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RemoteError(
            f"{where}: the server listed a repository {str(repo_id)[:80]!r} without a string id "
            f"and a list of string tags"
        )
    return repo_id, tags


def check_tree_row(row: Mapping[str, Any], where: str) -> str:
    """The path of one tree entry (``{"type": "file"|"directory", "path": ...}``); only compared
    with the names the client looks for, never joined to a directory."""
    path = row.get("path")
    if row.get("type") not in ("file", "directory") or not isinstance(path, str) or not 0 < len(path) <= 4096:
        raise RemoteError(f"{where}: the server listed a tree entry that is not a file or directory with a path")
    return path


def check_refs(data: object, where: str) -> list[tuple[str, object]]:
    """``(name, target commit)`` of each tag in a ``/refs`` answer (``{"tags": [{"name",
    "targetCommit"}, ...], ...}``); the commit is checked where a tag is used."""
    tags = data.get("tags") if isinstance(data, dict) else None
    if not isinstance(tags, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tags):
        raise RemoteError(f"{where}: the server answered refs that are not an object with a list of named tags")
    return [(t["name"], t.get("targetCommit")) for t in tags]
