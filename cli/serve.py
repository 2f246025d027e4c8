"""``ahl serve``: run a self-hosted registry that the Hugging Face Hub client can talk to."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape

from adapterhub_lite.constants import REGISTRY_ENV
from adapterhub_lite.errors import ConfigError

from .render import err_console, user_errors

if TYPE_CHECKING:
    from adapterhub_lite.registry.server.repos import Repairs, RepoStore

# The directory served: a registry option of its own (a URL is no directory to serve).
ServedRegistry = Annotated[
    Optional[str],
    typer.Option(
        envvar=REGISTRY_ENV,
        help="Registry directory to serve (default: $AHL_REGISTRY or ~/.local/share/adapterhub-lite/registry).",
    ),
]
TOKENS_HELP = (
    "File of write tokens, one 'TOKEN USER' per line ('#' comments); also read: "
    "$AHL_SERVE_TOKENS as TOKEN:USER,TOKEN:USER. A user may write to its own namespace."
)


@user_errors
def serve(
    ctx: typer.Context,
    registry: ServedRegistry = None,
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0: every interface)."),
    port: int = typer.Option(8765, min=0, max=65535, help="TCP port (0: any free one, printed)."),
    tokens: Optional[Path] = typer.Option(None, help=TOKENS_HELP),
    private: bool = typer.Option(False, help="Reads need a valid token too."),
    max_upload_mb: float = typer.Option(512, help="Largest commit body or LFS file accepted, in MiB."),
    max_concurrent_uploads: int = typer.Option(
        8, help="Commit bodies and LFS files received at once; more get 429 (retry later)."
    ),
    read_timeout: float = typer.Option(
        30, help="Seconds a client may pause inside a request body, and to send its request headers."
    ),
    check: bool = typer.Option(
        False,
        "--check",
        help="Reconcile the indexes with the files (as ahl fsck), report, and exit without serving (so "
        "the serving options are refused with it).",
    ),
) -> None:
    """Serve a registry directory over the Hugging Face Hub HTTP API (create, commit, tag, search, download)."""
    # imported here, so that other commands do not load the web stack
    from adapterhub_lite.constants import SERVE_TOKENS_ENV, default_registry_root
    from adapterhub_lite.registry.client.local import check_registry_dir
    from adapterhub_lite.registry.server.app import load_tokens
    from adapterhub_lite.registry.server.repos import RepoStore

    if max_upload_mb <= 0 or max_concurrent_uploads <= 0 or read_timeout <= 0:
        raise ConfigError("--max-upload-mb, --max-concurrent-uploads and --read-timeout must be positive")
    if registry is not None and "://" in registry:
        raise ConfigError(f"ahl serve serves a local registry directory, not the remote {registry}")
    token_map = load_tokens(tokens, os.environ.get(SERVE_TOKENS_ENV))
    root = Path(registry).expanduser() if registry is not None else default_registry_root()
    if check:
        _refuse_serving_options(ctx)
        check_registry_dir(root)  # a check makes no registry where a mistyped path points
        raise typer.Exit(_fsck(RepoStore(root), root))
    with listening(host, port) as listener:
        _serve(listener, root, host, token_map, private, max_upload_mb, max_concurrent_uploads, read_timeout)


def _refuse_serving_options(ctx: typer.Context) -> None:
    """--check serves nothing: an option given for serving would be ignored silently."""
    for param in ctx.command.params:
        if param.name in ("registry", "check") or not param.name:
            continue
        source = ctx.get_parameter_source(param.name)
        if source is not None and source.name != "DEFAULT":  # given on the command line (or env)
            flag = param.opts[0] if param.opts else param.name
            raise ConfigError(f"{flag} applies to serving, which --check does not do; drop {flag} or --check")


def _serve(
    listener: socket.socket,
    root: Path,
    host: str,
    token_map: dict[str, str],
    private: bool,
    max_upload_mb: float,
    max_concurrent_uploads: int,
    read_timeout: float,
) -> None:
    """Open the registry at ``root`` and serve it on ``listener`` until Ctrl-C or SIGTERM."""
    import uvicorn

    from adapterhub_lite.registry.server.app import HeaderTimeoutProtocol, create_app, registry_url
    from adapterhub_lite.registry.server.repos import RepoStore

    store = RepoStore(root)  # refuses a directory it cannot write; repairs what a crash left
    if store.repairs.changed:
        err_console.print(f"ahl serve: repaired after an unclean stop: {describe(store.repairs)}", highlight=False)
    app = create_app(
        root,
        tokens=token_map,
        private=private,
        max_upload_bytes=int(max_upload_mb * (1 << 20)),
        max_concurrent_uploads=max_concurrent_uploads,
        read_timeout=read_timeout,
        store=store,
    )
    port = listener.getsockname()[1]
    err_console.print(
        f"ahl serve: registry {escape(str(root))} at [bold]{registry_url(host, port)}[/] "
        f"({len(token_map)} token(s){', private' if private else ''}); Ctrl-C stops",
        highlight=False,
        soft_wrap=True,
    )
    if not token_map:
        err_console.print(
            "no tokens: the registry is read-only (pass --tokens FILE or set $AHL_SERVE_TOKENS)", soft_wrap=True
        )
    HeaderTimeoutProtocol.HEADER_TIMEOUT = read_timeout
    # uvicorn finishes in-flight requests on SIGINT/SIGTERM before it exits, then raises the
    # signal again: stopping the server is its normal end, not an interruption. h11 caps a
    # request head at 64 KiB.
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        http=HeaderTimeoutProtocol,
        h11_max_incomplete_event_size=64 << 10,
    )
    try:
        uvicorn.Server(config).run(sockets=[listener])
    except KeyboardInterrupt:
        err_console.print("ahl serve: stopped", highlight=False)
    finally:
        store.close()


@contextmanager
def listening(host: str, port: int) -> Iterator[socket.socket]:
    """A socket bound to ``host:port`` (closed on the way out), before anything is opened or
    written: a port in use or a host that is not this machine's is one line, not a traceback
    from inside the event loop."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: restart over TIME_WAIT
        try:
            listener.bind((host, port))
        except OSError as exc:  # socket.gaierror (an unknown host) included
            reason = exc.strerror or str(exc)
            raise ConfigError(
                f"cannot listen on {host}:{port}: {reason.lower()}; choose another --port or --host"
            ) from None
        yield listener
    finally:
        listener.close()


