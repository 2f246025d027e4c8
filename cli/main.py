"""The ``ahl`` application: one Typer app, each command a thin shell over one API call."""

from __future__ import annotations

import platform

import typer

from adapterhub_lite.artifact import library_versions

# The library modules that import torch are imported inside the commands that need them: ``ahl --help``,
# ``ahl serve`` and the registry verbs start without torch's seconds of import.
from . import analysis, demo, fuse, interop, rank, registry, serve, train, use
from .render import OneLineUsageGroup, console, print_json, setup

app = typer.Typer(
    name="ahl",
    cls=OneLineUsageGroup,
    help="adapterhub-lite: train, share and compose adapters for Hugging Face encoders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    # Help is plain text: Rich markup would read "[:PORT][/NAMESPACE]" in a help string as tags
    # (a MarkupError on rich 15), and typer's Rich help shows "<bool>" beside every flag.
    rich_markup_mode=None,
)


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the versions of adapterhub-lite, torch, transformers and huggingface_hub, and exit.",
    ),
    json_out: bool = typer.Option(False, "--json", help="With --version: print them as JSON."),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress or status on stderr (errors still); also after the command."
    ),
) -> None:
    """adapterhub-lite: train, share and compose adapters for Hugging Face encoders."""
    setup(quiet=quiet)
    if json_out and not version:  # 'ahl --json search' would print a table where a script expects JSON
        raise typer.BadParameter(
            "before a command it works only with --version; put it after the command", param_hint="--json"
        )
    if version:
        versions = {**library_versions(), "python": platform.python_version()}
        if json_out:
            print_json(versions)
        else:
            console.print("\n".join(f"{name} {number}" for name, number in versions.items()), highlight=False)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:  # options but no command: as with no arguments at all
        typer.echo(ctx.get_help(), err=True)
        raise typer.Exit(2)


app.command("train")(train.train)
app.command("eval")(use.evaluate)
app.command("predict")(use.predict)
app.command("info")(use.info)
app.command("fuse")(fuse.fuse)
app.command("rank")(rank.rank)
app.command("inspect")(analysis.inspect)
app.command("prune")(analysis.prune)
app.command("push")(registry.push)
app.command("pull")(registry.pull)
app.command("search")(registry.search)
app.command("verify")(registry.verify)
app.command("yank")(registry.yank)
app.command("serve")(serve.serve)
app.command("fsck")(serve.fsck)
app.command("login")(registry.login)
app.command("logout")(registry.logout)
app.add_typer(registry.cache_app, name="cache")
app.command("demo")(demo.demo)
app.command("import")(interop.import_)
app.command("export")(interop.export)
