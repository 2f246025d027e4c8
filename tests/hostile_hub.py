"""A deliberately malicious Hub-compatible server on 127.0.0.1, for client tests.

It answers the requests this project's client and ``huggingface_hub`` make to read a model
repository (refs, tree, revision info with file metadata, ``resolve`` with HEAD, GET and
``Range``) from files held in memory, honestly by default. A test then poisons any answer:
replace a file's body or a JSON answer, add or override headers, lie in ``Content-Length``,
stream a huge body, or trickle one byte at a time. ``sent`` counts the body bytes it wrote
per path, so a test can show that a client stopped reading early.

A real HTTP server (the standard library's), not a mock: the client under test speaks to it over
a socket exactly as it would to any server.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from .conftest import serve_in_thread

COMMIT = "c0ffee" + "0" * 34  # 40 hex, what the Hub's commit ids look like


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    """One repository: files at one commit, tagged ``tags``."""

    files: dict[str, bytes]
    commit: str = COMMIT
    tags: tuple[str, ...] = ("v1.0.0",)
    lfs: bool = True  # present files as LFS (sha256 known), as ahl serve and the Hub do for weights
    model_tags: tuple[str, ...] = ()  # the tags its row in the model listing shows


@dataclass
class Poison:
    """How to lie. Keys of the per-path maps are ``"<repo>/<path>"`` for file bodies,
    ``"<repo>:refs"``, ``"<repo>:tree"``, ``"<repo>:info"`` for the JSON answers and ``"listing"``
    for ``/api/models`` (a ``Link`` header in ``headers`` that points back at the same listing
    makes it endless)."""

    bodies: dict[str, bytes] = field(default_factory=dict)  # replace a body
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # add/override headers
    huge: dict[str, int] = field(default_factory=dict)  # stream this many bytes, no Content-Length
    trickle: dict[str, float] = field(default_factory=dict)  # seconds between single bytes
    status: dict[str, int] = field(default_factory=dict)  # answer with this status instead
    stall: dict[str, float] = field(default_factory=dict)  # seconds of silence after the headers
    info: Callable[[dict[str, Any]], Any] | None = None  # rewrite the revision info JSON


class HostileHub:
    """The server; ``url`` once started. Use as a context manager (see :func:`hostile_hub`)."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.poison = Poison()
        self.sent: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str | None] = []  # the Authorization header of each request
        self.page_size = 1000  # listing rows and tree entries per page, as on the Hub
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                hub._handle(self, body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                hub._handle(self, body=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HostileHub:
        serve_in_thread(self._server)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, repo_id: str, files: dict[str, bytes] | Path, **kwargs: Any) -> Repo:
        """Serve ``files`` (a dict, or every file under a directory) as repository ``repo_id``."""
        if isinstance(files, Path):
            files = {p.relative_to(files).as_posix(): p.read_bytes() for p in sorted(files.rglob("*")) if p.is_file()}
        self.repos[repo_id] = repo = Repo(dict(files), **kwargs)
        return repo

    # -- answers ------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, *, body: bool) -> None:
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        self.requests.append((handler.command, handler.path))
        self.authorizations.append(handler.headers.get("Authorization"))
        api = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/(refs|tree|revision)(?:/([^/]+))?(?:/(.*))?)?", path)
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if path == "/api/models":
            rows = [{"id": repo_id, "tags": list(repo.model_tags)} for repo_id, repo in sorted(self.repos.items())]
            return self._page(handler, rows, "listing")
        if api and api.group(1) in self.repos:
            repo_id, kind = api.group(1), api.group(2) or "revision"
            repo = self.repos[repo_id]
            if kind == "refs":
                data: Any = {
                    "branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.commit}],
                    "converts": [],
                    "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": repo.commit} for t in repo.tags],
                }
            elif kind == "tree":
                return self._page(
                    handler,
                    [
                        {"type": "file", "path": p, "size": len(b), "oid": git_blob_id(b)}
                        for p, b in sorted(repo.files.items())
                    ],
                    f"{repo_id}:tree",
                )
            else:
                data = {
                    "id": repo_id,
                    "sha": repo.commit,
                    "siblings": [self._sibling(repo, p, b) for p, b in sorted(repo.files.items())],
                }
                if self.poison.info is not None:
                    data = self.poison.info(data)
            return self._json(handler, data, f"{repo_id}:{kind if kind != 'revision' else 'info'}")
        if resolve and resolve.group(1) in self.repos:
            repo = self.repos[resolve.group(1)]
            name = resolve.group(3)
            if name in repo.files:
                return self._file(handler, resolve.group(1), repo, name, body=body)
        return self._send(
            handler,
            404,
            b'{"error": "not found"}',
            {"Content-Type": "application/json", "X-Error-Code": "RepoNotFound"},
            "404",
        )

    def _sibling(self, repo: Repo, path: str, data: bytes) -> dict[str, Any]:
        sibling: dict[str, Any] = {"rfilename": path, "size": len(data), "blobId": git_blob_id(data)}
        if repo.lfs:
            sibling["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
        return sibling

    def _json(
        self, handler: BaseHTTPRequestHandler, data: Any, key: str, headers: dict[str, str] | None = None
    ) -> None:
        raw = self.poison.bodies.get(key, json.dumps(data).encode())
        self._send(handler, 200, raw, {"Content-Type": "application/json", **(headers or {})}, key)

    def _page(self, handler: BaseHTTPRequestHandler, rows: list[Any], key: str) -> None:
        """One page of ``rows`` from the ``cursor`` query parameter on, with the Hub's ``Link``
        header to the next page while there is one."""
        query = parse_qs(urlsplit(handler.path).query)
        cursor = int(query.pop("cursor", ["0"])[0])
        headers = {}
        if cursor + self.page_size < len(rows):
            following = urlencode(
                [*((k, v) for k, vs in query.items() for v in vs), ("cursor", cursor + self.page_size)]
            )
            headers["Link"] = f'<{self.url}{urlsplit(handler.path).path}?{following}>; rel="next"'
        self._json(handler, rows[cursor : cursor + self.page_size], key, headers)

    def _file(self, handler: BaseHTTPRequestHandler, repo_id: str, repo: Repo, name: str, *, body: bool) -> None:
        key = f"{repo_id}/{name}"
        data = self.poison.bodies.get(key, repo.files[name])
        sha256 = hashlib.sha256(repo.files[name]).hexdigest()
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": repo.commit,
            "ETag": f'"{sha256 if repo.lfs else git_blob_id(data)}"',
            "Accept-Ranges": "bytes",
        }
        if repo.lfs:
            headers.update({"X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(repo.files[name]))})
        status = 200
        match = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range") or "")
        if match and key not in self.poison.bodies:
            start = int(match.group(1))
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            data, status = data[start:], 206
        self._send(handler, status, data, headers, key, body=body)

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        data: bytes,
        headers: dict[str, str],
        key: str,
        *,
        body: bool = True,
    ) -> None:
        status = self.poison.status.get(key, status)
        headers = {**headers, "Content-Length": str(len(data)), **self.poison.headers.get(key, {})}
        huge = self.poison.huge.get(key)
        if huge is not None:
            headers.pop("Content-Length", None)
            headers["Connection"] = "close"  # the body ends when the connection does
        try:
            handler.send_response(status)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            if not body:
                return
            time.sleep(self.poison.stall.get(key, 0.0))
            for chunk in self._chunks(data, key, huge):
                handler.wfile.write(chunk)
                handler.wfile.flush()
                self.sent[key] = self.sent.get(key, 0) + len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what a bounded client does
        finally:
            if huge is not None or "Content-Length" in self.poison.headers.get(key, {}):
                handler.close_connection = True

    def _chunks(self, data: bytes, key: str, huge: int | None) -> Iterator[bytes]:
        if huge is not None:
            block = b"{" + b" " * ((1 << 16) - 1)
            for _ in range(huge // len(block)):
                yield block
            return
        delay = self.poison.trickle.get(key)
        if delay is None:
            yield data
            return
        for i in range(len(data)):
            time.sleep(delay)
            yield data[i : i + 1]
