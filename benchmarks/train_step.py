"""Train-step time and peak memory of adapter training vs. full fine-tuning, on CPU.

What it measures
    One optimizer step of the training loop (``adapterhub_lite.training.loop.fit``): model in
    train mode, forward, classification loss, backward, gradient clipping at 1.0, AdamW
    (lr 1e-4, weight decay 0) step, ``zero_grad(set_to_none=True)``. The base is the embedded
    MiniLM-L6-H384 (``load_base()``); the batch is 32 sequences x 128 tokens of fixed random
    token ids with a full attention mask and two labels. Each case reports the median and p90
    seconds per step over ``--steps`` steps after ``--warmup`` warm-up steps, and the peak
    resident set size (``ru_maxrss``) of a process that ran only that case.

Cases
    adapter     one Pfeiffer adapter (the default configuration) + head; encoder frozen
    adapter_base_dropout  the same with dropout kept active inside the frozen encoder
                (TrainConfig(base_dropout=True), as AdapterHub trains)
    full        full fine-tuning of encoder + head: the baseline measured in the same run
    head_only   the head alone (optional, ``--cases adapter full head_only``)

Reference
    ``REFERENCE_ADAPTERS_S_PER_STEP`` is AdapterHub's ``adapters`` 1.3.0 on the same workload,
    measured ELSEWHERE on this machine class, not in this run. The goal is adapter training at
    <= 0.9x that. The in-run comparison is the ratio to full fine-tuning.

Run
    .venv/bin/python benchmarks/train_step.py                     # adapter + full, 2 threads
    python benchmarks/train_step.py --device cuda --base bert-base-random   # on a GPU machine
    .venv/bin/python benchmarks/train_step.py --cases adapter full head_only --steps 20
    .venv/bin/python benchmarks/train_step.py --case adapter --child   # one case, JSON to stdout

Every case runs in its own subprocess (``--child``) so that peak RSS is per case.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# External reference, NOT measured by this script: AdapterHub `adapters` 1.3.0, one Pfeiffer
# adapter, MiniLM-L6-H384, batch 32 x 128, AdamW, 2 CPU threads, on this machine class.
REFERENCE_ADAPTERS_S_PER_STEP = 1.52
REFERENCE_LABEL = "adapters 1.3.0 (external reference, measured elsewhere, not in this run)"
GOAL_RATIO_TO_REFERENCE = 0.9

CASES = ("adapter", "adapter_base_dropout", "full", "head_only")
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "train_step.json"


# -- one case (child process) ---------------------------------------------------------------


def load_model_base(name: str) -> Any:
    """The embedded MiniLM, or a randomly initialised BERT-base-sized encoder (``bert-base-random``:
    for machines without the embedded model, such as the GPU machine)."""
    from transformers import BertConfig, BertModel

    from adapterhub_lite.base import from_encoder, load_base

    if name == "minilm":
        return load_base()
    return from_encoder(BertModel(BertConfig(), add_pooling_layer=False), None, model_id="bert-base-random")


def build(case: str, seed: int, base_name: str = "minilm") -> tuple[Any, list[Any]]:
    """The model for ``case`` and the parameters to optimise."""
    import torch

    from adapterhub_lite.config import AdapterConfig, HeadConfig, TrainConfig
    from adapterhub_lite.model import AdapterModel

    torch.manual_seed(seed)
    model = AdapterModel(load_model_base(base_name))
    mode, base_dropout = case, TrainConfig().base_dropout
    if case.startswith("adapter"):
        model.add_adapter("bench", AdapterConfig.from_preset("pfeiffer"))
        mode, base_dropout = "adapter", base_dropout or case == "adapter_base_dropout"
    model.set_head(HeadConfig(label_names=["neg", "pos"]))
    params = model.set_trainable(mode, base_dropout=base_dropout)
    return model, params


def make_batch(vocab_size: int, batch: int, seq: int, seed: int) -> tuple[dict[str, Any], Any]:
    """Fixed random token ids, full attention mask, zero token types, random binary labels."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab_size, (batch, seq), generator=gen)
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }
    labels = torch.randint(0, 2, (batch,), generator=gen)
    return inputs, labels


def time_steps(
    model: Any, params: list[Any], inputs: dict[str, Any], labels: Any, steps: int, warmup: int, lr: float
) -> list[float]:
    """Seconds per train step (as in ``fit``, autocast on GPU) for ``steps`` steps after ``warmup``."""
    from torch import nn

    from adapterhub_lite.modules.heads import head_loss
    from adapterhub_lite.training.loop import adamw, autocast_for

    device = labels.device
    cast, _ = autocast_for(device)
    optimizer = adamw(params, lr, 0.0)
    model.train()
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        with cast:
            loss = head_loss("classification", model(**inputs), labels)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # waits for the device
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def run_case(args: argparse.Namespace) -> dict[str, Any]:
    """Measure one case in this process and return its numbers."""
    import torch

    torch.set_num_threads(args.threads)
    model, params = build(args.case, args.seed, args.base)
    inputs, labels = make_batch(model.base.fingerprint.vocab_size, args.batch, args.seq, args.seed)
    device = torch.device(args.device)
    model.to(device)
    inputs, labels = {k: v.to(device) for k, v in inputs.items()}, labels.to(device)
    if args.profile:
        return profile_case(model, params, inputs, labels, args)
    times = time_steps(model, params, inputs, labels, args.steps, args.warmup, args.lr)
    trainable, total = model.count_parameters()
    return {
        "case": args.case,
        "steps": len(times),
        "warmup": args.warmup,
        "median_s": statistics.median(times),
        "p90_s": percentile(times, 90),
        "min_s": min(times),
        "times_s": times,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        "trainable_params": trainable,
        "total_params": total,
    }