@user_errors
def fsck(
    registry: Annotated[
        Optional[str],
        typer.Option(
            envvar=REGISTRY_ENV,
            help="Registry directory to check (default: $AHL_REGISTRY or ~/.local/share/adapterhub-lite/registry).",
        ),
    ] = None,
) -> None:
    """Check a registry directory served by ahl serve: reconcile its indexes, entry bindings and
    staging with the manifests and repository records, and report blobs that are missing."""
    from adapterhub_lite.constants import default_registry_root
    from adapterhub_lite.registry.client.local import check_registry_dir
    from adapterhub_lite.registry.server.repos import RepoStore

    if registry is not None and "://" in registry:
        raise ConfigError(f"ahl fsck checks a local registry directory, not the remote {registry}")
    root = Path(registry).expanduser() if registry is not None else default_registry_root()
    check_registry_dir(root)  # a check makes no registry where a mistyped path points
    raise typer.Exit(_fsck(RepoStore(root, recover=False), root))


def _fsck(store: RepoStore, root: Path) -> int:
    """Check ``store`` and report (the exit code), closing it either way."""
    try:
        return report_repairs(store.fsck(), root)
    finally:
        store.close()


def describe(repairs: Repairs) -> str:
    return (
        f"{repairs.staging_removed} staging item(s) removed, {repairs.writes_replayed} interrupted write(s) "
        f"replayed, {repairs.entries_reindexed} entr(y/ies) and {repairs.repos_reindexed} repositor(y/ies) "
        f"re-indexed, {repairs.bindings_fixed} entry binding(s) fixed"
    )


def report_repairs(repairs: Repairs, root: Path) -> int:
    """Print what a check repaired (stderr) and what it could not; the exit code: 1 when blobs are missing."""
    err_console.print(f"{escape(str(root))}: {describe(repairs)}", highlight=False, soft_wrap=True)
    for missing in repairs.missing_blobs:
        err_console.print(f"missing blob: {escape(missing)}", highlight=False, soft_wrap=True)
    if repairs.missing_blobs:
        err_console.print(
            f"error: {len(repairs.missing_blobs)} file(s) have no blob; push those versions again", highlight=False
        )
        return 1
    return 0
