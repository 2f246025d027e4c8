"""The local registry (registry/SPEC.md §11-12) with real files and real processes: refs, versions,
content addressing, concurrent pushes, yanking, integrity, base compatibility, the search index and
the ``ahl push|pull|search`` commands.

Artifacts are written without training (``conftest.make_artifact``) on the tiny local base, so the
whole file needs no download. Artifacts carry the hub-style base id ``test-org/tiny-bert`` (with the
tiny base's real fingerprint) because a ref's BASE must be a Hugging Face model id; pushing an
artifact whose ``base.model_id`` is a local directory has its own test below.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapterhub_lite import hub
from adapterhub_lite.base import BaseModel, load_base
from adapterhub_lite.errors import (
    AhlError,
    ArtifactError,
    ConfigError,
    IncompatibleBaseError,
    IntegrityError,
    NotFoundError,
    RefError,
    VersionConflictError,
)
from adapterhub_lite.registry.client.local import LocalRegistry
from adapterhub_lite.registry.format.refs import Ref, parse_ref

from .conftest import flip_a_byte, make_artifact, without_root_powers
from .test_cli import ahl_in_process, assert_one_line_error

HUB_ID = "test-org/tiny-bert"
OTHER_ID = "other-org/tiny-bert"
ENTRY = f"{HUB_ID}/sst2/sst2"
AHL = [sys.executable, "-m", "adapterhub_lite"]


# -- helpers ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub_base(tiny_base_model) -> BaseModel:
    """The tiny local base under a Hugging Face style id (same weights, same fingerprint)."""
    return dataclasses.replace(tiny_base_model, model_id=HUB_ID)


@pytest.fixture(scope="module")
def other_base_model(other_tiny_base_dir) -> BaseModel:
    return load_base(str(other_tiny_base_dir))


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "registry"


@pytest.fixture
def registry(root) -> LocalRegistry:
    return LocalRegistry(root)


@pytest.fixture
def art(tmp_path, hub_base):
    """``art(seed=..., task=..., name=..., preset=..., base=...)``: a fresh artifact directory."""
    counter = iter(range(1000))

    def make(
        *,
        seed: int = 0,
        task: str = "sst2",
        name: str = "sst2",
        preset: str | None = "pfeiffer",
        base: BaseModel | None = None,
    ) -> Path:
        out = tmp_path / "artifacts" / f"{task}-{name}-{seed}-{preset}-{next(counter)}"
        return make_artifact(out, base or hub_base, task=task, name=name, seed=seed, preset=preset)

    return make


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def manifests(root: Path) -> list[Path]:
    return sorted((root / "entries").rglob("*.json"))


def assert_same_artifact(pushed: Path, pulled: Path) -> None:
    assert sorted(p.name for p in pulled.iterdir()) == sorted(p.name for p in pushed.iterdir())
    for file in pushed.iterdir():
        assert (pulled / file.name).read_bytes() == file.read_bytes(), file.name


def search_refs(root: Path | LocalRegistry, **filters) -> list[str]:
    return [str(e.ref) for e in hub.search(registry=root, **filters)]


# -- push, search, pull --------------------------------------------------------------------------------


def test_push_search_pull_round_trip(root, art, tiny_base_model, tmp_path):
    artifact = art(seed=3)
    entry = hub.push(artifact, registry=root)
    assert str(entry.ref) == f"{ENTRY}@1.0.0"
    assert entry.digest == "sha256:" + sha256(artifact / "adapter.json")

    # the manifest lists every file; each is a read-only blob named by its sha256
    (manifest_path,) = manifests(root)
    assert manifest_path == root / "entries" / "test-org" / "tiny-bert" / "sst2" / "sst2" / "1.0.0.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    assert set(manifest["files"]) == {p.name for p in artifact.iterdir()}
    for name, record in manifest["files"].items():
        blob = root / "blobs" / "sha256" / record["sha256"][:2] / record["sha256"]
        assert sha256(blob) == record["sha256"] == sha256(artifact / name)
        assert blob.stat().st_mode & 0o777 == 0o444
    assert manifest["summary"]["architecture"] == "pfeiffer"
    assert manifest["summary"]["metrics"] == {"accuracy": pytest.approx(0.53)}
    assert not list((root / "tmp").iterdir()), "staging files left behind"

    (found,) = hub.search(registry=root)
    assert str(found.ref) == f"{ENTRY}@1.0.0" and found.digest == entry.digest and not found.yanked

    dest = tmp_path / "pulled" / "sst2"
    pulled, target = hub.pull(ENTRY, to=dest, base=tiny_base_model, registry=root)
    assert target == dest and pulled.ref == entry.ref
    assert (dest / "adapter.safetensors").read_bytes() == (artifact / "adapter.safetensors").read_bytes()
    assert (dest / "adapter.json").read_bytes() == (artifact / "adapter.json").read_bytes()
    assert_same_artifact(artifact, dest)
    assert [p.name for p in dest.parent.iterdir()] == ["sst2"], "staging directory left behind"

    # an existing non-empty destination is refused, --overwrite replaces it
    with pytest.raises(ArtifactError, match="already exists"):
        hub.pull(ENTRY, to=dest, registry=root)
    hub.pull(f"{ENTRY}@1.0.0", to=dest, registry=root, overwrite=True)
    assert_same_artifact(artifact, dest)
    # the short form TASK/NAME takes the base from --base
    assert hub.resolve("sst2/sst2", base=HUB_ID, registry=root).digest == entry.digest
    assert hub.verify(f"{ENTRY}@1.0.0", registry=root).digest == entry.digest


def test_push_artifact_trained_on_local_directory_base(root, tmp_path, tiny_base_model):
    """SPEC §3 lets base.model_id be the absolute path of a local base directory, and artifacts
    trained with ``--base DIR`` carry one; they must be pushable (and pullable back)."""
    artifact = make_artifact(tmp_path / "local-base-artifact", tiny_base_model)
    assert Path(json.loads((artifact / "adapter.json").read_text())["base"]["model_id"]).is_absolute()
    try:
        entry = hub.push(artifact, registry=root)
    except RefError as exc:
        pytest.fail(f"an artifact trained on a local base directory cannot be pushed: {exc}")
    _, dest = hub.pull(entry.ref, to=tmp_path / "back", base=tiny_base_model, registry=root)
    assert_same_artifact(artifact, dest)


# -- versions ----------------------------------------------------------------------------------------


def test_versioning_rules(registry, root, art):
    a0, a1, a2 = art(seed=0), art(seed=1), art(seed=2)

    assert registry.push(a0).ref.version == "1.0.0"
    before = {p: p.read_bytes() for p in manifests(root)}
    blobs_before = tree(root / "blobs")

    # identical content again: the same version, nothing new stored
    again = registry.push(a0)
    assert again.ref.version == "1.0.0" and again.digest == "sha256:" + sha256(a0 / "adapter.json")
    assert {p: p.read_bytes() for p in manifests(root)} == before
    assert tree(root / "blobs") == blobs_before

    # different content without a version: the next patch version
    assert registry.push(a1).ref.version == "1.0.1"

    # the same explicit version with other content is refused and changes nothing
    with pytest.raises(VersionConflictError, match=r"1\.0\.1") as excinfo:
        registry.push(a2, version="1.0.1")
    assert "--version" in str(excinfo.value)
    assert registry.resolve(parse_ref(f"{ENTRY}@1.0.1")).digest == "sha256:" + sha256(a1 / "adapter.json")
    with pytest.raises(VersionConflictError):
        registry.push(a1, version="1.0.0")

    # identical content to an existing version, explicitly: idempotent
    assert registry.push(a1, version="1.0.1").ref.version == "1.0.1"
    # identical content to an explicit new version: allowed
    assert registry.push(a0, version="2.0.0").digest == "sha256:" + sha256(a0 / "adapter.json")
    assert registry.resolve(parse_ref(ENTRY)).ref.version == "2.0.0"
    # no version: the next patch after the highest
    assert registry.push(a2).ref.version == "2.0.1"
    assert registry.versions(parse_ref(ENTRY)) == ["1.0.0", "1.0.1", "2.0.0", "2.0.1"]

    # a malformed version is refused before anything is written
    n = len(manifests(root))
    for bad in ("1.0", "v3.0.0", "01.0.0", "../../x", "3.0.0/../../x"):
        with pytest.raises(RefError, match="MAJOR.MINOR.PATCH"):
            registry.push(a2, version=bad)
    assert len(manifests(root)) == n


def test_versions_sort_numerically(registry, art):
    registry.push(art(seed=0), version="1.9.0")
    registry.push(art(seed=1), version="1.10.0")
    registry.push(art(seed=2), version="1.2.0")
    ref = parse_ref(ENTRY)
    assert registry.versions(ref) == ["1.2.0", "1.9.0", "1.10.0"]
    assert registry.resolve(ref).ref.version == "1.10.0"
    assert search_refs(registry) == [f"{ENTRY}@1.10.0"]
    assert registry.push(art(seed=3)).ref.version == "1.10.1"


# -- concurrency (real processes) ------------------------------------------------------------------------

# Each worker imports the registry, says "ready", blocks until the parent writes "go" to its stdin,
# then pushes: all workers are released within microseconds of each other, and none burns CPU waiting.
# With SLOW > 0 the worker's write of ahl-registry.json (a new registry's marker) takes SLOW seconds
# longer, as an fsync on a busy disk can, and it says "initializing" when it starts that write.
WORKER = r"""
import json, sys, time
root, artifact, version, slow = sys.argv[1:5]
from adapterhub_lite.registry.format.blobs import BlobStore
from adapterhub_lite.registry.client.local import LocalRegistry
if float(slow):
    write_atomic = BlobStore.write_atomic
    def slow_write_atomic(self, target, data, mode=0o644):
        if target.name == "ahl-registry.json":
            print("initializing", flush=True)
            time.sleep(float(slow))
        return write_atomic(self, target, data, mode)
    BlobStore.write_atomic = slow_write_atomic
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"
try:
    entry = LocalRegistry(root).push(artifact, version=version or None)
    print(json.dumps({"ok": True, "version": entry.ref.version, "digest": entry.digest}))
