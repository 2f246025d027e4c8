"""AdapterHub ``adapters`` format: import and export, checked against outputs of the real library.

The fixtures (``tests/fixtures/adapters``, made by ``scripts/make_adapters_fixtures.py`` with
adapters 1.3.0 on transformers 4.57) hold tiny BERT and RoBERTa bases, randomised ``seq_bn`` and
``double_seq_bn`` adapters with classification heads saved as ``.bin`` and as safetensors, and
the hidden states and logits ``adapters`` computed for them.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from adapterhub_lite import adapters_format as af
from adapterhub_lite.api import fuse, load, predict
from adapterhub_lite.artifact import read_artifact
from adapterhub_lite.base import load_base
from adapterhub_lite.config import TrainConfig
from adapterhub_lite.errors import (
    AhlError,
    ArtifactError,
    ConfigError,
    IncompatibleBaseError,
    IntegrityError,
    NotFoundError,
    UnreachableError,
    UnsupportedModelError,
)

from .conftest import write_csv
from .hostile_hub import HostileHub
from .test_cli import ahl, ahl_in_process, assert_one_line_error

FIXTURES = Path(__file__).parent / "fixtures" / "adapters"
TOLERANCE = 1e-5
HEAD_FILES = (af.HEAD_CONFIG_FILE, af.HEAD_SAFETENSORS, af.HEAD_PICKLE)


@pytest.fixture(scope="module")
def outputs() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / "outputs.safetensors"))


@pytest.fixture(scope="module")
def bases():
    return {family: load_base(str(FIXTURES / "bases" / family)) for family in ("bert", "roberta")}


def _outputs(artifact_path: Path, base, family: str, outputs) -> tuple[torch.Tensor, torch.Tensor]:
    loaded = load(artifact_path, base=base)
    ids, mask = outputs[f"{family}.input_ids"], outputs[f"{family}.attention_mask"]
    with torch.no_grad():
        return loaded.model.encode(ids, mask), loaded.model(ids, mask)


def _copy(name: str, tmp_path: Path, drop: tuple[str, ...] = ()) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target, ignore=lambda _d, names: [n for n in names if n in drop])
    return target


def _edit_config(directory: Path, **changes) -> None:
    path = directory / af.CONFIG_FILE
    meta = json.loads(path.read_text())
    meta["config"].update(changes)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("weights", ["bin", "safetensors"])
@pytest.mark.parametrize("arch", ["seq_bn", "double_seq_bn"])
@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_import_reproduces_adapters_outputs(family, arch, weights, bases, outputs, tmp_path):
    source = FIXTURES / f"{family}_{arch}-{weights}"
    artifact = af.import_adapter(source, to=tmp_path / "out", base=bases[family])
    meta = artifact.metadata
    assert meta["adapter"]["preset"] == ("pfeiffer" if arch == "seq_bn" else "houlsby")
    assert meta["head"]["label_names"] == ["negative", "neutral", "positive"]
    provenance = meta["imported_from"]
    assert provenance["format"] == "adapters" and provenance["source"] == str(source.resolve())
    assert provenance["adapter_name"] == f"{family}_{arch}" and provenance["written_by"] == "adapters.1.3.0"
    read = {
        "safetensors": ("adapter.safetensors", "model_head.safetensors"),
        "bin": ("pytorch_adapter.bin", "pytorch_model_head.bin"),
    }[weights]
    assert set(provenance["files"]) == {"adapter_config.json", "head_config.json", *read}
    assert provenance["files"][read[0]]["sha256"] == af.sha256_file(source / read[0])

    hidden, logits = _outputs(artifact.path, bases[family], family, outputs)
    name = f"{family}_{arch}"
    # The adapter matters: the base alone is far from the stored outputs.
    assert (outputs[f"{family}.base_hidden"] - outputs[f"{name}.hidden"]).abs().max() > 0.1
    assert (hidden - outputs[f"{name}.hidden"]).abs().max() <= TOLERANCE
    assert (logits - outputs[f"{name}.logits"]).abs().max() <= TOLERANCE


def test_imported_metadata_validates_against_the_schema(bases, tmp_path):
    from jsonschema import Draft202012Validator

    schema = json.loads((Path(__file__).parent.parent / "registry" / "schema" / "adapter.schema.json").read_text())
    for with_head in (True, False):
        artifact = af.import_adapter(
            FIXTURES / "bert_double_seq_bn-bin", to=tmp_path / str(with_head), base=bases["bert"], with_head=with_head
        )
        Draft202012Validator(schema).validate(artifact.metadata)


@pytest.mark.parametrize("how", ["no head files", "with_head=False"])
def test_import_without_head_gives_a_placeholder_head(how, bases, outputs, tmp_path):
    if how == "no head files":
        source, kwargs = _copy("roberta_seq_bn-safetensors", tmp_path, drop=HEAD_FILES), {}
    else:
        source, kwargs = FIXTURES / "roberta_seq_bn-safetensors", {"with_head": False}
    artifact = af.import_adapter(source, to=tmp_path / "out", base=bases["roberta"], **kwargs)
    assert artifact.metadata["head"]["placeholder"] is True
    assert artifact.metadata["imported_from"]["head"] is None
    assert "placeholder" in (artifact.path / "README.md").read_text()
    hidden, logits = _outputs(artifact.path, bases["roberta"], "roberta", outputs)
    assert (hidden - outputs["roberta_seq_bn.hidden"]).abs().max() <= TOLERANCE
    assert torch.count_nonzero(logits) == 0
    with pytest.raises(ConfigError, match="no trained prediction head"):  # it would answer 0.0 for everything
        predict(artifact.path, ["some text"], base=bases["roberta"])


class _Payload:
    """Pickles as a call of ``Path.touch(marker)``: what a malicious checkpoint could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_that_runs_code_is_refused_without_running(bases, tmp_path):
    source = _copy("bert_seq_bn-bin", tmp_path)
    marker = tmp_path / "pwned"
    weights = torch.load(source / "pytorch_adapter.bin", weights_only=True)
    weights["bert.encoder.layer.0.output.adapters.bert_seq_bn.adapter_up.bias"] = _Payload(marker)
    torch.save(weights, source / "pytorch_adapter.bin")
    # The payload is real: an unrestricted load runs it.
    with open(source / "pytorch_adapter.bin", "rb") as handle:
        torch.load(handle, weights_only=False, pickle_module=pickle)
    assert marker.exists()
    marker.unlink()

    with pytest.raises(IntegrityError, match="pytorch_adapter.bin was refused"):
        af.import_adapter(source, to=tmp_path / "out", base=bases["bert"])
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_lora_is_refused(bases, tmp_path):
    with pytest.raises(ConfigError, match=r"architecture=\"lora\" \(LoRA\) is not supported"):
        af.import_adapter(FIXTURES / "bert_lora-safetensors", to=tmp_path / "out", base=bases["bert"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"architecture": "prefix_tuning"}, 'architecture="prefix_tuning" (prefix tuning)'),
        ({"ln_after": True}, "ln_after=true"),
        ({"ln_before": True}, "ln_before=true"),
        ({"scaling": 2.0}, "scaling=2.0"),
        ({"scaling": "learned"}, 'scaling="learned"'),
        ({"is_parallel": True}, "is_parallel=true"),
        ({"phm_layer": True}, "phm_layer=true"),
        ({"inv_adapter": "nice"}, 'inv_adapter="nice"'),
        ({"use_gating": True}, "use_gating=true"),
        ({"original_ln_after": False}, "original_ln_after=false"),
        ({"residual_before_ln": False}, "residual_before_ln=false"),
        ({"residual_before_ln": "post_add"}, 'residual_before_ln="post_add"'),
        ({"leave_out": [0]}, "leave_out=[0]"),
        ({"reduction_factor": {"default": 4, "1": 8}}, "reduction_factor="),
        ({"reduction_factor": 2.5}, "reduction_factor=2.5"),
        ({"non_linearity": "gelu_new"}, 'non_linearity="gelu_new"'),
        ({"mh_adapter": False, "output_adapter": False}, "no adapter at any position"),
        ({"new_option_from_the_future": 3}, "new_option_from_the_future=3"),
    ],
)
def test_options_we_do_not_compute_are_refused_by_name(changes, needle, bases, tmp_path):
    source = _copy("bert_seq_bn-safetensors", tmp_path)
    _edit_config(source, **changes)
    with pytest.raises(ConfigError) as info:
        af.import_adapter(source, to=tmp_path / "out", base=bases["bert"])
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_options_without_effect_are_accepted(bases, outputs, tmp_path):
    # Training-only and disabled-feature options leave the computation as it is.
    source = _copy("bert_seq_bn-safetensors", tmp_path)
    _edit_config(
        source,
        dropout=0.3,
        stochastic_depth=0.1,
        adapter_residual_before_ln=True,
        phm_dim=8,
        init_weights="mam_adapter",
        scaling=1,
        reduction_factor=4.0,
        non_linearity="ReLU",
    )
    artifact = af.import_adapter(source, to=tmp_path / "out", base=bases["bert"])
    assert artifact.metadata["adapter"]["init"] == "zero_up"
    hidden, _ = _outputs(artifact.path, bases["bert"], "bert", outputs)
    assert (hidden - outputs["bert_seq_bn.hidden"]).abs().max() <= TOLERANCE


