"""Options that several commands share, declared once as ``Annotated`` aliases; their defaults
come from the config classes (``TrainConfig``, ``Columns``), so ``--help`` cannot drift from the API.

A command writes ``registry: RegistryOption = None`` or ``batch_size: BatchSize = TRAIN.batch_size``.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from adapterhub_lite.config import FusionConfig, TrainConfig
from adapterhub_lite.constants import REGISTRY_ENV
from adapterhub_lite.training.data import Columns

TRAIN = TrainConfig()  # the defaults of every training option
FUSION = FusionConfig()  # and of the fusion layer's
COLUMNS = Columns()  # the default column names

REGISTRY_HELP = (
    "Registry: a directory, http(s)://HOST[:PORT][/NAMESPACE] (ahl serve, a Hub mirror) or "
    "hf://NAMESPACE (default: $AHL_REGISTRY, else ~/.local/share/adapterhub-lite/registry)."
)
BASE_HELP = "Base model id for short refs (TASK/NAME) and the compatibility check."
LICENSE_HELP = "License id recorded in the metadata and the model card, e.g. apache-2.0, mit, cc-by-4.0, other."

RegistryOption = Annotated[Optional[str], typer.Option(envvar=REGISTRY_ENV, help=REGISTRY_HELP)]
BaseRefOption = Annotated[Optional[str], typer.Option(help=BASE_HELP)]
LicenseOption = Annotated[Optional[str], typer.Option(help=LICENSE_HELP)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]

# -- data columns (ahl train, fuse, rank) -------------------------------------------------------

_DATA = "Data"
TextColumn = Annotated[str, typer.Option(help="Column with the text (or question).", rich_help_panel=_DATA)]
TextPairColumn = Annotated[
    Optional[str], typer.Option(help="Column with a second text (pairs).", rich_help_panel=_DATA)
]
LabelColumn = Annotated[str, typer.Option(help="Column with the label.", rich_help_panel=_DATA)]
ChoicesColumn = Annotated[
    Optional[str],
    typer.Option(
        help="Multiple choice: a column with a list of answers, or comma-separated answer columns.",
        rich_help_panel=_DATA,
    ),
]

# -- training (ahl train, fuse) -----------------------------------------------------------------

_TRAINING = "Training"
LearningRate = Annotated[
    Optional[float],
    typer.Option(
        "--lr",
        help="Peak learning rate (default: from the number of steps; on small data 3e-3 for adapters, 1e-3 "
        "for fusion and head-only; paper: 1e-4 for adapters, 5e-5 for fusion).",
        rich_help_panel=_TRAINING,
    ),
]
BatchSize = Annotated[
    int, typer.Option(help="Examples per optimizer step (over all processes).", rich_help_panel=_TRAINING)
]
GradAccum = Annotated[int, typer.Option(help="Micro-batches per optimizer step.", rich_help_panel=_TRAINING)]
Epochs = Annotated[
    Optional[int],
    typer.Option(
        help="Maximum epochs (default: 10, or more to reach 200 optimizer steps on small data).",
        rich_help_panel=_TRAINING,
    ),
]
Patience = Annotated[
    Optional[int],
    typer.Option(
        help="Early stopping: epochs without dev improvement (default: about 50 steps, at least 2).",
        rich_help_panel=_TRAINING,
    ),
]
Metric = Annotated[
    str,
    typer.Option(
        help="Dev metric for early stopping and the kept epoch: accuracy, macro_f1, pearson, spearman "
        "(auto: macro_f1 when training labels are imbalanced).",
        rich_help_panel=_TRAINING,
    ),
]
ClassWeight = Annotated[
    str,
    typer.Option(help="Loss weight per class: none or balanced (n / (classes x count)).", rich_help_panel=_TRAINING),
]
WarmupRatio = Annotated[float, typer.Option(help="Share of steps spent warming up.", rich_help_panel=_TRAINING)]
WeightDecay = Annotated[float, typer.Option(help="AdamW weight decay.", rich_help_panel=_TRAINING)]
Seed = Annotated[int, typer.Option(help="Random seed.", rich_help_panel=_TRAINING)]
MaxLength = Annotated[
    int,
    typer.Option(
        help="Maximum tokens per sequence, at most what the base takes (the default shrinks to that).",
        rich_help_panel=_TRAINING,
    ),
]
Device = Annotated[
    str, typer.Option(help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:1, mps.", rich_help_panel=_TRAINING)
]
