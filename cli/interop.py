"""``ahl import`` and ``ahl export``: adapters in AdapterHub's ``adapters`` format."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from adapterhub_lite import hub
from adapterhub_lite.config import only_with
from adapterhub_lite.errors import ConfigError

from .options import LicenseOption, RegistryOption
from .render import activity, console, print_json, quiet_libraries, user_errors


@user_errors
def import_(
    source: str = typer.Argument(..., help="An adapters directory (adapter_config.json + weights) or a Hub repo id."),
    base: Optional[str] = typer.Option(
        None, help="Our base model (Hub id or directory; default: the model_name the adapter records)."
    ),
    revision: Optional[str] = typer.Option(None, help="Branch, tag or commit of a Hub repository."),
    endpoint: Optional[str] = typer.Option(
        None, help="Hub URL to download from, e.g. an 'ahl serve' (default: $HF_ENDPOINT or the Hub)."
    ),
    registry: Optional[str] = typer.Option(None, help="Push the converted artifact to this registry."),
    to: Optional[Path] = typer.Option(None, help="Write the converted artifact here."),
    name: Optional[str] = typer.Option(None, help="Artifact name (default: the adapter's name)."),
    task: Optional[str] = typer.Option(None, help="Task recorded in the artifact (default: its name)."),
    head: bool = typer.Option(True, help="Convert the prediction head too, when there is one."),
    overwrite: bool = typer.Option(False, help="Replace an existing --to directory."),
    license: LicenseOption = None,
    json_out: bool = typer.Option(False, "--json", help="Print the artifact's metadata (or pushed version) as JSON."),
) -> None:
    """Convert an AdapterHub adapter into an artifact (and push it with --registry).

    Options adapterhub-lite does not compute exactly as adapters does fail, naming the option.
    """
    from adapterhub_lite.adapters_format import import_adapter  # torch: see cli/main.py

    if to is None and registry is None:
        raise ConfigError("say where the artifact goes: --to DIR, --registry REGISTRY, or both")
    only_with({"--overwrite": overwrite or None}, needs="--to", present=to is not None, fix="add --to DIR")
    only_with(  # a local directory is read as it is: nothing to download
        {"--revision": revision, "--endpoint": endpoint},
        needs="a Hub repository (ORG/NAME)",
        present=not Path(source).expanduser().is_dir(),
        fix=f"name a repository instead of the directory {source}",
    )
    if registry is not None:
        hub.check_push(registry)  # before anything is converted or written to --to
    quiet_libraries()
    with tempfile.TemporaryDirectory(prefix="ahl-import-") as scratch:
        target = to if to is not None else Path(scratch) / "artifact"
        with activity(f"converting {escape(source)}"):
            artifact = import_adapter(
                source,
                to=target,
                base=base,
                revision=revision,
                endpoint=endpoint,
                name=name,
                task=task,
                with_head=head,
                overwrite=overwrite,
                license=license,
            )
        entry = hub.push(artifact.path, registry=registry) if registry is not None else None
    if json_out:
        print_json(entry.to_dict() if entry is not None else artifact.metadata)
        return
    meta = artifact.metadata
    adapter = meta["adapter"]
    console.print(
        f"converted {meta['imported_from']['adapter_name']!r}: {adapter['preset']} at "
        f"{', '.join(adapter['positions'])}, reduction {adapter['reduction_factor']}, "
        f"{adapter['non_linearity']}; base {meta['base']['model_id']}",
        highlight=False,
    )
    if meta["head"].get("placeholder"):
        console.print("no prediction head in the source: the artifact serves fusion, not predict", highlight=False)
    if to is not None:
        console.print(f"wrote {artifact.path}", highlight=False)
    if entry is not None:
        console.print(f"pushed [bold]{entry.ref}[/] ({entry.digest[:19]})")


@user_errors
def export(
    target: str = typer.Argument(..., help="Adapter artifact directory or registry ref."),
    out: Path = typer.Argument(..., help="Directory to write."),
    format: str = typer.Option(..., "--format", help="Target format: adapters (AdapterHub's library)."),
    base: Optional[str] = typer.Option(None, help="Base model id for short refs."),
    registry: RegistryOption = None,
    head: bool = typer.Option(True, help="Include the prediction head."),
    weights: str = typer.Option("both", help="safetensors, bin (what load_adapter(DIR) reads by default) or both."),
    overwrite: bool = typer.Option(False, help="Replace an existing output directory."),
    json_out: bool = typer.Option(False, "--json", help="Print the written directory and its files as JSON."),
) -> None:
    """Write an adapter in another library's format: adapters (AdapterHub) loads it with model.load_adapter(DIR)."""
    from adapterhub_lite.adapters_format import export_adapter  # torch: see cli/main.py

    if format != "adapters":
        raise ConfigError(f"unknown format {format!r}; the one export format is 'adapters'")
    artifact = hub.local_artifact(target, base=base, registry=registry)
    path = export_adapter(artifact, out, with_head=head, weights_format=weights, overwrite=overwrite)
    if json_out:
        print_json({"format": format, "path": str(path), "files": sorted(p.name for p in path.iterdir())})
        return
    console.print(
        f"wrote {escape(str(path))} (load it with model.load_adapter({escape(repr(str(path)))}))", highlight=False
    )
