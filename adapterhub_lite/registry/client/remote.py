"""Remote registries: the Hugging Face Hub, or ``ahl serve``, reached through ``huggingface_hub``.

One entry is one model repository, one version one git tag (``registry/SPEC.md`` section 14).
Every download lands in the :class:`~adapterhub_lite.registry.client.cache.DownloadCache`, verified
against the sha256 its metadata records before it becomes visible; pulling an exact version the
cache holds makes no request at all. Pushes to the Hub go over Xet, as ``huggingface_hub`` does;
pushes to any other server upload large files raw with the LFS basic transfer (section 14.6).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from ...artifact import (
    FUSION_ADAPTERS_DIR,
    METADATA_FILES,
    Artifact,
    artifact_files,
    check_file,
    check_metadata,
    check_writable,
    fusion_adapters,
    read_artifact,
    verify_files,
)
from ...base import BaseFingerprint
from ...constants import (
    HF_ENDPOINT,
    HF_ENDPOINT_ENV,
    LFS_TRANSFER_HEADER,
    SEARCH_LIKE_PATH,
)
from ...errors import (
    AhlError,
    ArtifactError,
    ConfigError,
    IntegrityError,
    NotFoundError,
    RefError,
    RemoteError,
    UnreachableError,
    VersionConflictError,
)
from ...files import replacing, staged_directory
from ...network import offline, transport_errors
from ...task_embedding import TaskEmbedding
from ..format import boundary
from ..format.boundary import (
    MAX_METADATA_BYTES,
    check_commit,
    check_content_length,
    check_digest,
    check_file_record,
    check_files,
    check_ref,
    check_repo,
    merge_files,
    parse_json,
    read_bounded,
)
from ..format.manifest import Entry, all_yanked, next_version, summarize
from ..format.refs import Ref, base_key, check_segment, check_version, repo_slug, version_key
from ..format.tags import listing_filters
from .cache import Download, DownloadCache
from .protocol import Progress
from .tokens import token_and_origin

if TYPE_CHECKING:
    from huggingface_hub import CommitOperationAdd

logger = logging.getLogger(__name__)
HUB_HOSTS = ("huggingface.co", "hf.co")  # and their subdomains: servers that speak Xet
# Endpoints that answered in this process (their listings need no fail-fast probe first), and
# whether their listing carries ``ahlEntry`` (ahl serve's extensions, SPEC 14.6); None: unknown yet.
_REACHED: dict[str, bool | None] = {}


# where a token passed to the client came from, for a refusal's message (see token_and_origin)
TOKEN_GIVEN = "the token given"


def is_remote(registry: object) -> bool:
    """Whether a ``--registry`` value names a remote (URL or ``hf://``) rather than a directory."""
    return isinstance(registry, str) and re.match(r"(https?|hf)://", registry) is not None


def parse_remote(url: str) -> tuple[str, str | None]:
    """``(endpoint, namespace)`` of a remote registry value (SPEC 14.1).

    Raises:
        ConfigError: not a URL this client understands.
    """
    if url.startswith("hf://"):
        endpoint = (os.environ.get(HF_ENDPOINT_ENV) or HF_ENDPOINT).rstrip("/")
        namespace = url.removeprefix("hf://").strip("/") or None
    else:
        parts = urlsplit(url)
        if not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"registry URL {url!r} is not of the form http(s)://HOST[:PORT][/NAMESPACE]")
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) > 1:
            raise ConfigError(f"registry URL {url!r} has more than one path segment; the one segment is a namespace")
        endpoint = f"{parts.scheme}://{parts.netloc}"
        namespace = segments[0] if segments else None
    if namespace is not None:
        check_segment(namespace, "registry namespace")
    return endpoint, namespace


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _reason(exc: BaseException) -> str:
    """What a server said when it refused a request, whole and on one line: its status, then its
    own reason (the Hub's ``X-Error-Message`` header or JSON ``error`` field, which
    ``huggingface_hub`` collects as ``server_message``), else the client's first line."""
    status = _status(exc)
    response = getattr(exc, "response", None)
    phrase = getattr(response, "reason_phrase", "") or ""
    said = getattr(exc, "server_message", None) or ""
    if not said:
        said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    said = " ".join(str(said).split())[:500]  # one line, whatever the server sent
    return f"{status} {phrase}: {said}" if status else said


@contextmanager
def _streaming(url: str, headers: dict[str, str], json_body: Any = None) -> Iterator[tuple[Any, Iterator[bytes]]]:
    """GET ``url`` (POST ``json_body`` when given) through ``huggingface_hub``'s session, yielding
    the response and its body as it arrives (closed on the way out): nothing is read before the
    caller decides to."""
    from huggingface_hub.utils import get_session

    session: Any = get_session()  # an httpx Client (huggingface_hub >= 1.0) or a requests Session
    timeout = boundary.STALL_TIMEOUT_S  # per read: a stalled server fails, a slow large file does not
    method = "GET" if json_body is None else "POST"
    if hasattr(session, "stream"):  # httpx (huggingface_hub >= 1.0)
        with session.stream(method, url, headers=headers, timeout=timeout, json=json_body) as response:
            # No chunk size: httpx would hold back up to that much, and bytes that reached us
            # before a cut must reach the partial file, so that the next try resumes after them.
            yield response, response.iter_bytes()
    else:  # requests (huggingface_hub < 1.0)
        response = session.request(method, url, headers=headers, stream=True, timeout=timeout, json=json_body)
        try:
            yield response, response.iter_content(1 << 16)
        finally:
            response.close()


