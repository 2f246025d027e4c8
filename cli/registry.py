"""``ahl push``, ``pull``, ``search``, ``verify``, ``yank``, ``login``, ``cache``: the registry commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from adapterhub_lite import hub
from adapterhub_lite.artifact import check_writable
from adapterhub_lite.config import only_with
from adapterhub_lite.constants import REGISTRY_ENV
from adapterhub_lite.errors import ConfigError
from adapterhub_lite.registry.client.cache import DownloadCache
from adapterhub_lite.registry.client.tokens import tokens_path
from adapterhub_lite.registry.format.manifest import ARCHITECTURES, SORT_METRICS, Entry
from adapterhub_lite.training.data import Columns

from .options import BaseRefOption, RegistryOption
from .render import activity, console, print_json, transfer_progress, user_errors


def entry_table(entry: Entry) -> Table:
    """Key facts of one registry version."""
    table = Table(title=escape(str(entry.ref) + (" [yanked]" if entry.yanked else "")), show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in entry.to_dict().items():
        if key not in ("ref", "base", "task", "name", "version") and value is not None:
            table.add_row(key, escape(_readable(value)))
    table.add_row("files", ", ".join(f"{n} ({f['size']:,} B)" for n, f in entry.manifest["files"].items()))
    return table


def _readable(value: object) -> str:
    """A value as a person reads it: metrics as ``name 0.812``, lists comma-separated (not reprs)."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_readable(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(_readable, value))
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


@user_errors
def push(
    path: Path = typer.Argument(..., help="Artifact directory."),
    registry: RegistryOption = None,
    version: Optional[str] = typer.Option(None, help="MAJOR.MINOR.PATCH (default: next patch version)."),
    json_out: bool = typer.Option(False, "--json", help="Print the stored version as JSON."),
) -> None:
    """Push an artifact to a registry as a new immutable version."""
    with activity(f"pushing {escape(str(path))}"):
        entry = hub.push(path, registry=registry, version=version)
    if json_out:
        print_json(entry.to_dict())
    else:
        console.print(f"pushed [bold]{entry.ref}[/] ({entry.digest[:19]})")


@user_errors
def pull(
    ref: str = typer.Argument(
        ...,
        help="TASK/NAME[@VERSION|@latest|@sha256:...], BASE/TASK/NAME[...], or "
        "adapters:REPO[@REV] (an AdapterHub adapter, converted).",
    ),
    base: BaseRefOption = None,
    to: Optional[Path] = typer.Option(None, help="Destination directory (default: ./NAME-VERSION)."),
    registry: RegistryOption = None,
    overwrite: bool = typer.Option(False, help="Replace an existing destination."),
    json_out: bool = typer.Option(False, "--json", help="Print the pulled version and its directory as JSON."),
) -> None:
    """Pull a version from a registry into a directory, verifying every file."""
    if ref.startswith(hub.ADAPTERS_SCHEME):  # AdapterHub's format: converted on the way in
        target = to or hub.import_dir(ref)
        check_writable(target, overwrite=overwrite)
        with activity(f"converting {escape(ref)}"):
            path = hub.fetch(ref, to=target, base=base, registry=registry)
        if json_out:
            print_json({"source": ref, "path": str(path)})
        else:
            console.print(f"converted {escape(ref)} into {escape(str(path))}", highlight=False)
        return
    with transfer_progress() as progress:
        entry, target = hub.pull(ref, to=to, base=base, registry=registry, overwrite=overwrite, progress=progress)
    if json_out:
        print_json({**entry.to_dict(), "path": str(target)})
    else:
        console.print(f"pulled [bold]{entry.ref}[/] into {escape(str(target))}", highlight=False)