except Exception as exc:
    print(json.dumps({"ok": False, "error": type(exc).__name__, "message": str(exc)}))
"""


def start_workers(root: Path, jobs: list[tuple[Path, str | None]], slow: float = 0.0) -> list[subprocess.Popen]:
    """One worker process per ``(artifact, version)`` job; returns once every one is ready."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root), str(artifact), version or "", str(slow)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for artifact, version in jobs
    ]
    for proc in procs:
        expect_line(proc, "ready")
    return procs


def expect_line(proc: subprocess.Popen, expected: str) -> None:
    line = proc.stdout.readline()
    if line.strip() != expected:
        proc.kill()
        pytest.fail(f"worker said {line!r}, not {expected!r}: {proc.communicate(timeout=60)}")


def release(*procs: subprocess.Popen) -> None:
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()


def results(procs: list[subprocess.Popen]) -> list[dict]:
    try:
        found = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            found.append(json.loads(out.strip().splitlines()[-1]))
        return found
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def push_at_once(root: Path, jobs: list[tuple[Path, str | None]]) -> list[dict]:
    """Push ``(artifact, version)`` jobs from one process each, all released at the same moment."""
    procs = start_workers(root, jobs)
    release(*procs)
    return results(procs)


def test_concurrent_push_same_artifact_same_version(registry, root, art, tmp_path):
    artifact = art(seed=0)
    results = push_at_once(root, [(artifact, "1.0.0"), (artifact, "1.0.0")])
    assert all(r["ok"] for r in results), results
    assert {r["version"] for r in results} == {"1.0.0"}
    assert {r["digest"] for r in results} == {"sha256:" + sha256(artifact / "adapter.json")}
    assert [p.name for p in manifests(root)] == ["1.0.0.json"]
    assert not list((root / "tmp").iterdir())
    registry.verify(parse_ref(f"{ENTRY}@1.0.0"))
    assert search_refs(root) == [f"{ENTRY}@1.0.0"]


