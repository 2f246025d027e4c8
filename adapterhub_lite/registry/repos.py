"""Repositories, commits and version tags of ``ahl serve``, kept inside a local registry.

``ahl serve`` speaks the Hugging Face Hub's model-repository API (``registry/SPEC.md`` 14); this
module is its storage, next to the local registry's own layout (section 12, 14.6)::

    ROOT/repos/<namespace>/<name>/repo.json                repository record (head of main, entry, tags)
    ROOT/repos/<namespace>/<name>/commits/<40 hex>.json    one commit: a snapshot {path: {sha256, size}}
    ROOT/repos/index.sqlite                                search index, derived; rebuilt when missing
    ROOT/locks/repo-<key>.lock, ROOT/locks/repo-bindings.lock   per-repository and entry-binding locks

File contents are the registry's blobs (``blobs/sha256``). Versions are not stored here: tag
``vX.Y.Z`` is version X.Y.Z of the repository's entry in the registry (its manifest records the
repository and commit as ``origin``), and ``vX.Y.Z-yanked`` is its yank marker. Entries pushed
into the directory without a repository appear as read-only repositories ``ahl/SLUG`` whose
commits are derived from the version digests.

Every file lands by an atomic rename and a commit becomes visible only when ``repo.json`` moves
its head, so a crash leaves no half-made commit; writers to one repository hold its lock.
Records and names are in :mod:`.repo_model`, the search index in :mod:`.repo_index`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..artifact import CARD_FILE, FUSION_ADAPTERS_DIR, METADATA_FILES, Artifact, artifact_files, read_artifact
from ..errors import ArtifactError, IntegrityError, RefError
from ..files import locked
from ..task_embedding import TaskEmbedding
from .local import LocalRegistry, summarize
from .refs import Ref, base_key, repo_slug
from .repo_index import RepoIndex
from .repo_model import (
    BRANCH,
    COMMIT_ID,
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
    check_repo_id,
    entry_tags,
    hub_time,
    now,
    version_commit_id,
)

MAX_CARD_BYTES = 1 << 20  # model cards and metadata read for tags; larger ones are not parsed
STAGING_PREFIX = "serve-"  # ROOT/tmp/serve-*: commit bodies, LFS uploads, tagged commits being checked
STALE_STAGING_SECONDS = 24 * 3600


class RepoStore:
    """Hub-style repositories over a :class:`LocalRegistry` directory (see the module docstring)."""

    def __init__(self, root: Path | str) -> None:
        self.registry = LocalRegistry(root)
        self.root = self.registry.root
        self.repos_dir = self.root / "repos"
        self.repos_dir.mkdir(exist_ok=True)
        self._index = RepoIndex(self.repos_dir / "index.sqlite", self.root / "index.sqlite", self._all_repos)
        self._remove_stale_staging()

    def _remove_stale_staging(self) -> None:
        """Delete what a killed server left under ``tmp/``; a live one's staging is never a day old."""
        for path in (self.root / "tmp").glob(f"{STAGING_PREFIX}*"):
            if time.time() - path.stat().st_mtime > STALE_STAGING_SECONDS:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

    # -- paths and records ---------------------------------------------------------------------

    def _repo_dir(self, repo_id: str) -> Path:
        namespace, _, name = repo_id.partition("/")
        return self.repos_dir / namespace / check_repo_id(namespace, name).split("/")[1]

    def _write_json(self, target: Path, data: dict[str, Any]) -> None:
        self.registry._write_atomic(target, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())

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
        return Repo(data["id"], data["created_at"], data["last_modified"], data["main"], entry,  # type: ignore[arg-type]
                    tuple(data.get("tags", [])))

    def _save_repo(self, repo: Repo) -> None:
        """Write ``repo.json`` (the commit point of every change) and index it."""
        self._write_json(self._repo_dir(repo.id) / "repo.json", {
            "id": repo.id, "created_at": repo.created_at, "last_modified": repo.last_modified,
            "main": repo.main, "entry": list(repo.entry) if repo.entry else None, "tags": list(repo.tags),
        })
        self._index.put(repo)

    def _all_repos(self) -> Iterator[Repo]:
        for record in sorted(self.repos_dir.glob("*/*/repo.json")):
            repo = self._load_repo(f"{record.parent.parent.name}/{record.parent.name}")
            if repo is not None:
                yield repo

    def blob_path(self, sha256: str) -> Path:
        return self.registry.blob_path(sha256)

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

    def create_repo(self, namespace: str, name: str) -> Repo:
        """A new repository whose ``main`` is an empty first commit.

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
            self._save_repo(Repo(repo_id, created, created, first.id))
        return self.repo(repo_id)

    def _writable(self, repo_id: str) -> Repo:
        repo = self.repo(repo_id)
        if repo.local:
            raise ReadOnlyRepoError(f"{repo_id} mirrors an entry pushed locally and is read-only")
        return repo

    # -- revisions and commits -----------------------------------------------------------------

    def _manifest(self, entry: tuple[str, str, str], version: str) -> dict[str, Any]:
        return self.registry.resolve(Ref(*entry, version=version)).manifest

    def _tag_commit(self, repo: Repo, manifest: dict[str, Any]) -> str:
        """The commit a version tag points at: the recorded one when this repository made it."""
        origin = manifest.get("origin") or {}
        return origin["commit"] if origin.get("repo") == repo.id else version_commit_id(manifest["digest"])

    def refs(self, repo: Repo) -> Refs:
        """``main`` and the version tags (``vX.Y.Z`` and ``vX.Y.Z-yanked``) of a repository."""
        refs = Refs(branches=[(BRANCH, repo.main)])
        if repo.entry:
            ref = Ref(*repo.entry)
            yanked = set(self.registry.versions(ref, include_yanked=True)) - set(self.registry.versions(ref))
            for version in self.registry.versions(ref, include_yanked=True):
                commit = self._tag_commit(repo, self._manifest(repo.entry, version))
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
                return Commit(data["id"], data["files"], data["created_at"], data.get("title", ""))
            except FileNotFoundError:
                pass
        # Versions pushed locally have no commit file: their snapshot is the manifest's files.
        for version in self.registry.versions(Ref(*repo.entry), include_yanked=True) if repo.entry else []:
            manifest = self._manifest(repo.entry, version)  # type: ignore[arg-type]
            if version_commit_id(manifest["digest"]) == commit_id:
                return Commit(commit_id, self._local_snapshot(manifest), hub_time(manifest["pushed_at"]),
                              f"v{version}")
        return None

    def _local_snapshot(self, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The files of a version pushed locally, as a client pull expects them: a fusion's
        manifest lists its own files only (its adapters are versions of their own entries), so
        the adapter versions it locks are added under ``adapters/<name>/``, as a push through a
        client commits them."""
        files = dict(manifest["files"])
        if manifest["kind"] != "fusion":
            return files
        meta = json.loads(self.blob_path(files[METADATA_FILES["fusion"]]["sha256"]).read_bytes())
        for record in meta["adapters"]:
            part = self.registry.resolve(Ref(record["base"], record["task"], record["name"], digest=record["digest"]))
            files.update({f"{FUSION_ADAPTERS_DIR}/{record['name']}/{name}": file_record
                          for name, file_record in part.manifest["files"].items()})
        return files

    def _write_commit(self, repo_id: str, parent: str | None, files: dict[str, dict[str, Any]], created: str,
                      title: str) -> Commit:
        record = {"repo": repo_id, "parent": parent, "created_at": created, "title": title, "files": files}
        commit_id = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()
        self._write_json(self._repo_dir(repo_id) / "commits" / f"{commit_id}.json", {"id": commit_id, **record})
        return Commit(commit_id, files, created, title)

    def commit(self, repo_id: str, operations: Sequence[PutFile | Delete], *, title: str,
               parent: str | None = None) -> Commit:
        """Apply operations to the head of ``main`` as one new commit, and move ``main`` to it.

        The files of ``PutFile`` operations move into the blob store (not read again: their sha256
        was computed as they were received) before the commit exists; ``main`` moves last, so a
        crash leaves no commit.

        Raises:
            RepoNotFoundError, ReadOnlyRepoError, StaleParentError (``parent`` is not the head),
            EntryNotFoundError (deleting a missing path), RefError (a path is both file and folder).
        """
        self._writable(repo_id)
        with self._repo_lock(repo_id):
            repo = self._load_repo(repo_id)
            assert repo is not None  # repositories are never deleted
            if parent and parent != repo.main:
                raise StaleParentError(f"{repo_id}: parent commit {parent[:12]} is not the head of main "
                                       f"({repo.main[:12]}); fetch and commit again")
            head = self._read_commit(repo, repo.main)
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
            for op in operations:
                if isinstance(op, PutFile):
                    self.registry._adopt_blob(op.source, op.sha256)
            created = now()
            commit = self._write_commit(repo_id, repo.main, files, created, title)
            self._save_repo(replace(repo, main=commit.id, last_modified=created, tags=self.snapshot_tags(files)))
        return commit

    def read_small(self, files: dict[str, dict[str, Any]], path: str) -> bytes | None:
        """A snapshot file's bytes if it exists and is small (cards and metadata)."""
        record = files.get(path)
        if record is None or record["size"] > MAX_CARD_BYTES:
            return None
        return self.blob_path(record["sha256"]).read_bytes()

    def snapshot_tags(self, files: dict[str, dict[str, Any]]) -> tuple[str, ...]:
        """Search tags of a snapshot: the entry's (from its metadata) and the model card's own."""
        tags: list[str] = []
        for kind, meta_name in METADATA_FILES.items():
            raw = self.read_small(files, meta_name)
            try:
                meta = json.loads(raw) if raw else None
                if isinstance(meta, dict):
                    architecture = "fusion" if kind == "fusion" else (meta.get("adapter") or {}).get(
                        "preset", "head_only")
                    tags += entry_tags(base_key(meta["base"]["model_id"]), meta["task"], meta["name"],
                                       architecture, (meta.get("head") or {}).get("type"))
                    tags += summarize(meta)["tags"]  # as the local registry's search sees them
            except (ValueError, KeyError, TypeError, AttributeError, RefError):
                pass  # not (yet) an artifact: the card's tags only
        card = card_data((self.read_small(files, CARD_FILE) or b"").decode("utf-8", "replace"))
        card_tags = card.get("tags")
        tags += [t for t in card_tags if isinstance(t, str)] if isinstance(card_tags, list) else []
        return tuple(dict.fromkeys(tags))

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
        with self._repo_lock(repo_id):
            repo = self.repo(repo_id)
            commit = self.resolve(repo, revision)
            tags = dict(self.refs(repo).tags)
            if tag in tags:
                raise AlreadyExistsError(f"tag {tag} already exists in {repo_id}"
                                         + ("" if yank else "; versions are immutable: tag a new version"))
            if yank:
                if tags.get(f"v{version}") != commit.id:
                    raise RefError(f"{repo_id} has no version v{version} at {revision}: tag {tag} on the "
                                   f"commit of v{version}")
                self.registry.yank(Ref(*repo.entry, version=version))  # type: ignore[misc]
            else:
                self._tag_version(repo, version, commit)

    def _tag_version(self, repo: Repo, version: str, commit: Commit) -> None:
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
                raise ArtifactError(f"commit {commit.id[:12]} of {repo.id} is not a valid artifact: "
                                    f"{str(exc).replace(str(staging), '.')}") from None
            meta = artifact.metadata
            entry = (base_key(meta["base"]["model_id"]), meta["task"], meta["name"])
            if repo.entry and entry != repo.entry:
                raise ArtifactError(f"commit {commit.id[:12]} holds {'/'.join(entry)}, but {repo.id} is the "
                                    f"repository of {'/'.join(repo.entry)}; push it to its own repository")
            if repo.entry is None:
                self._bind(repo, entry)
            self.registry.push(staging, version=version, origin={"repo": repo.id, "commit": commit.id})
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _bind(self, repo: Repo, entry: tuple[str, str, str]) -> None:
        """Fix a repository's entry at its first version; an entry belongs to one repository."""
        with locked(self.root / "locks" / "repo-bindings.lock"):
            owner = self._index.owner(entry)
            if owner is None and self.registry.versions(Ref(*entry), include_yanked=True):
                owner = f"{LOCAL_NAMESPACE}/{repo_slug(*entry)}"
            if owner is not None:
                raise ArtifactError(f"{'/'.join(entry)} already lives in repository {owner}; "
                                    f"push its versions there")
            self._save_repo(replace(repo, entry=entry))

    # -- search --------------------------------------------------------------------------------

    def search(self, *, author: str | None = None, search: str | None = None, tags: Sequence[str] = (),
               sort: str = "lastModified", offset: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Repositories matching all filters, as index rows (``id``, ``sha``, dates, ``tags``)."""
        self._index.sync_local()
        return self._index.search(author=author, search=search, tags=tags, sort=sort, offset=offset, limit=limit)

    def search_like(self, embedding: TaskEmbedding, *, base: str | None, top: int) -> list[dict[str, Any]]:
        """The latest entries ranked by task-embedding similarity (SPEC 14.7): rows with the
        repository ``id`` that serves each entry, its ``score`` (cosine) and ``ahlEntry``."""
        self._index.sync_local()
        rows = []
        for entry, score in self.registry.search_like(embedding, base=base, top=top):
            key = entry.ref.entry
            manifest = entry.manifest
            rows.append({"id": self._index.owner(key) or f"{LOCAL_NAMESPACE}/{repo_slug(*key)}", "score": score,
                         "ahlEntry": {k: manifest.get(k) for k in ("base", "task", "name", "version", "digest",
                                                                   "pushed_at", "summary")}})
        return rows


def _check_records(artifact: Artifact, files: dict[str, dict[str, Any]]) -> None:
    """Refuse (IntegrityError) an artifact whose metadata records a file other than the commit holds."""
    for path, record in artifact_files(artifact).items():
        if record is None:
            continue  # a metadata file: the version's digest, or (an adapter's) checked against the lock
        held = files.get(path)
        if held is None:
            raise IntegrityError(f"{path} is listed in the metadata but missing from the commit")
        if (held["sha256"], held["size"]) != (record["sha256"], record["size"]):
            raise IntegrityError(f"{path} in the commit ({held['size']} bytes, sha256 {held['sha256'][:12]}...) is "
                                 f"not the file the metadata records ({record['size']} bytes, sha256 "
                                 f"{record['sha256'][:12]}...)")


def _check_tree(files: dict[str, Any]) -> None:
    """Refuse a snapshot where one path is both a file and a folder."""
    for path in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in files:
                raise RefError(f"{'/'.join(parts[:depth])!r} cannot be both a file and the folder of {path!r}")
