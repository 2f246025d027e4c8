"""Fusion end to end: fuse adapter artifacts, save, load, push, pull with the exact adapters."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from adapterhub_lite import IncompatibleBaseError, IntegrityError, LocalRegistry, TrainConfig, api, load_base
from adapterhub_lite.registry.format.refs import base_key, parse_ref
from adapterhub_lite.training.data import Columns, load_examples, tokenize
from adapterhub_lite.training.loop import predict_outputs

from .conftest import make_artifact
from .test_cli import ahl_in_process, assert_one_line_error

FAST = TrainConfig(mode="fusion", epochs=1, batch_size=16, learning_rate=1e-3, device="cpu")


@pytest.fixture(scope="module")
def sources(tmp_path_factory, tiny_base_model):
    root = tmp_path_factory.mktemp("sources")
    return [
        make_artifact(root / name, tiny_base_model, task=name, name=name, seed=i)
        for i, name in enumerate(("sentiment", "topic"))
    ]


@pytest.fixture(scope="module")
def fused(tmp_path_factory, sources, spam_files):
    out = tmp_path_factory.mktemp("fusion") / "spam-fusion"
    result = api.fuse(sources, spam_files[0], dev_data=spam_files[1], task="sms_spam", config=FAST, out=out)
    return result, out


def _outputs(model, tokenizer, data_path):
    enc = tokenize(tokenizer, load_examples(data_path, Columns()), 128, None)
    return predict_outputs(model, enc, batch_size=16, device=model.encoder.device, pad_id=tokenizer.pad_token_id)


def test_fusion_artifact_locks_its_adapters_and_reloads_exactly(fused, sources, spam_files):
    result, out = fused
    meta = json.loads((out / "fusion.json").read_text())
    assert meta["kind"] == "fusion" and meta["fusion"]["positions"] == ["ffn"]
    assert [a["name"] for a in meta["adapters"]] == ["sentiment", "topic"]
    for record, source in zip(meta["adapters"], sources, strict=True):
        assert record["digest"] == api.read_artifact(source).digest
        copy = out / "adapters" / record["name"] / "adapter.json"
        assert copy.read_bytes() == (source / "adapter.json").read_bytes()
    loaded = api.load(out)
    tok = loaded.base.tokenizer
    assert np.array_equal(_outputs(result.model, tok, spam_files[1]), _outputs(loaded.model, tok, spam_files[1]))
    assert {p.label for p in api.predict(loaded, ["free entry, win cash now"])} <= {"ham", "spam"}


def test_verify_checks_a_fusions_adapter_copies(fused, tmp_path):
    """A fusion directory verifies only with the adapters it was trained on, each intact."""
    import shutil

    from adapterhub_lite import ArtifactError, hub

    copy = tmp_path / "fusion"
    shutil.copytree(fused[1], copy)
    assert hub.verify(copy).kind == "fusion"
    (copy / "adapters" / "topic" / "adapter.safetensors").chmod(0o644)
    (copy / "adapters" / "topic" / "adapter.safetensors").write_bytes(b"damaged")
    with pytest.raises(IntegrityError):
        hub.verify(copy)
    shutil.rmtree(copy / "adapters" / "topic")
    with pytest.raises(ArtifactError, match="topic' is missing|is missing: the fusion needs adapter 'topic'"):
        hub.verify(copy)


def test_info_reports_a_fusion_whose_adapter_copies_are_damaged(fused, tmp_path):
    """``ahl info`` verifies a fusion as ``verify`` does: a missing or changed adapter copy is one
    line and a non-zero exit, never the metadata with exit 0."""
    import shutil

    from adapterhub_lite import ArtifactError

    copy = tmp_path / "fusion"
    shutil.copytree(fused[1], copy)
    assert ahl_in_process("info", copy).returncode == 0
    damaged = copy / "adapters" / "topic" / "adapter.safetensors"
    damaged.chmod(0o644)
    damaged.write_bytes(b"damaged")
    for args in (("info", copy), ("info", copy, "--json")):
        proc = ahl_in_process(*args)
        assert_one_line_error(proc, str(damaged))
        assert proc.returncode == IntegrityError.exit_code and proc.stdout == ""
    shutil.rmtree(copy / "adapters" / "topic")
    proc = ahl_in_process("info", copy)
    assert_one_line_error(proc, "is missing: the fusion needs adapter 'topic'", "ahl pull")
    assert proc.returncode == ArtifactError.exit_code and proc.stdout == ""


def test_inspect_reads_texts_like_predict_and_takes_column_overrides(fused, tmp_path, spam_files):
    """inspect --data in.txt reads one text per line (as predict -i does; its first line is no
    header), stdin too; and a missing column's hint (--text-column) names an option inspect has."""
    from .conftest import bundled_rows, write_csv

    _, fusion = fused
    texts = tmp_path / "in.txt"
    texts.write_text("free prize, claim now\n\nlunch at noon?\n", encoding="utf-8")
    for data, stdin in ((texts, None), ("-", texts.read_text())):
        proc = ahl_in_process("inspect", fusion, "--data", data, "--json", stdin=stdin)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["tokens"] > 0 and sorted(report["adapters"]) == ["sentiment/sentiment", "topic/topic"]
    rows = [{"sentence": r["text"], "label": r["label"]} for r in bundled_rows("sms_spam", "dev", 8)]
    renamed = write_csv(tmp_path / "renamed.csv", rows)
    assert_one_line_error(ahl_in_process("inspect", fusion, "--data", renamed), "no column 'text'", "--text-column")
    proc = ahl_in_process("inspect", fusion, "--data", renamed, "--text-column", "sentence", "--json")
    assert proc.returncode == 0, proc.stderr
    proc = ahl_in_process(
        "prune", fusion, "--data", renamed, "--keep", "2", "--repeats", "1", "--text-column", "sentence", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(proc.stdout)["kept"]) == ["sentiment", "topic"]
    # prune takes a registry ref as inspect does (it took only a directory)
    registry = tmp_path / "registry"
    for part in (*sorted((fusion / "adapters").iterdir()), fusion):
        pushed = ahl_in_process("push", part, "--registry", registry, "--json")
        assert pushed.returncode == 0, pushed.stderr
    ref = json.loads(pushed.stdout)["ref"]  # the fusion's, pushed last
    args = ("--registry", registry, "--data", spam_files[1], "--keep", "2")
    by_ref = ahl_in_process("prune", ref, *args, env={"AHL_CACHE": str(tmp_path / "cache")})
    assert by_ref.returncode == 0 and "kept sentiment, topic" in by_ref.stdout, by_ref.stderr


