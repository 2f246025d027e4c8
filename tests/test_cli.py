"""The ``ahl`` command line: train and predict as a real subprocess (pipes, exit codes, no
traceback), info, eval and every bad-input case in-process with Typer's CliRunner (same code,
same output, one-line error and exit code, without starting an interpreter and importing torch
for each case)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adapterhub_lite import hub
from adapterhub_lite.artifact import fusion_adapters, read_artifact
from adapterhub_lite.errors import ConfigError

from .conftest import make_artifact, write_csv

AHL = [sys.executable, "-m", "adapterhub_lite"]


def ahl(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [*AHL, *map(str, args)], input=stdin, capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def ahl_in_process(
    *args: object, stdin: str | None = None, env: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess:
    """``ahl ARGS`` run in this process (Typer's CliRunner), as a CompletedProcess; ``env`` is set
    (``None`` unsets) for the call. An exception that escapes the CLI (a traceback in a real run)
    fails the test instead of becoming exit 1."""
    from adapterhub_lite.cli.main import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [str(a) for a in args], input=stdin, env={"COLUMNS": "200", **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, tiny_base_dir, spam_files):
    out = tmp_path_factory.mktemp("cli") / "spam"
    proc = ahl(
        "train",
        "--base",
        tiny_base_dir,
        "--train",
        spam_files[0],
        "--dev",
        spam_files[1],
        "--task",
        "sms_spam",
        "--out",
        out,
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_train_prints_trainable_share_and_saves(artifact):
    out, proc = artifact
    assert "trainable parameters: " in proc.stderr and "% of " in proc.stderr
    assert (out / "adapter.json").is_file()
    assert "accuracy" in proc.stdout


def test_predict_from_stdin_as_jsonl(artifact):
    proc = ahl("predict", artifact[0], stdin="WINNER! claim your free prize now\n\nsee you at lunch?\n")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["WINNER! claim your free prize now", "see you at lunch?"]
    assert [r["line"] for r in rows] == [1, 3]  # blank lines are skipped: each record says its line
    for row in rows:
        assert row["label"] in ("ham", "spam")
        assert set(row["probabilities"]) == {"ham", "spam"}
        assert sum(row["probabilities"].values()) == pytest.approx(1.0)


def test_predict_file_to_csv(artifact, spam_files, tmp_path):
    target = tmp_path / "pred.csv"
    proc = ahl("predict", artifact[0], "--input", spam_files[1], "--format", "csv", "--output", target)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(target.open(newline="", encoding="utf-8")))
    assert rows[0] == ["row", "text", "label", "p_ham", "p_spam"] and len(rows) == 121
    texts = [r["text"] for r in csv.DictReader(spam_files[1].open(newline="", encoding="utf-8"))]
    assert [r[1] for r in rows[1:]] == texts  # each prediction beside its input text


def test_outputs_that_would_destroy_an_input_are_refused(artifact, spam_files, tmp_path):
    """predict --output, inspect --plot and export refuse to write over what they read, a
    directory, or into a missing directory, before any model runs; the inputs stay as they were."""
    data = tmp_path / "dev.csv"
    data.write_bytes(spam_files[1].read_bytes())
    before = data.read_bytes()
    for args, needle in [
        (["predict", artifact[0], "--input", data, "--output", data], "--output"),
        (["predict", artifact[0], "--input", data, "--output", tmp_path], "is a directory"),
        (["predict", artifact[0], "--input", data, "--output", tmp_path / "no" / "x.jsonl"], "does not exist"),
        (["inspect", artifact[0], "--data", data, "--plot", data], "not 'dev.csv'"),
        (["inspect", artifact[0], "--data", data, "--plot", tmp_path / "dev.svg"], None),
        (["export", artifact[0], artifact[0], "--format", "adapters", "--overwrite"], "is what is being read"),
    ]:
        proc = ahl_in_process(*args)
        if needle is None:  # a fine --plot path: the refusal is the artifact's (not a fusion), not the path's
            assert proc.returncode != 0 and "--plot" not in proc.stderr and not (tmp_path / "dev.svg").exists()
            continue
        assert_one_line_error(proc, needle)
    (svg := tmp_path / "dev.svg").write_text("x")
    assert_one_line_error(ahl_in_process("inspect", artifact[0], "--data", svg, "--plot", svg), "is also the input")
    assert data.read_bytes() == before
    read_artifact(artifact[0])  # still whole: verified


def test_errors_after_a_spinner_start_on_their_first_line(tmp_path):
    """Off a terminal the upload/conversion spinner draws nothing: no empty line comes before
    the error (or after a success)."""
    for args in (["push", tmp_path / "nothing", "--registry", tmp_path / "reg"], ["verify", "sst2/sst2"]):
        proc = ahl_in_process(*args)
        assert proc.returncode != 0 and proc.stderr.startswith("error: "), repr(proc.stderr)


def test_a_push_that_would_be_refused_is_refused_before_any_work(tmp_path, spam_files):
    """fuse --push and import --registry to a remote without a token fail before training or
    converting: nothing is written to --out/--to."""
    env = {"AHL_TOKEN": None, "HF_TOKEN": None, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    url = "http://127.0.0.1:9"
    fuse = ["fuse", "--adapters", "a/a,b/b", "--task", "t", "--train", spam_files[0], "--out", tmp_path / "f"]
    imp = ["import", tmp_path / "exported", "--to", tmp_path / "i"]
    for args in (fuse + ["--push", "--registry", url], imp + ["--registry", url]):
        assert_one_line_error(ahl_in_process(*args, env=env), f"pushing to {url} needs a token")
    assert_one_line_error(ahl_in_process(*imp, "--registry", "ftp://h/x"), "registries are directories")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_info_and_eval(artifact, spam_files):
    proc = ahl_in_process("info", artifact[0])
    assert proc.returncode == 0 and "sms_spam" in proc.stdout and "pfeiffer" in proc.stdout
    meta = json.loads(ahl_in_process("info", artifact[0], "--json").stdout)
    assert meta["name"] == "sms_spam"
    metrics = json.loads(ahl_in_process("eval", artifact[0], "--data", spam_files[1], "--json").stdout)
    assert metrics["accuracy"] == pytest.approx(meta["metrics"]["dev"]["accuracy"])


def _train(tmp_path, tiny_base_dir, train, dev=None, *extra):
    out = tmp_path / "out"
    args = ["train", "--base", tiny_base_dir, "--train", train, "--task", "t", "--out", out, "--epochs", "1", *extra]
    if dev is not None:
        args += ["--dev", dev]
    return ahl_in_process(*args), out


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (("--grad-accum", "0"), "gradient accumulation must be >= 1"),
        (("--weight-decay", "-1"), "weight decay must be >= 0"),
        (("--seed", "-5"), "seed must be in [0, 2**32)"),
        (("--seed", str(2**32)), "seed must be in [0, 2**32)"),
    ],
)
def test_bad_training_option_fails_before_the_data_is_read(tmp_path, option, message):
    """The training file does not exist: the option's error, not the file's, shows that the
    config is checked before any data is read or model loaded."""
    proc = ahl_in_process("train", "--train", tmp_path / "nope.csv", "--task", "t", *option)
    assert_one_line_error(proc, message)


@pytest.mark.parametrize(
    ("device", "messages"),
    [
        ("nope", ("unknown device 'nope'", "choose one of: auto, cpu, cuda, cuda:N, mps")),
        ("cuda:99", ("device 'cuda:99' is not available", "use --device cpu or --device auto")),
    ],
)
def test_bad_device_fails_before_the_model_loads(tmp_path, spam_files, device, messages):
    """The base does not exist: the device's error, not the base's, shows that it comes first.
    cuda:99 is missing on any machine (no CUDA in this torch build, or fewer GPUs)."""
    proc, out = _train(tmp_path, tmp_path / "no-base", spam_files[0], None, "--device", device)
    assert_one_line_error(proc, *messages)
    assert not out.exists()
    data = write_csv(tmp_path / "fuse.csv", [{"text": "hello", "label": "a"}, {"text": "bye", "label": "b"}])
    proc = ahl_in_process("fuse", "--adapters", "x/y,x/z", "--task", "t", "--train", data, "--device", device)
    assert_one_line_error(proc, *messages)  # before the adapters x/y, x/z are looked up


def test_an_unavailable_device_fails_before_the_artifact_is_read(tmp_path):
    from adapterhub_lite import api

    with pytest.raises(ConfigError, match=r"device 'cuda:99' is not available: .*; use --device cpu"):
        api.load(tmp_path / "not-an-artifact", device="cuda:99")  # missing on any machine


@pytest.mark.parametrize(
    "args",
    [
        ("eval", "art", "--data", "d.csv", "--batch-size", "0"),
        ("predict", "art", "--batch-size", "-1"),
        ("inspect", "art", "--data", "d.csv", "--batch-size", "0"),
        ("rank", "--train", "d.csv", "--max-examples", "0"),
        ("rank", "--train", "d.csv", "--folds", "1"),
    ],
)
def test_counts_below_their_minimum_are_usage_errors(args):
    """Typer refuses them (exit 2, naming the option) before the artifact or data is opened."""
    proc = ahl_in_process(*args)
    assert proc.returncode == 2
    assert_one_line_error(proc, f"Invalid value for '{args[-2]}'", f"See 'ahl {args[0]} --help'.")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("train", "--task", "x"), ("Missing option '--train'.", "See 'ahl train --help'.")),
        (("--bogus",), ("No such option: --bogus.", "See 'ahl --help'.")),
        (("trian",), ("No such command 'trian'. Did you mean 'train'", "See 'ahl --help'.")),
        (("cache", "bogus"), ("No such command 'bogus'.", "See 'ahl cache --help'.")),
    ],
)
def test_usage_errors_are_one_line_like_every_other_error(args, needles):
    """click's usage errors are a four-line block (usage, hint, blank, error); ahl's are one line."""
    proc = ahl_in_process(*args)
    assert proc.returncode == 2
    assert_one_line_error(proc, *needles)


def test_no_arguments_still_show_the_help():
    for args in ((), ("cache",)):
        proc = ahl_in_process(*args)
        assert proc.returncode == 2 and f"Usage: ahl {' '.join(args)}".rstrip() in proc.stdout + proc.stderr


def test_api_refuses_counts_below_their_minimum(tmp_path, spam_files):
    from adapterhub_lite import api, ranking
    from adapterhub_lite.analysis import fusion_activations

    missing = tmp_path / "not-an-artifact"  # the check comes first: no artifact is read
    for call in (api.evaluate, api.predict, fusion_activations):
        with pytest.raises(ConfigError, match="batch size must be >= 1"):
            call(missing, spam_files[1], batch_size=0)
    with pytest.raises(ConfigError, match=r"max examples >= folds \(5\)"):
        ranking.rank(spam_files[1], adapters=[missing], max_examples=0)


def test_serve_refuses_a_tokens_file_that_is_not_utf8(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_bytes("abc123 j\xf6rg\n".encode("latin-1"))
    proc = ahl_in_process("serve", "--registry", tmp_path / "registry", "--tokens", tokens)
    assert_one_line_error(proc, f"tokens file {tokens} is not UTF-8", "write it as UTF-8")


def test_a_registry_where_none_can_be_created(tmp_path, tiny_base_model):
    """/proc refuses new directories (even to root): one line naming the place, for a write; a
    read says that there is no registry there."""
    art = make_artifact(tmp_path / "art", tiny_base_model, task="a", name="a")
    proc = ahl_in_process("push", art, "--registry", "/proc/nope")
    assert_one_line_error(proc, "cannot create a registry at /proc/nope: ", "a directory you can write")
    assert_one_line_error(ahl_in_process("search", "--registry", "/proc/nope"), "no registry at /proc/nope")


@pytest.mark.parametrize("damage", ["index not a database", "index a directory"])
def test_a_registry_that_cannot_be_read(tmp_path, tiny_base_model, damage):
    """An existing registry whose index is damaged is one line naming what to fix, for a read and
    a write, never a traceback; nothing is written. (A directory the user may not read is
    test_server_hostile's test_an_unreadable_or_read_only_registry_is_one_line_for_a_read, run
    without root's powers.)"""
    root = tmp_path / "registry"
    hub.push(make_artifact(tmp_path / "art", tiny_base_model, task="a", name="a"), registry=root)
    index = root / "index.sqlite"
    for wal in root.glob("index.sqlite-*"):
        wal.unlink()
    if damage == "index not a database":
        index.write_bytes(b"not a database, by a long way" * 10)
        needles = [f"search index {index}", "not a database", "delete it"]
    else:
        index.unlink()
        index.mkdir()
        needles = [f"search index {index}", "delete it"]
    before = sorted(p.name for p in root.iterdir())
    assert_one_line_error(ahl_in_process("search", "--registry", root), *needles)
    assert_one_line_error(ahl_in_process("pull", "a/a", "--registry", root, "--to", tmp_path / "o"), *needles)
    assert_one_line_error(ahl_in_process("push", tmp_path / "art", "--registry", root), *needles)
    assert not (tmp_path / "o").exists()
    assert sorted(p.name for p in root.iterdir()) == before


def test_missing_data_file(tmp_path, tiny_base_dir):
    proc, out = _train(tmp_path, tiny_base_dir, tmp_path / "nope.csv")
    assert_one_line_error(proc, "does not exist")
    assert not out.exists()


def test_empty_data_file(tmp_path, tiny_base_dir):
    (tmp_path / "empty.csv").write_text("")
    proc, out = _train(tmp_path, tiny_base_dir, tmp_path / "empty.csv")
    assert_one_line_error(proc, "has no rows")
    assert not out.exists()


def test_unknown_column_lists_columns(tmp_path, tiny_base_dir, spam_files):
    proc, out = _train(tmp_path, tiny_base_dir, spam_files[0], None, "--text-column", "sentence")
    assert_one_line_error(proc, "no column 'sentence'", "columns there: text, label")
    assert not out.exists()


def test_dev_label_unseen_in_train(tmp_path, tiny_base_dir, spam_files):
    dev = write_csv(tmp_path / "dev.csv", [{"text": "hello", "label": "phishing"}])
    proc, out = _train(tmp_path, tiny_base_dir, spam_files[0], dev)
    assert_one_line_error(proc, "label 'phishing'", "known labels: ham, spam")
    assert not out.exists()


def test_non_utf8_data(tmp_path, tiny_base_dir):
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("text,label\nna\xefve caf\xe9,a\nok,b\n".encode("latin-1"))
    proc, out = _train(tmp_path, tiny_base_dir, bad)
    assert_one_line_error(proc, "not UTF-8")
    assert not out.exists()


def test_directory_that_is_no_artifact(tmp_path):
    assert_one_line_error(ahl_in_process("info", tmp_path), "not an adapterhub-lite artifact")
    target = tmp_path / "pred.jsonl"
    assert_one_line_error(
        ahl_in_process("predict", tmp_path, "--output", target, stdin="hi\n"), "not an adapterhub-lite artifact"
    )
    assert not target.exists()


def test_truncated_safetensors(artifact, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(artifact[0], copy)
    weights = copy / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    target = tmp_path / "pred.jsonl"
    proc = ahl_in_process("predict", copy, "--output", target, stdin="hello\n")
    assert_one_line_error(proc, "adapter.safetensors", "truncated")
    assert not target.exists()


def test_unsupported_base_family_lists_supported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    write_csv(tmp_path / "d.csv", [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}] * 5)
    proc = ahl_in_process(
        "train", "--base", tmp_path, "--train", tmp_path / "d.csv", "--task", "t", "--out", tmp_path / "o"
    )
    assert_one_line_error(proc, "gpt2", "bert", "deberta-v2", "distilbert")


def test_bad_option_value(tmp_path, spam_files):
    proc = ahl_in_process("train", "--train", spam_files[0], "--task", "t", "--preset", "lora", "--out", tmp_path / "o")
    assert_one_line_error(proc, "unknown adapter preset 'lora'; choose one of: pfeiffer, houlsby, none")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("search", "--top", "3"), "--top works only with --like; drop --top, or add --like DATA"),
        (("search", "--text-column", "sentence"), "--text-column works only with --like"),
        (("search", "--like", "{train}", "--limit", "5"), "--limit is for a plain search; with --like, --top"),
        (("train", "--preset", "none", "--reduction-factor", "8"), "--reduction-factor works only with an adapter"),
        (("train", "--preset", "none", "--non-linearity", "gelu"), "--non-linearity works only with an adapter"),
        (("train", "--preset", "none", "--init", "zero_up"), "--init works only with an adapter; drop --init, or"),
        (("train", "--dev", "{dev}", "--dev-split", "0.2"), "--dev-split holds out part of train when there is no"),
        (("fuse", "--adapters", "a/a,b/b", "--target-adapter", "own"), "--target-adapter works only with --auto"),
        (("fuse", "--auto", "2", "--head", "regression"), "records no license; drop --head regression"),
        (
            ("fuse", "--auto", "2", "--license", "mit"),
            "--auto trains classification heads and records no license; drop --license",
        ),
    ],
)
def test_an_option_its_mode_would_ignore_is_refused(tmp_path, spam_files, args, message):
    """An option that takes effect only with another (or not with it) is one line saying so, before
    any data is read, registry opened or file written: never silently dropped."""
    args = [a.format(train=spam_files[0], dev=spam_files[1]) for a in args]
    if args[0] in ("train", "fuse"):
        args += ["--train", str(spam_files[0]), "--task", "t", "--out", str(tmp_path / "o")]
    proc = ahl_in_process(*args, "--registry", tmp_path / "registry")
    assert_one_line_error(proc, message)
    assert proc.returncode == ConfigError.exit_code
    assert list(tmp_path.iterdir()) == []


