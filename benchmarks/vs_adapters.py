"""adapterhub-lite against AdapterHub's ``adapters``, side by side, on the same machine and weights.

What it measures (each number from a fresh subprocess, so peak RSS is per case)
    train N    one optimizer step: N = 1 one Pfeiffer adapter, N >= 2 AdapterFusion over N
               frozen Pfeiffer adapters (+ the fusion's value regularisation); AdamW lr 1e-4,
               clipping at 1.0. Seconds per step (median).
    infer N    forward passes in eval mode under ``inference_mode``: N = 0 the base alone (with
               a head), 1 one adapter, >= 2 fusion. Sequences per second (from the median batch).
    epoch      one epoch of one Pfeiffer adapter on a bundled dataset with natural sentence
               lengths, then one dev evaluation and saving: ours with its defaults
               (``adapterhub_lite.api.train``), theirs with ``AdapterTrainer`` as its docs show.
               Seconds from loading the model to the saved adapter.
    artifact   bytes of the saved adapter (train 1) and fusion (train N) with its head: ours as
               the artifact writer writes it, theirs via ``save_adapter`` / ``save_adapter_fusion``.
               Our fusion artifact also keeps verified copies of its adapters (a lock); that part
               is left out here, as ``save_adapter_fusion`` saves only the fusion.

Both sides load the base from the same directory (the embedded MiniLM-L6-H384 by default) and
use the same random batch (32 x 128 by default). Ours and theirs alternate case by case and
repetition by repetition (``--reps``): which side runs first flips each time, so that load from
other processes falls on both sides. The table reports ratios of medians over all timed steps,
and of process-CPU time beside wall time (less inflated by other processes); the JSON keeps every
step's numbers.

Run
    .venv/bin/python benchmarks/vs_adapters.py                  # full run (10-20 min on 2 cores)
    .venv/bin/python benchmarks/vs_adapters.py --quick          # smoke run (~3 min)
    .venv/bin/python benchmarks/vs_adapters.py --adapters-venv /path/to/venv   # an existing venv
    python benchmarks/vs_adapters.py --device cuda --base bert-base-random     # a GPU machine

The ``adapters`` venv is created at ``--adapters-venv`` when it is missing
(``python -m venv DIR && DIR/bin/pip install torch==2.13.0 adapters==1.3.0
transformers==4.57.6 accelerate``; accelerate is what ``AdapterTrainer`` needs).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _workload as wl

HERE = Path(__file__).resolve().parent
# outside the repository, so that a created venv is never picked up by git or by test discovery
DEFAULT_VENV = Path.home() / ".cache" / "adapterhub-lite" / "venv-adapters"
DEFAULT_JSON = HERE / "results" / "vs_adapters.json"
ADAPTERS_REQUIREMENTS = ("torch==2.13.0", "adapters==1.3.0", "transformers==4.57.6", "accelerate")
SIDES = ("ours", "theirs")


# -- our side (child process) -----------------------------------------------------------------


def _ours_model(args: argparse.Namespace, device: Any) -> tuple[Any, list[str]]:
    """The base + ``n`` Pfeiffer adapters (fused when n >= 2) + a classification head."""
    from adapterhub_lite.base import load_base
    from adapterhub_lite.config import AdapterConfig, HeadConfig
    from adapterhub_lite.model import AdapterModel

    model = AdapterModel(load_base(args.model_dir))
    names = [f"a{i}" for i in range(args.n)]
    for name in names:
        model.add_adapter(name, AdapterConfig.from_preset("pfeiffer"))
    if args.n >= 2:
        model.add_fusion("fusion", names)
    model.set_head(HeadConfig(label_names=list(wl.LABELS)))
    model.active = names[0] if args.n == 1 else None
    return model.to(device), names


def _ours_artifact(model: Any, names: list[str], out: str) -> int:
    """Write the adapter (n = 1) or fusion artifact as ``api.train`` / ``api.fuse`` do; its size."""
    from adapterhub_lite.api import artifact_metadata
    from adapterhub_lite.artifact import render_model_card, write_artifact
    from adapterhub_lite.config import TrainConfig
    from adapterhub_lite.training.data import Columns
    from adapterhub_lite.training.loop import FitResult

    kind = "adapter" if len(names) == 1 else "fusion"
    if kind == "adapter":
        extra: dict[str, Any] = {"adapter": model.adapter_configs[names[0]].to_dict()}
    else:
        extra = {
            "fusion": model.fusion_configs["fusion"].to_dict(),
            "adapters": [{"name": n, "task": "bench", "base": "bench", "digest": "0" * 64} for n in names],
        }
    metadata = artifact_metadata(
        kind=kind,
        name="bench",
        task="bench",
        base=model.base,
        head=model.head.config,
        columns=Columns(),
        config=TrainConfig(),
        fit_result=FitResult(),
        data={},
        parameters=model.count_parameters(),
        extra=extra,
    )
    weights = model.artifact_state_dict(names[0] if kind == "adapter" else "fusion", kind=kind)
    write_artifact(Path(out), metadata, weights, render_model_card(metadata))
    return wl.dir_size(out)


def ours_train(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    """One step of ``fit``: train mode, loss + regulariser, backward, clipping, AdamW, zero_grad."""
    import torch

    from adapterhub_lite.config import TrainConfig
    from adapterhub_lite.modules.heads import head_loss
    from adapterhub_lite.training.loop import adamw

    model, names = _ours_model(args, device)
    if args.n >= 2:
        model.active_fusion = "fusion"
    params = model.set_trainable("adapter" if args.n == 1 else "fusion", base_dropout=TrainConfig().base_dropout)
    optimizer = adamw(params, 1e-4, 0.0)  # as fit makes it
    inputs, labels = wl.make_batch(model.base.fingerprint.vocab_size, args, device)
    model.train()

    def step() -> None:
        with wl.autocast(device):
            loss = head_loss("classification", model(**inputs).float(), labels)
            if (penalty := model.regularization()) is not None:
                loss = loss + penalty
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()

    times = wl.timed(step, args.steps, args.warmup)
    artifact = _ours_artifact(model, names, args.out_dir) if args.out_dir else None
    return {**times, "artifact_bytes": artifact, "trainable_params": sum(p.numel() for p in params)}


def ours_infer(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    """Forward passes in eval mode under ``inference_mode``, with the case's adapters active."""
    import torch

    model, _ = _ours_model(args, device)
    model.active_fusion = "fusion" if args.n >= 2 else None
    model.eval()
    inputs, _ = wl.make_batch(model.base.fingerprint.vocab_size, args, device)

    def forward() -> None:
        with torch.inference_mode(), wl.autocast(device):
            model(**inputs).float().sum().item()

    return wl.timed(forward, args.steps, args.warmup)


