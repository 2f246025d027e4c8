"""The catalog pages of ``ahl serve``: server-rendered HTML views of the registry (``docs/catalog.md``).

Every page reads what the JSON API reads (the listing is :meth:`RepoStore.search` with the
filters ``ahl search`` sends, :func:`listing_filters`; an entry page reads the repository's refs,
commits and files), so a page is a view, never a second source of truth.

Safety: Jinja2 escapes every value; model cards are Markdown rendered by markdown-it-py with raw
HTML off and only http(s) and relative links; every page answers with a Content-Security-Policy
that allows scripts, styles and images from this server only (no inline script), and may not be
framed. A fusion's heatmap is served as ``image/svg+xml`` under a policy that allows no script.
With ``--private`` a page needs a session: the login form takes a token (never shown again) and
sets an HttpOnly, SameSite=Strict cookie signed by the server; login and logout forms carry a
CSRF token.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markdown_it import MarkdownIt
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ...artifact import CARD_FILE, HEATMAP_FILE, METADATA_FILES
from ...errors import AhlError, NotFoundError
from ..format.manifest import Entry
from ..format.refs import Ref
from ..format.tags import listing_filters
from .repo_model import METRIC_SORT, Repo, RepoNotFoundError

PAGE_ROWS = 25
BASE_PAGE_ROWS = 1000  # the listing's page size: a base page shows at most this many entries
LOCK_HOLDERS = 100  # holders of a fusion adapter's key searched for its digest (one per namespace)
METRICS = ("accuracy", "macro_f1", "pearson", "spearman")  # sortable, higher is better
ARCHITECTURES = ("pfeiffer", "houlsby", "fusion", "head_only")
HEADS = ("classification", "regression", "multiple_choice")
SESSION_COOKIE, CSRF_COOKIE = "ahl_session", "ahl_csrf"
SESSION_SECONDS = 12 * 3600
MAX_FORM_BYTES = 8192
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; sandbox"
HERE = Path(__file__).parent
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}


class _LoginNeeded(Exception):
    """A private registry's page asked for without a session."""


class _Forbidden(Exception):
    """A state-changing form without its CSRF token."""


def safe_link(url: str) -> bool:
    """Links a card may hold: http(s), relative paths and fragments; never ``javascript:``,
    ``data:`` or any other scheme (control characters and spaces are dropped first, as browsers do)."""
    cleaned = re.sub(r"[\x00-\x20\x7f]", "", url)
    try:
        scheme = urlsplit(cleaned).scheme.lower()
    except ValueError:  # e.g. an unclosed IPv6 bracket: not a link a browser would follow either
        return False
    return scheme in ("", "http", "https") and not cleaned.startswith("\\")


def _markdown() -> MarkdownIt:
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    # markdown-it-py's documented hook for link policy is assigning this method on the instance.
    renderer.validateLink = safe_link  # type: ignore[method-assign]
    return renderer


def card_body(text: str) -> str:
    """A model card without its YAML header."""
    if text.startswith("---"):
        header_end = text.find("\n---", 3)
        if header_end != -1:
            return text[text.find("\n", header_end + 1) + 1 :] if "\n" in text[header_end + 1 :] else ""
    return text