def test_adapters_of_different_bases_fail_before_training(tmp_path, sources, other_tiny_base_dir, spam_files):
    stranger = make_artifact(tmp_path / "stranger", load_base(str(other_tiny_base_dir)), task="x", name="x")
    out = tmp_path / "never"
    with pytest.raises(IncompatibleBaseError) as err:
        api.fuse([sources[0], stranger], spam_files[0], task="t", config=FAST, out=out)
    message = str(err.value)
    assert str(other_tiny_base_dir) in message and "weights_sha256" in message
    assert json.loads((sources[0] / "adapter.json").read_text())["base"]["model_id"] in message
    assert not out.exists()


def test_two_adapters_of_one_name_are_refused_with_the_fix(tmp_path, tiny_base_model, spam_files):
    one, two = (make_artifact(tmp_path / d, tiny_base_model, task="s", name="same", seed=i) for i, d in enumerate("ab"))
    proc = ahl_in_process("fuse", "--adapters", f"{one},{two}", "--task", "t", "--train", spam_files[0])
    assert_one_line_error(
        proc, "same comes more than once: fuse one version of it, or retrain one copy under another --name"
    )
    assert proc.returncode == 2


def test_push_then_pull_into_an_empty_place_predicts_identically(fused, tmp_path, spam_files):
    result, out = fused
    registry = LocalRegistry(tmp_path / "registry")
    entry = registry.push(out)
    assert entry.summary["architecture"] == "fusion"
    assert {e.ref.task for e in registry.search()} == {"sentiment", "topic", "sms_spam"}  # adapters came along
    target = tmp_path / "pulled"
    registry.pull(entry.ref, target)
    assert sorted(p.name for p in (target / "adapters").iterdir()) == ["sentiment", "topic"]
    loaded = api.load(target)
    tok = loaded.base.tokenizer
    assert np.array_equal(_outputs(result.model, tok, spam_files[1]), _outputs(loaded.model, tok, spam_files[1]))


