"""The training schedule a run actually uses: what ``TrainConfig`` leaves open, chosen from the data.

A few hundred examples at the paper's settings (lr 1e-4, 10 epochs: about 70 optimizer steps on
200 examples) leave an adapter at the majority class. :func:`resolve` fills in what the config
leaves as ``None`` or ``"auto"``:

- **epochs**: at least ``min_steps`` optimizer steps (more epochs on small data, at most
  ``MAX_AUTO_EPOCHS``), never fewer than the paper's 10 epochs;
- **learning rate**: from the number of optimizer steps the run will take: the mode's small-data
  rate up to ``FEW_STEPS`` steps, the paper's rate from ``MANY_STEPS`` on, log-linear between;
- **patience**: about ``min_steps / 4`` optimizer steps without dev improvement, at least 2 epochs;
- **metric**: macro-F1 for classification when the training labels are imbalanced (a one-class
  model cannot win it), accuracy otherwise; Pearson for regression.

Values the caller gives are kept. docs/small-data.md gives the measurements behind the numbers.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config import TrainConfig
from ..errors import ConfigError

MAX_AUTO_EPOCHS = 100
PAPER_EPOCHS = 10
FEW_STEPS, MANY_STEPS = 1_000, 10_000
# Per mode: (learning rate for runs of at most FEW_STEPS steps, rate from MANY_STEPS on). The
# large-data rates are the paper's (Pfeiffer et al. 2021, §4.1: 1e-4 adapters, 5e-5 fusion). The
# adapter's small-data rate is the one a dev-scored sweep preferred (docs/small-data.md); the
# other modes' were not swept.
LEARNING_RATES = {
    "adapter": (3e-3, 1e-4),
    "head_only": (1e-3, 1e-4),
    "fusion": (1e-3, 5e-5),
    "full": (2e-4, 2e-5),
}
# Largest / smallest class count from which training labels count as imbalanced.
IMBALANCE_RATIO = 1.5
METRICS_BY_HEAD = {
    "classification": ("accuracy", "macro_f1"),
    "multiple_choice": ("accuracy",),
    "regression": ("pearson", "spearman"),
}


@dataclass
class Schedule:
    """What :func:`resolve` chose: the complete config, the class weights and why."""

    config: TrainConfig
    steps_per_epoch: int
    class_weights: list[float] | None
    reasons: dict[str, str]

    @property
    def learning_rate(self) -> float:
        return float(self.config.learning_rate or 0.0)  # always set by resolve()

    @property
    def epochs(self) -> int:
        return int(self.config.epochs or 0)

    @property
    def patience(self) -> int:
        return int(self.config.patience or 0)

    @property
    def planned_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def summary(self) -> str:
        """One line: each value and, for those chosen here, why."""
        c = self.config
        parts = [
            f"lr {c.learning_rate:g} ({self.reasons['learning_rate']})",
            f"{c.epochs} epoch{'s' * (c.epochs != 1)} x {self.steps_per_epoch} step{'s' * (self.steps_per_epoch != 1)} "
            f"({self.reasons['epochs']})",
            f"patience {c.patience} ({self.reasons['patience']})",
            f"best epoch by dev {c.metric} ({self.reasons['metric']})",
            f"class weight {c.class_weight}",
        ]
        return "schedule: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The ``training.schedule`` record of an artifact (SPEC 2.6)."""
        return {
            "steps_per_epoch": self.steps_per_epoch,
            "planned_steps": self.planned_steps,
            "class_weights": self.class_weights,
            "reasons": dict(self.reasons),
            "summary": self.summary(),
        }


def auto_learning_rate(mode: str, steps: int) -> float:
    """The learning rate for a run of ``steps`` optimizer steps (see the module docstring)."""
    few, many = LEARNING_RATES[mode]
    if steps <= FEW_STEPS:
        return few
    if steps >= MANY_STEPS:
        return many
    share = math.log(steps / FEW_STEPS) / math.log(MANY_STEPS / FEW_STEPS)
    return float(f"{math.exp(math.log(few) + share * math.log(many / few)):.2g}")


def check_fits_head(config: TrainConfig, head_type: str) -> None:
    """Raise :class:`ConfigError` when the metric or class weighting cannot serve ``head_type``."""
    allowed = METRICS_BY_HEAD[head_type]
    if config.metric != "auto" and config.metric not in allowed:
        raise ConfigError(
            f"metric {config.metric!r} does not apply to a {head_type} head; use one of: auto, {', '.join(allowed)}"
        )
    if config.class_weight == "balanced" and head_type != "classification":
        raise ConfigError(f"class weighting applies to classification heads, not {head_type}; use --class-weight none")


def resolve(config: TrainConfig, head_type: str, targets: Sequence[Any]) -> Schedule:
    """Fill in the config's automatic values for ``targets`` (the encoded training targets:
    class indices for classification).

    Raises:
        ConfigError: a metric or class weighting that does not fit the head.
    """
    config.validate()
    check_fits_head(config, head_type)
    n = len(targets)
    steps_per_epoch = max(1, math.ceil(n / config.batch_size))
    reasons: dict[str, str] = {}
    epochs = config.epochs
    if epochs is None:
        epochs = min(MAX_AUTO_EPOCHS, max(PAPER_EPOCHS, math.ceil(config.min_steps / steps_per_epoch)))
        reasons["epochs"] = (
            f"auto: at least {config.min_steps} steps, at most {MAX_AUTO_EPOCHS} epochs"
            if epochs > PAPER_EPOCHS
            else "auto: the paper's 10"
        )
    else:
        reasons["epochs"] = "given"
    lr = config.learning_rate
    if lr is None:
        lr = auto_learning_rate(config.mode, steps_per_epoch * epochs)
        few, many = LEARNING_RATES[config.mode]
        reasons["learning_rate"] = (
            f"auto: {steps_per_epoch * epochs} planned steps; {config.mode} rate "
            f"{few:g} up to {FEW_STEPS} steps, {many:g} from {MANY_STEPS}"
        )
    else:
        reasons["learning_rate"] = "given"
    patience = config.patience
    if patience is None:
        patience = min(epochs, max(2, math.ceil(config.min_steps / 4 / steps_per_epoch)))
        reasons["patience"] = f"auto: about {config.min_steps // 4} steps"
    else:
        reasons["patience"] = "given"
    metric = config.metric
    counts = Counter(targets) if head_type == "classification" else Counter()
    if metric != "auto":
        reasons["metric"] = "given"
    elif head_type == "classification" and counts:
        ratio = max(counts.values()) / min(counts.values())
        metric = "macro_f1" if ratio >= IMBALANCE_RATIO else "accuracy"
        reasons["metric"] = (
            f"auto: training labels {'imbalanced' if metric == 'macro_f1' else 'balanced'}, "
            f"largest/smallest class {ratio:.1f}"
        )
    else:
        metric = METRICS_BY_HEAD[head_type][0]
        reasons["metric"] = f"auto: the {head_type} default"
    weights = None
    if config.class_weight == "balanced" and counts:
        # sklearn's "balanced": n / (classes x count), so every class carries the same total weight.
        classes = max(counts) + 1
        weights = [n / (classes * counts[c]) if counts[c] else 0.0 for c in range(classes)]
    resolved = dataclasses.replace(config, learning_rate=lr, epochs=epochs, patience=patience, metric=metric)
    return Schedule(resolved, steps_per_epoch, weights, reasons)
