"""Rendering shared by the commands: consoles, error handling, progress, tables."""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from typer.core import TyperGroup

from adapterhub_lite.constants import NO_PROGRESS_ENV, env_true
from adapterhub_lite.errors import AhlError

if TYPE_CHECKING:  # annotations only: both modules import torch, which ``ahl --help`` and ``ahl serve`` skip
    from adapterhub_lite.analysis import FusionActivations
    from adapterhub_lite.training.loop import TrainEvent

# Data (tables, JSON, paths) goes to stdout. On a terminal it fits the window; piped, nothing
# is wrapped or cut (Rich would otherwise assume 80 columns and fold paths and refs).
_PIPED = not sys.stdout.isatty()
console = Console(width=1 << 14 if _PIPED else None, soft_wrap=_PIPED)
# Progress and status go to stderr; --quiet silences them (not errors, which have their own).
err_console = Console(stderr=True)
_error_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised as an interruption so that the same cleanup runs as for Ctrl-C."""


def _terminate(signum: int, frame: Any) -> None:
    raise Interrupted()


def print_error(message: str) -> None:
    """One line on stderr: ``error: MESSAGE`` (shown with --quiet too)."""
    # escaped: messages hold brackets (pip extras, regexes) that are not Rich markup
    _error_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


# The click that typer runs on: typer >= 0.2x vendors its own copy (typer._click), older typer uses
# click itself; a usage error must be of that copy's classes for typer to show and exit with it.
_click_errors = sys.modules[typer.BadParameter.__module__]
_ClickUsageError: type[click.UsageError] = _click_errors.UsageError
_NO_ARGS_IS_HELP = getattr(_click_errors, "NoArgsIsHelpError", ())  # shows the help: kept as it is


class _UsageLine(_ClickUsageError):  # type: ignore[valid-type,misc]  # a class chosen at run time
    """A usage error (missing or unknown option, bad value) shown like every other error: one line."""

    def show(self, file: Any = None) -> None:
        message = self.format_message().rstrip()
        if self.ctx is not None:
            message += f"{'' if message.endswith(('.', '?')) else '.'} See '{self.ctx.command_path} --help'."
        print_error(message)


def _one_line(exc: click.UsageError) -> click.UsageError:
    if isinstance(exc, (_UsageLine, _NO_ARGS_IS_HELP)):
        return exc
    return _UsageLine(exc.format_message(), exc.ctx)


class OneLineUsageGroup(TyperGroup):
    """The ``ahl`` group: click prints a usage error as a four-line block (usage, hint, blank,
    error); here it is one ``error:`` line like the others, with the same exit code (2)."""

    QUIET = ("-q", "--quiet")

    def make_context(self, info_name: Any, args: Any, parent: Any = None, **extra: Any) -> Any:
        # --quiet is the group's option, but 'ahl train ... -q' is where people type it: taken as
        # the group's wherever it stands (no command has an option or argument of that spelling)
        if "--" not in args and any(a in self.QUIET for a in args):
            args = ["--quiet", *[a for a in args if a not in self.QUIET]]
        try:
            return super().make_context(info_name, args, parent, **extra)
        except _ClickUsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: Any) -> Any:
        # a subcommand's arguments are parsed here, and its own BadParameter raised
        try:
            return super().invoke(ctx)
        except _ClickUsageError as exc:
            raise _one_line(exc) from None


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn an :class:`AhlError` into one line on stderr and its exit code (no traceback); an
    interruption (Ctrl-C, SIGTERM) into ``interrupted`` and 130/143 (the API removes what it
    had staged on the way out: training leaves no partial artifact or log)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except AhlError as exc:
            print_error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, Interrupted)
            _error_console.print(f"interrupted ({'SIGTERM' if terminated else 'Ctrl-C'})", highlight=False)
            raise typer.Exit(143 if terminated else 130) from None

    return wrapper


class _StatusHandler(logging.Handler):
    """The library's warnings (e.g. an offline fallback to the cache) as one stderr line each."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(f"[yellow]warning:[/] {escape(record.getMessage())}", highlight=False, soft_wrap=True)


def setup(quiet: bool = False) -> None:
    """Process-wide CLI setup, before any command runs: status and progress on stderr (none with
    ``quiet``), one progress implementation (Rich: huggingface_hub's tqdm bars are turned off),
    SIGTERM handled like Ctrl-C."""
    err_console.quiet = quiet
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    logger = logging.getLogger("adapterhub_lite")
    if not any(isinstance(h, _StatusHandler) for h in logger.handlers):
        logger.addHandler(_StatusHandler(logging.WARNING))
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)


def progress_enabled(*, transient: bool = False) -> bool:
    """Whether to draw progress: not with --quiet, nor with HF_HUB_DISABLE_PROGRESS_BARS set; a
    ``transient`` display (erased when done) not off a terminal either, where it has nothing to
    erase and leaves an empty line."""
    terminal = err_console.is_terminal or not transient
    return not err_console.quiet and not env_true(NO_PROGRESS_ENV) and terminal


def quiet_libraries() -> None:
    """Silence transformers' weight-loading bars and notices: the CLI shows its own progress."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


@contextmanager
def transfer_progress() -> Iterator[Callable[[int], Callable[[int], None]]]:
    """A byte progress bar for downloads on stderr, shown only once there is something to
    download (a cached pull or an error prints nothing)."""
    bar = Progress(
        TextColumn("downloading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not progress_enabled(transient=True),
    )

    def start(total: int) -> Callable[[int], None]:
        bar.start()
        task = bar.add_task("download", total=total)
        return lambda n: bar.advance(task, n)

    try:
        yield start
    finally:
        if bar.live.is_started:
            bar.stop()


@contextmanager
def activity(label: str) -> Iterator[None]:
    """A spinner with the elapsed time on stderr for work whose size is not known ahead (an
    upload, a conversion): the same Rich progress as training and downloads."""
    spinner = Progress(
        SpinnerColumn(),
        TextColumn(label),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not progress_enabled(transient=True),
    )
    with spinner:
        spinner.add_task(label, total=None)
        yield


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
        disable=not (enabled and progress_enabled()),
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
