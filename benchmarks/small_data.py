"""Do the training defaults work on small data? Defaults vs. the best learning rate of a sweep.

For each bundled task, training size and seed: a fresh subsample of the task's bundled training
file (train = the first N, dev = the next min(N, 100) of the classes train has), the task's
bundled dev file as the held-out test split (all of it: a class train lacks counts as errors).
Runs (Pfeiffer adapter, embedded MiniLM, CPU):

    lr=X        the default schedule with the learning rate fixed at X (the sweep)
    default     TrainConfig() as it ships: nothing given (reuses the sweep run with the same
                resolved schedule when there is one: same config, same seed, same result)
    balanced    the defaults with class_weight="balanced"
    paper       the former defaults: lr 1e-4, 10 epochs, patience 2, best epoch by accuracy

The swept best is the sweep run with the best dev macro-F1 of its (task, size, seed); test data
chooses nothing. Results are written after every run, so a cut-short run still reports what it
measured; a run already in the JSON is not repeated (--fresh starts over).

    nice -n 10 .venv/bin/python benchmarks/small_data.py          # the table of docs/small-data.md
    .venv/bin/python benchmarks/small_data.py --quick             # smoke test: one tiny cell
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adapterhub_lite import api, bundled
from adapterhub_lite.base import BaseModel, load_base
from adapterhub_lite.config import TrainConfig
from adapterhub_lite.training.data import ExampleSet, encode_labels, tokenize
from adapterhub_lite.training.loop import predict_outputs
from adapterhub_lite.training.metrics import compute_metrics
from adapterhub_lite.training.schedule import resolve

RESULTS = Path(__file__).resolve().parent / "results"
TASKS = ("sms_spam", "trec", "rotten_tomatoes")
SIZES = (50, 200, 300)
LEARNING_RATES = (3e-4, 1e-3, 3e-3, 1e-2)
PAPER = dict(learning_rate=1e-4, epochs=10, patience=2, metric="accuracy", class_weight="none")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def split(task: str, size: int, seed: int) -> tuple[ExampleSet, ExampleSet, ExampleSet]:
    """train, dev (both from the bundled train file, disjoint) and test (the bundled dev file)."""
    pool = bundled.load(task, "train")
    examples = list(pool.examples)
    random.Random(seed).shuffle(examples)
    train = examples[:size]
    # A small sample can miss a rare class (trec's ABBR is 1.5% of the pool); training refuses a
    # dev label it never saw, and a user's dev set could not hold one either. The dev set keeps
    # the next examples of the training sample's classes, so it stays min(N, 100) examples.
    seen = {e.label for e in train}
    dev = [e for e in examples[size:] if e.label in seen][: min(size, 100)]

    def part(items: list[Any], note: str) -> ExampleSet:
        return ExampleSet(items, f"{task} {note}", None, pool.columns_found)

    return part(train, f"train {size}"), part(dev, "dev"), bundled.load(task, "dev")


def test_metrics(
    model: torch.nn.Module, base: BaseModel, test: ExampleSet, names: list[str], max_length: int
) -> dict[str, float]:
    """Scores on the whole test split. A class the training sample lacked is one the model cannot
    answer: its examples count as errors and its F1 as 0, so every seed is scored on the same task."""
    unseen = sorted({e.label for e in test.examples} - set(names))
    enc = tokenize(base.tokenizer, test, max_length, encode_labels(test, "classification", [*names, *unseen]))
    outputs = predict_outputs(
        model, enc, batch_size=64, device=next(model.parameters()).device, pad_id=api.pad_id_of(base.tokenizer)
    )
    never = np.full((len(outputs), len(unseen)), -np.inf)  # a column per unseen class, never the argmax
    return compute_metrics("classification", np.concatenate([outputs, never], axis=1), np.asarray(enc.targets))


def resolved(config: TrainConfig, train: ExampleSet) -> dict[str, Any]:
    """The schedule ``config`` resolves to on ``train`` (what makes two runs the same run)."""
    names = sorted({e.label for e in train.examples})
    targets = encode_labels(train, "classification", names)
    return resolve(config, "classification", targets).config.to_dict()


def run(
    config: TrainConfig, train: ExampleSet, dev: ExampleSet, test: ExampleSet, base: BaseModel, task: str
) -> dict[str, Any]:
    start = time.perf_counter()
    result = api.train(train, dev_data=dev, task=task, base=base, adapter="pfeiffer", config=config)
    seconds = time.perf_counter() - start
    names = result.model.head.config.label_names  # type: ignore[union-attr]
    schedule = result.fit.schedule
    test_scores = test_metrics(result.model, base, test, names, config.max_length)
    return {
        "dev": result.metrics,
        "test": test_scores,
        "seconds": seconds,
        "best_epoch": result.fit.best_epoch,
        "steps": result.fit.history[-1]["step"],
        "history": result.fit.history,  # dev metrics per epoch: how selection went on dev
        "schedule": schedule.to_dict() if schedule else None,
        "config": schedule.config.to_dict() if schedule else config.to_dict(),
    }


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def signed_mean_std(values: list[float]) -> str:
    """Like :func:`mean_std`, with the mean's sign: for differences."""
    mean = f"{100 * statistics.mean(values):+.1f}"
    return mean if len(values) == 1 else f"{mean} ± {100 * statistics.stdev(values):.1f}"


