"""Dev-only follow-up to ``paper_table.py``: do ST-A and Fusion need more than 3 epochs here?

In the main run, with 200 training examples and at most 3 epochs (21 optimizer steps), some
adapter and fusion runs never left the majority class on a target's dev split. This probe
retrains seed 0 of ST-A and Fusion (at the learning rates ``paper_table.py`` selected) for
``--epochs`` epochs without early stopping and prints the dev accuracy after every epoch,
with the majority-class dev accuracy for reference. It reads no test data: it evaluates
nothing but the dev split carved from the target's training pool.

Run after ``paper_table.py`` (it reuses its source adapters and its selected learning rates):
    .venv/bin/python benchmarks/paper_table_probe.py --targets vader_nyt vader_tweets --epochs 10
Writes ``benchmarks/results/paper_table_probe.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from paper_table import FULL, RESULTS, SOURCES, TARGETS, log, target_split

from adapterhub_lite import api, bundled
from adapterhub_lite.config import TrainConfig


def dev_curve(result: api.TrainResult) -> list[float]:
    return [round(record["dev_accuracy"], 4) for record in result.fit.history]


def probe(task: str, epochs: int, rates: dict[str, float], base: Any, workdir: Path) -> dict[str, Any]:
    """Dev accuracy per epoch of ST-A and Fusion (seed 0) on one target."""
    split = target_split(task, FULL, bundled.texts_of(SOURCES))
    majority = Counter(e.label for e in split.dev.examples).most_common(1)[0][1] / len(split.dev)
    seed = FULL.seeds[0]

    def config(lr: float) -> TrainConfig:
        # patience = epochs: no early stopping, so the whole curve is visible
        return TrainConfig(learning_rate=lr, epochs=epochs, patience=epochs, max_length=FULL.max_length, seed=seed)

    start = time.perf_counter()
    st_a_path = workdir / "probe" / f"{task}-st-a"
    st_a = api.train(
        split.train,
        dev_data=split.dev,
        task=task,
        base=base,
        adapter="pfeiffer",
        config=config(rates["ST-A"]),
        out=st_a_path,
        overwrite=True,
    )
    sources = [workdir / "sources" / name for name in SOURCES]
    fusion = api.fuse(
        [*sources, st_a_path], split.train, dev_data=split.dev, task=task, base=base, config=config(rates["Fusion"])
    )
    out = {
        "majority_dev_accuracy": majority,
        "ST-A": dev_curve(st_a),
        "Fusion": dev_curve(fusion),
        "seconds": time.perf_counter() - start,
    }
    log(f"{task}: majority {majority:.3f}; ST-A dev per epoch {out['ST-A']}; Fusion dev per epoch {out['Fusion']}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", nargs="+", default=["vader_nyt"], choices=list(TARGETS))
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    main_run = json.loads((RESULTS / "paper_table.json").read_text())
    rates = {method: main_run["selection"][method]["chosen"] for method in ("ST-A", "Fusion")}
    base = api.load_base()
    results = {task: probe(task, args.epochs, rates, base, RESULTS / "paper_table") for task in args.targets}
    report = {"epochs": args.epochs, "learning_rates": rates, "seed": FULL.seeds[0], "targets": results}
    (RESULTS / "paper_table_probe.json").write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {RESULTS / 'paper_table_probe.json'}")


if __name__ == "__main__":
    main()
