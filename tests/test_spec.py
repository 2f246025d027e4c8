"""The artifact format specification (registry/SPEC.md) and its JSON Schema agree with the code.

Artifacts are written with a tiny randomly-initialised BERT (H=32, 2 layers), so these tests need
no model download and run in a few seconds.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from jsonschema import Draft202012Validator
from safetensors import safe_open
from transformers import BertConfig, BertModel

from adapterhub_lite import base as base_mod
from adapterhub_lite.api import artifact_metadata
from adapterhub_lite.artifact import read_artifact, render_model_card, write_artifact
from adapterhub_lite.config import AdapterConfig, HeadConfig, TrainConfig
from adapterhub_lite.model import AdapterModel
from adapterhub_lite.registry.format.refs import SEGMENT
from adapterhub_lite.training.data import Columns
from adapterhub_lite.training.loop import FitResult

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "registry" / "SPEC.md"
SCHEMA_PATH = ROOT / "registry" / "schema" / "adapter.schema.json"
EXAMPLE = ROOT / "registry" / "examples" / "adapter.json"

H, LAYERS, REDUCTION = 32, 2, 16


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def tiny_base() -> base_mod.BaseModel:
    torch.manual_seed(0)
    enc = BertModel(
        BertConfig(hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=37, vocab_size=99)
    )
    return base_mod.from_encoder(enc, None, model_id="tiny-bert")


def metadata_like_train(
    model: AdapterModel,
    base: base_mod.BaseModel,
    *,
    name: str,
    task: str,
    adapter: AdapterConfig | None,
    head: HeadConfig,
) -> dict[str, Any]:
    """The metadata dict as ``api.train`` builds it (without running training)."""
    config = TrainConfig(mode="adapter" if adapter else "head_only", epochs=1)
    history = [{"epoch": 1, "step": 3, "train_loss": 0.69, "dev_accuracy": 0.5, "dev_macro_f1": 0.33}]
    fit_result = FitResult(history=history, best_epoch=1, best_metrics={"accuracy": 0.5, "macro_f1": 0.33})
    record = {"source": "train.csv", "sha256": hashlib.sha256(b"x").hexdigest(), "examples": 10}
    return artifact_metadata(
        kind="adapter",
        name=name,
        task=task,
        base=base,
        head=head,
        columns=Columns(),
        config=config,
        extra={"adapter": adapter.to_dict() if adapter else None},
        fit_result=fit_result,
        data={"train": record, "dev": {**record, "source": "train.csv (dev split)"}},
        parameters=model.count_parameters(),
    )


def write_tiny(out: Path, base: base_mod.BaseModel, preset: str | None, **meta_extra: Any):
    torch.manual_seed(1)
    model = AdapterModel(base)
    adapter = AdapterConfig.from_preset(preset) if preset else None
    if adapter:
        model.add_adapter("tiny", adapter)
    head = HeadConfig(label_names=["a", "b"])
    model.set_head(head)
    metadata = {
        **metadata_like_train(model, base, name="tiny", task="tiny-task", adapter=adapter, head=head),
        **meta_extra,
    }
    metrics = json.dumps(metadata["training"]["history"][0]).encode() + b"\n"
    artifact = write_artifact(
        out, metadata, model.artifact_state_dict(), render_model_card(metadata), extra_files={"metrics.jsonl": metrics}
    )
    model.remove_hooks()
    return artifact


def errors(validator: Draft202012Validator, instance: Any) -> list[str]:
    return [e.message for e in validator.iter_errors(instance)]


# -- (a) the shipped example ---------------------------------------------------------------------


def test_example_validates(validator):
    example = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert errors(validator, example) == []
    assert example["format_version"] == "1.0"


# -- (b) freshly written artifacts -----------------------------------------------------------------


@pytest.mark.parametrize("preset", ["pfeiffer", "houlsby", None])
def test_written_metadata_validates(validator, tiny_base, tmp_path, preset):
    artifact = write_tiny(tmp_path / "a", tiny_base, preset)
    on_disk = json.loads((tmp_path / "a" / "adapter.json").read_text(encoding="utf-8"))
    assert on_disk == artifact.metadata
    assert errors(validator, on_disk) == []


def test_files_record_covers_every_file_but_metadata(tiny_base, tmp_path):
    out = tmp_path / "a"
    meta = write_tiny(out, tiny_base, "pfeiffer").metadata
    files = {p.name for p in out.iterdir()}
    assert files == {"adapter.json", "adapter.safetensors", "README.md", "metrics.jsonl"}
    assert set(meta["files"]) == files - {"adapter.json"}
    for name, record in meta["files"].items():
        data = (out / name).read_bytes()
        assert record == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_fingerprint_digest_as_specified(tiny_base):
    """Recompute weights_sha256 from SPEC.md section 3 without the library's helper."""
    digest = hashlib.sha256()
    params = dict(tiny_base.encoder.named_parameters())
    for name in sorted(params):
        array = params[name].detach().cpu().numpy()
        shape = repr(tuple(int(d) for d in array.shape))  # "(32,)", "(99, 32)"
        digest.update(f"{name}|torch.float32|{shape}\n".encode())
        digest.update(np.ascontiguousarray(array, dtype="<f4").tobytes())
    assert digest.hexdigest() == tiny_base.fingerprint.weights_sha256
    assert "(32,)" in f"{tuple(params['embeddings.LayerNorm.bias'].shape)}"
    assert str(params["embeddings.LayerNorm.bias"].dtype) == "torch.float32"


