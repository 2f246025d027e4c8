"""AdapterFusion: the fast form equals the paper's form, one-hot attention reproduces one adapter,
training touches only fusion and head, incompatible placements fail clearly."""

from __future__ import annotations

import pytest
import torch

from adapterhub_lite import AdapterConfig, AdapterModel, ConfigError, HeadConfig, TrainConfig
from adapterhub_lite.config import FusionConfig
from adapterhub_lite.modules.adapter import BottleneckAdapter
from adapterhub_lite.modules.fusion import CHUNK_TOKENS, FusionLayer, StackedAdapters, fuse, fuse_reference
from adapterhub_lite.training.loop import fit

from .conftest import tiny_base
from .test_model import _batch, _encoded


def _randomise(module: torch.nn.Module, std: float = 0.3) -> None:
    with torch.no_grad():
        for param in module.parameters():
            param.normal_(0.0, std)


MIXED = [(4, "relu"), (16, "gelu"), (8, "tanh"), (2, "silu")]  # reduction factors and non-linearities


@pytest.mark.parametrize("shapes", [[(16, "relu"), (16, "relu")], MIXED])
def test_fast_fusion_equals_the_paper_form(shapes):
    torch.manual_seed(0)
    hidden = 32
    adapters = [BottleneckAdapter(hidden, AdapterConfig(reduction_factor=rf, non_linearity=act)) for rf, act in shapes]
    for adapter in adapters:
        _randomise(adapter)
    layer = FusionLayer(hidden, FusionConfig(temperature=0.7))
    _randomise(layer, 0.2)  # far from the identity init: every term of the algebra matters
    u = torch.randn(3, 7, hidden)
    fast, attention = fuse(u, StackedAdapters(adapters), layer)
    assert (fast - fuse_reference(u, adapters, layer)).abs().max().item() <= 1e-4
    assert attention.shape == (3, 7, len(adapters))
    assert torch.allclose(attention.sum(-1), torch.ones(3, 7))


