"""The source pool of the composition experiment: 12 adapters on real data, built once into a
registry directory and reused (``benchmarks/composition.py`` runs this first).

Families: sentiment (5 sets of review, editorial and tweet snippets), questions (TREC and two
tasks derived from its labels), news topics (BBC and two derived tasks), spam (SMS). Derived
tasks relabel the same real texts with another question (number vs other, person vs place,
sport vs other, business vs tech): related to their parent, not copies of it.

    .venv/bin/python benchmarks/composition_pool.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapterhub_lite import api, bundled, hub
from adapterhub_lite.base import BaseModel, load_base
from adapterhub_lite.config import TrainConfig
from adapterhub_lite.task_embedding import sample_indices
from adapterhub_lite.training.data import Example, ExampleSet

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "composition"


@dataclass(frozen=True)
class Source:
    """A source task: a bundled data set, optionally relabelled (labels mapped; None drops)."""

    dataset: str
    family: str
    relabel: dict[str, str | None] | None = None
    other: str | None = None  # label for every label the map does not name (None: drop)


SOURCES: dict[str, Source] = {
    "rotten_tomatoes": Source("rotten_tomatoes", "sentiment"),
    "vader_movies": Source("vader_movies", "sentiment"),
    "vader_amazon": Source("vader_amazon", "sentiment"),
    "vader_nyt": Source("vader_nyt", "sentiment"),
    "vader_tweets": Source("vader_tweets", "sentiment"),
    "trec": Source("trec", "questions"),
    "trec_number": Source("trec", "questions", {"NUM": "number"}, other="other"),
    "trec_person_place": Source("trec", "questions", {"HUM": "person", "LOC": "place"}),
    "bbc_news": Source("bbc_news", "news"),
    "bbc_sport": Source("bbc_news", "news", {"sports": "sport"}, other="other"),
    "bbc_business_tech": Source("bbc_news", "news", {"business": "business", "tech": "tech"}),
    "sms_spam": Source("sms_spam", "spam"),
}


@dataclass(frozen=True)
class PoolScale:
    examples: int
    dev: int
    epochs: int
    max_length: int


FULL = PoolScale(examples=2000, dev=300, epochs=1, max_length=64)
QUICK = PoolScale(examples=96, dev=32, epochs=1, max_length=32)
SOURCE_LR = 1e-3  # one epoch: the rate the replication chose on dev (docs/paper-replication.md)
SOURCE_SEED = 0


def workdir_of(scale: PoolScale) -> Path:
    """Where a pool of this scale lives (the experiment reuses it from there)."""
    return RESULTS / ("quick" if scale == QUICK else f"full-{scale.examples}")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def relabelled(data: ExampleSet, source: Source, note: str) -> ExampleSet:
    if source.relabel is None:
        return data
    kept = []
    for e in data.examples:
        label = source.relabel.get(str(e.label), source.other)
        if label is not None:
            kept.append(Example(e.text, text_pair=e.text_pair, label=label))
    return ExampleSet(kept, f"{data.source} ({note})", data.sha256, data.columns_found)


def source_data(name: str, split: str, limit: int) -> ExampleSet:
    """A source's examples from one bundled split (relabelled, then capped at evenly spaced
    indices: the files are grouped by label in places)."""
    source = SOURCES[name]
    data = relabelled(bundled.load(source.dataset, split), source, name)
    picked = [data.examples[i] for i in sample_indices(len(data), limit)]
    return ExampleSet(picked, data.source, data.sha256, data.columns_found)


def build_pool(base: BaseModel, scale: PoolScale, workdir: Path) -> dict[str, Any]:
    """Train each source (unless a previous run with the same settings left it) and push it into
    ``workdir/registry``; returns what was built, with each source's cost."""
    registry = workdir / "registry"
    record_path = workdir / "pool.json"
    settings = {"scale": scale.__dict__, "lr": SOURCE_LR, "seed": SOURCE_SEED}
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if record.get("settings") != settings:
        record = {"settings": settings, "sources": {}}
    for name in SOURCES:
        out = workdir / "sources" / name
        if name in record["sources"]:
            hub.push(out, registry=registry)  # idempotent: same content, same version
            continue
        train = source_data(name, "train", scale.examples)
        dev = source_data(name, "dev", scale.dev)
        config = TrainConfig(
            learning_rate=SOURCE_LR,
            epochs=scale.epochs,
            patience=scale.epochs,
            batch_size=16,
            max_length=scale.max_length,
            seed=SOURCE_SEED,
        )
        start, cpu = time.perf_counter(), time.process_time()
        result = api.train(
            train, dev_data=dev, task=name, base=base, adapter="pfeiffer", config=config, out=out, overwrite=True
        )
        entry = hub.push(out, registry=registry)
        record["sources"][name] = {
            "ref": str(entry.ref),
            "family": SOURCES[name].family,
            "dataset": SOURCES[name].dataset,
            "examples": len(train),
            "dev": result.metrics,
            "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu,
        }
        record_path.write_text(json.dumps(record, indent=2))
        log(f"source {name}: dev acc {result.metrics['accuracy']:.3f} in {record['sources'][name]['seconds']:.0f}s")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    scale = QUICK if args.quick else FULL
    build_pool(load_base(), scale, args.workdir or workdir_of(scale))


if __name__ == "__main__":
    main()
