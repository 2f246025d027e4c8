"""Does ranking + automatic composition pay off on low-resource targets? (issue 14, item 5)

Pool
    The 12 source adapters of ``benchmarks/composition_pool.py`` (sentiment, questions, news,
    spam families; built once into ``results/composition/<scale>/registry`` and reused).

Targets
    Four bundled tasks at 50 and 200 training examples (+ 100 dev examples, both sampled once
    with a fixed data seed from the task's training file); the test set is the task's bundled
    dev file minus any text a candidate source or the target's own pool trained on. For each
    target, the candidates are the pool minus the sources built from the target's own data set,
    so "related" means "another data set of the same family is in the pool":

    vader_tweets, vader_nyt   related (four other sentiment sets in the pool)
    sms_spam, bbc_news        unrelated (no other spam or news data in the pool)

Methods (per target, size and seed; the method seed varies initialisation and order)
    head-only         a head on the frozen base
    ST-A              the target's own Pfeiffer adapter
    Fusion-all        AdapterFusion over every candidate + ST-A
    Fusion-emb-K      over the K most similar by task embedding + ST-A
    Fusion-probe-K    over the K best by the transfer probe + ST-A
    warm-start        ST-A initialised from the probe's best source
    auto              what ``fuse --auto K`` ships: the best on dev of ST-A, warm-start and
                      Fusion-probe-K (ties to the simpler), by the same rule (compose.choose)

Schedules (``--schedule``)
    default   what ``ahl train`` / ``ahl fuse`` / ``fuse --auto`` do with no flags: ``TrainConfig()``
              (learning rate, epochs, patience and selection metric chosen from the data,
              docs/small-data.md); the fair baseline, and the default here
    fixed     the first runs' short schedule: lr 1e-3 (the replication's dev-selected rate,
              docs/paper-replication.md), 4 epochs of 200 or 10 of 50 examples, batch 16
Nothing here looks at test data to choose anything.

Regret@K (``--oracle``): per target at each ``--oracle-sizes`` size, seed 0, every candidate's
transfer is measured as the test accuracy of a warm start from it; Regret@K of a ranking is
``(best - best of its top K) / best`` in percent.

    nice -n 10 .venv/bin/python benchmarks/composition.py [--quick] [--oracle] [--seeds 0,1,2]

Writes ``results/composition/<scale>/composition-<schedule>.json`` (``--state``) after every
run and the tables to a ``.md`` beside it. Processes that share the work (``--targets``,
``--oracle-only``) each need their own ``--state``; ``--report WORKDIR`` merges every
``composition-<schedule>*.json`` there into ``composition-<schedule>.md``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from composition_pool import FULL as POOL_FULL  # noqa: E402
from composition_pool import QUICK as POOL_QUICK  # noqa: E402
from composition_pool import SOURCES, PoolScale, build_pool, log, workdir_of  # noqa: E402

from adapterhub_lite import api, bundled, ranking  # noqa: E402
from adapterhub_lite.base import BaseModel, load_base  # noqa: E402
from adapterhub_lite.compose import Candidate, choose  # noqa: E402
from adapterhub_lite.config import TrainConfig  # noqa: E402
from adapterhub_lite.registry.client.local import LocalRegistry  # noqa: E402
from adapterhub_lite.task_embedding import compute_task_embedding  # noqa: E402
from adapterhub_lite.training.data import ExampleSet, encode_labels, tokenize  # noqa: E402
from adapterhub_lite.training.loop import evaluate_outputs  # noqa: E402

TARGETS = {"vader_tweets": "related", "vader_nyt": "related", "sms_spam": "unrelated", "bbc_news": "unrelated"}
METHODS = ("head-only", "ST-A", "Fusion-all", "Fusion-emb-K", "Fusion-probe-K", "warm-start", "auto")
FIXED_LR = 1e-3
K = 3
# auto needs its three candidates; the other methods are optional (``--methods``).
AUTO_NEEDS = ("ST-A", "warm-start", "Fusion-probe-K")
DATA_SEED = 0


@dataclass(frozen=True)
class Scale:
    sizes: tuple[int, ...]
    dev: int
    epochs: dict[int, int]  # fixed schedule: training size -> epochs (30-60 optimizer steps at batch 16)
    test_cap: int | None
    max_length: int


FULL = Scale(sizes=(200, 50), dev=100, epochs={200: 4, 50: 10}, test_cap=300, max_length=64)
QUICK = Scale(sizes=(24,), dev=16, epochs={24: 1}, test_cap=32, max_length=32)


def candidates_for(target: str) -> list[str]:
    """The pool minus every source built from the target's own data set."""
    return [name for name, source in SOURCES.items() if source.dataset != target]


