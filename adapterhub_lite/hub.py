"""The registry verbs of the Python API: push, pull, search, resolve, verify, yank.

``registry`` is a directory path (the local registry; default ``$AHL_REGISTRY`` or the user's
data directory), or a remote: ``http(s)://HOST[:PORT][/NAMESPACE]`` (``ahl serve`` or any
Hub-compatible server) or ``hf://NAMESPACE`` (the Hugging Face Hub); see ``registry/SPEC.md``
section 14. They return values and raise :class:`~adapterhub_lite.errors.AhlError`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from .artifact import Artifact, is_artifact_dir, read_whole_artifact
from .base import DEFAULT_BASE, BaseFingerprint, BaseModel, load_base
from .config import check_choice
from .constants import REGISTRY_ENV, cache_root
from .errors import AhlError, ConfigError, DataError, NotFoundError, RefError
from .registry.client.local import LocalRegistry
from .registry.client.protocol import Progress, Registry
from .registry.client.remote import RemoteRegistry, is_remote, parse_remote
from .registry.client.tokens import store_token
from .registry.format.manifest import ARCHITECTURES, SORT_METRICS, Entry
from .registry.format.refs import Ref, base_key, parse_ref
from .task_embedding import TaskEmbedding, compute_task_embedding
from .training.data import Columns, ExampleSet, load_examples

logger = logging.getLogger(__name__)

RegistryLike = str | Path | Registry | None


def open_registry(registry: RegistryLike = None, *, create: bool = False) -> Registry:
    """The registry a ``--registry`` value names: a directory, a URL, or None for the default
    local registry (``$AHL_REGISTRY`` may itself hold a URL).

    A directory named here must already be a registry unless ``create`` (a push makes one): a
    mistyped, missing or empty path is an error, and nothing is written where it points. The
    default one is made on first use.

    Raises:
        ConfigError: a URL of another scheme than http(s):// or hf://.
        NotFoundError: the directory named is not a registry (and not ``create``).
    """
    if isinstance(registry, Registry):
        return registry
    if registry is None and is_remote(os.environ.get(REGISTRY_ENV)):
        registry = os.environ[REGISTRY_ENV]
    if is_remote(registry):
        return RemoteRegistry(str(registry))
    if isinstance(registry, str) and "://" in registry:
        raise ConfigError(
            f"{registry}: registries are directories, http(s)://HOST[/NAMESPACE] or hf://NAMESPACE; "
            f"this scheme is none of them"
        )
    return LocalRegistry(registry, create=create or registry is None)


def _ref(ref: str | Ref, base: str | None) -> Ref:
    if isinstance(ref, Ref):
        return ref
    check_not_a_path(ref)
    return parse_ref(ref, base=base_key(base) if base else None)


def check_not_a_path(target: str | Path) -> None:
    """Raise :class:`RefError` saying "no such directory" for a target that can only mean a file
    system path: one that is a file, starts like a path (``/``, ``.``, ``~``) or is a bare name
    (a registry ref has at least TASK/NAME). Anything else is left to the ref parser."""
    text = str(target)
    if not text or text.startswith(ADAPTERS_SCHEME):
        return
    what = "an artifact is a directory with adapter.json or fusion.json; a registry ref looks like TASK/NAME[@VERSION]"
    try:
        is_file = Path(text).expanduser().is_file()
    except (OSError, ValueError):  # too long, or a NUL byte: no path, the ref parser says why
        return
    if is_file:
        raise RefError(f"{text} is a file, not an artifact directory ({what})")
    if looks_like_path(text):
        directory = Path(text).expanduser()
        if not directory.is_dir():
            raise RefError(f"no such directory: {text} ({what})")
        if is_artifact_dir(directory):  # pull, yank: refs only
            raise RefError(f"{text} is an artifact directory; this command takes a registry ref: TASK/NAME[@VERSION]")
        raise RefError(f"{text} is a directory but no artifact: it holds no adapter.json or fusion.json")


def looks_like_path(text: str) -> bool:
    """Whether a command-line source can only mean a file system path: it starts like one (``/``,
    ``.``, ``~``) or is a bare name, which no registry ref (TASK/NAME at least) or Hub repository
    id (ORG/NAME) is."""
    return text.startswith(("/", ".", "~")) or not any(c in text for c in "/\\@")


def is_artifact_path(target: str | Path) -> bool:
    """Whether a command-line target names a directory (an artifact) rather than a registry ref.

    False for anything else, including a ref too long to be a file name."""
    try:
        return str(target) != "" and Path(target).is_dir()
    except OSError:
        return False


def push(path: str | Path, *, registry: RegistryLike = None, version: str | None = None) -> Entry:
    """Push an artifact directory; returns the stored version (see :meth:`LocalRegistry.push`).

    Example:
        >>> push("trec-adapter", version="1.0.0").ref
        Ref(base='sentence-transformers/all-MiniLM-L6-v2', task='trec', name='trec', version='1.0.0')
    """
    return open_registry(registry, create=True).push(path, version=version)


def check_push(registry: RegistryLike = None) -> None:
    """Raise now what :func:`push` to ``registry`` would refuse at once (no such scheme, a remote
    without a token): for commands that train or convert before they push."""
    open_registry(registry, create=True).check_push()


def pull(
    ref: str | Ref,
    *,
    to: str | Path | None = None,
    base: str | BaseModel | None = None,
    registry: RegistryLike = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> tuple[Entry, Path]:
    """Pull a version into a directory (default ``./NAME-VERSION``), verified file by file.

    With ``base``, the short ref form resolves against it and the recorded base fingerprint is
    compared before anything is copied: a mismatch raises :class:`IncompatibleBaseError`.
    ``progress`` (remote registries) receives the bytes to download and returns a callback
    that is advanced as they arrive.
    """
    base_id = base.model_id if isinstance(base, BaseModel) else base
    _ref(ref, base_id)  # a malformed ref is refused first, whatever the registry is
    reg = open_registry(registry)
    entry = _resolve(reg, ref, base if isinstance(base, BaseModel) else base_id)
    checked = None
    if base is not None:
        loaded = base if isinstance(base, BaseModel) else load_base(base)
        checked = (loaded.model_id, loaded.fingerprint)
    target = Path(to) if to is not None else Path(f"{entry.ref.name}-{entry.ref.version}")
    reg.pull(entry.ref, target, base=checked, overwrite=overwrite, progress=progress)
    if entry.yanked:  # as pip and cargo do: named exactly, so it comes, but not without a word
        logger.warning("%s is yanked: its publisher withdrew it; pulled because it was named exactly", entry.ref)
    return entry, target


def search(
    *,
    registry: RegistryLike = None,
    like: str | Path | ExampleSet | TaskEmbedding | None = None,
    top: int | None = None,
    columns: Columns | None = None,
    **filters: Any,
) -> list[Entry]:
    """Search by ``base``, ``task``, ``architecture`` (one of ``ARCHITECTURES``), ``name``
    (substring), ``tag``; ``sort`` by a dev metric (one of ``SORT_METRICS``); ``limit`` rows.

    With ``like`` (a data file, loaded examples, or a :class:`TaskEmbedding`), the latest
    entries of ``base`` (default: the embedded base) are ranked by the similarity of their task
    embedding to that data's, best first, ``top`` of them (default 10); each entry's ``score``
    holds the cosine. Remote registries rank on the server, in one request. The data's
    embedding is computed here, with the frozen base (SPEC 2.8); no text leaves the machine.

    Example:
        >>> [(e.ref.task, round(e.score, 2)) for e in search(like="train.csv", top=3)]
        [('vader_amazon', 0.93), ('rotten_tomatoes', 0.9), ('vader_movies', 0.88)]
    """
    # A value no entry can have would match nothing, silently: refused, with the choices.
    if filters.get("architecture") is not None:
        check_choice(filters["architecture"], ARCHITECTURES, "--arch")
    if filters.get("sort") is not None:
        check_choice(filters["sort"], SORT_METRICS, "--sort metric")
    reg = open_registry(registry)
    if like is None:
        return reg.search(**filters)
    others = sorted(k for k, v in filters.items() if v is not None and k not in ("base", "limit"))
    if others:
        raise ConfigError(
            f"--like ranks by similarity; combine it only with --base and --top (not {', '.join(others)})"
        )
    base = filters.get("base")
    if isinstance(like, TaskEmbedding):
        embedding, base_id = like, (base.model_id if isinstance(base, BaseModel) else base) or DEFAULT_BASE
    else:
        loaded = base if isinstance(base, BaseModel) else load_base(base)
        embedding, base_id = task_embedding_of(like, base=loaded, columns=columns), loaded.model_id
    limit = top if top is not None else filters.get("limit") or 10
    if limit < 1:
        raise ConfigError("--top must be at least 1")
    return [
        dataclasses.replace(entry, score=score)
        for entry, score in reg.search_like(embedding, base=base_id, top=int(limit))
    ]


def task_embedding_of(
    data: str | Path | ExampleSet, *, base: str | BaseModel | None = None, columns: Columns | None = None
) -> TaskEmbedding:
    """The task embedding of a data file (or loaded examples) under ``base`` (SPEC 2.8)."""
    examples = data if isinstance(data, ExampleSet) else load_examples(data, columns or Columns(), require_label=False)
    if not examples.examples:
        raise DataError(f"{examples.source}: no rows to summarise")
    loaded = base if isinstance(base, BaseModel) else load_base(base)
    return compute_task_embedding(loaded, examples)


def resolve(ref: str | Ref, *, base: str | None = None, registry: RegistryLike = None) -> Entry:
    """The version a ref means, with its manifest (no files move)."""
    _ref(ref, base)  # a malformed ref is refused first, whatever the registry is
    return _resolve(open_registry(registry), ref, base)


def _resolve(reg: Registry, ref: str | Ref, base: str | BaseModel | None) -> Entry:
    """Resolve ``ref``; a short ref (TASK/NAME) with a base in a local directory that no entry is
    keyed by (``local/<dir>``) means the entry trained on the same weights (same fingerprint),
    under whichever base id it was pushed: a copy of a Hub model in a directory finds its adapters."""
    base_id = base.model_id if isinstance(base, BaseModel) else base
    try:
        return reg.resolve(_ref(ref, base_id))
    except NotFoundError:
        short = isinstance(ref, str) and ref.partition("@")[0].count("/") == 1
        if not (short and base_id and Path(base_id).expanduser().is_dir()):
            raise
    wanted = parse_ref(str(ref))
    fingerprint = (base if isinstance(base, BaseModel) else load_base(base_id)).fingerprint
    for found in reg.search(task=wanted.task, name=wanted.name, limit=1000):
        recorded = found.summary.get("fingerprint")
        same = recorded and not BaseFingerprint.from_dict(recorded).differences(fingerprint)
        if found.ref.name == wanted.name and same:
            return reg.resolve(Ref(found.ref.base, wanted.task, wanted.name, wanted.version, wanted.digest))
    raise NotFoundError(
        f"no entry {wanted.task}/{wanted.name} was trained on the weights in {base_id} (looked up by "
        f"fingerprint); 'ahl search --task {wanted.task}' lists what there is"
    )


def verify(target: str | Path, *, base: str | None = None, registry: RegistryLike = None) -> Entry | Artifact:
    """Verify an artifact directory (a fusion with its adapter copies), or a registry version,
    file by file against its sha256."""
    if is_artifact_path(target):
        return read_whole_artifact(target)  # a fusion is whole only with the adapters it was trained on
    return open_registry(registry).verify(_ref(str(target), base))


def yank(ref: str | Ref, *, base: str | None = None, registry: RegistryLike = None) -> Entry:
    """Hide an exact version from search and ``latest`` (still pullable by its version)."""
    return open_registry(registry).yank(_ref(ref, base))


def login(registry: str, token: str) -> str:
    """Check ``token`` with a remote registry and store it for that registry alone; returns the
    user name the server knows the token by.

    Example:
        >>> login("http://127.0.0.1:8765", "my-token")
        'alice'
    """
    if not is_remote(registry):
        raise ConfigError(f"{registry} is a directory; logging in is for remote registries (http(s)://... or hf://...)")
    remote = RemoteRegistry(registry, token=token)
    user = remote.whoami()
    store_token(remote.endpoint, token)
    return user


def logout(registry: str) -> bool:
    """Forget the stored token of a remote registry; whether there was one (without, nothing is
    written)."""
    endpoint, _ = parse_remote(registry)
    return store_token(endpoint, None)


ADAPTERS_SCHEME = "adapters:"


def adapters_source(source: str) -> tuple[str, str | None]:
    """``(REPO or DIR, REVISION or None)`` of an ``adapters:REPO[@REVISION]`` source."""
    repo, _, revision = source.removeprefix(ADAPTERS_SCHEME).partition("@")
    return repo, revision or None


def import_dir(source: str) -> Path:
    """Where an ``adapters:`` source is converted to by default: ``./<last part of REPO>``."""
    return Path(Path(adapters_source(source)[0]).name)


def local_artifact(target: str | Path, *, base: str | None = None, registry: RegistryLike = None) -> Path:
    """An artifact directory for a target: the directory itself, or a registry ref pulled
    (verified, with a fusion's adapters) into the cache's ``artifacts/``, once per content digest."""
    if is_artifact_path(target):
        return Path(target)
    entry = resolve(str(target), base=base, registry=registry)
    cached = cache_root() / "artifacts" / entry.digest.removeprefix("sha256:")
    try:
        read_whole_artifact(cached)  # verified (a fusion with its adapters): a damaged entry is pulled again
        return cached
    except AhlError:
        return pull(entry.ref, to=cached, base=base, registry=registry, overwrite=True)[1]


def fetch(source: str | Path, *, to: Path, base: str | BaseModel | None = None, registry: RegistryLike = None) -> Path:
    """An artifact directory for any adapter source, ready to load or fuse:

    - an artifact directory: itself;
    - ``adapters:REPO[@REVISION]`` or ``adapters:DIR``: an adapter in AdapterHub's format,
      converted into ``to`` (a repository comes from ``registry`` when it is remote, e.g. an
      ``ahl serve``, else from the Hugging Face Hub);
    - anything else: a registry ref, pulled (verified) into ``to``.
    """
    if is_artifact_path(source):
        return Path(source)
    text = str(source)
    if text.startswith(ADAPTERS_SCHEME):
        from .adapters_format import import_adapter

        repo, revision = adapters_source(text)
        base_id = base.model_id if isinstance(base, BaseModel) else base
        remote = (
            registry
            if isinstance(registry, RemoteRegistry)
            else (RemoteRegistry(str(registry)) if is_remote(registry) else None)
        )
        return import_adapter(
            repo,
            to=to,
            base=base_id,
            revision=revision,
            endpoint=remote.endpoint if remote else None,
            token=remote.token if remote else None,
        ).path
    return pull(text, to=to, base=base, registry=registry)[1]
