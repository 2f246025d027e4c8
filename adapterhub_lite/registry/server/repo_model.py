"""The Hub repository model of ``ahl serve``: records, names, revisions, tags and errors.

Shared by the store (:mod:`.repos`), its search index (:mod:`.repo_index`) and the HTTP layer
(:mod:`.server`), and with the client (:mod:`.remote`) for the upload header; ``registry/SPEC.md``
14 defines the mapping of entries onto repositories.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # parses model card headers

from ...errors import NotFoundError, RefError, VersionConflictError
from ..format.refs import check_segment

LOCAL_NAMESPACE = "ahl"  # entries pushed into the directory directly (SPEC 14.3)
# list_models sort value for "by this dev metric, best first" (ahl serve only; SPEC 14.6)
METRIC_SORT = "ahl-metric:"
RESERVED_NAMESPACES = {LOCAL_NAMESPACE, "api"}  # "api" would shadow the API routes' URLs
BRANCH = "main"
VERSION_TAG = re.compile(r"v((?:0|[1-9][0-9]{0,8})\.(?:0|[1-9][0-9]{0,8})\.(?:0|[1-9][0-9]{0,8}))(-yanked)?")
COMMIT_ID = re.compile(r"[0-9a-f]{40}")
# Limits of a repository's file paths (SPEC 14.7): a part longer than most file systems take
# would make every later version tag fail, and deep trees cost CPU in every tree listing.
MAX_PATH_LENGTH = 1000
MAX_PATH_PART_BYTES = 255
MAX_PATH_DEPTH = 16
# Model card headers: larger ones, or ones whose aliases expand past MAX_CARD_NODES values, give
# no card data (a YAML "billion laughs" header would otherwise cost CPU and memory on every read).
MAX_CARD_HEADER_BYTES = 64 << 10
MAX_CARD_NODES = 10_000
# Suffixes of files presented as LFS files whatever their size: the binary types of the Hub's
# default .gitattributes (weights, arrays, archives)
LFS_SUFFIXES = frozenset(
    "7z arrow bin bz2 ckpt ftz gz h5 joblib mlmodel model msgpack npy npz onnx ot parquet pb "
    "pickle pkl pt pth rar safetensors tar tflite tgz wasm xz zip zst".split()
)


class RepoNotFoundError(NotFoundError):
    """No such repository (or not visible to the caller)."""

    code = "RepoNotFound"


class RevisionNotFoundError(NotFoundError):
    """The repository has no such branch, tag or commit."""

    code = "RevisionNotFound"


class EntryNotFoundError(NotFoundError):
    """The revision has no such file or folder."""

    code = "EntryNotFound"


class AlreadyExistsError(VersionConflictError):
    """A repository or tag exists already."""


class ReadOnlyRepoError(RefError):
    """Repositories under the ``ahl`` namespace mirror local pushes and take no writes."""


class StaleParentError(VersionConflictError):
    """A commit's ``parentCommit`` is no longer the head of the branch."""


@dataclass(frozen=True)
class Commit:
    """One snapshot of a repository: ``files`` maps each path to ``{sha256, size}``."""

    id: str
    files: dict[str, dict[str, Any]]
    created_at: str
    title: str = ""
    parent: str | None = None


@dataclass(frozen=True)
class Repo:
    """A repository: its head, the registry entry it holds (fixed by its first version), its tags."""

    id: str
    created_at: str
    last_modified: str
    main: str
    entry: tuple[str, str, str] | None = None
    tags: tuple[str, ...] = ()
    local: bool = False  # a read-only view of an entry pushed locally
    private: bool = False  # reads and listings need a token of its namespace (SPEC 14.6)
    branches: tuple[tuple[str, str], ...] = ()  # (name, head commit) of branches other than main

    @property
    def namespace(self) -> str:
        return self.id.split("/")[0]

    @property
    def name(self) -> str:
        return self.id.split("/")[1]


@dataclass(frozen=True)
class PutFile:
    """Commit operation: add or replace ``path`` with ``source``, whose ``sha256`` and ``size`` the
    server computed as it received it: a file under ``tmp/``, or the blob itself (LFS uploads)."""

    path: str
    source: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class Delete:
    """Commit operation: delete a file, or every file under a folder."""

    path: str
    folder: bool = False


@dataclass
class Refs:
    """Branches and tags of a repository as ``(name, commit id)`` pairs."""

    branches: list[tuple[str, str]] = field(default_factory=list)
    tags: list[tuple[str, str]] = field(default_factory=list)


def now() -> str:
    """The current UTC time as the Hub writes it (ISO 8601, milliseconds, ``Z``)."""
    return hub_time(_dt.datetime.now(_dt.timezone.utc).isoformat())


