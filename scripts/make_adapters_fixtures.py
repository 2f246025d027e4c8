"""Fixtures and checks for the AdapterHub ``adapters`` format, made with the real library.

Three modes, two interpreters (the ``adapters`` library pins transformers 4.x, this project
runs on 5.x, so no single environment holds both):

``make`` (run with the ``adapters`` environment)
    Writes ``tests/fixtures/adapters/``: tiny random BERT and RoBERTa bases (safetensors, with
    small tokenizers), then for each base a ``seq_bn`` and a ``double_seq_bn`` adapter with a
    classification head, weights randomised (so that an adapter that is ignored or misplaced
    changes the outputs), saved by ``save_adapter`` as ``.bin`` and as safetensors, an
    unsupported LoRA adapter, and ``outputs.safetensors``: the input ids and, per adapter, the
    last hidden states and head logits that ``adapters`` computes.

``export OUT`` (run with this project's environment)
    Trains nothing: builds adapters natively with adapterhub-lite on the fixture bases
    (Pfeiffer and Houlsby, random non-zero weights, classification and regression heads),
    exports each with :func:`adapterhub_lite.adapters_format.export_adapter` into ``OUT`` and
    stores our hidden states and logits in ``OUT/ours.safetensors``.

``check OUT`` (run with the ``adapters`` environment)
    Loads every exported directory of ``OUT`` with ``model.load_adapter(DIR)`` and compares
    ``adapters``' outputs with ours; exits 1 if any differs by more than 1e-5.

Usage::

    /work/venv-adapters/bin/python scripts/make_adapters_fixtures.py make
    .venv/bin/python scripts/make_adapters_fixtures.py export /tmp/exported
    /work/venv-adapters/bin/python scripts/make_adapters_fixtures.py check /tmp/exported
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "adapters"
FAMILIES = ("bert", "roberta")
# adapters config name -> reduction factor used (hidden 32: bottlenecks of 8 and 4)
ARCHITECTURES = {"seq_bn": 4, "double_seq_bn": 8}
LABELS = ["negative", "neutral", "positive"]
HIDDEN, LAYERS = 32, 2
TOLERANCE = 1e-5
_WORDS = "the film was good bad great boring plot actor it not very and but".split()


# -- bases -------------------------------------------------------------------------------------


def _bert_tokenizer(path: Path) -> Any:
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_WORDS, *"abcdefghijklmnopqrstuvwxyz.,!?"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    (path / "vocab.txt").unlink()
    return tokenizer


def _roberta_tokenizer(path: Path) -> Any:
    from transformers import RobertaTokenizerFast

    # Byte-level BPE with a few merges: enough to tokenise lower-case text without a 50k vocab.
    symbols = ["<s>", "<pad>", "</s>", "<unk>", *"abcdefghijklmnopqrstuvwxyz.,!?", "Ġ", "Ġt", "th"]
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab["<mask>"] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (path / "merges.txt").write_text("#version: 0.2\nĠ t\nt h\n", encoding="utf-8")
    tokenizer = RobertaTokenizerFast(vocab_file=str(path / "vocab.json"), merges_file=str(path / "merges.txt"))
    (path / "vocab.json").unlink()
    (path / "merges.txt").unlink()
    return tokenizer


def make_base(family: str, path: Path) -> None:
    """A tiny random encoder (fixed seed) and its tokenizer, saved as safetensors."""
    from transformers import AutoConfig, AutoModel

    path.mkdir(parents=True)
    tokenizer = _bert_tokenizer(path) if family == "bert" else _roberta_tokenizer(path)
    extra = {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2} if family == "roberta" else {}
    config = AutoConfig.for_model(
        family,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=48,
        vocab_size=len(tokenizer),
        max_position_embeddings=40,
        **extra,
    )
    torch.manual_seed(0)
    # No pooler: heads read the first token, and adapterhub-lite loads encoders without one.
    encoder = AutoModel.from_config(config, add_pooling_layer=False)
    encoder.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


def fixed_inputs(family: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two sequences, the second one padded, tokenised by the fixture base's tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / "bases" / family)
    batch = tokenizer(["the film was great, not boring!", "it was bad"], padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


# -- make ----------------------------------------------------------------------------------------


def _randomise(model: torch.nn.Module, marker: str, seed: int) -> None:
    """Non-zero weights for every parameter whose name holds ``marker``: an adapter left at its
    near-identity init would make a wrong placement invisible."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if marker in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


