"""The workloads of ``vs_adapters.py``, shared by both sides: batches, timing, memory, data.

This module imports only torch and the standard library, so that it runs unchanged in this
project's venv and in the ``adapters`` venv (``_adapters_worker.py``): both sides time the same
loop over the same inputs. Each worker measures one case and prints one JSON line last.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

LABELS = ("negative", "positive")


def worker_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The arguments every worker takes (the driver passes all of them)."""
    p = argparse.ArgumentParser()
    p.add_argument("--kind", choices=("train", "infer", "epoch"), required=True)
    p.add_argument("--n", type=int, default=1, help="adapters: 0 base alone, 1 one adapter, >= 2 fusion")
    p.add_argument("--model-dir", required=True, help="the base model both sides load")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=3, help="timed steps (train) or batches (infer)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", help="epoch: a directory with train.csv and dev.csv (text,label)")
    p.add_argument("--limit", type=int, default=0, help="epoch: use only this many train examples")
    p.add_argument("--out-dir", help="where to save the artifact whose size is reported")
    return p.parse_args(argv)


def setup(args: argparse.Namespace) -> torch.device:
    """Threads and seed, identically on both sides."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return torch.device(args.device)


def make_batch(vocab_size: int, args: argparse.Namespace, device: torch.device) -> tuple[dict[str, Any], Any]:
    """Fixed random token ids, a full attention mask and random binary labels (same on both sides)."""
    gen = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(1000, vocab_size, (args.batch, args.seq), generator=gen)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    labels = torch.randint(0, 2, (args.batch,), generator=gen)
    return {k: v.to(device) for k, v in inputs.items()}, labels.to(device)


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on a GPU (as this project trains there), full precision on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def timed(fn: Callable[[], Any], steps: int, warmup: int) -> dict[str, list[float]]:
    """Wall and process-CPU seconds of ``fn`` per call, after ``warmup`` untimed calls.

    ``fn`` must wait for the device itself (e.g. ``loss.item()``). CPU time is recorded beside
    wall time because other processes on a shared machine inflate the wall clock, not it.
    """
    wall, cpu = [], []
    for i in range(warmup + steps):
        w, c = time.perf_counter(), time.process_time()
        fn()
        if i >= warmup:
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
    return {"wall_s": wall, "cpu_s": cpu}


def peak_rss_mib() -> float:
    """Peak resident set size of this process (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dir_size(path: str | Path) -> int:
    """Total bytes of the files under ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def read_split(data_dir: str, split: str, limit: int = 0) -> tuple[list[str], list[int]]:
    """Texts and label indices of ``<data_dir>/<split>.csv`` (``text,label``, labels in LABELS)."""
    with open(Path(data_dir) / f"{split}.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if limit:
        rows = rows[:limit]
    return [r["text"] for r in rows], [LABELS.index(r["label"]) for r in rows]


def emit(result: dict[str, Any]) -> None:
    """Print the case's result as the last line of stdout, with the peak RSS and the device."""
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    print(json.dumps({**result, "peak_rss_mib": peak_rss_mib(), "peak_gpu_mib": peak_gpu, "pid": os.getpid()}))
