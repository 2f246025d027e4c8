"""Registry references: which entry and which version a user means.

Grammar (see ``registry/SPEC.md``)::

    REF      = [BASE "/"] TASK "/" NAME [ "@" SELECTOR ]
    BASE     = SEGMENT | SEGMENT "/" SEGMENT           (a Hugging Face model id)
    SELECTOR = VERSION | "latest" | "sha256:" 64 * HEX
    VERSION  = MAJOR "." MINOR "." PATCH               (whole numbers)
    SEGMENT  = [A-Za-z0-9] [A-Za-z0-9._-]{0,95}        (ASCII; no "..")

A ref of two segments is the short form (``trec/qc@1.0.0``): its base comes from ``--base`` or
the embedded default. Three or four segments carry the base (``org/model/trec/qc``). Every
segment is validated before it touches a path, so no ref can escape the registry directory.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from ...base import DEFAULT_BASE
from ...errors import RefError

SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
VERSION = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MAX_REF_LENGTH = 400


def check_segment(value: str, what: str) -> str:
    """Return ``value`` if it is a valid name segment, else raise :class:`RefError` saying why."""
    if not value:
        raise RefError(f"{what} is empty; refs look like TASK/NAME[@VERSION] or BASE/TASK/NAME")
    for char in value:
        if ord(char) > 127:
            raise RefError(
                f"{what} {value!r} contains the non-ASCII character {char!r} "
                f"(U+{ord(char):04X} {unicodedata.name(char, 'unnamed')}); names use ASCII letters, "
                f"digits, '.', '_' and '-'"
            )
    if len(value) > 96:
        raise RefError(f"{what} {value[:20]!r}... is {len(value)} characters long; the limit is 96")
    if ".." in value or not SEGMENT.fullmatch(value):
        raise RefError(
            f"{what} {value!r} is not a valid name: use ASCII letters, digits, '.', '_' and '-', "
            f"starting with a letter or digit, without '..'"
        )
    return value


def check_version(value: str) -> str:
    """Return ``value`` if it is MAJOR.MINOR.PATCH, else raise :class:`RefError`."""
    if not VERSION.fullmatch(value):
        raise RefError(f"version {value!r} is not MAJOR.MINOR.PATCH (for example 1.0.0)")
    return value


MAX_FILE_PATH = 1000  # as ahl serve takes in a commit
MAX_FILE_DEPTH = 8


def check_file_path(value: object, what: str = "file name") -> str:
    """Return ``value`` if it is a safe file path inside an artifact, else raise :class:`RefError`.

    Relative, ``/``-separated, at most ``MAX_FILE_DEPTH`` parts and ``MAX_FILE_PATH`` characters,
    each part a valid name segment (ASCII letters, digits, ``.``, ``_``, ``-``; no ``..``, no NUL,
    no leading dot): no path built from it can leave the directory it is joined to."""
    if not isinstance(value, str) or not value:
        raise RefError(f"{what} {value!r} is empty or not a string")
    if "\x00" in value:
        raise RefError(f"{what} {value!r} contains a NUL character")
    if len(value) > MAX_FILE_PATH:
        raise RefError(f"{what} {value[:40]!r}... is {len(value)} characters long; the limit is {MAX_FILE_PATH}")
    if value.startswith("/"):
        raise RefError(f"{what} {value!r} is an absolute path; file names are relative to the artifact")
    parts = value.split("/")
    if len(parts) > MAX_FILE_DEPTH:
        raise RefError(f"{what} {value!r} is {len(parts)} directories deep; the limit is {MAX_FILE_DEPTH}")
    for part in parts:
        check_segment(part, f"{what} part")
    return value


def version_key(version: str) -> tuple[int, int, int]:
    """Sort key of a version: numeric, so 1.10.0 comes after 1.9.0."""
    major, minor, patch = (int(part) for part in version.split("."))
    return major, minor, patch


def check_base_id(value: str) -> str:
    """Validate a base model id: one or two segments (``model`` or ``org/model``)."""
    parts = value.split("/")
    if len(parts) > 2:
        raise RefError(f"base model id {value!r} has more than two parts")
    for part in parts:
        check_segment(part, "base model id part")
    return value


def base_key(model_id: str) -> str:
    """The registry key of a base model id.

    A Hugging Face id is its own key. An artifact trained on a local directory records the
    directory's absolute path; its key is ``local/<directory name>`` (characters outside the name
    alphabet become ``-``). Compatibility never rests on the key: pulls compare fingerprints.
    """
    try:
        return check_base_id(model_id)
    except RefError:
        name = re.sub(r"[^A-Za-z0-9._-]", "-", model_id.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1])
        name = re.sub(r"\.{2,}", ".", name).lstrip("._-")[:96] or "model"
        return f"local/{name}"


def repo_slug(base: str, task: str, name: str) -> str:
    """The repository name of an entry on a remote registry (``registry/SPEC.md`` 14.2).

    Readable (task and name) and unique (a hash of the whole entry), within the Hub's rules:
    at most 96 characters, no ``--`` or ``..``, no leading or trailing ``-`` or ``.``.
    """
    readable = re.sub(r"[._-]{2,}", "-", f"{task}-{name}").strip("._-")[:87].rstrip("._-")
    digest = hashlib.sha256(f"{base}\n{task}\n{name}".encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


@dataclass(frozen=True)
class Ref:
    """A parsed reference: entry ``(base, task, name)`` and an optional selector."""

    base: str
    task: str
    name: str
    version: str | None = None  # None means latest
    digest: str | None = None  # "sha256:<hex>" pins exact content

    @property
    def entry(self) -> tuple[str, str, str]:
        return self.base, self.task, self.name

    def with_version(self, version: str) -> Ref:
        return Ref(self.base, self.task, self.name, version, None)

    def __str__(self) -> str:
        selector = f"@{self.version}" if self.version else f"@{self.digest}" if self.digest else ""
        return f"{self.base}/{self.task}/{self.name}{selector}"


def parse_ref(text: str, *, base: str | None = None) -> Ref:
    """Parse a ref; the short form takes ``base`` (or the embedded default model's id).

    Raises:
        RefError: empty parts, absolute paths, ``..``, non-ASCII look-alikes, over-long names,
            a malformed version or digest. The message says what is wrong.

    Example:
        >>> parse_ref("trec/qc@1.2.0").version
        '1.2.0'
    """
    if not isinstance(text, str) or not text.strip():
        raise RefError("the ref is empty; refs look like TASK/NAME[@VERSION] or BASE/TASK/NAME")
    if len(text) > MAX_REF_LENGTH:
        raise RefError(f"the ref is {len(text)} characters long; the limit is {MAX_REF_LENGTH}")
    if text.startswith("/") or "\\" in text:
        raise RefError(f"{text!r} looks like a path; refs look like TASK/NAME[@VERSION]")
    path, _, selector = text.partition("@")
    parts = path.split("/")
    if len(parts) == 2:
        base_id = check_base_id(base or DEFAULT_BASE)
    elif len(parts) in (3, 4):
        base_id = check_base_id("/".join(parts[:-2]))
    else:
        raise RefError(f"{text!r} has {len(parts)} parts; refs look like TASK/NAME or BASE/TASK/NAME")
    task, name = check_segment(parts[-2], "task"), check_segment(parts[-1], "name")
    version = digest = None
    if selector.startswith("sha256:"):
        if not DIGEST.fullmatch(selector):
            raise RefError(f"digest {selector!r} is not sha256: followed by 64 lowercase hex digits")
        digest = selector
    elif selector and selector != "latest":
        version = check_version(selector)
    elif "@" in text and not selector:
        raise RefError(f"{text!r} ends with '@' but names no version")
    return Ref(base_id, task, name, version, digest)
