"""The interface every registry implements: a local directory (:class:`LocalRegistry`) and a
remote server (:class:`RemoteRegistry`, the Hub or ``ahl serve``). ``hub.py``'s verbs work on any
object that has these methods; a new kind of registry implements them (see CONTRIBUTING.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from ...base import BaseFingerprint
from ...task_embedding import TaskEmbedding
from ..format.manifest import Entry
from ..format.refs import Ref

# Given the bytes a pull will download, returns the callback that advances it.
Progress = Callable[[int], Callable[[int], None]]


@runtime_checkable
class Registry(Protocol):
    """A store of immutable, verified artifact versions, keyed by ``(base, task, name)``.

    Every method returns values and raises :class:`~adapterhub_lite.errors.AhlError` subclasses.
    """

    def push(self, path: str | Path, *, version: str | None = None) -> Entry:
        """Store an artifact directory as a new immutable version (the next patch without
        ``version``; identical content returns the version that has it)."""
        ...

    def check_push(self) -> None:
        """Raise, without any request or write, what :meth:`push` would refuse at once (a remote
        without a token): a command checks it before work that ends in a push."""
        ...

    def pull(
        self,
        ref: Ref,
        to: Path,
        *,
        base: tuple[str, BaseFingerprint] | None = None,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> Entry:
        """Copy a version into directory ``to``, every file verified; with ``base`` (id and
        fingerprint) a different recorded base is refused before any file moves. ``progress``
        is told the bytes to download, if any."""
        ...

    def resolve(self, ref: Ref) -> Entry:
        """The version a ref means: exact version, digest, or the latest non-yanked one."""
        ...

    def versions(self, ref: Ref, *, include_yanked: bool = False) -> list[str]:
        """The versions of an entry, oldest first."""
        ...

    def verify(self, ref: Ref) -> Entry:
        """Check every stored file of a version against its sha256."""
        ...

    def yank(self, ref: Ref) -> Entry:
        """Hide an exact version from search and ``latest``; it stays pullable by version."""
        ...

    def search(
        self,
        *,
        base: str | None = None,
        task: str | None = None,
        architecture: str | None = None,
        name: str | None = None,
        tag: str | None = None,
        sort: str | None = None,
        limit: int = 50,
    ) -> list[Entry]:
        """Latest non-yanked version of each entry matching the exact ``base``, ``task`` and
        ``architecture``, a ``name`` substring and a ``tag``; ``sort`` by a dev metric, best first."""
        ...

    def search_like(
        self, embedding: TaskEmbedding, *, base: str | None = None, top: int = 10
    ) -> list[tuple[Entry, float]]:
        """Latest entries ranked by the cosine of their task embedding with ``embedding``."""
        ...
