"""``ahl serve``: a self-hosted registry that speaks the Hugging Face Hub HTTP API subset.

The unmodified ``huggingface_hub`` client (``HfApi(endpoint=URL)``, ``snapshot_download``) can
create repositories, commit files, tag versions, search and download. The endpoints and their
exact payloads follow ``docs/hub-protocol.md``; storage is :mod:`.repos` over a local registry
directory (``registry/SPEC.md`` 12 and 14.6), so restarting the server loses nothing.

- Uploads: preupload answers ``lfs`` for large or binary files to clients that announce LFS
  basic uploads (header ``X-AHL-LFS-Transfer: basic``, Xet off), and ``regular`` otherwise:
  a stock client with ``hf_xet`` would send ``lfs`` files over Xet, which this server does not
  speak (``docs/hub-protocol.md`` 3). ``lfs`` files are PUT raw to a link the LFS batch endpoint
  signs, streamed to ``ROOT/tmp`` and hashed in the same pass, and become blobs only if their
  sha256 is their oid; ``regular`` ones come base64 inside the NDJSON commit body, which is
  spooled to ``ROOT/tmp`` and applied only when complete and valid. Each uploaded byte is
  hashed once (``max_upload_bytes``: 413 for a larger commit body or object).
- Downloads: ``/resolve`` streams the blob file and honours ``Range``. As on the Hub, binary
  files (by suffix) and files over 1 MiB are LFS files: ``ETag`` = ``X-Linked-Etag`` = sha256,
  ``lfs`` in siblings and tree entries; others (cards, small JSON) are regular files, named by
  their git blob id (``ETag``, ``oid``, ``blobId``).
- Auth: ``Authorization: Bearer TOKEN``. Writes need a token whose user is the repository's
  namespace (401 without a valid token, 403 for another namespace), checked before anything
  is read or written. With ``private``, reads need a valid token too (404 ``RepoNotFound``, as
  the Hub answers for repositories a caller may not see); a repository created private (or
  made private in its settings) is read and listed only with its namespace's token. Tokens:
  :func:`load_tokens` reads a file of ``TOKEN USER`` lines and ``$AHL_SERVE_TOKENS``
  (``TOKEN:USER,TOKEN:USER``).

Every error carries ``X-Error-Message`` (and ``X-Error-Code`` where the client needs one) and a
JSON body ``{"error": ...}``.

Limits (``registry/SPEC.md`` 14.7): every body has a cap suited to its endpoint, arrives within
a read timeout and at a minimum rate, and uploads run at most ``max_concurrent_uploads`` at a
time; request headers must arrive within the header timeout (:class:`HeaderTimeoutProtocol`).
Parsing, YAML and hashing of more than a few kilobytes run in worker threads, never on the
event loop, so one client's hostile body cannot stall another's search.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import functools
import hashlib
import hmac
import html
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from ...constants import LFS_TRANSFER_HEADER, SEARCH_LIKE_PATH, SERVE_TOKENS_ENV
from ...errors import AhlError, ConfigError, NotFoundError, RefError, VersionConflictError
from ...task_embedding import TaskEmbedding
from ..format.refs import base_key
from .repo_model import (
    BRANCH,
    LOCAL_NAMESPACE,
    MAX_CARD_HEADER_BYTES,
    MAX_CARD_NODES,
    RESERVED_NAMESPACES,
    AlreadyExistsError,
    Commit,
    Delete,
    EntryNotFoundError,
    PutFile,
    ReadOnlyRepoError,
    Repo,
    RepoNotFoundError,
    RevisionNotFoundError,
    StaleParentError,
    card_data,
    card_header,
    check_repo_id,
    check_repo_path,
)
from .repos import MAX_REPO_FILES, RepoStore

DEFAULT_MAX_UPLOAD_BYTES = 512 << 20
# Body caps per endpoint (SPEC 14.7); commit bodies and LFS objects: max_upload_bytes
MAX_JSON_BYTES = 64 << 10  # create repository, create tag
MAX_LIST_JSON_BYTES = 2 << 20  # preupload, LFS batch (huggingface_hub sends 256 files a request)
MAX_YAML_JSON_BYTES = 256 << 10  # validate-yaml: a model card
MAX_COMMIT_FILES = MAX_REPO_FILES  # operations in one commit, files in one preupload or batch
DEFAULT_MAX_CONCURRENT_UPLOADS = 8  # commit bodies and LFS PUTs received at once; more: 429
DEFAULT_READ_TIMEOUT = 30.0  # seconds: the longest pause inside a body, and headers' deadline
MIN_BODY_RATE = 16 << 10  # bytes/s a body must average once it has taken read_timeout seconds
OFF_LOOP_BYTES = 64 << 10  # JSON bodies larger than this are parsed in a worker thread
MAX_CURSOR = 1 << 62  # list_models offsets (SQLite integers are 64-bit)
PAGE_SIZE = 1000  # list_models rows per page, as on the Hub; tree entries per page too
MAX_LIKE_TOP = 1000  # rows search --like answers at most
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
LFS_MIN_BYTES = 1 << 20  # larger files go "lfs" (to clients that take it), as do binary ones
LFS_JSON = "application/vnd.git-lfs+json"
UPLOAD_LINK_SECONDS = 3600  # how long a signed LFS upload link is good for, by default
OID = re.compile(r"[0-9a-f]{64}")
log = logging.getLogger("ahl.serve")


class HTTPError(Exception):
    """An error answered with ``status`` (auth and size errors; the rest map from :class:`AhlError`)."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def parse_tokens(text: str) -> dict[str, str]:
    """Tokens from a tokens file: one ``TOKEN USER`` per line; blank lines and ``#`` comments skipped.

    Raises:
        ConfigError: a line that is not two fields, or a user that is not a valid namespace.
    """
    tokens = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ConfigError(f"tokens file line {number}: expected 'TOKEN USER', got {len(fields)} field(s)")
        tokens[fields[0]] = _check_user(fields[1])
    return tokens


def parse_tokens_env(value: str) -> dict[str, str]:
    """Tokens from ``$AHL_SERVE_TOKENS``: ``TOKEN:USER`` pairs separated by commas."""
    tokens = {}
    for pair in filter(None, (p.strip() for p in value.split(","))):
        token, sep, user = pair.rpartition(":")
        if not sep or not token:
            raise ConfigError(
                f"${SERVE_TOKENS_ENV}: expected TOKEN:USER pairs separated by commas, got {pair[:8]!r}..."
            )
        tokens[token] = _check_user(user)
    return tokens


