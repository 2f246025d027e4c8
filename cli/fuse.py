"""``ahl fuse``: train AdapterFusion over adapters from a registry or from directories."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Optional

import typer

from adapterhub_lite import hub
from adapterhub_lite.config import FusionConfig, TrainConfig, only_with
from adapterhub_lite.errors import ConfigError
from adapterhub_lite.training.data import Columns, ExampleSet, load_examples

from .options import (
    COLUMNS,
    FUSION,
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
    RegistryOption,
    Seed,
    TextColumn,
    TextPairColumn,
    WarmupRatio,
    WeightDecay,
)
from .rank import render_ranking
from .render import (
    console,
    metrics_table,
    print_json,
    quiet_libraries,
    training_progress,
    user_errors,
)


@user_errors
def fuse(
    adapters: str = typer.Option(
        "",
        help="Comma-separated adapter refs (TASK/NAME[@V]), artifact directories, "
        "or adapters:REPO[@REV] (AdapterHub format, converted); with --auto, "
        "the pool to choose from (default: the registry's adapters).",
    ),
    auto: Optional[int] = typer.Option(
        None,
        "--auto",
        help="Compose automatically: rank the pool, fuse the K "
        "best with the target's own adapter, try a warm start, ship the best on "
        "dev (never below the target's adapter).",
    ),
    target_adapter: Optional[str] = typer.Option(
        None, help="With --auto: the target's own adapter (default: trained here)."
    ),
    task: str = typer.Option(..., help="Target task name."),
    train_file: str = typer.Option(..., "--train", help="Target training data."),
    dev_file: Optional[str] = typer.Option(None, "--dev", help="Target dev data (default: hold out --dev-split)."),
    base: Optional[str] = typer.Option(None, help="Base model (default: the adapters' base)."),
    registry: RegistryOption = None,
    out: Optional[Path] = typer.Option(None, help="Fusion artifact directory (default: ./NAME)."),
    name: Optional[str] = typer.Option(None, help="Fusion name (default: TASK-fusion)."),
    push: bool = typer.Option(False, help="Push the fusion (and its adapters) to --registry afterwards."),
    overwrite: bool = typer.Option(False, help="Replace an existing artifact at --out."),
    head: str = typer.Option("classification", help="classification, regression or multiple_choice."),
    text_column: TextColumn = COLUMNS.text,
    text_pair_column: TextPairColumn = COLUMNS.text_pair,
    label_column: LabelColumn = COLUMNS.label,
    choices_column: ChoicesColumn = COLUMNS.choices,
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
    value_l2: float = typer.Option(FUSION.value_l2, help="Weight of the L2 pull of V towards the identity."),
    temperature: float = typer.Option(FUSION.temperature, help="Softmax temperature over adapters."),
    device: Device = TRAIN.device,
    license: LicenseOption = None,
    json_out: JsonOption = False,
) -> None:
    """Train a fusion layer and a head for TASK over frozen adapters; save (and push) the fusion.

    Example: ahl fuse --adapters sst2/sst2,trec/trec --task rte --train rte.csv --dev rte-dev.csv --push
    """
    sources = [s.strip() for s in adapters.split(",") if s.strip()]
    only_with({"--target-adapter": target_adapter}, needs="--auto", present=auto is not None, fix="add --auto K")
    train_config = TrainConfig(
        learning_rate=lr,
        epochs=epochs,
        patience=patience,
        batch_size=batch_size,
        grad_accum=grad_accum,
        warmup_ratio=warmup_ratio,
        weight_decay=weight_decay,
        seed=seed,
        max_length=max_length,
        device=device,
        metric=metric,
        class_weight=class_weight,
    )
    train_config.validate()  # a bad option fails before any adapter is fetched
    fusion = FusionConfig(value_l2=value_l2, temperature=temperature)
    fusion.validate()
    if auto is None and not sources:
        raise ConfigError("name the adapters to fuse with --adapters, or let --auto K choose them")
    if push:
        hub.check_push(registry)  # not after minutes of training
    columns = Columns(text_column, text_pair_column, label_column, choices_column)
    # Read the data before importing torch (seconds of CPU): a wrong path or column fails at once.
    train_set = load_examples(train_file, columns)
    dev_set = load_examples(dev_file, columns) if dev_file else None
    from adapterhub_lite.training.loop import select_device  # torch: see cli/main.py

    select_device(device)  # a bad --device fails before any adapter is fetched
    quiet_libraries()
    if auto is not None:
        _fuse_auto(
            sources,
            auto,
            target_adapter,
            task,
            train_set,
            dev_set,
            base,
            registry,
            out,
            name,
            push,
            overwrite,
            columns,
            train_config,
            fusion,
            json_out,
            head,
            license,
        )
        return
    from adapterhub_lite import api  # torch: see cli/main.py

    config = dataclasses.replace(train_config, mode="fusion")
    out = out or Path(name or f"{task}-fusion")
    with tempfile.TemporaryDirectory(prefix="ahl-fuse-") as scratch:
        # Registry refs are pulled (verified) and AdapterHub sources converted before anything trains.
        paths = [
            hub.fetch(source, to=Path(scratch) / str(i), base=base, registry=registry)
            for i, source in enumerate(sources)
        ]
        with training_progress(f"fuse {task}", enabled=not json_out) as on_event:
            result = api.fuse(
                paths,
                train_set,
                task=task,
                dev_data=dev_set,
                base=base,
                head=head,
                columns=columns,
                fusion=fusion,
                config=config,
                out=out,
                name=name,
                overwrite=overwrite,
                on_event=on_event,
                license=license,
            )
    if not api.result_is_writer():
        return
    pushed = hub.push(result.artifact.path, registry=registry) if push else None
    summary = {
        "artifact": str(out),
        "dev": result.metrics,
        "best_epoch": result.fit.best_epoch,
        "schedule": result.fit.schedule.summary() if result.fit.schedule else None,
        "pushed": str(pushed.ref) if pushed else None,
    }
    if json_out:
        print_json(summary)
        return
    console.print(metrics_table(f"fusion dev metrics (best epoch {result.fit.best_epoch})", {task: result.metrics}))
    console.print(f"saved [bold]{out}[/]" + (f", pushed [bold]{pushed.ref}[/]" if pushed else ""))


def _fuse_auto(
    sources: list[str],
    auto: int,
    target_adapter: str | None,
    task: str,
    train_set: ExampleSet,
    dev_set: ExampleSet | None,
    base: str | None,
    registry: str | None,
    out: Path | None,
    name: str | None,
    push: bool,
    overwrite: bool,
    columns: Columns,
    config: TrainConfig,
    fusion: FusionConfig,
    json_out: bool,
    head: str,
    license: str | None,
) -> None:
    """``ahl fuse --auto K``: rank, compose, compare on dev, ship the best; print the ranking and the choice."""
    from adapterhub_lite import api  # torch: see cli/main.py

    out = out or Path(name or f"{task}-auto")
    with training_progress(f"auto {task}", enabled=not json_out) as on_event:
        result = api.fuse(
            sources,
            train_set,
            task=task,
            dev_data=dev_set,
            base=base,
            columns=columns,
            fusion=fusion,
            config=config,
            out=out,
            name=name,
            overwrite=overwrite,
            on_event=on_event,
            auto=auto,
            registry=registry,
            target_adapter=target_adapter,
            head=head,
            license=license,
        )
    pushed = hub.push(result.artifact.path, registry=registry) if push else None
    if json_out:
        print_json(
            {
                "artifact": str(out),
                "chosen": result.chosen.method,
                "dev": result.metrics,
                "candidates": [c.to_dict() for c in result.candidates],
                "ranking": result.ranking.to_dict(),
                "pushed": str(pushed.ref) if pushed else None,
            }
        )
        return
    render_ranking(result.ranking, title=f"pool ranked for {task} (top {auto} composed)")
    console.print(metrics_table("candidates on dev", {c.method: c.dev for c in result.candidates if c.dev}))
    console.print(
        f"chose [bold]{result.chosen.method}[/]; saved [bold]{out}[/]"
        + (f", pushed [bold]{pushed.ref}[/]" if pushed else "")
    )
