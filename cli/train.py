"""``ahl train``: train an adapter (or a head alone) on a data file and save the artifact."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Optional

import typer

from adapterhub_lite import api
from adapterhub_lite.config import AdapterConfig, TrainConfig
from adapterhub_lite.training.data import Columns

from .render import (
    LICENSE_HELP,
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
    text_column: str = DataOption("text", help="Column with the text (or question)."),
    text_pair_column: Optional[str] = DataOption(None, help="Column with a second text (pairs)."),
    label_column: str = DataOption("label", help="Column with the label."),
    choices_column: Optional[str] = DataOption(
        None, help="Multiple choice: a column with a list of answers, or comma-separated answer columns."
    ),
    dev_split: float = DataOption(0.1, help="Share of train held out as dev when --dev is not given."),
    base: Optional[str] = typer.Option(
        None, help="Base model: Hub id or local dir (default: embedded MiniLM-L6-H384)."
    ),
    out: Optional[Path] = typer.Option(None, help="Artifact directory to write (default: ./NAME)."),
    name: Optional[str] = typer.Option(None, help="Artifact name (default: the task)."),
    overwrite: bool = typer.Option(False, help="Replace an existing artifact at --out."),
    head: str = typer.Option("classification", help="classification, regression or multiple_choice."),
    preset: str = AdapterOption("pfeiffer", help="Adapter preset: pfeiffer, houlsby, or none (head only)."),
    reduction_factor: Optional[int] = AdapterOption(None, help="Hidden size / bottleneck size (preset: 16)."),
    non_linearity: Optional[str] = AdapterOption(None, help="relu, gelu, silu/swish, leaky_relu, tanh."),
    init: Optional[str] = AdapterOption(None, help="Adapter init: bert, zero_up, houlsby."),
    lr: Optional[float] = TrainOption(
        None, help="Peak learning rate (default: from the number of steps, 1e-3 on small data; paper: 1e-4)."
    ),
    batch_size: int = TrainOption(32, help="Examples per optimizer step (over all processes)."),
    grad_accum: int = TrainOption(1, help="Micro-batches per optimizer step."),
    epochs: Optional[int] = TrainOption(
        None, help="Maximum epochs (default: 10, or more to reach 200 optimizer steps on small data)."
    ),
    patience: Optional[int] = TrainOption(
        None, help="Early stopping: epochs without dev improvement (default: about 50 steps, at least 2)."
    ),
    metric: str = TrainOption(
        "auto", help="Dev metric for early stopping and the kept epoch: accuracy, macro_f1, pearson, spearman "
        "(auto: macro_f1 when training labels are imbalanced)."
    ),
    class_weight: str = TrainOption("none", help="Loss weight per class: none or balanced (n / (classes x count))."),
    warmup_ratio: float = TrainOption(0.06, help="Share of steps spent warming up."),
    weight_decay: float = TrainOption(0.0, help="AdamW weight decay."),
    seed: int = TrainOption(42, help="Random seed."),
    max_length: int = TrainOption(128, help="Maximum tokens per sequence."),
    base_dropout: bool = TrainOption(
        False, help="Keep dropout on inside the frozen base (AdapterHub's behaviour; slower)."
    ),
    device: str = TrainOption("auto", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:1, mps."),
    license: Optional[str] = typer.Option(None, help=LICENSE_HELP),
    init_from: Optional[str] = AdapterOption(None, help="Warm start: an adapter (ref or directory) of the same "
                                                        "architecture whose weights initialise this one."),
    registry: Optional[str] = typer.Option(None, envvar="AHL_REGISTRY", help="Registry for --init-from refs."),
    task_embedding: bool = DataOption(True, help="Record the training data's task embedding (a mean sentence "
                                                 "vector, no text) so that search --like can rank the adapter."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train an adapter on a frozen base model and save it as an artifact directory.

    Example: ahl train --train train.csv --dev dev.csv --task sentiment --out sentiment-adapter
    """
    quiet_libraries()
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
        dev_split=dev_split,
        base_dropout=base_dropout,
    )
    columns = Columns(text_column, text_pair_column, label_column, choices_column)
    out = out or Path(name or task)
    with training_progress(f"train {name or task}", enabled=not json_out) as on_event:
        result = api.train(
            train_file,
            task=task,
            dev_data=dev_file,
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