def test_legacy_gelu_means_gelu_new(bases, tmp_path):
    # Configs written before adapters (no "version") meant gelu_new by "gelu", as adapters reads them.
    source = _copy("bert_seq_bn-safetensors", tmp_path)
    meta = json.loads((source / af.CONFIG_FILE).read_text())
    del meta["version"]
    meta["config"]["non_linearity"] = "gelu"
    (source / af.CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match='non_linearity="gelu"'):
        af.import_adapter(source, to=tmp_path / "out", base=bases["bert"])


def test_base_of_another_family_is_refused(bases, tmp_path):
    with pytest.raises(IncompatibleBaseError, match="trained on a bert model with hidden size 32"):
        af.import_adapter(FIXTURES / "bert_seq_bn-safetensors", to=tmp_path / "out", base=bases["roberta"])


@pytest.mark.parametrize(
    ("edit", "error", "needle"),
    [
        ("drop layer 1", IncompatibleBaseError, "has weights for 1 layers, the base has 2"),
        ("add a tensor", ArtifactError, "unexpected tensor 'bert.invertible_adapters.bert_seq_bn.F.0.weight'"),
        ("mh_adapter on", ArtifactError, "do not match its positions (attention, ffn)"),
    ],
)
def test_weights_that_do_not_fit_are_refused(edit, error, needle, bases, tmp_path):
    source = _copy("bert_seq_bn-safetensors", tmp_path)
    weights = load_file(str(source / "adapter.safetensors"))
    if edit == "drop layer 1":
        weights = {k: v for k, v in weights.items() if ".layer.1." not in k}
    elif edit == "add a tensor":
        weights["bert.invertible_adapters.bert_seq_bn.F.0.weight"] = torch.zeros(2, 2)
    else:
        _edit_config(source, mh_adapter=True)
    save_file(weights, str(source / "adapter.safetensors"))
    with pytest.raises(error) as info:
        af.import_adapter(source, to=tmp_path / "out", base=bases["bert"])
    assert needle in str(info.value)