def _raised_by_client(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside the HTTP client or a JSON parser (reading what a server
    sent) rather than in this project's code."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename if tb is not None else ""
    return any(f"{os.sep}{package}{os.sep}" in where for package in ("huggingface_hub", "httpx", "httpx2", "json"))


def is_hub(endpoint: str) -> bool:
    """Whether an endpoint is the Hugging Face Hub, which takes uploads over Xet."""
    host = (urlsplit(endpoint).hostname or "").lower()
    return any(host == name or host.endswith("." + name) for name in HUB_HOSTS)


class _XetSwitch:
    """Keeps Xet off in ``huggingface_hub`` while at least one upload needs the LFS basic transfer.

    The client has no per-call option: it reads the module global ``HF_HUB_DISABLE_XET`` when
    it uploads. So the switch is process-wide and counted: concurrent pushes share it, the first
    turns Xet off and the last restores the value it found. Other uploads this process makes
    meanwhile also go over LFS, which the Hub takes as well.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved = False

    @contextmanager
    def off(self) -> Iterator[None]:
        from huggingface_hub import constants

        with self._lock:
            if self._users == 0:
                self._saved = constants.HF_HUB_DISABLE_XET
                constants.HF_HUB_DISABLE_XET = True
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    constants.HF_HUB_DISABLE_XET = self._saved


_XET = _XetSwitch()


@contextmanager
def _verifying(artifact: Artifact) -> Iterator[Callable[[], None]]:
    """Check the files ``artifact``'s metadata lists against their records in a thread while the
    block talks to the server (a fusion's adapter copies were checked by their own pushes, which
    precede it). The block calls the function it gets before it commits anything; the check is
    awaited on the way out as well, so a damaged file is the error reported even where the upload
    failed first (a server refuses an object whose sha256 is not its oid)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        check = pool.submit(verify_files, artifact)
        try:
            yield check.result
        finally:
            check.result()


def _additions(artifact: Artifact) -> list[CommitOperationAdd]:
    """One addition per file of an artifact, each given the sha256 its metadata records: the LFS
    batch request names files by sha256, which the client would otherwise compute by reading
    every large file once more (and a file that does not match is refused by the server, or by
    the check that runs meanwhile)."""
    from huggingface_hub import CommitOperationAdd

    additions = []
    for name, record in artifact_files(artifact).items():
        addition = CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(artifact.path / name))
        if record is not None:
            addition.upload_info.sha256 = bytes.fromhex(record["sha256"])
        additions.append(addition)
    return additions


