"""``ahl serve``: run a self-hosted registry that the Hugging Face Hub client can talk to."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from adapterhub_lite.errors import ConfigError

from .render import err_console, user_errors

REGISTRY_HELP = "Registry directory to serve (default: $AHL_REGISTRY or ~/.local/share/adapterhub-lite/registry)."
TOKENS_HELP = ("File of write tokens, one 'TOKEN USER' per line ('#' comments); also read: "
               "$AHL_SERVE_TOKENS as TOKEN:USER,TOKEN:USER. A user may write to its own namespace.")


@user_errors
def serve(
    registry: Optional[str] = typer.Option(None, envvar="AHL_REGISTRY", help=REGISTRY_HELP),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0: every interface)."),
    port: int = typer.Option(8765, help="TCP port."),
    tokens: Optional[Path] = typer.Option(None, help=TOKENS_HELP),
    private: bool = typer.Option(False, help="Reads need a valid token too."),
    max_upload_mb: float = typer.Option(512, help="Largest commit body or LFS file accepted, in MiB."),
) -> None:
    """Serve a registry directory over the Hugging Face Hub HTTP API (create, commit, tag, search, download)."""
    # imported here, so that other commands do not load the web stack
    import uvicorn

    from adapterhub_lite.registry.local import default_root
    from adapterhub_lite.registry.server import TOKENS_ENV, create_app, load_tokens, registry_url

    if max_upload_mb <= 0:
        raise ConfigError("--max-upload-mb must be positive")
    if registry is not None and "://" in registry:
        raise ConfigError(f"ahl serve serves a local registry directory, not the remote {registry}")
    token_map = load_tokens(tokens, os.environ.get(TOKENS_ENV))
    root = Path(registry).expanduser() if registry is not None else default_root()
    app = create_app(root, tokens=token_map, private=private, max_upload_bytes=int(max_upload_mb * (1 << 20)))
    err_console.print(f"ahl serve: registry {escape(str(root))} at [bold]{registry_url(host, port)}[/] "
                  f"({len(token_map)} token(s){', private' if private else ''}); Ctrl-C stops", highlight=False,
                  soft_wrap=True)
    if not token_map:
        err_console.print("no tokens: the registry is read-only (pass --tokens FILE or set $AHL_SERVE_TOKENS)")
    # uvicorn finishes in-flight requests on SIGINT/SIGTERM before it exits, then raises the
    # signal again: stopping the server is its normal end, not an interruption
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="off")
    except KeyboardInterrupt:
        err_console.print("ahl serve: stopped", highlight=False)
