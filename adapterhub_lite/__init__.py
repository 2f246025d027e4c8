"""adapterhub-lite: share, pull and compose bottleneck adapters for Hugging Face encoders.

The public names below load their submodule on first access (PEP 562), so that a program using
one part pays only for that part: ``AdapterModel`` and ``load_base`` for inference do not import
the registry, its sqlite index and HTTP client, nor the training and interop code.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# submodule -> the public names it defines; "" exports the submodule itself under its own name
_EXPORTS: dict[str, tuple[str, ...]] = {
    ".hub": ("", "login", "logout", "pull", "push", "resolve", "search", "verify", "yank"),
    ".adapters_format": ("export_adapter", "import_adapter"),
    ".analysis": ("FusionActivations", "PruneReport", "fusion_activations", "prune_fusion"),
    ".api": ("LoadedAdapter", "Prediction", "TrainResult", "evaluate", "fuse", "info", "load", "predict", "train"),
    ".artifact": ("Artifact", "read_artifact"),
    ".base": ("DEFAULT_BASE", "BaseFingerprint", "BaseModel", "load_base"),
    ".config": ("AdapterConfig", "FusionConfig", "HeadConfig", "TrainConfig"),
    ".errors": (
        "AhlError",
        "ArtifactError",
        "BaseModelError",
        "ConfigError",
        "DataError",
        "IncompatibleBaseError",
        "IntegrityError",
        "NotFoundError",
        "RefError",
        "UnsupportedModelError",
        "VersionConflictError",
    ),
    ".model": ("AdapterModel",),
    ".registry.client.cache": ("DownloadCache",),
    ".registry.client.local": ("LocalRegistry",),
    ".registry.format.manifest": ("Entry",),
    ".registry.format.refs": ("Ref", "parse_ref"),
    ".registry.client.remote": ("RemoteRegistry",),
    ".registry.client.protocol": ("Registry",),
    ".training.data": ("Columns", "Example"),
    ".training.loop": ("TrainEvent",),
}
_HOME = {name or module.rsplit(".", 1)[-1]: (module, name) for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` and return the name (cached in this module)."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attribute = _HOME[name]
    module = importlib.import_module(module_name, __name__)
    value = getattr(module, attribute) if attribute else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
