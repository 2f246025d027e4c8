"""ahl serve's mirrors of locally pushed entries follow the registry index's change log.

A push, yank or repair in the local registry appends its entry to ``changes``; the server's
repository index re-reads only the entries logged since it last looked (no scan of every
version per write, which cost seconds at a million versions), and mirrors everything again
when the registry index was rebuilt (its log restarts).
"""

from __future__ import annotations

import sqlite3

from adapterhub_lite.registry.client.local import LocalRegistry
from adapterhub_lite.registry.format.refs import Ref, repo_slug
from adapterhub_lite.registry.server.repo_index import RepoIndex
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

    local.push(art(task="sync", name="one", seed=2), version="1.1.0")
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
