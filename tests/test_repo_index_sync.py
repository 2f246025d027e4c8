"""ahl serve's mirrors of locally pushed entries follow the registry index's change log.

A push, yank or repair in the local registry appends its entry to ``changes``; the server's
repository index re-reads only the entries logged since it last looked (no scan of every
version per write, which cost seconds at a million versions), and mirrors everything again
when the registry index was rebuilt (its log restarts).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys

import pytest

from adapterhub_lite.errors import ConfigError
from adapterhub_lite.registry.client.local import LocalRegistry, _Index
from adapterhub_lite.registry.format.refs import Ref, repo_slug
from adapterhub_lite.registry.server.repo_index import MIN_SQLITE, RepoIndex, check_sqlite
from adapterhub_lite.registry.server.repo_model import Repo
from adapterhub_lite.registry.server.repos import RepoStore

from .conftest import HUB_ID


def mirrors(store: RepoStore) -> dict[str, list[str]]:
    """``{repository id: its version tags}`` of the ``ahl/`` mirrors the store lists."""
    return {
        row["id"]: sorted(name for name, _ in store.refs(store.repo(row["id"])).tags)
        for row in store.search(author="ahl", sort="id")
    }


def test_mirrors_follow_pushes_yanks_and_a_rebuilt_index(tmp_path, art, monkeypatch):
    root = tmp_path / "registry"
    local = LocalRegistry(root)
    local.push(art(task="sync", name="one", seed=1), version="1.0.0")
    store = RepoStore(root)
    one, two = (f"ahl/{repo_slug(HUB_ID, 'sync', n)}" for n in ("one", "two"))
    assert mirrors(store) == {one: ["v1.0.0"]}  # the first sync mirrors everything
    (first,) = store.search(author="ahl")

    local.push(art(task="sync", name="one", seed=2), version="1.1.0")
    (second,) = store.search(author="ahl")  # a mirror's row is rewritten, not kept from its first sync
    assert second["sha"] != first["sha"] and second["lastModified"] >= first["lastModified"]
    local.push(art(task="sync", name="two", seed=3), version="1.0.0")
    local.yank(Ref(HUB_ID, "sync", "one", "1.0.0"))
    assert mirrors(store) == {one: ["v1.0.0", "v1.0.0-yanked", "v1.1.0"], two: ["v1.0.0"]}
    with sqlite3.connect(root / "repos" / "index.sqlite") as db:
        (mark,) = db.execute("SELECT value FROM meta WHERE key = 'local_changes'").fetchone()
    with sqlite3.connect(root / "index.sqlite") as db:
        logged = db.execute("SELECT count(*) FROM changes").fetchone()[0]
    assert mark.endswith(f", {logged}]")  # caught up with the log

    for suffix in ("", "-wal", "-shm"):  # a rebuilt registry index: its change log starts again
        (root / f"index.sqlite{suffix}").unlink(missing_ok=True)
    rebuilt = LocalRegistry(root)
    rebuilt.push(art(task="sync", name="three", seed=4), version="1.0.0")
    monkeypatch.setattr(RepoIndex, "ONE_PASS_FROM", 1)  # a full sync reads every version in one pass
    fresh = RepoStore(root)
    assert mirrors(fresh) == {
        one: ["v1.0.0", "v1.0.0-yanked", "v1.1.0"],
        two: ["v1.0.0"],
        f"ahl/{repo_slug(HUB_ID, 'sync', 'three')}": ["v1.0.0"],
    }


def test_an_older_index_is_migrated_and_every_plan_lists_the_same(tmp_path, art, monkeypatch):
    """An index from before the names' trigram table and the tags' sort keys is filled from its
    rows when opened; a tag's ordered walk, a name's trigram drive and the plain walks list the
    same rows in the same order."""
    root = tmp_path / "registry"
    local = LocalRegistry(root)
    for seed, (task, name) in enumerate([("alpha", "one-Needle"), ("alpha", "two"), ("beta", "needle-x")]):
        local.push(art(task=task, name=name, seed=seed), version="1.0.0")
    queries = [
        {"tags": ["adapterhub-lite"]},
        {"tags": ["adapterhub-lite", "task:alpha"]},
        {"tags": ["task:beta"], "sort": "id"},
        {"tags": ["task:alpha"], "sort": "createdAt"},
        {"search": "NEEDLE"},
        {"search": "needle", "tags": ["task:alpha"]},
        {"search": "ne"},  # shorter than a trigram: no index, each name checked
        {"search": 'a"b'},  # a quote in the phrase is escaped, not a syntax error
        {"search": "needle", "sort": "ahl-metric:accuracy"},
    ]

    def listings(store: RepoStore) -> list[list[str]]:
        return [[row["id"] for row in store.search(**query)] for query in queries]

    expected = listings(RepoStore(root))
    assert len(expected[4]) == 2  # both needles, any case
    assert len(expected[1]) == 2 and expected[7] == []
    with sqlite3.connect(root / "repos" / "index.sqlite") as db:  # the schema before this change
        db.execute("DROP TABLE repo_names")
        db.execute("DROP TABLE repo_tags")
        db.execute("CREATE TABLE repo_tags (tag TEXT, repo TEXT, PRIMARY KEY (tag, repo)) WITHOUT ROWID")
        db.execute("INSERT INTO repo_tags SELECT t.value, r.id FROM repos AS r, json_each(r.tags) AS t")
    assert listings(RepoStore(root)) == expected
    monkeypatch.setattr(RepoIndex, "_drives", classmethod(lambda cls, *counts: False))  # only walks
    assert listings(RepoStore(root)) == expected


def synthetic_registry(root, entries: int) -> None:
    """A registry of ``entries`` entries of 1-2 versions written straight into its index (as
    benchmarks/_registry_scale.py builds one): names with ``_`` and ``x`` in turn, push times
    drawn from a few hours so that many tie, an accuracy on most latest versions."""
    LocalRegistry(root)
    rng = random.Random(0)
    rows = []
    for i in range(entries):
        name = f"n{i:04d}{'-a_b' if i % 3 == 0 else '-axb' if i % 3 == 1 else ''}"
        tags = json.dumps([f"lang:{rng.choice(['en', 'de'])}"])
        count = rng.choice([1, 2])
        for patch in range(count):
            metrics = json.dumps({"accuracy": rng.choice([0.5, 0.75, 0.9])} if i % 4 else {})
            pushed = f"2026-12-01T{rng.randrange(3):02d}:{rng.choice([0, 30]):02d}:00+00:00"
            latest = int(patch == count - 1)
            row = (HUB_ID, f"t{i % 7}", name, f"1.0.{patch}", 1, 0, patch, f"{i:064x}", "pfeiffer", "classification")
            rows.append((*row, tags, metrics, pushed, 0, latest))
    with sqlite3.connect(root / "index.sqlite") as db:
        db.executemany(f"INSERT INTO versions VALUES ({', '.join('?' * 15)})", rows)
        db.execute(_Index._FILL_METRICS)


def test_a_bulk_sync_lists_in_every_order_as_a_sort_of_its_rows(tmp_path, monkeypatch):
    """1,200 mirrors written in one batch (the secondary indexes dropped and built again):
    every listing order, filter and plan gives what a Python sort and filter of the index's
    rows give, page by page; a name search matches ``%``, ``_`` and ``\\`` literally."""
    root = tmp_path / "registry"
    synthetic_registry(root, 1200)
    store = RepoStore(root)
    store.search(limit=1)  # the first sync: every mirror in one batch
    with sqlite3.connect(root / "repos" / "index.sqlite") as db:
        rows = db.execute("SELECT id, name, created_at, last_modified, tags, entry FROM repos").fetchall()
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        with sqlite3.connect(root / "index.sqlite") as registry:
            accuracy = {
                f"{b}\n{t}\n{n}": value
                for b, t, n, value in registry.execute(
                    "SELECT base, task, name, value FROM latest_metrics WHERE metric = 'accuracy'"
                )
            }
    assert len(rows) == 1200 and set(RepoIndex.INDEXES) <= indexes

    def expected(sort: str, search: str | None, tags: list[str]) -> list[str]:
        kept = [
            row
            for row in rows
            if (search is None or search.lower() in row[1].lower()) and set(tags) <= set(json.loads(row[4]))
        ]
        kept.sort(key=lambda row: row[0])  # ties in a date are ordered by id
        if sort == "ahl-metric:accuracy":  # best first, then the unscored by id
            scored = sorted((row for row in kept if row[5] in accuracy), key=lambda row: -accuracy[row[5]])
            kept = scored + [row for row in kept if row[5] not in accuracy]
        elif sort != "id":
            kept.sort(key=lambda row: row[2 if sort == "createdAt" else 3], reverse=True)
        return [row[0] for row in kept]

    queries = [
        (None, []),
        (None, ["task:t3"]),
        (None, ["task:t3", "lang:de"]),
        ("A_B", []),  # any case; "_" is no wildcard: the "axb" names do not match
        ("_", ["lang:en"]),
        ("%", []),
        ("\\", []),
        ("n01", ["task:t2"]),
        ("axb", ["task:t5", "lang:en"]),
    ]
    for drives in (True, False):
        if not drives:  # the other plans: every filter checked while the order is walked
            monkeypatch.setattr(RepoIndex, "_drives", classmethod(lambda cls, *counts: False))
        for sort in ("lastModified", "createdAt", "id", "ahl-metric:accuracy"):
            for search, tags in queries:
                want = expected(sort, search, tags)
                for offset, limit in ((0, 50), (40, 500), (len(want) - 7, 20)):
                    got = [
                        row["id"]
                        for row in store.search(search=search, tags=tags, sort=sort, offset=max(offset, 0), limit=limit)
                    ]
                    assert got == want[max(offset, 0) : max(offset, 0) + limit], (sort, search, tags, offset)
    assert expected("id", "%", []) == [] and len(expected("id", "_", [])) == 400


def test_an_sqlite_without_trigrams_is_refused_in_one_line(tmp_path):
    """SQLite older than 3.34 has no trigram tokenizer: ``ahl serve`` says so in one line and
    exits 2 before it writes any index (not "cannot write the registry directory", which the
    failed CREATE VIRTUAL TABLE used to become)."""
    check_sqlite(MIN_SQLITE)
    check_sqlite((3, 45, 1))
    for old in ((3, 33, 0), (3, 9, 2), (2, 99, 99)):
        with pytest.raises(
            ConfigError, match=r"needs SQLite 3\.34\.0 or newer .* uses SQLite " + ".".join(map(str, old))
        ):
            check_sqlite(old)

    root = tmp_path / "registry"
    # the CLI in a fresh process whose sqlite3 module reports an old library (the stdlib's
    # attribute; everything of ours runs as shipped)
    script = (
        "import sqlite3, sys; sqlite3.sqlite_version_info = (3, 31, 1); "
        "from adapterhub_lite.cli.main import app; "
        "sys.argv = ['ahl', 'serve', '--port', '0', '--registry', sys.argv[1]]; app()"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("error: ahl serve needs SQLite 3.34.0 or newer") and "uses SQLite 3.31.1; upgrade" in line
    assert not (root / "repos" / "index.sqlite").exists()


def test_a_repository_that_takes_an_entry_from_its_mirror_takes_its_tag_rows_too(tmp_path):
    """A repository written over the local mirror of its entry removes the mirror's row and its
    tag rows (which a tag listing and its plan's counts would otherwise still read); a mirror
    written after the repository holds the entry is skipped, tags included."""
    LocalRegistry(tmp_path)
    (tmp_path / "repos").mkdir()
    index = RepoIndex(tmp_path / "repos" / "index.sqlite", tmp_path / "index.sqlite", lambda: [])
    entry = (HUB_ID, "sync", "one")
    stamp = "2026-12-01T00:00:00.000Z"
    mirror = Repo(f"ahl/{repo_slug(*entry)}", stamp, stamp, "a" * 40, entry, ("task:sync", "mirrored"), local=True)
    index.put(mirror)
    index.put(Repo("alice/one", stamp, stamp, "b" * 40, entry, ("task:sync",)))
    for _ in range(2):  # and again after the mirror is written once more
        with sqlite3.connect(tmp_path / "repos" / "index.sqlite") as db:
            assert db.execute("SELECT id FROM repos").fetchall() == [("alice/one",)]
            assert db.execute("SELECT tag, repo FROM repo_tags").fetchall() == [("task:sync", "alice/one")]
        index.put(mirror)