def load_tokens(path: Path | None = None, env: str | None = None) -> dict[str, str]:
    """Tokens from a tokens file and/or the ``$AHL_SERVE_TOKENS`` value (the file wins on clashes)."""
    tokens = parse_tokens_env(env) if env else {}
    if path is not None:
        try:
            tokens.update(parse_tokens(Path(path).read_text(encoding="utf-8")))
        except OSError as exc:
            raise ConfigError(f"cannot read tokens file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"tokens file {path} is not UTF-8 text; write it as UTF-8, one 'TOKEN USER' per line"
            ) from None
    return tokens


def _check_user(user: str) -> str:
    try:
        check_repo_id(user, "x")
    except RefError:
        raise ConfigError(f"user {user!r} is not a valid namespace name") from None
    if user in RESERVED_NAMESPACES:
        raise ConfigError(f"user {user!r} is a reserved namespace ({LOCAL_NAMESPACE}/ shows entries pushed locally)")
    return user


def _error(
    status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None, **body: Any
) -> Response:
    # Header values must be latin-1 and one line; the JSON body keeps the full message.
    head = {"X-Error-Message": message.encode("ascii", "replace").decode().replace("\n", " ")[:1000]}
    code = code or _CODES.get(status)
    if code:
        head["X-Error-Code"] = code
    return JSONResponse({"error": message, **body}, status_code=status, headers={**head, **(headers or {})})


# X-Error-Code of refusals that have no more specific one (401 and 404 keep the Hub's meaning:
# huggingface_hub reads a 401/404 without a code as "repository not found")
_CODES = {
    400: "BadRequest",
    403: "Forbidden",
    408: "RequestTimeout",
    409: "Conflict",
    412: "PreconditionFailed",
    413: "PayloadTooLarge",
    429: "TooManyRequests",
    500: "InternalError",
    507: "InsufficientStorage",
}


def _status(exc: AhlError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, StaleParentError):
        return 412
    if isinstance(exc, VersionConflictError):
        return 409
    if isinstance(exc, ReadOnlyRepoError):
        return 403
    return 400


def _storage_error(exc: OSError | sqlite3.Error) -> Response:
    """A failed read or write of the registry directory, as one clear line (507 for a full disk)."""
    # An OSError says what failed by its errno; SQLite only in words ("database or disk is full",
    # "attempt to write a readonly database"). An OSError's text holds a path, which may hold any word.
    said = str(exc) if isinstance(exc, sqlite3.Error) else ""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or "full" in said:
        status, message = (
            507,
            (
                "the registry's storage is full (no space, or a quota or file-size limit); nothing "
                "was stored: the operator must free space"
            ),
        )
    elif isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) or "readonly" in said:
        status, message = (
            500,
            (
                "the server cannot write its registry directory (read-only or not permitted); "
                "nothing was stored: the operator must make it writable"
            ),
        )
    else:
        status, message = 500, f"the server could not read or write its registry: {exc}"
    log.error("ahl serve: %s (%s)", message, exc)
    return _error(status, message)


