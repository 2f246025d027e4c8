"""File helpers shared by artifacts, data and outputs: hashing, and all-or-nothing writes."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .constants import CRASH_ENV
from .errors import ConfigError


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_crash_hits: dict[str, int] = {}


def crash_point(step: str) -> None:
    """SIGKILL this process when ``$AHL_SERVE_TEST_CRASH_AT`` is ``step`` (its first time) or
    ``step#N`` (its N-th time in this process): a test hook."""
    wanted = os.environ.get(CRASH_ENV)
    if wanted and wanted.partition("#")[0] == step:
        _crash_hits[step] = _crash_hits.get(step, 0) + 1
        if str(_crash_hits[step]) == (wanted.partition("#")[2] or "1"):
            os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block: the one lock
    that registries, the server and the download cache use across processes."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def try_locked(path: Path) -> Iterator[bool]:
    """Like :func:`locked` without waiting: the block gets whether the lock was free (and is
    then held); False means another process or thread holds it."""
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def share_tree(root: Path) -> None:
    """Make a finished directory tree usable by its owner and readable by others: directories
    0755 (traversable), files 0644. mkdtemp and safetensors create owner-only entries, and a
    directory with a file's mode (0644) cannot be entered, not even by its owner."""
    root.chmod(0o755)
    for parent, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(parent, name), 0o755)
        for name in files:
            os.chmod(os.path.join(parent, name), 0o644)


def swap_into_place(staging: Path, out: Path) -> None:
    """Put the finished directory ``staging`` at ``out``, replacing what is there: the old one
    is first moved aside (a rename is atomic, a recursive delete is not), then removed."""
    share_tree(staging)
    if not out.exists():
        os.replace(staging, out)
        return
    aside = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, aside)
    os.replace(staging, out)
    shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def staged_directory(out: Path, *, name: str | None = None) -> Iterator[Path]:
    """Yield a new empty directory beside ``out`` to build a whole tree in; when the block
    completes the tree replaces ``out`` (:func:`swap_into_place`), on any error it is removed.
    So ``out`` holds the old tree or the finished new one, never half of either.

    Example:
        >>> with staged_directory(Path("my-adapter")) as staging:
        ...     (staging / "adapter.json").write_text("{}")
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name or out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield staging
        swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def check_output_file(path: Path, *, what: str, inputs: Iterable[str | Path] = ()) -> None:
    """Refuse, before any work, an output file that cannot be written as asked: a directory, one
    whose directory does not exist, or one of ``inputs`` (writing it would destroy that input).
    ``what`` names the output in the message (``--output``).

    Raises:
        ConfigError: saying which and what to do instead.
    """
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory; name a file")
    if not path.parent.is_dir():
        raise ConfigError(f"{what} {path}: the directory {path.parent} does not exist; create it or name another")
    for source in inputs:
        if Path(source).exists() and path.resolve() == Path(source).resolve():
            raise ConfigError(f"{what} {path} is also the input; writing it would destroy the input: name another file")


@contextmanager
def replacing(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; it replaces ``target`` only if the block
    completes, so a reader never sees a half-written file and a failure leaves nothing."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    # mkstemp makes the file owner-only; outputs are ordinary files (a caller may narrow it again)
    os.chmod(tmp, 0o644)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