def summarize(
    runs: dict[str, dict[str, Any]], tasks: list[str], sizes: list[int], lrs: list[float]
) -> tuple[list[dict[str, Any]], str]:
    """One row per (task, size): test macro-F1 / accuracy of each method over the seeds done."""
    rows, lines = (
        [],
        [
            "| task | N | seeds | paper (old defaults) | default | balanced | swept best (lr chosen on dev) | "
            "default - swept (macro-F1) | default time / one sweep run (steps) | default time / paper (steps) |",
            "|---|---:|---:|---|---|---|---|---:|---:|---:|",
        ],
    )
    for task in tasks:
        for size in sizes:
            cells = [v for k, v in runs.items() if v["task"] == task and v["size"] == size]
            seeds = sorted(
                {c["seed"] for c in cells if "default" in c["runs"] and all(f"lr={lr:g}" in c["runs"] for lr in lrs)}
            )
            if not seeds:
                continue
            by: dict[str, dict[str, list[float]]] = {}
            gaps, ratios, paper_ratios, step_ratios, paper_step_ratios, chosen = [], [], [], [], [], []
            for c in cells:
                if c["seed"] not in seeds:
                    continue
                sweep = [c["runs"][f"lr={lr:g}"] for lr in lrs]
                best = max(sweep, key=lambda r: r["dev"]["macro_f1"])  # first (smallest lr) wins ties
                chosen.append(best["config"]["learning_rate"])
                picks = {
                    "paper": c["runs"].get("paper"),
                    "default": c["runs"]["default"],
                    "balanced": c["runs"].get("balanced"),
                    "swept": best,
                }
                for method, r in picks.items():
                    if r is None:
                        continue
                    for metric in ("macro_f1", "accuracy"):
                        by.setdefault(method, {}).setdefault(metric, []).append(r["test"][metric])
                gaps.append(c["runs"]["default"]["test"]["macro_f1"] - best["test"]["macro_f1"])
                ratios.append(c["runs"]["default"]["seconds"] / statistics.median(r["seconds"] for r in sweep))
                step_ratios.append(c["runs"]["default"]["steps"] / statistics.median(r["steps"] for r in sweep))
                if "paper" in c["runs"]:
                    paper_ratios.append(c["runs"]["default"]["seconds"] / c["runs"]["paper"]["seconds"])
                    paper_step_ratios.append(c["runs"]["default"]["steps"] / c["runs"]["paper"]["steps"])

            def cell(method: str, by: dict[str, dict[str, list[float]]] = by) -> str:
                m = by.get(method)
                return f"{mean_std(m['macro_f1'])} / {mean_std(m['accuracy'])}" if m else "-"

            row = {
                "task": task,
                "size": size,
                "seeds": seeds,
                "gap_macro_f1": statistics.mean(gaps),
                "time_ratio": statistics.mean(ratios),
                "swept_lrs": chosen,
                "time_ratio_paper": statistics.mean(paper_ratios) if paper_ratios else None,
                "step_ratio": statistics.mean(step_ratios),
                "step_ratio_paper": statistics.mean(paper_step_ratios) if paper_step_ratios else None,
                **{m: {k: statistics.mean(v) for k, v in d.items()} for m, d in by.items()},
            }
            rows.append(row)
            lrs_text = ", ".join(f"{lr:g}" for lr in chosen)
            lines.append(
                f"| {task} | {size} | {len(seeds)} | {cell('paper')} | {cell('default')} | "
                f"{cell('balanced')} | {cell('swept')} ({lrs_text}) | {signed_mean_std(gaps)} | "
                f"{row['time_ratio']:.2f}x ({row['step_ratio']:.2f}x) | "
                + (f"{row['time_ratio_paper']:.1f}x ({row['step_ratio_paper']:.1f}x) |" if paper_ratios else "- |")
            )
    return rows, "\n".join(lines) + "\n\n" + per_rate(runs, tasks, sizes, lrs) + "\n\n" + dev_evidence(runs, lrs)


