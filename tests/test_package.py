"""The package's public names, and what importing one part of the package pulls in."""

from __future__ import annotations

import subprocess
import sys

import adapterhub_lite

from .conftest import make_artifact


def test_every_public_name_resolves():
    missing = [name for name in adapterhub_lite.__all__ if getattr(adapterhub_lite, name, None) is None]
    assert not missing


def _loaded(statement: str, prefixes: tuple[str, ...]) -> str:
    """The modules starting with one of ``prefixes`` that ``statement`` loads in a fresh process."""
    code = f"import sys\n{statement}\nprint(sorted(m for m in sys.modules if m.startswith({prefixes!r})))\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_model_and_base_import_without_registry_training_or_api():
    heavy = ("adapterhub_lite.registry", "adapterhub_lite.training", "adapterhub_lite.api", "sqlite3")
    assert _loaded("from adapterhub_lite import AdapterModel, load_base", heavy) == "[]"


def test_cli_server_and_registry_verbs_import_without_torch():
    """``ahl --help``, ``ahl serve`` (its app and storage) and the registry verbs (hub.py) start
    without torch or transformers: importing torch alone costs seconds of CPU per process."""
    statement = "import adapterhub_lite.cli.main, adapterhub_lite.registry.server.app, adapterhub_lite.hub"
    assert _loaded(statement, ("torch", "transformers", "safetensors")) == "[]"


def test_data_verbs_read_their_data_before_importing_torch(tmp_path, tiny_base_model):
    """A wrong data path or column fails at once: ``train``, ``fuse``, ``rank``, ``eval`` and
    ``predict`` read the data (and an artifact's recorded columns) before torch is imported
    (seconds of CPU a newcomer would wait for the one-line error)."""
    data = tmp_path / "train.csv"
    data.write_text("sentence,label\nfine,pos\n", encoding="utf-8")
    missing = str(tmp_path / "missing.csv")
    artifact = str(make_artifact(tmp_path / "artifact", tiny_base_model))
    for args, message in [
        (["train", "--train", missing, "--task", "t"], "does not exist"),
        (["fuse", "--train", missing, "--task", "t", "--adapters", "a,b"], "does not exist"),
        (["fuse", "--train", str(data), "--task", "t", "--auto", "2"], "no column 'text'"),
        (["rank", "--train", missing], "does not exist"),
        (["eval", artifact, "--data", str(data)], "no column 'text'"),
        (["predict", artifact, "--input", missing], "does not exist"),
        (["predict", artifact, "--input", str(data)], "no column 'text'"),
    ]:
        statement = (
            "from typer.testing import CliRunner\n"
            "from adapterhub_lite.cli.main import app\n"
            f"result = CliRunner().invoke(app, {args!r})\n"
            f"assert result.exit_code == 2 and {message!r} in result.output, result.output"
        )
        assert _loaded(statement, ("torch", "transformers")) == "[]", args


def test_local_and_remote_registries_implement_the_registry_protocol(tmp_path, monkeypatch):
    """hub.py talks to the Registry protocol; both kinds of registry implement all of it."""
    monkeypatch.setenv("AHL_CACHE", str(tmp_path / "cache"))
    from adapterhub_lite import LocalRegistry, Registry, RemoteRegistry, hub

    local, remote = LocalRegistry(tmp_path / "registry"), RemoteRegistry("http://127.0.0.1:9")
    assert isinstance(local, Registry) and isinstance(remote, Registry)
    assert hub.open_registry(local) is local and hub.open_registry(remote) is remote
    assert not isinstance(str(tmp_path), Registry)
