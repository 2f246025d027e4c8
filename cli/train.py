"""``ahl train``: train an adapter (or a head alone) on a data file and save the artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from adapterhub_lite import api
from adapterhub_lite.config import AdapterConfig, TrainConfig
from adapterhub_lite.training.data import Columns

from .render import (
    console,
    err_console,
    metrics_table,
    print_json,
    quiet_libraries,
    trainable_share,
    training_progress,
    user_errors,
)

DATA = "Data"
ADAPTER = "Adapter"
OPTIM = "Training"


@user_errors
def train(
    train_file: str = typer.Option(..., "--train", help="Training data: .csv, .tsv, .jsonl, a datasets dir, or hf:NAME:SPLIT.", rich_help_panel=DATA),
    dev_file: Optional[str] = typer.Option(None, "--dev", help="Dev data (default: hold out --dev-split of train).", rich_help_panel=DATA),
    task: str = typer.Option(..., help="Task name recorded in the artifact.", rich_help_panel=DATA),
    text_column: str = typer.Option("text", help="Column with the text (or question).", rich_help_panel=DATA),
    text_pair_column: Optional[str] = typer.Option(None, help="Column with a second text (pairs).", rich_help_panel=DATA),
    label_column: str = typer.Option("label", help="Column with the label.", rich_help_panel=DATA),
    choices_column: Optional[str] = typer.Option(
        None, help="Multiple choice: a column with a list of answers, or comma-separated answer columns.",
        rich_help_panel=DATA),
    dev_split: float = typer.Option(0.1, help="Share of train held out as dev when --dev is not given.", rich_help_panel=DATA),
    base: Optional[str] = typer.Option(None, help="Base model: Hub id or local dir (default: embedded MiniLM-L6-H384)."),
    out: Optional[Path] = typer.Option(None, help="Artifact directory to write (default: ./NAME)."),
    name: Optional[str] = typer.Option(None, help="Artifact name (default: the task)."),
    overwrite: bool = typer.Option(False, help="Replace an existing artifact at --out."),
    head: str = typer.Option("classification", help="classification, regression or multiple_choice."),
    preset: str = typer.Option("pfeiffer", help="Adapter preset: pfeiffer, houlsby, or none (head only).", rich_help_panel=ADAPTER),
    reduction_factor: Optional[int] = typer.Option(None, help="Hidden size / bottleneck size (preset: 16).", rich_help_panel=ADAPTER),
    non_linearity: Optional[str] = typer.Option(None, help="relu, gelu, silu/swish, leaky_relu, tanh.", rich_help_panel=ADAPTER),
    init: Optional[str] = typer.Option(None, help="Adapter init: bert, zero_up, houlsby.", rich_help_panel=ADAPTER),
    lr: float = typer.Option(1e-4, help="Peak learning rate (paper: 1e-4).", rich_help_panel=OPTIM),
    batch_size: int = typer.Option(32, help="Examples per optimizer step (over all processes).", rich_help_panel=OPTIM),
    grad_accum: int = typer.Option(1, help="Micro-batches per optimizer step.", rich_help_panel=OPTIM),
    epochs: int = typer.Option(10, help="Maximum epochs.", rich_help_panel=OPTIM),
    patience: int = typer.Option(2, help="Early stopping: epochs without dev improvement.", rich_help_panel=OPTIM),
    warmup_ratio: float = typer.Option(0.06, help="Share of steps spent warming up.", rich_help_panel=OPTIM),
    weight_decay: float = typer.Option(0.0, help="AdamW weight decay.", rich_help_panel=OPTIM),
    seed: int = typer.Option(42, help="Random seed.", rich_help_panel=OPTIM),
    max_length: int = typer.Option(128, help="Maximum tokens per sequence.", rich_help_panel=OPTIM),
    base_dropout: bool = typer.Option(False, help="Keep dropout on inside the frozen base (AdapterHub's behaviour; slower).", rich_help_panel=OPTIM),
    device: str = typer.Option("auto", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:1, mps.", rich_help_panel=OPTIM),
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
        mode="adapter" if adapter else "head_only", learning_rate=lr, weight_decay=weight_decay,
        batch_size=batch_size, grad_accum=grad_accum, epochs=epochs, patience=patience,
        warmup_ratio=warmup_ratio, seed=seed, max_length=max_length, device=device, dev_split=dev_split,
        base_dropout=base_dropout,
    )
    columns = Columns(text_column, text_pair_column, label_column, choices_column)
    out = out or Path(name or task)
    with training_progress(f"train {name or task}", enabled=not json_out) as on_progress:

        def on_event(event: api.TrainEvent) -> None:
            if event.kind == "params" and not json_out:
                trainable, total = (int(x) for x in event.message.split("/"))  # type: ignore[union-attr]
                err_console.print(f"trainable parameters: {trainable_share(trainable, total)} ({trainable:,})")
            on_progress(event)

        result = api.train(
            train_file, task=task, dev_data=dev_file, base=base, head=head, columns=columns,
            adapter=adapter, config=config, out=out, name=name, overwrite=overwrite, on_event=on_event,
        )
    if not api.result_is_writer():
        return
    summary = {
        "artifact": str(result.artifact.path) if result.artifact else None,
        "best_epoch": result.fit.best_epoch,
        "stopped_early": result.fit.stopped_early,
        "dev": result.metrics,
        "trainable_parameters": result.trainable_parameters,
        "total_parameters": result.total_parameters,
    }
    if json_out:
        print_json(summary)
        return
    console.print(metrics_table(f"dev metrics (best epoch {result.fit.best_epoch})", {task: result.metrics}))
    console.print(f"saved [bold]{summary['artifact']}[/]")