def test_concurrent_push_different_content_same_version(registry, root, art, tmp_path):
    a, b = art(seed=1), art(seed=2)
    results = push_at_once(root, [(a, "1.0.0"), (b, "1.0.0")])
    ok = [r for r in results if r["ok"]]
    failed = [r for r in results if not r["ok"]]
    assert len(ok) == 1 and len(failed) == 1, results
    assert failed[0]["error"] == "VersionConflictError", failed
    assert [p.name for p in manifests(root)] == ["1.0.0.json"]
    stored = registry.verify(parse_ref(f"{ENTRY}@1.0.0"))
    assert stored.digest == ok[0]["digest"]
    winner = a if ok[0]["digest"] == "sha256:" + sha256(a / "adapter.json") else b
    assert stored.digest == "sha256:" + sha256(winner / "adapter.json")


def test_concurrent_push_eight_artifacts(registry, root, art, tmp_path):
    # four entries x two versions each: pushes of one entry contend for its lock, all share the index
    jobs = [(art(seed=i, name=f"n{i % 4}"), f"1.0.{i // 4}") for i in range(8)]
    results = push_at_once(root, jobs)
    assert all(r["ok"] for r in results), results
    for (artifact, version), result in zip(jobs, results, strict=True):
        assert result["version"] == version
        name = json.loads((artifact / "adapter.json").read_text())["name"]
        entry = hub.verify(f"{HUB_ID}/sst2/{name}@{version}", registry=root)
        assert entry.digest == "sha256:" + sha256(artifact / "adapter.json") == result["digest"]
    assert len(manifests(root)) == 8
    assert search_refs(root) == [f"{HUB_ID}/sst2/n{i}@1.0.1" for i in range(4)]
    assert not list((root / "tmp").iterdir())


def test_concurrent_first_use_of_a_new_registry(art, tmp_path):
    """Two processes pushing into a registry directory that does not exist yet (two CI jobs on a fresh
    machine): while the first is still creating it, the second must not take the half-created
    directory for "not a registry"."""
    root = tmp_path / "fresh-registry"
    first, second = start_workers(root, [(art(seed=0, name="a"), None)], slow=1.0) + start_workers(
        root, [(art(seed=1, name="b"), None)]
    )
    release(first)
    expect_line(first, "initializing")  # sub-directories made, ahl-registry.json being written
    release(second)
    found = results([first, second])
    assert all(r["ok"] for r in found), f"concurrent first use of a new registry directory fails: {found}"
    assert search_refs(root) == [f"{HUB_ID}/sst2/a@1.0.0", f"{HUB_ID}/sst2/b@1.0.0"]


# -- resolution and yanking ---------------------------------------------------------------------------


def test_resolve_latest_version_and_digest(registry, root, art):
    a0, a1 = art(seed=0), art(seed=1)
    d0, d1 = (registry.push(a).digest for a in (a0, a1))
    assert d0 != d1

    assert hub.resolve(ENTRY, registry=root).ref.version == "1.0.1"
    assert hub.resolve(f"{ENTRY}@latest", registry=root).ref.version == "1.0.1"
    assert hub.resolve(f"{ENTRY}@1.0.0", registry=root).digest == d0
    assert hub.resolve(f"{ENTRY}@{d0}", registry=root).ref.version == "1.0.0"
    assert hub.resolve(f"{ENTRY}@{d1}", registry=root).ref.version == "1.0.1"
    # the same content under two versions: the digest means the newest of them
    registry.push(a0, version="1.1.0")
    assert hub.resolve(f"{ENTRY}@{d0}", registry=root).ref.version == "1.1.0"

    with pytest.raises(NotFoundError, match="1.0.9"):
        hub.resolve(f"{ENTRY}@1.0.9", registry=root)
    with pytest.raises(NotFoundError, match="digest"):
        hub.resolve(f"{ENTRY}@sha256:{'0' * 64}", registry=root)
    with pytest.raises(NotFoundError, match="ahl search"):
        hub.resolve(f"{HUB_ID}/sst2/missing", registry=root)
    with pytest.raises(NotFoundError):  # the short form takes the default base, which has nothing here
        hub.resolve("sst2/sst2", registry=root)


def test_yank(registry, root, art, tmp_path, caplog):
    a0, a1 = art(seed=0), art(seed=1)
    registry.push(a0)
    d1 = registry.push(a1).digest
    manifest_101 = (root / "entries" / "test-org" / "tiny-bert" / "sst2" / "sst2" / "1.0.1.json").read_bytes()

    for not_exact in (ENTRY, f"{ENTRY}@latest", f"{ENTRY}@{d1}"):
        with pytest.raises(RefError, match="exact version"):
            hub.yank(not_exact, registry=root)
    assert search_refs(root) == [f"{ENTRY}@1.0.1"]

    yanked = hub.yank(f"{ENTRY}@1.0.1", registry=root)
    assert yanked.yanked and yanked.ref.version == "1.0.1"
    assert search_refs(root) == [f"{ENTRY}@1.0.0"]
    assert hub.resolve(ENTRY, registry=root).ref.version == "1.0.0"
    assert hub.resolve(f"{ENTRY}@latest", registry=root).ref.version == "1.0.0"
    # still there by exact version and by digest, unchanged
    assert hub.resolve(f"{ENTRY}@1.0.1", registry=root).yanked
    assert hub.resolve(f"{ENTRY}@{d1}", registry=root).ref.version == "1.0.1"
    with caplog.at_level(logging.WARNING, logger="adapterhub_lite"):
        _, dest = hub.pull(f"{ENTRY}@1.0.1", to=tmp_path / "yanked", registry=root)
    assert_same_artifact(a1, dest)
    assert f"{ENTRY}@1.0.1 is yanked: its publisher withdrew it; pulled because it was named exactly" in caplog.text
    assert (root / "entries" / "test-org" / "tiny-bert" / "sst2" / "sst2" / "1.0.1.json").read_bytes() == manifest_101
    assert registry.versions(parse_ref(ENTRY)) == ["1.0.0"]
    assert registry.versions(parse_ref(ENTRY), include_yanked=True) == ["1.0.0", "1.0.1"]
    # the next automatic version still skips past the yanked one
    assert registry.push(art(seed=2)).ref.version == "1.0.2"

    hub.yank(f"{ENTRY}@1.0.0", registry=root)
    hub.yank(f"{ENTRY}@1.0.2", registry=root)
    assert search_refs(root) == []
    message = f"every version of {ENTRY} is yanked (1.0.0, 1.0.1, 1.0.2); name one to use it anyway, e.g. {ENTRY}@1.0.2"
    for call in (lambda: hub.resolve(ENTRY, registry=root), lambda: hub.pull(ENTRY, to=tmp_path / "x", registry=root)):
        with pytest.raises(NotFoundError) as caught:
            call()
        assert str(caught.value) == message
    with pytest.raises(NotFoundError):
        hub.yank(f"{ENTRY}@9.9.9", registry=root)


