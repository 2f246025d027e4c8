"""The ``ahl`` application: one Typer app, each command a thin shell over one API call."""

from __future__ import annotations

import typer

from . import analysis, demo, fuse, interop, rank, registry, serve, train, use

app = typer.Typer(
    name="ahl",
    help="adapterhub-lite: train, share and compose adapters for Hugging Face encoders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
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
app.command("login")(registry.login)
app.command("logout")(registry.logout)
app.add_typer(registry.cache_app, name="cache")
app.command("demo")(demo.demo)
app.command("import")(interop.import_)
app.command("export")(interop.export)
