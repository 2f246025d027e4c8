"""``ahl demo``: the main job end to end on the embedded model and bundled real data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from adapterhub_lite import api, bundled, hub
from adapterhub_lite.config import TrainConfig
from adapterhub_lite.errors import ConfigError
from adapterhub_lite.training.data import Columns, ExampleSet, load_examples

from .render import console, quiet_libraries, trainable_share, training_progress, user_errors


@user_errors
def demo(
    task: str = typer.Option("trec", help="Bundled task to train on (see adapterhub_lite/data/bundled/tasks.json)."),
    epochs: int = typer.Option(3, help="Epochs for each run."),
    limit: Optional[int] = typer.Option(None, help="Use at most this many training examples (a quick look)."),
    lr: float = typer.Option(1e-3, help="Learning rate for both runs."),
    workdir: Path = typer.Option(Path("ahl-demo"), help="Where the demo writes its artifacts."),
) -> None:
    """Train a Pfeiffer adapter on bundled real data, compare it with a head-only baseline, then
    push it to a registry and pull it back.

    Both runs use the embedded MiniLM-L6-H384, the same data, head, learning rate and epochs;
    the only difference is whether the adapter trains. Artifacts and the registry land in WORKDIR.
    """
    quiet_libraries()
    tasks = bundled.tasks()
    if task not in tasks:
        raise ConfigError(f"unknown bundled task {task!r}; choose one of: {', '.join(tasks)}")
    train_file, dev_file = bundled.split_path(task, "train"), bundled.split_path(task, "dev")
    train_data = load_examples(train_file, Columns())
    if limit is not None:
        train_data = ExampleSet(train_data.examples[:limit], train_data.source, train_data.sha256)
    base = api.load_base()
    console.print(f"[bold]demo[/]: {task} ({tasks[task]['description']}), base {base.model_id}, "
                  f"{epochs} epochs, lr {lr}")
    rows: dict[str, tuple[api.TrainResult, float]] = {}
    for run, adapter in (("head only", None), ("pfeiffer adapter", "pfeiffer")):
        config = TrainConfig(epochs=epochs, learning_rate=lr, patience=epochs)
        start = time.perf_counter()
        with training_progress(run) as on_event:
            result = api.train(train_data, dev_data=dev_file, task=task, base=base, adapter=adapter,
                               config=config, out=workdir / run.replace(" ", "-"), overwrite=True,
                               on_event=on_event)
        rows[run] = (result, time.perf_counter() - start)

    table = Table(title=f"{task}: dev metrics, adapter vs head-only baseline")
    for column in ("run", "accuracy", "macro-F1", "trainable", "time"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for run, (result, seconds) in rows.items():
        m = result.metrics
        table.add_row(run, f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}",
                      trainable_share(result.trainable_parameters, result.total_parameters), f"{seconds:.0f}s")
    console.print(table)
    gain = rows["pfeiffer adapter"][0].metrics["accuracy"] - rows["head only"][0].metrics["accuracy"]
    console.print(f"adapter gain over head-only: [bold]{100 * gain:+.1f}[/] accuracy points")

    # Share it: push to a registry directory and pull it back, verified, into an empty place.
    adapter_dir = rows["pfeiffer adapter"][0].artifact.path  # type: ignore[union-attr]
    registry = workdir / "registry"
    entry = hub.push(adapter_dir, registry=registry)
    _, pulled = hub.pull(str(entry.ref), registry=registry, base=base, to=workdir / "pulled", overwrite=True)
    questions = ["Who wrote Hamlet ?", "How far is the Moon from the Earth ?", "What does NASA stand for ?"]
    from_pull = api.predict(pulled, questions, base=base)
    same = [p.to_dict() for p in from_pull] == [p.to_dict() for p in api.predict(adapter_dir, questions, base=base)]
    console.print(f"pushed [bold]{entry.ref}[/] to {registry}/ and pulled it into {pulled}/: "
                  f"{'identical' if same else 'DIFFERENT'} predictions")
    for question, prediction in zip(questions, from_pull, strict=True):
        console.print(f"  {question!r} -> {prediction.label}")
    console.print(f"artifacts in {workdir}/ (try: ahl info {pulled}, ahl search --registry {registry})")
