"""The search index of ``ahl serve``'s repositories (``ROOT/repos/index.sqlite``, derived).

Real repositories are indexed when their ``repo.json`` is written, and re-read from it when the
index is missing. Entries pushed into the directory locally are mirrored as ``ahl/SLUG`` rows
from the local registry's own index, so no request scans directories.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...files import crash_point
from ...task_embedding import TaskEmbedding
from ..format.refs import check_segment, repo_slug
from ..format.sqlite import connect
from ..format.tags import entry_tags
from .repo_model import (
    LOCAL_NAMESPACE,
    METRIC_SORT,
    Repo,
    entry_key,
    hub_time,
    own_versions_dir,
    parse_time,
    version_commit_id,
)

LIKE_ESCAPE = "\\"  # escapes a LIKE wildcard searched for as itself (contains_pattern)
# The oldest SQLite that can hold the index: FTS5's trigram tokenizer (repo_names) came in 3.34.
MIN_SQLITE = (3, 34, 0)


def check_sqlite(version: tuple[int, int, int]) -> None:
    """Raise :class:`ConfigError` when SQLite ``version`` (``sqlite3.sqlite_version_info``) is
    older than :data:`MIN_SQLITE`, saying what to change.

    Example:
        >>> check_sqlite(sqlite3.sqlite_version_info)  # passes on a recent Python
    """
    if tuple(version) < MIN_SQLITE:
        have, need = (".".join(map(str, v)) for v in (version, MIN_SQLITE))
        raise ConfigError(
            f"ahl serve needs SQLite {need} or newer for its search index, and this Python uses SQLite {have}; "
            f"upgrade the system's SQLite library or run ahl with a Python built with a newer one"
        )


class RepoIndex:
    """SQLite index of repositories (``repos``) and their search tags (``repo_tags``)."""

    # Secondary indexes, by name: created with the schema, and dropped and built again around a
    # bulk write (:meth:`_put_all`).
    INDEXES = {
        # each tag's rows carry their repository's sort keys: a tag's listing walks its own rows
        # in order and stops at the limit, however its repositories spread through the order
        "repo_tags_by_modified": "repo_tags (tag, last_modified DESC, repo)",
        "repo_tags_by_created": "repo_tags (tag, created_at DESC, repo)",
        "repo_tags_by_repo": "repo_tags (repo)",
        "repos_by_namespace": "repos (namespace, last_modified)",
        # (column, id, name): listings walk these in order and stop at the limit, no sort of
        # every row; a name search is checked on each index entry, and only the rows whose name
        # matches are read from the table
        "repos_by_modified_name": "repos (last_modified DESC, id, name)",
        "repos_by_created_name": "repos (created_at DESC, id, name)",
        "repos_by_id_name": "repos (id, name)",
    }
    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS repos (id TEXT PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL, "
        "sha TEXT, created_at TEXT, last_modified TEXT, entry TEXT UNIQUE, local INT NOT NULL, tags TEXT NOT NULL, "
        "source TEXT)",
        "CREATE TABLE IF NOT EXISTS repo_tags (tag TEXT, repo TEXT, last_modified TEXT, created_at TEXT, "
        "PRIMARY KEY (tag, repo)) WITHOUT ROWID",
        # the sort-order indexes of earlier versions
        *(
            f"DROP INDEX IF EXISTS {old}"
            for old in ("repos_by_modified", "repos_by_created", "repos_by_modified_id", "repos_by_created_id")
        ),
        *(f"CREATE INDEX IF NOT EXISTS {name} ON {spec}" for name, spec in INDEXES.items()),
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
        # private repositories (SPEC 14.6): listed only to their namespace's user
        "CREATE TABLE IF NOT EXISTS private_repos (id TEXT PRIMARY KEY) WITHOUT ROWID",
        # the names' trigrams (rowid: the repos row's), so that a name search finds its matches
        # without reading every row (see _name_filter)
        "CREATE VIRTUAL TABLE IF NOT EXISTS repo_names USING fts5(name, tokenize='trigram')",
    )
    # Anything else: lastModified, or METRIC_SORT. Ids are unique, so "id, name" is the order
    # of id; the name makes SQLite walk repos_by_id_name, whose entries hold the name, rather
    # than the primary key's index, where a name search would read every row it checks.
    ORDER = {"createdAt": "created_at DESC, id", "id": "id, name"}
    TAG_ORDER = {"createdAt": "t.created_at DESC, t.repo", "id": "t.repo"}  # the same, walking a tag's rows
    ONE_PASS_FROM = 1000  # entries to mirror at once from which one pass over every version is cheaper
    BULK_FROM = 1000  # rows written at once from which the secondary indexes are built again (_put_all)
    # Page cache of each writing connection, in KiB: SQLite's default of 2 MB holds little of
    # the B-trees that a bulk write touches at a million versions, and each page evicted is
    # read again. Allocated as used, so small writes cost nothing; the readers (one per thread)
    # keep the default, which keeps the server's memory bounded.
    CACHE_KIB = 64 << 10
    # Matches up to which a filter drives the listing (its rows fetched, then sorted) whatever
    # the walk's estimate says: 2,500 rows cost about 25 ms, while a walk, whose estimate
    # assumes the matches spread evenly through the order, read all 100,000 rows at a million
    # versions for a name that one task's entries hold (a task's slugs sort together): 370 ms.
    DRIVE_ROWS = 5000

    def __init__(self, path: Path, registry_index: Path, load_all: Callable[[], Iterable[Repo]]) -> None:
        """Open (or create) the index at ``path``; ``load_all`` yields every repository record,
        read only when the index is missing. ``registry_index`` is the local registry's index.

        Raises:
            ConfigError: this Python's SQLite is older than :data:`MIN_SQLITE`.
        """
        check_sqlite(sqlite3.sqlite_version_info)  # before any SQL: an old one fails halfway, unclearly
        self.path = path
        self.registry_index = registry_index
        self._readers = threading.local()
        fresh = not path.exists()
        with self._connect() as db:
            # An index from before repo_names and repo_tags' sort keys: both filled from the
            # repos rows once (the rows' tags column holds each one's tags), in one transaction
            # with the schema (DDL would otherwise commit alone: a crash then left the new table
            # empty, and taken for migrated).
            db.execute("BEGIN IMMEDIATE")
            named = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'repo_names'").fetchone()
            keyed = any(row[1] == "last_modified" for row in db.execute("PRAGMA table_info(repo_tags)"))
            if not keyed:
                db.execute("DROP TABLE IF EXISTS repo_tags")
            for statement in self.SCHEMA:
                db.execute(statement)
            if fresh:
                self._put_all(db, [(repo, None) for repo in load_all()])
            if not fresh and not keyed:
                db.execute(
                    "INSERT OR IGNORE INTO repo_tags SELECT t.value, r.id, r.last_modified, r.created_at "
                    "FROM repos AS r, json_each(r.tags) AS t"
                )
            if not fresh and not named:
                db.execute("INSERT INTO repo_names (rowid, name) SELECT rowid, name FROM repos")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A writing connection (:func:`connect`) with the larger page cache."""
        with connect(self.path) as db:
            db.execute(f"PRAGMA cache_size = -{self.CACHE_KIB}")  # negative: a size in KiB, not pages
            yield db

    def _reader(self) -> sqlite3.Connection:
        """This thread's long-lived read connection, with the registry index attached as
        ``registry``. Kept open so that ``PRAGMA registry.data_version`` can tell it whether
        any other connection changed the registry since this one last looked."""
        db = getattr(self._readers, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("ATTACH DATABASE ? AS registry", (str(self.registry_index),))
            self._readers.db, self._readers.seen = db, None
        return db

    def _entry_column(self, repo: Repo) -> str | None:
        """A row's ``entry``: the entry's key for its holder in the directory's registry (and a
        local mirror); the key and the repository's id for a repository whose versions are in
        a registry of its own (SPEC 14.2), so that one key has a row per namespace holding it."""
        if repo.entry is None:
            return None
        key = entry_key(repo.entry)
        return f"{key}\n{repo.id}" if not repo.local and own_versions_dir(self.path.parent, repo.id).is_dir() else key

    def _put_all(self, db: sqlite3.Connection, repos: Sequence[tuple[Repo, str | None]]) -> None:
        """Write the rows of ``repos`` (each with its mirror's source, or None), replacing their
        earlier ones: one statement per table, its rows in key order, so that each B-tree page is
        written once per batch instead of once per row at random. A batch of at least
        :attr:`BULK_FROM` rows that at least doubles the table (the first sync of a large
        registry) drops the secondary indexes and builds them again afterwards, in the same
        transaction: one sort per index instead of a random insert per row and index."""
        if not repos:
            # Nothing to write, and no read either: this transaction would start with one (the
            # empty DELETEs below execute nothing), and a transaction that reads first cannot take
            # the write lock after another writer's commit (SQLite answers "database is locked" at
            # once, whatever the busy timeout).
            return
        ordered = sorted(repos, key=lambda item: item[0].id)
        ids = [(repo.id,) for repo, _ in ordered]
        db.executemany("DELETE FROM repo_tags WHERE repo = ?", ids)
        db.executemany("DELETE FROM private_repos WHERE id = ?", ids)
        # a mirror replaces its own earlier row, which its INSERT OR IGNORE below would keep
        db.executemany("DELETE FROM repos WHERE id = ? AND local = 1", [(r.id,) for r, _ in ordered if r.local])
        # a repository's INSERT OR REPLACE below removes the mirror of its entry, whose tag rows
        # would otherwise stay behind
        db.executemany(
            "DELETE FROM repo_tags WHERE repo IN (SELECT id FROM repos WHERE entry = ? AND local = 1)",
            [(self._entry_column(r),) for r, _ in ordered if not r.local and r.entry is not None],
        )
        # Rows inserted without a rowid get one above the largest (SQLite's documented rule), so
        # the rows this batch writes are those above ``before``.
        before = db.execute("SELECT coalesce(max(rowid), 0) FROM repos").fetchone()[0]
        rebuild = len(ordered) >= max(self.BULK_FROM, before)
        if rebuild:  # inside the transaction that the DELETEs above began: a crash keeps the indexes
            for name in self.INDEXES:
                db.execute(f"DROP INDEX IF EXISTS {name}")
        # On an entry clash the repository wins over a stale local mirror, never the reverse:
        # repositories are written first, and replace; mirrors then skip a taken entry.
        for verb, local in (("INSERT OR REPLACE", False), ("INSERT OR IGNORE", True)):
            db.executemany(
                f"{verb} INTO repos VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        repo.id,
                        repo.namespace,
                        repo.name,
                        repo.main,
                        repo.created_at,
                        repo.last_modified,
                        self._entry_column(repo),
                        int(repo.local),
                        json.dumps(list(repo.tags)),
                        source,
                    )
                    for repo, source in ordered
                    if repo.local == local
                ],
            )
        # Tags and names from the rows written (a skipped mirror gets none), each in one pass.
        db.execute(
            "INSERT OR IGNORE INTO repo_tags SELECT t.value, r.id, r.last_modified, r.created_at "
            "FROM repos AS r, json_each(r.tags) AS t WHERE r.rowid > ? ORDER BY 1, 2",
            (before,),
        )
        # Every repos row is written here, so each has its name at its rowid; a deleted row's
        # name may stay behind, harmless: a name search joins on the rowid and checks the name.
        db.execute(
            "INSERT OR REPLACE INTO repo_names (rowid, name) SELECT rowid, name FROM repos WHERE rowid > ?", (before,)
        )
        db.executemany("INSERT INTO private_repos VALUES (?)", [(r.id,) for r, _ in ordered if r.private])
        if rebuild:
            for name, spec in self.INDEXES.items():
                db.execute(f"CREATE INDEX {name} ON {spec}")

    def put(self, repo: Repo) -> None:
        with self._connect() as db:
            self._put_all(db, [(repo, None)])
            crash_point("index:update")  # a test hook (files.py): killed inside the transaction

    def reconcile_one(self, repo_id: str, repo: Repo | None) -> int:
        """Make ``repo_id``'s row that of its record (``None``: no record, no row); 1 if it changed."""
        return self.reconcile([repo] if repo else [], only=repo_id)

    def reconcile(self, repos: Sequence[Repo], only: str | None = None) -> int:
        """Make the rows of repositories (not local mirrors) those of ``repos``, their records:
        rows that differ are rewritten, rows without a record deleted (all of them, or only
        ``only``'s). Returns how many rows changed."""
        changed = 0
        with self._connect() as db:
            query = (
                "SELECT id, sha, created_at, last_modified, entry, tags, "
                "EXISTS (SELECT 1 FROM private_repos AS p WHERE p.id = repos.id) FROM repos WHERE local = 0"
            )
            rows = db.execute(query + (" AND id = ?" if only else ""), (only,) if only else ()).fetchall()
            indexed = {row[0]: row[1:] for row in rows}
            stale: list[tuple[Repo, str | None]] = []
            for repo in repos:
                wanted = (
                    repo.main,
                    repo.created_at,
                    repo.last_modified,
                    self._entry_column(repo),
                    json.dumps(list(repo.tags)),
                    int(repo.private),
                )
                if indexed.pop(repo.id, None) != wanted:
                    stale.append((repo, None))
            self._put_all(db, stale)
            changed += len(stale)
            for stale in indexed:
                db.execute("DELETE FROM private_repos WHERE id = ?", (stale,))
                db.execute("DELETE FROM repo_tags WHERE repo = ?", (stale,))
                db.execute("DELETE FROM repos WHERE id = ?", (stale,))
                changed += 1
        return changed

    def owner(self, entry: tuple[str, str, str]) -> str | None:
        """The repository (not a local mirror) whose versions of an entry are the directory
        registry's (its first holder, SPEC 14.2), if any (on this thread's
        read connection: search --like asks once per row, and a connection costs more than the
        query)."""
        row = (
            self._reader().execute("SELECT id FROM repos WHERE entry = ? AND local = 0", (entry_key(entry),)).fetchone()
        )
        return row[0] if row else None

    def holders(self, entry: tuple[str, str, str]) -> list[str]:
        """Every repository (not a local mirror) an entry is bound to, one per namespace at most
        (SPEC 14.2): its row in the directory's registry and those keyed ``KEY\nREPO``."""
        key = entry_key(entry)
        return [
            row[0]
            for row in self._reader().execute(
                "SELECT id FROM repos WHERE local = 0 AND (entry = ? OR (entry > ? AND entry < ?)) ORDER BY id",
                (key, f"{key}\n", f"{key}\x0b"),  # "\x0b" follows "\n": the range of KEY\n...
            )
        ]

    def hidden(self, repo_ids: Sequence[str], viewer: str | None) -> set[str]:
        """Those of ``repo_ids`` that are private to a namespace other than ``viewer``."""
        with self._connect() as db:
            return {
                row[0]
                for row in db.execute(
                    f"SELECT id FROM private_repos WHERE id IN ({','.join('?' * len(repo_ids))})", tuple(repo_ids)
                )
                if row[0].split("/")[0] != viewer
            }

    def mirror(self, repo_id: str) -> Repo | None:
        """The ``ahl/SLUG`` mirror of a locally pushed entry, from its index row."""
        with self._connect() as db:
            row = db.execute(
                "SELECT sha, created_at, last_modified, entry, tags FROM repos WHERE id = ? AND local = 1", (repo_id,)
            ).fetchone()
        if row is None:
            return None
        sha, created, modified, entry, tags = row
        return Repo(repo_id, created, modified, sha, tuple(entry.split("\n")), tuple(json.loads(tags)), local=True)

    def sync_local(self) -> None:
        """Mirror the registry's entries that no repository holds as ``ahl/SLUG`` rows.

        Unchanged since this thread last looked (``data_version``): nothing to do, no query.
        Otherwise the registry index's change log (``changes``, appended by every push, yank
        and repair) says whether another sync already caught up and which entries changed
        since; only those are compared (a per-entry signature: version count, newest push,
        yank count), so a push costs one entry's rows, never a scan of every version. The
        first sync, and one after the registry index was rebuilt, mirrors every entry.
        """
        version = self._reader().execute("PRAGMA registry.data_version").fetchone()[0]
        if self._readers.seen == version:
            return
        self._sync_local()
        self._readers.seen = version

    def _sync_local(self) -> None:
        db = sqlite3.connect(self.path, timeout=60)
        try:
            db.execute(f"PRAGMA cache_size = -{self.CACHE_KIB}")
            db.execute("ATTACH DATABASE ? AS registry", (str(self.registry_index),))
            # Where the registry's change log stands (O(1)), with its file's identity: a rebuilt
            # registry index restarts the log, and is then mirrored whole.
            mark = [
                os.stat(self.registry_index).st_ino,
                db.execute("SELECT coalesce(max(seq), 0) FROM registry.changes").fetchone()[0],
            ]
            row = db.execute("SELECT value FROM meta WHERE key = 'local_changes'").fetchone()
            seen = json.loads(row[0]) if row else None
            if seen == mark:
                return
            if seen is not None and seen[0] == mark[0] and seen[1] <= mark[1]:  # only what changed since
                keys = [
                    f"{b}\n{t}\n{n}"
                    for b, t, n in db.execute(
                        "SELECT DISTINCT base, task, name FROM registry.changes WHERE seq > ?", (seen[1],)
                    )
                ]
                current = {
                    key: row[0]
                    for key in keys
                    for row in db.execute("SELECT source FROM repos WHERE entry = ? AND local = 1", (key,))
                }
                wanted = {}
                for key in keys:
                    wanted.update(
                        self._local_sources(db, "AND v.base = ? AND v.task = ? AND v.name = ?", tuple(key.split("\n")))
                    )
            else:
                current = dict(db.execute("SELECT entry, source FROM repos WHERE local = 1").fetchall())
                wanted = self._local_sources(db, "", ())
            changed = {key: source for key, source in wanted.items() if current.get(key) != source}
            mirrors = [
                (self._mirror_of(_entry_of(key), rows), changed[key]) for key, rows in self._versions_of(db, changed)
            ]
            with db:
                for key in set(current) - set(wanted):
                    db.execute("DELETE FROM repo_tags WHERE repo = (SELECT id FROM repos WHERE entry = ?)", (key,))
                    db.execute("DELETE FROM repos WHERE entry = ? AND local = 1", (key,))
                self._put_all(db, mirrors)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('local_changes', ?)", (json.dumps(mark),))
        finally:
            db.close()

    @staticmethod
    def _local_sources(db: sqlite3.Connection, where: str, args: tuple[str, ...]) -> dict[str, str]:
        """``{entry key: source}`` of the registry's entries (those ``where`` selects) that no
        repository holds; the source (version count, newest push, yank count) says when a
        mirror must be rewritten."""
        return {
            f"{base}\n{task}\n{name}": source
            for base, task, name, source in db.execute(
                "SELECT v.base, v.task, v.name, count(*) || ' ' || max(v.pushed_at) || ' ' || sum(v.yanked) "
                "FROM registry.versions AS v WHERE NOT EXISTS (SELECT 1 FROM main.repos AS r WHERE r.local = 0 "
                f"AND r.entry = v.base || char(10) || v.task || char(10) || v.name) {where} "
                "GROUP BY v.base, v.task, v.name",
                args,
            )
        }

    @classmethod
    def _versions_of(cls, db: sqlite3.Connection, keys: dict[str, str]) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
        """``(entry key, its version rows oldest first)`` for each of ``keys``: one indexed query
        per entry when they are few, one ordered pass over every version when they are many
        (the first sync at a million versions: a query per entry took minutes)."""
        columns = "architecture, head, pushed_at, digest, yanked, tags"
        if len(keys) < cls.ONE_PASS_FROM:
            for key in keys:
                yield (
                    key,
                    db.execute(
                        f"SELECT {columns} FROM registry.versions WHERE base = ? AND task = ? "
                        "AND name = ? ORDER BY major, minor, patch",
                        key.split("\n"),
                    ).fetchall(),
                )
            return
        rows = db.execute(
            f"SELECT base || char(10) || task || char(10) || name, {columns} FROM registry.versions "
            "ORDER BY base, task, name, major, minor, patch"
        )
        for key, group in itertools.groupby(rows, key=lambda row: row[0]):
            if key in keys:
                yield key, [row[1:] for row in group]

    @staticmethod
    def _mirror_of(entry: tuple[str, str, str], rows: list[tuple[Any, ...]]) -> Repo:
        """The mirror of one entry from its version rows (oldest first): ``main`` is its newest
        version that is not yanked (the newest of all when every one is), tags come from that
        version's summary."""
        architecture, head, _, digest, _, summary_tags = ([r for r in rows if not r[4]] or rows)[-1]
        # only the first and the last push are written out: formatting every version's time
        # was most of a large first sync's Python work
        pushed = sorted(rows, key=lambda r: parse_time(r[2]))
        # the summary's tags too (head:..., the artifact's own), so a tag search finds what it
        # finds in the local registry
        tags = dict.fromkeys([*entry_tags(*entry, architecture, head), *json.loads(summary_tags)])
        return Repo(
            f"{LOCAL_NAMESPACE}/{repo_slug(*entry)}",
            hub_time(pushed[0][2]),
            hub_time(pushed[-1][2]),
            version_commit_id(digest),
            entry,
            tuple(tags),
            local=True,
        )

    def search(
        self,
        *,
        author: str | None,
        search: str | None,
        tags: Sequence[str],
        sort: str,
        offset: int,
        limit: int,
        viewer: str | None = None,
    ) -> list[dict[str, Any]]:
        """Repositories matching every filter, ordered by ``sort``, each with its ``ahlEntry``;
        private ones only when ``viewer`` is their namespace's user."""
        hidden = "EXISTS (SELECT 1 FROM private_repos AS p WHERE p.id = repos.id)"
        where, args = [f"(NOT {hidden} OR repos.namespace = ?)"], [viewer or ""]
        if author:
            where.append("repos.namespace = ?")
            args.append(author)
        db = self._reader()
        db.execute("BEGIN")  # one snapshot for the listing and its entries' versions
        try:
            if search:
                where.append(f"repos.name LIKE ? ESCAPE '{LIKE_ESCAPE}'")  # any case (ASCII, as names are)
                args.append(contains_pattern(search))
                name_filter, name_args = self._name_filter(db, search, limit + offset)
                where, args = where + name_filter, args + name_args
            # A tag's own ordered rows drive the listing, unless a metric sorts or a name is
            # searched: a tag row holds no name, so each would cost a read of its repos row.
            walking = bool(tags) and not sort.startswith(METRIC_SORT) and not search
            tag_filter, tag_args = self._tag_filter(db, tags, limit + offset, walking)
            filters = " AND ".join([*where, *tag_filter]) or "1"
            args += tag_args
            columns = (
                "repos.id, repos.sha, repos.created_at, repos.last_modified, repos.tags, repos.entry, "
                "EXISTS (SELECT 1 FROM private_repos AS p WHERE p.id = repos.id)"
            )
            if sort.startswith(METRIC_SORT):
                rows = self._by_metric(db, columns, filters, args, sort.removeprefix(METRIC_SORT), offset, limit)
            elif walking:
                rows = db.execute(
                    f"SELECT {columns} FROM repo_tags AS t CROSS JOIN repos ON repos.id = t.repo WHERE {filters} "
                    f"ORDER BY {self.TAG_ORDER.get(sort, 't.last_modified DESC, t.repo')} LIMIT ? OFFSET ?",
                    (*args, int(limit), int(offset)),
                ).fetchall()
            else:
                rows = db.execute(
                    f"SELECT {columns} FROM repos WHERE {filters} ORDER BY "
                    f"{self.ORDER.get(sort, 'last_modified DESC, id')} LIMIT ? OFFSET ?",
                    (*args, int(limit), int(offset)),
                ).fetchall()
            latest = {row[5]: self._latest_of(db, row[5]) for row in rows if row[5]}
        finally:
            db.execute("COMMIT")
        return [
            {
                "id": i,
                "sha": sha,
                "createdAt": created,
                "lastModified": modified,
                "tags": json.loads(tags),
                "ahlEntry": latest.get(entry),
                "private": bool(private),
            }
            for i, sha, created, modified, tags, entry, private in rows
        ]

    @staticmethod
    def _tag_filter(
        db: sqlite3.Connection, tags: Sequence[str], wanted: int, walk: bool
    ) -> tuple[list[str], list[str]]:
        """SQL conditions for "carries every tag in ``tags``", shaped for the cheaper plan.

        With ``walk`` (a listing in a column's order, from ``repo_tags AS t``), the rarest tag's
        rows are walked in that order and the other tags checked per row: about ``wanted *
        matches / matches of both`` rows, ``wanted`` when the others are on every entry (as
        ``adapterhub-lite`` is). Otherwise common tags are checked per row while the listing walks
        its own order and stops at the limit: about ``wanted * repos / matches`` rows, if the
        matches spread evenly; a rare tag instead drives the query from its own rows, which are
        then sorted: ``matches`` rows. The counts are index range scans of the tag table.
        """
        if not tags:
            return [], []
        total = db.execute("SELECT max(rowid) FROM repos").fetchone()[0] or 0  # rows ever, an upper bound
        # Counted up to the threshold only: the choice below needs no more, and a tag on every
        # repository (100,000 rows at a million versions) is then not counted whole per request.
        cap = max(math.isqrt(wanted * total), RepoIndex.DRIVE_ROWS) + 1
        counts = {
            tag: db.execute(
                "SELECT count(*) FROM (SELECT 1 FROM repo_tags WHERE tag = ? LIMIT ?)", (tag, cap)
            ).fetchone()[0]
            for tag in dict.fromkeys(tags)
        }
        rarest = min(counts, key=counts.__getitem__)
        exists = "EXISTS (SELECT 1 FROM repo_tags WHERE tag = ? AND repo = repos.id)"
        others = [tag for tag in counts if tag != rarest]
        if walk:
            return ["t.tag = ?", *[exists] * len(others)], [rarest, *others]
        if RepoIndex._drives(counts[rarest], wanted, total):
            return ["repos.id IN (SELECT repo FROM repo_tags WHERE tag = ?)", *[exists] * len(others)], [
                rarest,
                *others,
            ]
        return [exists] * len(counts), list(counts)

    @classmethod
    def _name_filter(cls, db: sqlite3.Connection, search: str, wanted: int) -> tuple[list[str], list[str]]:
        """An SQL condition that drives a name search from the names' trigram index when few
        names match; none (the listing's walk checks each name) when many do, or when
        ``search`` is shorter than a trigram. The caller keeps the exact check."""
        if len(search) < 3:
            return [], []
        phrase = '"' + search.replace('"', '""') + '"'  # a trigram phrase: the substring, any case
        total = db.execute("SELECT max(rowid) FROM repos").fetchone()[0] or 0
        cap = max(math.isqrt(wanted * total), cls.DRIVE_ROWS) + 1
        count = db.execute(
            "SELECT count(*) FROM (SELECT 1 FROM repo_names WHERE repo_names MATCH ? LIMIT ?)", (phrase, cap)
        ).fetchone()[0]
        if not cls._drives(count, wanted, total):
            return [], []
        return ["repos.rowid IN (SELECT rowid FROM repo_names WHERE repo_names MATCH ?)"], [phrase]

    @classmethod
    def _drives(cls, matches: int, wanted: int, total: int) -> bool:
        """Whether a filter with ``matches`` rows (counted up to the cap) should drive the
        listing: its rows fetched and sorted rather than the order walked until ``wanted``."""
        return matches <= cls.DRIVE_ROWS or matches**2 < wanted * total

    @staticmethod
    def _by_metric(
        db: sqlite3.Connection, columns: str, filters: str, args: list[str], metric: str, offset: int, limit: int
    ) -> list[tuple[Any, ...]]:
        """ahl's own sort (SPEC 14.6): entries by a numeric dev metric of their latest version,
        best first, then entries without it by id. The first part walks the registry's
        ``latest_metrics`` index and stops at the limit."""
        check_segment(metric, "sort metric")
        entry_of = "m.base || char(10) || m.task || char(10) || m.name"
        scored = db.execute(
            f"SELECT {columns} FROM registry.latest_metrics AS m JOIN repos ON repos.entry = {entry_of} "
            f"WHERE m.metric = ? AND {filters} ORDER BY m.value DESC, repos.id LIMIT ? OFFSET ?",
            (metric, *args, int(limit), int(offset)),
        ).fetchall()
        if len(scored) == limit:
            return scored
        if not scored and offset:  # the page starts among the unscored: skip past every scored one
            offset -= db.execute(
                f"SELECT count(*) FROM registry.latest_metrics AS m JOIN repos ON repos.entry = "
                f"{entry_of} WHERE m.metric = ? AND {filters}",
                (metric, *args),
            ).fetchone()[0]
        else:
            offset = 0
        unscored = db.execute(
            f"SELECT {columns} FROM registry.versions AS v JOIN repos ON repos.entry = "
            f"v.base || char(10) || v.task || char(10) || v.name WHERE v.latest = 1 AND {filters} AND NOT EXISTS "
            f"(SELECT 1 FROM registry.latest_metrics AS m WHERE m.metric = ? AND m.base = v.base AND m.task = v.task "
            f"AND m.name = v.name) ORDER BY repos.id LIMIT ? OFFSET ?",
            (*args, metric, int(limit) - len(scored), max(offset, 0)),
        ).fetchall()
        return scored + unscored

    def _latest_of(self, db: sqlite3.Connection, column: str) -> dict[str, Any] | None:
        """:meth:`_latest_version` of a row's ``entry``: from the directory's registry, or for
        ``KEY\nREPO`` from that repository's own registry (:func:`own_versions_dir`)."""
        key, _, repo_id = column.rpartition("\n")
        if column.count("\n") == 2:
            return self._latest_version(db, column)
        index = own_versions_dir(self.path.parent, repo_id) / "index.sqlite"
        own = sqlite3.connect("file::memory:", uri=True)
        try:  # read-only: a registry deleted meanwhile is not made again as an empty file
            own.execute("ATTACH DATABASE ? AS registry", (f"{index.as_uri()}?mode=ro",))
            return self._latest_version(own, key)
        except sqlite3.OperationalError:
            return None
        finally:
            own.close()

    @staticmethod
    def _latest_version(db: sqlite3.Connection, entry: str) -> dict[str, Any] | None:
        """The newest non-yanked version of an entry, as search lists it (one indexed lookup):
        clients list search results from this instead of asking each repository."""
        row = db.execute(
            "SELECT version, digest, architecture, head, tags, metrics, pushed_at FROM registry.versions "
            "WHERE latest = 1 AND base = ? AND task = ? AND name = ?",
            tuple(entry.split("\n")),
        ).fetchone()
        if row is None:
            return None
        version, digest, architecture, head, tags, metrics, pushed_at = row
        base, task, name = entry.split("\n")
        summary = {"architecture": architecture, "head": head, "tags": json.loads(tags), "metrics": json.loads(metrics)}
        embedding = db.execute(
            "SELECT examples, max_length, vector FROM registry.embeddings WHERE base = ? AND "
            "task = ? AND name = ? AND version = ?",
            (base, task, name, version),
        ).fetchone()
        if embedding is not None:  # the task embedding (SPEC 2.8) rides along in the listing
            examples, max_length, vector = embedding
            values = np.frombuffer(vector, dtype="<f2").astype(np.float32)
            summary["task_embedding"] = TaskEmbedding(values, examples, max_length).to_dict()
        return {
            "base": base,
            "task": task,
            "name": name,
            "version": version,
            "digest": digest,
            "pushed_at": pushed_at,
            "summary": summary,
        }


def contains_pattern(text: str) -> str:
    """A LIKE pattern (with ``ESCAPE`` :data:`LIKE_ESCAPE`) that matches the strings holding
    ``text``: its ``%``, ``_`` and escape characters match only themselves."""
    escaped = "".join(LIKE_ESCAPE + char if char in ("%", "_", LIKE_ESCAPE) else char for char in text)
    return f"%{escaped}%"


def _entry_of(key: str) -> tuple[str, str, str]:
    """The ``(base, task, name)`` of an entry key (its parts joined by newlines)."""
    base, task, name = key.split("\n")
    return base, task, name
