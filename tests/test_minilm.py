"""Integration on the real embedded MiniLM-L6-H384 and real bundled data."""

from __future__ import annotations

import pytest
import torch

from adapterhub_lite import AdapterConfig, AdapterModel, TrainConfig, api

from .conftest import bundled_rows, write_csv


def test_zero_up_adapter_keeps_minilm_output(minilm):
    tok = minilm.tokenizer(["adapters are small", "and frozen bases are big"], padding=True, return_tensors="pt")
    with torch.no_grad():
        reference = minilm.encoder(**tok)[0]
        model = AdapterModel(minilm)
        model.add_adapter("z", AdapterConfig.from_preset("pfeiffer", init="zero_up"))
        assert (model.encode(**tok) - reference).abs().max().item() <= 1e-5
        model.remove_hooks()


@pytest.mark.slow
def test_pfeiffer_adapter_clearly_beats_head_only_on_trec(minilm, tmp_path):
    train = write_csv(tmp_path / "train.csv", bundled_rows("trec", "train", 400))
    dev = write_csv(tmp_path / "dev.csv", bundled_rows("trec", "dev", 300))
    before = {k: v.clone() for k, v in minilm.encoder.state_dict().items()}
    scores = {}
    for run, adapter in (("head_only", None), ("adapter", "pfeiffer")):
        # the schedule's small-data rate: two epochs of 400 questions separate the two by a wide margin
        config = TrainConfig(epochs=2, patience=2, learning_rate=3e-3, device="cpu")
        result = api.train(train, dev_data=dev, task="trec", base=minilm, adapter=adapter, config=config)
        scores[run] = result.metrics["accuracy"]
        result.model.remove_hooks()
    assert scores["adapter"] >= scores["head_only"] + 0.10, scores
    for key, tensor in minilm.encoder.state_dict().items():
        assert torch.equal(tensor, before[key]), key