# -- integrity -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("damaged", ["adapter.safetensors", "adapter.json"])
def test_damaged_blob_is_detected(registry, root, art, tmp_path, damaged):
    artifact = art(seed=0)
    entry = registry.push(artifact)
    blob = registry.blob_store.path(entry.manifest["files"][damaged]["sha256"])
    assert blob.stat().st_mode & 0o777 == 0o444
    flip_a_byte(blob)

    dest = tmp_path / "out" / "pulled"
    with pytest.raises(IntegrityError, match=damaged):
        hub.pull(ENTRY, to=dest, registry=root)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == [], "staging directory left behind"
    with pytest.raises(IntegrityError, match=damaged):
        hub.verify(f"{ENTRY}@1.0.0", registry=root)


def test_missing_blob_is_detected(registry, root, art, tmp_path):
    entry = registry.push(art(seed=0))
    registry.blob_store.path(entry.manifest["files"]["metrics.jsonl"]["sha256"]).unlink()
    with pytest.raises(IntegrityError, match="metrics.jsonl"):
        hub.verify(ENTRY, registry=root)
    with pytest.raises(IntegrityError, match="metrics.jsonl"):
        hub.pull(ENTRY, to=tmp_path / "pulled", registry=root)
    assert not (tmp_path / "pulled").exists()


def test_pull_with_incompatible_base(
    registry, root, art, tmp_path, tiny_base_model, other_base_model, other_tiny_base_dir
):
    registry.push(art(seed=0))
    ours, theirs = tiny_base_model.fingerprint, other_base_model.fingerprint
    assert ours.weights_sha256 != theirs.weights_sha256

    dest = tmp_path / "not-created" / "pulled"
    for base in (other_base_model, str(other_tiny_base_dir)):
        with pytest.raises(IncompatibleBaseError) as excinfo:
            hub.pull(ENTRY, to=dest, base=base, registry=root)
        assert not dest.parent.exists()
    message = str(excinfo.value)
    assert HUB_ID in message and "weights_sha256" in message
    assert ours.weights_sha256[:12] in message and theirs.weights_sha256[:12] in message
    # like api.load's message ("trained on X (...) but the base is Y (...)"), name the requested base
    assert other_base_model.model_id in message, (
        f"the incompatible-base error names only the stored base, not the requested one: {message}"
    )


# -- the search index -----------------------------------------------------------------------------------


def snapshot_of(root: Path) -> dict[str, tuple[int, bytes | None]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_mode, p.read_bytes() if p.is_file() else None)
        for p in root.rglob("*")
    }


@pytest.mark.parametrize("index", ["kept", "missing"])
def test_a_read_only_registry_is_searched_pulled_and_verified_without_a_write(root, art, tmp_path, index):
    """A registry its user cannot write (a shared or read-only mount): the read verbs work, the
    index is read in place or, when missing, rebuilt in memory; a push fails in one line; nothing
    in the registry changes (as root, without the powers that ignore file modes)."""
    registry = LocalRegistry(root)
    registry.push(art(seed=0, task="sst2", name="a"))
    registry.push(art(seed=1, task="trec", name="b"))
    del registry
    if index == "missing":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{root / 'index.sqlite'}{suffix}").unlink(missing_ok=True)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = snapshot_of(root)

    def ahl(*args: object) -> subprocess.CompletedProcess:
        command = [*AHL, *map(str, args), "--registry", root]
        return subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=without_root_powers)

    try:
        found = ahl("search", "--json")
        assert found.returncode == 0, found.stderr
        refs = sorted(row["ref"] for row in json.loads(found.stdout))
        assert refs == [f"{HUB_ID}/sst2/a@1.0.0", f"{HUB_ID}/trec/b@1.0.0"]
        pulled = ahl("pull", f"{HUB_ID}/trec/b", "--to", tmp_path / "pulled")
        assert pulled.returncode == 0 and (tmp_path / "pulled" / "adapter.safetensors").is_file(), pulled.stderr
        verified = ahl("verify", f"{HUB_ID}/sst2/a@1.0.0")
        assert verified.returncode == 0 and "verified" in verified.stdout, verified.stderr
        refused = ahl("push", tmp_path / "pulled", "--version", "2.0.0")
        assert refused.returncode != 0 and refused.stderr.strip().count("\n") == 0
        assert refused.stderr.startswith(f"error: cannot write the registry directory {root}")
        assert snapshot_of(root) == before
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_index_is_rebuilt_when_deleted(root, art):
    registry = LocalRegistry(root)
    registry.push(art(seed=0, task="sst2", name="a"))
    registry.push(art(seed=1, task="sst2", name="a"))
    registry.push(art(seed=2, task="trec", name="b", preset="houlsby"))
    registry.push(art(seed=3, task="trec", name="c"))
    registry.yank(parse_ref(f"{HUB_ID}/sst2/a@1.0.1"))
    registry.yank(parse_ref(f"{HUB_ID}/trec/c@1.0.0"))
    expected = [f"{HUB_ID}/sst2/a@1.0.0", f"{HUB_ID}/trec/b@1.0.0"]
    assert search_refs(registry) == expected
    del registry

    for suffix in ("", "-wal", "-shm"):
        Path(f"{root / 'index.sqlite'}{suffix}").unlink(missing_ok=True)
    rebuilt = LocalRegistry(root)
    assert (root / "index.sqlite").is_file()
    assert search_refs(rebuilt) == expected
    assert search_refs(rebuilt, architecture="houlsby") == [f"{HUB_ID}/trec/b@1.0.0"]
    assert search_refs(rebuilt, sort="accuracy") == [f"{HUB_ID}/trec/b@1.0.0", f"{HUB_ID}/sst2/a@1.0.0"]
    assert rebuilt.resolve(parse_ref(f"{HUB_ID}/sst2/a")).ref.version == "1.0.0"


