"""Configuration values: what an adapter looks like, what a head predicts, how training runs.

Configs are plain dataclasses; each field carries its help text in ``metadata["help"]``. They
round-trip through JSON (``to_dict`` / ``from_dict``) because they are stored in artifacts, and
``from_dict`` keeps fields it does not know so that newer artifacts survive older readers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from .errors import ConfigError

POSITIONS = ("attention", "ffn")
NON_LINEARITIES = ("relu", "gelu", "silu", "swish", "leaky_relu", "tanh")
INITS = ("bert", "zero_up", "houlsby")
HEAD_TYPES = ("classification", "regression", "multiple_choice")
POOLINGS = ("cls", "mean")
TRAIN_MODES = ("adapter", "head_only", "full", "fusion")
METRICS = ("auto", "accuracy", "macro_f1", "pearson", "spearman")
CLASS_WEIGHTS = ("none", "balanced")

_C = TypeVar("_C", bound="_JsonConfig")


def check_choice(value: str, choices: tuple[str, ...] | list[str], what: str) -> None:
    """Raise :class:`ConfigError` ``unknown WHAT 'VALUE'; choose one of: ...`` for a value outside
    ``choices``: the one message of every option that takes a name from a fixed set."""
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")


def only_with(given: Mapping[str, object], *, needs: str, present: bool, fix: str | None = None) -> None:
    """Refuse an option that takes effect only with another (``needs``, as on the command line)
    when that one is absent: ignoring it silently would run something else than what was asked.

    ``given`` maps each dependent flag to its value (``None``: not given); ``fix`` says how to
    add what is missing (default ``add NEEDS``).

    Example:
        >>> only_with({"--top": top}, needs="--like", present=like is not None, fix="add --like DATA")
    """
    if present:
        return
    for flag, value in given.items():
        if value is not None:
            raise ConfigError(f"{flag} works only with {needs}; drop {flag}, or {fix or 'add ' + needs}")


class _JsonConfig:
    """JSON round trip shared by every config dataclass."""

    # Declared for the type checker: every subclass is a dataclass (so ``dataclasses.asdict`` and
    # ``fields`` accept it) with an ``extra`` field for keys this version does not know.
    __dataclass_fields__: ClassVar[dict[str, Any]]
    extra: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        extra = out.pop("extra", {}) or {}
        return {**extra, **out}

    @classmethod
    def from_dict(cls: type[_C], data: dict[str, Any]) -> _C:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "positions" in kwargs:
            kwargs["positions"] = tuple(kwargs["positions"])
        obj = cls(**kwargs)
        if "extra" in {f.name for f in dataclasses.fields(cls)}:
            obj.extra = {k: v for k, v in data.items() if k not in known}
        return obj


@dataclass
class AdapterConfig(_JsonConfig):
    """A bottleneck adapter (Houlsby et al. 2019; Pfeiffer et al. 2021, §2.2 and A.2).

    At each position the adapter computes ``a = W_up f(W_down u + b_down) + b_up`` and adds
    it to the sublayer output ``h`` before the pretrained residual LayerNorm: ``LN(h + x + a)``.
    With ``original_ln_before`` the adapter reads ``u = LN(h + x)`` (the pretrained LayerNorm
    applied once more, the paper's best setup); otherwise it reads ``u = h``. A zero
    up-projection (``W_up`` and ``b_up``, as ``init="zero_up"`` makes it) therefore leaves the
    base model's output unchanged.
    """

    preset: str = field(default="pfeiffer", metadata={"help": "Name of the preset this came from."})
    positions: tuple[str, ...] = field(
        default=("ffn",), metadata={"help": "Where adapters sit in each layer: 'attention', 'ffn'."}
    )
    reduction_factor: int = field(
        default=16, metadata={"help": "hidden size / bottleneck size (the paper's best: 16)."}
    )
    non_linearity: str = field(default="relu", metadata={"help": f"One of {NON_LINEARITIES}."})
    original_ln_before: bool = field(
        default=True,
        metadata={"help": "Feed the adapter the output of the pretrained LayerNorm (Pfeiffer)."},
    )
    init: str = field(
        default="bert",
        metadata={
            "help": "bert: N(0, 0.02) weights, zero biases (as the paper's code); zero_up: "
            "Kaiming down, zero up (starts exactly at the base model); houlsby: N(0, 0.01) "
            "truncated."
        },
    )
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # Pfeiffer et al. 2021, A.2: one adapter after the feed-forward block, pretrained
        # LayerNorm before and after, reduction factor 16, ReLU.
        "pfeiffer": dict(positions=("ffn",), non_linearity="relu", original_ln_before=True),
        # Houlsby et al. 2019: adapters after attention and after feed-forward, reading the
        # sublayer output directly.
        "houlsby": dict(positions=("attention", "ffn"), non_linearity="swish", original_ln_before=False),
    }

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> AdapterConfig:
        """Build a config from a named preset, with any field overridden.

        Example:
            >>> AdapterConfig.from_preset("houlsby", reduction_factor=8).positions
            ('attention', 'ffn')
        """
        check_choice(name, list(cls.PRESETS), "adapter preset")
        values = {**cls.PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
        cfg = cls(preset=name, **values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a value outside its allowed set."""
        if not self.positions or any(p not in POSITIONS for p in self.positions):
            raise ConfigError(f"adapter positions must be a non-empty subset of {POSITIONS}")
        check_choice(self.non_linearity, NON_LINEARITIES, "non-linearity")
        check_choice(self.init, INITS, "init")
        if not isinstance(self.reduction_factor, int) or self.reduction_factor < 1:
            raise ConfigError("reduction factor must be a whole number >= 1")


@dataclass
class FusionConfig(_JsonConfig):
    """AdapterFusion (Pfeiffer et al. 2021, §3.2 and §4.1): per-site attention over adapters.

    See ``docs/fusion.md`` for the equations and the choices the paper leaves open.
    """

    temperature: float = field(default=1.0, metadata={"help": "Softmax temperature over adapter scores."})
    value_l2: float = field(
        default=0.01, metadata={"help": "Weight of the L2 penalty pulling each V towards the identity."}
    )
    value_init_noise: float = field(
        default=1e-6, metadata={"help": "Std of the noise added off the diagonal of V's identity init."}
    )
    query_key_init_std: float = field(default=0.02, metadata={"help": "Std of the random Q and K init."})
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a value no fusion can use."""
        # one message per field, naming the one that is wrong ("not >": NaN fails too)
        checks = [
            (
                self.temperature > 0,
                f"fusion temperature must be > 0 (got {self.temperature}): scores are divided by it",
            ),
            (self.value_l2 >= 0, f"fusion value L2 weight must be >= 0 (got {self.value_l2}); pass 0 to turn it off"),
            (self.value_init_noise >= 0, f"fusion value_init_noise must be >= 0 (got {self.value_init_noise})"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


@dataclass
class HeadConfig(_JsonConfig):
    """A prediction head on top of the encoder."""

    type: str = field(default="classification", metadata={"help": f"One of {HEAD_TYPES}."})
    label_names: list[str] = field(
        default_factory=list, metadata={"help": "Class names in logit order (classification)."}
    )
    num_choices: int | None = field(
        default=None, metadata={"help": "Answers per question (multiple choice; None = any)."}
    )
    pooling: str = field(default="cls", metadata={"help": "Sequence summary: first token ('cls') or 'mean'."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout before each head layer."})
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_outputs(self) -> int:
        """Logits per example (per candidate for multiple choice)."""
        if self.type == "classification":
            return len(self.label_names)
        return 1

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an impossible head."""
        check_choice(self.type, HEAD_TYPES, "head")
        check_choice(self.pooling, POOLINGS, "pooling")
        if self.type == "classification" and len(self.label_names) < 2:
            raise ConfigError("a classification head needs at least two labels in the training data")


@dataclass
class TrainConfig(_JsonConfig):
    """How training runs. ``None`` and ``"auto"`` values are chosen from the data when training
    starts (``training/schedule.py``, docs/small-data.md): at least ``min_steps`` optimizer steps,
    a learning rate from the number of steps (the paper's 1e-4 / 5e-5 on large data), macro-F1
    model selection on imbalanced labels. ``learning_rate=1e-4, epochs=10, patience=2,
    metric="accuracy"`` is the paper's setup (A.2); fusion's is the same with 5e-5."""

    mode: str = field(
        default="adapter",
        metadata={"help": "adapter: train adapter + head; head_only: frozen encoder; full: all."},
    )
    learning_rate: float | None = field(
        default=None,
        metadata={"help": "Peak AdamW learning rate (None: from the number of optimizer steps)."},
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    batch_size: int = field(default=32, metadata={"help": "Examples per optimizer step."})
    grad_accum: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    epochs: int | None = field(
        default=None,
        metadata={"help": "Maximum number of epochs (None: 10, or more to reach min_steps)."},
    )
    patience: int | None = field(
        default=None,
        metadata={"help": "Stop after this many epochs without dev improvement (None: ~min_steps/4 steps, >= 2)."},
    )
    min_steps: int = field(
        default=200, metadata={"help": "Optimizer steps automatic epochs reach at least (small data)."}
    )
    metric: str = field(
        default="auto",
        metadata={
            "help": f"Dev metric for early stopping and the kept epoch: one of {METRICS} (auto: "
            "macro_f1 on imbalanced classification labels, else accuracy; pearson for regression)."
        },
    )
    class_weight: str = field(
        default="none",
        metadata={"help": f"Loss weights per class: one of {CLASS_WEIGHTS} (balanced: n / (classes x count))."},
    )
    warmup_ratio: float = field(default=0.06, metadata={"help": "Share of steps warming up."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping (0: off)."})
    seed: int = field(default=42, metadata={"help": "Seed for init, shuffling and dropout."})
    max_length: int = field(default=128, metadata={"help": "Tokens per sequence at most."})
    device: str = field(default="auto", metadata={"help": "auto (CUDA > MPS > CPU), or a torch device."})
    base_dropout: bool = field(
        default=False,
        metadata={
            "help": "Keep dropout active inside the frozen base while training adapters or a head "
            "(AdapterHub's behaviour). Off by default: about 30% faster steps on CPU (attention "
            "without dropout takes PyTorch's fused kernel) and no worse dev accuracy in our runs."
        },
    )
    dev_split: float = field(
        default=0.1,
        metadata={
            "help": "Share of train held out as dev when no dev file is given (for a classification "
            "head, that share of each class; every class keeps a training row)."
        },
    )
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a value no training run can use."""
        check_choice(self.mode, TRAIN_MODES, "mode")
        check_choice(self.metric, METRICS, "metric")
        check_choice(self.class_weight, CLASS_WEIGHTS, "class weight")
        checks = [
            (self.learning_rate is None or self.learning_rate > 0, "learning rate must be > 0"),
            (self.batch_size >= 1, "batch size must be >= 1"),
            (self.grad_accum >= 1, "gradient accumulation must be >= 1"),
            # "or": the list is built before the loop raises, so the modulo must not see a 0.
            (
                self.grad_accum < 1 or self.batch_size % self.grad_accum == 0,
                f"--batch-size {self.batch_size} must be a multiple of --grad-accum {self.grad_accum} "
                "(the micro-batches of one step); change one of them",
            ),
            (self.weight_decay >= 0, "weight decay must be >= 0; pass 0 to turn it off"),
            (0 <= self.seed < 2**32, "seed must be in [0, 2**32); pass a whole number such as 42"),  # numpy's range
            (self.epochs is None or self.epochs >= 1, "epochs must be >= 1"),
            (self.patience is None or self.patience >= 1, "patience must be >= 1"),
            (self.min_steps >= 1, "min steps must be >= 1"),
            (0 <= self.warmup_ratio < 1, "warmup ratio must be in [0, 1)"),
            (self.max_length >= 8, "max length must be >= 8"),
            (0 < self.dev_split < 1, "dev split must be in (0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
