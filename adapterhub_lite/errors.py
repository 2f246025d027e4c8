"""The typed errors of adapterhub-lite.

Every error a user can cause is an :class:`AhlError`. Its message is one line that says what is
wrong and how to fix it; the CLI prints exactly that line and exits with ``exit_code``.
"""

from __future__ import annotations


class AhlError(Exception):
    """Base class of every error adapterhub-lite raises on purpose."""

    exit_code: int = 1


class DataError(AhlError):
    """A data file is missing, empty, unreadable or does not have the expected columns/labels."""

    exit_code = 2


class ConfigError(AhlError):
    """An option or configuration value is invalid."""

    exit_code = 2


class UnsupportedModelError(AhlError):
    """The base model belongs to a family we do not know where to put adapters in."""

    exit_code = 3


class BaseModelError(AhlError):
    """The base model cannot be found or loaded."""

    exit_code = 3


class IncompatibleBaseError(AhlError):
    """An artifact was trained on a different base model than the one it is loaded into."""

    exit_code = 4


class ArtifactError(AhlError):
    """A directory is not a valid artifact, or its metadata is malformed."""

    exit_code = 5


class IntegrityError(ArtifactError):
    """A file of an artifact does not match the size or sha256 its metadata records."""

    exit_code = 6


class UnreachableError(ConfigError):
    """A remote registry cannot be reached (connection refused, DNS, timeout), or the client is
    offline (``AHL_OFFLINE`` / ``HF_HUB_OFFLINE``) and the answer needs the server."""


class RefError(AhlError):
    """A registry reference is malformed (bad characters, empty parts, bad version...)."""

    exit_code = 2


class NotFoundError(AhlError):
    """A registry entry or version does not exist."""

    exit_code = 7


class VersionConflictError(AhlError):
    """A version already exists with different content: versions are immutable."""

    exit_code = 8


class RemoteError(AhlError):
    """A remote registry answered something malformed, unsafe or too large (checked before any
    file is written, so nothing was); or it refused the request with a reason of its own."""

    exit_code = 9