def test_model_card_header(tiny_base, tmp_path):
    artifact = write_tiny(tmp_path / "a", tiny_base, "pfeiffer")
    text = (artifact.path / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["library_name"] == "adapterhub-lite"
    assert header["base_model"] == "tiny-bert"
    assert header["base_model_relation"] == "adapter"
    assert header["pipeline_tag"] == "text-classification"
    tags = {"task:tiny-task", "adapter:pfeiffer", "classification", "base_model:adapter:tiny-bert"}
    assert tags <= set(header["tags"])
    assert "datasets" not in header  # a task name is no Hub dataset id (SPEC 8)
    result = header["model-index"][0]["results"][0]
    assert header["model-index"][0]["name"] == "tiny"
    assert result["dataset"] == {"name": "tiny-task", "type": "tiny-task", "split": "dev"}
    assert {m["type"] for m in result["metrics"]} == {"accuracy", "macro_f1"}


# -- (c) schema violations -------------------------------------------------------------------------


def _set(path: str, value: Any):
    def mutate(meta: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = meta
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


def _drop(path: str):
    def mutate(meta: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = meta
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


def _files(value: dict[str, Any]):
    def mutate(meta: dict[str, Any]) -> None:
        meta["files"] = {**meta["files"], **value}

    return mutate


BAD = {
    "short sha256": _set("base.fingerprint.weights_sha256", "abc123"),
    "uppercase sha256": _set("base.fingerprint.weights_sha256", "A" * 64),
    "sha256 with newline": _set("base.fingerprint.weights_sha256", "a" * 64 + "\n"),
    "bad file sha256": _files({"README.md": {"sha256": "z" * 64, "size": 1}}),
    "file without size": _files({"README.md": {"sha256": "a" * 64}}),
    "unknown kind": _set("kind", "fusion"),
    "wrong positions value": _set("adapter.positions", ["output"]),
    "empty positions": _set("adapter.positions", []),
    "repeated position": _set("adapter.positions", ["ffn", "ffn"]),
    "positions not a list": _set("adapter.positions", "ffn"),
    "unknown non_linearity": _set("adapter.non_linearity", "sigmoid"),
    "unknown init": _set("adapter.init", "xavier"),
    "reduction factor 0": _set("adapter.reduction_factor", 0),
    "reduction factor float": _set("adapter.reduction_factor", 16.5),
    "unknown head type": _set("head.type", "tagging"),
    "unknown pooling": _set("head.pooling", "max"),
    "one label": _set("head.label_names", ["a"]),
    "format 2.0": _set("format_version", "2.0"),
    "format as number": _set("format_version", 1.0),
    "bad name": _set("name", "-leading-dash"),
    "name with space": _set("name", "my adapter"),
    "name too long": _set("name", "a" * 97),
    "name with newline": _set("name", "trec\n"),
    "bad task": _set("task", "task/sub"),
    "version not semver": _set("version", "v1"),
    "hidden size string": _set("base.fingerprint.hidden_size", "384"),
    "missing fingerprint": _drop("base.fingerprint"),
    "weights not listed": lambda meta: meta["files"].pop("adapter.safetensors"),
    "path in files": _files({"../evil": {"sha256": "a" * 64, "size": 1}}),
    "metadata lists itself": _files({"adapter.json": {"sha256": "a" * 64, "size": 1}}),
    **{f"missing {key}": _drop(key) for key in ("format_version", "kind", "name", "task", "base", "head", "files")},
}


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", sorted(BAD))
def test_schema_rejects(validator, example, case):
    meta = copy.deepcopy(example)
    BAD[case](meta)
    assert errors(validator, meta), f"schema accepted: {case}"


@pytest.mark.parametrize("value", [None, "1.0.0", "0.3.1-rc.1", "2.0.0+build.5"])
def test_schema_accepts_version(validator, example, value):
    assert errors(validator, {**example, "version": value}) == []


def test_schema_accepts_unknown_fields_and_minor_versions(validator, example):
    meta = copy.deepcopy(example)
    meta["format_version"] = "1.7"
    meta["future_top"] = {"anything": [1, 2]}
    meta["base"]["future"] = 1
    meta["base"]["fingerprint"]["future"] = "x"
    meta["adapter"]["future"] = True
    meta["head"]["future"] = None
    meta["files"]["README.md"]["future"] = 0
    meta["training"]["future"] = 0
    assert errors(validator, meta) == []


def test_schema_accepts_head_only_and_regression(validator, example):
    meta = copy.deepcopy(example)
    meta["adapter"] = None
    meta["head"] = {**meta["head"], "type": "regression", "label_names": []}
    assert errors(validator, meta) == []


# -- (d) tensor names and shapes as SPEC.md states them ------------------------------------------


def spec_tensors(H: int, L: int, reduction: int, positions: list[str] | None, K: int) -> dict[str, list[int]]:
    """Expand the tensor table of SPEC.md section 4 for concrete sizes."""
    r = max(1, H // reduction)
    rows = re.findall(
        r"^\| `((?:adapter|head)\.[^`]+)` \| `\[([^\]]*)\]` \|", SPEC.read_text(encoding="utf-8"), flags=re.MULTILINE
    )
    assert len(rows) == 8, rows
    sizes = {"H": H, "r": r, "K": K}
    out = {}
    for template, shape in rows:
        dims = [sizes[d.strip()] for d in shape.split(",")]
        if template.startswith("adapter."):
            for layer in range(L):
                for position in positions or []:
                    out[template.replace("<l>", str(layer)).replace("<p>", position)] = dims
        else:
            out[template] = dims
    return out


@pytest.mark.parametrize("preset, positions", [("pfeiffer", ["ffn"]), ("houlsby", ["attention", "ffn"]), (None, None)])
def test_tensor_names_and_shapes_match_spec(tiny_base, tmp_path, preset, positions):
    artifact = write_tiny(tmp_path / "a", tiny_base, preset)
    assert (artifact.metadata["adapter"] or {}).get("positions") == positions
    with safe_open(str(artifact.weights_path), "pt") as handle:
        found = {k: list(handle.get_slice(k).get_shape()) for k in handle.keys()}
        dtypes = {handle.get_slice(k).get_dtype() for k in handle.keys()}
        assert handle.metadata() == {"format": "pt"}
    expected = spec_tensors(H, LAYERS, REDUCTION, positions, K=2)
    assert found == expected
    assert dtypes == {"F32"}
    if preset:
        assert found["adapter.0.ffn.down.weight"] == [2, 32]  # r = max(1, 32 // 16) = 2
        assert len(found) == 4 * LAYERS * len(positions) + 4


def test_spec_documents_required_keys_and_name_pattern():
    from adapterhub_lite import artifact

    text = SPEC.read_text(encoding="utf-8")
    for key in artifact.REQUIRED_KEYS:
        assert re.search(rf"^\| `{key}` \|[^|]*\| yes \|", text, flags=re.MULTILINE), key
    assert SEGMENT.pattern in text  # the name rule code and spec share
    assert f'`"{artifact.FORMAT_VERSION}"`' in text


# -- (e) unknown fields survive a round trip -------------------------------------------------------


@pytest.mark.parametrize("cls", [AdapterConfig, HeadConfig, TrainConfig])
def test_config_round_trip_keeps_unknown_fields(cls):
    d = json.loads(json.dumps(cls().to_dict()))  # as stored: tuples become lists
    back = cls.from_dict(d | {"future_field": 1}).to_dict()
    assert back["future_field"] == 1
    assert json.loads(json.dumps(back)) == d | {"future_field": 1}


def test_adapter_config_round_trip_from_preset():
    d = json.loads(json.dumps(AdapterConfig.from_preset("houlsby").to_dict()))
    back = AdapterConfig.from_dict(d | {"future_field": 1}).to_dict()
    assert json.loads(json.dumps(back)) == d | {"future_field": 1}


def test_artifact_keeps_unknown_metadata_fields(tiny_base, tmp_path):
    write_tiny(tmp_path / "a", tiny_base, "pfeiffer", future_field={"x": [1]})
    assert read_artifact(tmp_path / "a").metadata["future_field"] == {"x": [1]}
