"""``ahl eval``, ``ahl predict`` and ``ahl info``: use and inspect a trained artifact."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from adapterhub_lite import hub
from adapterhub_lite.artifact import read_artifact
from adapterhub_lite.errors import ConfigError, DataError
from adapterhub_lite.files import check_output_file, replacing
from adapterhub_lite.training.data import HUB_PREFIX, Columns, Example, load_examples

from .options import RegistryOption
from .registry import entry_table
from .render import console, metrics_table, print_json, quiet_libraries, trainable_share, user_errors

if TYPE_CHECKING:
    from adapterhub_lite import api

COLUMN_HELP = "Column override (default: the column used in training)."


def artifact_columns(
    path: Path, text: Optional[str], pair: Optional[str], label: Optional[str], choices: Optional[str]
) -> Columns:
    """The columns recorded in the artifact at ``path`` (its metadata only: no torch), with the
    ones given on the command line instead."""
    recorded = Columns.from_dict(read_artifact(path, verify=False).metadata.get("columns", {}))
    return Columns(
        text or recorded.text, pair or recorded.text_pair, label or recorded.label, choices or recorded.choices
    )


@user_errors
def evaluate(
    artifact: str = typer.Argument(..., help="Artifact directory (adapter or fusion) or registry ref."),
    data: str = typer.Option(..., help="Labelled data file."),
    base: Optional[str] = typer.Option(None, help="Base model (default: the one recorded in the artifact)."),
    registry: RegistryOption = None,
    text_column: Optional[str] = typer.Option(None, help=COLUMN_HELP),
    text_pair_column: Optional[str] = typer.Option(None, help=COLUMN_HELP),
    label_column: Optional[str] = typer.Option(None, help=COLUMN_HELP),
    choices_column: Optional[str] = typer.Option(None, help=COLUMN_HELP),
    batch_size: int = typer.Option(64, min=1, help="Examples per forward pass."),
    json_out: bool = typer.Option(False, "--json", help="Print metrics as JSON."),
) -> None:
    """Evaluate an artifact on labelled data."""
    path = hub.local_artifact(artifact, base=base, registry=registry)
    columns = artifact_columns(path, text_column, text_pair_column, label_column, choices_column)
    # Read the data before importing torch (seconds of CPU): a wrong path or column fails at once.
    data_set = load_examples(data, columns)
    from adapterhub_lite import api  # torch: see cli/main.py

    quiet_libraries()
    loaded = api.load(path, base=base, device="auto")
    metrics = api.evaluate(loaded, data_set, columns=columns, batch_size=batch_size)
    if json_out:
        print_json(metrics)
    else:
        console.print(metrics_table(f"{loaded.artifact.metadata['name']} on {Path(data).name}", {"eval": metrics}))


@user_errors
def predict(
    artifact: str = typer.Argument(..., help="Artifact directory (adapter or fusion) or registry ref."),
    input: str = typer.Option(
        "-",
        "--input",
        "-i",
        help="Data file (.txt: one text per line; .csv, .tsv, .jsonl: "
        "the text column), or - for one text per line on stdin.",
    ),
    output: str = typer.Option("-", "--output", "-o", help="Output file, or - for stdout."),
    format: str = typer.Option("jsonl", help="jsonl or csv."),
    base: Optional[str] = typer.Option(None, help="Base model (default: the one recorded in the artifact)."),
    registry: RegistryOption = None,
    text_column: Optional[str] = typer.Option(None, help=COLUMN_HELP),
    text_pair_column: Optional[str] = typer.Option(None, help=COLUMN_HELP),
    choices_column: Optional[str] = typer.Option(None, help=COLUMN_HELP),
    batch_size: int = typer.Option(64, min=1, help="Examples per forward pass."),
) -> None:
    """Predict labels and probabilities for a file or stdin, as JSON Lines or CSV (with the input text)."""
    if format not in ("jsonl", "csv"):
        raise ConfigError(f"unknown format {format!r}; use jsonl or csv")
    if output != "-":
        check_output_file(Path(output), what="--output", inputs=[] if input == "-" else [input])
    texts = text_lines(input)  # checked before torch is imported and the model loads
    if texts is None and not input.startswith(HUB_PREFIX) and not Path(input).exists():
        raise DataError(
            f"input file {input} does not exist; pass a data file (.txt: one text per line; .csv, "
            f".tsv, .jsonl) or - to read one text per line from stdin"
        )
    path = hub.local_artifact(artifact, base=base, registry=registry)
    columns = artifact_columns(path, text_column, text_pair_column, None, choices_column)
    if texts is not None:  # each record says which input line it answers: blank lines are skipped
        examples = [Example(t) for _, t in texts]
        position = ("line", [n for n, _ in texts])
    else:
        examples = load_examples(input, columns, require_label=False).examples
        position = ("row", list(range(len(examples))))
    from adapterhub_lite import api  # torch: see cli/main.py

    quiet_libraries()
    loaded = api.load(path, base=base, device="auto")
    predictions = api.predict(loaded, examples, columns=columns, batch_size=batch_size)
    text = _render(predictions, examples, format, position=position)
    _write(output, text)


def text_lines(input: str) -> list[tuple[int, str]] | None:
    """The texts of stdin (``-``) or a ``.txt`` file, one per non-blank line, each with its line
    number (from 1); None for a data file."""
    if input == "-":
        lines = list(sys.stdin)
        where = "stdin"
    elif input.lower().endswith(".txt") and Path(input).is_file():
        try:
            lines = Path(input).read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError:
            raise DataError(f"{input} is not UTF-8 text; re-save it as UTF-8") from None
        where = input
    else:
        return None
    texts = [(n, line.rstrip("\r\n")) for n, line in enumerate(lines, 1) if line.strip()]
    if not texts:
        raise DataError(f"nothing to predict: {where} has no text lines")
    return texts


def _render(
    predictions: list[api.Prediction], examples: list[Example], format: str, *, position: tuple[str, list[int]]
) -> str:
    """One row per prediction: where its input is (``position``: the data file's ``row`` from 0,
    or the text input's ``line`` from 1), the input text (and its pair), the label and the
    probabilities."""
    key, places = position
    rows = []
    for place, p, example in zip(places, predictions, examples, strict=True):
        row: dict[str, object] = {key: place}
        row["text"] = example.text
        if example.text_pair is not None:
            row["text_pair"] = example.text_pair
        rows.append({**row, **p.to_dict()})
    if format == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    names = list(rows[0].get("probabilities") or {})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*[k for k in rows[0] if k != "probabilities"], *[f"p_{n}" for n in names]])
    for r in rows:
        probs = r.pop("probabilities", None) or {}
        writer.writerow([*r.values(), *[f"{probs.get(n, 0.0):.6f}" for n in names]])
    return buffer.getvalue()


def _write(output: str, text: str) -> None:
    """Write all or nothing: a file appears only once complete."""
    if output == "-":
        sys.stdout.write(text)
        return
    with replacing(Path(output)) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _describe_adapter(meta: dict) -> str:
    if meta["kind"] == "fusion":
        names = ", ".join(f"{a['task']}/{a['name']} ({a['digest'][7:19]})" for a in meta["adapters"])
        return f"fusion at {', '.join(meta['fusion']['positions'])} over {names}"
    adapter = meta.get("adapter")
    if not adapter:
        return "none (head only)"
    return (
        f"{adapter['preset']}: {', '.join(adapter['positions'])}, reduction {adapter['reduction_factor']}, "
        f"{adapter['non_linearity']}"
    )


@user_errors
def info(
    target: str = typer.Argument(..., help="Artifact directory, or a registry ref (TASK/NAME[@VERSION])."),
    base: Optional[str] = typer.Option(None, help="Base model id for short refs."),
    registry: RegistryOption = None,
    json_out: bool = typer.Option(False, "--json", help="Print the full metadata as JSON."),
) -> None:
    """Show an artifact's metadata (after verifying every file's sha256), or a registry version."""
    from adapterhub_lite import api  # torch: see cli/main.py

    if not hub.is_artifact_path(target):
        entry = hub.resolve(target, base=base, registry=registry)
        print_json(entry.manifest) if json_out else console.print(entry_table(entry))
        return
    meta = api.info(target)
    if json_out:
        print_json(meta)
        return
    fp = meta["base"]["fingerprint"]
    table = Table(title=f"{meta['kind']} {meta['name']}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    params = meta.get("parameters", {})
    rows = [
        ("task", meta["task"]),
        (
            "base",
            f"{meta['base']['model_id']} ({fp['model_type']}, {fp['num_layers']} layers x "
            f"{fp['hidden_size']}, weights {fp['weights_sha256'][:12]})",
        ),
        ("adapter", _describe_adapter(meta)),
        (
            "head",
            meta["head"]["type"]
            + (f": {', '.join(meta['head']['label_names'])}" if meta["head"].get("label_names") else ""),
        ),
        ("dev metrics", ", ".join(f"{k} {v:.4f}" for k, v in meta.get("metrics", {}).get("dev", {}).items())),
        ("parameters", trainable_share(params["trainable"], params["total"]) + " trainable" if params else "-"),
        ("format", meta["format_version"]),
        ("files", ", ".join(f"{n} ({f['size']:,} B)" for n, f in meta["files"].items())),
    ]
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)
