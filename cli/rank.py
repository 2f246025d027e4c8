"""``ahl rank``: which adapters would help this target? (task embeddings + a transfer probe)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from adapterhub_lite import ranking
from adapterhub_lite.config import only_with
from adapterhub_lite.training.data import Columns, load_examples

from .options import RegistryOption
from .render import console, print_json, quiet_libraries, user_errors


@user_errors
def rank(
    train_file: str = typer.Option(..., "--train", help="The target's labelled training data."),
    adapters: Optional[str] = typer.Option(
        None,
        help="Comma-separated candidates (refs or artifact directories); "
        "default: the registry's adapters for the base.",
    ),
    registry: RegistryOption = None,
    base: Optional[str] = typer.Option(None, help="Base model (default: the embedded MiniLM)."),
    top: Optional[int] = typer.Option(None, min=1, help="Rows at most (default: all)."),
    pool: Optional[int] = typer.Option(
        None,
        min=1,
        help=f"Registry candidates to probe: the most similar by task embedding (default {ranking.DEFAULT_POOL}).",
    ),
    probe: bool = typer.Option(
        True, help="Run the transfer probe (--no-probe: similarity alone, no forward pass over the candidates)."
    ),
    max_examples: Optional[int] = typer.Option(
        None, min=1, help=f"Probe examples at most (default {ranking.DEFAULT_MAX_EXAMPLES})."
    ),
    folds: Optional[int] = typer.Option(
        None, min=2, help=f"Cross-validation folds of the probe (default {ranking.DEFAULT_FOLDS})."
    ),
    text_column: str = typer.Option("text", help="Column with the text."),
    text_pair_column: Optional[str] = typer.Option(None, help="Column with a second text."),
    label_column: str = typer.Option("label", help="Column with the label."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Rank adapters by how much they are likely to help a target task, best first.

    The probe runs the target's examples once through the base with each candidate active and
    scores a cross-validated linear (ridge) classifier on the features, against the base alone
    (gain: the drop in its out-of-fold squared error; macro-F1 shown beside it).
    Example: ahl rank --train train.csv --registry ./registry --top 5
    """
    only_with({"--pool": pool}, needs="a registry pool", present=not adapters, fix="leave out --adapters")
    only_with(
        {"--max-examples": max_examples, "--folds": folds}, needs="the probe", present=probe, fix="leave out --no-probe"
    )
    # Read the data before importing torch (seconds of CPU): a wrong path or column fails at once.
    train_set = load_examples(train_file, Columns(text_column, text_pair_column, label_column))
    quiet_libraries()
    names = [a.strip() for a in adapters.split(",") if a.strip()] if adapters else None
    result = ranking.rank(
        train_set,
        adapters=names,
        registry=registry,
        top=top,
        pool=ranking.DEFAULT_POOL if pool is None else pool,
        base=base,
        probe=probe,
        max_examples=ranking.DEFAULT_MAX_EXAMPLES if max_examples is None else max_examples,
        folds=ranking.DEFAULT_FOLDS if folds is None else folds,
    )
    if json_out:
        print_json(result.to_dict())
        return
    render_ranking(result, title=f"adapters ranked for {Path(train_file).name}")


def render_ranking(result: ranking.Ranking, *, title: str) -> None:
    """The ranking as a table (stdout), with the probe's cost."""
    table = Table(title=title)
    for column in ("#", "adapter", "similarity", "probe macro-F1", "gain", "seconds"):
        table.add_column(column, justify="left" if column == "adapter" else "right")
    for i, c in enumerate(result.candidates, 1):
        table.add_row(
            str(i),
            f"{c.task}/{c.name}",
            "-" if c.similarity is None else f"{c.similarity:.3f}",
            "-" if c.probe is None else f"{c.probe['macro_f1']:.3f}",
            "-" if c.gain is None else f"{c.gain:+.4f}",
            f"{c.seconds:.1f}",
        )
    console.print(table)
    base = f"base alone: probe macro-F1 {result.base_probe['macro_f1']:.3f}; " if result.base_probe else ""
    console.print(
        f"{base}{result.method} over {result.examples} examples, {result.folds} folds, {result.seconds:.1f} s in all"
    )
