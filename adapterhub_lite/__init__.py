"""adapterhub-lite: share, pull and compose bottleneck adapters for Hugging Face encoders."""

from .api import LoadedAdapter, Prediction, TrainResult, evaluate, info, load, predict, train
from .artifact import Artifact, read_artifact
from .base import DEFAULT_BASE, BaseFingerprint, BaseModel, load_base
from .config import AdapterConfig, HeadConfig, TrainConfig
from .errors import (
    AhlError,
    ArtifactError,
    BaseModelError,
    ConfigError,
    DataError,
    IncompatibleBaseError,
    IntegrityError,
    UnsupportedModelError,
)
from .model import AdapterModel
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
    "ConfigError",
    "DataError",
    "Example",
    "HeadConfig",
    "IncompatibleBaseError",
    "IntegrityError",
    "LoadedAdapter",
    "Prediction",
    "TrainConfig",
    "TrainEvent",
    "TrainResult",
    "UnsupportedModelError",
    "evaluate",
    "info",
    "load",
    "load_base",
    "predict",
    "read_artifact",
    "train",
]