@pytest.mark.parametrize("shapes", [[(16, "relu")] * 5, MIXED])
def test_chunked_inference_equals_the_paper_form_and_the_unchunked_pass(shapes):
    """Without a gradient, more tokens than one chunk go through in chunks: same outputs."""
    torch.manual_seed(3)
    hidden = 32
    adapters = [BottleneckAdapter(hidden, AdapterConfig(reduction_factor=rf, non_linearity=act)) for rf, act in shapes]
    for adapter in adapters:
        _randomise(adapter)
    layer = FusionLayer(hidden, FusionConfig(temperature=0.7))
    _randomise(layer, 0.2)
    u = torch.randn(5, CHUNK_TOKENS // 2 + 3, hidden)  # 2.5 chunks and a ragged tail
    stack = StackedAdapters(adapters)
    with torch.no_grad():
        chunked, attention = fuse(u, stack, layer)
        reference = fuse_reference(u, adapters, layer)
    whole, whole_attention = fuse(u, stack, layer)  # gradients enabled: one pass over every token
    assert (chunked - reference).abs().max().item() <= 1e-4
    assert (chunked - whole).abs().max().item() <= 1e-5
    assert attention.shape == (5, u.size(1), len(adapters))
    assert (attention - whole_attention).abs().max().item() <= 1e-6


@pytest.mark.parametrize(("shapes", "temperature"), [([(16, "relu")] * 3, 1.0), (MIXED, 0.7)])
def test_fast_fusion_gradients_equal_the_paper_form(shapes, temperature):
    torch.manual_seed(1)
    hidden = 32
    adapters = [BottleneckAdapter(hidden, AdapterConfig(reduction_factor=rf, non_linearity=act)) for rf, act in shapes]
    for adapter in adapters:
        _randomise(adapter)
        adapter.requires_grad_(False)  # frozen, as in fusion training: the stacked weights are cached
    layer = FusionLayer(hidden, FusionConfig(temperature=temperature))
    _randomise(layer, 0.2)
    u = torch.randn(3, 7, hidden)
    target = torch.randn(3, 7, hidden)

    def grads(run):
        layer.zero_grad(set_to_none=True)
        x = u.clone().requires_grad_(True)
        (run(x) * target).sum().backward()
        # b_k cancels in the softmax: its gradient is zero (None where it is never used)
        out = {k: torch.zeros_like(p) if p.grad is None else p.grad for k, p in layer.named_parameters()}
        return {**out, "u": x.grad}

    stack = StackedAdapters(adapters)
    for _ in range(2):  # the second pass reuses the cached stack
        fast = grads(lambda x: fuse(x, stack, layer)[0])
        slow = grads(lambda x: fuse_reference(x, adapters, layer))
        for name, grad in slow.items():
            assert (fast[name] - grad).abs().max().item() <= 1e-4, name


def test_cached_stacks_follow_weight_changes():
    torch.manual_seed(2)
    hidden = 16
    adapters = [BottleneckAdapter(hidden, AdapterConfig(reduction_factor=4)) for _ in range(2)]
    for adapter in adapters:
        _randomise(adapter)
    layer = FusionLayer(hidden, FusionConfig())
    _randomise(layer, 0.2)
    stack, u = StackedAdapters(adapters), torch.randn(5, hidden)
    with torch.inference_mode():
        fuse(u, stack, layer)  # fills the caches
    with torch.no_grad():
        adapters[1].up.weight.add_(0.5)
        layer.value.weight.mul_(2.0)
    with torch.inference_mode():
        fast = fuse(u, stack, layer)[0]
    assert (fast - fuse_reference(u, adapters, layer)).abs().max().item() <= 1e-4
    layer.requires_grad_(True)
    fuse(u, stack, layer)[0].sum().backward()  # stacks built under inference_mode still train
    assert layer.query.weight.grad is not None


def _model_with(presets: list[str], seed: int = 0) -> AdapterModel:
    torch.manual_seed(seed)
    model = AdapterModel(tiny_base("bert"))
    for i, preset in enumerate(presets):
        model.add_adapter(f"a{i}", AdapterConfig.from_preset(preset))
        _randomise(model.adapters[f"a{i}"], 0.3)
    return model


@pytest.mark.parametrize("preset", ["pfeiffer", "houlsby"])
def test_value_identity_and_one_hot_attention_reproduce_that_adapter(preset):
    model = _model_with([preset, preset, preset])
    chosen, hidden = 1, model.hidden_size
    direction = torch.nn.functional.normalize(torch.randn(hidden), dim=0)
    with torch.no_grad():
        # Make adapter `chosen` win every softmax by a huge margin: Q is a fixed large vector along
        # `direction` and only the chosen adapter's update has a large component along it.
        for layer in model.adapters[f"a{chosen}"]:
            for adapter in layer.values():
                adapter.up.bias.add_(direction * 50.0)
        batch = _batch()
        model.active = f"a{chosen}"
        alone = model.encode(**batch)
        model.add_fusion("f", ["a0", "a1", "a2"])
        for sites in model.fusions["f"]:
            for fusion in sites.values():
                fusion.value.weight.copy_(torch.eye(hidden))
                fusion.query.weight.zero_()
                fusion.query.bias.copy_(direction * 1e4)
                fusion.key.weight.copy_(torch.eye(hidden))
        fused = model.encode(**batch)
    assert (fused - alone).abs().max().item() <= 1e-5


def test_zero_up_adapters_fused_leave_the_base_unchanged():
    base = tiny_base("bert")
    model = AdapterModel(base)
    for name in ("a", "b"):
        model.add_adapter(name, AdapterConfig.from_preset("pfeiffer", init="zero_up"))
    model.add_fusion("f", ["a", "b"])
    batch = _batch()
    with torch.no_grad():
        assert (model.encode(**batch) - base.encoder(**batch)[0]).abs().max().item() <= 1e-5


def test_fusion_training_changes_only_fusion_and_head():
    model = _model_with(["pfeiffer", "pfeiffer"])
    model.add_fusion("f", ["a0", "a1"])
    model.set_head(HeadConfig(label_names=["0", "1"]))
    base_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    adapters_before = {k: v.clone() for k, v in model.adapters.state_dict().items()}
    fusion_before = {k: v.clone() for k, v in model.fusions.state_dict().items()}
    params = model.set_trainable("fusion")
    expected = list(model.fusions["f"].parameters()) + list(model.head.parameters())
    assert {id(p) for p in params} == {id(p) for p in expected}

    fit(
        model,
        params,
        _encoded(40, 0, "classification"),
        _encoded(12, 1, "classification"),
        "classification",
        TrainConfig(mode="fusion", epochs=2, batch_size=8, learning_rate=1e-2, device="cpu"),
        pad_id=0,
        regularizer=model.regularization,
    )

    assert all(torch.equal(v, base_before[k]) for k, v in model.encoder.state_dict().items())
    assert all(torch.equal(v, adapters_before[k]) for k, v in model.adapters.state_dict().items())
    assert any(not torch.equal(v, fusion_before[k]) for k, v in model.fusions.state_dict().items())


def test_value_regulariser_starts_near_zero_and_grows_as_v_moves():
    model = _model_with(["pfeiffer", "pfeiffer"])
    model.add_fusion("f", ["a0", "a1"], FusionConfig(value_l2=0.01))
    assert model.regularization().item() < 1e-9
    with torch.no_grad():
        model.fusions["f"][0]["ffn"].value.weight.add_(0.1)
    assert model.regularization().item() == pytest.approx(0.01 * 0.01 * model.hidden_size**2, rel=1e-3)


def test_pfeiffer_with_houlsby_fails_clearly_and_houlsby_pairs_fuse_everywhere():
    mixed = _model_with(["pfeiffer", "houlsby"])
    with pytest.raises(ConfigError, match="fuse adapters of one placement"):
        mixed.add_fusion("f", ["a0", "a1"])
    houlsby = _model_with(["houlsby", "houlsby"])
    assert houlsby.add_fusion("f", ["a0", "a1"]) == ("attention", "ffn")
    with pytest.raises(ConfigError, match="at least two distinct adapters"):
        houlsby.add_fusion("g", ["a0", "missing"])
