"""The ``adapters`` half of ``adapters_interop.py`` (run inside the ``adapters`` venv).

Loads an adapter with its head from a Hub endpoint (``HF_ENDPOINT``: a real ``ahl serve``) with
``AutoAdapterModel.load_adapter(REPO, source="hf")``, as an AdapterHub user would, scores the
texts it is given and prints one JSON line: the class probabilities by label name. Imports only
``adapters``, ``transformers`` and torch (never ``adapterhub_lite``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from adapters import AutoAdapterModel
from transformers import AutoTokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", required=True, help="the base model directory")
    parser.add_argument("--repo", required=True, help="the repository id on HF_ENDPOINT")
    parser.add_argument("--texts", type=Path, required=True, help="a JSON list of texts")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--safetensors", action="store_true", help="load_adapter(use_safetensors=True)")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = AutoAdapterModel.from_pretrained(args.model_dir)
    started = time.perf_counter()
    name = model.load_adapter(args.repo, source="hf", set_active=True, use_safetensors=args.safetensors)
    load_s = time.perf_counter() - started
    model.eval()
    head = model.heads[name]
    id2label = head.config.get("label2id") and {v: k for k, v in head.config["label2id"].items()}
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    texts = json.loads(args.texts.read_text(encoding="utf-8"))
    batch = tokenizer(texts, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")
    with torch.no_grad():
        probabilities = torch.softmax(model(**batch).logits.double(), dim=-1)
    labels = [id2label[i] if id2label else str(i) for i in range(probabilities.shape[1])]
    rows = [{label: float(p) for label, p in zip(labels, row, strict=True)} for row in probabilities.tolist()]
    print(json.dumps({"adapter": name, "load_s": load_s, "probabilities": rows}))


if __name__ == "__main__":
    main()
