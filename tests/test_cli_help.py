"""Every command's --help renders (in-process): exit 0, its usage line, no markup debris."""

from __future__ import annotations

import pytest
import typer
from adapterhub_lite.cli.main import app
from typer.testing import CliRunner


def _command_paths(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    # a group has subcommands (typer 0.29 vendors click: no isinstance check against click's classes)
    for name, sub in getattr(command, "commands", {}).items():
        paths += _command_paths(sub, (*path, name))
    return paths


PATHS = _command_paths(typer.main.get_command(app))


def test_every_command_is_walked():
    names = {" ".join(p) for p in PATHS}
    assert {"", "push", "pull", "search", "train", "fuse", "cache", "cache prune", "cache ls", "export"} <= names
    assert len(PATHS) >= 22


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "ahl")
def test_help_renders(path):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith(f"Usage: ahl {' '.join(path)}".rstrip() + " ")
    assert "Traceback" not in out and "MarkupError" not in out
    assert "<bool>" not in out and "``" not in out
    assert "--help" in out


def test_registry_help_keeps_its_brackets():
    """The shared registry help holds [:PORT][/NAMESPACE]: shown as written, not read as markup."""
    out = CliRunner().invoke(app, ["push", "--help"], terminal_width=200).output
    assert "http(s)://HOST[:PORT][/NAMESPACE]" in out