def test_search_filters(root, art, hub_base):
    other = dataclasses.replace(hub_base, model_id=OTHER_ID)
    one_part = dataclasses.replace(hub_base, model_id="tiny-bert")
    registry = LocalRegistry(root)
    registry.push(art(seed=1, task="sst2", name="sst2-pfeiffer"))  # accuracy 0.51
    registry.push(art(seed=5, task="sst2", name="sst2-houlsby", preset="houlsby"))  # 0.55
    registry.push(art(seed=3, task="trec", name="trec-qc"))  # 0.53
    registry.push(art(seed=2, task="imdb", name="imdb-head", preset=None))  # 0.52
    registry.push(art(seed=9, task="sst2", name="sst2-pfeiffer", base=other))  # 0.59
    registry.push(art(seed=4, task="sst2", name="sst2-pfeiffer", base=one_part))  # 0.54
    A, B = f"{HUB_ID}/sst2/sst2-pfeiffer@1.0.0", f"{HUB_ID}/sst2/sst2-houlsby@1.0.0"
    C, E = f"{HUB_ID}/trec/trec-qc@1.0.0", f"{HUB_ID}/imdb/imdb-head@1.0.0"
    D, F = f"{OTHER_ID}/sst2/sst2-pfeiffer@1.0.0", "tiny-bert/sst2/sst2-pfeiffer@1.0.0"

    assert sorted(search_refs(root)) == sorted([A, B, C, D, E, F])
    assert sorted(search_refs(root, task="sst2")) == sorted([A, B, D, F])
    assert sorted(search_refs(root, base=HUB_ID)) == sorted([A, B, C, E])
    assert search_refs(root, base=OTHER_ID) == [D]
    assert search_refs(root, base="tiny-bert") == [F]
    assert search_refs(root, architecture="houlsby") == [B]
    assert sorted(search_refs(root, architecture="pfeiffer")) == sorted([A, C, D, F])
    assert search_refs(root, architecture="head_only") == [E]
    assert search_refs(root, name="HOULSBY") == [B]
    assert sorted(search_refs(root, name="sst2-")) == sorted([A, B, D, F])
    assert search_refs(root, tag="task:trec") == [C]
    assert len(search_refs(root, tag="head:classification")) == 6
    assert search_refs(root, tag="task:nope") == []
    assert search_refs(root, sort="accuracy") == [D, B, F, C, E, A]
    assert search_refs(root, sort="accuracy", limit=2) == [D, B]
    assert len(search_refs(root, limit=3)) == 3
    assert search_refs(root, task="sst2", base=HUB_ID, architecture="pfeiffer") == [A]
    assert search_refs(root, task="sst2", sort="accuracy", limit=1) == [D]

    # one row per entry, its newest version, with that version's metrics
    registry.push(art(seed=7, task="sst2", name="sst2-pfeiffer"))  # 0.57
    assert search_refs(root, base=HUB_ID, name="pfeiffer") == [f"{HUB_ID}/sst2/sst2-pfeiffer@1.0.1"]
    assert search_refs(root, sort="accuracy", limit=2) == [D, f"{HUB_ID}/sst2/sst2-pfeiffer@1.0.1"]
    (entry,) = hub.search(registry=root, base=HUB_ID, name="sst2-pfeiffer")
    assert entry.summary["metrics"]["accuracy"] == pytest.approx(0.57)


def test_metric_sort_follows_latest_versions_and_survives_an_old_index(root, art):
    """Sorting by a metric walks ``latest_metrics``: the latest version's value counts, entries
    without a numeric value come last, and an index written before the table existed is filled on open."""
    registry = LocalRegistry(root)
    registry.push(art(seed=1, task="sst2", name="a"))  # accuracy 0.51
    registry.push(art(seed=4, task="sst2", name="b"))  # 0.54
    unscored = art(seed=2, task="trec", name="c")
    meta = json.loads((unscored / "adapter.json").read_text())
    meta["metrics"]["dev"] = {"accuracy": "n/a", "macro_f1": 0.4}  # not a number: not sortable by accuracy
    (unscored / "adapter.json").write_text(json.dumps(meta))
    registry.push(unscored)
    registry.push(art(seed=9, task="sst2", name="a"))  # a@1.0.1: 0.59
    A0, A1, B, C = (
        f"{HUB_ID}/sst2/a@1.0.0",
        f"{HUB_ID}/sst2/a@1.0.1",
        f"{HUB_ID}/sst2/b@1.0.0",
        f"{HUB_ID}/trec/c@1.0.0",
    )
    assert search_refs(root, sort="accuracy") == [A1, B, C]
    assert search_refs(root, sort="accuracy", limit=1) == [A1]
    assert search_refs(root, sort="macro_f1") == [C, A1, B]  # scored first, then by entry
    registry.yank(parse_ref(A1))
    assert search_refs(root, sort="accuracy") == [B, A0, C]
    assert search_refs(root, sort="accuracy", task="trec") == [C]

    with sqlite3.connect(root / "index.sqlite") as db:
        db.execute("DROP TABLE latest_metrics")
    assert search_refs(LocalRegistry(root), sort="accuracy") == [B, A0, C]


# -- refs --------------------------------------------------------------------------------------------