def _endpoint(handler: Callable[..., Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Turn typed errors into Hub-style error responses: never a bare 500."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except HTTPError as exc:
            return _error(exc.status, exc.message, exc.code)
        except AhlError as exc:
            return _error(_status(exc), str(exc), getattr(exc, "code", None))
        except ClientDisconnect:  # the client went away mid-body: nobody reads an answer
            return _error(400, "the client disconnected before its request body was complete")
        except (OSError, sqlite3.Error) as exc:
            return _storage_error(exc)
        except Exception:  # a bug: the log gets the traceback, the client one line
            log.exception("ahl serve: internal error in %s %s", request.method, request.url.path)
            return _error(500, "internal error in ahl serve (the server log has the details)")

    return wrapper


def _too_big(limit: int, what: str = "request body") -> HTTPError:
    return HTTPError(413, f"{what} larger than this endpoint's limit of {limit >> 10} KiB")


async def _body(request: Request, limit: int, too_large: HTTPError, timeout: float) -> AsyncIterator[bytes]:
    """The request body's chunks: 413 (``too_large``) past ``limit`` bytes (from Content-Length
    at once), 408 for a pause over ``timeout`` seconds or, once the body has taken that long, an
    average under :data:`MIN_BODY_RATE` (a slow client holds nothing for long)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    stream, received, started = request.stream().__aiter__(), 0, time.monotonic()
    while True:
        try:
            with anyio.fail_after(timeout):
                chunk = await stream.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise HTTPError(
                408, f"the request body stopped arriving (nothing for {timeout:g} s); send it again"
            ) from None
        received += len(chunk)
        if received > limit:
            raise too_large
        elapsed = time.monotonic() - started
        if elapsed > timeout and received < elapsed * MIN_BODY_RATE:
            raise HTTPError(
                408,
                f"the request body arrives too slowly ({received / elapsed / 1024:.1f} KiB/s; "
                f"at least {MIN_BODY_RATE >> 10} KiB/s); send it again on a faster link",
            )
        yield chunk


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise RefError("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise RefError("request body must be a JSON object")
    return data


async def _json_body(
    request: Request, limit: int = MAX_JSON_BYTES, timeout: float = DEFAULT_READ_TIMEOUT
) -> dict[str, Any]:
    """A JSON object request body of at most ``limit`` bytes; parsed off the loop when large."""
    body = bytearray()
    async for chunk in _body(request, limit, _too_big(limit), timeout):
        body += chunk
    if len(body) > OFF_LOOP_BYTES:
        return await run_in_threadpool(_parse_json, bytes(body))
    return _parse_json(bytes(body))


def _lfs(record: dict[str, Any]) -> tuple[str, int]:
    """The git blob id and size of a file's LFS pointer: files are presented as LFS files."""
    pointer = LFS_POINTER.format(**record).encode()
    return hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest(), len(pointer)


def parse_commit(
    body: Path, staging: Path, blob_path: Callable[[str], Path]
) -> tuple[dict[str, Any], list[PutFile | Delete]]:
    """The header and operations of an NDJSON commit body; inline file contents land in
    ``staging``, hashed from the decoded bytes, and ``lfsFile`` lines name blobs uploaded before.

    Raises:
        RefError: a malformed line, an invalid path, an ``lfsFile`` whose object was not
        uploaded (or has another size), or an operation this server does not take.
    """
    header: dict[str, Any] = {}
    operations: list[PutFile | Delete] = []
    with body.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if len(operations) >= MAX_COMMIT_FILES:
                raise RefError(f"the commit has more than {MAX_COMMIT_FILES} operations; split it into smaller commits")
            try:
                item = json.loads(line)
                line = b""  # the parsed copy is enough: a large inline file is not held twice
                key, value = item["key"], item["value"]
            except (ValueError, KeyError, TypeError, RecursionError):
                raise RefError(f'commit line {number} is not a {{"key", "value"}} JSON object') from None
            if not isinstance(value, dict):
                raise RefError(f"commit line {number}: 'value' must be an object")
            if key == "header":
                header = value
            elif key == "file":
                path = check_repo_path(value.get("path"))
                if value.get("encoding", "base64") != "base64" or not isinstance(value.get("content"), str):
                    raise RefError(f"commit file {path!r}: content must be a base64 string")
                target = staging / f"file-{number}"
                operations.append(_decode_to(value.pop("content"), target, path))
            elif key in ("deletedFile", "deletedFolder"):
                deleted = value.get("path")
                deleted = deleted.rstrip("/") if isinstance(deleted, str) else deleted
                operations.append(Delete(check_repo_path(deleted), folder=key == "deletedFolder"))
            elif key == "lfsFile":
                operations.append(_uploaded(check_repo_path(value.get("path")), value, blob_path))
            else:
                raise RefError(f"commit line {number}: unknown operation {key!r}")
    return header, operations


def _decode_to(content: str, target: Path, path: str) -> PutFile:
    """Decode a base64 inline file into ``target`` in slices, hashing as it goes: no decoded
    copy of a large file is held in memory beside its text."""
    step = 4 << 20  # a multiple of 4: padding can only end the last slice
    digest, size = hashlib.sha256(), 0
    with target.open("wb") as out:
        for start in range(0, len(content), step):
            try:
                block = base64.b64decode(content[start : start + step], validate=True)
            except (binascii.Error, ValueError):
                raise RefError(f"commit file {path!r}: content is not valid base64") from None
            digest.update(block)
            size += len(block)
            out.write(block)
    return PutFile(path, target, digest.hexdigest(), size)


def _uploaded(path: str, value: dict[str, Any], blob_path: Callable[[str], Path]) -> PutFile:
    """The operation of an ``lfsFile`` commit line: the blob its oid names, uploaded before."""
    oid, size = value.get("oid"), value.get("size")
    if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not OID.fullmatch(oid):
        raise RefError(f"commit file {path!r}: an lfsFile needs a sha256 'oid' (64 lowercase hex digits)")
    blob = blob_path(oid)
    try:
        stored = blob.stat().st_size
    except FileNotFoundError:
        raise RefError(
            f"commit file {path!r}: object {oid[:12]}... was never uploaded; upload it through "
            f"the LFS batch endpoint before committing"
        ) from None
    if size is not None and size != stored:  # lfsFile lines of copies carry no size
        raise RefError(f"commit file {path!r}: size {size!r} is not the {stored} bytes of object {oid[:12]}...")
    return PutFile(path, blob, oid, stored)


def _upload_mode(entry: dict[str, Any], lfs: bool) -> str:
    """How the client should send a preupload entry: ``lfs`` (raw, over the LFS batch endpoint)
    for a file over :data:`LFS_MIN_BYTES` or with a NUL byte in its sample (git's test for
    binary), when the client takes ``lfs``; else ``regular`` (inline in the commit). Empty files
    are always regular (the client insists)."""
    if not lfs:
        return "regular"
    size = entry.get("size")
    if not isinstance(size, int) or size < 0:
        raise RefError(f"preupload: file {entry.get('path')!r} needs a whole-number 'size'")
    if size == 0:
        return "regular"
    try:
        sample = base64.b64decode(entry.get("sample") or "", validate=True)
    except (binascii.Error, TypeError):
        raise RefError(f"preupload: the sample of {entry.get('path')!r} is not base64") from None
    return "lfs" if size > LFS_MIN_BYTES or b"\0" in sample else "regular"


class _Server:
    """The endpoints, bound to one store and one auth configuration."""

    def __init__(
        self,
        store: RepoStore,
        tokens: dict[str, str],
        private: bool,
        max_upload_bytes: int,
        upload_link_seconds: int,
        max_concurrent_uploads: int,
        read_timeout: float,
    ) -> None:
        self.store = store
        self.tokens = dict(tokens)
        self.private = private
        self.max_upload_bytes = max_upload_bytes
        self.upload_link_seconds = upload_link_seconds
        self.max_concurrent_uploads = max_concurrent_uploads
        self.read_timeout = read_timeout
        self.uploads = 0  # bodies being received now (commits, LFS PUTs); the event loop's own count
        # tree listings by (commit, folder, recursive): a listing is paged, so computed once for all its pages
        self.trees: OrderedDict[tuple[str, str, bool], list[dict[str, Any]]] = OrderedDict()
        self.trees_lock = threading.Lock()  # listings are made in worker threads
        # Signs LFS upload links (the client PUTs without a token). Per process: a restart only
        # invalidates links in flight, which the client asks for again with its next push.
        self.secret = secrets.token_bytes(32)

    # -- auth ----------------------------------------------------------------------------------

    def _user(self, request: Request) -> str | None:
        """The user of a valid bearer token, None without one; 401 for an invalid token."""
        header = request.headers.get("authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        user = self.user_of(token) if scheme.lower() == "bearer" else None
        if user is None:
            raise HTTPError(401, "Invalid user token.")
        return user

    def user_of(self, token: str) -> str | None:
        """The user of ``token`` (a bearer token, or one typed into the catalog's login form)."""
        # compare every token in constant time: response timing must not reveal a prefix
        user = None
        for known, owner in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                user = owner
        return user

    def _writer(self, request: Request, namespace: str | None = None) -> str:
        """The user a write is done for: a valid token whose user owns ``namespace``."""
        user = self._user(request)
        if user is None:
            raise HTTPError(401, "authentication required: pass a token (Authorization: Bearer TOKEN)")
        if namespace is not None and namespace != user:
            raise HTTPError(403, f"user {user!r} cannot write to namespace {namespace!r}")
        return user

    def _viewer(self, request: Request) -> str | None:
        """The user of a read request's valid token; None without one (or with an invalid one)."""
        try:
            return self._user(request)
        except HTTPError:
            return None

    def _read_repo(self, request: Request) -> Repo:
        """The repository of a read request, if the caller may see it: a private repository
        only with its namespace's token, every repository of a ``--private`` server only with
        a valid token. Others get 404 ``RepoNotFound``, as the Hub answers."""
        repo_id = f"{request.path_params['namespace']}/{request.path_params['name']}"
        viewer = self._viewer(request)
        if self.private and viewer is None:
            raise RepoNotFoundError(f"repository {repo_id} not found")
        repo = self.store.repo(repo_id)
        if repo.private and viewer != repo.namespace:
            raise RepoNotFoundError(f"repository {repo_id} not found (or private: pass a token of {repo.namespace})")
        return repo

    def _write_repo_id(self, request: Request) -> str:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        self._writer(request, namespace)
        return check_repo_id(namespace, name)

    # -- repositories --------------------------------------------------------------------------

    async def create_repo(self, request: Request) -> Response:
        user = self._writer(request)
        body = await _json_body(request)
        if body.get("type") not in (None, "model"):
            raise RefError(f"ahl serve holds model repositories only, not {body.get('type')!r}")
        namespace = body.get("organization") or user
        name = body.get("name")
        private = _visibility(body) == "private"
        if not isinstance(namespace, str) or not isinstance(name, str):
            raise RefError("create needs a string 'name' (and optionally 'organization')")
        if "/" in name:  # some clients send the full id as the name
            namespace, _, name = name.partition("/")
        self._writer(request, namespace)
        url = f"{str(request.base_url).rstrip('/')}/{namespace}/{name}"
        try:
            repo = await run_in_threadpool(
                functools.partial(self.store.create_repo, namespace, name, private=bool(private))
            )
        except AlreadyExistsError as exc:  # create_repo(exist_ok=True) reads the url from the 409 too
            return _error(409, str(exc), url=url)
        return JSONResponse({"url": url, "name": repo.id, "id": repo.id})

    def _model_json(
        self,
        repo: Repo,
        commit: Commit | None = None,
        tags: list[str] | None = None,
        card: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        tags = tags if tags is not None else list(repo.tags)
        # an artifact's repository is adapterhub-lite's unless its card says otherwise; any other
        # repository has the card's library, or none
        library = "adapterhub-lite" if repo.entry or "adapterhub-lite" in tags else None
        data: dict[str, Any] = {
            "id": repo.id,
            "modelId": repo.id,
            "author": repo.namespace,
            "sha": commit.id if commit else repo.main,
            "private": repo.private or self.private,
            "gated": False,
            "disabled": False,
            "lastModified": repo.last_modified,
            "createdAt": repo.created_at,
            "tags": tags,
            "library_name": library,
            "pipeline_tag": None,
            "downloads": 0,
            "likes": 0,
        }
        if card is not None:
            data.update(
                cardData=card, library_name=card.get("library_name", library), pipeline_tag=card.get("pipeline_tag")
            )
        if commit is not None:
            data["siblings"] = []
            for path, record in sorted(commit.files.items()):
                entry = self._file_entry(path, record)
                sibling = {"rfilename": path, "size": record["size"], "blobId": entry["oid"]}
                if "lfs" in entry:
                    sibling["lfs"] = {
                        "sha256": record["sha256"],
                        "size": record["size"],
                        "pointerSize": entry["lfs"]["pointerSize"],
                    }
                data["siblings"].append(sibling)
        return data

    def _file_entry(self, path: str, record: dict[str, Any]) -> dict[str, Any]:
        """A file's tree entry (also read for siblings): an LFS file's ``oid`` is its pointer's
        git blob id and it has ``lfs``; a regular file's ``oid`` is its own git blob id."""
        if not self.store.is_lfs(path, record):
            return {
                "type": "file",
                "path": path,
                "size": record["size"],
                "oid": self.store.git_blob_id(record["sha256"]),
            }
        blob_id, pointer_size = _lfs(record)
        return {
            "type": "file",
            "path": path,
            "size": record["size"],
            "oid": blob_id,
            "lfs": {"oid": record["sha256"], "size": record["size"], "pointerSize": pointer_size},
        }

    def _model_info(self, request: Request) -> dict[str, Any]:
        repo = self._read_repo(request)
        commit = self.store.resolve(repo, request.path_params.get("revision", BRANCH))
        card = self.store.card(commit.files)  # parsed once per card, then cached
        # a real repository's tags at this revision; a local mirror's from its registry summary
        tags = (
            list(repo.tags)
            if repo.local
            else list(self.store.snapshot_tags(commit.files, repo.entry, self.store.versions_of(repo.id)))
        )
        return self._model_json(repo, commit, tags, card)

    async def model_info(self, request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self._model_info, request))

    async def list_models(self, request: Request) -> Response:
        viewer = self._user(request)
        if self.private and viewer is None:
            raise HTTPError(401, "this registry is private: pass a token")
        params = request.query_params
        limit, offset = _whole(params.get("limit"), PAGE_SIZE, "limit"), _whole(params.get("cursor"), 0, "cursor")
        page = max(1, min(limit, PAGE_SIZE))
        # the Hub's pipeline_tag and library filters: both are among the tags it derives (SPEC 14.2)
        tags = [*params.getlist("filter"), *params.getlist("pipeline_tag"), *params.getlist("library")]
        rows = await run_in_threadpool(
            functools.partial(
                self.store.search,
                author=params.get("author"),
                search=params.get("search"),
                tags=tags,
                sort=params.get("sort") or "lastModified",
                offset=max(0, offset),
                limit=page,
                viewer=viewer,
            )
        )
        expand = set(params.getlist("expand")) | set(params.getlist("expand[]"))
        full = params.get("full", "").lower() in ("true", "1")
        with_card = full or params.get("cardData", "").lower() in ("true", "1") or "cardData" in expand
        with_files = full or "siblings" in expand
        models = await run_in_threadpool(self._listed_models, rows, with_card, with_files, expand)
        headers = {}
        if len(rows) == page:
            query = [(k, v) for k, v in params.multi_items() if k != "cursor"] + [("cursor", str(offset + page))]
            headers["Link"] = f'<{request.url.replace(query=urlencode(query))}>; rel="next"'
        return JSONResponse(models, headers=headers)

    def _listed_models(
        self, rows: list[dict[str, Any]], with_card: bool, with_files: bool, expand: set[str]
    ) -> list[dict[str, Any]]:
        """The listing's models: card data and files read from each head when asked for (one
        commit record per row, cards parsed once per content); with ``expand``, only the
        fields it names (and ``id``), as the Hub answers."""
        models = []
        for row in rows:
            repo = Repo(
                row["id"],
                row["createdAt"],
                row["lastModified"],
                row["sha"],
                tags=tuple(row["tags"]),
                entry=_entry_of(row),
                private=row["private"],
            )
            commit, card = None, None
            if with_card or with_files:
                commit = self.store.resolve(self.store.repo(repo.id), row["sha"])
                card = self.store.card(commit.files) if with_card else None
            data = self._model_json(repo, commit if with_files else None, card=card)
            if expand:
                data = {key: value for key, value in data.items() if key in expand or key == "id"}
            # An extra field (Hub clients keep unknown fields): the entry's latest version, so
            # that ahl search lists a page without one request per repository.
            models.append({**data, "ahlEntry": row["ahlEntry"]})
        return models

    async def search_like(self, request: Request) -> Response:
        """ahl's extension (SPEC 14.9): the latest entries of a base ranked by the similarity of
        their task embedding to the one posted, in one request. Cheap and anonymous like a
        listing: one index scan and one matrix product, off the event loop."""
        viewer = self._user(request)
        if self.private and viewer is None:
            raise HTTPError(401, "this registry is private: pass a token")
        body = await _json_body(request, MAX_JSON_BYTES, self.read_timeout)
        embedding = TaskEmbedding.from_dict(body.get("task_embedding"), "task_embedding")
        top, base = body.get("top", 10), body.get("base")
        if not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= MAX_LIKE_TOP:
            raise RefError(f"top must be a whole number from 1 to {MAX_LIKE_TOP}")
        if base is not None and not isinstance(base, str):
            raise RefError("base must be a string (a model id)")
        rows = await run_in_threadpool(
            functools.partial(
                self.store.search_like, embedding, base=base_key(base) if base else None, top=top, viewer=viewer
            )
        )
        return JSONResponse(rows)

    async def validate_yaml(self, request: Request) -> Response:
        """Check a model card's YAML header: a writer's work (a token), small, parsed off the loop."""
        self._writer(request)
        body = await _json_body(request, MAX_YAML_JSON_BYTES, self.read_timeout)
        content = body.get("content", "")
        header = card_header(content) if isinstance(content, str) else None
        if header and header.strip() and not await run_in_threadpool(card_data, content):
            return JSONResponse(
                {
                    "errors": [
                        {
                            "message": f"the README.md YAML header is not a valid mapping (or is "
                            f"over {MAX_CARD_HEADER_BYTES >> 10} KiB, or expands past "
                            f"{MAX_CARD_NODES} values through aliases)"
                        }
                    ],
                    "warnings": [],
                },
                status_code=400,
            )
        return JSONResponse({"errors": [], "warnings": []})

    # -- uploads -------------------------------------------------------------------------------

    async def preupload(self, request: Request) -> Response:
        repo_id = self._write_repo_id(request)
        repo = await run_in_threadpool(self.store.repo, repo_id)
        body = await _json_body(request, MAX_LIST_JSON_BYTES, self.read_timeout)
        files = body.get("files")
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            raise RefError('preupload needs {"files": [{"path": ..., "size": ...}, ...]}')
        if len(files) > MAX_COMMIT_FILES:
            raise RefError(f"preupload of {len(files)} files; at most {MAX_COMMIT_FILES} a request")
        # "lfs" only to a client that said it uploads lfs files over LFS basic (module docstring)
        transfers = request.headers.get(LFS_TRANSFER_HEADER, "")
        lfs = "basic" in {t.strip().lower() for t in transfers.split(",")}
        answer = await run_in_threadpool(
            lambda: [  # up to 10,000 paths and samples: off the loop
                {
                    "path": check_repo_path(f.get("path")),
                    "uploadMode": _upload_mode(f, lfs),
                    "shouldIgnore": False,
                    "oid": None,
                }
                for f in files
            ]
        )
        branch = request.path_params["revision"]
        return JSONResponse({"files": answer, "commitOid": dict(repo.branches).get(branch, repo.main)})

    def _too_large(self, what: str, advice: str = "") -> HTTPError:
        return HTTPError(
            413,
            f"{what} is larger than this server's upload limit of "
            f"{self.max_upload_bytes / (1 << 20):g} MB (ahl serve --max-upload-mb){advice}",
        )

    def _sign(self, repo_id: str, oid: str, size: int, expires: int) -> str:
        return hmac.new(self.secret, f"{repo_id}\n{oid}\n{size}\n{expires}".encode(), hashlib.sha256).hexdigest()

    async def lfs_batch(self, request: Request) -> Response:
        """The git-lfs batch API, uploads only: per object, no ``actions`` when the blob is stored
        already (the client skips it), else a signed, expiring link to PUT it to."""
        repo_id = self._write_repo_id(request)
        await run_in_threadpool(self.store.repo, repo_id)  # 404 for a repository that does not exist
        body = await _json_body(request, MAX_LIST_JSON_BYTES, self.read_timeout)
        if body.get("operation") != "upload":
            raise RefError("ahl serve's LFS batch endpoint takes uploads only; files download through /resolve")
        if "basic" not in (body.get("transfers") or ["basic"]) or body.get("hash_algo", "sha256") != "sha256":
            raise RefError("ahl serve speaks the LFS 'basic' transfer with sha256 oids only")
        objects = body.get("objects")
        if not isinstance(objects, list) or not all(
            isinstance(o, dict)
            and isinstance(o.get("oid"), str)
            and OID.fullmatch(o["oid"])
            and isinstance(o.get("size"), int)
            and o["size"] >= 0
            for o in objects
        ):
            raise RefError('LFS batch needs {"objects": [{"oid": <sha256 hex>, "size": <bytes>}, ...]}')
        if len(objects) > MAX_COMMIT_FILES:
            raise RefError(f"LFS batch of {len(objects)} objects; at most {MAX_COMMIT_FILES} a request")
        for item in objects:
            if item["size"] > self.max_upload_bytes:
                raise self._too_large(f"object {item['oid'][:12]}... ({item['size'] / (1 << 20):.1f} MB)")
        base, expires = str(request.base_url).rstrip("/"), int(time.time()) + self.upload_link_seconds
        stored = await run_in_threadpool(
            lambda: {o["oid"] for o in objects if self.store.blob_path(o["oid"]).is_file()}
        )
        answer = []
        for item in objects:
            oid, size = item["oid"], item["size"]
            if oid in stored:
                answer.append({"oid": oid, "size": size})
                continue
            query = urlencode({"size": size, "expires": expires, "sig": self._sign(repo_id, oid, size, expires)})
            upload = {
                "href": f"{base}/{repo_id}.git/info/lfs/objects/{oid}?{query}",
                "expires_in": self.upload_link_seconds,
            }
            answer.append({"oid": oid, "size": size, "authenticated": True, "actions": {"upload": upload}})
        return JSONResponse({"transfer": "basic", "objects": answer, "hash_algo": "sha256"}, media_type=LFS_JSON)

    def _signed_size(self, request: Request, repo_id: str, oid: str) -> int:
        """The size an upload link was signed for; 403 for a link this server did not sign (or
        one altered since) and for an expired one."""
        params = request.query_params
        try:
            size, expires = int(params["size"]), int(params["expires"])
        except (KeyError, ValueError):
            size, expires = -1, 0
        if not hmac.compare_digest(self._sign(repo_id, oid, size, expires).encode(), params.get("sig", "").encode()):
            raise HTTPError(
                403,
                "this upload link was not signed by this server process (or was altered); "
                "ask the LFS batch endpoint for a new one",
            )
        if expires < time.time():
            raise HTTPError(403, "this upload link has expired; ask the LFS batch endpoint for a new one")
        return size

    async def lfs_upload(self, request: Request) -> Response:
        """``PUT`` of one object to the link :meth:`lfs_batch` signed (the client sends no token):
        stored as a blob only if its size and sha256 are those the link was made for."""
        repo_id = f"{request.path_params['namespace']}/{request.path_params['name']}"
        oid = request.path_params["oid"]
        size = self._signed_size(request, repo_id, oid)
        with self._upload_slot():
            fd, name = tempfile.mkstemp(prefix=self.store.staging_prefix("lfs"), dir=self.store.root / "tmp")
            os.close(fd)
            target = Path(name)
            try:
                digest = hashlib.sha256()
                received = await self._spool(request, target, self._too_large(f"object {oid[:12]}..."), digest)
                if received != size or digest.hexdigest() != oid:
                    raise HTTPError(
                        400,
                        f"object {oid[:12]}...: the upload ({received} bytes, sha256 "
                        f"{digest.hexdigest()[:12]}...) is not the object announced ({size} bytes, "
                        f"sha256 {oid[:12]}...); nothing was stored",
                    )
                await run_in_threadpool(self.store.registry.blob_store.adopt, target, oid)
            finally:
                target.unlink(missing_ok=True)
        return Response(status_code=200)

    @contextlib.contextmanager
    def _upload_slot(self) -> Iterator[None]:
        """One of ``max_concurrent_uploads`` slots for receiving a body; 429 when all are taken
        (run on the event loop, so the count needs no lock)."""
        if self.uploads >= self.max_concurrent_uploads:
            raise HTTPError(
                429,
                f"{self.uploads} uploads are in progress, this server's limit "
                f"(ahl serve --max-concurrent-uploads); retry in a few seconds",
            )
        self.uploads += 1
        try:
            yield
        finally:
            self.uploads -= 1

    async def _spool(self, request: Request, target: Path, too_large: HTTPError, digest: Any = None) -> int:
        """Write the request body to ``target`` (and into ``digest``, a hashlib object, in the
        same pass); raise ``too_large`` (413) past the upload limit, 408 for a stalled or too
        slow body. Returns the body's size. Chunks are small (the server reads 64 KiB at a
        time): hashing and writing one costs well under a millisecond on the loop."""
        received = 0
        with target.open("wb") as out:
            async for chunk in _body(request, self.max_upload_bytes, too_large, self.read_timeout):
                received += len(chunk)
                if digest is not None:
                    digest.update(chunk)
                out.write(chunk)
        return received

    async def commit(self, request: Request) -> Response:
        repo_id = self._write_repo_id(request)
        revision = request.path_params["revision"]
        await run_in_threadpool(self.store.repo, repo_id)  # 404 before reading any body
        with self._upload_slot():
            staging = Path(tempfile.mkdtemp(prefix=self.store.staging_prefix("commit"), dir=self.store.root / "tmp"))
            try:
                await self._spool(
                    request, staging / "body.ndjson", self._too_large("the commit", "; split it into smaller commits")
                )
                header, operations = await run_in_threadpool(
                    parse_commit, staging / "body.ndjson", staging, self.store.blob_path
                )
                title = str(header.get("summary") or "")
                commit = await run_in_threadpool(
                    functools.partial(
                        self.store.commit,
                        repo_id,
                        operations,
                        title=title,
                        parent=header.get("parentCommit"),
                        branch=revision,
                    )
                )
            finally:
                await run_in_threadpool(shutil.rmtree, staging, True)
        url = f"{str(request.base_url).rstrip('/')}/{repo_id}/commit/{commit.id}"
        return JSONResponse({"success": True, "commitOid": commit.id, "commitUrl": url, "commitMessage": title})

    # -- downloads -----------------------------------------------------------------------------

    def _resolve_file(self, request: Request) -> Response:
        repo = self._read_repo(request)
        commit = self.store.resolve(repo, request.path_params["revision"])
        path = request.path_params["path"]
        record = commit.files.get(path)
        if record is None:
            # X-Repo-Commit lets the client cache the miss (docs/hub-protocol.md 4)
            return _error(
                404,
                f"{path} not found in {repo.id} at {commit.id[:12]}",
                EntryNotFoundError.code,
                {"X-Repo-Commit": commit.id},
            )
        blob = self.store.blob_path(record["sha256"])
        if not blob.is_file():
            return _error(500, f"{path} of {repo.id}: its blob is missing from the registry")
        headers = {"X-Repo-Commit": commit.id, "Accept-Ranges": "bytes", "Cache-Control": "no-transform"}
        if self.store.is_lfs(path, record):  # as the Hub: an LFS file's ETag is its sha256, linked
            etag = f'"{record["sha256"]}"'
            headers.update({"ETag": etag, "X-Linked-Etag": etag, "X-Linked-Size": str(record["size"])})
        else:  # a regular file's ETag is its git blob id
            headers["ETag"] = f'"{self.store.git_blob_id(record["sha256"])}"'

        return FileResponse(blob, headers=headers, media_type="application/octet-stream")

    async def resolve(self, request: Request) -> Response:
        return await run_in_threadpool(self._resolve_file, request)

    def _tree(self, request: Request) -> tuple[list[dict[str, Any]], int]:
        """One page of a tree listing and the offset of the next (0: the last page)."""
        repo = self._read_repo(request)
        commit = self.store.resolve(repo, request.path_params["revision"])
        prefix = request.path_params.get("path", "").strip("/")
        recursive = request.query_params.get("recursive", "false").lower() == "true"
        offset = _whole(request.query_params.get("cursor"), 0, "cursor")
        key = (commit.id, prefix, recursive)
        with self.trees_lock:
            entries = self.trees.get(key)
            if entries is not None:
                self.trees.move_to_end(key)
        if entries is None:
            entries = _tree_entries(commit.files, prefix, recursive, self._file_entry)
            if prefix and not entries:
                raise EntryNotFoundError(f"folder {prefix!r} not found in {repo.id} at {commit.id[:12]}")
            with self.trees_lock:
                self.trees[key] = entries
                while len(self.trees) > 16:
                    self.trees.popitem(last=False)
        page = entries[offset : offset + PAGE_SIZE]
        return page, offset + PAGE_SIZE if offset + PAGE_SIZE < len(entries) else 0

    async def tree(self, request: Request) -> Response:
        page, following = await run_in_threadpool(self._tree, request)
        return JSONResponse(page, headers=_next_link(request, following))

    # -- refs and tags -------------------------------------------------------------------------

    def _refs(self, request: Request) -> dict[str, Any]:
        refs = self.store.refs(self._read_repo(request))
        data: dict[str, Any] = {
            "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in refs.branches],
            "converts": [],
            "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c} for n, c in refs.tags],
        }
        if request.query_params.get("include_prs"):
            data["pullRequests"] = []
        return data

    async def list_refs(self, request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self._refs, request))

    def _commits(self, request: Request) -> tuple[list[dict[str, Any]], int]:
        """One page of a revision's history, newest first, and the offset of the next (0: last)."""
        repo = self._read_repo(request)
        offset = _whole(request.query_params.get("cursor"), 0, "cursor")
        commits = self.store.commits(repo, request.path_params["revision"])
        page: list[dict[str, Any]] = [
            {"id": c.id, "title": c.title, "message": "", "date": c.created_at, "authors": [{"user": repo.namespace}]}
            for c in commits[offset : offset + PAGE_SIZE]
        ]
        if "formatted" in request.query_params.getlist("expand[]"):  # the Hub's HTML renderings
            for item in page:
                item["formatted"] = {"title": html.escape(str(item["title"])), "message": ""}
        return page, offset + PAGE_SIZE if offset + PAGE_SIZE < len(commits) else 0

    async def list_commits(self, request: Request) -> Response:
        page, following = await run_in_threadpool(self._commits, request)
        return JSONResponse(page, headers=_next_link(request, following))

    async def paths_info(self, request: Request) -> Response:
        """The tree entries of the files and folders named in the form (or JSON) body's ``paths``
        at a revision; paths that do not exist are left out, as the Hub does."""
        body = bytearray()
        async for chunk in _body(request, MAX_LIST_JSON_BYTES, _too_big(MAX_LIST_JSON_BYTES), self.read_timeout):
            body += chunk
        if request.headers.get("content-type", "").startswith("application/json"):
            paths = _parse_json(bytes(body)).get("paths")
        else:
            paths = parse_qs(body.decode("utf-8", "replace")).get("paths")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise RefError("paths-info needs one or more 'paths' (form fields or a JSON list)")
        if len(paths) > MAX_COMMIT_FILES:
            raise RefError(f"paths-info of {len(paths)} paths; at most {MAX_COMMIT_FILES} a request")

        def answer() -> list[dict[str, Any]]:
            repo = self._read_repo(request)
            files = self.store.resolve(repo, request.path_params["revision"]).files
            wanted = {p.strip("/") for p in paths}
            return [e for e in _tree_entries(files, "", True, self._file_entry) if e["path"] in wanted]

        return JSONResponse(await run_in_threadpool(answer))

    async def delete_repo(self, request: Request) -> Response:
        """``DELETE /api/repos/delete``: the repository, its commits and the versions tagged in
        it; 409 while another repository's fusion locks one of its versions."""
        user = self._writer(request)
        body = await _json_body(request)
        if body.get("type") not in (None, "model"):
            raise RefError(f"ahl serve holds model repositories only, not {body.get('type')!r}")
        namespace, name = body.get("organization") or user, body.get("name")
        if not isinstance(namespace, str) or not isinstance(name, str):
            raise RefError("delete needs a string 'name' (and optionally 'organization')")
        self._writer(request, namespace)
        await run_in_threadpool(self.store.delete_repo, check_repo_id(namespace, name))
        return JSONResponse({"success": True})

    async def repo_settings(self, request: Request) -> Response:
        """``PUT .../settings``: ``visibility`` (``private``/``public``) or ``private``; gating is not kept."""
        repo_id = self._write_repo_id(request)
        body = await _json_body(request)
        if body.get("gated") not in (None, False):
            raise RefError("ahl serve does not gate repositories; make it private instead")
        visibility = _visibility(body)
        if visibility is None:
            if "gated" in body:  # gated: false, what the repository is already
                return JSONResponse({"success": True})
            raise RefError('settings take {"visibility": "private" or "public"}')
        await run_in_threadpool(self.store.set_private, repo_id, visibility == "private")
        return JSONResponse({"success": True})

    async def create_branch(self, request: Request) -> Response:
        repo_id = self._write_repo_id(request)
        body = await _json_body(request)
        start = body.get("startingPoint")
        if start is not None and not isinstance(start, str):
            raise RefError("'startingPoint' must be a revision (a branch, tag or commit id)")
        try:
            await run_in_threadpool(self.store.create_branch, repo_id, request.path_params["branch"], start)
        except AlreadyExistsError as exc:
            return _error(409, str(exc))
        return JSONResponse({"success": True})

    async def delete_branch(self, request: Request) -> Response:
        repo_id = self._write_repo_id(request)
        await run_in_threadpool(self.store.delete_branch, repo_id, request.path_params["branch"])
        return JSONResponse({"success": True})

    async def auth_check(self, request: Request) -> Response:
        """``auth_check``: 200 when the caller may read the repository (``/write``: write to it),
        else the refusal a read or write would get (404 ``RepoNotFound``, 401, 403)."""
        if request.url.path.endswith("/write"):
            repo_id = self._write_repo_id(request)
            await run_in_threadpool(self.store.repo, repo_id)
        else:
            await run_in_threadpool(self._read_repo, request)
        return JSONResponse({"success": True})

    async def create_tag(self, request: Request) -> Response:
        repo_id = self._write_repo_id(request)
        body = await _json_body(request)
        tag = body.get("tag")
        if not isinstance(tag, str):
            raise RefError('create tag needs {"tag": "vX.Y.Z"}')
        await run_in_threadpool(self.store.create_tag, repo_id, tag, request.path_params["revision"])
        return JSONResponse({"success": True, "tag": tag})

    async def delete_tag(self, request: Request) -> Response:
        repo_id = self._write_repo_id(request)
        tag = request.path_params["revision"]
        refs = await run_in_threadpool(lambda: self.store.refs(self.store.repo(repo_id)))
        if tag not in dict(refs.tags):
            raise RevisionNotFoundError(f"tag {tag!r} not found in {repo_id}")
        raise RefError(
            f"version tags are permanent (versions are immutable); to hide {tag}, tag its commit {tag}-yanked"
        )

    async def whoami(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            raise HTTPError(401, "Invalid user token.")
        return JSONResponse(
            {
                "type": "user",
                "id": user,
                "name": user,
                "fullname": user,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "ahl serve", "role": "write"}},
            }
        )


def create_app(
    root: Path | str,
    *,
    tokens: dict[str, str],
    private: bool = False,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    upload_link_seconds: int = UPLOAD_LINK_SECONDS,
    max_concurrent_uploads: int = DEFAULT_MAX_CONCURRENT_UPLOADS,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    store: RepoStore | None = None,
) -> ASGIApp:
    """The ``ahl serve`` ASGI application over the registry directory ``root``.

    ``tokens`` maps each bearer token to its user (the namespace it may write);
    ``upload_link_seconds`` is how long the LFS upload links it signs stay valid; the other
    options are the limits of SPEC 14.7. ``store``: one opened already (its start-up repairs done).
    """
    server = _Server(
        store or RepoStore(root),
        tokens,
        private,
        max_upload_bytes,
        upload_link_seconds,
        max_concurrent_uploads,
        read_timeout,
    )
    repo = "/{namespace}/{name}"
    api = f"/api/models{repo}"
    routes = [
        Route("/api/whoami-v2", _endpoint(server.whoami), methods=["GET"]),
        Route("/api/repos/create", _endpoint(server.create_repo), methods=["POST"]),
        Route("/api/repos/delete", _endpoint(server.delete_repo), methods=["DELETE"]),
        Route("/api/validate-yaml", _endpoint(server.validate_yaml), methods=["POST"]),
        Route("/api/models", _endpoint(server.list_models), methods=["GET"]),
        Route(SEARCH_LIKE_PATH, _endpoint(server.search_like), methods=["POST"]),
        Route(api, _endpoint(server.model_info), methods=["GET"]),
        Route(f"{api}/revision/{{revision:path}}", _endpoint(server.model_info), methods=["GET"]),
        Route(f"{api}/preupload/{{revision:path}}", _endpoint(server.preupload), methods=["POST"]),
        Route(f"{api}/commit/{{revision:path}}", _endpoint(server.commit), methods=["POST"]),
        Route(f"{repo}.git/info/lfs/objects/batch", _endpoint(server.lfs_batch), methods=["POST"]),
        Route(f"{repo}.git/info/lfs/objects/{{oid}}", _endpoint(server.lfs_upload), methods=["PUT"]),
        Route(f"{api}/tree/{{revision}}", _endpoint(server.tree), methods=["GET"]),
        Route(f"{api}/tree/{{revision}}/{{path:path}}", _endpoint(server.tree), methods=["GET"]),
        Route(f"{api}/refs", _endpoint(server.list_refs), methods=["GET"]),
        Route(f"{api}/commits/{{revision:path}}", _endpoint(server.list_commits), methods=["GET"]),
        Route(f"{api}/paths-info/{{revision:path}}", _endpoint(server.paths_info), methods=["POST"]),
        Route(f"{api}/settings", _endpoint(server.repo_settings), methods=["PUT"]),
        Route(f"{api}/auth-check", _endpoint(server.auth_check), methods=["GET"]),
        Route(f"{api}/auth-check/write", _endpoint(server.auth_check), methods=["GET"]),
        Route(f"{api}/branch/{{branch}}", _endpoint(server.create_branch), methods=["POST"]),
        Route(f"{api}/branch/{{branch}}", _endpoint(server.delete_branch), methods=["DELETE"]),
        Route(f"{api}/tag/{{revision:path}}", _endpoint(server.create_tag), methods=["POST"]),
        Route(f"{api}/tag/{{revision:path}}", _endpoint(server.delete_tag), methods=["DELETE"]),
        Route(f"{repo}/resolve/{{revision}}/{{path:path}}", _endpoint(server.resolve), methods=["GET", "HEAD"]),
    ]

    from .pages import catalog_routes  # here: only a serving process loads the templates

    routes += catalog_routes(server)  # after the API: the entry page's /{namespace}/{name} matches widely

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _error(status, exc.detail if isinstance(exc, HTTPException) else "internal error")

    return _CleanURLs(Starlette(routes=routes, exception_handlers={HTTPException: http_error}))


class _CleanURLs:
    """ASGI middleware: 400 for a URL whose path or query holds a NUL or another control
    character (decoded), before any route sees it: such a name can never be valid, and
    file-system calls would raise on it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope.get("path", "")
            query = scope.get("query_string", b"").decode("latin-1")
            if _CONTROL.search(path) or _CONTROL.search(unquote(query)):
                response = _error(
                    400, "the URL holds a NUL or another control character; no name can hold one", "BadRequest"
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _whole(value: str | None, default: int, what: str) -> int:
    """A non-negative whole-number query parameter (``limit``, ``cursor``); 400 otherwise."""
    if value is None or value == "":
        return default
    if not value.isdigit() or len(value) > 18 or int(value) > MAX_CURSOR:
        raise RefError(f"{what} must be a whole number from 0 to {MAX_CURSOR}, not {value[:24]!r}")
    return int(value)


def _visibility(body: dict[str, Any]) -> str | None:
    """``private`` or ``public`` from a body's ``visibility`` (huggingface_hub 1.x on) or its
    older ``private`` flag; None when neither is given; 400 for another value."""
    visibility, private = body.get("visibility"), body.get("private")
    if visibility is None and private is not None:
        if not isinstance(private, bool):
            raise RefError("'private' must be true or false")
        visibility = "private" if private else "public"
    if visibility not in (None, "private", "public"):
        raise RefError(f"visibility must be 'private' or 'public', not {str(visibility)[:20]!r}")
    return visibility


def _next_link(request: Request, following: int) -> dict[str, str]:
    """The ``Link: rel="next"`` header of a paged answer whose next page starts at ``following`` (0: none)."""
    if not following:
        return {}
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"] + [("cursor", str(following))]
    return {"Link": f'<{request.url.replace(query=urlencode(query))}>; rel="next"'}


def _entry_of(row: dict[str, Any]) -> tuple[str, str, str] | None:
    latest = row.get("ahlEntry")
    return (latest["base"], latest["task"], latest["name"]) if isinstance(latest, dict) else None


def _tree_entries(
    files: dict[str, dict[str, Any]],
    prefix: str,
    recursive: bool,
    file_entry: Callable[[str, dict[str, Any]], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Tree entries under ``prefix`` (one level, or all with ``recursive``), sorted by path;
    ``file_entry`` makes a file's.

    A folder's ``oid`` hashes the (path, sha256) digests of every file under it, each file's
    digest computed once: the cost is files x depth small updates, bounded by the path limits.
    """
    start = prefix.count("/") + 1 if prefix else 0
    under = {p: r for p, r in files.items() if not prefix or p.startswith(prefix + "/")}
    folders: dict[str, Any] = {}
    for path in sorted(under):
        line = hashlib.sha1(f"{path} {under[path]['sha256']}\n".encode()).digest()
        cuts = [i for i, char in enumerate(path) if char == "/"][start:]
        for cut in cuts if recursive else cuts[:1]:
            folders.setdefault(path[:cut], hashlib.sha1()).update(line)
    entries = []
    for path in sorted(set(folders) | {p for p in under if recursive or p.count("/") == start}):
        if path in folders:
            entries.append({"type": "directory", "path": path, "size": 0, "oid": folders[path].hexdigest()})
        else:
            entries.append(file_entry(path, under[path]))
    return entries


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for request headers: a connection that has
    not sent a whole request head within ``HEADER_TIMEOUT`` seconds of opening (or of its last
    response) is closed, so a slow-loris client holds no connection for long."""

    HEADER_TIMEOUT = DEFAULT_READ_TIMEOUT

    # uvicorn's protocol narrows asyncio's BaseTransport parameter to Transport itself.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        waiting_for = self.cycle  # a new request replaces the cycle
        self.loop.call_later(self.HEADER_TIMEOUT, self._headers_late, waiting_for)

    def _headers_late(self, waiting_for: Any) -> None:
        if self.cycle is waiting_for and not self.transport.is_closing():
            self.transport.close()


def registry_url(host: str, port: int) -> str:
    """The URL clients use for a server bound to ``host:port``."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