def split(target: str, size: int, scale: Scale, banned: set[str]) -> tuple[ExampleSet, ExampleSet, ExampleSet]:
    pool = bundled.without_texts(bundled.load(target, "train"), banned)
    sample = random.Random(DATA_SEED).sample(pool.examples, size + scale.dev)
    held = bundled.load(target, "dev")
    own = {bundled.text_key(e.text) for e in bundled.load(target, "train").examples}
    test = bundled.without_texts(held, banned | own).examples[: scale.test_cap]

    def part(examples: list[Any], note: str, source: ExampleSet) -> ExampleSet:
        return ExampleSet(examples, f"{source.source} ({note})", source.sha256, source.columns_found)

    return (
        part(sample[:size], f"{size} sampled", pool),
        part(sample[size:], "dev sampled", pool),
        part(test, "held-out test", held),
    )


def test_metrics(model: Any, base: BaseModel, test: ExampleSet, max_length: int) -> dict[str, float]:
    names = model.head.config.label_names
    enc = tokenize(base.tokenizer, test, max_length, encode_labels(test, "classification", names))
    return evaluate_outputs(
        model,
        enc,
        "classification",
        batch_size=64,
        device=next(model.parameters()).device,
        pad_id=api.pad_id_of(base.tokenizer),
    )