BAD_REFS = {
    "../x": "not a valid name",
    "a/../b": "not a valid name",
    "/abs/path": "looks like a path",
    "a//b": "is empty",
    "a/": "is empty",
    "": "empty",
    "x": "1 parts",
    "a/b/c/d/e": "5 parts",
    "t/" + "n" * 97: "97 characters",
    "\uff54rec/qc": "U+FF54",  # fullwidth t
    "tr\u0435c/qc": "U+0435",  # Cyrillic ie
    "trec/q\u0430": "U+0430",  # Cyrillic a
    "trec\\qc": "looks like a path",
    "t/n@1.0": "MAJOR.MINOR.PATCH",
    "t/n@v1.0.0": "MAJOR.MINOR.PATCH",
    "t/n@sha256:abc": "64",
    "t/n@": "names no version",
    "t/n@01.0.0": "MAJOR.MINOR.PATCH",
    "t/n@sha256:" + "A" * 64: "lowercase",
    "./t/n": "not a valid name",
    "~/x": "not a valid name",
    "t/n\x00": "not a valid name",
    "t/n\n": "not a valid name",
    "t/.hidden": "not a valid name",
    "x" * 401: "400",
}


@pytest.mark.parametrize("text", list(BAD_REFS), ids=[repr(t[:24]) for t in BAD_REFS])
def test_bad_refs_are_refused_with_a_helpful_message(text):
    with pytest.raises(RefError) as excinfo:
        parse_ref(text)
    message = str(excinfo.value)
    assert BAD_REFS[text] in message
    assert "\n" not in message.replace("\\n", "") and len(message) < 300


def test_bad_refs_never_touch_paths_outside_the_registry(tmp_path, monkeypatch, art, hub_base):
    root = tmp_path / "deep" / "er" / "registry"
    registry = LocalRegistry(root)
    registry.push(art(seed=0))
    sneaky = art(seed=1)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = tree(tmp_path)

    for text in BAD_REFS:
        with pytest.raises(RefError):
            hub.resolve(text, registry=root)
        with pytest.raises(RefError):
            hub.pull(text, to=cwd / "dest", registry=root)
        with pytest.raises(RefError):
            hub.pull(text, registry=root)  # default destination ./NAME-VERSION
        with pytest.raises(RefError):
            hub.yank(text, registry=root)
    # Ref objects built by hand (bypassing parse_ref) are validated again before any path is used
    hostile = [
        Ref("..", "..", "x"),
        Ref(HUB_ID, "..", "x"),
        Ref(HUB_ID, "sst2", "../../../x"),
        Ref("/etc", "sst2", "sst2"),
        Ref(HUB_ID, "sst2", "sst2", version="../../../../x"),
    ]
    for ref in hostile:
        for call in (registry.resolve, registry.verify, registry.yank, lambda r: registry.pull(r, cwd / "dest")):
            with pytest.raises(RefError):
                call(ref)
        if ref.version is None:
            with pytest.raises(RefError):
                registry.versions(ref)
    # an artifact whose metadata names a path as its task or name is refused too
    meta = json.loads((sneaky / "adapter.json").read_text())
    for field, value in (("name", "../../../escaped"), ("task", ".."), ("name", "/abs")):
        (sneaky / "adapter.json").write_text(json.dumps({**meta, field: value}))
        with pytest.raises(RefError):
            registry.push(sneaky)

    created = tree(tmp_path) - before
    outside = sorted(p for p in created if not (tmp_path / p).resolve().is_relative_to(root.resolve()))
    assert outside == []
    assert len(manifests(root)) == 1


def test_verify_with_a_bad_ref(tmp_path, monkeypatch):
    """``verify`` takes an artifact directory or a ref; a bad ref that is no directory is a RefError."""
    root = tmp_path / "registry"
    LocalRegistry(root)
    monkeypatch.chdir(tmp_path)
    for text in BAD_REFS:
        if not text:
            continue  # Path("") is the current directory, which verify treats as an artifact directory
        try:
            hub.verify(text, registry=root)
        except RefError:
            pass
        except OSError as exc:
            pytest.fail(
                f"hub.verify({text[:12]!r}... ({len(text)} chars)) raises a raw "
                f"{type(exc).__name__} from Path.is_dir() (hub.py verify), not RefError: {str(exc)[:60]}"
            )
    with pytest.raises(AhlError):
        hub.verify("", registry=root)


# -- registry directory -----------------------------------------------------------------------------


def test_directory_that_is_not_a_registry(tmp_path):
    root = tmp_path / "my-documents"
    root.mkdir()
    (root / "thesis.txt").write_text("precious")
    with pytest.raises(ConfigError, match="not an adapterhub-lite registry") as excinfo:
        LocalRegistry(root)
    assert str(root) in str(excinfo.value)
    with pytest.raises(ConfigError, match="not an adapterhub-lite registry"):
        hub.search(registry=root)
    assert tree(root) == {"thesis.txt"}, "nothing may be written into a directory that is not a registry"

    # an empty directory becomes a registry
    (tmp_path / "empty").mkdir()
    LocalRegistry(tmp_path / "empty")
    assert json.loads((tmp_path / "empty" / "ahl-registry.json").read_text()) == {"layout": 1}
    LocalRegistry(tmp_path / "empty")  # and opens again