def test_a_replaced_adapter_version_fails_the_fusion_pull(fused, tmp_path):
    _, out = fused
    registry = LocalRegistry(tmp_path / "registry")
    entry = registry.push(out)
    record = json.loads((out / "fusion.json").read_text())["adapters"][1]
    manifest = next((tmp_path / "registry" / "entries").glob(f"*/*/{record['task']}/{record['name']}/*.json"))
    replaced = json.loads(manifest.read_text())
    replaced["digest"] = "sha256:" + "0" * 64  # the version now claims other content
    manifest.chmod(0o644)
    manifest.write_text(json.dumps(replaced))
    with pytest.raises(IntegrityError, match="holds no version with that content"):
        registry.pull(entry.ref, tmp_path / "pulled")
    assert not (tmp_path / "pulled").exists()


def test_cli_fuses_registry_refs_and_pushes(tmp_path, sources, tiny_base_dir, spam_files):
    registry = tmp_path / "registry"
    reg = LocalRegistry(registry)
    refs = [str(reg.push(s).ref) for s in sources]
    assert refs[0].startswith(base_key(str(tiny_base_dir)))
    out = tmp_path / "cli-fusion"
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "adapterhub_lite",
            "fuse",
            "--adapters",
            "sentiment/sentiment,topic/topic",
            "--base",
            str(tiny_base_dir),
            "--registry",
            str(registry),
            "--task",
            "sms_spam",
            "--train",
            str(spam_files[0]),
            "--dev",
            str(spam_files[1]),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--out",
            str(out),
            "--push",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["pushed"].endswith("sms_spam/sms_spam-fusion@1.0.0")
    assert reg.resolve(parse_ref(summary["pushed"])).summary["architecture"] == "fusion"
    assert (out / "adapters" / "topic" / "adapter.json").is_file()


