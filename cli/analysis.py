"""``ahl inspect``: which adapters a fusion attends to, layer by layer (paper Fig. 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from adapterhub_lite import hub
from adapterhub_lite.analysis import fusion_activations

from .registry import BASE_HELP, REGISTRY_HELP
from .render import console, print_json, quiet_libraries, user_errors


@user_errors
def inspect(
    target: str = typer.Argument(..., help="Fusion artifact directory, or a registry ref of a fusion."),
    data: str = typer.Option(..., help="Data to run (labels are not needed)."),
    plot: Optional[Path] = typer.Option(None, help="Write a PNG heatmap here."),
    base: Optional[str] = typer.Option(None, help=BASE_HELP),
    registry: Optional[Path] = typer.Option(None, envvar="AHL_REGISTRY", help=REGISTRY_HELP),
    batch_size: int = typer.Option(64, help="Examples per forward pass."),
    json_out: bool = typer.Option(False, "--json", help="Print the activations as JSON."),
) -> None:
    """Mean fusion attention of every adapter at every layer over a dataset: table, JSON, PNG."""
    quiet_libraries()
    path = Path(target)
    if not hub.is_artifact_path(target):  # a ref: pull it (with its adapters) next to nothing else
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="ahl-inspect-"))
        _, path = hub.pull(target, to=scratch / "fusion", base=base, registry=registry)
    report = fusion_activations(path, data, base=base, batch_size=batch_size)
    if plot is not None:
        report.plot(plot, title=f"fusion attention on {Path(data).name}")
    if json_out:
        print_json(report.to_dict())
        return
    table = Table(title=f"mean fusion attention over {report.tokens:,} tokens of {Path(data).name}")
    table.add_column("layer.position")
    for adapter in report.adapters:
        table.add_column(adapter, justify="right")
    for site, row in zip(report.sites, report.mean, strict=True):
        best = row.argmax()
        table.add_row(site, *[f"[bold]{v:.3f}[/]" if i == best else f"{v:.3f}" for i, v in enumerate(row)])
    console.print(table)
    if plot is not None:
        console.print(f"heatmap written to {plot}")