def test_more_options_their_mode_would_ignore_are_refused(tmp_path, spam_files, tiny_base_model):
    """rank, prune and import: the same one-line refusal, before data is read or anything written."""
    fusion = tmp_path / "fusion"
    source = tmp_path / "adapters-dir"
    source.mkdir()
    cases = [
        (("rank", "--train", spam_files[0], "--adapters", "a/a,b/b", "--pool", "5"), "--pool works only with a"),
        (("rank", "--train", spam_files[0], "--no-probe", "--folds", "3"), "--folds works only with the probe; drop"),
        (("rank", "--train", spam_files[0], "--no-probe", "--max-examples", "9"), "--max-examples works only with"),
        (("prune", fusion, "--data", spam_files[1], "--keep", "2", "--overwrite"), "--overwrite works only with --out"),
        (("import", source, "--registry", tmp_path / "r", "--overwrite"), "--overwrite works only with --to; drop"),
        (("import", source, "--to", tmp_path / "o", "--revision", "v1"), "--revision works only with a Hub repository"),
        (("import", source, "--to", tmp_path / "o", "--endpoint", "http://127.0.0.1:9"), "--endpoint works only"),
    ]
    for args, message in cases:
        proc = ahl_in_process(*args)
        assert_one_line_error(proc, message)
        assert proc.returncode == ConfigError.exit_code
    assert [p.name for p in tmp_path.iterdir()] == ["adapters-dir"] and not any(source.iterdir())


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (("--temperature", "0"), "fusion temperature must be > 0 (got 0.0)"),
        (("--temperature", "nan"), "fusion temperature must be > 0 (got nan)"),
        (("--value-l2", "-1"), "fusion value L2 weight must be >= 0 (got -1.0)"),
    ],
)
def test_bad_fusion_option_names_itself(tmp_path, spam_files, option, message):
    """Each fusion option's error names that option alone (not value_init_noise, which has no
    flag), before any adapter is fetched (the refs here would fail: no registry)."""
    proc = ahl_in_process(
        "fuse", "--adapters", "a/a,b/b", "--task", "t", "--train", spam_files[0], "--out", tmp_path / "o",
        "--registry", tmp_path / "registry", *option,
    )  # fmt: skip
    line = proc.stderr.strip()
    assert_one_line_error(proc, message)
    assert "value_init_noise" not in line and proc.returncode == ConfigError.exit_code
    assert list(tmp_path.iterdir()) == []


