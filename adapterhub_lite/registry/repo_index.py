"""The search index of ``ahl serve``'s repositories (``ROOT/repos/index.sqlite``, derived).

Real repositories are indexed when their ``repo.json`` is written, and re-read from it when the
index is missing. Entries pushed into the directory locally are mirrored as ``ahl/SLUG`` rows
from the local registry's own index, so no request scans directories.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from .local import connect
from .refs import check_segment, repo_slug
from .repo_model import LOCAL_NAMESPACE, METRIC_SORT, Repo, entry_key, entry_tags, hub_time, version_commit_id


class RepoIndex:
    """SQLite index of repositories (``repos``) and their search tags (``repo_tags``)."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS repos (id TEXT PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL, "
        "sha TEXT, created_at TEXT, last_modified TEXT, entry TEXT UNIQUE, local INT NOT NULL, tags TEXT NOT NULL, "
        "source TEXT)",
        "CREATE TABLE IF NOT EXISTS repo_tags (tag TEXT, repo TEXT, PRIMARY KEY (tag, repo)) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS repos_by_namespace ON repos (namespace, last_modified)",
        "CREATE INDEX IF NOT EXISTS repos_by_modified ON repos (last_modified)",
        "CREATE INDEX IF NOT EXISTS repos_by_created ON repos (created_at)",
        "CREATE INDEX IF NOT EXISTS repo_tags_by_repo ON repo_tags (repo)",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    )
    ORDER = {"createdAt": "created_at DESC, id", "id": "id"}  # anything else: lastModified, or METRIC_SORT

    def __init__(self, path: Path, registry_index: Path, load_all: Callable[[], Iterable[Repo]]) -> None:
        """Open (or create) the index at ``path``; ``load_all`` yields every repository record,
        read only when the index is missing. ``registry_index`` is the local registry's index."""
        self.path = path
        self.registry_index = registry_index
        fresh = not path.exists()
        with self._connect() as db:
            for statement in self.SCHEMA:
                db.execute(statement)
            if fresh:
                for repo in load_all():
                    self._put(db, repo)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect(self.path)

    @staticmethod
    def _put(db: sqlite3.Connection, repo: Repo, source: str | None = None) -> None:
        db.execute("DELETE FROM repo_tags WHERE repo = ?", (repo.id,))
        # On an entry clash the repository wins over a stale local mirror, never the reverse.
        verb = "INSERT OR IGNORE" if repo.local else "INSERT OR REPLACE"
        db.execute(f"{verb} INTO repos VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (repo.id, repo.namespace, repo.name, repo.main, repo.created_at, repo.last_modified,
                    entry_key(repo.entry) if repo.entry else None, int(repo.local), json.dumps(list(repo.tags)),
                    source))
        db.executemany("INSERT OR IGNORE INTO repo_tags VALUES (?, ?)", [(t, repo.id) for t in repo.tags])

    def put(self, repo: Repo) -> None:
        with self._connect() as db:
            self._put(db, repo)

    def owner(self, entry: tuple[str, str, str]) -> str | None:
        """The repository (not a local mirror) an entry is bound to, if any."""
        with self._connect() as db:
            row = db.execute("SELECT id FROM repos WHERE entry = ? AND local = 0", (entry_key(entry),)).fetchone()
        return row[0] if row else None

    def mirror(self, repo_id: str) -> Repo | None:
        """The ``ahl/SLUG`` mirror of a locally pushed entry, from its index row."""
        with self._connect() as db:
            row = db.execute("SELECT sha, created_at, last_modified, entry, tags FROM repos WHERE id = ? AND local = 1",
                             (repo_id,)).fetchone()
        if row is None:
            return None
        sha, created, modified, entry, tags = row
        return Repo(repo_id, created, modified, sha, tuple(entry.split("\n")), tuple(json.loads(tags)), local=True)

    def sync_local(self) -> None:
        """Mirror the registry's entries that no repository holds as ``ahl/SLUG`` rows.

        A cheap signature of the registry index (version count, newest push, yank count) tells
        whether anything changed since the last sync; then a per-entry signature picks the
        mirrors to rewrite, so a local push costs one entry's rows, not a rebuild.
        """
        db = sqlite3.connect(self.path, timeout=60)
        try:
            db.execute("ATTACH DATABASE ? AS registry", (str(self.registry_index),))
            signature = json.dumps(db.execute(
                "SELECT count(*), coalesce(max(pushed_at), ''), coalesce(sum(yanked), 0) FROM registry.versions"
            ).fetchone())
            row = db.execute("SELECT value FROM meta WHERE key = 'local_signature'").fetchone()
            if row and row[0] == signature:
                return
            current = dict(db.execute("SELECT entry, source FROM repos WHERE local = 1").fetchall())
            wanted = {f"{base}\n{task}\n{name}": source for base, task, name, source in db.execute(
                "SELECT v.base, v.task, v.name, count(*) || ' ' || max(v.pushed_at) || ' ' || sum(v.yanked) "
                "FROM registry.versions AS v WHERE NOT EXISTS (SELECT 1 FROM main.repos AS r WHERE r.local = 0 "
                "AND r.entry = v.base || char(10) || v.task || char(10) || v.name) GROUP BY v.base, v.task, v.name"
            )}
            changed = {key: source for key, source in wanted.items() if current.get(key) != source}
            mirrors = [(self._mirror_of(db, tuple(key.split("\n"))), source)  # type: ignore[arg-type]
                       for key, source in changed.items()]
            with db:
                for key in set(current) - set(wanted):
                    db.execute("DELETE FROM repo_tags WHERE repo = (SELECT id FROM repos WHERE entry = ?)", (key,))
                    db.execute("DELETE FROM repos WHERE entry = ? AND local = 1", (key,))
                for repo, source in mirrors:
                    self._put(db, repo, source)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('local_signature', ?)", (signature,))
        finally:
            db.close()

    @staticmethod
    def _mirror_of(db: sqlite3.Connection, entry: tuple[str, str, str]) -> Repo:
        """The mirror of one entry: ``main`` is its newest version that is not yanked (the newest
        of all when every one is), tags come from that version's summary."""
        rows = db.execute(
            "SELECT architecture, head, pushed_at, digest, yanked, tags FROM registry.versions "
            "WHERE base = ? AND task = ? AND name = ? ORDER BY major, minor, patch", entry
        ).fetchall()
        architecture, head, _, digest, _, summary_tags = ([r for r in rows if not r[4]] or rows)[-1]
        pushed = [hub_time(r[2]) for r in rows]
        # the summary's tags too (head:..., the artifact's own), so a tag search finds what it
        # finds in the local registry
        tags = dict.fromkeys([*entry_tags(*entry, architecture, head), *json.loads(summary_tags)])
        return Repo(f"{LOCAL_NAMESPACE}/{repo_slug(*entry)}", min(pushed), max(pushed), version_commit_id(digest),
                    entry, tuple(tags), local=True)

    def search(self, *, author: str | None, search: str | None, tags: Sequence[str], sort: str, offset: int,
               limit: int) -> list[dict[str, Any]]:
        where, args = ["1"], []
        if author:
            where.append("repos.namespace = ?")
            args.append(author)
        if search:
            where.append("instr(lower(repos.name), lower(?)) > 0")
            args.append(search)
        for tag in tags:
            where.append("repos.id IN (SELECT repo FROM repo_tags WHERE tag = ?)")
            args.append(tag)
        columns = "repos.id, sha, created_at, last_modified, repos.tags, entry"
        if sort.startswith(METRIC_SORT):
            # ahl's own sort (SPEC 14.6): entries by a dev metric of their latest version, best
            # first. Driven from the versions index; the unique entry column finds each repo.
            metric = check_segment(sort.removeprefix(METRIC_SORT), "sort metric")
            query = (f"SELECT {columns}, json_extract(v.metrics, '$.{metric}') AS score FROM registry.versions AS v "
                     f"JOIN repos ON repos.entry = v.base || char(10) || v.task || char(10) || v.name "
                     f"WHERE v.latest = 1 AND {' AND '.join(where)} ORDER BY score IS NULL, score DESC, repos.id "
                     f"LIMIT ? OFFSET ?")
        else:
            query = (f"SELECT {columns} FROM repos WHERE {' AND '.join(where)} "
                     f"ORDER BY {self.ORDER.get(sort, 'last_modified DESC, id')} LIMIT ? OFFSET ?")
        with self._connect() as db:
            db.execute("ATTACH DATABASE ? AS registry", (str(self.registry_index),))
            rows = [row[:6] for row in db.execute(query, (*args, int(limit), int(offset))).fetchall()]
            latest = {entry: self._latest_version(db, entry) for *_, entry in rows if entry}
        return [{"id": i, "sha": sha, "createdAt": created, "lastModified": modified, "tags": json.loads(tags),
                 "ahlEntry": latest.get(entry)} for i, sha, created, modified, tags, entry in rows]

    @staticmethod
    def _latest_version(db: sqlite3.Connection, entry: str) -> dict[str, Any] | None:
        """The newest non-yanked version of an entry, as search lists it (one indexed lookup):
        clients list search results from this instead of asking each repository."""
        row = db.execute(
            "SELECT version, digest, architecture, head, tags, metrics, pushed_at FROM registry.versions "
            "WHERE latest = 1 AND base = ? AND task = ? AND name = ?", tuple(entry.split("\n"))
        ).fetchone()
        if row is None:
            return None
        version, digest, architecture, head, tags, metrics, pushed_at = row
        base, task, name = entry.split("\n")
        return {"base": base, "task": task, "name": name, "version": version, "digest": digest,
                "pushed_at": pushed_at, "summary": {"architecture": architecture, "head": head,
                                                    "tags": json.loads(tags), "metrics": json.loads(metrics)}}
