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


def test_train_and_fuse_share_training_options_with_config_defaults():
    """The shared options (cli/options.py) show TrainConfig's defaults in both commands."""
    from adapterhub_lite.config import TrainConfig

    defaults = TrainConfig()
    for command in ("train", "fuse"):
        out = CliRunner().invoke(app, [command, "--help"], terminal_width=200).output
        for flag, value in (
            ("--grad-accum", defaults.grad_accum),
            ("--warmup-ratio", defaults.warmup_ratio),
            ("--weight-decay", defaults.weight_decay),
            ("--batch-size", defaults.batch_size),
        ):
            line = next(line for line in out.splitlines() if line.strip().startswith(flag))
            assert f"[default: {value}]" in line, (command, line)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--grad-accum=3", "--batch-size 32 must be a multiple of --grad-accum 3"),
        ("--warmup-ratio=1.5", "warmup ratio must be in [0, 1)"),
    ],
)
def test_fuse_takes_the_training_options_of_train(tmp_path, option, message):
    """fuse passes grad accum and warmup on to its TrainConfig: a bad value is refused in one line
    before any adapter is fetched."""
    data = tmp_path / "train.csv"
    data.write_text("text,label\nhello,a\nbye,b\n")
    result = CliRunner().invoke(app, ["fuse", "--adapters", "x/y", "--task", "t", "--train", str(data), option])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