def ours_epoch(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    """One epoch with ``api.train`` and its defaults, one dev evaluation, the artifact written."""
    from adapterhub_lite.api import train
    from adapterhub_lite.config import TrainConfig

    start = time.perf_counter()
    marks: dict[str, float] = {}

    def on_event(event: Any) -> None:
        if event.kind in ("start", "step"):
            marks.setdefault(event.kind, time.perf_counter())
            marks["last_step"] = time.perf_counter()

    config = TrainConfig(epochs=1, batch_size=args.batch, max_length=args.seq, device=args.device, seed=args.seed)
    result = train(
        Path(args.data_dir) / "train.csv",
        dev_data=Path(args.data_dir) / "dev.csv",
        task="bench",
        base=args.model_dir,
        config=config,
        out=args.out_dir,
        on_event=on_event,
    )
    return {
        "total_s": time.perf_counter() - start,
        "train_s": marks["last_step"] - marks["start"],
        "dev_accuracy": result.fit.best_metrics["accuracy"],
        "artifact_bytes": wl.dir_size(args.out_dir),
    }


def ours_child(argv: list[str]) -> None:
    args = wl.worker_args(argv)
    device = wl.setup(args)
    case = {"train": ours_train, "infer": ours_infer, "epoch": ours_epoch}[args.kind]
    from adapterhub_lite import __version__

    wl.emit({**case(args, device), "library": f"adapterhub-lite {__version__}"})


# -- driver -----------------------------------------------------------------------------------


def ensure_adapters_venv(venv: Path) -> Path:
    """The venv's python; the venv is created (with ``ADAPTERS_REQUIREMENTS``) when missing."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating the adapters venv at {venv} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", *ADAPTERS_REQUIREMENTS], check=True)
    return python


def random_bert_base(model_dir: Path) -> None:
    """A randomly initialised BERT-base (the GPU run's base) saved where both sides can load it,
    with the MiniLM tokenizer (the same bert-base-uncased vocabulary)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from adapterhub_lite.base import embedded_model_dir

    torch.manual_seed(0)
    BertModel(BertConfig(), add_pooling_layer=False).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(embedded_model_dir()).save_pretrained(model_dir)


def worker_command(
    side: str,
    python: str,
    kind: str,
    n: int,
    args: argparse.Namespace,
    model_dir: Path,
    data_dir: Path,
    out_dir: Path | None,
) -> list[str]:
    script = [str(HERE / "vs_adapters.py"), "--child"] if side == "ours" else [str(HERE / "_adapters_worker.py")]
    epoch = kind == "epoch"
    cmd = [
        python,
        *script,
        "--kind",
        kind,
        "--n",
        str(n),
        "--model-dir",
        str(model_dir),
        "--batch",
        str(32 if epoch else args.batch),
        "--seq",
        str(128 if epoch else args.seq),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
        "--data-dir",
        str(data_dir),
    ]
    return cmd + (["--out-dir", str(out_dir)] if out_dir else [])


def run_worker(cmd: list[str], threads: int) -> dict[str, Any]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "PYTHONWARNINGS": "ignore",
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=HERE)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"worker failed ({proc.returncode}): {' '.join(cmd)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare_data(task: str, limit: int, into: Path) -> Path:
    """The bundled task's train/dev CSVs for both sides, each cut to ``limit`` examples if given."""
    from adapterhub_lite.bundled import split_path

    into.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        with split_path(task, split).open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        with (into / f"{split}.csv").open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows[: limit + 1] if limit else rows)  # + 1: the header row
    return into


