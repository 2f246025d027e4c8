"""``ahl train``: train an adapter (or a head alone) on a data file and save the artifact."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Optional

import typer

from adapterhub_lite.config import AdapterConfig, TrainConfig, check_choice, only_with
from adapterhub_lite.constants import REGISTRY_ENV
from adapterhub_lite.errors import ConfigError
from adapterhub_lite.training.data import Columns, load_examples

from .options import (
    COLUMNS,
    TRAIN,
    BatchSize,
    ChoicesColumn,
    ClassWeight,
    Device,
    Epochs,
    GradAccum,
    JsonOption,
    LabelColumn,
    LearningRate,
    LicenseOption,
    MaxLength,
    Metric,
    Patience,
    Seed,
    TextColumn,
    TextPairColumn,
    WarmupRatio,
    WeightDecay,
)
from .render import (
    console,
    metrics_table,
    print_json,
    quiet_libraries,
    training_progress,
    user_errors,
)

# Options grouped into panels of --help.
DataOption = partial(typer.Option, rich_help_panel="Data")
AdapterOption = partial(typer.Option, rich_help_panel="Adapter")
TrainOption = partial(typer.Option, rich_help_panel="Training")


@user_errors
def train(
    train_file: str = DataOption(
        ..., "--train", help="Training data: .csv, .tsv, .jsonl, a datasets dir, or hf:NAME:SPLIT."
    ),
    dev_file: Optional[str] = DataOption(None, "--dev", help="Dev data (default: hold out --dev-split of train)."),
    task: str = DataOption(..., help="Task name recorded in the artifact."),
    text_column: TextColumn = COLUMNS.text,
    text_pair_column: TextPairColumn = COLUMNS.text_pair,
    label_column: LabelColumn = COLUMNS.label,
    choices_column: ChoicesColumn = COLUMNS.choices,
    dev_split: Optional[float] = DataOption(
        None,
        help=f"Share of train held out as dev when --dev is not given, by class for a classification head "
        f"(default {TRAIN.dev_split}).",
    ),
    base: Optional[str] = typer.Option(
        None, help="Base model: Hub id or local dir (default: embedded MiniLM-L6-H384)."
    ),
    out: Optional[Path] = typer.Option(None, help="Artifact directory to write (default: ./NAME)."),
    name: Optional[str] = typer.Option(None, help="Artifact name (default: the task)."),
    overwrite: bool = typer.Option(False, help="Replace an existing artifact at --out."),
    head: str = typer.Option("classification", help="classification, regression or multiple_choice."),
    preset: str = AdapterOption(
        "pfeiffer", help=f"Adapter preset: {', '.join(AdapterConfig.PRESETS)}, or none (head only)."
    ),
    reduction_factor: Optional[int] = AdapterOption(None, help="Hidden size / bottleneck size (preset: 16)."),
    non_linearity: Optional[str] = AdapterOption(None, help="relu, gelu, silu/swish, leaky_relu, tanh."),
    init: Optional[str] = AdapterOption(None, help="Adapter init: bert, zero_up, houlsby."),
    lr: LearningRate = TRAIN.learning_rate,
    batch_size: BatchSize = TRAIN.batch_size,
    grad_accum: GradAccum = TRAIN.grad_accum,
    epochs: Epochs = TRAIN.epochs,
    patience: Patience = TRAIN.patience,
    metric: Metric = TRAIN.metric,
    class_weight: ClassWeight = TRAIN.class_weight,
    warmup_ratio: WarmupRatio = TRAIN.warmup_ratio,
    weight_decay: WeightDecay = TRAIN.weight_decay,
    seed: Seed = TRAIN.seed,
    max_length: MaxLength = TRAIN.max_length,
    base_dropout: bool = TrainOption(
        TRAIN.base_dropout, help="Keep dropout on inside the frozen base (AdapterHub's behaviour; slower)."
    ),
    device: Device = TRAIN.device,
    license: LicenseOption = None,
    init_from: Optional[str] = AdapterOption(
        None,
        help="Warm start: an adapter (ref or directory) of the same architecture whose weights initialise this one.",
    ),
    registry: Optional[str] = typer.Option(None, envvar=REGISTRY_ENV, help="Registry for --init-from refs."),
    task_embedding: bool = DataOption(
        True,
        help="Record the training data's task embedding (a mean sentence "
        "vector, no text) so that search --like can rank the adapter.",
    ),
    json_out: JsonOption = False,
) -> None:
    """Train an adapter on a frozen base model and save it as an artifact directory.

    Example: ahl train --train train.csv --dev dev.csv --task sentiment --out sentiment-adapter
    """
    columns = Columns(text_column, text_pair_column, label_column, choices_column)
    check_choice(preset, (*AdapterConfig.PRESETS, "none"), "adapter preset")  # none: a head alone
    shape = {"--reduction-factor": reduction_factor, "--non-linearity": non_linearity, "--init": init}
    only_with(shape, needs="an adapter", present=preset != "none", fix="choose --preset pfeiffer or houlsby")
    if dev_file is not None and dev_split is not None:
        raise ConfigError("--dev-split holds out part of train when there is no --dev file; drop one of them")
    adapter = None
    if preset != "none":
        adapter = AdapterConfig.from_preset(
            preset, reduction_factor=reduction_factor, non_linearity=non_linearity, init=init
        )
    config = TrainConfig(
        mode="adapter" if adapter else "head_only",
        learning_rate=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        grad_accum=grad_accum,
        epochs=epochs,
        patience=patience,
        metric=metric,
        class_weight=class_weight,
        warmup_ratio=warmup_ratio,
        seed=seed,
        max_length=max_length,
        device=device,
        dev_split=TRAIN.dev_split if dev_split is None else dev_split,
        base_dropout=base_dropout,
    )
    config.validate()  # a bad option fails before the data is read or the model loads
    # Read the data before importing torch (seconds of CPU): a wrong path or column fails at once.
    train_set = load_examples(train_file, columns)
    dev_set = load_examples(dev_file, columns) if dev_file else None
    from adapterhub_lite import api  # torch: see cli/main.py

    quiet_libraries()
    out = out or Path(name or task)
    with training_progress(f"train {name or task}", enabled=not json_out) as on_event:
        result = api.train(
            train_set,
            task=task,
            dev_data=dev_set,
            base=base,
            head=head,
            columns=columns,
            adapter=adapter,
            config=config,
            out=out,
            name=name,
            overwrite=overwrite,
            on_event=on_event,
            license=license,
            task_embedding=task_embedding,
            init_from=init_from,
            registry=registry,
        )
    if not api.result_is_writer():
        return
    summary = {
        "artifact": str(result.artifact.path) if result.artifact else None,
        "best_epoch": result.fit.best_epoch,
        "stopped_early": result.fit.stopped_early,
        "schedule": result.fit.schedule.summary() if result.fit.schedule else None,
        "dev": result.metrics,
        "trainable_parameters": result.trainable_parameters,
        "total_parameters": result.total_parameters,
    }
    if json_out:
        print_json(summary)
        return
    console.print(metrics_table(f"dev metrics (best epoch {result.fit.best_epoch})", {task: result.metrics}))
    console.print(f"saved [bold]{summary['artifact']}[/]")