def test_activation_analysis_table_json_and_heatmap(fused, spam_files, tmp_path, sources):
    from adapterhub_lite import ConfigError
    from adapterhub_lite.analysis import fusion_activations

    _, out = fused
    report = fusion_activations(out, spam_files[1])
    assert report.adapters == ["sentiment/sentiment", "topic/topic"] and report.sites == ["0.ffn", "1.ffn"]
    assert np.allclose(report.mean.sum(axis=1), 1.0, atol=1e-5)  # a distribution over adapters per site
    tokenizer = api.load(out).base.tokenizer
    texts = [e.text for e in load_examples(spam_files[1], Columns()).examples]
    assert report.tokens == sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=128)["input_ids"])
    assert set(report.to_dict()["sites"]["1.ffn"]) == set(report.adapters)
    png = report.plot(tmp_path / "heat.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="not a fusion"):
        fusion_activations(sources[0], spam_files[1])


def test_pruning_keeps_the_most_used_adapters_and_reports_the_cost(tmp_path, tiny_base_model, spam_files):
    from adapterhub_lite import ConfigError
    from adapterhub_lite.analysis import prune_fusion

    sources = [
        make_artifact(tmp_path / n, tiny_base_model, task=n, name=n, seed=i) for i, n in enumerate(("a", "b", "c"))
    ]
    result = api.fuse(
        sources, spam_files[0], dev_data=spam_files[1], task="sms_spam", config=FAST, out=tmp_path / "fusion3"
    )
    report = prune_fusion(result.artifact.path, spam_files[1], keep=2, out=tmp_path / "pruned")
    usage = report.activations.mean.mean(axis=0)
    assert report.dropped == [["a", "b", "c"][int(usage.argmin())]] and len(report.kept) == 2
    assert set(report.metrics_before) == set(report.metrics_after) == {"accuracy", "macro_f1"}
    assert report.seconds_before > 0 and report.seconds_after > 0
    pruned = api.load(tmp_path / "pruned")
    assert [a["name"] for a in pruned.artifact.metadata["adapters"]] == report.kept
    assert "activations" not in pruned.artifact.metadata  # measured on the unpruned fusion
    assert "activations" in result.artifact.metadata and "fusion-heatmap.svg" not in pruned.artifact.metadata["files"]
    assert api.evaluate(pruned, spam_files[1]) == pytest.approx(report.metrics_after)
    assert prune_fusion(result.artifact.path, spam_files[1], threshold=0.0).dropped == []
    with pytest.raises(ConfigError, match="a fusion needs two"):
        prune_fusion(result.artifact.path, spam_files[1], threshold=1.01)
    with pytest.raises(ConfigError, match="exactly one of --threshold or --keep"):
        prune_fusion(result.artifact.path, spam_files[1])
    assert len(report.timings) == 3 and report.speedups == [b / a for b, a in report.timings]
    assert report.speedup_measured == (min(report.speedups) > 1.0)


def test_fusion_metadata_follows_its_schema(fused):
    from pathlib import Path

    from jsonschema import Draft202012Validator

    schema = json.loads((Path(__file__).parents[1] / "registry/schema/fusion.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    meta = json.loads((fused[1] / "fusion.json").read_text())
    validator = Draft202012Validator(schema)
    assert list(validator.iter_errors(meta)) == []
    broken = {**meta, "adapters": [{**meta["adapters"][0], "digest": "sha256:nothex"}] + meta["adapters"][1:]}
    assert list(validator.iter_errors(broken))


def test_fusion_artifact_carries_its_dev_activations_and_heatmap(fused, spam_files):
    import xml.etree.ElementTree as ElementTree

    from adapterhub_lite.analysis import fusion_activations
    from adapterhub_lite.artifact import HEATMAP_FILE, read_artifact

    artifact = read_artifact(fused[1])  # verifies every listed file, the heatmap included
    meta = artifact.metadata
    assert HEATMAP_FILE in meta["files"]
    recorded = meta["activations"]
    assert recorded["data"] == "dev" and recorded["adapters"] == ["sentiment/sentiment", "topic/topic"]
    measured = fusion_activations(fused[1], spam_files[1])  # the dev file again, after loading
    assert recorded["tokens"] == measured.tokens
    for site, row in zip(measured.sites, measured.mean, strict=True):
        assert list(recorded["sites"][site].values()) == pytest.approx(row.tolist(), abs=1e-5)
    svg = ElementTree.fromstring((fused[1] / HEATMAP_FILE).read_text(encoding="utf-8"))
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "sentiment/sentiment" in texts and "layer 1.ffn" in texts
    assert f"{measured.mean[0][0]:.2f}" in texts


def test_svg_heatmap_needs_no_matplotlib_and_escapes_text(fused, spam_files, tmp_path, monkeypatch):
    import xml.etree.ElementTree as ElementTree

    from adapterhub_lite.cli import demo

    from adapterhub_lite import ConfigError
    from adapterhub_lite.analysis import FusionActivations, fusion_activations

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if matplotlib were not installed
    report = fusion_activations(fused[1], spam_files[1])
    with pytest.raises(ConfigError, match="needs matplotlib"):
        report.plot(tmp_path / "heat.png")
    assert not list(tmp_path.iterdir())
    demo._inspect(fused[1], load_examples(spam_files[1], Columns()), api.load(fused[1]).base, tmp_path / "h.png")
    assert ElementTree.parse(tmp_path / "h.svg").getroot().tag == "{http://www.w3.org/2000/svg}svg"
    hostile = FusionActivations(["<script>alert(1)</script>", 'a&b"'], ["0.ffn"], np.array([[0.25, 0.75]]), 3)
    text = hostile.svg("<img src=x onerror=alert(1)>")
    root = ElementTree.fromstring(text)
    assert not [e for e in root.iter() if e.tag.endswith(("script", "img", "foreignObject"))]
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "<img src=x onerror=alert(1)>" in titles and 'a&b"' in titles


def test_cli_inspect_writes_an_svg_heatmap(fused, spam_files, tmp_path):
    out = tmp_path / "heat.svg"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "adapterhub_lite",
            "inspect",
            str(fused[1]),
            "--data",
            str(spam_files[1]),
            "--plot",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text().startswith("<svg ") and "sentiment/sentiment" in out.read_text()
