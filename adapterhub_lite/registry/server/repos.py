"""Repositories, commits and version tags of ``ahl serve``, kept inside a local registry.

``ahl serve`` speaks the Hugging Face Hub's model-repository API (``registry/SPEC.md`` 14); this
module is its storage, next to the local registry's own layout (section 12, 14.6)::

    ROOT/repos/<namespace>/<name>/repo.json                repository record (head of main, entry, tags)
    ROOT/repos/<namespace>/<name>/commits/<40 hex>.json    one commit: a snapshot {path: {sha256, size}}
    ROOT/repos/<namespace>/<name>/versions/                its versions, when another repository holds its key too
    ROOT/repos/index.sqlite                                search index, derived (reconciled, SPEC 14.7)
    ROOT/repos/pending/<instance>-<id>.json                a write in progress: what to re-index after a crash
    ROOT/locks/repo-<key>.lock, ROOT/locks/repo-bindings.lock   per-repository and entry-binding locks

File contents are the registry's blobs (``blobs/sha256``). Versions are not stored here: tag
``vX.Y.Z`` is version X.Y.Z of the repository's entry in the registry (its manifest records the
repository and commit as ``origin``), and ``vX.Y.Z-yanked`` is its yank marker. One key may be
published in several namespaces (SPEC 14.2): the first repository to tag it keeps its versions in
the directory's registry, each other one in a registry of its own under ``versions/`` (sharing
the blobs); :meth:`RepoStore.versions_of` says which. Entries pushed
into the directory without a repository appear as read-only repositories ``ahl/SLUG`` whose
commits are derived from the version digests.

Every file lands by an atomic rename and a commit becomes visible only when ``repo.json`` moves
its head, so a crash leaves no half-made commit; writers to one repository hold its lock. The
SQLite indexes are derived: each write first records what it touches under ``repos/pending``,
and a server that starts replays the records of servers that died (:meth:`RepoStore.recover`);
:meth:`RepoStore.fsck` reconciles everything with the manifests and ``repo.json`` files.
Records and names are in :mod:`.repo_model`, the search index in :mod:`.repo_index`.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...artifact import (
    CARD_FILE,
    FUSION_ADAPTERS_DIR,
    METADATA_FILES,
    Artifact,
    artifact_files,
    fusion_adapters,
    read_artifact,
)
from ...errors import ArtifactError, ConfigError, IntegrityError, RefError, VersionConflictError
from ...files import crash_point, locked
from ...task_embedding import TaskEmbedding
from ..client.local import LocalRegistry
from ..format.manifest import summarize
from ..format.refs import Ref, base_key, repo_slug
from ..format.tags import entry_tags
from .repo_index import RepoIndex
from .repo_model import (
    BRANCH,
    COMMIT_ID,
    LFS_SUFFIXES,
    LOCAL_NAMESPACE,
    RESERVED_NAMESPACES,
    VERSION_TAG,
    AlreadyExistsError,
    Commit,
    Delete,
    EntryNotFoundError,
    PutFile,
    ReadOnlyRepoError,
    Refs,
    Repo,
    RepoNotFoundError,
    RevisionNotFoundError,
    StaleParentError,
    card_data,
    card_derived_tags,
    check_branch,
    check_repo_id,
    hub_time,
    now,
    own_versions_dir,
    version_commit_id,
)

MAX_CARD_BYTES = 1 << 20  # model cards and metadata read for tags; larger ones are not parsed
MAX_REPO_FILES = 10_000  # files in one snapshot (tree listings and tags cost per file)
MAX_HISTORY = 10_000  # commits a history listing walks at most
# ROOT/tmp/serve-<kind>-<instance>-*: commit bodies, LFS uploads, tagged commits being checked;
# <instance> is the server process that owns it (it holds ROOT/locks/serve-<instance>.lock)
STAGING_PREFIX = "serve-"
PARSED_CACHE = 4096  # parsed cards and metadata kept per process, keyed by blob sha256
LFS_MIN_BYTES = 1 << 20  # larger files are LFS files, as are binary ones (LFS_SUFFIXES)


@dataclass
class Repairs:
    """What :meth:`RepoStore.recover` / :meth:`RepoStore.fsck` found and repaired."""

    staging_removed: int = 0
    writes_replayed: int = 0
    entries_reindexed: int = 0
    repos_reindexed: int = 0
    bindings_fixed: int = 0
    missing_blobs: list[str] = field(default_factory=list)  # "what: sha256", not repairable here

    @property
    def changed(self) -> int:
        return (
            self.staging_removed
            + self.writes_replayed
            + self.entries_reindexed
            + self.repos_reindexed
            + self.bindings_fixed
        )


class RepoStore:
    """Hub-style repositories over a :class:`LocalRegistry` directory (see the module docstring)."""

    def __init__(self, root: Path | str, *, recover: bool = True) -> None:
        """Open the store; with ``recover``, also repair what servers that died left (:meth:`recover`).

        Raises:
            ConfigError: the directory cannot be written (read-only, not permitted, full).
        """
        try:
            # absolute: the paths it hands SQLite as URIs (and keeps for the process's life) must
            # not depend on the working directory
            self.registry = LocalRegistry(Path(root).absolute())
            self.root = self.registry.root
            self.repos_dir = self.root / "repos"
            self.pending_dir = self.repos_dir / "pending"
            self.pending_dir.mkdir(parents=True, exist_ok=True)
            # This process's id in staging and pending names; the lock says it is alive (the
            # kernel drops it when the process dies, however it dies).
            self.instance = f"{os.getpid()}x{secrets.token_hex(4)}"
            self._alive = self._hold(self.root / "locks" / f"serve-{self.instance}.lock")
            with tempfile.TemporaryFile(dir=self.root / "tmp"):
                pass  # the write probe: serving a directory we cannot write would fail every upload
            self._index = RepoIndex(self.repos_dir / "index.sqlite", self.root / "index.sqlite", self._all_repos)
        except (OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(
                f"cannot write the registry directory {Path(root)}: {reason}; ahl serve needs a "
                f"writable directory (check its permissions, mount and free space)"
            ) from None
        self._own: dict[Path, tuple[int, LocalRegistry]] = {}  # versions/ dir -> (its inode, registry)
        self._card = functools.lru_cache(maxsize=PARSED_CACHE)(self._parse_card)
        self._meta = functools.lru_cache(maxsize=PARSED_CACHE)(self._parse_meta)
        self._git_blob = functools.lru_cache(maxsize=PARSED_CACHE)(self._blob_git_id)
        self.repairs = self.recover() if recover else Repairs()

    def close(self) -> None:
        """Delete this process's liveness lock, then release it: a store that ends cleanly leaves
        no lock file behind (one that dies leaves it for the next store's recovery)."""
        Path(self._alive.name).unlink(missing_ok=True)
        self._alive.close()

    @staticmethod
    def _hold(lock: Path) -> Any:
        """Open and lock ``lock`` for this process's life. Another server's recovery may delete
        the file between our open and our lock (it looked unlocked): then lock a new one."""
        while True:
            handle = lock.open("a")
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino:
                    return handle
            except FileNotFoundError:
                pass
            handle.close()

    def staging_prefix(self, kind: str) -> str:
        """The name prefix of this process's staging files of ``kind`` under ``ROOT/tmp``."""
        return f"{STAGING_PREFIX}{kind}-{self.instance}-"

    def _dead(self, instance: str) -> bool:
        """Whether the server process ``instance`` is gone (nobody holds its lock)."""
        if instance == self.instance:
            return False
        lock = self.root / "locks" / f"serve-{instance}.lock"
        try:
            handle = lock.open("rb")
        except FileNotFoundError:
            return True
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        return True

    def recover(self) -> Repairs:
        """Clean up after server processes that died (killed, power cut): delete their staging
        under ``tmp/`` and replay their pending writes, re-deriving the indexes and the entry
        binding of what each touched from the manifests and ``repo.json``. Cheap: it reads only
        what was being written. Live servers sharing the directory are left alone."""
        repairs = Repairs()
        dead: dict[str, bool] = {}

        def is_dead(instance: str) -> bool:
            if instance not in dead:
                dead[instance] = self._dead(instance)
            return dead[instance]

        for path in (self.root / "tmp").glob(f"{STAGING_PREFIX}*"):
            parts = path.name.split("-")
            if len(parts) < 3 or is_dead(parts[2]):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                repairs.staging_removed += 1
        for intent in sorted(self.pending_dir.glob("*.json")):
            if not is_dead(intent.name.split("-")[0]):
                continue
            try:
                data = json.loads(intent.read_text("utf-8"))
                repo_id, entry = str(data["repo"]), tuple(data["entry"]) if data.get("entry") else None
            except (ValueError, KeyError, TypeError):
                repo_id, entry = None, None  # cut while written: the write had not started
            if repo_id is not None:
                self._repair(repo_id, entry, repairs)
                repairs.writes_replayed += 1
            intent.unlink(missing_ok=True)
        for instance, gone in dead.items():
            if gone:
                (self.root / "locks" / f"serve-{instance}.lock").unlink(missing_ok=True)
        return repairs

    @contextmanager
    def _pending(self, repo_id: str) -> Iterator[Callable[[tuple[str, str, str]], None]]:
        """Record a write to ``repo_id`` before it starts, delete the record once every index is
        updated. The block may call the function it gets with the entry it is about to version."""
        path = self.pending_dir / f"{self.instance}-{secrets.token_hex(8)}.json"
        touched: list[tuple[str, str, str]] = []

        def entry(key: tuple[str, str, str]) -> None:
            touched[:] = [key]
            self._write_json(path, {"repo": repo_id, "entry": list(key)})

        self._write_json(path, {"repo": repo_id, "entry": None})
        try:
            yield entry
        except BaseException:
            # a write that failed half way (a full disk, say) may have left an index behind
            # its files: re-derive now; if that fails too, the record stays for the next start
            try:
                self._repair(repo_id, touched[0] if touched else None, Repairs())
            except Exception:  # noqa: BLE001, S110 (the record stays; the original error is reported)
                pass
            else:
                path.unlink(missing_ok=True)
            raise
        path.unlink(missing_ok=True)

    def _repair(self, repo_id: str, entry: tuple[str, str, str] | None, repairs: Repairs) -> None:
        """Re-derive the indexes and binding of one repository (and one entry) from the files."""
        if entry is not None:
            repairs.entries_reindexed += self.versions_of(repo_id).reindex([Ref(*entry)])
        with self._repo_lock(repo_id):
            repo = self._load_repo(repo_id)
            if repo is None:  # created but never recorded
                repairs.repos_reindexed += self._index.reconcile_one(repo_id, None)
                return
            bound = self._bound_entry(repo, entry)
            if bound != repo.entry:
                repairs.bindings_fixed += 1
            fixed = self._retagged(replace(repo, entry=bound))
            if fixed != repo:
                self._save_repo(fixed)
                repairs.repos_reindexed += 1
            else:
                repairs.repos_reindexed += self._index.reconcile_one(repo_id, repo)

    def _bound_entry(self, repo: Repo, hint: tuple[str, str, str] | None) -> tuple[str, str, str] | None:
        """The entry a repository holds by the rule of SPEC 14.2: one that has a version tagged
        in it (a manifest whose ``origin`` is this repository)."""
        registry = self.versions_of(repo.id)
        for entry in dict.fromkeys(e for e in (repo.entry, hint) if e):
            if any(
                self._origin_repo(entry, v, registry) == repo.id
                for v in registry.versions(Ref(*entry), include_yanked=True)
            ):
                return entry
        return None

    def _origin_repo(self, entry: tuple[str, str, str], version: str, registry: LocalRegistry) -> str | None:
        return (self._manifest(entry, version, registry).get("origin") or {}).get("repo")

    def _retagged(self, repo: Repo) -> Repo:
        """``repo`` with the search tags of its head and entry."""
        head = self._read_commit(repo, repo.main)
        return replace(repo, tags=self.snapshot_tags(head.files if head else {}, repo.entry, self.versions_of(repo.id)))

    def versions_of(self, repo_id: str) -> LocalRegistry:
        """The registry that holds a repository's versions (SPEC 14.2): its own
        ``ROOT/repos/NS/NAME/versions/`` when it tagged a key that another repository held
        first, else the directory's."""
        namespace, _, name = repo_id.partition("/")
        if namespace == LOCAL_NAMESPACE:
            return self.registry
        path = own_versions_dir(self.repos_dir, check_repo_id(namespace, name))
        try:
            inode = path.stat().st_ino
        except FileNotFoundError:
            return self.registry
        known = self._own.get(path)
        if known is None or known[0] != inode:  # new, or deleted and made again since
            known = (inode, LocalRegistry(path, blob_store=self.registry.blob_store))
            self._own[path] = known
        return known[1]

    def _registries(self) -> Iterator[LocalRegistry]:
        """The directory's registry, then each repository's own (:meth:`versions_of`)."""
        yield self.registry
        for path in sorted(self.repos_dir.glob("*/*/versions")):
            yield self.versions_of(f"{path.parent.parent.name}/{path.parent.name}")

    # -- paths and records ---------------------------------------------------------------------

    def _repo_dir(self, repo_id: str) -> Path:
        namespace, _, name = repo_id.partition("/")
        return self.repos_dir / namespace / check_repo_id(namespace, name).split("/")[1]

    def _write_json(self, target: Path, data: dict[str, Any]) -> None:
        self.registry.blob_store.write_atomic(target, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())

    @contextmanager
    def _repo_lock(self, repo_id: str) -> Iterator[None]:
        key = hashlib.sha256(repo_id.encode()).hexdigest()[:32]
        with locked(self.root / "locks" / f"repo-{key}.lock"):
            yield

    def _load_repo(self, repo_id: str) -> Repo | None:
        try:
            data = json.loads((self._repo_dir(repo_id) / "repo.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        entry = tuple(data["entry"]) if data.get("entry") else None
        return Repo(
            data["id"],
            data["created_at"],
            data["last_modified"],
            data["main"],
            entry,
            tuple(data.get("tags", [])),
            private=bool(data.get("private")),
            branches=tuple(sorted(data.get("branches", {}).items())),
        )

    def _save_repo(self, repo: Repo) -> None:
        """Write ``repo.json`` (the commit point of every change) and index it."""
        self._write_json(
            self._repo_dir(repo.id) / "repo.json",
            {
                "id": repo.id,
                "created_at": repo.created_at,
                "last_modified": repo.last_modified,
                "main": repo.main,
                "entry": list(repo.entry) if repo.entry else None,
                "tags": list(repo.tags),
                "private": repo.private,
                "branches": dict(repo.branches),
            },
        )
        crash_point("repo:record")
        self._index.put(repo)

    def _all_repos(self) -> Iterator[Repo]:
        for record in sorted(self.repos_dir.glob("*/*/repo.json")):
            repo = self._load_repo(f"{record.parent.parent.name}/{record.parent.name}")
            if repo is not None:
                yield repo

    def blob_path(self, sha256: str) -> Path:
        """Where the store's blob with this sha256 lives (the registry's :class:`BlobStore`)."""
        return self.registry.blob_store.path(sha256)

    # -- repositories --------------------------------------------------------------------------

    def repo(self, repo_id: str) -> Repo:
        """A repository by id, including the ``ahl/SLUG`` views of locally pushed entries.

        Raises:
            RepoNotFoundError: no such repository (also for malformed ids).
        """
        namespace, _, name = repo_id.partition("/")
        try:
            check_repo_id(namespace, name)
        except RefError:
            raise RepoNotFoundError(f"repository {repo_id!r} not found") from None
        if namespace == LOCAL_NAMESPACE:
            self._index.sync_local()
            mirror = self._index.mirror(repo_id)
            if mirror is not None:
                return mirror
        else:
            repo = self._load_repo(repo_id)
            if repo is not None:
                return repo
        raise RepoNotFoundError(f"repository {repo_id} not found")

    def create_repo(self, namespace: str, name: str, *, private: bool = False) -> Repo:
        """A new repository whose ``main`` is an empty first commit; ``private``: only its
        namespace's token reads or lists it.

        Raises:
            RefError: invalid or reserved name. AlreadyExistsError: it exists.
        """
        repo_id = check_repo_id(namespace, name)
        if namespace in RESERVED_NAMESPACES:
            raise ReadOnlyRepoError(f"namespace {namespace!r} is reserved ({LOCAL_NAMESPACE}/ shows local pushes)")
        with self._repo_lock(repo_id):
            if self._load_repo(repo_id) is not None:
                raise AlreadyExistsError(f"repository {repo_id} already exists")
            created = now()
            first = self._write_commit(repo_id, None, {}, created, "initial commit")
            self._save_repo(Repo(repo_id, created, created, first.id, private=private))
        return self.repo(repo_id)

    def set_private(self, repo_id: str, private: bool) -> Repo:
        """Make a repository private (read and listed only with its namespace's token) or public."""
        self._writable(repo_id)
        with self._pending(repo_id), self._repo_lock(repo_id):
            repo = self._load_repo(repo_id)
            assert repo is not None  # _writable found it; deletion takes this lock
            if repo.private != private:
                self._save_repo(replace(repo, private=private))
            return replace(repo, private=private)

    def delete_repo(self, repo_id: str) -> None:
        """Delete a repository, its commits and the versions tagged in it (their blobs stay:
        other versions may share them). Refused while a fusion published from another
        repository locks one of its versions: deleting would break that fusion's pulls. A
        repository with a registry of its own (:meth:`versions_of`) loses it whole: it is moved
        under ``ROOT/tmp`` first, so a crash leaves it either in place or out of sight.

        Raises:
            RepoNotFoundError, ReadOnlyRepoError. VersionConflictError: a fusion locks a version.
        """
        self._writable(repo_id)
        with (
            self._pending(repo_id) as pending,
            self._repo_lock(repo_id),
            locked(self.root / "locks" / "repo-bindings.lock"),
        ):
            repo = self._load_repo(repo_id)
            if repo is None:
                raise RepoNotFoundError(f"repository {repo_id} not found")
            registry = self.versions_of(repo_id)
            if repo.entry is not None:
                ours = [
                    v
                    for v in registry.versions(Ref(*repo.entry), include_yanked=True)
                    if self._origin_repo(repo.entry, v, registry) == repo_id
                ]
                self._check_not_locked(repo, repo.entry, ours, registry)
                pending(repo.entry)
                if registry is self.registry:
                    for version in ours:  # the versions first: the binding is derived from them
                        manifest = self.registry._manifest_path(Ref(*repo.entry), version)
                        manifest.with_suffix(".yanked").unlink(missing_ok=True)
                        manifest.unlink(missing_ok=True)
                    self.registry._index.reconcile(self.registry, [Ref(*repo.entry)])
            doomed = None
            if registry is not self.registry:  # its own registry goes out of sight in one rename
                doomed = Path(tempfile.mkdtemp(prefix=self.staging_prefix("delete"), dir=self.root / "tmp"))
                os.rename(registry.root, doomed / "versions")
                self._own.pop(registry.root, None)
            shutil.rmtree(self._repo_dir(repo_id))
            self._index.reconcile_one(repo_id, None)
            if doomed is not None:
                shutil.rmtree(doomed, ignore_errors=True)

    def _check_not_locked(
        self, repo: Repo, entry: tuple[str, str, str], versions: list[str], registry: LocalRegistry
    ) -> None:
        """Refuse (409) when a fusion of another repository, in any registry of the directory,
        locks one of ``versions`` of ``entry`` (those of ``registry``)."""
        digests = {self._manifest(entry, v, registry)["digest"]: v for v in versions}
        manifests = (m for r in self._registries() for _, m in r.all_manifests())
        for manifest in manifests:
            origin = (manifest.get("origin") or {}).get("repo")
            if manifest.get("kind") != "fusion" or origin == repo.id:
                continue
            record = manifest["files"].get(METADATA_FILES["fusion"])
            meta = json.loads(self.blob_path(record["sha256"]).read_bytes()) if record else {}
            for part in meta.get("adapters", []):
                if (part.get("base"), part.get("task"), part.get("name")) == entry and part.get("digest") in digests:
                    fusion = (manifest["base"], manifest["task"], manifest["name"])
                    owner = origin or f"{LOCAL_NAMESPACE}/{repo_slug(*fusion)}"
                    raise VersionConflictError(
                        f"{repo.id} cannot be deleted: its version v{digests[part['digest']]} is locked by the "
                        f"fusion {'/'.join(fusion)}@{manifest['version']} (repository {owner}); yank it instead"
                    )

    def create_branch(self, repo_id: str, branch: str, revision: str | None = None) -> None:
        """A branch for work in progress, at ``revision`` (default: the head of main). Versions
        stay tags: a branch head can be tagged as a version like main's.

        Raises:
            RefError: an invalid name. AlreadyExistsError: it exists. RevisionNotFoundError.
        """
        branch = check_branch(branch)
        self._writable(repo_id)
        with self._pending(repo_id), self._repo_lock(repo_id):
            repo = self._load_repo(repo_id)
            assert repo is not None
            if branch in dict(repo.branches):
                raise AlreadyExistsError(f"branch {branch} already exists in {repo_id}")
            start = self.resolve(repo, revision or BRANCH)
            self._save_repo(replace(repo, branches=tuple(sorted({**dict(repo.branches), branch: start.id}.items()))))

    def delete_branch(self, repo_id: str, branch: str) -> None:
        """Delete a branch other than main (its commits stay readable by id, and by any version tag)."""
        self._writable(repo_id)
        with self._pending(repo_id), self._repo_lock(repo_id):
            repo = self._load_repo(repo_id)
            assert repo is not None
            if branch == BRANCH:
                raise RefError(f"{BRANCH} cannot be deleted")
            branches = dict(repo.branches)
            if branches.pop(branch, None) is None:
                raise RevisionNotFoundError(f"branch {branch!r} not found in {repo_id}")
            self._save_repo(replace(repo, branches=tuple(sorted(branches.items()))))

    def _writable(self, repo_id: str) -> Repo:
        repo = self.repo(repo_id)
        if repo.local:
            raise ReadOnlyRepoError(f"{repo_id} mirrors an entry pushed locally and is read-only")
        return repo

    # -- revisions and commits -----------------------------------------------------------------

    def _manifest(self, entry: tuple[str, str, str], version: str, registry: LocalRegistry) -> dict[str, Any]:
        return registry.resolve(Ref(*entry, version=version)).manifest

    def _tag_commit(self, repo: Repo, manifest: dict[str, Any]) -> str:
        """The commit a version tag points at: the recorded one when this repository made it."""
        origin = manifest.get("origin") or {}
        return origin["commit"] if origin.get("repo") == repo.id else version_commit_id(manifest["digest"])

    def refs(self, repo: Repo) -> Refs:
        """``main`` and the version tags (``vX.Y.Z`` and ``vX.Y.Z-yanked``) of a repository."""
        refs = Refs(branches=[(BRANCH, repo.main), *repo.branches])
        if repo.entry:
            ref, registry = Ref(*repo.entry), self.versions_of(repo.id)
            yanked = set(registry.versions(ref, include_yanked=True)) - set(registry.versions(ref))
            for version in registry.versions(ref, include_yanked=True):
                commit = self._tag_commit(repo, self._manifest(repo.entry, version, registry))
                refs.tags.append((f"v{version}", commit))
                if version in yanked:
                    refs.tags.append((f"v{version}-yanked", commit))
        return refs

    def resolve(self, repo: Repo, revision: str) -> Commit:
        """The commit a revision means: ``main``, a version tag, or a 40-hex commit id.

        Raises:
            RevisionNotFoundError: none of those.
        """
        if revision == BRANCH:
            commit_id = repo.main
        elif revision in dict(repo.branches):
            commit_id = dict(repo.branches)[revision]
        elif COMMIT_ID.fullmatch(revision):
            commit_id = revision
        else:
            commit_id = dict(self.refs(repo).tags).get(revision, "") if VERSION_TAG.fullmatch(revision) else ""
        commit = self._read_commit(repo, commit_id) if commit_id else None
        if commit is None:
            raise RevisionNotFoundError(f"revision {revision!r} not found in {repo.id}")
        return commit

    def _read_commit(self, repo: Repo, commit_id: str) -> Commit | None:
        if not repo.local:
            try:
                data = json.loads((self._repo_dir(repo.id) / "commits" / f"{commit_id}.json").read_text("utf-8"))
                return Commit(data["id"], data["files"], data["created_at"], data.get("title", ""), data.get("parent"))
            except FileNotFoundError:
                pass
        # Versions pushed locally have no commit file: their snapshot is the manifest's files.
        if repo.entry is not None:
            registry = self.versions_of(repo.id)
            for version in registry.versions(Ref(*repo.entry), include_yanked=True):
                manifest = self._manifest(repo.entry, version, registry)
                if version_commit_id(manifest["digest"]) == commit_id:
                    return Commit(
                        commit_id,
                        self._local_snapshot(manifest, registry),
                        hub_time(manifest["pushed_at"]),
                        f"v{version}",
                    )
        return None

    def _local_snapshot(self, manifest: dict[str, Any], registry: LocalRegistry) -> dict[str, dict[str, Any]]:
        """The files of a version pushed locally, as a client pull expects them: a fusion's
        manifest lists its own files only (its adapters are versions of their own entries), so
        the adapter versions it locks are added under ``adapters/<name>/``, as a push through a
        client commits them."""
        files = dict(manifest["files"])
        if manifest["kind"] != "fusion":
            return files
        meta = json.loads(self.blob_path(files[METADATA_FILES["fusion"]]["sha256"]).read_bytes())
        for record in meta["adapters"]:
            part = registry.resolve(Ref(record["base"], record["task"], record["name"], digest=record["digest"]))
            files.update(
                {
                    f"{FUSION_ADAPTERS_DIR}/{record['name']}/{name}": file_record
                    for name, file_record in part.manifest["files"].items()
                }
            )
        return files

    def _write_commit(
        self, repo_id: str, parent: str | None, files: dict[str, dict[str, Any]], created: str, title: str
    ) -> Commit:
        record = {"repo": repo_id, "parent": parent, "created_at": created, "title": title, "files": files}
        commit_id = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()
        self._write_json(self._repo_dir(repo_id) / "commits" / f"{commit_id}.json", {"id": commit_id, **record})
        return Commit(commit_id, files, created, title, parent)

    def commits(self, repo: Repo, revision: str) -> list[Commit]:
        """The commits reachable from ``revision``, newest first (a version pushed locally: itself)."""
        commits = [self.resolve(repo, revision)]
        while commits[-1].parent and len(commits) <= MAX_HISTORY:
            parent = self._read_commit(repo, commits[-1].parent)
            if parent is None:
                break
            commits.append(parent)
        return commits

    def git_blob_id(self, sha256: str) -> str:
        """The git blob id (SHA-1 of ``blob SIZE\0`` + content) of a regular file, computed once."""
        return self._git_blob(sha256)

    def _blob_git_id(self, sha256: str) -> str:
        digest = hashlib.sha1()
        path = self.blob_path(sha256)
        digest.update(b"blob %d\0" % path.stat().st_size)
        with path.open("rb") as blob:
            while chunk := blob.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()

    def commit(
        self,
        repo_id: str,
        operations: Sequence[PutFile | Delete],
        *,
        title: str,
        parent: str | None = None,
        branch: str = BRANCH,
    ) -> Commit:
        """Apply operations to the head of ``branch`` (main by default) as one new commit, and move the branch to it.

        The files of ``PutFile`` operations move into the blob store (not read again: their sha256
        was computed as they were received) before the commit exists; ``main`` moves last, so a
        crash leaves no commit.

        Raises:
            RepoNotFoundError, ReadOnlyRepoError, StaleParentError (``parent`` is not the head),
            EntryNotFoundError (deleting a missing path), RefError (a path is both file and folder).
        """
        self._writable(repo_id)
        with self._pending(repo_id), self._repo_lock(repo_id):
            repo = self._load_repo(repo_id)
            if repo is None:
                raise RepoNotFoundError(f"repository {repo_id} not found")
            heads = {BRANCH: repo.main, **dict(repo.branches)}
            if branch not in heads:
                raise RevisionNotFoundError(f"branch {branch!r} not found in {repo_id}; create it first")
            if parent and parent != heads[branch]:
                raise StaleParentError(
                    f"{repo_id}: parent commit {parent[:12]} is not the head of {branch} "
                    f"({heads[branch][:12]}); fetch and commit again"
                )
            head = self._read_commit(repo, heads[branch])
            files = dict(head.files) if head else {}
            for op in operations:
                if isinstance(op, PutFile):
                    files[op.path] = {"sha256": op.sha256, "size": op.size}
                elif op.folder:
                    prefix = op.path.rstrip("/") + "/"
                    doomed = [p for p in files if p.startswith(prefix)]
                    if not doomed:
                        raise EntryNotFoundError(f"{repo_id}: folder {op.path!r} not found")
                    for path in doomed:
                        del files[path]
                elif files.pop(op.path, None) is None:
                    raise EntryNotFoundError(f"{repo_id}: file {op.path!r} not found")
            _check_tree(files)
            if len(files) > MAX_REPO_FILES:
                raise RefError(
                    f"{repo_id}: the commit would hold {len(files)} files; a repository holds at most {MAX_REPO_FILES}"
                )
            self._check_entry(repo, operations)  # before anything is written
            for op in operations:
                if isinstance(op, PutFile):
                    self.registry.blob_store.adopt(op.source, op.sha256)
            crash_point("commit:blobs")
            created = now()
            commit = self._write_commit(repo_id, heads[branch], files, created, title)
            crash_point("commit:file")
            if branch == BRANCH:
                self._save_repo(
                    replace(
                        repo,
                        main=commit.id,
                        last_modified=created,
                        tags=self.snapshot_tags(files, repo.entry, self.versions_of(repo_id)),
                    )
                )
            else:
                self._save_repo(
                    replace(
                        repo,
                        last_modified=created,
                        branches=tuple(sorted({**dict(repo.branches), branch: commit.id}.items())),
                    )
                )
        return commit

    def _check_entry(self, repo: Repo, operations: Sequence[PutFile | Delete]) -> None:
        """Refuse now a commit that could never be tagged as a version (SPEC 14.3): its new
        metadata file names an entry other than the repository's, or one bound elsewhere. So a
        push refused for that leaves no commit. Metadata that does not parse is left to the tag
        (work in progress may be committed in several steps)."""
        for op in operations:
            if not isinstance(op, PutFile) or op.path not in METADATA_FILES.values() or op.size > MAX_CARD_BYTES:
                continue
            kind = next(k for k, name in METADATA_FILES.items() if name == op.path)
            parsed = self._parse_meta_bytes(op.source.read_bytes(), kind)
            if parsed is None:
                continue
            entry = parsed[0]
            if repo.entry and entry != repo.entry:
                raise ArtifactError(
                    f"{op.path} holds {'/'.join(entry)}, but {repo.id} is the repository of "
                    f"{'/'.join(repo.entry)}; push it to its own repository"
                )
            if repo.entry is None:
                self._check_unbound(repo, entry)

    def read_small(self, files: dict[str, dict[str, Any]], path: str) -> bytes | None:
        """A snapshot file's bytes if it exists and is small (cards and metadata)."""
        record = files.get(path)
        if record is None or record["size"] > MAX_CARD_BYTES:
            return None
        return self.blob_path(record["sha256"]).read_bytes()

    def card(self, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The parsed YAML header of a snapshot's model card; parsed once per card content."""
        record = files.get(CARD_FILE)
        if record is None or record["size"] > MAX_CARD_BYTES:
            return {}
        try:
            return self._card(record["sha256"])
        except FileNotFoundError:  # a lost blob (ahl fsck reports it): no card data, nothing cached
            return {}

    def _parse_card(self, sha256: str) -> dict[str, Any]:
        return card_data(self.blob_path(sha256).read_bytes().decode("utf-8", "replace"))

    def _parse_meta(self, sha256: str, kind: str) -> tuple[tuple[str, str, str], list[str]] | None:
        return self._parse_meta_bytes(self.blob_path(sha256).read_bytes(), kind)

    @staticmethod
    def _parse_meta_bytes(raw: bytes, kind: str) -> tuple[tuple[str, str, str], list[str]] | None:
        """``(entry, search tags)`` of a metadata file of ``kind``, None when it is not (yet) one."""
        try:
            meta = json.loads(raw)
            if not isinstance(meta, dict):
                return None
            architecture = "fusion" if kind == "fusion" else (meta.get("adapter") or {}).get("preset", "head_only")
            entry = (base_key(meta["base"]["model_id"]), meta["task"], meta["name"])
            if not all(isinstance(part, str) for part in entry):
                return None
            return entry, [
                *entry_tags(*entry, architecture, (meta.get("head") or {}).get("type")),
                *summarize(meta)["tags"],
            ]  # as the local registry's search sees them
        except (ValueError, KeyError, TypeError, AttributeError, RefError):
            return None

    def snapshot_tags(
        self, files: dict[str, dict[str, Any]], entry: tuple[str, str, str] | None, versions: LocalRegistry
    ) -> tuple[str, ...]:
        """Search tags of a snapshot of a repository bound to ``entry`` (SPEC 14.2): the entry's
        (from the snapshot's metadata when it is that entry's, else from the entry's latest
        version in ``versions``, the repository's :meth:`versions_of`), then the model card's
        own without ``ahl-entry:`` ones. A repository is found by an entry's tag only through a
        version of that entry tagged in it."""
        tags: list[str] = []
        if entry is not None:
            parsed = None
            for kind, meta_name in METADATA_FILES.items():
                record = files.get(meta_name)
                if record is not None and record["size"] <= MAX_CARD_BYTES:
                    try:
                        parsed = self._meta(record["sha256"], kind) or parsed
                    except FileNotFoundError:
                        pass  # a lost blob (ahl fsck reports it)
            if parsed is not None and parsed[0] == entry:
                tags += parsed[1]
            else:
                tags += self._entry_summary_tags(entry, versions)
        card = self.card(files)
        card_tags = card.get("tags")
        tags += (
            [t for t in card_tags if isinstance(t, str) and not t.startswith("ahl-entry:")]
            if isinstance(card_tags, list)
            else []
        )
        return tuple(dict.fromkeys([*tags, *card_derived_tags(card)]))

    @staticmethod
    def is_lfs(path: str, record: dict[str, Any]) -> bool:
        """Whether a file is presented as an LFS file: binary by its suffix (the Hub's default
        ``.gitattributes``) or over :data:`LFS_MIN_BYTES`; cards and small JSON are regular."""
        name = path.rsplit("/", 1)[-1].lower()
        return record["size"] > LFS_MIN_BYTES or name.rsplit(".", 1)[-1] in LFS_SUFFIXES

    def _entry_summary_tags(self, entry: tuple[str, str, str], registry: LocalRegistry) -> list[str]:
        versions = registry.versions(Ref(*entry)) or registry.versions(Ref(*entry), include_yanked=True)
        if not versions:
            return entry_tags(*entry, None, None)
        summary = self._manifest(entry, versions[-1], registry).get("summary") or {}
        return [*entry_tags(*entry, summary.get("architecture"), summary.get("head")), *summary.get("tags", [])]

    # -- version tags --------------------------------------------------------------------------

    def create_tag(self, repo_id: str, tag: str, revision: str) -> None:
        """``vX.Y.Z``: record version X.Y.Z of the repository's entry from the commit's artifact;
        ``vX.Y.Z-yanked``: yank that version (the revision must be its commit).

        Raises:
            RefError: not a version tag. AlreadyExistsError: the tag exists. ArtifactError: the
            commit is not a valid artifact of the repository's entry.
        """
        match = VERSION_TAG.fullmatch(tag)
        if not match:
            raise RefError(f"tag {tag!r} is not a version tag: use vX.Y.Z, or vX.Y.Z-yanked to yank vX.Y.Z")
        version, yank = match.group(1), bool(match.group(2))
        self._writable(repo_id)
        with self._pending(repo_id) as pending, self._repo_lock(repo_id):
            repo = self.repo(repo_id)
            commit = self.resolve(repo, revision)
            tags = dict(self.refs(repo).tags)
            if tag in tags:
                raise AlreadyExistsError(
                    f"tag {tag} already exists in {repo_id}"
                    + ("" if yank else "; versions are immutable: tag a new version")
                )
            if yank:
                if tags.get(f"v{version}") != commit.id:
                    raise RefError(
                        f"{repo_id} has no version v{version} at {revision}: tag {tag} on the commit of v{version}"
                    )
                assert repo.entry is not None  # it has the version v{version}
                pending(repo.entry)
                self.versions_of(repo_id).yank(Ref(*repo.entry, version=version))
            else:
                self._tag_version(repo, version, commit, pending)

    def _tag_version(
        self, repo: Repo, version: str, commit: Commit, pending: Callable[[tuple[str, str, str]], None]
    ) -> None:
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}tag-", dir=self.root / "tmp"))
        try:
            for path, record in commit.files.items():
                target = staging.joinpath(*path.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                try:  # blobs are read-only and never rewritten: a hard link is a safe copy
                    os.link(self.blob_path(record["sha256"]), target)
                except OSError:
                    shutil.copyfile(self.blob_path(record["sha256"]), target)
            try:
                # The staged files are the commit's blobs, checked against their sha256 when they
                # were uploaded: comparing the metadata's records with the commit's stands for
                # hashing them again (and so does the push below, which finds the blobs stored).
                artifact = read_artifact(staging, verify=False)
                _check_records(artifact, commit.files)
            except ArtifactError as exc:
                raise ArtifactError(
                    f"commit {commit.id[:12]} of {repo.id} is not a valid artifact: "
                    f"{str(exc).replace(str(staging), '.')}"
                ) from None
            meta = artifact.metadata
            entry = (base_key(meta["base"]["model_id"]), meta["task"], meta["name"])
            if repo.entry and entry != repo.entry:
                raise ArtifactError(
                    f"commit {commit.id[:12]} holds {'/'.join(entry)}, but {repo.id} is the "
                    f"repository of {'/'.join(repo.entry)}; push it to its own repository"
                )
            pending(entry)
            # The version (its manifest) is written first, then the binding: the binding is
            # derived from the manifest's origin, so a crash between the two is repaired.
            with locked(self.root / "locks" / "repo-bindings.lock"):
                registry = self.versions_of(repo.id) if repo.entry else self._binding_registry(repo, entry)
                if artifact.kind == "fusion":
                    self._store_fusion_adapters(artifact, registry)
                registry.push(staging, version=version, origin={"repo": repo.id, "commit": commit.id}, adapters=False)
                crash_point("tag:manifest")
                if repo.entry is None:
                    self._save_repo(self._retagged(replace(repo, entry=entry)))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def _store_fusion_adapters(fusion: Artifact, registry: LocalRegistry) -> None:
        """Store the adapters of a fusion being tagged in ``registry``, where the fusion goes,
        as a local push does, except into an entry that has versions there: those belong to the
        repository holding it (or to local pushes), and the fusion's copy of that key may be
        another namespace's version (SPEC 14.2). A fusion never adds a version to someone else's
        entry; its pulls take its adapters from its commit, and the fusion lock check
        (:meth:`_check_not_locked`) goes by digest."""
        for part in fusion_adapters(fusion, verify=False):
            meta = part.metadata
            if not registry.versions(
                Ref(base_key(meta["base"]["model_id"]), meta["task"], meta["name"]), include_yanked=True
            ):
                registry.push(part.path)

    def _binding_registry(self, repo: Repo, entry: tuple[str, str, str]) -> LocalRegistry:
        """The registry where ``repo``'s first version of ``entry`` goes (SPEC 14.2): the
        directory's while no other repository (nor a local push) has a version of the key
        there, else a registry of the repository's own (:meth:`versions_of`), made now.

        Raises:
            ArtifactError: another repository of the same namespace holds ``entry``.
        """
        self._check_unbound(repo, entry)
        own = self.versions_of(repo.id)
        if own is not self.registry:  # made by an earlier tag that did not finish
            return own
        main = self.registry.versions(Ref(*entry), include_yanked=True)
        if all(self._origin_repo(entry, v, self.registry) == repo.id for v in main):  # none, or a cut binding's
            return self.registry
        own_versions_dir(self.repos_dir, repo.id).mkdir()
        return self.versions_of(repo.id)

    def _check_unbound(self, repo: Repo, entry: tuple[str, str, str]) -> None:
        """Refuse to bind ``entry`` to ``repo`` when another repository of its namespace holds
        it (a version tagged there): one repository per entry in a namespace. Other namespaces
        may publish the same key (SPEC 14.2)."""
        holders = set(self._index.holders(entry))
        # versions of a binding cut by a crash hold the key too, before the index says so
        holders |= {
            origin
            for v in self.registry.versions(Ref(*entry), include_yanked=True)
            if (origin := self._origin_repo(entry, v, self.registry))
        }
        same = sorted(h for h in holders if h != repo.id and h.split("/")[0] == repo.namespace)
        if same:
            raise ArtifactError(
                f"{'/'.join(entry)} already lives in repository {same[0]} of namespace {repo.namespace}; "
                f"push its versions there (one repository per entry in a namespace)"
            )

    # -- consistency ---------------------------------------------------------------------------

    def fsck(self) -> Repairs:
        """Reconcile everything derived with the files it derives from (``ahl fsck``, ``ahl serve
        --check``): the registry index with the version manifests, each repository's entry
        binding with the manifests' ``origin``, its search tags with its head, and the
        repository index with the ``repo.json`` files. Reports blobs that manifests or heads
        name but the store lacks (those need the data again: push it anew). Reads every record."""
        repairs = self.recover()
        origins: dict[str, tuple[str, str, str]] = {}  # repository -> an entry tagged in it
        manifests: list[tuple[Path, dict[str, Any]]] = []
        for registry in self._registries():
            repairs.entries_reindexed += registry.reindex()
            manifests += registry.all_manifests()
        for manifest_path, manifest in manifests:
            origin = (manifest.get("origin") or {}).get("repo")
            if origin:
                origins.setdefault(origin, (manifest["base"], manifest["task"], manifest["name"]))
            repairs.missing_blobs += [
                f"{manifest_path.relative_to(self.root)} {name}: {record['sha256']}"
                for name, record in manifest["files"].items()
                if not self.blob_path(record["sha256"]).is_file()
            ]
        for repo in list(self._all_repos()):
            with self._repo_lock(repo.id):
                current = self._load_repo(repo.id)
                if current is None:  # deleted meanwhile
                    continue
                bound = self._bound_entry(current, origins.get(current.id))
                fixed = self._retagged(replace(current, entry=bound))
                if bound != current.entry:
                    repairs.bindings_fixed += 1
                if fixed != current:
                    self._save_repo(fixed)
                    repairs.repos_reindexed += 1
            head = self._read_commit(fixed, fixed.main)
            repairs.missing_blobs += [
                f"{fixed.id} {path}: {record['sha256']}"
                for path, record in (head.files if head else {}).items()
                if not self.blob_path(record["sha256"]).is_file()
            ]
        repairs.repos_reindexed += self._index.reconcile(list(self._all_repos()))
        return repairs

    # -- search --------------------------------------------------------------------------------

    def search(
        self,
        *,
        author: str | None = None,
        search: str | None = None,
        tags: Sequence[str] = (),
        sort: str = "lastModified",
        offset: int = 0,
        limit: int = 1000,
        viewer: str | None = None,
    ) -> list[dict[str, Any]]:
        """Repositories matching all filters, as index rows (``id``, ``sha``, dates, ``tags``,
        ``private``); private ones only for ``viewer``, the user of their namespace."""
        self._index.sync_local()
        return self._index.search(
            author=author, search=search, tags=tags, sort=sort, offset=offset, limit=limit, viewer=viewer
        )

    def search_like(
        self, embedding: TaskEmbedding, *, base: str | None, top: int, viewer: str | None = None
    ) -> list[dict[str, Any]]:
        """The latest entries ranked by task-embedding similarity (SPEC 14.9): rows with the
        repository ``id`` that serves each entry, its ``score`` (cosine) and ``ahlEntry``;
        private repositories only for ``viewer``, the user of their namespace."""
        self._index.sync_local()
        rows: list[dict[str, Any]] = []
        for entry, score in self.registry.search_like(embedding, base=base, top=top):
            key = entry.ref.entry
            manifest = entry.manifest
            rows.append(
                {
                    "id": self._index.owner(key) or f"{LOCAL_NAMESPACE}/{repo_slug(*key)}",
                    "score": score,
                    "ahlEntry": {
                        k: manifest.get(k)
                        for k in ("base", "task", "name", "version", "digest", "pushed_at", "summary")
                    },
                }
            )
        hidden = self._index.hidden([row["id"] for row in rows], viewer) if rows else set()
        return [row for row in rows if row["id"] not in hidden]


def _check_records(artifact: Artifact, files: dict[str, dict[str, Any]]) -> None:
    """Refuse (IntegrityError) an artifact whose metadata records a file other than the commit holds."""
    for path, record in artifact_files(artifact).items():
        if record is None:
            continue  # a metadata file: the version's digest, or (an adapter's) checked against the lock
        held = files.get(path)
        if held is None:
            raise IntegrityError(f"{path} is listed in the metadata but missing from the commit")
        if (held["sha256"], held["size"]) != (record["sha256"], record["size"]):
            raise IntegrityError(
                f"{path} in the commit ({held['size']} bytes, sha256 {held['sha256'][:12]}...) is "
                f"not the file the metadata records ({record['size']} bytes, sha256 "
                f"{record['sha256'][:12]}...)"
            )


def _check_tree(files: dict[str, Any]) -> None:
    """Refuse a snapshot where one path is both a file and a folder."""
    for path in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in files:
                raise RefError(f"{'/'.join(parts[:depth])!r} cannot be both a file and the folder of {path!r}")