def parse_time(timestamp: str) -> _dt.datetime:
    """An ISO 8601 timestamp (``Z`` or an offset) as an aware datetime, for comparisons."""
    return _dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def hub_time(timestamp: str) -> str:
    """An ISO 8601 timestamp in the Hub's form, which the client's ``parse_datetime`` reads."""
    moment = parse_time(timestamp).astimezone(_dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def check_repo_id(namespace: str, name: str) -> str:
    """``namespace/name`` if both are valid repository name parts, else :class:`RefError`."""
    for what, value in (("namespace", namespace), ("repository name", name)):
        check_segment(value, what)
        if "--" in value or value.endswith((".", "-")) or value.endswith(".git"):
            raise RefError(f"{what} {value!r} is not valid: no '--', and no trailing '.', '-' or '.git'")
    return f"{namespace}/{name}"


def check_repo_path(path: Any) -> str:
    """A file path inside a repository: relative, ``/``-separated, no empty, ``.`` or ``..`` parts."""
    if not isinstance(path, str) or not path:
        raise RefError("a file path in the commit is empty or not a string")
    if len(path) > MAX_PATH_LENGTH:
        raise RefError(f"file path {path[:40]!r}... is longer than {MAX_PATH_LENGTH} characters")
    if path.startswith("/") or "\\" in path or any(ord(char) < 32 for char in path):
        raise RefError(f"file path {path!r} must be relative, use '/' and hold no control characters")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise RefError(f"file path {path!r} has an empty, '.' or '..' part")
    if len(parts) > MAX_PATH_DEPTH:
        raise RefError(f"file path {path[:40]!r}... is {len(parts)} levels deep; at most {MAX_PATH_DEPTH} are allowed")
    long = next((part for part in parts if len(part.encode("utf-8", "surrogatepass")) > MAX_PATH_PART_BYTES), None)
    if long is not None:
        raise RefError(
            f"file path part {long[:40]!r}... is longer than {MAX_PATH_PART_BYTES} bytes; "
            f"use shorter file and folder names"
        )
    return path


_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def card_header(text: str) -> str | None:
    """The YAML header of a model card (between the ``---`` lines), None when there is none."""
    if not text.startswith("---"):
        return None
    _, _, rest = text.partition("\n")
    header, found, _ = rest.partition("\n---")
    return header if found else None


def card_data(text: str) -> dict[str, Any]:
    """The YAML header of a model card as a dict: empty when there is none, it is malformed, it
    is over :data:`MAX_CARD_HEADER_BYTES`, or it expands (through aliases) past
    :data:`MAX_CARD_NODES` values. CPU-bound for large headers: servers call it off their loop."""
    header = card_header(text)
    if header is None or len(header.encode("utf-8", "replace")) > MAX_CARD_HEADER_BYTES:
        return {}
    try:
        data = yaml.load(header, Loader=_SafeLoader)  # noqa: S506 (a safe loader, C when available)
        bounded = isinstance(data, dict) and _within(data, [MAX_CARD_NODES])
    except (yaml.YAMLError, RecursionError):
        return {}
    return data if bounded else {}


def _within(value: Any, budget: list[int]) -> bool:
    """Whether ``value`` holds at most ``budget[0]`` values counted as JSON would write them
    (an alias counts each time it is used); stops as soon as the budget is spent."""
    budget[0] -= 1
    if budget[0] < 0:
        return False
    if isinstance(value, dict):
        return all(_within(k, budget) and _within(v, budget) for k, v in value.items())
    if isinstance(value, list):
        return all(_within(item, budget) for item in value)
    return True


def check_branch(name: Any) -> str:
    """A branch name other than ``main``: a name segment that no version tag or commit id can be."""
    branch = check_segment(name if isinstance(name, str) else "", "branch name")
    if branch == BRANCH or VERSION_TAG.fullmatch(branch) or COMMIT_ID.fullmatch(branch):
        raise RefError(f"{branch!r} cannot be a new branch: it is {BRANCH}, a version tag or a commit id")
    return branch


def card_derived_tags(card: dict[str, Any]) -> list[str]:
    """The tags the Hub derives from a model card header: its ``library_name``, its
    ``pipeline_tag``, and ``base_model:ID`` with ``base_model:RELATION:ID`` for each base model
    (``adapter`` for an adapter)."""
    tags = [card[key] for key in ("library_name", "pipeline_tag") if isinstance(card.get(key), str)]
    bases = card.get("base_model")
    relation = card.get("base_model_relation")
    for base in [bases] if isinstance(bases, str) else bases if isinstance(bases, list) else []:
        if isinstance(base, str):
            tags.append(f"base_model:{base}")
            if isinstance(relation, str):
                tags.append(f"base_model:{relation}:{base}")
    return tags


def version_commit_id(digest: str) -> str:
    """The commit id a version gets when no repository commit is recorded for it: fixed by its content."""
    return hashlib.sha1(f"ahl-version\n{digest}".encode()).hexdigest()


def entry_key(entry: tuple[str, str, str]) -> str:
    return "\n".join(entry)


def own_versions_dir(repos_dir: Path, repo_id: str) -> Path:
    """Where a repository keeps its versions when it tagged a key that another repository's
    versions already held in the directory's registry (SPEC 14.2: one key, several namespaces).
    The directory exists exactly when it does so."""
    return repos_dir.joinpath(*repo_id.split("/"), "versions")