class Experiment:
    def __init__(
        self,
        base: BaseModel,
        scale: Scale,
        workdir: Path,
        pool: dict[str, Any],
        *,
        schedule: str,
        oracle_schedule: str,
        methods: tuple[str, ...],
        state: str,
    ) -> None:
        self.base, self.scale, self.workdir, self.pool = base, scale, workdir, pool
        self.schedule, self.oracle_schedule, self.methods = schedule, oracle_schedule, methods
        self.path = workdir / state
        self.state: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.state.setdefault("runs", {})
        self.state.setdefault("rankings", {})
        self.state.setdefault("oracle", {})
        self.state["pool"] = pool
        self.state["schedule"] = schedule
        self.state["oracle_schedule"] = oracle_schedule

    def save(self) -> None:
        self.path.write_text(json.dumps(self.state, indent=1))
        self.path.with_suffix(".md").write_text(markdown(self.state))

    def source_path(self, name: str) -> Path:
        return self.workdir / "sources" / name

    def config(self, size: int, seed: int, schedule: str | None = None) -> TrainConfig:
        if (schedule or self.schedule) == "default":
            return TrainConfig(max_length=self.scale.max_length, seed=seed)
        epochs = self.scale.epochs[size]
        return TrainConfig(
            learning_rate=FIXED_LR,
            epochs=epochs,
            patience=min(3, epochs),
            batch_size=16,
            max_length=self.scale.max_length,
            seed=seed,
        )

    def rankings(self, target: str, size: int, train: ExampleSet) -> dict[str, Any]:
        key = f"{target}/{size}"
        if key in self.state["rankings"]:
            return self.state["rankings"][key]
        names = candidates_for(target)
        cpu = time.process_time()
        embedding = compute_task_embedding(self.base, train, max_length=self.scale.max_length)
        registry = LocalRegistry(self.workdir / "registry")
        similar = [
            e.ref.name
            for e, _ in registry.search_like(embedding, base=self.base.model_id, top=len(SOURCES))
            if e.ref.name in names
        ]
        emb_cpu = time.process_time() - cpu
        cpu = time.process_time()
        probed = ranking.rank(
            train, adapters=[str(self.source_path(n)) for n in names], base=self.base, max_length=self.scale.max_length
        )
        record = {
            "embedding": similar,
            "embedding_cpu_s": emb_cpu,
            "probe": [c.name for c in probed.candidates],
            "probe_cpu_s": time.process_time() - cpu,
            "probe_detail": probed.to_dict(),
        }
        self.state["rankings"][key] = record
        self.save()
        log(f"{key}: embedding {similar[:K]}, probe {record['probe'][:K]}")
        return record

    def run(self, target: str, size: int, seed: int) -> None:
        key = f"{target}/{size}/{seed}"
        runs = self.state["runs"].setdefault(key, {})
        names = candidates_for(target)
        banned = bundled.texts_of({SOURCES[n].dataset for n in names})
        train, dev, test = split(target, size, self.scale, banned)
        ranks = self.rankings(target, size, train)
        config = self.config(size, seed)
        st_a_path = self.workdir / f"st-a-{self.schedule}" / f"{target}-{size}-{seed}"

        def record(method: str, fn: Any, **extra: Any) -> None:
            if method in runs or method not in self.methods:
                return
            cpu, wall = time.process_time(), time.perf_counter()
            result = fn()
            runs[method] = {
                "dev": result.metrics,
                "test": test_metrics(result.model, self.base, test, self.scale.max_length),
                "cpu_s": time.process_time() - cpu,
                "wall_s": time.perf_counter() - wall,
                "best_epoch": result.fit.best_epoch,
                **extra,
            }
            self.save()
            log(
                f"{key} {method:15s} dev {result.metrics['accuracy']:.3f} test {runs[method]['test']['accuracy']:.3f}"
                f" ({runs[method]['cpu_s']:.0f} cpu-s)"
            )

        common = {"task": target, "dev_data": dev, "base": self.base}
        record("head-only", lambda: api.train(train, adapter=None, config=config, **common))
        if "ST-A" not in runs or not st_a_path.is_dir():
            runs.pop("ST-A", None)
            record("ST-A", lambda: api.train(train, config=config, out=st_a_path, overwrite=True, **common))

        def fusion(sources: list[str]) -> Any:
            return api.fuse([*(self.source_path(n) for n in sources), st_a_path], train, config=config, **common)

        record("Fusion-probe-K", lambda: fusion(ranks["probe"][:K]), adapters=ranks["probe"][:K])
        best = ranks["probe"][0]
        record(
            "warm-start",
            lambda: api.train(train, config=config, init_from=self.source_path(best), **common),
            init_from=best,
        )
        if "auto" in self.methods and "auto" not in runs:
            tried = [
                Candidate(m, runs[name]["dev"], [])
                for m, name in (("adapter", "ST-A"), ("warm_start", "warm-start"), ("fusion", "Fusion-probe-K"))
            ]
            chosen = choose(tried)
            source = {"adapter": "ST-A", "warm_start": "warm-start", "fusion": "Fusion-probe-K"}[chosen.method]
            runs["auto"] = {
                **runs[source],
                "chose": source,
                "cpu_s": sum(runs[m]["cpu_s"] for m in ("ST-A", "warm-start", "Fusion-probe-K")) + ranks["probe_cpu_s"],
            }
            self.save()
        record("Fusion-emb-K", lambda: fusion(ranks["embedding"][:K]), adapters=ranks["embedding"][:K])
        record("Fusion-all", lambda: fusion(names), adapters=names)

    def oracle(self, target: str, size: int) -> None:
        """Every candidate's transfer, as the test accuracy of a warm start from it (seed 0)."""
        names = candidates_for(target)
        key = f"{target}/{size}"
        done = self.state["oracle"].setdefault(key, {})
        banned = bundled.texts_of({SOURCES[n].dataset for n in names})
        train, dev, test = split(target, size, self.scale, banned)
        for name in names:
            if name in done:
                continue
            result = api.train(
                train,
                task=target,
                dev_data=dev,
                base=self.base,
                config=self.config(size, 0, self.oracle_schedule),
                init_from=self.source_path(name),
                task_embedding=False,
            )
            done[name] = test_metrics(result.model, self.base, test, self.scale.max_length)["accuracy"]
            self.save()
            log(f"oracle {key} {name}: test {done[name]:.3f}")