def test_unmapped_family_is_refused(bases, tmp_path):
    source = _copy("bert_seq_bn-safetensors", tmp_path)
    meta = json.loads((source / af.CONFIG_FILE).read_text())
    meta["model_type"] = "distilbert"
    (source / af.CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(UnsupportedModelError, match="'distilbert'"):
        af.import_adapter(source, to=tmp_path / "out", base=bases["bert"])


@pytest.mark.parametrize("family", ["bert", "roberta"])
@pytest.mark.parametrize("arch", ["seq_bn", "double_seq_bn"])
def test_round_trip_export_import(family, arch, bases, tmp_path):
    name = f"{family}_{arch}"
    first = af.import_adapter(FIXTURES / f"{name}-safetensors", to=tmp_path / "first", base=bases[family])
    exported = af.export_adapter(first.path, tmp_path / "exported")
    # The export is what adapters itself wrote: same tensor names and values, same config.
    for ours, theirs in (
        ("adapter.safetensors", "adapter.safetensors"),
        ("model_head.safetensors", "model_head.safetensors"),
    ):
        mine, original = load_file(str(exported / ours)), load_file(str(FIXTURES / f"{name}-safetensors" / theirs))
        assert mine.keys() == original.keys()
        assert all(torch.equal(mine[k], original[k]) for k in mine)
    pickled = torch.load(exported / "pytorch_adapter.bin", weights_only=True)
    assert pickled.keys() == load_file(str(exported / "adapter.safetensors")).keys()
    mine_config = json.loads((exported / af.CONFIG_FILE).read_text())
    original_config = json.loads((FIXTURES / f"{name}-safetensors" / af.CONFIG_FILE).read_text())
    assert mine_config["config"] == original_config["config"]
    mine_head = json.loads((exported / af.HEAD_CONFIG_FILE).read_text())["config"]
    original_head = json.loads((FIXTURES / f"{name}-safetensors" / af.HEAD_CONFIG_FILE).read_text())["config"]
    assert mine_head == {**original_head, "dropout_prob": 0.1}

    second = af.import_adapter(exported, to=tmp_path / "second", base=bases[family])
    for key in ("adapter", "head", "base"):
        assert second.metadata[key] == first.metadata[key]
    a, b = first.load_weights(), second.load_weights()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_imported_adapters_fuse(bases, tmp_path):
    # Two published adapters of one placement, converted, then fused like any trained ones.
    parts = [
        af.import_adapter(
            FIXTURES / f"bert_seq_bn-{weights}",
            to=tmp_path / weights,
            base=bases["bert"],
            name=f"published-{weights}",
            with_head=False,
        )
        for weights in ("bin", "safetensors")
    ]
    rows = [
        {"text": text, "label": label}
        for text, label in [
            ("the film was great", "pos"),
            ("it was bad", "neg"),
            ("very good plot", "pos"),
            ("boring and bad", "neg"),
        ]
        * 4
    ]
    result = fuse(
        [p.path for p in parts],
        write_csv(tmp_path / "train.csv", rows),
        task="sentiment",
        dev_data=write_csv(tmp_path / "dev.csv", rows[:4]),
        base=bases["bert"],
        config=TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3),
        out=tmp_path / "fusion",
    )
    assert [a["name"] for a in result.artifact.metadata["adapters"]] == ["published-bin", "published-safetensors"]


