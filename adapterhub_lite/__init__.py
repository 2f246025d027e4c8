"""adapterhub-lite: share, pull and compose bottleneck adapters for Hugging Face encoders."""

from . import hub
from .adapters_format import export_adapter, import_adapter
from .analysis import FusionActivations, PruneReport, fusion_activations, prune_fusion
from .api import LoadedAdapter, Prediction, TrainResult, evaluate, fuse, info, load, predict, train
from .artifact import Artifact, read_artifact
from .base import DEFAULT_BASE, BaseFingerprint, BaseModel, load_base
from .config import AdapterConfig, FusionConfig, HeadConfig, TrainConfig
from .errors import (
    AhlError,
    ArtifactError,
    BaseModelError,
    ConfigError,
    DataError,
    IncompatibleBaseError,
    IntegrityError,
    NotFoundError,
    RefError,
    UnsupportedModelError,
    VersionConflictError,
)
from .hub import login, logout, pull, push, resolve, search, verify, yank
from .model import AdapterModel
from .registry.cache import DownloadCache
from .registry.local import Entry, LocalRegistry
from .registry.refs import Ref, parse_ref
from .registry.remote import RemoteRegistry
from .training.data import Columns, Example
from .training.loop import TrainEvent

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BASE",
    "AdapterConfig",
    "AdapterModel",
    "AhlError",
    "Artifact",
    "ArtifactError",
    "BaseFingerprint",
    "BaseModel",
    "BaseModelError",
    "Columns",
    "DownloadCache",
    "ConfigError",
    "DataError",
    "Example",
    "FusionActivations",
    "FusionConfig",
    "HeadConfig",
    "IncompatibleBaseError",
    "IntegrityError",
    "Entry",
    "LocalRegistry",
    "NotFoundError",
    "Ref",
    "RemoteRegistry",
    "RefError",
    "VersionConflictError",
    "LoadedAdapter",
    "Prediction",
    "PruneReport",
    "TrainConfig",
    "TrainEvent",
    "TrainResult",
    "UnsupportedModelError",
    "evaluate",
    "export_adapter",
    "fuse",
    "fusion_activations",
    "prune_fusion",
    "hub",
    "parse_ref",
    "pull",
    "push",
    "resolve",
    "search",
    "verify",
    "yank",
    "import_adapter",
    "info",
    "load",
    "load_base",
    "login",
    "logout",
    "predict",
    "read_artifact",
    "train",
]