def mean_std(values: list[float], sign: str = "") -> str:
    if not values:
        return "-"
    if len(values) == 1:  # one seed: no spread to report (a "± 0.00" would claim one)
        return f"{100 * values[0]:{sign}.2f}"
    return f"{100 * statistics.mean(values):{sign}.2f} ± {100 * statistics.stdev(values):.2f}"


def regret(oracle: dict[str, float], order: list[str], k: int) -> float | None:
    if not oracle or not all(n in oracle for n in order[:k]):
        return None
    best = max(oracle.values())
    return 100 * (best - max(oracle[n] for n in order[:k])) / best


def shown(state: dict[str, Any], methods: tuple[str, ...] = METHODS) -> list[str]:
    """The methods of ``methods`` that have at least one run (``--methods`` may leave some out)."""
    return [m for m in methods if any(m in r for r in state["runs"].values())]


def merged(states: list[dict[str, Any]]) -> dict[str, Any]:
    """One state from the files of processes that shared the work (runs merge per method)."""
    out: dict[str, Any] = {"runs": {}, "rankings": {}, "oracle": {}}
    for state in states:
        for key, runs in state["runs"].items():
            out["runs"].setdefault(key, {}).update(runs)
        out["rankings"].update(state["rankings"])
        for key, values in state["oracle"].items():
            out["oracle"].setdefault(key, {}).update(values)
        out.update({k: v for k, v in state.items() if k not in out})
    # the oracle's schedule is that of the file that measured it
    out["oracle_schedule"] = next((s.get("oracle_schedule") for s in states if s["oracle"]), None)
    return out