def test_export_refuses_what_adapters_cannot_hold(bases, tmp_path):
    artifact = af.import_adapter(
        FIXTURES / "bert_seq_bn-safetensors", to=tmp_path / "a", base=bases["bert"], with_head=False
    )
    out = af.export_adapter(artifact.path, tmp_path / "no-head")
    assert not (out / af.HEAD_CONFIG_FILE).exists()  # a placeholder head is not exported
    with pytest.raises(ConfigError, match="weights format"):
        af.export_adapter(artifact.path, tmp_path / "x", weights_format="pt")


def test_hub_source_is_downloaded_with_endpoint_and_recorded(bases, tmp_path):
    """A repository is read through the project's own verified download path (never
    huggingface_hub's snapshot_download), at the revision asked for, with the token given."""
    with HostileHub() as server:
        served = server.add("org/bert-adapter", FIXTURES / "bert_seq_bn-safetensors")
        artifact = af.import_adapter(
            "org/bert-adapter",
            to=tmp_path / "out",
            base=bases["bert"],
            revision="v1",
            endpoint=server.url,
            token="secret",
            name="sentiment",
            task="sst2",
            cache_dir=tmp_path / "cache",
        )
    assert ("GET", "/api/models/org/bert-adapter/revision/v1?blobs=true") in server.requests
    assert set(server.authorizations) == {"Bearer secret"}
    provenance = artifact.metadata["imported_from"]
    assert (provenance["source"], provenance["revision"], provenance["commit"]) == (
        "org/bert-adapter",
        "v1",
        served.commit,
    )
    assert provenance["endpoint"] == server.url
    assert (artifact.metadata["name"], artifact.metadata["task"]) == ("sentiment", "sst2")


def test_import_from_a_hub_compatible_server(ahl_server, bases, tmp_path):
    from huggingface_hub import HfApi

    client = HfApi(endpoint=ahl_server.url, token=ahl_server.token)
    repo = f"{ahl_server.user}/roberta-double-seq-bn"
    client.create_repo(repo, exist_ok=True)
    commit = client.upload_folder(repo_id=repo, folder_path=FIXTURES / "roberta_double_seq_bn-bin").oid
    artifact = af.import_adapter(
        repo,
        to=tmp_path / "out",
        base=bases["roberta"],
        endpoint=ahl_server.url,
        token=ahl_server.token,
        cache_dir=tmp_path / "hf-cache",
    )
    provenance = artifact.metadata["imported_from"]
    assert (provenance["source"], provenance["commit"], provenance["endpoint"]) == (repo, commit, ahl_server.url)
    assert provenance["files"]["pytorch_adapter.bin"]["sha256"] == af.sha256_file(
        FIXTURES / "roberta_double_seq_bn-bin" / "pytorch_adapter.bin"
    )

    fetch = dict(endpoint=ahl_server.url, token=ahl_server.token, cache_dir=tmp_path / "hf-cache")
    with pytest.raises(NotFoundError, match="has no revision 'v9.9.9'"):
        af.fetch(repo, revision="v9.9.9", **fetch)
    with pytest.raises(NotFoundError, match="not found on"):
        af.fetch(f"{ahl_server.user}/no-such-adapter", **fetch)


def test_unreachable_hub_is_one_clear_error(tmp_path):
    with pytest.raises(AhlError) as err:
        af.fetch("org/adapter", endpoint="http://127.0.0.1:9", cache_dir=tmp_path)
    message = str(err.value)
    assert message.startswith("cannot download org/adapter (and no local directory has that name): cannot reach")
    assert message.count("org/adapter") == 1 and message.count("http://127.0.0.1:9") == 1
    # an import error, exit 2, without a registry's advice about cached versions and AHL_OFFLINE
    assert isinstance(err.value, UnreachableError) and err.value.exit_code == 2
    assert message.endswith("; check the network and HF_ENDPOINT, or import from a local directory")
    assert "cache" not in message and "AHL_OFFLINE" not in message