def summarise(kind: str, n: int, runs: dict[str, list[dict[str, Any]]], batch: int) -> dict[str, Any]:
    """Medians over every timed step of every repetition, the largest peak RSS, the ratios."""
    row: dict[str, Any] = {"kind": kind, "n": n}
    for side, results in runs.items():
        if not results:
            continue
        peak = max(r["peak_rss_mib"] for r in results)
        if kind == "epoch":
            value = statistics.median(r["total_s"] for r in results)
            row[side] = {
                "total_s": value,
                "train_s": statistics.median(r["train_s"] for r in results),
                "dev_accuracy": results[0]["dev_accuracy"],
                "peak_rss_mib": peak,
            }
        else:
            wall = statistics.median(t for r in results for t in r["wall_s"])
            cpu = statistics.median(t for r in results for t in r["cpu_s"])
            row[side] = {
                "median_wall_s": wall,
                "median_cpu_s": cpu,
                "peak_rss_mib": peak,
                "steps": sum(len(r["wall_s"]) for r in results),
            }
            if kind == "infer":
                row[side]["seq_per_s"] = batch / wall
        row[side]["artifact_bytes"] = results[0].get("artifact_bytes")
        row[side]["runs"] = results
    if "theirs" not in row:  # --sides ours: nothing to compare with
        return row
    ours, theirs = row["ours"], row["theirs"]
    if kind == "epoch":
        row["time_ratio"] = ours["total_s"] / theirs["total_s"]
    else:
        row["time_ratio"] = ours["median_wall_s"] / theirs["median_wall_s"]
        row["cpu_ratio"] = ours["median_cpu_s"] / theirs["median_cpu_s"]
    row["rss_ratio"] = ours["peak_rss_mib"] / theirs["peak_rss_mib"]
    if ours["artifact_bytes"] and theirs["artifact_bytes"]:
        row["artifact_ratio"] = ours["artifact_bytes"] / theirs["artifact_bytes"]
    return row


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met."""
    by = {(r["kind"], r["n"]): r for r in rows}
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, target: str, ok: bool | None) -> None:
        out.append({"goal": name, "value": value, "target": target, "met": ok})

    if (r := by.get(("infer", 8))) is not None and "theirs" in r:
        v = r["ours"]["seq_per_s"] / r["theirs"]["seq_per_s"]
        add("fusion-8 inference, ours / adapters (throughput)", v, ">= 2.5", v >= 2.5)
    if (r := by.get(("infer", 16))) is not None and (b := by.get(("infer", 0))) is not None:
        v = r["ours"]["seq_per_s"] / b["ours"]["seq_per_s"]
        add("fusion-16 inference / our base alone (throughput)", v, ">= 0.6", v >= 0.6)
    if (r := by.get(("train", 8))) is not None and (a := by.get(("train", 1))) is not None:
        v = r["ours"]["median_wall_s"] / a["ours"]["median_wall_s"]
        add("fusion-8 train step / our one-adapter step", v, "<= 1.3", v <= 1.3)
    # A pool-wide fusion (issue 14 item 6): 32 and 64 adapters.
    for n in (32, 64):
        if (r := by.get(("infer", n))) is not None and (b := by.get(("infer", 0))) is not None:
            v = r["ours"]["seq_per_s"] / b["ours"]["seq_per_s"]
            add(f"fusion-{n} inference / our base alone (throughput)", v, ">= 0.5", v >= 0.5)
        if (r := by.get(("train", n))) is not None and (a := by.get(("train", 1))) is not None:
            v = r["ours"]["median_wall_s"] / a["ours"]["median_wall_s"]
            add(f"fusion-{n} train step / our one-adapter step", v, "<= 2.0", v <= 2.0)
    if (a := by.get(("train", 1))) is not None and "time_ratio" in a:
        add("one-adapter train step, ours / adapters", a["time_ratio"], "<= 0.9", a["time_ratio"] <= 0.9)
    if compared := [r for r in rows if "rss_ratio" in r]:
        worst = max(compared, key=lambda r: r["rss_ratio"])
        add(
            f"peak RSS, ours / adapters (worst: {worst['kind']} {worst['n']})",
            worst["rss_ratio"],
            "<= 1.0",
            worst["rss_ratio"] <= 1.0,
        )
    if (e := by.get(("epoch", 1))) is not None and "time_ratio" in e:
        add("one epoch end to end, ours / adapters (time)", e["time_ratio"], "< 1.0", e["time_ratio"] < 1.0)
    return out


def label(kind: str, n: int) -> str:
    if kind == "epoch":
        return "epoch, one adapter"
    what = {0: "base alone", 1: "one adapter"}.get(n, f"fusion N={n}")
    return f"{kind} {what}"


def print_report(rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 130))
    table = Table(
        title=f"adapterhub-lite vs adapters {meta['adapters_version']}: {meta['base']} on "
        f"{meta['device']}, {meta['threads']} threads, batch {meta['batch']} x {meta['seq']}"
    )
    for col in (
        "case",
        "ours",
        "adapters",
        "ours/adapters",
        "cpu-time ratio",
        "RSS MiB ours / adapters",
        "artifact KiB ours / adapters",
    ):
        table.add_column(col, justify="left" if col == "case" else "right")
    fmt = lambda v, f: "-" if v is None else format(v, f)
    for r in rows:
        sides = [r.get("ours"), r.get("theirs")]  # theirs is absent with --sides ours
        if r["kind"] == "infer":
            values = [f"{s['seq_per_s']:.1f} seq/s" if s else "-" for s in sides]
            ratio = f"{sides[0]['seq_per_s'] / sides[1]['seq_per_s']:.2f}x thr" if all(sides) else "-"
        elif r["kind"] == "train":
            values = [f"{s['median_wall_s']:.3f} s" if s else "-" for s in sides]
            ratio = f"{r['time_ratio']:.2f}x time" if all(sides) else "-"
        else:
            values = [f"{s['total_s']:.1f} s (acc {s['dev_accuracy']:.3f})" if s else "-" for s in sides]
            ratio = f"{r['time_ratio']:.2f}x time" if all(sides) else "-"
        artifact = " / ".join(f"{s['artifact_bytes'] / 1024:.0f}" if s and s["artifact_bytes"] else "-" for s in sides)
        table.add_row(
            label(r["kind"], r["n"]),
            *values,
            ratio,
            fmt(r.get("cpu_ratio"), ".2f"),
            " / ".join(f"{s['peak_rss_mib']:.0f}" if s else "-" for s in sides),
            artifact,
        )
    console.print(table)
    verdicts = Table(title="goals (ratios measured in this run)")
    for col in ("goal", "measured", "target", "met"):
        verdicts.add_column(col, justify="left" if col == "goal" else "right")
    for g in meta["goals"]:
        verdicts.add_row(g["goal"], fmt(g["value"], ".2f"), g["target"], "yes" if g["met"] else "NO")
    console.print(verdicts)
    load = meta["loadavg_1min"]
    if max(load.values()) > meta["threads"]:
        console.print(
            f"[yellow]1-minute load average {load['before']:.1f} -> {load['after']:.1f} exceeds "
            f"{meta['threads']} threads: other processes shared the CPU (both sides alike, interleaved)"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: tiny batch, N = 2 and 4, few examples")
    p.add_argument(
        "--adapters-venv",
        type=Path,
        default=Path(os.environ.get("AHL_ADAPTERS_VENV", DEFAULT_VENV)),
        help="venv with adapters 1.3.0 (created here when missing; env AHL_ADAPTERS_VENV)",
    )
    p.add_argument("--fusion-sizes", type=int, nargs="+", default=[2, 4, 8, 16])
    p.add_argument(
        "--reps",
        type=int,
        default=1,
        help="repetitions of each micro case, sides alternating (2 doubles the ~20 min runtime)",
    )
    p.add_argument("--steps", type=int, default=3, help="timed steps (or batches) per case and repetition")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, or cuda (bf16 autocast on both sides)")
    p.add_argument(
        "--base",
        choices=("minilm", "bert-base-random"),
        default="minilm",
        help="the embedded MiniLM, or a random BERT-base saved once for both sides",
    )
    p.add_argument("--task", default="rotten_tomatoes", help="bundled task of the epoch case")
    p.add_argument(
        "--kinds",
        nargs="+",
        choices=("train", "infer", "epoch"),
        default=["train", "infer", "epoch"],
        help="which groups of cases to run",
    )
    p.add_argument(
        "--sides",
        nargs="+",
        choices=SIDES,
        default=list(SIDES),
        help="ours alone measures our ratios (e.g. fusion N=64 vs our base) without the adapters venv",
    )
    p.add_argument("--json-out", type=Path, default=DEFAULT_JSON)
    args = p.parse_args(argv)
    if args.quick:
        args.fusion_sizes, args.reps, args.steps, args.batch, args.seq = [2, 4], 1, 2, 8, 32
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--child" in argv:
        ours_child([a for a in argv if a != "--child"])
        return
    args = parse_args(argv)
    theirs_python = str(ensure_adapters_venv(args.adapters_venv)) if "theirs" in args.sides else ""
    cases = [
        (kind, n)
        for kind, n in (
            ("train", 1),
            *[("train", n) for n in args.fusion_sizes],
            ("infer", 0),
            ("infer", 1),
            *[("infer", n) for n in args.fusion_sizes],
            ("epoch", 1),
        )
        if kind in args.kinds
    ]
    started, load_before = time.perf_counter(), os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vs-adapters-") as tmp:
        scratch = Path(tmp)
        if args.base == "minilm":
            from adapterhub_lite.base import embedded_model_dir

            model_dir = embedded_model_dir()
        else:
            model_dir = scratch / "bert-base-random"
            random_bert_base(model_dir)
        data_dir = prepare_data(args.task, 96 if args.quick else 0, scratch / "data")
        for index, (kind, n) in enumerate(cases):
            runs: dict[str, list[dict[str, Any]]] = {side: [] for side in args.sides}
            for rep in range(1 if kind == "epoch" else args.reps):
                order = [s for s in (SIDES if (index + rep) % 2 == 0 else SIDES[::-1]) if s in args.sides]
                for side in order:
                    out = scratch / f"{kind}-{n}-{side}-{rep}" if rep == 0 and kind != "infer" else None
                    python = sys.executable if side == "ours" else theirs_python
                    result = run_worker(
                        worker_command(side, python, kind, n, args, model_dir, data_dir, out), args.threads
                    )
                    runs[side].append(result)
                    took = result.get("total_s") or statistics.median(result["wall_s"])
                    print(
                        f"[{time.perf_counter() - started:6.0f}s] {label(kind, n):24s} {side:6s} rep {rep}: "
                        f"{took:.3f} s, peak RSS {result['peak_rss_mib']:.0f} MiB",
                        file=sys.stderr,
                    )
            rows.append(summarise(kind, n, runs, args.batch))
        theirs_version = rows[0]["theirs"]["runs"][0]["library"] if "theirs" in args.sides else ""
    meta = {
        "base": "MiniLM-L6-H384" if args.base == "minilm" else "random BERT-base",
        "device": args.device,
        "threads": args.threads,
        "batch": args.batch,
        "seq": args.seq,
        "steps": args.steps,
        "warmup": args.warmup,
        "reps": args.reps,
        "quick": args.quick,
        "task": args.task,
        "adapters_version": theirs_version.split()[-1] if theirs_version else "(not run)",
        "python": platform.python_version(),
        "loadavg_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "runtime_s": time.perf_counter() - started,
    }
    meta["goals"] = goals(rows)
    print_report(rows, meta)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