@user_errors
def search(
    task: Optional[str] = typer.Option(None, help="Exact task name."),
    base: Optional[str] = typer.Option(None, help="Exact base model id."),
    architecture: Optional[str] = typer.Option(None, "--arch", help=f"One of {', '.join(ARCHITECTURES)}."),
    name: Optional[str] = typer.Option(None, help="Substring of the entry name."),
    tag: Optional[str] = typer.Option(None, help="A tag, e.g. task:trec or head:regression."),
    sort: Optional[str] = typer.Option(
        None, help=f"Sort by a dev metric, best first: one of {', '.join(SORT_METRICS)}."
    ),
    limit: Optional[int] = typer.Option(None, min=1, help="Rows at most (default 50; with --like see --top)."),
    like: Optional[Path] = typer.Option(
        None,
        "--like",
        help="A data file: rank the base's adapters by how similar their training data is to it (task embeddings).",
    ),
    top: Optional[int] = typer.Option(None, help="With --like: rows at most (default 10)."),
    text_column: Optional[str] = typer.Option(None, help="With --like: the column holding the text (default: text)."),
    registry: RegistryOption = None,
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Search a registry: the latest non-yanked version of each matching entry (or, with
    --like, the adapters whose training data is most similar to a data file's)."""
    only_with(
        {"--top": top, "--text-column": text_column}, needs="--like", present=like is not None, fix="add --like DATA"
    )
    if like is not None and limit is not None:
        raise ConfigError("--limit is for a plain search; with --like, --top sets the rows (drop --limit)")
    if like is not None:
        entries = hub.search(
            registry=registry,
            like=like,
            top=top,
            columns=Columns(text=text_column) if text_column else Columns(),
            base=base,
            task=task,
            architecture=architecture,
            name=name,
            tag=tag,
            sort=sort,
        )
    else:
        rows: dict[str, Any] = {"limit": limit} if limit is not None else {}  # else the registry's default
        entries = hub.search(
            registry=registry,
            task=task,
            base=base,
            architecture=architecture,
            name=name,
            tag=tag,
            sort=sort,
            **rows,
        )
    if json_out:
        print_json([{**e.to_dict(), **({"similarity": e.score} if like is not None else {})} for e in entries])
        return
    if not entries:
        filters = {"base": base, "task": task, "arch": architecture, "name": name, "tag": tag}
        given = ", ".join(f"{key} {value}" for key, value in filters.items() if value is not None)
        console.print(
            f"no adapter matches {given}; ahl search without them lists every adapter"
            if given
            else "the registry lists no adapters (yanked versions are not shown); ahl push ARTIFACT_DIR adds one",
            highlight=False,
        )
        return
    table = Table(title=f"{len(entries)} adapter(s)" + (f" most similar to {like}" if like is not None else ""))
    # a server may hold one key in several namespaces: the repository tells the rows apart
    repos = any(e.manifest.get("repo") for e in entries)
    columns = ("similarity",) * (like is not None) + ("task/name", "version", "base", "arch", "head", "dev metrics")
    for column in columns + ("repository",) * repos:
        table.add_column(column, overflow="fold")  # a narrow terminal folds a ref, never cuts it
    for e in entries:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in e.summary.get("metrics", {}).items() if v is not None)
        score = (f"{e.score:.3f}",) if like is not None else ()
        table.add_row(
            *score,
            f"{e.ref.task}/{e.ref.name}",
            e.ref.version,
            e.ref.base,
            e.summary.get("architecture"),
            e.summary.get("head"),
            metrics,
            *(str(e.manifest.get("repo") or ""),) * repos,
        )
    console.print(table)


@user_errors
def verify(
    target: str = typer.Argument(..., help="Artifact directory or registry ref."),
    base: BaseRefOption = None,
    registry: RegistryOption = None,
    json_out: bool = typer.Option(False, "--json", help="Print what was verified as JSON."),
) -> None:
    """Check every file of an artifact or registry version against its sha256."""
    with activity(f"verifying {escape(target)}"):
        result = hub.verify(target, base=base, registry=registry)
    if json_out:
        print_json(
            {
                "verified": True,
                **(
                    result.to_dict()
                    if isinstance(result, Entry)
                    else {"path": str(result.path), "digest": result.digest, "files": sorted(result.metadata["files"])}
                ),
            }
        )
        return
    what = result.ref if isinstance(result, Entry) else result.path
    console.print(f"[green]verified[/] {escape(str(what))}", highlight=False)


@user_errors
def yank(
    ref: str = typer.Argument(..., help="An exact version: TASK/NAME@VERSION."),
    base: BaseRefOption = None,
    registry: RegistryOption = None,
    json_out: bool = typer.Option(False, "--json", help="Print the yanked version as JSON."),
) -> None:
    """Hide a version from search and @latest; it stays pullable by its exact version."""
    entry = hub.yank(ref, base=base, registry=registry)
    if json_out:
        print_json(entry.to_dict())
    else:
        console.print(f"yanked {entry.ref}", highlight=False)


@user_errors
def login(
    registry: str = typer.Option(..., envvar=REGISTRY_ENV, help="Remote registry URL, e.g. http://127.0.0.1:8765."),
    token: Optional[str] = typer.Option(
        None, help="The token (default: prompt without echo, or read the first line of a pipe)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the registry, user and token file as JSON."),
) -> None:
    """Store a token for a remote registry (checked with the server first); sent to it alone."""
    user = hub.login(registry, token or _read_token())
    if json_out:
        print_json({"registry": registry, "user": user, "tokens_file": str(tokens_path())})
        return
    console.print(
        f"logged in to {escape(registry)} as [bold]{escape(user)}[/] (token stored in {escape(str(tokens_path()))})",
        highlight=False,
    )


def _read_token() -> str:
    """The token typed without echo, or the first line of a pipe (``echo $TOKEN | ahl login``):
    Python's hidden prompt warns on a pipe that it cannot hide what it reads."""
    if sys.stdin.isatty():
        return str(typer.prompt("token", hide_input=True, err=True))
    token = sys.stdin.readline().strip()
    if not token:
        raise ConfigError("no token on standard input; pipe one in, or pass --token")
    return token


@user_errors
def logout(
    registry: str = typer.Option(..., envvar=REGISTRY_ENV, help="Remote registry URL."),
    json_out: bool = typer.Option(False, "--json", help="Print the registry as JSON."),
) -> None:
    """Forget the stored token of a remote registry."""
    forgotten = hub.logout(registry)
    if json_out:
        print_json({"registry": registry, "logged_out": forgotten})
    elif forgotten:
        console.print(f"logged out of {escape(registry)}", highlight=False)
    else:
        console.print(f"not logged in to {escape(registry)}: no token was stored for it", highlight=False)


cache_app = typer.Typer(help="The download cache of remote pulls: list and prune.", no_args_is_help=True)


@cache_app.command("ls")
@user_errors
def cache_ls(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the remote versions the cache holds, the whole-artifact copies that commands run from
    (predict, eval ... on a ref), and the size of each."""
    cache = DownloadCache()
    versions = cache.cached_versions()
    blob_bytes = sum(p.stat().st_size for p in cache.blobs())
    copies: list[dict[str, Any]] = [
        {"digest": c.digest, "path": str(c.path), "size": c.size} for c in cache.artifact_copies()
    ]
    copy_bytes = sum(c["size"] for c in copies)
    rows = [
        {
            "registry": v.path.relative_to(cache.root / "remotes").parts[0],
            "ref": f"{v.record['base']}/{v.record['task']}/{v.record['name']}@{v.record['version']}",
            "repo": v.record["repo"],
            "size": v.size,
            "digest": v.record["digest"],
        }
        for v in versions
    ]
    if json_out:
        print_json(
            {
                "root": str(cache.root),
                "blob_bytes": blob_bytes,
                "versions": rows,
                "artifact_bytes": copy_bytes,
                "artifacts": copies,
            }
        )
        return
    table = Table(title=f"{len(rows)} cached version(s), {blob_bytes / 1e6:.1f} MB in {cache.root}")
    for column in ("registry", "ref", "repo", "size"):
        table.add_column(column)
    for row in rows:
        table.add_row(escape(row["registry"]), escape(row["ref"]), escape(row["repo"]), f"{row['size']:,} B")
    console.print(table)
    if copies:
        by_digest = {row["digest"]: row["ref"] for row in rows}
        table = Table(title=f"{len(copies)} artifact copy(ies) that commands run from, {copy_bytes / 1e6:.1f} MB")
        for column in ("ref", "digest", "size"):
            table.add_column(column)
        for copy in copies:
            ref = by_digest.get(copy["digest"], "(no cached version: cache prune removes it)")
            table.add_row(escape(ref), copy["digest"][:19] + "...", f"{copy['size']:,} B")
        console.print(table)


@cache_app.command("prune")
@user_errors
def cache_prune(
    everything: bool = typer.Option(False, "--all", help="Empty the whole cache, not only unused files."),
    json_out: bool = typer.Option(False, "--json", help="Print the files removed and bytes freed as JSON."),
) -> None:
    """Remove partial downloads and files no cached version uses, including artifact copies
    (--all: everything)."""
    removed, freed = DownloadCache().prune(everything=everything)
    if json_out:
        print_json({"removed_files": removed, "freed_bytes": freed})
    else:
        console.print(f"removed {removed} file(s), {freed / 1e6:.1f} MB", highlight=False)