def markdown(state: dict[str, Any]) -> str:
    methods = shown(state)
    lines = [f"Schedule: {state.get('schedule', 'fixed')}", ""]
    for metric in ("accuracy", "macro_f1"):
        lines += [
            f"### Test {metric} (%), mean ± std over seeds (n = seeds run)",
            "",
            "| target | kind | train | n | " + " | ".join(methods) + " |",
            "|---|---|---:|---:|" + "---:|" * len(methods),
        ]
        groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for key, runs in state["runs"].items():
            target, size, _ = key.split("/")
            groups.setdefault((target, int(size)), []).append(runs)
        for (target, size), runs in sorted(groups.items(), key=lambda kv: (TARGETS.get(kv[0][0], ""), kv[0])):
            cells = [mean_std([r[m]["test"][metric] for r in runs if m in r]) for m in methods]
            n = min((sum(1 for r in runs if m in r) for m in methods), default=0)
            lines.append(f"| {target} | {TARGETS.get(target, '?')} | {size} | {n} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "### CPU seconds per run (mean; auto includes its ranking and all three candidates)",
        "",
        "| method | CPU s |",
        "|---|---:|",
    ]
    for m in methods:
        values = [r[m]["cpu_s"] for r in state["runs"].values() if m in r]
        lines.append(f"| {m} | {statistics.mean(values):.0f} |" if values else f"| {m} | - |")
    lines += [
        "",
        "### Rankings (top 3) and Regret@K against the warm-start oracle",
        "",
        "| target/size | by embedding | by probe | emb CPU s | probe CPU s | Regret@1 emb / probe | "
        "Regret@3 emb / probe |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for key, r in sorted(state["rankings"].items()):
        oracle = state["oracle"].get(key, {})
        cells = []
        for k in (1, 3):
            values = [regret(oracle, r[name], k) for name in ("embedding", "probe")]
            cells.append(" / ".join("-" if v is None else f"{v:.1f}%" for v in values))
        lines.append(
            f"| {key} | {', '.join(r['embedding'][:3])} | {', '.join(r['probe'][:3])} | "
            f"{r['embedding_cpu_s']:.1f} | {r['probe_cpu_s']:.1f} | {cells[0]} | {cells[1]} |"
        )
    if state["oracle"]:
        schedule = state.get("oracle_schedule", "fixed")
        lines += ["", f"### Oracle: test accuracy of a warm start from each candidate (seed 0, {schedule} schedule)"]
        lines.append("")
        for key, values in sorted(state["oracle"].items()):
            ordered = sorted(values.items(), key=lambda kv: -kv[1])
            lines.append(f"- {key}: " + ", ".join(f"{n} {100 * v:.1f}" for n, v in ordered))
    chose = [r["auto"].get("chose") for r in state["runs"].values() if "auto" in r]
    if chose:
        lines += ["", "auto chose: " + ", ".join(f"{m} {chose.count(m)}x" for m in sorted(set(chose)))]
    lines += ["", *versus_st_a(state), "", *goals(state)]
    return "\n".join(lines) + "\n"


def paired(
    state: dict[str, Any], method: str, where: Any, split: str = "test", metric: str = "accuracy"
) -> list[float]:
    """``method`` minus ST-A, one value per run (same target, size and seed) that has both."""
    out = []
    for key, runs in state["runs"].items():
        if where(key) and method in runs and "ST-A" in runs:
            out.append(runs[method][split][metric] - runs["ST-A"][split][metric])
    return out


def versus_st_a(state: dict[str, Any]) -> list[str]:
    """Per target and size: each composition method minus ST-A, paired by seed (points), on test;
    and on dev, what auto's choice saw (macro-F1)."""
    compared = shown(state, ("Fusion-all", "Fusion-emb-K", "Fusion-probe-K", "warm-start", "auto"))
    lines = [
        "### Minus ST-A, paired by seed (test accuracy points, mean ± std; dev macro-F1 for auto)",
        "",
        "| target | kind | train | n | " + " | ".join(compared) + " | auto on dev (macro-F1) | auto chose |",
        "|---|---|---:|---:|" + "---:|" * len(compared) + "---:|---|",
    ]
    cells = sorted(
        {tuple(k.split("/")[:2]) for k in state["runs"]}, key=lambda c: (TARGETS.get(c[0], ""), c[0], -int(c[1]))
    )
    for target, size in cells:

        def here(key: str, t: str = target, s: str = size) -> bool:
            return key.startswith(f"{t}/{s}/")

        diffs = [mean_std(paired(state, m, here), "+") for m in compared]
        dev = mean_std(paired(state, "auto", here, "dev", "macro_f1"), "+")
        chose = [r["auto"]["chose"] for k, r in state["runs"].items() if here(k) and "auto" in r]
        lines.append(
            f"| {target} | {TARGETS.get(target, '?')} | {size} | {len(chose)} | "
            + " | ".join(diffs)
            + f" | {dev} | {', '.join(chose) or '-'} |"
        )
    return lines


def goals(state: dict[str, Any]) -> list[str]:
    """The issue's goals against what has run: auto - ST-A on related and unrelated targets
    (every size and seed, paired), and the mean Regret@3 of each ranking."""
    lines = ["### Goals (issue 14)", ""]
    for kind, goal in (("related", 2.0), ("unrelated", -0.5)):

        def of_kind(key: str, k: str = kind) -> bool:
            return TARGETS.get(key.split("/")[0]) == k

        for metric in ("accuracy", "macro_f1"):
            values = paired(state, "auto", of_kind, metric=metric)
            if not values:
                continue
            mean = 100 * statistics.mean(values)
            met = "met" if mean >= goal else f"missed by {goal - mean:.2f} points"
            lines.append(
                f"- {kind} targets, auto - ST-A test {metric}: {mean:+.2f} points over {len(values)} "
                f"paired run(s) (goal >= {goal:+.1f}: {met} on these runs)"
            )
    for name in ("embedding", "probe"):
        values = [regret(state["oracle"].get(key, {}), r[name], 3) for key, r in state["rankings"].items()]
        measured = [v for v in values if v is not None]
        if measured:
            met = "met" if statistics.mean(measured) <= 5 else "missed"
            lines.append(
                f"- Regret@3 by {name}: mean {statistics.mean(measured):.1f}% over {len(measured)} "
                f"target(s) (goal <= 5%: {met} on these)"
            )
    if len(lines) == 2:
        lines.append("- nothing measured yet")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--schedule", choices=("default", "fixed"), default="default")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {', '.join(METHODS)} (auto brings {', '.join(AUTO_NEEDS)})",
    )
    parser.add_argument("--oracle", action="store_true", help="also measure every candidate's transfer (Regret@K)")
    parser.add_argument("--oracle-sizes", default=None, help="training sizes the oracle measures (default: the first)")
    parser.add_argument(
        "--oracle-schedule",
        choices=("default", "fixed"),
        default=None,
        help="the oracle's warm starts (default: --schedule; fixed is a few times cheaper)",
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--state",
        default=None,
        help="state file in the work directory (default composition-<schedule>.json): a second process "
        "(other --targets, or --oracle-only) needs its own, named composition-<schedule>-*.json",
    )
    parser.add_argument("--oracle-only", action="store_true", help="with --oracle: skip the method runs")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--sizes", default=None, help="target training sizes (default: 200,50)")
    parser.add_argument(
        "--source-examples",
        type=int,
        default=None,
        help="examples per source adapter (default 2,000; fewer on a starved CPU)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="WORKDIR",
        help="only merge WORKDIR/composition-<schedule>*.json into composition-<schedule>.md/.json (no training)",
    )
    args = parser.parse_args()
    methods = tuple(m for m in args.methods.split(",") if m)
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown method(s) {', '.join(sorted(unknown))}; choose from {', '.join(METHODS)}")
    if "auto" in methods:
        methods = tuple(dict.fromkeys((*methods, *AUTO_NEEDS)))
    if args.report:
        stem = f"composition-{args.schedule}"
        parts = sorted(p for p in args.report.glob(f"{stem}*.json") if p.name != f"{stem}-merged.json")
        state = merged([json.loads(p.read_text()) for p in parts])
        (args.report / f"{stem}-merged.json").write_text(json.dumps(state, indent=1))
        (args.report / f"{stem}.md").write_text(markdown(state))
        log(f"merged {', '.join(p.name for p in parts)} into {stem}.md")
        return
    scale = QUICK if args.quick else FULL
    if args.sizes:
        sizes = tuple(int(s) for s in args.sizes.split(","))
        scale = Scale(
            sizes,
            scale.dev,
            {s: scale.epochs.get(s, 4 if s >= 200 else 10) for s in sizes},
            scale.test_cap,
            scale.max_length,
        )
    pool_scale = POOL_QUICK if args.quick else POOL_FULL
    if args.source_examples:
        pool_scale = PoolScale(
            args.source_examples, min(pool_scale.dev, args.source_examples), pool_scale.epochs, pool_scale.max_length
        )
    workdir = workdir_of(pool_scale)
    base = load_base()
    pool = build_pool(base, pool_scale, workdir)
    experiment = Experiment(
        base,
        scale,
        workdir,
        pool,
        schedule=args.schedule,
        oracle_schedule=args.oracle_schedule or args.schedule,
        methods=methods,
        state=args.state or f"composition-{args.schedule}.json",
    )
    targets = args.targets.split(",")
    for seed in [] if args.oracle_only else [int(s) for s in args.seeds.split(",")]:
        for size in scale.sizes:
            for target in targets:
                experiment.run(target, size, seed)
    if args.oracle:
        oracle_sizes = [int(s) for s in args.oracle_sizes.split(",")] if args.oracle_sizes else scale.sizes[:1]
        for size in oracle_sizes:
            for target in targets:
                experiment.oracle(target, size)
    log(f"done: {experiment.path}")


if __name__ == "__main__":
    main()