def per_rate(runs: dict[str, dict[str, Any]], tasks: list[str], sizes: list[int], lrs: list[float]) -> str:
    """Test macro-F1 (dev macro-F1) of every swept rate, mean over the seeds that have it."""
    lines = ["| task | N | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|---|---:|" + "---:|" * len(lrs)]
    for task in tasks:
        for size in sizes:
            cells = [v for v in runs.values() if v["task"] == task and v["size"] == size]
            texts = []
            for lr in lrs:
                done = [c["runs"][f"lr={lr:g}"] for c in cells if f"lr={lr:g}" in c["runs"]]
                texts.append(
                    f"{mean_std([r['test']['macro_f1'] for r in done])} "
                    f"({mean_std([r['dev']['macro_f1'] for r in done])})"
                    if done
                    else "-"
                )
            if any(t != "-" for t in texts):
                lines.append(f"| {task} | {size} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def dev_evidence(runs: dict[str, dict[str, Any]], lrs: list[float]) -> str:
    """What a default rate can be chosen by, from dev scores only, over the (task, size, seed) cells
    that ran every rate: each rate's mean shortfall from the cell's best dev macro-F1, and each
    pair of rates head to head (cells ahead / tied / behind on dev macro-F1)."""
    cells = [c["runs"] for c in runs.values() if all(f"lr={lr:g}" in c["runs"] for lr in lrs)]
    if not cells:
        return ""
    dev = [{lr: c[f"lr={lr:g}"]["dev"]["macro_f1"] for lr in lrs} for c in cells]
    lines = [
        f"Dev macro-F1 over {len(cells)} cells (task, size, seed): shortfall from the cell's best rate "
        "(points, mean ± std) and, per other rate, cells ahead / tied / behind it",
        "",
        "| rate | shortfall | " + " | ".join(f"vs {lr:g}" for lr in lrs) + " |",
        "|---|---:|" + "---:|" * len(lrs),
    ]
    for lr in lrs:
        shortfall = mean_std([max(d.values()) - d[lr] for d in dev])
        versus = ["-" if other == lr else head_to_head(dev, lr, other) for other in lrs]
        lines.append(f"| {lr:g} | {shortfall} | " + " | ".join(versus) + " |")
    return "\n".join(lines)


def head_to_head(dev: list[dict[float, float]], a: float, b: float) -> str:
    """Cells where rate ``a`` is ahead of / tied with / behind rate ``b`` on dev macro-F1."""
    ahead = sum(d[a] > d[b] and not math.isclose(d[a], d[b]) for d in dev)
    tied = sum(math.isclose(d[a], d[b]) for d in dev)
    return f"{ahead} / {tied} / {len(dev) - ahead - tied}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--lrs", nargs="+", type=float, default=list(LEARNING_RATES))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per text (short texts: 64 keeps runs cheap)")
    parser.add_argument(
        "--extras", action="store_true", help="also run the paper's former defaults and class_weight=balanced per cell"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: sms_spam, 50 examples, 1 seed, 2 rates")
    parser.add_argument("--fresh", action="store_true", help="ignore runs already in the JSON")
    parser.add_argument("--report", action="store_true", help="only rebuild the table from the JSON")
    parser.add_argument(
        "--out", type=Path, help="the results JSON (the table goes beside it as .md); default: benchmarks/results/"
    )
    parser.add_argument(
        "--merge", nargs="+", type=Path, default=[], help="add the runs of these JSONs (e.g. one process per seed)"
    )
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.sizes, args.seeds, args.lrs = ["sms_spam"], [50], [0], [1e-3, 3e-3]
    torch.set_num_threads(args.threads)
    out = args.out or RESULTS / f"small_data{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"runs": {}}
    if out.exists() and not args.fresh:
        report = json.loads(out.read_text())
    for other in args.merge:
        for key, cell in json.loads(other.read_text())["runs"].items():
            report["runs"].setdefault(key, cell)["runs"].update(cell["runs"])
    report.update(
        {
            "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"{args.threads} thread(s), shared CPU",
            "learning_rates": args.lrs,
            "tasks": args.tasks,
            "sizes": args.sizes,
            "seeds": args.seeds,
        }
    )

    def save() -> None:
        rows, table = summarize(report["runs"], args.tasks, args.sizes, args.lrs)
        report["table"], report["rows"] = table, rows
        out.write_text(json.dumps(report, indent=1))
        out.with_suffix(".md").write_text(table + "\n")

    if args.report:
        save()
        print(report["table"])
        return
    base = load_base(None)

    # Seeds outermost: one seed over every cell first, more seeds where time allows.
    for seed in args.seeds:
        for task in args.tasks:
            for size in args.sizes:
                key = f"{task}/{size}/{seed}"
                cell = report["runs"].setdefault(key, {"task": task, "size": size, "seed": seed, "runs": {}})
                train, dev, test = split(task, size, seed)
                common = dict(seed=seed, max_length=args.max_length)
                configs = {"default": TrainConfig(**common)}  # type: ignore[arg-type]
                configs.update(
                    {
                        f"lr={lr:g}": TrainConfig(**common, learning_rate=lr)  # type: ignore[arg-type]
                        for lr in args.lrs
                    }
                )
                if args.extras:
                    configs["paper"] = TrainConfig(**{**common, **PAPER})  # type: ignore[arg-type]
                    configs["balanced"] = TrainConfig(**common, class_weight="balanced")  # type: ignore[arg-type]
                schedules = {m: resolved(c, train) for m, c in configs.items()}
                twin = next((m for m in configs if m.startswith("lr=") and schedules[m] == schedules["default"]), None)
                # The default (and its twin) first, so every cell has a default early; then the
                # short paper run, then the sweep from the rates nearest the default's.
                rest = sorted(
                    (m for m in configs if m.startswith("lr=") and m != twin),
                    key=lambda m: abs(math.log(float(m[3:]) / 1e-3)),
                )
                order = [
                    *([twin] if twin else []),
                    "default",
                    *(["paper"] if args.extras else []),
                    *rest,
                    *(["balanced"] if args.extras else []),
                ]
                for method in order:
                    # A stored run counts only if it ran the schedule this method resolves to now
                    # (a changed default rule reruns the default, or reuses its new twin).
                    if cell["runs"].get(method, {}).get("config") == schedules[method]:
                        continue
                    if method == "default" and twin is not None:
                        cell["runs"]["default"] = {**cell["runs"][twin], "same_run_as": twin}
                    else:
                        cell["runs"][method] = run(configs[method], train, dev, test, base, task)
                    r = cell["runs"][method]
                    log(
                        f"{key} {method:9s} dev F1 {r['dev']['macro_f1']:.3f} test F1 {r['test']['macro_f1']:.3f} "
                        f"acc {r['test']['accuracy']:.3f} epoch {r['best_epoch']} steps {r['steps']} "
                        f"{r['seconds']:.0f}s"
                    )
                    save()
    save()
    print(report["table"])


if __name__ == "__main__":
    main()
