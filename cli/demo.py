"""``ahl demo``: the whole story on the embedded model and bundled real data.

Train a few source adapters (related and unrelated to the target), share them through a
registry, pull them back verified, rank the registry's adapters for a low-resource target (task
embeddings and the transfer probe), and let ``fuse --auto`` compose the best of them with the
target's own adapter (Pfeiffer et al. 2021): then compare what it shipped with the target's
adapter and its head-only baseline, and show which adapters a fusion uses.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.table import Table

from adapterhub_lite import bundled, hub
from adapterhub_lite.artifact import read_artifact
from adapterhub_lite.base import BaseModel
from adapterhub_lite.config import TrainConfig
from adapterhub_lite.errors import ConfigError
from adapterhub_lite.training.data import ExampleSet, with_known_labels

from .rank import render_ranking
from .render import (
    activations_table,
    console,
    metrics_table,
    quiet_libraries,
    trainable_share,
    training_progress,
    user_errors,
)

if TYPE_CHECKING:
    from adapterhub_lite.training.loop import TrainEvent

DEFAULT_SOURCES = "rotten_tomatoes,vader_amazon,trec,sms_spam"
AUTO_K = 2


@dataclass
class Run:
    """A trained target-side model: its artifact, training result, held-out metrics and time."""

    label: str
    path: Path
    result: Any  # api.TrainResult, or auto's AutoResult
    held_out: dict[str, float]
    seconds: float


@user_errors
def demo(
    task: str = typer.Option("vader_tweets", help="Low-resource target: a bundled task (tasks.json)."),
    sources: str = typer.Option(DEFAULT_SOURCES, help="Comma-separated bundled tasks to train source adapters on."),
    examples: int = typer.Option(300, min=1, help="Labelled target examples (a tenth of them is held out as dev)."),
    epochs: int = typer.Option(1, min=1, help="Epochs for each source adapter (on its bundled train split)."),
    source_examples: int = typer.Option(1000, min=1, help="Training examples of each source adapter."),
    target_epochs: int = typer.Option(5, min=1, help="Most epochs for each target run (best dev epoch kept)."),
    limit: Optional[int] = typer.Option(
        None, min=1, help="At most this many examples per train and eval set (a quick look)."
    ),
    lr: float = typer.Option(1e-3, help="Learning rate of every run, fusion included (see docs/paper-replication.md)."),
    workdir: Path = typer.Option(Path("ahl-demo"), help="Where the demo writes artifacts, registry and heatmap."),
) -> None:
    """Train source adapters, push them to a registry and pull them back, rank them for a
    low-resource target, compose automatically (fuse --auto) and compare with the target's own
    adapter and a head-only baseline.

    Every run uses the embedded MiniLM-L6-H384. Target runs select their epoch on a dev split of
    the target's examples and are scored on the task's bundled dev file, held out (minus any text
    a source adapter trained on). Artifacts, the registry and the heatmap land in WORKDIR.
    """
    from adapterhub_lite import api  # torch: see cli/main.py

    quiet_libraries()
    names = _check_tasks(task, sources)
    _check_workdir(workdir)
    config = TrainConfig(learning_rate=lr, epochs=target_epochs, patience=2)
    config.validate()
    size = min(examples, limit) if limit is not None else examples
    per_source = min(source_examples, limit) if limit is not None else source_examples
    # every data set is checked before the first minute of training is spent
    train, held_out = _target_data(task, names, size, limit)
    limiting = "--limit" if limit is not None and limit < examples else "--examples"
    _check_classes(train, f"{limiting} {size} gives the target {task}", split=True)
    limiting = "--limit" if limit is not None and limit < source_examples else "--source-examples"
    for name in names:
        _check_classes(bundled.load(name, "train", per_source), f"{limiting} {per_source} gives the source {name}")
    base = api.load_base()
    console.print(
        f"[bold]demo[/]: compose adapters of {', '.join(names)} for {task} with {size} labelled "
        f"examples; base {base.model_id}, lr {lr}"
    )

    trained = _train_sources(names, base, epochs, lr, per_source, workdir / "sources")
    _share(trained, base, workdir)  # the registry auto composes from: pushed, pulled back, compared
    runs = _train_target(task, train, held_out, base, config, workdir)
    _compare(task, runs, len(held_out))
    shipped = runs[-1].path
    is_fusion = read_artifact(shipped).kind == "fusion"
    # The fusion's attention is the demo's picture, also when a simpler candidate won on dev.
    fusion = shipped if is_fusion else workdir / "target" / "candidates" / "fusion"
    if fusion.is_dir():
        if not is_fusion:
            console.print("the fusion candidate (not shipped) attended to:")
        _inspect(fusion, train, base, workdir / "fusion-heatmap.png")
    entry = hub.push(shipped, registry=workdir / "registry")
    hub.verify(str(entry.ref), registry=workdir / "registry")
    locks = " (a fusion locks its adapters by digest)" if is_fusion else ""
    console.print(f"pushed what auto shipped as [bold]{entry.ref}[/]{locks} and verified it")
    console.print(f"artifacts in {workdir}/ (try: ahl info {runs[-1].path}, ahl search --registry {workdir}/registry)")


def _check_tasks(task: str, sources: str) -> list[str]:
    """The source task names, checked: bundled, distinct, and none of them the target."""
    known = bundled.tasks()
    names = [name.strip() for name in sources.split(",") if name.strip()]
    for name in (task, *names):
        if name not in known:
            raise ConfigError(f"unknown bundled task {name!r}; choose from: {', '.join(known)}")
    if len(names) < 2 or len(set(names)) < len(names):
        raise ConfigError(f"the demo fuses at least two distinct source adapters; got {', '.join(names) or 'none'}")
    if task in names:
        raise ConfigError(f"{task} is the target; the sources must be other tasks")
    return names


# what a demo run writes into its workdir: a rerun may write there again, nothing else may be there
WORKDIR_NAMES = {"sources", "registry", "pulled", "target", "fusion-heatmap.png", "fusion-heatmap.svg"}


def _check_workdir(workdir: Path) -> None:
    """Refuse a --workdir that is a file, or a directory holding what no demo wrote (the demo
    would scatter its output among it)."""
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir {workdir} is a file; choose a new directory")
    if workdir.is_dir():
        other = sorted(p.name for p in workdir.iterdir() if p.name not in WORKDIR_NAMES)
        if other:
            raise ConfigError(
                f"--workdir {workdir} holds files no demo wrote ({', '.join(other[:3])}"
                f"{', ...' if len(other) > 3 else ''}); choose a new directory, or an earlier demo's"
            )


def _check_classes(data: ExampleSet, what: str, *, split: bool = False) -> None:
    """Refuse training data with fewer than two classes, or (``split``: a dev split is held out
    by class) a class of one example, naming the option that gives more."""
    counts = Counter(str(example.label) for example in data.examples)
    if len(counts) < 2:
        raise ConfigError(f"{what} {len(counts)} class(es) in {len(data)} examples; a classifier needs two: pass more")
    if split and min(counts.values()) < 2:
        raise ConfigError(f"{what} a class with one example, too few to hold out dev rows from: pass more")


def _train_sources(
    names: list[str], base: BaseModel, epochs: int, lr: float, limit: int | None, workdir: Path
) -> dict[str, Path]:
    """Train one Pfeiffer adapter per source task (its bundled dev split picks the best epoch)."""
    from adapterhub_lite import api  # torch: see cli/main.py

    paths = {}
    for name in names:
        config = TrainConfig(learning_rate=lr, epochs=epochs, patience=epochs)
        train = bundled.load(name, "train", limit)
        with training_progress(f"source {name}") as on_event:
            result = api.train(
                train,
                dev_data=with_known_labels(bundled.load(name, "dev", limit), train),
                task=name,
                base=base,
                adapter="pfeiffer",
                config=config,
                out=workdir / name,
                overwrite=True,
                on_event=on_event,
            )
        paths[name] = workdir / name
        console.print(
            f"source adapter [bold]{name}[/]: dev accuracy {result.metrics['accuracy']:.3f}, "
            f"{trainable_share(result.trainable_parameters, result.total_parameters)} trainable"
        )
    return paths


def _share(trained: dict[str, Path], base: BaseModel, workdir: Path) -> dict[str, Path]:
    """Push every adapter to the demo registry, pull it into an empty place, compare the bytes.

    The fusion then trains on the pulled copies, as a user would with adapters from a hub.
    """
    registry = workdir / "registry"
    table = Table(title=f"shared through {registry}/")
    for column in ("adapter", "ref", "pulled weights"):
        table.add_column(column)
    pulled = {}
    for name, path in trained.items():
        entry = hub.push(path, registry=registry)
        _, pulled[name] = hub.pull(
            str(entry.ref), registry=registry, base=base, to=workdir / "pulled" / name, overwrite=True
        )
        same = _weights_digest(path) == _weights_digest(pulled[name])
        table.add_row(name, str(entry.ref), "bit-identical" if same else "[red]DIFFERENT[/]")
    console.print(table)
    return pulled


def _weights_digest(artifact: Path) -> str:
    """One sha256 over every weights file of an artifact, in name order."""
    digest = hashlib.sha256()
    for path in sorted(artifact.glob("*.safetensors")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _target_data(task: str, sources: list[str], size: int, limit: int | None) -> tuple[ExampleSet, ExampleSet]:
    """The target's first ``size`` training examples and its held-out bundled dev file (at most
    ``limit`` of it), both without the texts any source adapter trained on; the held-out set also
    drops texts that occur in the target's own training file (a few tasks repeat texts across
    their splits) and the classes a few training examples can lack."""
    seen = bundled.texts_of(sources)
    train = bundled.without_texts(bundled.load(task, "train"), seen)
    held_out = bundled.without_texts(bundled.load(task, "dev"), seen | bundled.texts_of([task]))
    train = train.select(range(len(train))[:size])
    held_out = with_known_labels(held_out, train)
    return train, held_out.select(range(len(held_out))[:limit])


def _train_target(
    task: str, train: ExampleSet, held_out: ExampleSet, base: BaseModel, config: TrainConfig, workdir: Path
) -> list[Run]:
    """Head-only, the target's own adapter, and what ``fuse --auto`` ships from the registry
    (ranked, composed with the target's adapter, compared on dev; the ranking is shown).

    Each run carves the same dev split from ``train`` (same seed) to pick its best epoch.
    """
    from adapterhub_lite import api  # torch: see cli/main.py

    common: dict[str, Any] = {"task": task, "base": base, "config": config, "overwrite": True}  # train's and fuse's
    head = _run(
        "head only",
        workdir / "target",
        held_out,
        base,
        lambda out, on_event: api.train(train, adapter=None, out=out, on_event=on_event, **common),
    )
    own = _run(
        "target adapter",
        workdir / "target",
        held_out,
        base,
        lambda out, on_event: api.train(train, adapter="pfeiffer", out=out, on_event=on_event, **common),
    )
    chosen: list[Any] = []

    def auto(out: Path, on_event: Callable[[TrainEvent], None]) -> Any:
        result = api.fuse(
            train_data=train,
            out=out,
            on_event=on_event,
            auto=AUTO_K,
            registry=workdir / "registry",
            target_adapter=own.path,
            candidates_dir=workdir / "target" / "candidates",
            **common,
        )
        chosen.append(result)
        return result

    shipped = _run(f"auto (top {AUTO_K})", workdir / "target", held_out, base, auto)
    result = chosen[0]
    render_ranking(result.ranking, title=f"registry adapters ranked for {task} (task embedding, then probe)")
    console.print(metrics_table("auto: candidates on dev", {c.method: c.dev for c in result.candidates if c.dev}))
    console.print(f"auto shipped [bold]{result.chosen.method}[/] (best on dev; never below the target's adapter)")
    return [head, own, shipped]


def _run(
    label: str,
    workdir: Path,
    held_out: ExampleSet,
    base: BaseModel,
    fit: Callable[[Path, Callable[[TrainEvent], None]], Any],
) -> Run:
    """Train and save one target-side model with a progress bar, then score the saved artifact."""
    from adapterhub_lite import api  # torch: see cli/main.py

    out = workdir / label.split(" (")[0].replace(" ", "-")
    start = time.perf_counter()
    with training_progress(label) as on_event:
        result = fit(out, on_event)
    return Run(label, out, result, api.evaluate(out, held_out, base=base), time.perf_counter() - start)


def _trainable(result: Any) -> str:
    """The trainable share of a run (auto: of what it shipped, from the artifact's record)."""
    from adapterhub_lite import api  # torch: see cli/main.py

    if isinstance(result, api.TrainResult):
        return trainable_share(result.trainable_parameters, result.total_parameters)
    parameters = result.artifact.metadata["parameters"]
    return trainable_share(parameters["trainable"], parameters["total"])


def _compare(task: str, runs: list[Run], held_out_size: int) -> None:
    """The comparison table, then one line with the fusion's gain over the target's adapter."""
    table = Table(
        title=f"{task}: {len(runs[0].result.model.head.config.label_names)} classes, held-out {held_out_size} examples"
    )
    for column in ("run", "dev acc.", "held-out acc.", "held-out macro-F1", "trainable", "time"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for run in runs:
        result = run.result
        table.add_row(
            run.label,
            f"{result.metrics['accuracy']:.3f}",
            f"{run.held_out['accuracy']:.3f}",
            f"{run.held_out['macro_f1']:.3f}",
            _trainable(result),
            f"{run.seconds:.0f}s",
        )
    console.print(table)
    shipped, own = runs[-1].held_out["accuracy"], runs[1].held_out["accuracy"]
    console.print(
        f"held-out accuracy: auto {shipped:.3f} vs target adapter {own:.3f} "
        f"([bold]{100 * (shipped - own):+.1f}[/] points)"
    )


def _inspect(fusion: Path, data: ExampleSet, base: BaseModel, plot: Path) -> None:
    """Which adapters the fusion attends to, per layer, on the target's examples; and a heatmap."""
    from adapterhub_lite import analysis  # torch: see cli/main.py

    report = analysis.fusion_activations(fusion, data, base=base)
    console.print(activations_table(report, f"mean fusion attention over {report.tokens:,} target tokens"))
    title = "mean fusion attention on the target's examples"
    try:
        report.plot(plot, title=title)
    except ConfigError:  # no matplotlib: the same picture as SVG, which needs nothing
        plot = report.plot(plot.with_suffix(".svg"), title=title)
    console.print(f"heatmap written to {plot}")
