"""One ``vs_adapters.py`` case measured on AdapterHub's ``adapters`` (run inside its own venv).

The driver runs ``<adapters venv>/bin/python _adapters_worker.py --kind ... --n ...``; this file
imports only ``adapters``, ``transformers``, torch and ``_workload`` (never ``adapterhub_lite``),
and prints one JSON line last. The workloads follow the ``adapters`` documentation: Pfeiffer
adapters are ``config="seq_bn"`` (reduction factor 16, ReLU, after the feed-forward block);
fusion is ``add_adapter_fusion(Fuse(...))`` + ``train_adapter_fusion`` with the default
``dynamic`` fusion config and its value regularisation; one epoch is ``AdapterTrainer`` with
dynamic padding (``DataCollatorWithPadding``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import _workload as wl
import adapters
import numpy as np
import torch
from adapters import AdapterTrainer, AutoAdapterModel
from adapters.composition import Fuse
from torch.nn import functional as F
from transformers import AutoTokenizer, DataCollatorWithPadding, TrainingArguments

HEAD = "bench"


def build(args: argparse.Namespace, device: torch.device) -> tuple[Any, list[str]]:
    """The base + ``n`` Pfeiffer adapters (fused when n >= 2) + a classification head."""
    model = AutoAdapterModel.from_pretrained(args.model_dir)
    names = [f"a{i}" for i in range(args.n)]
    for name in names:
        model.add_adapter(name, config="seq_bn")
    # save_adapter(name) saves the head of the same name: one adapter's head is named after it
    model.add_classification_head(names[0] if args.n == 1 else HEAD, num_labels=2)
    if args.n >= 2:
        model.add_adapter_fusion(Fuse(*names))
    return model.to(device), names


def train_case(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """One optimizer step, as ``AdapterTrainer`` takes it: train mode, loss (+ the fusion's
    value regularisation), backward, clipping at 1.0, AdamW, zero_grad."""
    model, names = build(args, device)
    if args.n == 1:
        model.train_adapter(names[0])
    else:
        model.train_adapter_fusion(Fuse(*names))
    params = [p for p in model.parameters() if p.requires_grad]
    # AdapterTrainer's default optimizer with torch >= 2.8 is "adamw_torch_fused" (TrainingArguments.optim)
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0, fused=True)
    inputs, labels = wl.make_batch(model.config.vocab_size, args, device)
    model.train()

    def step() -> None:
        with wl.autocast(device):
            loss = F.cross_entropy(model(**inputs).logits.float(), labels)
            if args.n >= 2:
                loss = loss + model.base_model.get_fusion_regularization_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()

    times = wl.timed(step, args.steps, args.warmup)
    artifact = None
    if args.out_dir:
        model.to("cpu")
        if args.n == 1:
            model.save_adapter(args.out_dir, names[0])  # with its head, by default
        else:
            model.save_adapter_fusion(args.out_dir, Fuse(*names), with_head=HEAD)
        artifact = wl.dir_size(args.out_dir)
    return {**times, "artifact_bytes": artifact, "trainable_params": sum(p.numel() for p in params)}


def infer_case(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Forward passes in eval mode under ``inference_mode``, with the case's adapters active."""
    model, names = build(args, device)
    if args.n == 1:
        model.set_active_adapters(names[0])
    elif args.n >= 2:
        model.set_active_adapters(Fuse(*names))
    model.eval()
    inputs, _ = wl.make_batch(model.config.vocab_size, args, device)

    def forward() -> None:
        with torch.inference_mode(), wl.autocast(device):
            model(**inputs).logits.float().sum().item()

    return wl.timed(forward, args.steps, args.warmup)


def epoch_case(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """One epoch of one Pfeiffer adapter with ``AdapterTrainer`` (as the adapters docs show),
    one dev evaluation, ``save_adapter``: timed from loading the model to the saved adapter."""
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoAdapterModel.from_pretrained(args.model_dir)
    model.add_adapter("task", config="seq_bn")
    model.add_classification_head("task", num_labels=len(wl.LABELS), id2label=dict(enumerate(wl.LABELS)))
    model.train_adapter("task")

    def encode(split: str, limit: int) -> list[dict[str, Any]]:
        texts, labels = wl.read_split(args.data_dir, split, limit)
        enc = tokenizer(texts, truncation=True, max_length=args.seq)
        return [
            {"input_ids": ids, "attention_mask": mask, "labels": label}
            for ids, mask, label in zip(enc["input_ids"], enc["attention_mask"], labels, strict=True)
        ]

    def accuracy(prediction: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

    with tempfile.TemporaryDirectory() as scratch:
        training_args = TrainingArguments(
            output_dir=scratch,
            learning_rate=1e-4,
            num_train_epochs=1,
            per_device_train_batch_size=args.batch,
            per_device_eval_batch_size=2 * args.batch,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            use_cpu=device.type == "cpu",
            bf16=device.type == "cuda",
            seed=args.seed,
            disable_tqdm=True,
        )
        trainer = AdapterTrainer(
            model=model,
            args=training_args,
            train_dataset=encode("train", args.limit),
            eval_dataset=encode("dev", 0),
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=accuracy,
        )
        trained = time.perf_counter()
        trainer.train()
        trained = time.perf_counter() - trained
        metrics = trainer.evaluate()
    model.save_adapter(args.out_dir, "task")
    return {
        "total_s": time.perf_counter() - start,
        "train_s": trained,
        "dev_accuracy": metrics["eval_accuracy"],
        "artifact_bytes": wl.dir_size(args.out_dir),
    }


def main() -> None:
    args = wl.worker_args()
    device = wl.setup(args)
    case = {"train": train_case, "infer": infer_case, "epoch": epoch_case}[args.kind]
    wl.emit({**case(args, device), "library": f"adapters {adapters.__version__}"})


if __name__ == "__main__":
    main()