def _size(num: int) -> str:
    size = float(num)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def _safe_next(target: str | None) -> str:
    """Where a login may send the browser back to: a path on this server, nothing else."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or re.search(r"[\x00-\x20]", target)
    ):
        return "/"
    return target


class Catalog:
    """The pages, bound to one ``ahl serve`` application (its store, tokens and secret)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.store = server.store
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True), auto_reload=False
        )
        self.env.filters["size"] = _size
        self.env.filters["metric"] = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else "–"
        self.env.filters["when"] = lambda v: str(v or "")[:16].replace("T", " ")
        self.markdown = _markdown()
        self.static = {
            p.name: (p.read_bytes(), STATIC_TYPES[p.suffix])
            for p in (HERE / "static").iterdir()
            if p.suffix in STATIC_TYPES
        }

    # -- auth ----------------------------------------------------------------------------------

    def _sign(self, *parts: str) -> str:
        return hmac.new(self.server.secret, "\n".join(parts).encode(), hashlib.sha256).hexdigest()

    def _session_user(self, request: Request) -> str | None:
        """The user of a valid, unexpired session cookie whose token user still exists."""
        value = request.cookies.get(SESSION_COOKIE, "")
        expires, _, rest = value.partition(":")
        user, _, signature = rest.rpartition(":")
        if not (expires.isdigit() and user and hmac.compare_digest(self._sign("session", expires, user), signature)):
            return None
        if int(expires) < time.time() or user not in set(self.server.tokens.values()):
            return None
        return user

    def _viewer(self, request: Request) -> str | None:
        """Who looks at a page: the session's user (None on a public registry without one);
        :class:`_LoginNeeded` on a private registry without a session."""
        user = self._session_user(request)
        if self.server.private and user is None:
            raise _LoginNeeded
        return user

    def _visible_repo(self, request: Request) -> Repo:
        """The page's repository if the viewer may see it (a private one: its namespace's user)."""
        viewer = self._viewer(request)
        repo = self.store.repo(f"{request.path_params['namespace']}/{request.path_params['name']}")
        if repo.private and viewer != repo.namespace:
            raise RepoNotFoundError(f"repository {repo.id} not found")
        return repo

    def _logout_csrf(self, request: Request) -> str:
        return self._sign("csrf", request.cookies.get(SESSION_COOKIE, ""))

    # -- rendering -----------------------------------------------------------------------------

    def _html(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        user = self._session_user(request)
        page = self.env.get_template(template).render(
            private=self.server.private, user=user, logout_csrf=self._logout_csrf(request) if user else "", **context
        )
        return HTMLResponse(page, status_code=status)

    def _page(self, handler: Callable[[Request], Response]) -> Callable[[Request], Awaitable[Response]]:
        """An endpoint running ``handler`` off the event loop (store reads and rendering are
        blocking work), with HTML error pages and the security headers on every answer."""

        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            try:
                response = await run_in_threadpool(handler, request)
            except _LoginNeeded:
                path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse(f"/-/login?{urlencode({'next': path})}", status_code=303)
            except _Forbidden as exc:
                response = self._html(request, "error.html", 403, message=str(exc))
            except NotFoundError as exc:
                response = self._html(request, "error.html", 404, message=str(exc))
            except AhlError as exc:
                response = self._html(request, "error.html", 400, message=str(exc))
            return _secure(response, private=self.server.private)

        return endpoint

    # -- pages ---------------------------------------------------------------------------------

    def catalog(self, request: Request) -> Response:
        """``/``: the entries matching the search box and filters, a page at a time (private
        repositories only to their namespace's user)."""
        viewer = self._viewer(request)
        params = request.query_params
        query = {k: params.get(k, "").strip() for k in ("q", "base", "task", "architecture", "head", "tag", "sort")}
        try:
            page = max(1, int(params.get("page") or 1))
        except ValueError:
            page = 1
        sort = query["sort"] if query["sort"] in METRICS else "recent"
        filters = listing_filters(
            base=query["base"] or None,
            task=query["task"] or None,
            architecture=query["architecture"] or None,
            head=query["head"] or None,
            tag=query["tag"] or None,
        )
        # the rows of GET /api/models with these parameters, and the client's own row filter
        found = self.store.search(
            search=query["q"] or None,
            tags=filters,
            sort=f"{METRIC_SORT}{sort}" if sort in METRICS else "lastModified",
            offset=(page - 1) * PAGE_ROWS,
            limit=PAGE_ROWS + 1,
            viewer=viewer,
        )
        rows = [self._row(r) for r in listed(found[:PAGE_ROWS], query["q"], query["architecture"])]
        links = {k: v for k, v in query.items() if v}
        listing = [("filter", f) for f in filters] + ([("search", query["q"])] if query["q"] else [])
        listing += [("sort", f"{METRIC_SORT}{sort}")] if sort in METRICS else []
        listing += [("limit", str(PAGE_ROWS))] + ([("cursor", str((page - 1) * PAGE_ROWS))] if page > 1 else [])
        return self._html(
            request,
            "catalog.html",
            rows=rows,
            form=query,
            sort=sort,
            page=page,
            api_query=urlencode(listing),
            metrics=METRICS,
            architectures=ARCHITECTURES,
            heads=HEADS,
            newer=urlencode({**links, "page": page - 1}) if page > 1 else None,
            older=urlencode({**links, "page": page + 1}) if len(found) > PAGE_ROWS else None,
        )

    def _row(self, row: dict[str, Any], *, size: bool = True) -> dict[str, Any]:
        """A listing row for a template; ``size`` reads the version's manifest (one file, once)."""
        entry = row["ahlEntry"]
        if not size:
            return {"repo": row["id"], **entry}
        return {
            "repo": row["id"],
            **entry,
            "size": self._version_size(
                row["id"], entry["base"], entry["task"], entry["name"], entry["version"], entry["digest"]
            ),
        }

    @functools.lru_cache(maxsize=1 << 16)  # noqa: B019  (one Catalog per application, kept for its life)
    def _version_size(self, repo_id: str, base: str, task: str, name: str, version: str, digest: str) -> int:
        """Bytes of a version's files. A version never changes (its digest is in the key), so
        each is read once per process."""
        manifest = self.store.versions_of(repo_id).resolve(Ref(base, task, name, version=version)).manifest
        return sum(f["size"] for f in manifest["files"].values())

    def entry(self, request: Request) -> Response:
        """``/NAMESPACE/NAME``: one repository's entry: versions, card, files, lineage, how to pull."""
        repo: Repo = self._visible_repo(request)
        versions: list[Entry] = []
        if repo.entry:
            ref, registry = Ref(*repo.entry), self.store.versions_of(repo.id)
            versions = [
                registry.resolve(ref.with_version(v)) for v in reversed(registry.versions(ref, include_yanked=True))
            ]
        wanted = request.query_params.get("version")
        chosen = (
            next((e for e in versions if e.ref.version == wanted), None)
            if wanted
            else next((e for e in versions if not e.yanked), versions[0] if versions else None)
        )
        if wanted and chosen is None:
            raise NotFoundError(f"{repo.id} has no version {wanted}")
        revision = f"v{chosen.ref.version}" if chosen else "main"
        commit = self.store.resolve(repo, revision)
        meta = None
        if chosen is not None:
            raw = self.store.read_small(commit.files, METADATA_FILES[chosen.manifest["kind"]])
            meta = _json(raw)
        card = (self.store.read_small(commit.files, CARD_FILE) or b"").decode("utf-8", "replace")
        origin = str(request.base_url).rstrip("/")
        ref_text = f"{chosen.ref.base}/{chosen.ref.task}/{chosen.ref.name}@{chosen.ref.version}" if chosen else ""
        registry = f"{origin}/{repo.namespace}"
        return self._html(
            request,
            "entry.html",
            repo=repo,
            versions=versions,
            chosen=chosen,
            revision=revision,
            meta=meta,
            files=sorted(commit.files.items()),
            card=self.markdown.render(card_body(card)),
            lock=self._lock(meta) if meta and meta.get("kind") == "fusion" else [],
            heatmap=HEATMAP_FILE in commit.files,
            pull=f"ahl pull {ref_text} --registry {registry}",
            python=(
                f"import adapterhub_lite as ahl\n\nentry, path = ahl.pull({ref_text!r}, "
                f"registry={registry!r})\nmodel = ahl.load(path)"
            ),
        )

    def _lock(self, meta: dict[str, Any]) -> list[dict[str, Any]]:
        """A fusion's locked adapters, each with the repository and version holding its digest."""
        lock = []
        for record in meta.get("adapters") or []:
            item = {**record, "repo": None, "version": None}
            try:
                ref = Ref(record["base"], record["task"], record["name"], digest=record["digest"])
                tag = f"ahl-entry:{ref.base}/{ref.task}/{ref.name}"
                # one key may have a holder per namespace (SPEC 14.2): the one with this digest
                for row in self.store.search(tags=[tag], limit=LOCK_HOLDERS):
                    try:
                        item["version"] = self.store.versions_of(row["id"]).resolve(ref).ref.version
                    except AhlError:
                        continue
                    item["repo"] = row["id"]
                    break
            except (AhlError, KeyError, TypeError):
                pass  # shown without a link: the registry does not hold that version
            lock.append(item)
        return lock

    def base_page(self, request: Request) -> Response:
        """``/-/base/BASE``: every entry on one base model, grouped by task, best metric first."""
        viewer = self._viewer(request)
        base = request.path_params["base"]
        rows = listed(
            self.store.search(
                tags=listing_filters(base=base), sort="lastModified", limit=BASE_PAGE_ROWS, viewer=viewer
            ),
            "",
            "",
        )
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            # no size column here: up to 1,000 rows, a manifest read each would double the time
            groups.setdefault(row["ahlEntry"]["task"], []).append(self._row(row, size=False))
        tasks = []
        for task, members in sorted(groups.items()):
            metric = _group_metric(members)
            members.sort(
                key=lambda r: (
                    metric is None or metric not in r["summary"]["metrics"],
                    -float(r["summary"]["metrics"].get(metric, 0.0) if metric else 0.0),
                    r["repo"],
                )
            )
            tasks.append({"task": task, "metric": metric, "rows": members})
        return self._html(
            request, "base.html", base=base, tasks=tasks, count=len(rows), truncated=len(rows) >= BASE_PAGE_ROWS
        )

    def heatmap(self, request: Request) -> Response:
        """A fusion's heatmap (a file of its artifact) as an image that runs nothing."""
        repo = self._visible_repo(request)
        commit = self.store.resolve(repo, request.path_params["revision"])
        content = self.store.read_small(commit.files, HEATMAP_FILE)
        if content is None:
            raise NotFoundError(f"{repo.id} holds no heatmap at {request.path_params['revision']}")
        return Response(
            content,
            media_type="image/svg+xml",
            headers={"Content-Security-Policy": SVG_CSP, "Cache-Control": "private, max-age=300"},
        )

    def static_file(self, request: Request) -> Response:
        found = self.static.get(request.path_params["name"])
        if found is None:
            raise NotFoundError(f"no static file {request.path_params['name']!r}")
        return Response(found[0], media_type=found[1], headers={"Cache-Control": "max-age=3600"})

    # -- login and logout ----------------------------------------------------------------------

    def login_form(self, request: Request, message: str = "", status: int = 200, after: str | None = None) -> Response:
        csrf = secrets.token_urlsafe(24)
        response = self._html(
            request,
            "login.html",
            status,
            csrf=csrf,
            message=message,
            next=_safe_next(after or request.query_params.get("next")),
        )
        _cookie(response, request, CSRF_COOKIE, csrf, max_age=3600)
        return response

    def login(self, request: Request, body: bytes) -> Response:
        form = _form(body)
        sent, expected = form.get("csrf", ""), request.cookies.get(CSRF_COOKIE, "")
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise _Forbidden("this login form expired or did not come from this server: load it again")
        user = self.server.user_of(form.get("token", ""))
        if user is None:
            return self.login_form(request, "that token is not valid on this registry", 401, form.get("next"))
        expires = str(int(time.time()) + SESSION_SECONDS)
        response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
        _cookie(
            response,
            request,
            SESSION_COOKIE,
            f"{expires}:{user}:{self._sign('session', expires, user)}",
            max_age=SESSION_SECONDS,
        )
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    def logout(self, request: Request, body: bytes) -> Response:
        if not hmac.compare_digest(_form(body).get("csrf", "").encode(), self._logout_csrf(request).encode()):
            raise _Forbidden("this logout form did not come from this page: load the page again")
        response = RedirectResponse("/-/login" if self.server.private else "/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    def _posted(self, handler: Callable[[Request, bytes], Response]) -> Callable[[Request], Awaitable[Response]]:
        """A form endpoint: the body is read (bounded) on the loop, the handler runs as a page."""

        async def endpoint(request: Request) -> Response:
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_FORM_BYTES:
                    return _secure(HTMLResponse("form too large", status_code=413), private=self.server.private)
            return await self._page(lambda r: handler(r, body))(request)

        return endpoint

    def routes(self) -> list[Route]:
        return [
            Route("/", self._page(self.catalog), methods=["GET", "HEAD"]),
            Route("/-/static/{name}", self._page(self.static_file), methods=["GET", "HEAD"]),
            Route("/-/login", self._page(self.login_form), methods=["GET"]),
            Route("/-/login", self._posted(self.login), methods=["POST"]),
            Route("/-/logout", self._posted(self.logout), methods=["POST"]),
            Route("/-/base/{base:path}", self._page(self.base_page), methods=["GET", "HEAD"]),
            Route("/-/heatmap/{namespace}/{name}/{revision}", self._page(self.heatmap), methods=["GET", "HEAD"]),
            Route("/{namespace}/{name}", self._page(self.entry), methods=["GET", "HEAD"]),
        ]


def catalog_routes(server: Any) -> list[Route]:
    """The page routes of an ``ahl serve`` application (appended after its API routes)."""
    return Catalog(server).routes()


def listed(rows: list[dict[str, Any]], name: str, architecture: str) -> list[dict[str, Any]]:
    """Listing rows as ``ahl search`` keeps them (``RemoteRegistry.search``): repositories with a
    released version, whose entry name holds ``name``, of ``architecture`` when one is asked for."""
    return [
        r
        for r in rows
        if isinstance(r.get("ahlEntry"), dict)
        and (not name or name.lower() in str(r["ahlEntry"]["name"]).lower())
        and (not architecture or r["ahlEntry"]["summary"].get("architecture") == architecture)
    ]


def _group_metric(rows: list[dict[str, Any]]) -> str | None:
    """The metric a task's entries are ranked by: the first of :data:`METRICS` any of them has."""
    present = {m for r in rows for m in r["summary"].get("metrics", {})}
    return next((m for m in METRICS if m in present), None)


def _json(raw: bytes | None) -> dict[str, Any] | None:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body, one value per field."""
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    return {k: v[0] for k, v in fields.items()}


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


def _secure(response: Response, *, private: bool) -> Response:
    """The headers every page answer carries (a heatmap keeps its stricter policy)."""
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if private:
        response.headers["Cache-Control"] = "no-store"
    return response
