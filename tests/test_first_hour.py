"""A newcomer's first hour (issue 12): output through real pipes, --json, --version, offline use
of a stopped ahl serve, model cards, file modes as a non-root user, interruption, messages."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from adapterhub_lite.cli.main import app
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from adapterhub_lite import hub
from adapterhub_lite.adapters_format import export_adapter, import_adapter
from adapterhub_lite.artifact import read_artifact

from .conftest import AhlServer, make_artifact, write_csv

AHL = [sys.executable, "-m", "adapterhub_lite"]
PROGRESS_MARKS = ("\r", "\x1b[", "━", "downloading", "Retrying")


def run(*args: object, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """``ahl ARGS`` as a real subprocess, stdout and stderr each a pipe (never a terminal)."""
    return subprocess.run(
        [*AHL, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


def one_line_error(proc: object, *needles: str) -> str:
    """The one ``error:`` line a failed command printed on stderr, checked for ``needles``."""
    assert getattr(proc, "returncode", getattr(proc, "exit_code", 0)) != 0
    err = proc.stderr  # type: ignore[attr-defined]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def invoke(*args: object, input: str | None = None):
    """The CLI in-process (no subprocess needed where no pipe or signal is being tested)."""
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


# -- --version --------------------------------------------------------------------------------------


def test_version_text_and_json():
    from importlib.metadata import version

    result = invoke("--version")
    assert result.exit_code == 0
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["adapterhub-lite"] == version("adapterhub-lite")
    assert lines["torch"] == version("torch") and lines["transformers"] == version("transformers")
    assert lines["huggingface-hub"] == version("huggingface-hub")
    as_json = json.loads(invoke("--version", "--json").stdout)
    assert as_json == {**lines}


def test_json_before_a_command_is_refused_not_ignored(tmp_path):
    """'ahl --json search' printed the table: a script reading JSON got something else."""
    result = invoke("--json", "search", "--registry", tmp_path)
    assert result.exit_code == 2 and result.stdout == ""
    one_line_error(result, "--json: before a command it works only with --version; put it after the command")


# -- pipes, --json, offline ------------------------------------------------------------------------


HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_base_model):
    """An ahl serve with three pushed entries (one with a name long enough to wrap at 80 columns)
    keyed by the default base's Hub id; the client's download cache under its own HOME."""
    import dataclasses

    hub_base = dataclasses.replace(tiny_base_model, model_id=HUB_ID)
    root = tmp_path_factory.mktemp("served")
    server = AhlServer(root / "registry").start()
    env = {
        "HOME": str(root / "home"),
        "XDG_CACHE_HOME": str(root / "home" / ".cache"),
        "AHL_TOKEN": server.token,
        "COLUMNS": "80",
    }
    long_name = "a-rather-long-adapter-name-that-wraps-at-eighty-columns"
    try:
        for name, seed in (("sst2", 0), (long_name, 1), ("uncached", 2)):
            art = make_artifact(root / name, hub_base, task="sst2", name=name, seed=seed)
            proc = run("push", art, "--registry", server.url, "--version", "1.0.0", "--json", env=env)
            assert proc.returncode == 0, proc.stderr
        yield server, env, root, long_name
    finally:
        server.stop()


def test_search_json_through_a_pipe(served):
    """``ahl search --json | python -m json.tool``: two real processes joined by a pipe."""
    server, env, _, long_name = served
    search = subprocess.Popen(
        [*AHL, "search", "--json", "--registry", server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    tool = subprocess.run(
        [sys.executable, "-m", "json.tool"], stdin=search.stdout, capture_output=True, text=True, timeout=120
    )
    search.stdout.close()
    assert search.wait(timeout=120) == 0, search.stderr.read()
    assert tool.returncode == 0, tool.stderr
    rows = json.loads(tool.stdout)
    assert {r["name"] for r in rows} == {"sst2", long_name, "uncached"}


def test_search_table_piped_is_never_cut(served):
    server, env, _, long_name = served
    proc = run("search", "--registry", server.url, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"sst2/{long_name}" in proc.stdout  # whole, on one line, though wider than COLUMNS=80
    assert "…" not in proc.stdout


def test_pull_json_and_text_through_pipes(served, tmp_path):
    server, env, root, long_name = served
    deep = tmp_path / ("d" * 60) / "pulled"
    proc = run("pull", f"sst2/{long_name}@1.0.0", "--registry", server.url, "--to", deep, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)  # the whole of stdout is the JSON document: no progress, no stray newline
    assert row["path"] == str(deep) and row["version"] == "1.0.0" and row["name"] == long_name
    assert not any(mark in proc.stdout for mark in PROGRESS_MARKS)
    assert proc.stderr == ""  # a download bar off a terminal left an empty line there
    proc = run("pull", "sst2/sst2@1.0.0", "--registry", server.url, "--to", deep.parent / "text", env=env)
    assert proc.returncode == 0, proc.stderr
    # one line, the path in it whole (no wrapping at 80 columns), nothing else on stdout
    assert proc.stdout == f"pulled {HUB_ID}/sst2/sst2@1.0.0 into {deep.parent / 'text'}\n"
    quiet = run("--quiet", "verify", "sst2/sst2@1.0.0", "--registry", server.url, "--json", env=env)
    assert quiet.returncode == 0 and quiet.stderr == "" and json.loads(quiet.stdout)["verified"] is True


def test_offline_answers_from_the_cache(served, tmp_path):
    """With the server stopped, a ref the download cache holds is answered from it with one line
    saying so; an uncached ref fails in one line; search says it is offline."""
    server, env, root, long_name = served
    for ref in ("sst2/sst2@1.0.0", f"sst2/{long_name}@1.0.0"):  # fill the cache
        assert (
            run(
                "pull", ref, "--registry", server.url, "--to", tmp_path / "warm" / ref.split("/")[1][:20], env=env
            ).returncode
            == 0
        )
    server.stop()
    try:
        proc = run("pull", "sst2/sst2", "--registry", server.url, "--to", tmp_path / "latest", "--json", env=env)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["version"] == "1.0.0"
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "unreachable; using cached" in lines[0] and "sst2/sst2@1.0.0" in lines[0], lines
        exact = run("pull", "sst2/sst2@1.0.0", "--registry", server.url, "--to", tmp_path / "exact", env=env)
        assert exact.returncode == 0 and exact.stderr == "", exact.stderr  # exact versions need no network

        missing = run("pull", "sst2/uncached", "--registry", server.url, "--to", tmp_path / "no", env=env)
        one_line_error(missing, "cannot reach", "not in the download cache")
        assert not (tmp_path / "no").exists()

        down = run("search", "--registry", server.url, env=env)
        one_line_error(down, "cannot reach", server.url)
        offline = run("search", "--registry", server.url, env={**env, "HF_HUB_OFFLINE": "1"})
        one_line_error(offline, "offline", "ahl cache ls")
        assert "check that the server runs" not in offline.stderr
    finally:
        server.start()


# -- model cards ------------------------------------------------------------------------------------


def _card(path: Path) -> ModelCard:
    """Load a README.md as the Hub client does and check what it parsed (ModelCard.load raises on a
    malformed header or model-index)."""
    card = ModelCard.load(path / "README.md")
    data = card.data.to_dict()
    assert card.text.strip() and data["tags"]
    return card


def test_every_card_loads_and_says_what_it_should(tmp_path, tiny_base_model, tiny_base_dir, spam_files):
    import dataclasses

    from adapterhub_lite import api
    from adapterhub_lite.config import TrainConfig

    hub_id = HUB_ID
    hub_base = dataclasses.replace(tiny_base_model, model_id=hub_id)
    # trained, on a Hub id, with a license
    fast = TrainConfig(epochs=1, batch_size=16)
    trained = api.train(
        spam_files[0],
        dev_data=spam_files[1],
        task="sms_spam",
        base=hub_base,
        config=fast,
        out=tmp_path / "trained",
        license="apache-2.0",
    ).artifact
    card = _card(trained.path)
    assert card.data.library_name == "adapterhub-lite" and card.data.license == "apache-2.0"
    assert trained.metadata["license"] == "apache-2.0"
    assert card.data.base_model == hub_id and card.data.base_model_relation == "adapter"
    assert f"base_model:adapter:{hub_id}" in card.data.tags and "task:sms_spam" in card.data.tags
    assert card.data.datasets is None  # a CSV file is no Hub dataset id; the task is a tag
    assert {r.metric_type for r in card.data.eval_results} == {"accuracy", "macro_f1"}
    assert "ahl predict . -i texts.txt" in card.text

    # on a local directory: no base_model, the path stays in the metadata
    local = make_artifact(tmp_path / "local", tiny_base_model, task="a", name="a")
    card = _card(local)
    assert card.data.base_model is None and card.data.license is None
    assert read_artifact(local).metadata["base"]["model_id"] == str(Path(tiny_base_dir).resolve())

    # exported to the adapters format: AdapterHub's header and usage
    exported = export_adapter(trained.path, tmp_path / "exported")
    card = _card(exported)
    assert card.data.library_name == "adapter-transformers" and "adapter-transformers" in card.data.tags
    assert "from adapters import AutoAdapterModel" in card.text and "load_adapter" in card.text

    # imported from it: no metrics (no empty model-index), converted, license given on import
    imported = import_adapter(exported, to=tmp_path / "imported", base=hub_base, license="mit")
    card = _card(imported.path)
    assert card.data.eval_results is None and "model-index" not in (imported.path / "README.md").read_text()
    assert card.data.license == "mit" and "converted from AdapterHub" in card.text

    # a fusion over two adapters
    other = make_artifact(tmp_path / "b", hub_base, task="b", name="b", seed=1)
    fusion = api.fuse(
        [trained.path, other],
        spam_files[0],
        dev_data=spam_files[1],
        task="sms_spam",
        config=fast,
        base=hub_base,
        out=tmp_path / "fusion",
        license="cc-by-4.0",
    ).artifact
    card = _card(fusion.path)
    assert "adapter:fusion" in card.data.tags and card.data.eval_results and card.data.license == "cc-by-4.0"

    from jsonschema import Draft202012Validator  # the license is part of the specified metadata

    schemas = Path(__file__).parents[1] / "registry" / "schema"
    for artifact, kind in ((trained, "adapter"), (fusion, "fusion")):
        validator = Draft202012Validator(json.loads((schemas / f"{kind}.schema.json").read_text()))
        assert list(validator.iter_errors(artifact.metadata)) == []
        assert list(validator.iter_errors({**artifact.metadata, "license": "Apache 2.0"}))


def test_card_usage_snippet_runs_as_written(tmp_path, tiny_base_model, monkeypatch):
    """The card says: printf two lines into texts.txt, then ahl predict . -i texts.txt."""
    artifact = make_artifact(tmp_path / "a", tiny_base_model)
    text = (artifact / "README.md").read_text()
    snippet = text.split("```bash\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(artifact)
    proc = subprocess.run(
        ["bash", "-c", snippet.replace("ahl ", f"{sys.executable} -m adapterhub_lite ")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["first text", "second text"]
    assert all(r["label"] in ("negative", "positive") for r in rows)


def test_bad_license_is_refused_before_training(tmp_path, spam_files):
    result = invoke(
        "train", "--train", spam_files[0], "--task", "t", "--out", tmp_path / "o", "--license", "Apache 2.0"
    )
    assert result.exit_code == 2 and "not a license id" in result.stderr and not (tmp_path / "o").exists()


# -- a non-root user ---------------------------------------------------------------------------------

NOBODY = 65534


@pytest.mark.slow
def test_train_fuse_predict_as_a_non_root_user(tiny_base_dir, spam_files):
    """As a non-root user (uid 65534 through setpriv when the tests run as root, else the user the
    tests run as): everything the CLI writes is usable by its owner and readable by others."""
    user = NOBODY if os.geteuid() == 0 else os.geteuid()
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if os.geteuid() == 0 else []
    work = Path(tempfile.mkdtemp(prefix="ahl-nobody-", dir="/tmp"))  # pytest's tmp dirs are root-only
    try:
        work.chmod(0o755)
        shutil.copytree(tiny_base_dir, work / "base")
        shutil.copy(spam_files[0], work / "train.csv")
        shutil.copy(spam_files[1], work / "dev.csv")
        for path in [work, *work.rglob("*")] if drop else []:
            os.chown(path, NOBODY, NOBODY)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(work / "home"),
            "TMPDIR": str(work),
            "AHL_REGISTRY": str(work / "registry"),
            "HF_HOME": str(work / "hf"),
            "COLUMNS": "200",
        }

        def as_nobody(*args: object) -> subprocess.CompletedProcess:
            command = [*drop, *AHL, *map(str, args)]
            proc = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=600,
                env=env,
                cwd=work,
                input="free prize, claim now\nlunch at noon?\n",
            )
            assert proc.returncode == 0, proc.stderr
            return proc

        common = ("--base", work / "base", "--train", work / "train.csv", "--dev", work / "dev.csv", "--epochs", "1")
        as_nobody("train", *common, "--task", "a", "--out", work / "a")
        as_nobody("train", *common, "--task", "b", "--out", work / "b", "--seed", "1")
        as_nobody(
            "fuse",
            "--adapters",
            f"{work / 'a'},{work / 'b'}",
            "--task",
            "spam",
            "--train",
            work / "train.csv",
            "--dev",
            work / "dev.csv",
            "--epochs",
            "1",
            "--out",
            work / "fusion",
        )
        rows = [json.loads(line) for line in as_nobody("predict", work / "fusion").stdout.splitlines()]
        assert len(rows) == 2
        written = [work / "a", work / "b", work / "fusion"]
        for path in [p for top in written for p in [top, *top.rglob("*")]]:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert path.stat().st_uid == user, path
            assert mode == (0o755 if path.is_dir() else 0o644), f"{path}: {oct(mode)}"
        assert sorted(p.name for p in (work / "fusion" / "adapters").iterdir()) == ["a", "b"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- interruption ------------------------------------------------------------------------------------


def _as_from_a_shell() -> None:
    """Start the child as a terminal's shell would: default SIGINT/SIGTERM, nothing blocked. An
    ignored signal is inherited across exec, and a process that starts with SIGINT ignored never
    gets Python's KeyboardInterrupt: whatever in this pytest process ignores it (it happened in
    the full suite) must not decide the test."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_training_says_so_and_leaves_nothing(tmp_path, tiny_base_dir, spam_files, signum):
    runs = tmp_path / "runs"
    runs.mkdir()
    log = runs / ".spam.metrics.jsonl"
    proc = subprocess.Popen(
        [
            *AHL,
            "train",
            "--base",
            str(tiny_base_dir),
            "--train",
            str(spam_files[0]),
            "--dev",
            str(spam_files[1]),
            "--task",
            "spam",
            "--out",
            str(runs / "spam"),
            "--epochs",
            "100000",
            "--patience",
            "100000",  # far more than can finish while this test polls, however loaded the machine
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_from_a_shell,
    )
    try:
        deadline = time.monotonic() + 240
        while not log.exists():  # training has begun: its per-epoch log exists beside the output
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == (130 if signum == signal.SIGINT else 143), err
    assert "interrupted" in err and "Traceback" not in err
    assert list(runs.iterdir()) == []  # no artifact, no staging directory, no hidden metrics log


# -- messages ----------------------------------------------------------------------------------------


def test_info_of_a_missing_directory(tmp_path):
    one_line_error(invoke("info", "/nonexistent"), "no such directory: /nonexistent")
    one_line_error(invoke("predict", "spam-adaptr", input="hi\n"), "no such directory: spam-adaptr")
    assert "parts" not in invoke("info", tmp_path / "typo").stderr


def test_a_directory_given_where_a_ref_is_needed_is_named_as_one(tmp_path, tiny_base_model, monkeypatch):
    """'ahl pull a1' with ./a1 an artifact said "no such directory: a1"."""
    monkeypatch.chdir(tmp_path)
    make_artifact(tmp_path / "a1", tiny_base_model)
    (tmp_path / "plain").mkdir()
    one_line_error(invoke("pull", "a1"), "a1 is an artifact directory; this command takes a registry ref")
    one_line_error(invoke("yank", "a1"), "a1 is an artifact directory")
    one_line_error(invoke("pull", "plain"), "plain is a directory but no artifact: it holds no adapter.json")
    one_line_error(invoke("push", "nope"), "nope does not exist; an artifact is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a1", "plain"]


def test_predict_input_file_messages_and_text_files(tmp_path, tiny_base_model):
    artifact = make_artifact(tmp_path / "a", tiny_base_model)
    result = invoke("predict", artifact, "-i", tmp_path / "texts.txt")
    line = one_line_error(result, "input file", "does not exist", "one text per line")
    assert "predict(" not in line
    (tmp_path / "texts.txt").write_text("a film I loved\n\nnot my thing\n")
    result = invoke("predict", artifact, "-i", tmp_path / "texts.txt", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "line,text,label,p_negative,p_positive"
    places = [r.split(",")[:2] for r in result.stdout.splitlines()[1:]]
    assert places == [["1", "a film I loved"], ["3", "not my thing"]]  # the blank line 2 is skipped
    (tmp_path / "empty.txt").write_text("\n\n")
    one_line_error(invoke("predict", artifact, "-i", tmp_path / "empty.txt"), "no text lines")


def test_logout_without_a_login_writes_nothing(tmp_path, monkeypatch):
    """Forgetting a token that was never stored makes no tokens file (nor its directory), and says
    so; one stored for another registry stays exactly as it was."""
    from adapterhub_lite.registry.client.tokens import store_token, tokens_path

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    result = invoke("logout", "--registry", "http://127.0.0.1:9")
    assert result.exit_code == 0 and "not logged in to http://127.0.0.1:9" in result.stdout
    assert not (tmp_path / "config").exists()
    assert json.loads(invoke("logout", "--registry", "http://127.0.0.1:9", "--json").stdout)["logged_out"] is False
    assert store_token("http://127.0.0.1:8", "t0ken")
    before = tokens_path().read_bytes(), tokens_path().stat().st_mtime_ns
    assert invoke("logout", "--registry", "http://127.0.0.1:9").exit_code == 0
    assert (tokens_path().read_bytes(), tokens_path().stat().st_mtime_ns) == before
    result = invoke("logout", "--registry", "http://127.0.0.1:8")
    assert result.exit_code == 0 and "logged out of http://127.0.0.1:8" in result.stdout
    assert json.loads(tokens_path().read_text()) == {}


def test_empty_label_names_its_row(tmp_path):
    data = write_csv(
        tmp_path / "d.csv", [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}, {"text": "c", "label": ""}]
    )
    one_line_error(invoke("train", "--train", data, "--task", "t", "--out", tmp_path / "o"), f"{data}:4", "'label'")
    assert not (tmp_path / "o").exists()


def test_prune_flags_are_named_and_keep_1_refused_first(tmp_path):
    fusion = tmp_path / "not-even-a-fusion"
    fusion.mkdir()
    one_line_error(invoke("prune", fusion, "--data", tmp_path / "d.csv"), "--threshold", "--keep")
    # refused before anything is read or loaded: the directory is not even an artifact
    one_line_error(invoke("prune", fusion, "--data", tmp_path / "d.csv", "--keep", "1"), "--keep 1", "two")


def test_mistyped_base(tmp_path, spam_files):
    one_line_error(
        invoke(
            "train",
            "--train",
            spam_files[0],
            "--task",
            "t",
            "--base",
            tmp_path / "no-such-model",
            "--out",
            tmp_path / "o",
        ),
        "no such directory",
    )
    # a Hub id that is not cached, with the Hub unreachable: one line, no retries (a closed local port)
    proc = run(
        "train",
        "--train",
        spam_files[0],
        "--task",
        "t",
        "--base",
        "sentence-transformers/no-such-model",
        "--out",
        tmp_path / "o",
        env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")},
    )
    one_line_error(proc, "no-such-model", "cannot be reached")
    assert not (tmp_path / "o").exists()


def test_pull_with_a_local_base_directory_finds_the_entry_by_its_weights(tmp_path, tiny_base_model, tiny_base_dir):
    """--base DIR holding the weights an entry was pushed for (under a Hub id) finds it."""
    import dataclasses

    root = tmp_path / "registry"
    hub_base = dataclasses.replace(tiny_base_model, model_id=HUB_ID)
    hub.push(make_artifact(tmp_path / "a", hub_base, task="trec", name="trec"), registry=root, version="1.0.0")
    result = invoke("pull", "trec/trec", "--base", tiny_base_dir, "--registry", root, "--to", tmp_path / "p", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["ref"] == f"{HUB_ID}/trec/trec@1.0.0"
    missing = invoke("pull", "trec/other", "--base", tiny_base_dir, "--registry", root, "--to", tmp_path / "q")
    line = one_line_error(missing, "trec/other")
    assert "local/" not in line


def test_json_on_every_result(tmp_path, tiny_base_model, monkeypatch):
    monkeypatch.setenv("AHL_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "registry"
    art = make_artifact(tmp_path / "a", tiny_base_model)
    pushed = json.loads(invoke("push", art, "--registry", root, "--json").stdout)
    ref = f"{pushed['task']}/{pushed['name']}@{pushed['version']}"
    base = ("--base", pushed["base"])
    assert json.loads(invoke("verify", ref, *base, "--registry", root, "--json").stdout)["verified"] is True
    assert json.loads(invoke("verify", art, "--json").stdout)["path"] == str(art)
    assert json.loads(invoke("yank", ref, *base, "--registry", root, "--json").stdout)["yanked"] is True
    exported = json.loads(invoke("export", art, tmp_path / "x", "--format", "adapters", "--json").stdout)
    assert "README.md" in exported["files"] and "adapter_config.json" in exported["files"]
    pruned = invoke("cache", "prune", "--json")
    assert pruned.exit_code == 0 and set(json.loads(pruned.stdout)) == {"removed_files", "freed_bytes"}


def test_quiet_and_disabled_progress_bars(tmp_path, tiny_base_dir, spam_files, monkeypatch):
    """--quiet: nothing on stderr; HF_HUB_DISABLE_PROGRESS_BARS: status lines, no bar."""
    # the server and catalog test modules switch bars off for the whole session when collected
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    common = (
        "train",
        "--base",
        tiny_base_dir,
        "--train",
        spam_files[0],
        "--dev",
        spam_files[1],
        "--task",
        "t",
        "--epochs",
        "1",
    )
    quiet = invoke("--quiet", *common, "--out", tmp_path / "q")
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr
    assert f"saved {tmp_path / 'q'}" in quiet.stdout
    after = invoke(*common, "--out", tmp_path / "q2", "-q")  # where people type it: after the command
    assert after.exit_code == 0 and after.stderr == "", after.stderr
    loud = invoke(*common, "--out", tmp_path / "loud")
    assert loud.exit_code == 0 and "trainable parameters" in loud.stderr and "train t" in loud.stderr  # the bar
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    plain = invoke(*common, "--out", tmp_path / "plain")
    assert plain.exit_code == 0 and "trainable parameters" in plain.stderr and "train t" not in plain.stderr