def test_a_mistyped_registry_is_an_error_and_makes_nothing(tmp_path, monkeypatch):
    """Reading a registry that is not there (a typo) says so instead of making an empty one
    where the path points; a URL of another scheme is refused, not taken for a directory."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotFoundError, match="no registry at typo-reg"):
        hub.search(registry="typo-reg")
    with pytest.raises(NotFoundError, match="no registry at typo-reg"):
        hub.resolve("sst2/sst2", registry="typo-reg")
    for url in ("ftp://host/x", "file:///tmp/x"):
        with pytest.raises(ConfigError, match="registries are directories, http"):
            hub.search(registry=url)
        with pytest.raises(ConfigError, match="registries are directories, http"):
            hub.push(tmp_path / "any", registry=url)
    assert list(tmp_path.iterdir()) == []


def test_reading_a_directory_that_is_no_registry_writes_nothing(tmp_path, monkeypatch):
    """search, pull, resolve, verify and yank on an existing empty directory say that there is
    no registry there, as for a missing one, and leave it empty; a push still makes one."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for call in (
        lambda: hub.search(registry=empty),
        lambda: hub.resolve("sst2/sst2", registry=empty),
        lambda: hub.pull("sst2/sst2", registry=empty, to=tmp_path / "out"),
        lambda: hub.verify("sst2/sst2@1.0.0", registry=empty),
        lambda: hub.yank("sst2/sst2@1.0.0", registry=empty),
    ):
        with pytest.raises(NotFoundError, match=f"no registry at {empty} .*push to make one"):
            call()
    proc = ahl_in_process("search", "--registry", empty)
    assert_one_line_error(proc, f"no registry at {empty}", "ahl-registry.json")
    assert proc.returncode == NotFoundError.exit_code
    assert_one_line_error(ahl_in_process("search", env={"AHL_REGISTRY": str(empty)}), "no registry at")
    assert list(empty.iterdir()) == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('{"layout": 2}', "names layout 2; this adapterhub-lite reads layout 1: upgrade adapterhub-lite"),
        ('{"layout": "1"}', """names layout '1'; this adapterhub-lite reads layout 1: it should hold {"layout": 1}"""),
        ("not json", """(not JSON); it names the registry's layout and should hold {"layout": 1}: restore it"""),
        ("[1]", "(not a JSON object); it names the registry's layout"),
    ],
)
def test_a_damaged_or_newer_layout_marker_is_refused_by_reads_and_writes(tmp_path, art, marker, message):
    """ahl-registry.json was only checked to exist: a newer adapterhub-lite's registry or a
    damaged marker was read as this layout. Now every open refuses it in one line, writing nothing."""
    root = tmp_path / "registry"
    hub.push(art(), registry=root)
    (root / "ahl-registry.json").write_text(marker)
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    for args in (("search",), ("push", art(seed=1), "--version", "2.0.0")):
        proc = ahl_in_process(*args, "--registry", root)
        assert_one_line_error(proc, f"{root / 'ahl-registry.json'} {message}" if message[0] != "(" else message)
        assert proc.returncode == ConfigError.exit_code
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before
    assert (root / "ahl-registry.json").read_text() == marker


