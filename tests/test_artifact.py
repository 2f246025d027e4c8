"""Artifacts: save -> load is bit-exact, bases are checked, damaged files are caught."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from adapterhub_lite import (
    ArtifactError,
    IncompatibleBaseError,
    IntegrityError,
    TrainConfig,
    api,
    load_base,
    read_artifact,
)
from adapterhub_lite.artifact import check_writable
from adapterhub_lite.training.data import Columns, load_examples, tokenize
from adapterhub_lite.training.loop import predict_outputs

from .conftest import bundled_rows, tiny_base


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_base_dir, spam_files):
    out = tmp_path_factory.mktemp("art") / "spam-adapter"
    train, dev = spam_files
    result = api.train(
        train,
        dev_data=dev,
        task="sms_spam",
        base=str(tiny_base_dir),
        out=out,
        config=TrainConfig(epochs=1, batch_size=16, learning_rate=1e-3, device="cpu"),
    )
    return result, out


def _outputs(model, tokenizer, data_path):
    data = load_examples(data_path, Columns())
    enc = tokenize(tokenizer, data, 128, None)
    return predict_outputs(model, enc, batch_size=16, device=model.encoder.device, pad_id=tokenizer.pad_token_id)


def test_save_then_load_reproduces_predictions_bit_for_bit(trained, spam_files):
    result, out = trained
    loaded = api.load(out)
    before = _outputs(result.model, loaded.base.tokenizer, spam_files[1])
    after = _outputs(loaded.model, loaded.base.tokenizer, spam_files[1])
    assert np.array_equal(before, after)
    assert api.evaluate(loaded, spam_files[1]) == pytest.approx(result.metrics)


def test_artifact_layout_and_metadata(trained):
    result, out = trained
    expected = ["README.md", "adapter.json", "adapter.safetensors", "metrics.jsonl"]
    assert sorted(p.name for p in out.iterdir()) == expected
    meta = json.loads((out / "adapter.json").read_text())
    assert meta["kind"] == "adapter" and meta["task"] == "sms_spam" and meta["format_version"] == "1.0"
    assert meta["head"]["label_names"] == ["ham", "spam"]
    assert meta["base"]["fingerprint"]["num_layers"] == 2
    assert meta["training"]["data"]["train"]["sha256"]
    assert set(meta["files"]) == {"adapter.safetensors", "README.md", "metrics.jsonl"}
    weights = load_file(str(out / "adapter.safetensors"))
    assert all(k.startswith(("adapter.", "head.")) for k in weights)
    card = (out / "README.md").read_text()
    # trained on a local directory: no base_model (a Hub id or nothing), the path stays in base.model_id
    assert "library_name: adapterhub-lite" in card and "base_model" not in card.partition("tags:")[0]
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs[0]["epoch"] == 1 and "dev_accuracy" in epochs[0]
    assert not list(out.parent.glob(".*"))  # no staging or log leftovers


@pytest.mark.parametrize("other", ["other_tiny_base_dir", "deeper_tiny_base_dir"])
def test_loading_into_a_different_base_names_both(trained, other, request):
    _, out = trained
    other_dir = request.getfixturevalue(other)
    with pytest.raises(IncompatibleBaseError) as err:
        api.load(out, base=str(other_dir))
    message = str(err.value)
    recorded = json.loads((out / "adapter.json").read_text())["base"]
    assert recorded["model_id"] in message and str(other_dir) in message
    assert ("weights_sha256" if other == "other_tiny_base_dir" else "num_layers") in message


def test_loading_into_a_wider_base_is_refused(trained):
    _, out = trained
    with pytest.raises(IncompatibleBaseError, match="hidden_size"):
        api.load(out, base=tiny_base("bert", hidden=48))


def _copy(out, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(out, target)
    return target


def test_truncated_safetensors_is_an_integrity_error(trained, tmp_path):
    copy = _copy(trained[1], tmp_path)
    weights = copy / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(IntegrityError, match="truncated or replaced"):
        api.load(copy)


def test_truncated_weights_with_matching_record_are_caught_by_safetensors(trained, tmp_path):
    """Even if the metadata was rewritten to match, a cut file fails to parse, clearly."""
    copy = _copy(trained[1], tmp_path)
    weights = copy / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(IntegrityError, match="truncated or corrupt"):
        read_artifact(copy, verify=False).load_weights()


def test_flipped_byte_is_caught(trained, tmp_path):
    copy = _copy(trained[1], tmp_path)
    weights = copy / "adapter.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        api.load(copy)


def test_directory_that_is_no_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="not an adapterhub-lite artifact"):
        api.info(tmp_path)
    with pytest.raises(ArtifactError, match="missing does not exist; an artifact is a directory with adapter.json"):
        api.info(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="file is a file, not a directory; an artifact is a directory"):
        api.info(tmp_path / "file")


@pytest.mark.parametrize(
    "damage,match",
    [
        (lambda m: "{not json", "not valid JSON"),
        (lambda m: json.dumps({k: v for k, v in m.items() if k != "base"}), "lacks required field"),
        (lambda m: json.dumps({**m, "format_version": "2.0"}), "upgrade adapterhub-lite"),
        (
            lambda m: json.dumps({**m, "files": {**m["files"], "../escape": {"sha256": "0" * 64, "size": 1}}}),
            "plain name",
        ),
    ],
)
def test_malformed_metadata(trained, tmp_path, damage, match):
    copy = _copy(trained[1], tmp_path)
    meta = json.loads((copy / "adapter.json").read_text())
    (copy / "adapter.json").write_text(damage(meta))
    with pytest.raises(ArtifactError, match=match):
        api.info(copy)


def test_newer_minor_version_and_unknown_fields_are_read(trained, tmp_path):
    copy = _copy(trained[1], tmp_path)
    meta = json.loads((copy / "adapter.json").read_text())
    meta.update(format_version="1.7", future_field={"x": 1})
    (copy / "adapter.json").write_text(json.dumps(meta))
    assert api.info(copy)["future_field"] == {"x": 1}


def test_existing_output_is_not_overwritten_by_default(trained, spam_files, tiny_base_dir):
    _, out = trained
    before = (out / "adapter.safetensors").read_bytes()
    with pytest.raises(ArtifactError, match="already exists"):
        api.train(
            spam_files[0],
            dev_data=spam_files[1],
            task="sms_spam",
            base=str(tiny_base_dir),
            out=out,
            config=TrainConfig(epochs=1, batch_size=16, device="cpu"),
        )
    assert (out / "adapter.safetensors").read_bytes() == before


def test_overwrite_replaces_only_artifacts(trained, spam_files, tiny_base_dir, tmp_path, monkeypatch):
    """--overwrite replaces an artifact (or a directory of them), never a file, a directory with
    other files, the working directory or what the command reads; refused before any training."""
    notes = tmp_path / "project"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)  # empty: still refused, as its parent is
    for out, match in [
        (notes, "holds files that are not an artifact"),
        (a_file, "is a file, not an artifact directory"),
        (Path("."), "working directory or holds it"),
        (Path(".."), "working directory or holds it"),
    ]:
        with pytest.raises(ArtifactError, match=match):
            api.train(
                spam_files[0],
                task="sms_spam",
                base=str(tiny_base_dir),
                out=out,
                overwrite=True,
                config=TrainConfig(epochs=1, device="cpu"),
            )
    assert (notes / "notes.txt").read_text() == "mine" and a_file.read_text() == "mine" and here.is_dir()
    assert not list(tmp_path.glob(".*")) and not list(notes.glob(".*"))  # no staging or .old copies

    _, artifact = trained
    kept = tmp_path / "candidates"
    shutil.copytree(artifact, kept / "target")  # a directory of artifacts (fuse --auto's kept candidates)
    check_writable(kept, overwrite=True)
    check_writable(artifact, overwrite=True)
    with pytest.raises(ArtifactError, match="is what is being read"):
        check_writable(kept, overwrite=True, source=kept / "target")
    # inside an artifact: its files are its own (a fusion used to copy a stray output along)
    for inside in (kept / "target" / "new", kept / "target" / "deeper" / "still"):
        with pytest.raises(ArtifactError, match=f"{inside} is inside the artifact {kept / 'target'}; choose"):
            check_writable(inside, overwrite=False)
    assert sorted(p.name for p in (kept / "target").iterdir()) == sorted(p.name for p in artifact.iterdir())


def test_fingerprint_is_stable_across_loads(tiny_base_dir):
    assert load_base(str(tiny_base_dir)).fingerprint == load_base(str(tiny_base_dir)).fingerprint


def test_tokenizer_is_loaded_on_first_use_only(tiny_base_dir):
    base = load_base(str(tiny_base_dir))
    assert "tokenizer" not in vars(base)  # loading the base loaded the encoder alone
    tokenizer = base.tokenizer
    assert tokenizer is base.tokenizer
    assert tokenizer("adapters are small")["input_ids"]


def test_unreadable_tokenizer_is_a_base_model_error_on_first_use(tmp_path, tiny_base_dir):
    from adapterhub_lite import BaseModelError

    broken = tmp_path / "broken"
    shutil.copytree(tiny_base_dir, broken)
    (broken / "tokenizer.json").write_text("{not json")
    base = load_base(str(broken))
    with pytest.raises(BaseModelError, match="cannot load the tokenizer"):
        getattr(base, "tokenizer")  # noqa: B009 - the read itself is what is tested


def test_extra_tensor_in_weights_is_refused(trained, tmp_path):
    from safetensors.torch import save_file

    copy = _copy(trained[1], tmp_path)
    weights = load_file(str(copy / "adapter.safetensors"))
    weights["adapter.9.ffn.down.weight"] = weights["adapter.0.ffn.down.weight"].clone()
    save_file(weights, str(copy / "adapter.safetensors"))
    meta = json.loads((copy / "adapter.json").read_text())
    from adapterhub_lite.artifact import sha256_file

    meta["files"]["adapter.safetensors"] = {
        "sha256": sha256_file(copy / "adapter.safetensors"),
        "size": (copy / "adapter.safetensors").stat().st_size,
    }
    (copy / "adapter.json").write_text(json.dumps(meta))
    with pytest.raises(IncompatibleBaseError, match="unexpected tensors"):
        api.load(copy)


def test_artifact_files_are_readable_by_others(trained):
    _, out = trained
    assert out.stat().st_mode & 0o055 == 0o055
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in out.iterdir())


@pytest.mark.parametrize("name", ["trec\n", "../x", "-x", "a" * 97, "ünïcode"])
def test_bad_artifact_names_are_refused(name, spam_files):
    from adapterhub_lite import RefError

    with pytest.raises(RefError, match="name '"):
        api.train(spam_files[0], task="t", name=name, out=None)


def test_base_checkpoint_missing_weights_is_refused(tmp_path, tiny_base_dir):
    from safetensors.torch import save_file

    from adapterhub_lite import BaseModelError

    broken = tmp_path / "broken"
    shutil.copytree(tiny_base_dir, broken)
    weights = load_file(str(broken / "model.safetensors"))
    dropped = next(k for k in weights if "encoder.layer.0.output.dense.weight" in k)
    del weights[dropped]
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(BaseModelError, match="lacks 1 encoder weight"):
        load_base(str(broken))


def test_diverged_metric_is_stored_as_null(tmp_path):
    from adapterhub_lite import HeadConfig
    from adapterhub_lite.artifact import write_artifact
    from adapterhub_lite.model import AdapterModel

    base = tiny_base("bert")
    model = AdapterModel(base)
    model.set_head(HeadConfig(type="regression"))
    meta = {
        "kind": "adapter",
        "name": "r",
        "task": "r",
        "base": {"model_id": "tiny", "revision": None, "fingerprint": base.fingerprint.to_dict()},
        "adapter": None,
        "head": model.head.config.to_dict(),
        "metrics": {"dev": {"mse": float("nan"), "pearson": 0.5}},
    }
    artifact = write_artifact(tmp_path / "r", meta, model.artifact_state_dict(), "card")
    assert artifact.metadata["metrics"]["dev"] == {"mse": None, "pearson": 0.5}


def test_regression_and_multiple_choice_train_save_and_predict(tmp_path, tiny_base_dir):
    from .conftest import write_jsonl

    rows = bundled_rows("trec", "train", 60)
    regression = write_jsonl(tmp_path / "reg.jsonl", [{"text": r["text"], "label": len(r["text"]) / 50} for r in rows])
    result = api.train(
        regression,
        task="length",
        head="regression",
        base=str(tiny_base_dir),
        out=tmp_path / "reg",
        config=TrainConfig(epochs=1, batch_size=8, device="cpu"),
    )
    assert set(result.metrics) == {"pearson", "spearman", "mse"}
    scores = api.predict(tmp_path / "reg", ["What is a short question ?"])
    assert isinstance(scores[0].label, float) and scores[0].probabilities is None

    labels = sorted({r["label"] for r in rows})
    mc_rows = [{"question": r["text"], "choices": labels, "answer": r["label"]} for r in rows]
    mc = write_jsonl(tmp_path / "mc.jsonl", mc_rows)
    columns = Columns(text="question", choices="choices", label="answer")
    api.train(
        mc,
        task="qtype-mc",
        head="multiple_choice",
        columns=columns,
        base=str(tiny_base_dir),
        out=tmp_path / "mc",
        config=TrainConfig(epochs=1, batch_size=8, device="cpu"),
    )
    predictions = api.predict(tmp_path / "mc", mc)
    assert len(predictions) == len(rows)
    assert all(p.label in range(len(labels)) and set(p.probabilities) == set(labels) for p in predictions)
    assert api.evaluate(tmp_path / "mc", mc)["accuracy"] >= 0.0


def test_predict_with_a_lone_string_explains_itself(trained):
    from adapterhub_lite import DataError

    with pytest.raises(DataError, match="to predict texts pass a list"):
        api.predict(trained[1], "free prize, call now")
    assert len(api.predict(trained[1], ["free prize, call now"])) == 1