def profile_case(
    model: Any, params: list[Any], inputs: dict[str, Any], labels: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """Print a torch.profiler table of a few steps (``--profile``)."""
    from torch.profiler import ProfilerActivity, profile

    time_steps(model, params, inputs, labels, 0, args.warmup, args.lr)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        time_steps(model, params, inputs, labels, args.steps, 0, args.lr)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30), file=sys.stderr)
    return {"case": args.case, "profiled_steps": args.steps}


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0..100) of ``values``."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# -- driver (parent process) ----------------------------------------------------------------


def spawn(case: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one case in a fresh interpreter and parse the JSON it prints last."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--case",
        case,
        "--child",
        "--threads",
        str(args.threads),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--batch",
        str(args.batch),
        "--seq",
        str(args.seq),
        "--lr",
        str(args.lr),
        "--seed",
        str(args.seed),
        "--device",
        args.device,
        "--base",
        args.base,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"case {case!r} failed with exit status {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def versions() -> dict[str, str]:
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def add_ratios(results: list[dict[str, Any]], with_reference: bool) -> None:
    full = next((r["median_s"] for r in results if r["case"] == "full"), None)
    for r in results:
        r["ratio_to_full"] = r["median_s"] / full if full else None
        r["ratio_to_reference"] = r["median_s"] / REFERENCE_ADAPTERS_S_PER_STEP if with_reference else None


def print_table(results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"train step, {meta['base']} on {meta['device']}, batch {meta['batch']} x {meta['seq']}, "
        f"{meta['threads']} threads (torch {meta['versions']['torch']})"
    )
    for col in ("case", "median s/step", "p90 s/step", "steps", "peak RSS MiB", "x full fine-tuning", "x reference*"):
        table.add_column(col, justify="left" if col == "case" else "right")
    fmt = lambda v, f: "-" if v is None else format(v, f)
    for r in results:
        table.add_row(
            r["case"],
            fmt(r["median_s"], ".3f"),
            fmt(r["p90_s"], ".3f"),
            str(r["steps"]),
            fmt(r["peak_rss_mib"], ".0f"),
            fmt(r["ratio_to_full"], ".2f"),
            fmt(r["ratio_to_reference"], ".2f"),
        )
    console = Console(width=max(Console().width, 110))  # no truncated columns when piped
    console.print(table)
    load = meta["loadavg_1min"]
    if max(load.values()) > meta["threads"]:
        console.print(
            f"[yellow]warning: 1-minute load average {load['before']:.1f} -> "
            f"{load['after']:.1f} exceeds {meta['threads']} threads; times are inflated"
        )
    if meta["reference"] is None:
        console.print("* the reference applies to MiniLM on the CPU only")
        return
    goal = GOAL_RATIO_TO_REFERENCE * REFERENCE_ADAPTERS_S_PER_STEP
    console.print(
        f"* reference: {REFERENCE_ADAPTERS_S_PER_STEP:.2f} s/step, {REFERENCE_LABEL}; "
        f"goal for 'adapter': <= {goal:.2f} s/step"
    )
    adapter = next((r for r in results if r["case"] == "adapter"), None)
    if adapter:
        verdict = "meets" if adapter["median_s"] <= goal else "misses"
        console.print(f"adapter: {adapter['median_s']:.3f} s/step {verdict} the goal")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--cases",
        nargs="+",
        choices=CASES,
        default=["adapter", "adapter_base_dropout", "full"],
        help="cases to run, each in its own subprocess",
    )
    p.add_argument("--case", choices=CASES, help="the one case a --child runs")
    p.add_argument("--child", action="store_true", help="run --case here and print JSON")
    p.add_argument("--profile", action="store_true", help="with --child: torch.profiler table")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (bf16/fp16 autocast as in training)")
    p.add_argument(
        "--base",
        choices=("minilm", "bert-base-random"),
        default="minilm",
        help="embedded MiniLM, or a random BERT-base-sized encoder (no model files needed)",
    )
    p.add_argument("--json-out", type=Path, default=DEFAULT_JSON)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        if args.case is None:
            raise SystemExit("--child needs --case")
        print(json.dumps(run_case(args)))
        return
    load_before = os.getloadavg()
    results = [spawn(case, args) for case in args.cases]
    with_reference = args.base == "minilm" and args.device == "cpu"
    add_ratios(results, with_reference)
    meta = {
        "threads": args.threads,
        "batch": args.batch,
        "seq": args.seq,
        "lr": args.lr,
        "steps": args.steps,
        "warmup": args.warmup,
        "device": args.device,
        "base": "MiniLM-L6-H384" if args.base == "minilm" else "random BERT-base",
        "versions": versions(),
        # other work on the machine inflates times: a 1-minute load above the thread count
        # means the cases did not have the cores to themselves.
        "loadavg_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "reference": {
            "case": "adapter",
            "median_s": REFERENCE_ADAPTERS_S_PER_STEP,
            "source": REFERENCE_LABEL,
            "goal_s": GOAL_RATIO_TO_REFERENCE * REFERENCE_ADAPTERS_S_PER_STEP,
        }
        if with_reference
        else None,
    }
    print_table(results, meta)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
