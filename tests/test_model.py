"""Adapters inside every supported family: placement, equivalence at zero init, freezing."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel

from adapterhub_lite import AdapterConfig, AdapterModel, HeadConfig, TrainConfig, UnsupportedModelError
from adapterhub_lite.base import from_encoder
from adapterhub_lite.modules.heads import head_loss
from adapterhub_lite.training.data import Encoded
from adapterhub_lite.training.loop import fit

from .conftest import FAMILIES, tiny_base, tiny_config


def _batch(seed: int = 0, vocab: int = 99, batch: int = 3, seq: int = 11) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    mask[0, seq // 2 :] = 0  # one padded row, so masking matters
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("preset", ["pfeiffer", "houlsby"])
def test_zero_up_projection_leaves_base_output_unchanged(family, preset):
    base = tiny_base(family)
    batch = _batch()
    with torch.no_grad():
        reference = base.encoder(**batch)[0]
        model = AdapterModel(base)
        model.add_adapter("a", AdapterConfig.from_preset(preset, init="zero_up"))
        zero_up = model.encode(**batch)
        model.add_adapter("b", AdapterConfig.from_preset(preset, init="bert"))
        for param in model.adapters["b"].parameters():
            param.normal_(0.0, 0.5)  # large enough to move the output clearly
        random_up = model.encode(**batch)
    assert (zero_up - reference).abs().max().item() <= 1e-5
    # the same hooks with a non-zero up-projection do change the output: the adapter is live
    assert (random_up - reference).abs().max().item() > 1e-4


@pytest.mark.parametrize("preset,positions", [("pfeiffer", {"ffn"}), ("houlsby", {"attention", "ffn"})])
def test_presets_place_adapters_as_in_the_paper(preset, positions):
    model = AdapterModel(tiny_base("bert"))
    model.add_adapter("a", AdapterConfig.from_preset(preset))
    layers = model.adapters["a"]
    assert len(layers) == 2
    assert all(set(layer.keys()) == positions for layer in layers)
    # reduction factor 16 on hidden size 32 -> bottleneck 2
    assert layers[0]["ffn"].down.weight.shape == (2, 32)


def test_pfeiffer_adapter_reads_and_feeds_the_pretrained_layer_norm():
    """At a Pfeiffer site the feed-forward block yields LN(s + A(LN(s))), s = h + x."""
    model = AdapterModel(tiny_base("bert"))
    model.add_adapter("a", AdapterConfig.from_preset("pfeiffer", init="bert"))
    block = model.encoder.encoder.layer[0].output  # dense -> dropout -> LayerNorm(h + x)
    seen: dict[str, object] = {}
    handle = block.register_forward_hook(lambda module, args, out: seen.update(args=args, out=out))
    with torch.no_grad():
        model.encode(**_batch())
        handle.remove()
        intermediate, x = seen["args"]
        s = block.dense(intermediate) + x
        pretrained = block.LayerNorm.forward(s)
        expected = block.LayerNorm.forward(s + model.adapters["a"][0]["ffn"](pretrained))
    assert torch.equal(seen["out"], expected)
    assert not torch.equal(expected, pretrained)


def test_each_position_changes_the_output_on_its_own():
    base = tiny_base("bert")
    batch = _batch()
    with torch.no_grad():
        reference = base.encoder(**batch)[0]
        for position in ("attention", "ffn"):
            model = AdapterModel(tiny_base("bert"))
            cfg = AdapterConfig(positions=(position,), original_ln_before=False, init="bert")
            model.add_adapter(position, cfg)
            for param in model.adapters[position].parameters():
                param.normal_(0.0, 0.5)
            assert (model.encode(**batch) - reference).abs().max() > 1e-4
            model.remove_hooks()


def test_unsupported_family_lists_the_supported_ones():
    encoder = AutoModel.from_config(tiny_config("bert"))
    encoder.config.model_type = "gpt2"
    with pytest.raises(UnsupportedModelError) as err:
        from_encoder(encoder, None, model_id="x")
    for family in FAMILIES:
        assert family in str(err.value)


@pytest.mark.parametrize("non_linearity", ["relu", "gelu", "silu", "swish", "leaky_relu", "tanh"])
def test_every_non_linearity_builds_and_runs(non_linearity):
    model = AdapterModel(tiny_base("bert"))
    model.add_adapter("a", AdapterConfig.from_preset("pfeiffer", non_linearity=non_linearity))
    model.set_head(HeadConfig(label_names=["x", "y", "z"]))
    assert model(**_batch()).shape == (3, 3)


def _encoded(n: int, seed: int, head_type: str, vocab: int = 99) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    features, targets = [], []
    for _i in range(n):
        length = int(torch.randint(4, 12, (1,), generator=g))
        ids = torch.randint(5, vocab, (length,), generator=g).tolist()
        features.append({"input_ids": ids, "attention_mask": [1] * length})
        targets.append(float(ids[0] % 3) if head_type == "regression" else ids[0] % 2)
    return Encoded(features, targets, [len(f["input_ids"]) for f in features])


@pytest.mark.parametrize("mode", ["adapter", "head_only"])
def test_training_changes_only_trainable_parameters(mode):
    model = AdapterModel(tiny_base("bert"))
    model.add_adapter("a", AdapterConfig.from_preset("pfeiffer"))
    model.set_head(HeadConfig(label_names=["0", "1"]))
    base_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    adapter_before = {k: v.clone() for k, v in model.adapters.state_dict().items()}
    params = model.set_trainable(mode)
    trainable_ids = {id(p) for p in params}
    expected = list(model.head.parameters()) + (list(model.adapters["a"].parameters()) if mode == "adapter" else [])
    assert trainable_ids == {id(p) for p in expected}
    assert not any(id(p) in trainable_ids for p in model.encoder.parameters())

    fit(
        model,
        params,
        _encoded(40, 0, "classification"),
        _encoded(12, 1, "classification"),
        "classification",
        TrainConfig(epochs=2, batch_size=8, learning_rate=1e-2, device="cpu"),
        pad_id=0,
    )

    for key, tensor in model.encoder.state_dict().items():
        assert torch.equal(tensor, base_before[key]), f"base parameter {key} changed"
    changed = any(not torch.equal(v, adapter_before[k]) for k, v in model.adapters.state_dict().items())
    assert changed == (mode == "adapter")


def test_optimizer_sees_only_adapter_and_head(monkeypatch):
    """The optimizer is built from exactly the parameters set_trainable returns."""
    seen: list[int] = []
    real = torch.optim.AdamW

    def spy(params, **kwargs):
        params = list(params)
        seen.extend(id(p) for p in params)
        return real(params, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", spy)
    model = AdapterModel(tiny_base("bert"))
    model.add_adapter("a", AdapterConfig.from_preset("houlsby"))
    model.set_head(HeadConfig(label_names=["0", "1"]))
    params = model.set_trainable("adapter")
    fit(
        model,
        params,
        _encoded(16, 0, "classification"),
        _encoded(8, 1, "classification"),
        "classification",
        TrainConfig(epochs=1, batch_size=8, device="cpu"),
        pad_id=0,
    )
    allowed = {id(p) for p in list(model.adapters.parameters()) + list(model.head.parameters())}
    assert seen and set(seen) == allowed


@pytest.mark.parametrize("head_type", ["classification", "regression", "multiple_choice"])
def test_heads_shapes_and_losses(head_type):
    model = AdapterModel(tiny_base("bert"))
    model.add_adapter("a", AdapterConfig.from_preset("pfeiffer"))
    labels = ["a", "b", "c", "d"] if head_type == "classification" else []
    model.set_head(HeadConfig(type=head_type, label_names=labels))
    batch = _batch(batch=4)
    if head_type == "multiple_choice":
        batch = {k: v.unsqueeze(1).expand(-1, 5, -1) for k, v in batch.items()}  # 5 candidates
        logits = model(**batch)
        assert logits.shape == (4, 5)
        targets = torch.tensor([0, 1, 2, 4])
    elif head_type == "regression":
        logits = model(**batch)
        assert logits.shape == (4,)
        targets = torch.tensor([0.1, 0.5, 2.0, -1.0])
    else:
        logits = model(**batch)
        assert logits.shape == (4, 4)
        targets = torch.tensor([0, 1, 2, 3])
    loss = head_loss(head_type, logits, targets)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.adapters["a"][0]["ffn"].up.weight.grad is not None


def test_models_sharing_one_encoder_do_not_leak_adapters():
    base = tiny_base("bert")
    batch = _batch()
    with torch.no_grad():
        reference = base.encoder(**batch)[0]
        first = AdapterModel(base)
        first.add_adapter("a", AdapterConfig.from_preset("pfeiffer"))
        for param in first.adapters["a"].parameters():
            param.normal_(0.0, 0.5)
        alone = first.encode(**batch)
        second = AdapterModel(base)  # no adapter: must see the plain base
        assert torch.equal(second.encode(**batch), reference)
        assert torch.equal(base.encoder(**batch)[0], reference)  # outside a model run: plain base
        assert torch.equal(first.encode(**batch), alone)


def test_frozen_base_runs_without_dropout_unless_asked():
    model = AdapterModel(tiny_base("bert"))
    model.add_adapter("a", AdapterConfig.from_preset("pfeiffer"))
    model.set_head(HeadConfig(label_names=["0", "1"]))
    model.set_trainable("adapter", base_dropout=False)
    model.train()
    assert not model.encoder.training and model.head.training
    batch = _batch()
    assert torch.equal(model.encode(**batch), model.encode(**batch))  # deterministic: no dropout
    model.set_trainable("adapter", base_dropout=True)
    model.train()
    assert model.encoder.training
    model.set_trainable("full", base_dropout=False)  # full fine-tuning keeps its dropout
    model.train()
    assert model.encoder.training


def test_cpu_inference_slices_large_batches_with_the_same_result():
    model = AdapterModel(tiny_base("bert"))
    for name in ("a", "b"):
        model.add_adapter(name, AdapterConfig.from_preset("pfeiffer"))
        for param in model.adapters[name].parameters():
            torch.nn.init.normal_(param, 0.0, 0.3)
    model.add_fusion("f", ["a", "b"])
    model.set_head(HeadConfig(label_names=["0", "1"]))
    model.eval()
    calls: list[int] = []
    model.encoder.register_forward_pre_hook(
        lambda _, args, kwargs: calls.append(kwargs["input_ids"].size(0)), with_kwargs=True
    )
    batch = _batch(batch=5)
    batch["token_type_ids"] = torch.randint(0, 2, batch["input_ids"].shape, generator=torch.Generator().manual_seed(1))

    def run(slice_tokens: int | None) -> tuple[torch.Tensor, dict[str, list]]:
        model.inference_slice_tokens = slice_tokens
        calls.clear()
        with torch.no_grad(), model.recording_activations() as acts:
            return model(**batch), acts

    whole, whole_acts = run(None)
    assert calls == [5]
    sliced, sliced_acts = run(2 * 11)  # two sequences of 11 tokens per call
    assert calls == [2, 2, 1]
    assert (sliced - whole).abs().max().item() <= 1e-6
    assert sliced_acts.keys() == whole_acts.keys()
    for key, (total, tokens) in whole_acts.items():  # padding stays out of every slice's record
        assert sliced_acts[key][1] == tokens
        assert torch.allclose(sliced_acts[key][0], total, atol=1e-5)
    calls.clear()
    model(**batch).sum().backward()  # with gradients: one call, whatever the budget
    assert calls == [5]
