"""``ahl inspect`` and ``ahl prune``: which adapters a fusion uses, and dropping the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from adapterhub_lite import hub
from adapterhub_lite.config import only_with
from adapterhub_lite.files import check_output_file
from adapterhub_lite.training.data import Example, ExampleSet, load_examples

from .options import BaseRefOption, RegistryOption
from .render import activations_table, console, print_json, quiet_libraries, user_errors
from .use import COLUMN_HELP, artifact_columns, text_lines


@user_errors
def inspect(
    target: str = typer.Argument(..., help="Fusion artifact directory, or a registry ref of a fusion."),
    data: str = typer.Option(
        ...,
        help="Data to run, labels not needed: .txt (one text per line), - (stdin, one text per line), "
        "or a data file (.csv, .tsv, .jsonl: the text column).",
    ),
    plot: Optional[Path] = typer.Option(
        None, help="Write a heatmap here: FILE.svg (needs nothing) or FILE.png (needs matplotlib)."
    ),
    base: BaseRefOption = None,
    registry: RegistryOption = None,
    text_column: Optional[str] = typer.Option(None, help=COLUMN_HELP),
    text_pair_column: Optional[str] = typer.Option(None, help=COLUMN_HELP),
    choices_column: Optional[str] = typer.Option(None, help=COLUMN_HELP),
    batch_size: int = typer.Option(64, min=1, help="Examples per forward pass."),
    json_out: bool = typer.Option(False, "--json", help="Print the activations as JSON."),
) -> None:
    """Mean fusion attention of every adapter at every layer over a dataset: table, JSON, SVG or PNG."""
    from adapterhub_lite.analysis import check_plot_path, fusion_activations  # torch: see cli/main.py

    if plot is not None:  # before the model runs
        check_plot_path(plot)
        check_output_file(plot, what="--plot", inputs=[data])
    quiet_libraries()
    artifact = hub.local_artifact(target, base=base, registry=registry)
    # texts as predict reads them: a .txt file or stdin one per line, else the data file's columns
    texts = text_lines(data)
    columns = artifact_columns(artifact, text_column, text_pair_column, None, choices_column)
    examples = (
        ExampleSet([Example(t) for _, t in texts], data)
        if texts is not None
        else load_examples(data, columns, require_label=False)
    )
    report = fusion_activations(artifact, examples, base=base, batch_size=batch_size)
    if plot is not None:
        report.plot(plot, title=f"fusion attention on {Path(data).name}")
    if json_out:
        print_json(report.to_dict())
        return
    title = f"mean fusion attention over {report.tokens:,} tokens of {Path(data).name}"
    console.print(activations_table(report, title))
    if plot is not None:
        console.print(f"heatmap written to {plot}")


@user_errors
def prune(
    target: str = typer.Argument(..., help="Fusion artifact directory, or a registry ref of a fusion."),
    data: str = typer.Option(..., help="Labelled data: measures activations, accuracy and speed."),
    threshold: Optional[float] = typer.Option(None, help="Drop adapters whose mean attention stays below this."),
    keep: Optional[int] = typer.Option(None, help="Keep the K adapters with the highest mean attention."),
    out: Optional[Path] = typer.Option(None, help="Save the pruned fusion here."),
    overwrite: bool = typer.Option(False, help="Replace an existing artifact at --out."),
    base: BaseRefOption = None,
    registry: RegistryOption = None,
    repeats: int = typer.Option(
        3, help="Timings of each model, interleaved; a speed-up is claimed only when every one agrees."
    ),
    text_column: Optional[str] = typer.Option(None, help=COLUMN_HELP),
    text_pair_column: Optional[str] = typer.Option(None, help=COLUMN_HELP),
    label_column: Optional[str] = typer.Option(None, help=COLUMN_HELP),
    choices_column: Optional[str] = typer.Option(None, help=COLUMN_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Drop adapters a fusion hardly uses (AdapterDrop); report accuracy before/after and the time taken."""
    from adapterhub_lite.analysis import prune_fusion  # torch: see cli/main.py

    only_with({"--overwrite": overwrite or None}, needs="--out", present=out is not None, fix="add --out DIR")
    quiet_libraries()
    fusion = hub.local_artifact(target, base=base, registry=registry)  # a directory is not read here
    overrides = (text_column, text_pair_column, label_column, choices_column)
    # read only with an override: without one, prune's own checks of its flags come first
    columns = artifact_columns(fusion, *overrides) if any(overrides) else None
    report = prune_fusion(
        fusion,
        data,
        threshold=threshold,
        keep=keep,
        base=base,
        out=out,
        overwrite=overwrite,
        repeats=repeats,
        columns=columns,
    )
    if json_out:
        print_json(report.to_dict())
        return
    console.print(f"kept {', '.join(report.kept)}; dropped {', '.join(report.dropped) or 'nothing'}")
    table = Table(title="pruning")
    for column in ("", *report.metrics_before, "seconds"):
        table.add_column(column, justify="right")
    for label, metrics, seconds in (
        ("before", report.metrics_before, report.seconds_before),
        ("after", report.metrics_after, report.seconds_after),
    ):
        table.add_row(label, *[f"{v:.4f}" for v in metrics.values()], f"{seconds:.2f}")
    console.print(table)
    ratios = ", ".join(f"{r:.2f}x" for r in report.speedups)
    if report.speedup_measured:
        verdict = f"speed-up {report.speedup:.2f}x (median of {len(report.speedups)} timings: {ratios})"
    else:
        verdict = f"no measured speed-up (time ratios {ratios}; seconds are medians of {len(report.speedups)})"
    console.print(verdict + (f"; saved {out}" if out else ""), highlight=False)