def test_inspect_and_prune_of_an_adapter_say_which_command_needs_a_fusion(tmp_path, tiny_base_model, spam_files):
    adapter = make_artifact(tmp_path / "rt", tiny_base_model, task="rt", name="rt")
    for command, extra in (("inspect", ()), ("prune", ("--keep", "2"))):
        proc = ahl_in_process(command, adapter, "--data", spam_files[1], *extra)
        line = f"{adapter} is an adapter, not a fusion; {command} needs a fusion artifact (ahl fuse makes one)"
        assert_one_line_error(proc, line)
        assert proc.returncode == ConfigError.exit_code


def test_sizes_the_base_cannot_take_are_refused_before_training(tmp_path, tiny_base_model, spam_files):
    """A bottleneck under one unit or sequences beyond the base's positions: one line naming the
    limit, nothing written (on the embedded MiniLM: hidden size 384, 512 positions)."""
    common = ["--train", spam_files[0], "--task", "t", "--out", tmp_path / "o"]
    proc = ahl_in_process("train", *common, "--reduction-factor", "1000")
    assert_one_line_error(proc, "--reduction-factor 1000 leaves no bottleneck", "hidden size 384", "at most 384")
    proc = ahl_in_process("train", *common, "--max-length", "100000")
    assert_one_line_error(proc, "--max-length 100000 is more than", "512 tokens at most", "--max-length 512 or less")
    assert proc.returncode == ConfigError.exit_code
    sources = [make_artifact(tmp_path / n, tiny_base_model, task=n, name=n) for n in ("a", "b")]
    proc = ahl_in_process(
        "fuse", "--adapters", ",".join(map(str, sources)), *common, "--max-length", "513", "--epochs", "1"
    )
    assert_one_line_error(proc, "--max-length 513 is more than", "512 tokens at most")
    assert not (tmp_path / "o").exists()
    # a base with fewer positions than the default: the default shrinks to them, a chosen length is refused
    from adapterhub_lite.base import load_base

    small = load_base(str(Path(__file__).parent / "fixtures" / "adapters" / "bases" / "bert"))
    assert small.max_tokens == 40 and small.check_fits(max_length=128) == 40 and small.check_fits(max_length=32) == 32
    with pytest.raises(ConfigError, match="--max-length 64 is more than .* 40 tokens at most"):
        small.check_fits(max_length=64)


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    """The README's main command on a small slice: source adapters, a registry round trip, the
    ranking, fuse --auto for the low-resource target, the comparison, the activation table and
    the heatmap of the fusion candidate (shipped or not)."""
    workdir = tmp_path / "demo"
    proc = ahl(
        "demo",
        "--sources",
        "rotten_tomatoes,trec",
        "--epochs",
        "1",
        "--target-epochs",
        "1",
        "--limit",
        "40",  # trec's first 40 training rows lack a class its dev file has: the demo copes
        "--workdir",
        workdir,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count("bit-identical") == 2 and "DIFFERENT" not in out
    for name in ("rotten_tomatoes", "trec"):
        pushed, pulled = workdir / "sources" / name, workdir / "pulled" / name
        assert (pulled / "adapter.safetensors").read_bytes() == (pushed / "adapter.safetensors").read_bytes()
    assert "registry adapters ranked for vader_tweets" in out
    shipped = read_artifact(workdir / "target" / "auto")  # verifies every file's sha256
    record = shipped.metadata["composition"]
    assert record["chosen"] in {c["method"] for c in record["candidates"]}
    # auto drew from the registry, which holds an unrelated adapter (trec) beside a related one,
    # and the ranking it used is the table shown
    ranked = record["ranking"]["candidates"]
    assert sorted(c["name"] for c in ranked) == ["rotten_tomatoes", "trec"]
    assert all(c["source"].endswith("@1.0.0") and c["gain"] is not None for c in ranked)
    table = out.split("registry adapters ranked for vader_tweets")[1].split("base alone:")[0]
    rows = [line for line in table.splitlines() if "/" in line]
    assert [("trec/trec" in row) for row in rows] == [c["name"] == "trec" for c in ranked]
    fusion = read_artifact(workdir / "target" / "candidates" / "fusion")
    assert sorted(part.metadata["name"] for part in fusion_adapters(fusion)) == [
        "rotten_tomatoes",
        "trec",
        "vader_tweets",
    ]
    locked = {a["name"]: a["digest"] for a in fusion.metadata["adapters"]}
    for name in ("rotten_tomatoes", "trec"):  # the fusion was trained on the pulled copies
        assert locked[name] == read_artifact(workdir / "pulled" / name).digest
    scores = re.search(r"held-out accuracy: auto (\d\.\d{3}) vs target adapter (\d\.\d{3})", out)
    assert scores, out
    assert all(0.0 <= float(score) <= 1.0 for score in scores.groups())
    assert "mean fusion attention" in out and "vader_tweets/vader_tweets" in out
    assert (workdir / "fusion-heatmap.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "verified it" in out


def test_demo_refuses_a_target_among_its_sources(tmp_path):
    proc = ahl_in_process("demo", "--task", "trec", "--sources", "trec,sms_spam", "--workdir", tmp_path / "demo")
    assert_one_line_error(proc, "trec is the target")
    assert not (tmp_path / "demo").exists()


def test_demo_refuses_a_bad_workdir_or_too_few_examples_before_training(tmp_path):
    """Each case used to train (and push) every source adapter first, or end in a traceback."""
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.csv").write_text("text,label\n")
    cases = [
        (("--workdir", tmp_path / "a-file"), "is a file; choose a new directory"),
        (("--workdir", tmp_path / "data"), "holds files no demo wrote (mine.csv)"),
        (("--examples", "5", "--workdir", tmp_path / "new"), "--examples 5 gives the target vader_tweets 1 class(es)"),
        (("--limit", "3", "--workdir", tmp_path / "new"), "--limit 3 gives the target vader_tweets"),
        (("--source-examples", "2", "--workdir", tmp_path / "new"), "--source-examples 2 gives the source"),
        (("--limit", "0", "--workdir", tmp_path / "new"), "Invalid value for '--limit'"),
    ]
    for args, message in cases:
        proc = ahl_in_process("demo", *args)
        assert_one_line_error(proc, message)
        assert proc.returncode == 2 and proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "data"]
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["mine.csv"]


def test_error_messages_keep_their_brackets(capsys):
    """Rich markup must not eat text in square brackets, e.g. a pip extra in the fix it suggests."""
    import typer

    from adapterhub_lite.errors import ConfigError
    from cli.render import user_errors

    @user_errors
    def needs_plot() -> None:
        raise ConfigError("plotting needs matplotlib: pip install 'adapterhub-lite[plot]'")

    with pytest.raises(typer.Exit):
        needs_plot()
    assert "pip install 'adapterhub-lite[plot]'" in capsys.readouterr().err
