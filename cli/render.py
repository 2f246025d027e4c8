"""Rendering shared by the commands: consoles, error handling, progress, tables."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from adapterhub_lite.analysis import FusionActivations
from adapterhub_lite.errors import AhlError
from adapterhub_lite.training.loop import TrainEvent

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Turn an :class:`AhlError` into one line on stderr and its exit code (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AhlError as exc:
            # escaped: messages hold brackets (pip extras, regexes) that are not Rich markup
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def quiet_libraries() -> None:
    """Silence transformers' weight-loading bars and notices: the CLI shows its own progress."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def trainable_share(trainable: int, total: int) -> str:
    """``"1.1% of 23.0M"``: the trainable share of all parameters."""
    return f"{100 * trainable / max(total, 1):.1f}% of {human_count(total)}"


@contextmanager
def training_progress(label: str, enabled: bool = True) -> Iterator[Callable[[TrainEvent], None]]:
    """A Rich progress bar fed by training events: steps, live loss, the last dev metric; first
    a line with the trainable share of the parameters."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[dev]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not enabled,
        transient=False,
    )
    task = progress.add_task(label, total=None, loss="-", dev="")

    def on_event(event: TrainEvent) -> None:
        # The bar appears with the first event, i.e. once the input has been checked, so a
        # bad-input error stays the only line on stderr.
        if event.kind == "params":
            if enabled and event.parameters:
                trainable, total = event.parameters
                err_console.print(f"trainable parameters: {trainable_share(trainable, total)} ({trainable:,})")
            return
        if event.kind == "schedule":
            if enabled and event.message:
                err_console.print(event.message, markup=False, highlight=False, soft_wrap=True)
            return
        if not progress.live.is_started:
            progress.start()
        if event.kind == "start":
            progress.update(task, total=event.total_steps)
        elif event.kind == "step":
            progress.update(task, completed=event.step, loss=f"{event.loss:.4f}")
        elif event.kind == "epoch" and event.metrics:
            first = next(iter(event.metrics))
            progress.update(task, dev=f"epoch {event.epoch} dev {first} {event.metrics[first]:.4f}")
        elif event.kind == "stop":
            progress.update(task, total=event.step, completed=event.step)

    try:
        yield on_event
    finally:
        if progress.live.is_started:
            progress.stop()


def metrics_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    """A table with one row per run and one column per metric."""
    names: list[str] = []
    for metrics in rows.values():
        names += [k for k in metrics if k not in names]
    table = Table(title=title)
    table.add_column("run")
    for name in names:
        table.add_column(name, justify="right")
    for run, metrics in rows.items():
        table.add_row(run, *[f"{metrics[n]:.4f}" if n in metrics else "-" for n in names])
    return table


def activations_table(report: FusionActivations, title: str) -> Table:
    """Mean fusion attention: one row per site, one column per adapter, each row's top in bold."""
    table = Table(title=title)
    table.add_column("layer.position")
    for adapter in report.adapters:
        table.add_column(adapter, justify="right")
    for site, row in zip(report.sites, report.mean, strict=True):
        best = row.argmax()
        table.add_row(site, *[f"[bold]{v:.3f}[/]" if i == best else f"{v:.3f}" for i, v in enumerate(row)])
    return table