@pytest.mark.parametrize("source", ["missing-local-dir", "./missing", "~/missing-adapter", "{tmp}/missing/dir"])
def test_import_of_a_missing_local_directory_says_so(tmp_path, source):
    """A source that can only be a path is never looked up on the Hub (which, unreachable, would
    be reported instead): one line saying that the directory does not exist."""
    source = source.format(tmp=tmp_path)
    proc = ahl_in_process(
        "import", source, "--to", tmp_path / "out", env={"HF_ENDPOINT": "http://127.0.0.1:9", "AHL_OFFLINE": None}
    )
    assert_one_line_error(proc, f"{source} does not exist: an adapters directory holds adapter_config.json")
    assert proc.returncode == NotFoundError.exit_code and not (tmp_path / "out").exists()
    (tmp_path / "file").write_text("not a directory")
    assert_one_line_error(ahl_in_process("import", tmp_path / "file", "--to", tmp_path / "out"), "is a file")


def test_cli_import_push_export_and_refusal(tmp_path):
    base = FIXTURES / "bases" / "bert"
    registry = tmp_path / "registry"
    proc = ahl(
        "import",
        FIXTURES / "bert_double_seq_bn-bin",
        "--base",
        base,
        "--to",
        tmp_path / "imported",
        "--registry",
        registry,
        "--task",
        "sentiment",
    )
    assert proc.returncode == 0, proc.stderr
    assert "houlsby" in proc.stdout and "pushed" in proc.stdout
    proc = ahl("export", tmp_path / "imported", "--format", "adapters", tmp_path / "exported")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "exported" / "pytorch_adapter.bin").is_file()
    proc = ahl_in_process("import", FIXTURES / "bert_lora-safetensors", "--base", base, "--to", tmp_path / "lora")
    assert_one_line_error(proc, "LoRA")
    assert proc.returncode == ConfigError.exit_code


def test_fusion_over_published_adapters_round_trips_through_ahl_serve(ahl_server, bases, tmp_path, monkeypatch):
    """adapters:REPO sources on an ahl serve are converted on the way in and fused; the fusion is
    pushed and pulled back into an empty cache like any other, and predicts identically."""
    from huggingface_hub import HfApi

    from adapterhub_lite import hub

    monkeypatch.setenv("AHL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AHL_TOKEN", ahl_server.token)
    client = HfApi(endpoint=ahl_server.url, token=ahl_server.token)
    repo = f"{ahl_server.user}/published-bert-seq-bn"
    client.create_repo(repo, exist_ok=True)
    client.upload_folder(repo_id=repo, folder_path=FIXTURES / "bert_seq_bn-bin")
    served = hub.fetch(f"adapters:{repo}", to=tmp_path / "served", base=bases["bert"], registry=ahl_server.url)
    assert read_artifact(served).metadata["imported_from"]["endpoint"] == ahl_server.url
    # In any mix: the second adapter is converted from a local directory (another name).
    local = af.import_adapter(
        FIXTURES / "bert_seq_bn-safetensors",
        to=tmp_path / "local",
        base=bases["bert"],
        name="local-copy",
        with_head=False,
    ).path
    parts = [served, local]
    rows = [
        {"text": text, "label": label}
        for text, label in [
            ("the film was great", "pos"),
            ("it was bad", "neg"),
            ("very good plot", "pos"),
            ("boring and bad", "neg"),
        ]
        * 4
    ]
    result = fuse(
        parts,
        write_csv(tmp_path / "train.csv", rows),
        task="sentiment",
        dev_data=write_csv(tmp_path / "dev.csv", rows[:4]),
        base=bases["bert"],
        config=TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3),
        out=tmp_path / "fusion",
    )
    assert [a["name"] for a in result.artifact.metadata["adapters"]] == ["bert_seq_bn", "local-copy"]
    entry = hub.push(result.artifact.path, registry=ahl_server.url)
    monkeypatch.setenv("AHL_CACHE", str(tmp_path / "empty-cache"))
    _, pulled = hub.pull(str(entry.ref), registry=ahl_server.url, to=tmp_path / "pulled")
    texts = ["the plot was great", "bad"]
    expected = [p.probabilities for p in predict(load(result.artifact.path, base=bases["bert"]), texts)]
    assert [p.probabilities for p in predict(load(pulled, base=bases["bert"]), texts)] == expected