def make() -> None:
    """Write every fixture (see the module docstring)."""
    import adapters
    from adapters import AutoAdapterModel, LoRAConfig
    from safetensors.torch import save_file

    if FIXTURES.exists():
        shutil.rmtree(FIXTURES)
    outputs: dict[str, torch.Tensor] = {}
    for family in FAMILIES:
        base = FIXTURES / "bases" / family
        make_base(family, base)
        ids, mask = fixed_inputs(family)
        outputs[f"{family}.input_ids"], outputs[f"{family}.attention_mask"] = ids, mask
        for index, (arch, reduction) in enumerate(ARCHITECTURES.items()):
            name = f"{family}_{arch}"
            model = AutoAdapterModel.from_pretrained(base)
            model.eval()
            with torch.no_grad():
                outputs[f"{family}.base_hidden"] = model.base_model(input_ids=ids, attention_mask=mask)[0]
            model.add_adapter(name, config=adapters.AdapterConfig.load(arch, reduction_factor=reduction))
            model.add_classification_head(name, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)))
            _randomise(model, f"adapters.{name}.", seed=10 + index)
            _randomise(model, f"heads.{name}.", seed=20 + index)
            model.set_active_adapters(name)
            model.eval()
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=mask).logits
                hidden = model.base_model(input_ids=ids, attention_mask=mask)[0]
            outputs[f"{name}.hidden"], outputs[f"{name}.logits"] = hidden, logits
            model.config.name_or_path = f"fixture-tiny-{family}"  # recorded as model_name: no local path
            model.save_adapter(str(FIXTURES / f"{name}-bin"), name, with_head=True)
            model.save_adapter(str(FIXTURES / f"{name}-safetensors"), name, with_head=True, use_safetensors=True)
    lora = AutoAdapterModel.from_pretrained(FIXTURES / "bases" / "bert")
    lora.config.name_or_path = "fixture-tiny-bert"
    lora.add_adapter("bert_lora", config=LoRAConfig(r=2, alpha=2))
    lora.save_adapter(str(FIXTURES / "bert_lora-safetensors"), "bert_lora", with_head=False, use_safetensors=True)
    save_file({k: v.contiguous() for k, v in outputs.items()}, str(FIXTURES / "outputs.safetensors"))
    size = sum(f.stat().st_size for f in FIXTURES.rglob("*") if f.is_file())
    print(f"wrote {FIXTURES} ({size / 1024:.0f} KiB)")


# -- export (adapterhub-lite side) ---------------------------------------------------------------


def export(out: Path) -> None:
    """Native adapterhub-lite adapters on the fixture bases, exported to the adapters format."""
    from safetensors.torch import save_file

    from adapterhub_lite import AdapterConfig, AdapterModel, HeadConfig, load_base
    from adapterhub_lite.adapters_format import export_adapter, write_model_artifact

    out.mkdir(parents=True, exist_ok=True)
    ours: dict[str, torch.Tensor] = {}
    cases = [
        ("pfeiffer", "classification", "relu"),
        ("houlsby", "regression", "swish"),
        ("pfeiffer", "classification", "gelu"),
    ]
    for family in FAMILIES:
        base = load_base(str(FIXTURES / "bases" / family))
        ids, mask = fixed_inputs(family)
        for index, (preset, head, activation) in enumerate(cases):
            name = f"{family}-{preset}-{head}-{activation}"
            model = AdapterModel(base)
            torch.manual_seed(index)
            model.add_adapter(name, AdapterConfig.from_preset(preset, reduction_factor=4, non_linearity=activation))
            labels = LABELS if head == "classification" else []
            model.set_head(HeadConfig(type=head, label_names=labels))
            _randomise(model, "adapters.", seed=30 + index)
            _randomise(model, "head.", seed=40 + index)
            model.eval()
            with torch.no_grad():
                ours[f"{name}.hidden"] = model.encode(ids, mask)
                ours[f"{name}.logits"] = model(ids, mask)
            artifact = write_model_artifact(model, out / "artifacts" / name, task="fixture")
            export_adapter(artifact.path, out / name)
            model.remove_hooks()
    save_file(ours, str(out / "ours.safetensors"))
    print(f"exported {len(ours) // 2} adapters into {out}")


# -- check (adapters side) -----------------------------------------------------------------------


def check(out: Path) -> int:
    """Load each exported adapter into ``adapters`` and compare with ours; return the exit code."""
    from adapters import AutoAdapterModel
    from safetensors.torch import load_file

    ours = load_file(str(out / "ours.safetensors"))
    failures = 0
    runs = [
        (key.removesuffix(".hidden"), safetensors)
        for key in sorted(ours)
        if key.endswith(".hidden")
        for safetensors in (False, True)
    ]
    for name, safetensors in runs:
        family = name.split("-")[0]
        ids, mask = fixed_inputs(family)
        model = AutoAdapterModel.from_pretrained(FIXTURES / "bases" / family)
        # The default reads pytorch_adapter.bin; use_safetensors=True reads adapter.safetensors.
        loaded = model.load_adapter(str(out / name), set_active=True, use_safetensors=safetensors)
        model.eval()
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
            hidden = model.base_model(input_ids=ids, attention_mask=mask)[0]
        if name.split("-")[2] == "regression":
            logits = logits.squeeze(-1)
        errors = {
            "hidden": (hidden - ours[f"{name}.hidden"]).abs().max().item(),
            "logits": (logits - ours[f"{name}.logits"]).abs().max().item(),
        }
        ok = all(e <= TOLERANCE for e in errors.values())
        failures += not ok
        print(
            f"{'ok  ' if ok else 'FAIL'} {name} ({'safetensors' if safetensors else '.bin'}, loaded as "
            f"{loaded!r}): max |diff| hidden {errors['hidden']:.2e}, logits {errors['logits']:.2e}"
        )
    print(f"{failures} failure(s)")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("make", "export", "check"))
    parser.add_argument("out", nargs="?", type=Path, help="export/check: directory of exported adapters")
    args = parser.parse_args(argv)
    if args.mode == "make":
        make()
        return 0
    if args.out is None:
        parser.error(f"{args.mode} needs OUT")
    if args.mode == "export":
        export(args.out)
        return 0
    return check(args.out)


if __name__ == "__main__":
    sys.exit(main())