class RemoteRegistry:
    """A registry on a Hub-compatible server, with the verbs of
    :class:`~adapterhub_lite.registry.client.local.LocalRegistry`.

    Example:
        >>> registry = RemoteRegistry("http://127.0.0.1:8765")
        >>> registry.push("trec-adapter", version="1.0.0")
        >>> registry.pull(parse_ref("trec/trec@1.0.0"), Path("pulled"))
    """

    def __init__(self, url: str, *, token: str | None = None, cache: DownloadCache | None = None) -> None:
        from huggingface_hub import HfApi  # imported here: local registries never need it

        self.url = url
        self.endpoint, self.namespace = parse_remote(url)
        self.token, self._token_origin = (token, TOKEN_GIVEN) if token else token_and_origin(self.endpoint)
        # token=False, not None: never send the user's stored Hugging Face token to a server
        # they did not log in to (huggingface_hub would attach it to any endpoint).
        self.api = HfApi(endpoint=self.endpoint, token=self.token or False)
        # Commits to servers other than the Hub are uploaded with Xet off (see _uploading), by
        # a client whose requests say so: ahl serve then answers "lfs" for large files.
        self._lfs_api = (
            None
            if is_hub(self.endpoint)
            else HfApi(endpoint=self.endpoint, token=self.token or False, headers={LFS_TRANSFER_HEADER: "basic"})
        )
        self.cache = cache or DownloadCache()
        netloc = urlsplit(self.endpoint).netloc
        self.key = re.sub(r"[^A-Za-z0-9.-]", "_", netloc) + (f"~{self.namespace}" if self.namespace else "")
        self._errors = transport_errors()
        self._described: dict[tuple[str, str], dict[str, Any]] = {}

    def __str__(self) -> str:
        return self.url

    # -- plumbing -----------------------------------------------------------------------------

    @contextmanager
    def _talking(self, what: str) -> Iterator[None]:
        """Turn the client's exceptions into this project's errors, each one line."""
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

        try:
            yield
        except AhlError:
            raise
        except (RepositoryNotFoundError, RevisionNotFoundError):
            raise NotFoundError(f"{what}: not found on {self.url}") from None
        except HfHubHTTPError as exc:
            status = _status(exc)
            message = _reason(exc)
            if status == 401:
                login = f"run 'ahl login --registry {self.url}' or set AHL_TOKEN"
                if not self.token:
                    raise ConfigError(f"{what}: {self.url} needs a token for this ({message}); {login}") from None
                fix = "check it" if self._token_origin == TOKEN_GIVEN else f"replace it: {login}"
                raise ConfigError(f"{what}: {self.url} refused {self._token_origin} ({message}); {fix}") from None
            if status == 403:
                raise ConfigError(f"{what}: the token may not write there ({message})") from None
            if status == 404:
                raise NotFoundError(f"{what}: not found on {self.url}") from None
            raise RemoteError(f"{what}: {self.url} answered {message}") from None
        except self._errors as exc:
            # a read timeout: the server took the request and then fell silent (SPEC 14.8)
            failed = "got no answer in time from" if "Timeout" in type(exc).__name__ else "cannot reach"
            raise UnreachableError(
                f"{what}: {failed} {self.url} ({type(exc).__name__}); check the URL and that the server runs "
                f"(exact versions in the cache still pull; AHL_OFFLINE=1 resolves from the cache alone)"
            ) from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # huggingface_hub parses the server's JSON into its own types: a body that is not
            # JSON, or JSON of another shape, ends here (HfUriError and HFValidationError are
            # ValueErrors too: a repository id or revision the client refuses). A mistake in
            # this project's own code is not the server's: it stays a traceback.
            if not _raised_by_client(exc):
                raise
            detail = " ".join(str(exc).split())[:200]
            raise RemoteError(
                f"{what}: {self.url} answered something this client cannot read ({type(exc).__name__}: {detail})"
            ) from None

    @contextmanager
    def _uploading(self) -> Iterator[Any]:
        """The client to upload a commit with. The Hub's own (Xet) for the Hub; for any other
        server, one that announces the LFS basic transfer, used with Xet off: ahl serve (and
        any server without a Xet store) takes large files only that way (docs/hub-protocol.md 3)."""
        if self._lfs_api is None:
            yield self.api
            return
        with _XET.off():
            yield self._lfs_api

    def _get_json(self, url: str, what: str, limit: int = boundary.MAX_JSON_BYTES) -> tuple[Any, str | None, int]:
        """One JSON answer the client parses itself, streamed and read at most ``limit`` bytes
        (Content-Length checked first); the next page's URL (``Link: rel="next"``), which must
        be on this server (following it sends the token); and the body's size."""
        from huggingface_hub.utils import hf_raise_for_status

        with _streaming(url, self._headers()) as (response, chunks):
            hf_raise_for_status(response)
            check_content_length(response.headers, limit, what)
            raw = read_bounded(chunks, limit, what)
            following = response.links.get("next", {}).get("url")
        data = parse_json(raw, what)
        if following is not None and urlsplit(following)[:2] != urlsplit(self.endpoint)[:2]:
            raise RemoteError(
                f"{what}: {self.url} pointed the next page at {following[:80]!r}, another server; "
                f"refusing to send it the token"
            )
        return data, following, len(raw)

    def _pages(self, url: str, what: str, keep: Callable[[dict[str, Any]], Any], count: int | None = None) -> list[Any]:
        """``keep(row)`` of each row of a paginated listing (the Hub's ``Link`` pagination), up to
        ``count`` rows: each page bounded, the whole listing at most ``MAX_PAGES`` pages,
        ``MAX_LISTED`` rows and ``MAX_LISTING_BYTES`` (SPEC 14.8), else a RemoteError."""
        kept: list[Any] = []
        following: str | None = url
        pages, budget = 0, boundary.MAX_LISTING_BYTES
        while following and (count is None or len(kept) < count):
            pages += 1
            if pages > boundary.MAX_PAGES:
                raise RemoteError(
                    f"{what}: {self.url} kept sending further pages past {boundary.MAX_PAGES:,}; refusing the listing"
                )
            if budget <= 0:
                raise RemoteError(
                    f"{what}: {self.url} sent over {boundary.MAX_LISTING_BYTES:,} bytes of listing; refusing it"
                )
            page, following, size = self._get_json(following, what, min(boundary.MAX_JSON_BYTES, budget))
            budget -= size
            kept += [keep(row) for row in boundary.check_rows(page, what)]
            if len(kept) > boundary.MAX_LISTED:
                raise RemoteError(f"{what}: {self.url} listed over {boundary.MAX_LISTED:,} rows; refusing the listing")
        return kept if count is None else kept[:count]

    def _probe(self) -> bool | None:
        """Whether the server lists ``ahlEntry`` (None: it lists nothing yet), from one plain
        request that fails at once when the server is down: the client's paginated listing
        would retry a refused connection for ~25 s first."""
        if _REACHED.get(self.endpoint) is None:
            rows, _, _ = self._get_json(f"{self.endpoint}/api/models?limit=1", "list models")
            first = boundary.check_rows(rows, "list models")[:1]
            _REACHED[self.endpoint] = "ahlEntry" in first[0] if first else None
        return _REACHED[self.endpoint]

    def _list_models(self, filters: list[str], count: int | None, **query: str | None) -> list[tuple[str, list[str]]]:
        """``(repository id, tags)`` of the repositories ``GET /api/models`` lists (after the
        probe), ``count`` at most, every row checked (``list_models`` trusted them)."""
        self._probe()
        params = [("filter", f) for f in filters] + [(k, v) for k, v in query.items() if v]
        params += [("limit", str(count))] if count is not None else []
        rows = self._pages(
            f"{self.endpoint}/api/models?{urlencode(params)}",
            "list models",
            lambda row: ("ahlEntry" in row, boundary.check_model_row(row, "list models")),
            count,
        )
        if rows:  # what this listing shows overrides what the probe saw (the server may have changed)
            _REACHED[self.endpoint] = all(extended for extended, _ in rows)
        return [model for _, model in rows]

    def _ahl_listing(self, filters: list[str], name: str | None, sort: str | None, count: int) -> list[Any] | None:
        """ahl serve's listing rows (``id``, ``ahlEntry``) read as plain JSON through the Hub
        client's session; None from any other server. Building the client's ``ModelInfo`` for
        each row (two dates parsed by ``strptime``) costs more than the server's whole answer."""
        if not self._probe():
            return None
        params = [("filter", f) for f in filters] + [("limit", str(count))]
        params += [(k, v) for k, v in (("author", self.namespace), ("search", name)) if v]
        params += [("sort", f"ahl-metric:{sort}")] if sort else []
        rows = self._pages(f"{self.endpoint}/api/models?{urlencode(params)}", "search", lambda row: row, count)
        if not all("ahlEntry" in row for row in rows):
            # Another server now answers at this endpoint (a restart, a reused port): its rows
            # would be dropped as entry-less, so read it by tags, as any Hub.
            _REACHED[self.endpoint] = False
            return None
        return rows

    def _entry_dir(self, ref: Ref) -> str:
        org, _, model = ref.base.rpartition("/")
        return "/".join([org or "_", model, ref.task, ref.name])

    def _cached(self, ref: Ref, version: str) -> dict[str, Any] | None:
        return self.cache.read_version(self.key, self._entry_dir(ref), version)

    def _headers(self) -> dict[str, str]:
        from huggingface_hub.utils import build_hf_headers

        return build_hf_headers(token=self.token or False)

    def _open(self, repo: str, commit: str, path: str, size: int) -> Callable[[int], Download]:
        """An opener for :meth:`DownloadCache.fetch`: GET the file, from an offset with ``Range``.
        A response that declares more bytes than the file's recorded ``size`` is refused before
        its body is read (the cache stops reading at ``size`` anyway)."""
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import hf_raise_for_status

        url = hf_hub_url(repo, path, revision=commit, endpoint=self.endpoint)

        def opener(offset: int) -> Download:
            headers = {**self._headers(), "Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            stack = ExitStack()
            try:
                response, chunks = stack.enter_context(_streaming(url, headers))
                hf_raise_for_status(response)
                check_content_length(response.headers, size, f"{repo}/{path}")
            except BaseException:
                stack.close()
                raise

            def stream() -> Iterator[bytes]:
                with stack:
                    yield from chunks

            return Download(stream(), resumed=response.status_code == 206)

        return opener

    def _fetch(
        self, repo: str, commit: str, path: str, record: dict[str, Any], progress: Callable[[int], None] | None = None
    ) -> bool:
        """One file into the cache, verified; a transfer cut mid-way is resumed (three tries).
        Whether it was downloaded now (see :meth:`DownloadCache.fetch`)."""
        what = f"{repo}/{path}"
        for attempt in range(3):
            try:
                with self._talking(what):
                    return self.cache.fetch(
                        record["sha256"],
                        int(record["size"]),
                        self._open(repo, commit, path, int(record["size"])),
                        what=what,
                        progress=progress,
                    )
            except ConfigError:  # unreachable: the partial file stays for the next try
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _read_small(self, repo: str, commit: str, path: str) -> tuple[bytes, str]:
        """A metadata file's bytes and their sha256 (what we learn from them), cached by content."""
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import hf_raise_for_status

        what = f"{repo}/{path}"
        url = hf_hub_url(repo, path, revision=commit, endpoint=self.endpoint)
        with self._talking(what), _streaming(url, self._headers()) as (response, chunks):
            hf_raise_for_status(response)
            # Streamed and bounded: a 100 MB "metadata" body is refused at the cap, never held whole.
            check_content_length(response.headers, MAX_METADATA_BYTES, what)
            data = read_bounded(chunks, MAX_METADATA_BYTES, what)
        return data, self.cache.store_bytes(data)

    # -- snapshots of other repositories (imports) ---------------------------------------------

    def download_files(self, repo: str, names: Iterable[str], *, revision: str | None = None) -> tuple[Path, str]:
        """Download the files named ``names`` (those the repository has) of one revision of any
        model repository, through the cache and verified: ``(directory, commit)``.

        This replaces ``huggingface_hub.snapshot_download`` for imports: its cache paths are
        built from what the server sends (an ETag), ours only from checked values. The
        revision's file list is read bounded; a file is fetched only when it is one of
        ``names`` and the server gave its sha256 (LFS) or git blob id, and it is kept only when
        its bytes match. The directory is ``CACHE/imports/<endpoint>/<repo>/<commit>``.

        Raises:
            NotFoundError: no such repository or revision. RemoteError: the server's answer
            breaks a rule. IntegrityError: a file's bytes do not match what the server stated.
        """
        from huggingface_hub import hf_hub_url
        from huggingface_hub.errors import RevisionNotFoundError
        from huggingface_hub.utils import hf_raise_for_status

        names = set(names)
        parts = repo.split("/")
        if not 1 <= len(parts) <= 2:
            raise RefError(f"repository id {repo!r} is not NAME or ORG/NAME")
        for part in parts:
            check_segment(part, "repository id part")
        where = f"{repo}@{revision or 'main'}"
        url = f"{self.endpoint}/api/models/{repo}/revision/{quote(revision or 'main', safe='')}"
        repo_dir = self.cache.root.joinpath("imports", self.key, *(["_"] if len(parts) == 1 else []), *parts)
        # the commit a revision last resolved to, for offline use (named by a hash: a revision is free text)
        last = repo_dir / "refs" / hashlib.sha256((revision or "main").encode()).hexdigest()[:32]
        try:
            if offline():
                raise UnreachableError(f"{where}: offline (AHL_OFFLINE/HF_HUB_OFFLINE), and it was never imported")
            with self._talking(where), _streaming(f"{url}?blobs=true", self._headers()) as (response, chunks):
                hf_raise_for_status(response)
                check_content_length(response.headers, MAX_METADATA_BYTES, where)
                info = parse_json(read_bounded(chunks, MAX_METADATA_BYTES, where), where)
        except NotFoundError as exc:
            if isinstance(exc.__context__, RevisionNotFoundError) and revision:
                raise NotFoundError(f"repository {repo} has no revision {revision!r} on {self.url}") from None
            raise
        except UnreachableError:
            try:  # a copy imported before serves, as huggingface_hub's cache would
                commit: str | None = check_commit(last.read_text(encoding="utf-8").strip(), where)
            except (OSError, RemoteError):
                commit = None
            if commit is None or not (repo_dir / commit).is_dir():
                raise
            return repo_dir / commit, commit
        if not isinstance(info, dict) or not isinstance(info.get("siblings"), list):
            raise RemoteError(f"{where}: {self.url} answered repository information without a file list")
        commit = check_commit(info.get("sha"), where)
        wanted = {}
        for sibling in info["siblings"]:
            name = sibling.get("rfilename") if isinstance(sibling, dict) else None
            if name not in names:
                continue  # never a path: only the names the caller asked for are used
            lfs = sibling.get("lfs")
            if isinstance(lfs, dict):
                wanted[name] = ("sha256", check_file_record(name, lfs, where))
            else:
                blob_id = sibling.get("blobId")
                if not isinstance(blob_id, str) or not re.fullmatch(r"[0-9a-f]{40}", blob_id):
                    raise RemoteError(f"{where}: {name} has no sha256 and no git blob id to check it by")
                wanted[name] = ("git", {"sha1": blob_id})
        target = repo_dir / commit
        files = {}
        for name, (kind, record) in wanted.items():
            if kind == "sha256":
                self._fetch(repo, commit, name, record)
                files[name] = record["sha256"]
                continue
            what = f"{repo}/{name}"
            with (
                self._talking(what),
                _streaming(hf_hub_url(repo, name, revision=commit, endpoint=self.endpoint), self._headers()) as (
                    response,
                    chunks,
                ),
            ):
                hf_raise_for_status(response)
                check_content_length(response.headers, MAX_METADATA_BYTES, what)
                data = read_bounded(chunks, MAX_METADATA_BYTES, what)
            if hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() != record["sha1"]:
                raise IntegrityError(
                    f"{what} arrived damaged (its git blob id differs from the one {self.url} stated); nothing was kept"
                )
            files[name] = self.cache.store_bytes(data)
        with staged_directory(target, name=commit) as staging:
            for name, sha256 in files.items():
                self.cache.copy_out(sha256, staging / name)
        last.parent.mkdir(exist_ok=True)
        with replacing(last) as tmp:
            tmp.write_text(commit, encoding="utf-8")
        return target, commit

    # -- repositories and versions ------------------------------------------------------------

    def whoami(self) -> str:
        """The user the token belongs to (checks the token with the server)."""
        if not self.token:
            raise ConfigError(
                f"{self.url} needs a token for this: run 'ahl login --registry {self.url}' or set AHL_TOKEN"
            )
        with self._talking("whoami"):
            return check_segment(str(self.api.whoami()["name"]), "user name")

    def _namespace_for_push(self) -> str:
        return self.namespace or self.whoami()

    def _repo(self, ref: Ref) -> str:
        """The repository of an entry, found by its ``ahl-entry:`` tag (SPEC 14.4): within the
        registry's namespace when it names one (a repository made with ``hf upload`` need not be
        named by the slug), else across namespaces, where several candidates are refused with
        their list. In a namespace that lists none, the slug's repository (a server that has
        not indexed the tag yet)."""
        tag = f"ahl-entry:{ref.base}/{ref.task}/{ref.name}"
        where = f"look up {ref.base}/{ref.task}/{ref.name}"
        with self._talking(where):
            repos = sorted(check_repo(repo, where) for repo, _ in self._list_models([tag], 20, author=self.namespace))
        if self.namespace:
            repos = [r for r in repos if r.split("/")[0] == self.namespace]  # a server that ignores author=
            return repos[0] if len(repos) == 1 else f"{self.namespace}/{repo_slug(*ref.entry)}"
        if not repos:
            raise NotFoundError(f"{ref.base}/{ref.task}/{ref.name} is not on {self.url} (ahl search lists what is)")
        if len(repos) > 1:
            choices = ", ".join(f"{self.endpoint}/{r.split('/')[0]}" for r in repos)
            raise RefError(
                f"{ref.base}/{ref.task}/{ref.name} is published by several namespaces ({', '.join(repos)}); "
                f"pick one with --registry: {choices}"
            )
        return repos[0]

    def _tags(self, repo: str, *, missing_ok: bool = False) -> tuple[dict[str, str], set[str]]:
        """``({version: commit}, yanked versions)`` from the repository's tags."""
        try:
            with self._talking(repo):
                refs, _, _ = self._get_json(f"{self.endpoint}/api/models/{repo}/refs", f"{repo} refs")
        except NotFoundError:
            if missing_ok:
                return {}, set()
            raise
        versions, yanked = {}, set()
        for name, target in boundary.check_refs(refs, f"{repo} refs"):
            match = re.fullmatch(r"v(\d+\.\d+\.\d+)(-yanked)?", name)
            if match is None:
                continue
            try:
                version = check_version(match.group(1))
            except RefError:
                continue
            if match.group(2):
                yanked.add(version)
            else:
                versions[version] = check_commit(target, f"{repo} tag {name}")
        return versions, yanked & set(versions)

    def _describe(self, ref: Ref, repo: str, version: str, commit: str, yanked: bool) -> dict[str, Any]:
        """The version record of a tagged commit: from the cache when it holds that commit, else
        read from its metadata files (small, no weights). Commits never change, so one read per
        commit is enough."""
        if (repo, commit) not in self._described:
            cached = self._cached(ref, version)
            self._described[repo, commit] = (
                cached
                if cached is not None and cached["commit"] == commit
                else self._read_version(ref, repo, version, commit)
            )
        return {**self._described[repo, commit], "yanked": yanked}

    def _read_version(self, ref: Ref, repo: str, version: str, commit: str) -> dict[str, Any]:
        """Build a version record from the commit's metadata files, every field the server sent
        checked first (``registry/SPEC.md`` 14.8): nothing here writes a file but the metadata
        blobs themselves, which are named by the sha256 of the bytes we received."""
        where = f"{repo}@v{version}"
        with self._talking(where):
            names = set(
                self._pages(
                    f"{self.endpoint}/api/models/{repo}/tree/{commit}",
                    f"{where} tree",
                    lambda row: boundary.check_tree_row(row, f"{where} tree"),
                )
            )
        kind = next((k for k, n in METADATA_FILES.items() if n in names), None)
        if kind is None:
            raise IntegrityError(f"{where} holds no adapter.json or fusion.json; it is not an artifact")
        meta_name = METADATA_FILES[kind]
        metadata, raw, raw_sha = self._read_metadata(repo, commit, meta_name, where)
        key = (base_key(metadata["base"]["model_id"]), metadata["task"], metadata["name"])
        if key != ref.entry:
            raise IntegrityError(f"{where} holds {'/'.join(key)}, not {ref.base}/{ref.task}/{ref.name}")
        # The metadata file's own record comes first and nothing it lists may override it.
        parts = [{meta_name: {"sha256": raw_sha, "size": len(raw)}}, check_files(metadata["files"], where)]
        for record in metadata.get("adapters", []) if kind == "fusion" else []:
            if not isinstance(record, dict):
                raise RemoteError(f"{where}: an entry of 'adapters' is not an object")
            name = record.get("name")
            try:
                if not isinstance(name, str):
                    raise TypeError(name)
                prefix = f"{FUSION_ADAPTERS_DIR}/{check_segment(name, 'adapter name')}/"
            except (RefError, TypeError):
                raise RemoteError(
                    f"{where}: the fusion names the adapter {str(record.get('name'))[:80]!r}, not a valid name"
                ) from None
            digest = check_digest(record.get("digest"), where)
            part_raw, part_sha = self._read_small(repo, commit, f"{prefix}adapter.json")
            if "sha256:" + part_sha != digest:
                raise IntegrityError(
                    f"{where}: adapter {record['name']!r} is not the version the fusion locks ({digest[:19]}...)"
                )
            part_meta = self._parse_metadata(part_raw, f"{where}: {prefix}adapter.json")
            parts += [
                {f"{prefix}adapter.json": {"sha256": part_sha, "size": len(part_raw)}},
                check_files(part_meta["files"], where, prefix=prefix),
            ]
        files = merge_files(parts, where)
        try:
            summary = summarize(metadata)
            if summary["fingerprint"] is not None:
                BaseFingerprint.from_dict(summary["fingerprint"])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise RemoteError(
                f"{where}: {meta_name} is not shaped like artifact metadata ({type(exc).__name__}: {str(exc)[:120]})"
            ) from None
        return {
            "layout": 1,
            "base": ref.base,
            "task": ref.task,
            "name": ref.name,
            "version": version,
            "kind": kind,
            "digest": "sha256:" + raw_sha,
            "files": files,
            "repo": repo,
            "commit": commit,
            "yanked": False,
            "summary": summary,
            "resolved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def _read_metadata(self, repo: str, commit: str, path: str, where: str) -> tuple[dict[str, Any], bytes, str]:
        """A metadata file of a commit, read bounded and checked: ``(metadata, bytes, sha256)``."""
        raw, raw_sha = self._read_small(repo, commit, path)
        return self._parse_metadata(raw, f"{where}: {path}"), raw, raw_sha

    @staticmethod
    def _parse_metadata(raw: bytes, where: str) -> dict[str, Any]:
        """Artifact metadata a server sent: JSON, the fields every artifact has (``check_metadata``),
        and the strings the entry key is made of."""
        metadata = parse_json(raw, where)
        try:
            check_metadata(metadata, where)
        except ArtifactError as exc:
            raise RemoteError(str(exc)) from None
        base = metadata.get("base")
        if not (
            isinstance(base, dict)
            and isinstance(base.get("model_id"), str)
            and isinstance(metadata["task"], str)
            and isinstance(metadata["name"], str)
        ):
            raise RemoteError(f"{where}: base.model_id, task and name must be strings")
        return metadata

    def _entry(self, record: dict[str, Any]) -> Entry:
        ref = Ref(record["base"], record["task"], record["name"], record["version"])
        return Entry(ref, record, bool(record.get("yanked")))

    def _cached_entry(self, ref: Ref) -> Entry:
        """Resolve from version records alone (offline)."""
        records = [
            v.record
            for v in self.cache.cached_versions(self.key, self._entry_dir(ref))
            if self._cached(ref, v.record["version"]) is not None
        ]
        records.sort(key=lambda r: version_key(r["version"]))
        if ref.version:
            records = [r for r in records if r["version"] == ref.version]
        elif ref.digest:
            records = [r for r in records if r["digest"] == ref.digest]
        else:
            records = [r for r in records if not r.get("yanked")]
        if not records:
            raise NotFoundError(f"{ref} is not in the cache, and the client is offline (AHL_OFFLINE/HF_HUB_OFFLINE)")
        return self._entry(records[-1])

    def versions(self, ref: Ref, *, include_yanked: bool = False) -> list[str]:
        """Versions of an entry, oldest first."""
        versions, yanked = self._tags(self._repo(ref), missing_ok=True)
        return sorted((v for v in versions if include_yanked or v not in yanked), key=version_key)

    def resolve(self, ref: Ref) -> Entry:
        """The version a ref means; an exact version the cache holds needs no request."""
        if ref.version and (record := self._cached(ref, ref.version)) is not None:
            return self._entry(record)
        if offline():
            return self._cached_entry(ref)
        try:
            return self._resolve_online(ref)
        except UnreachableError as exc:
            # as huggingface_hub does: what the download cache can answer, it answers
            try:
                entry = self._cached_entry(ref)
            except NotFoundError:
                raise UnreachableError(f"{exc}; {ref} is not in the download cache either") from None
            logger.warning("%s is unreachable; using cached %s", self.url, entry.ref)
            return entry

    def _resolve_online(self, ref: Ref, repo: str | None = None) -> Entry:
        repo = repo or self._repo(ref)
        versions, yanked = self._tags(repo, missing_ok=True)
        ordered = sorted(versions, key=version_key, reverse=True)
        if ref.version:
            candidates = [ref.version] if ref.version in versions else []
        elif ref.digest:
            candidates = ordered
        else:
            candidates = [v for v in ordered if v not in yanked][:1]
        for version in candidates:
            record = self._describe(ref, repo, version, versions[version], version in yanked)
            if ref.digest is None or record["digest"] == ref.digest:
                return self._entry(record)
        if ref.digest:
            raise NotFoundError(f"no version of {ref.base}/{ref.task}/{ref.name} on {self.url} has digest {ref.digest}")
        if not ref.version and ordered:
            raise all_yanked(ref, ordered)
        raise NotFoundError(f"{ref} is not on {self.url} (ahl search lists what is)")

    # -- pull ---------------------------------------------------------------------------------

    def pull(
        self,
        ref: Ref,
        to: Path,
        *,
        base: tuple[str, BaseFingerprint] | None = None,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> Entry:
        """Download a version into directory ``to`` through the cache, verifying every file.

        With ``base`` (its id and fingerprint), a recorded base that differs is refused before
        any weights move. Nothing appears at ``to`` unless every file verified.
        """
        entry = self.resolve(ref)
        if base is not None:
            entry.check_base(*base)
        to = Path(to)
        check_writable(to, overwrite=overwrite)
        # Checked again here: a record may come from the cache rather than from _read_version.
        files = merge_files([check_files(entry.manifest["files"], str(entry.ref))], str(entry.ref))
        missing = {n: r for n, r in files.items() if not self.cache.blob_store.has(r["sha256"])}
        advance = progress(sum(int(r["size"]) for r in missing.values())) if progress and missing else None
        # Blobs downloaded now were hashed as they arrived; those the cache held already may have
        # been damaged on disk since, so only their copies are hashed again (one pass per byte).
        hashed = {
            r["sha256"]
            for n, r in missing.items()
            if self._fetch(entry.manifest["repo"], entry.manifest["commit"], n, r, advance)
        }
        with staged_directory(to) as staging:
            for name, record in files.items():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                self.cache.copy_out(record["sha256"], staging / name)
            try:
                for name, record in files.items():
                    if record["sha256"] not in hashed:
                        check_file(staging / name, record)
            except IntegrityError:
                self.cache.evict_damaged(r["sha256"] for r in files.values() if r["sha256"] not in hashed)
                raise
            # The manifest lists every file, the adapter copies of a fusion included: all checked.
            pulled = read_artifact(staging, verify=False)
            if pulled.digest != entry.digest:
                raise IntegrityError(f"{entry.ref}: pulled metadata does not match the resolved digest")
            if pulled.kind == "fusion":
                fusion_adapters(pulled, verify=False)  # every adapter copy is the locked version
        version = entry.ref.version  # set: a resolved entry is one version
        if version is not None and self._cached(entry.ref, version) != entry.manifest:
            self.cache.write_version(self.key, self._entry_dir(entry.ref), version, entry.manifest)
        return entry

    def verify(self, ref: Ref) -> Entry:
        """Download every file of a version again (bypassing the cache) and check its sha256."""
        entry = self.resolve(ref)
        scratch = DownloadCache(Path(tempfile.mkdtemp(prefix="ahl-verify-")))
        try:
            for name, record in entry.manifest["files"].items():
                with self._talking(f"{entry.manifest['repo']}/{name}"):
                    scratch.fetch(
                        record["sha256"],
                        int(record["size"]),
                        self._open(entry.manifest["repo"], entry.manifest["commit"], name, int(record["size"])),
                        what=f"{entry.ref}: {name}",
                    )
        finally:
            shutil.rmtree(scratch.root, ignore_errors=True)
        return entry

    # -- push and yank ------------------------------------------------------------------------

    def check_push(self) -> None:
        """Every write needs a token: asked before any request (SPEC 14.8)."""
        if not self.token:
            raise ConfigError(
                f"pushing to {self.url} needs a token: run 'ahl login --registry {self.url}' or set AHL_TOKEN"
            )

    def push(self, path: str | Path, *, version: str | None = None) -> Entry:
        """Upload a verified artifact as a new immutable version (a commit, then its tag).

        Every file is checked against its record in the metadata while the upload runs, and the
        commit is made only once all of them matched: each file is read twice (hashed, sent), and
        the two overlap. A fusion's adapters are pushed first, each to its own entry. Identical
        content under an existing version (or, without ``version``, under any version) is an
        idempotent success.

        Raises:
            IntegrityError: a file does not match the metadata (nothing is committed).
            ConfigError: no token (every write needs one), or the server refused it.
            VersionConflictError: the version exists with other content.
        """
        self.check_push()
        artifact = read_artifact(path, verify=False)
        if artifact.kind == "fusion":
            for part in fusion_adapters(artifact, verify=False):
                self.push(part.path)
        with _verifying(artifact) as verified:
            return self._push(artifact, version, verified)

    def _push(self, artifact: Artifact, version: str | None, verified: Callable[[], None]) -> Entry:
        """:meth:`push` of one artifact; ``verified()`` returns once its files are checked."""
        meta = artifact.metadata
        ref = Ref(base_key(meta["base"]["model_id"]), meta["task"], meta["name"])
        repo = f"{self._namespace_for_push()}/{repo_slug(*ref.entry)}"
        versions, _ = self._tags(repo, missing_ok=True)
        digest = artifact.digest
        if version is None:
            for existing in sorted(versions, key=version_key, reverse=True):
                if self._digest_at(ref, repo, existing, versions[existing]) == digest:
                    return self._resolve_online(ref.with_version(existing), repo)
            version = next_version(sorted(versions, key=version_key))
        elif version in versions:
            return self._same_or_conflict(ref, repo, version, versions[version], digest)
        check_version(version)
        operations = _additions(artifact)
        with self._talking(f"push {ref.with_version(version)}"):
            self.api.create_repo(repo, exist_ok=True)
            with self._uploading() as uploader:
                uploader.preupload_lfs_files(repo, additions=operations)  # large files, while they are checked
                verified()  # nothing is committed unless every file matched
                commit = uploader.create_commit(
                    repo, operations=operations, commit_message=f"{ref.base}/{ref.task}/{ref.name} {version}"
                )
        from huggingface_hub.errors import HfHubHTTPError

        with self._talking(f"tag {ref.with_version(version)}"):
            try:
                self.api.create_tag(repo, tag=f"v{version}", revision=commit.oid)
            except HfHubHTTPError as exc:
                if _status(exc) != 409:
                    raise
                # Another client tagged this version first: fine if it holds our content.
                versions, _ = self._tags(repo)
                return self._same_or_conflict(ref, repo, version, versions[version], digest)
        # read back from the repository just tagged, never looked up again: a lookup that failed
        # now would turn a push that succeeded into an error
        return self._resolve_online(ref.with_version(version), repo)

    def _digest_at(self, ref: Ref, repo: str, version: str, commit: str) -> str:
        return str(self._describe(ref, repo, version, commit, False)["digest"])

    def _same_or_conflict(self, ref: Ref, repo: str, version: str, commit: str, digest: str) -> Entry:
        if self._digest_at(ref, repo, version, commit) != digest:
            raise VersionConflictError(
                f"{ref.with_version(version)} already exists on {self.url} with other "
                f"content; versions are immutable: push with another --version"
            )
        return self._resolve_online(ref.with_version(version), repo)

    def yank(self, ref: Ref) -> Entry:
        """Tag ``vX.Y.Z-yanked``: hidden from search and ``latest``, still pullable exactly."""
        from huggingface_hub.errors import HfHubHTTPError

        if not ref.version:
            raise RefError(f"yank needs an exact version, like {ref.base}/{ref.task}/{ref.name}@1.0.0")
        repo = self._repo(ref)
        versions, yanked = self._tags(repo)
        if ref.version not in versions:
            raise NotFoundError(f"{ref} is not on {self.url}")
        if ref.version not in yanked:
            with self._talking(f"yank {ref}"):
                try:
                    self.api.create_tag(repo, tag=f"v{ref.version}-yanked", revision=versions[ref.version])
                except HfHubHTTPError as exc:
                    if _status(exc) != 409:  # 409: yanked by someone else meanwhile
                        raise
        entry = self.resolve(ref)
        record = {**entry.manifest, "yanked": True}
        if self._cached(ref, ref.version) is not None:
            self.cache.write_version(self.key, self._entry_dir(ref), ref.version, record)
        return self._entry(record)

    # -- search -------------------------------------------------------------------------------

    def search(
        self,
        *,
        base: str | None = None,
        task: str | None = None,
        architecture: str | None = None,
        name: str | None = None,
        tag: str | None = None,
        sort: str | None = None,
        limit: int = 50,
    ) -> list[Entry]:
        """Latest non-yanked version of each matching entry, found by the repositories' tags.
        ahl serve answers in one request; other servers (the Hub) in one more per result."""
        if offline():
            raise UnreachableError(
                "search needs the registry, and the client is offline (AHL_OFFLINE/HF_HUB_OFFLINE "
                "is set); 'ahl cache ls' lists the versions the cache holds"
            )
        filters = listing_filters(base=base, task=task, architecture=architecture, tag=tag)
        if sort:
            check_segment(sort, "sort metric")
        with self._talking("search"):
            # a margin over ``limit`` covers repositories whose entry has no released version
            rows = self._ahl_listing(filters, name, sort, limit + 10)
            if rows is not None:  # ahl serve: each row carries its entry's latest version
                entries = [self._listed(row) for row in rows if isinstance(row.get("ahlEntry"), dict)]
                entries = [e for e in entries if not name or name.lower() in e.ref.name.lower()]
            else:
                entries = self._search_by_tags(filters, name, sort, limit)
        if architecture:
            entries = [e for e in entries if e.summary.get("architecture") == architecture]
        return entries[:limit]

    def _listed(self, row: dict[str, Any]) -> Entry:
        """The entry of one ahl serve listing row, its names and digest checked like a ref."""
        record = row["ahlEntry"]
        ref = check_ref(record.get("base"), record.get("task"), record.get("name"), record.get("version"), "search")
        check_digest(record.get("digest"), f"search: {ref}")
        if not isinstance(record.get("summary", {}), dict):
            raise RemoteError(f"search: {ref}: the server's summary is not an object")
        return Entry(ref, {**record, "repo": check_repo(row.get("id"), "search")}, bool(record.get("yanked")))

    def search_like(
        self, embedding: TaskEmbedding, *, base: str | None = None, top: int = 10
    ) -> list[tuple[Entry, float]]:
        """Latest entries ranked by task-embedding similarity, ranked by the server in one
        request (ahl serve's extension, SPEC 14.9), each with its cosine. What the server sends
        is checked: a malformed row fails the whole answer.

        Raises:
            ConfigError: the server does not rank by task embedding (the Hub does not).
        """
        from huggingface_hub.utils import hf_raise_for_status

        body = {"task_embedding": embedding.to_dict(), "top": int(top), "base": base_key(base) if base else None}
        what = "search --like"
        try:
            with (
                self._talking(what),
                _streaming(f"{self.endpoint}{SEARCH_LIKE_PATH}", self._headers(), json_body=body) as (response, chunks),
            ):
                hf_raise_for_status(response)
                check_content_length(response.headers, MAX_METADATA_BYTES, what)
                rows = parse_json(read_bounded(chunks, MAX_METADATA_BYTES, what), what)
        except NotFoundError:
            raise ConfigError(
                f"{self.url} does not rank adapters by task embedding (ahl serve does); rank "
                f"named adapters with 'ahl rank --adapters', or search a local registry"
            ) from None
        if not isinstance(rows, list):
            raise RemoteError(f"{self.url} answered search --like with something that is not a list")
        out = []
        try:
            for row in rows[:top]:
                score = row["score"]
                if not isinstance(score, (int, float)) or isinstance(score, bool) or not -1.001 <= score <= 1.001:
                    raise TypeError("score")
                entry = self._entry({**row["ahlEntry"], "repo": str(row["id"])})
                if not self.namespace or str(row["id"]).startswith(f"{self.namespace}/"):
                    out.append((entry, float(score)))
        except (KeyError, TypeError, AttributeError, RefError):
            raise RemoteError(f"{self.url} answered search --like with a malformed row") from None
        return out

    def _search_by_tags(self, filters: list[str], name: str | None, sort: str | None, limit: int) -> list[Entry]:
        """Search on a server without ahl's extensions (the Hub): list the repositories by tag,
        then read each one's latest version (every match when sorting by a metric, here)."""
        models = self._list_models(filters, None if sort else limit + 10, author=self.namespace, search=name or None)
        refs = []
        for repo_id, tags in models:
            entry_tag = next((t for t in tags if t.startswith("ahl-entry:")), None)
            if entry_tag is None:
                continue
            *base_parts, entry_task, entry_name = entry_tag.removeprefix("ahl-entry:").split("/")
            if name and name.lower() not in entry_name.lower():
                continue
            try:
                refs.append(
                    (
                        check_repo(repo_id, "search"),
                        check_ref("/".join(base_parts), entry_task, entry_name, None, "search"),
                    )
                )
            except RemoteError:
                continue  # a tag this client cannot parse is not an entry it can pull

        def latest(item: tuple[str, Ref]) -> Entry | None:
            repo, ref = item
            versions, yanked = self._tags(repo, missing_ok=True)
            live = sorted((v for v in versions if v not in yanked), key=version_key)
            if not live:
                return None
            return self._entry(self._describe(ref, repo, live[-1], versions[live[-1]], False))

        with ThreadPoolExecutor(max_workers=8) as pool:
            entries = [e for e in pool.map(latest, refs) if e is not None]
        if sort:  # best first, entries without the metric last (as the local registry sorts)
            entries.sort(
                key=lambda e: (
                    e.summary.get("metrics", {}).get(sort) is None,
                    -(e.summary.get("metrics", {}).get(sort) or 0.0),
                )
            )
        return entries