def test_a_directory_that_is_something_else_is_no_registry(tmp_path, art):
    """--registry at a directory of other files, or at an artifact, is refused in one line with the
    fix that fits a read (check --registry) or a push (choose another directory); nothing written."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.csv").write_text("x")
    artifact = art()
    before = sorted(p.name for p in artifact.iterdir())
    cases = [
        (
            ("search", "--registry", notes),
            f"{notes} is not an adapterhub-lite registry (no ahl-registry.json, holds a.csv); check --registry",
        ),
        (("push", artifact, "--registry", notes), "holds a.csv); choose an empty or registry directory"),
        (("search", "--registry", artifact), f"{artifact} is an artifact directory, not a registry; check --registry"),
    ]
    for args, message in cases:
        proc = ahl_in_process(*args)
        assert_one_line_error(proc, message)
        assert proc.returncode == ConfigError.exit_code
    assert [p.name for p in notes.iterdir()] == ["a.csv"] and sorted(p.name for p in artifact.iterdir()) == before


def test_an_empty_search_says_why_instead_of_an_empty_table(tmp_path, art):
    root = tmp_path / "registry"
    hub.push(art(), registry=root)
    missed = ahl_in_process("search", "--registry", root, "--task", "nope", "--arch", "houlsby")
    assert missed.returncode == 0 and missed.stdout.strip() == (
        "no adapter matches task nope, arch houlsby; ahl search without them lists every adapter"
    )
    hub.yank(f"{ENTRY}@1.0.0", registry=root)
    empty = ahl_in_process("search", "--registry", root)
    assert empty.returncode == 0 and empty.stdout.startswith("the registry lists no adapters (yanked versions")
    assert json.loads(ahl_in_process("search", "--registry", root, "--json").stdout) == []


def test_search_refuses_an_unknown_architecture_or_sort_metric(tmp_path, art):
    """An --arch or --sort value no entry can have is one line listing the choices, not an
    empty or unsorted result (mse is left out: search sorts best first, i.e. highest)."""
    root = tmp_path / "registry"
    hub.push(art(), registry=root)
    cases = [
        (("--arch", "nope"), "unknown --arch 'nope'; choose one of: pfeiffer, houlsby, head_only, fusion"),
        (("--sort", "nope"), "unknown --sort metric 'nope'; choose one of: accuracy, macro_f1, pearson, spearman"),
        (("--sort", "mse"), "unknown --sort metric 'mse'"),
    ]
    for args, message in cases:
        proc = ahl_in_process("search", "--registry", root, *args)
        assert_one_line_error(proc, message)
        assert proc.returncode == ConfigError.exit_code and proc.stdout == ""
    with pytest.raises(ConfigError, match="unknown --arch 'Pfeiffer'"):
        hub.search(registry=root, architecture="Pfeiffer")
    for arch in ("pfeiffer", "houlsby", "head_only", "fusion"):
        hub.search(registry=root, architecture=arch)
    assert len(hub.search(registry=root, sort="macro_f1")) == 1


def test_registry_path_that_is_a_file(tmp_path):
    path = tmp_path / "registry"
    path.write_text("not a directory")
    try:
        LocalRegistry(path)
    except AhlError as exc:
        assert str(path) in str(exc)
    except OSError as exc:
        pytest.fail(
            f"a registry path that is a file raises a raw {type(exc).__name__} ({exc}), "
            f"which the CLI prints as a traceback, instead of an AhlError"
        )
    else:
        pytest.fail("a file was accepted as a registry directory")


# -- the command line ------------------------------------------------------------------------------


def ahl(*args: object) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("AHL_REGISTRY", None)
    return subprocess.Popen([*AHL, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def test_cli_push_search_pull(tmp_path, art):
    root = tmp_path / "registry"
    artifact = art(seed=4, task="trec", name="qc")
    dest = tmp_path / "pulled" / "qc"
    bad_dest = tmp_path / "bad-dest"
    bad = ahl("pull", "tr\u0435c/../qc", "--registry", root, "--to", bad_dest)  # runs beside the others

    rc, out, err = finish(ahl("push", artifact, "--registry", root))
    assert rc == 0, err
    assert f"{HUB_ID}/trec/qc@1.0.0" in out

    rc, out, err = finish(ahl("search", "--json", "--task", "trec", "--registry", root))
    assert rc == 0, err
    (row,) = json.loads(out)
    assert row["ref"] == f"{HUB_ID}/trec/qc@1.0.0" and row["version"] == "1.0.0" and not row["yanked"]
    assert row["digest"] == "sha256:" + sha256(artifact / "adapter.json")
    assert row["architecture"] == "pfeiffer" and row["metrics"] == {"accuracy": pytest.approx(0.54)}
    assert "task:trec" in row["tags"]

    rc, out, err = finish(ahl("pull", row["ref"], "--to", dest, "--registry", root))
    assert rc == 0, err
    assert_same_artifact(artifact, dest)

    rc, out, err = finish(bad)
    assert rc == RefError.exit_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "U+0435" in lines[0], err
    assert "Traceback" not in err and out == ""
    assert not bad_dest.exists()


def test_cli_info_verify_yank_in_process(tmp_path, art, monkeypatch):
    """The same commands in-process (no interpreter start): info REF, verify REF, yank REF."""
    from adapterhub_lite.cli.main import app  # here: ruff sorts this cli/-installed package as third-party

    root = tmp_path / "registry"
    monkeypatch.delenv("AHL_REGISTRY", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    artifact = art(seed=0)
    entry = hub.push(artifact, registry=root)
    runner = CliRunner()

    result = runner.invoke(app, ["info", f"{ENTRY}@1.0.0", "--json", "--registry", str(root)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == entry.manifest
    result = runner.invoke(app, ["info", ENTRY, "--registry", str(root)])
    assert result.exit_code == 0, result.output
    assert f"{ENTRY}@1.0.0" in result.stdout and "pfeiffer" in result.stdout
    # metrics and tags as a person reads them, not Python reprs
    accuracy = entry.summary["metrics"]["accuracy"]
    assert f"accuracy {accuracy:.3f}" in result.stdout and "{'" not in result.stdout and "['" not in result.stdout
    result = runner.invoke(app, ["info", str(artifact), "--json"])  # a directory is still an artifact
    assert result.exit_code == 0 and json.loads(result.stdout)["base"]["model_id"] == HUB_ID

    result = runner.invoke(app, ["verify", ENTRY, "--registry", str(root)])
    assert result.exit_code == 0 and "verified" in result.stdout
    result = runner.invoke(app, ["yank", ENTRY, "--registry", str(root)])
    assert result.exit_code == RefError.exit_code and "exact version" in result.output
    result = runner.invoke(app, ["yank", f"{ENTRY}@1.0.0", "--registry", str(root)])
    assert result.exit_code == 0 and "yanked" in result.stdout
    result = runner.invoke(app, ["info", ENTRY, "--registry", str(root)])
    assert result.exit_code == NotFoundError.exit_code and result.output.startswith("error: ")
    result = runner.invoke(app, ["info", f"{ENTRY}@1.0.0", "--json", "--registry", str(root)])
    assert result.exit_code == 0 and json.loads(result.stdout)["digest"] == entry.digest
    shutil.rmtree(root / "blobs")
    result = runner.invoke(app, ["verify", f"{ENTRY}@1.0.0", "--registry", str(root)])
    assert result.exit_code == IntegrityError.exit_code and "damaged" in result.output

    # info on a yanked version must say so
    result = runner.invoke(app, ["info", f"{ENTRY}@1.0.0", "--registry", str(root)])
    assert result.exit_code == 0, result.output
    assert "yanked" in result.stdout, (
        "`ahl info REF` does not show that the version is yanked (cli/registry.py entry_table: the "
        f"title suffix ' [yanked]' is parsed as Rich markup and vanishes):\n{result.stdout}"
    )


# -- a local write killed between its files and its index row ---------------------------------


@pytest.mark.parametrize("step", ["push:manifest", "yank:marker"])
def test_a_write_killed_mid_way_is_repaired_by_the_next_open(step, tmp_path, art):
    """SIGKILL after the manifest (or yank marker) is written and before the index row: the next
    open of the registry re-indexes that entry, with no ``ahl fsck``."""
    root = tmp_path / "registry"
    first = art(seed=1, task="crash", name="crash")
    LocalRegistry(root).push(first, version="1.0.0")
    second = art(seed=2, task="crash", name="crash")
    script = (
        "import sys; from adapterhub_lite.registry.client.local import LocalRegistry; "
        "from adapterhub_lite.registry.format.refs import parse_ref; r = LocalRegistry(sys.argv[1]); "
        "r.push(sys.argv[2], version='1.0.1') if sys.argv[3] == 'push' else r.yank(parse_ref(sys.argv[4]))"
    )
    ref = f"{HUB_ID}/crash/crash@1.0.0"
    done = subprocess.run(
        [sys.executable, "-c", script, str(root), str(second), step.split(":")[0], ref],
        env={**os.environ, "AHL_SERVE_TEST_CRASH_AT": step},
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == -9, done.stderr  # killed at the step
    assert len(list((root / "pending").iterdir())) == 1
    with sqlite3.connect(root / "index.sqlite") as db:  # the index is stale now
        stale = db.execute("SELECT version, yanked FROM versions ORDER BY version").fetchall()
    assert stale == [("1.0.0", 0)]
    registry = LocalRegistry(root)
    latest = [str(e.ref) for e in registry.search(task="crash")]
    assert latest == ([f"{HUB_ID}/crash/crash@1.0.1"] if step == "push:manifest" else [])
    assert registry.versions(parse_ref(f"{HUB_ID}/crash/crash")) == (
        ["1.0.0", "1.0.1"] if step == "push:manifest" else []
    )
    assert list((root / "pending").iterdir()) == []


def test_a_live_writers_record_is_left_alone(tmp_path, art):
    """A ``pending/`` record whose entry lock is held belongs to a write in progress: an open
    by another process neither re-indexes nor deletes it."""
    from adapterhub_lite.files import locked

    root = tmp_path / "registry"
    registry = LocalRegistry(root)
    registry.push(art(seed=1, task="live", name="live"), version="1.0.0")
    key = registry._lock_key(HUB_ID, "live", "live")
    record = root / "pending" / f"{key}.json"
    record.write_text(json.dumps([HUB_ID, "live", "live"]))
    with locked(root / "locks" / f"{key}.lock"):
        LocalRegistry(root)
        assert record.exists()
    LocalRegistry(root)
    assert not record.exists()
