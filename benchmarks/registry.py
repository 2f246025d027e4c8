"""Registry speed, local and remote: push/pull throughput, pull and push latency, search at 10k entries.

Sections 1-4 measure ``LocalRegistry`` in a scratch directory on this machine's disk; section 5
measures the same artifacts through a real ``ahl serve`` subprocess on 127.0.0.1 (started and
stopped by the benchmark; code in ``benchmarks/_registry_remote.py``). Every baseline is measured
in the same run, interleaved with what it is compared to.

What it measures
    1. transfer   push and pull of a ~100 MB artifact (``adapter.safetensors`` holding random
                  float32 tensors), in MB/s and as a ratio to ``shutil.copyfile`` of the same
                  weights file on the same disk (the raw-copy baseline). ``sha256_file`` of the
                  same file is timed too: push and pull hash what they move, so hashing speed
                  bounds them. Each repetition uses a fresh registry directory and a fresh pull
                  destination; copy, hash, push and pull are interleaved within each repetition
                  (in rotating order) and the median over ``--reps`` repetitions is reported.
                  Goal: push and pull >= 50% of the raw copy.
    2. pull       resolve + pull latency of a small, real-size adapter (MiniLM-L6-H384 shape,
                  Pfeiffer adapter + head, ~1 MB) into fresh destination directories: ``resolve``
                  alone, ``LocalRegistry.pull`` of the latest version (resolves inside), and
                  ``hub.pull`` by ref string (also opens the registry, as one CLI call does).
                  Goal (stated for the remote cache, see 5): cached pull < 20 ms (median).
    3. search     a registry of ``--entries`` (10,000) version manifests. They are NOT pushed one
                  by one: one small artifact is pushed for real and its blobs are reused by every
                  manifest; each manifest is written as ``LocalRegistry.push`` writes it
                  (``registry.blob_store.write_atomic``, which fsyncs) and indexed with
                  ``registry._index.add(Entry(...))``, varying base (6), task (40), name,
                  version (1-3 per entry), architecture, metrics, tags; ~2% of versions are
                  yanked (marker file + index flag). The population itself is timed. Then
                  ``--searches`` (200) searches, interleaved round-robin over six kinds (task,
                  base, name substring, tag, sort by accuracy, no filter), each with limit 50:
                  p50/p95 per kind and overall, end to end (``LocalRegistry.search``: SQL +
                  reading the manifests of the rows it returns) and SQL only
                  (``registry._index.search``). Goal: p95 < 50 ms. Also: opening
                  ``LocalRegistry(root)`` with its index present, and the index rebuild from
                  scratch (``index.sqlite`` deleted, the next open rebuilds it from entries/).
    4. push       push latency of the small adapter, a new version each time: new content with
                  automatic versioning (the ``ahl push`` default), the same content under a new
                  explicit version (blobs already stored), and new content into the 10k
                  registry.
    5. remote     (``--skip-remote`` leaves it out) the client's ``hub.push`` / ``hub.pull`` /
                  ``hub.search`` with an ``http://127.0.0.1:PORT[/bench]`` registry against
                  ``python -m adapterhub_lite serve`` (token via ``AHL_SERVE_TOKENS`` /
                  ``AHL_TOKEN``). For every operation: wall time, the client's CPU time, the
                  server process's CPU time (``/proc/PID/stat``) and the number of HTTP requests
                  (a request hook on ``huggingface_hub``'s shared session).
                  - pull: the small artifact by exact version, uncached (a fresh ``AHL_CACHE``
                    per pull: every file downloads) vs cached (same cache: no request at all),
                    and ``latest`` cached (one ``refs`` request), rotating order with a raw copy
                    of the same files; then, server stopped, one cached exact pull must still
                    succeed with no request. Goal: cached pull < 20 ms (median). One cached
                    pull is profiled (cProfile, top functions by own time in the JSON).
                  - transfer: the ~100 MB artifact pushed and pulled through a fresh server per
                    repetition (fresh server directory, client cache and destination), rotating
                    with three same-disk baselines: ``shutil.copyfile``, copy + fsync (the
                    download cache fsyncs each blob) and ``sha256_file`` of the weights file
                    (this client sends large files raw over the LFS basic transfer and checks
                    them while they upload; the server hashes them as they stream). Goal:
                    >= 50% of the raw copy. One more push and pull run under cProfile (client
                    side, not timed).
                  - search: ``ahl serve`` over section 3's directory (same entries, as
                    repositories ``ahl/SLUG``); the first request builds the server's repository
                    index from the registry index and is timed on its own. Then the section 3
                    plan (another draw), each query alternating with ``LocalRegistry.search`` of
                    the same directory (baseline; row counts compared, disagreements listed),
                    plus ``arch_tag`` queries (``architecture=``, a server-side ``adapter:`` tag
                    filter), since the mirrors carry only entry tags, not the summary's
                    ``lang:``/``domain:`` tags the local tag queries use. ``sort`` lists every
                    match through the paginated API and sorts client-side, so only
                    ``--remote-sort-searches`` of them run and the overall is also reported
                    without them. Goal: p95 < 50 ms.

Caveats
    The page cache is NOT dropped (that needs root, and would slow every other process): the
    source files were just written and are warm in memory, so "disk" throughput here is mostly
    memory copy + hashing, for the baseline and the registry alike. Neither ``shutil.copyfile``
    nor the local registry's blob writes are fsynced, so that ratio compares like with like; the
    remote download cache does fsync, hence the copy + fsync baseline in section 5. In section 5
    client and server share this machine's CPUs (and with anything else running on it): the
    CPU split says whether a transfer is CPU-bound.

Run
    .venv/bin/python benchmarks/registry.py              # full run, ~6-8 minutes (2.5 of them populating 10k)
    .venv/bin/python benchmarks/registry.py --quick      # smaller, ~2 minutes
    .venv/bin/python benchmarks/registry.py --skip-remote   # local registry only
    .venv/bin/python benchmarks/registry.py --workdir /some/disk --json-out out.json
Writes JSON to ``benchmarks/results/registry.json`` (``--json-out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "registry.json"
MB = 1e6  # throughput is reported in decimal megabytes per second

GOAL_TRANSFER_RATIO = 0.5  # push / pull MB/s >= 50% of the raw copy
GOAL_PULL_MS = 20.0  # cached pull (median) < 20 ms: the goal of the future remote cache
GOAL_SEARCH_P95_MS = 50.0  # search p95 < 50 ms at 10k entries

BASE_ID = "sentence-transformers/all-MiniLM-L6-v2"
BASES = [
    BASE_ID,
    "google-bert/bert-base-uncased",
    "FacebookAI/roberta-base",
    "FacebookAI/xlm-roberta-base",
    "microsoft/deberta-v3-small",
    "distilbert/distilbert-base-uncased",
]
TASKS = [
    "sst2",
    "mnli",
    "qnli",
    "qqp",
    "rte",
    "cola",
    "mrpc",
    "stsb",
    "wnli",
    "boolq",
    "trec",
    "imdb",
    "ag-news",
    "yelp",
    "dbpedia",
    "emotion",
    "tweet-eval",
    "hate-speech",
    "sarcasm",
    "amazon-polarity",
    *[f"domain-task-{i:02d}" for i in range(20)],
]
ARCHITECTURES = ["pfeiffer", "houlsby", "head_only"]
LANGS = ["en", "de", "fr", "es", "zh", "ja", "ar", "hi"]
DOMAINS = ["news", "reviews", "social", "legal", "medical", "science", "finance"]
SEARCH_KINDS = ("task", "base", "name", "tag", "sort", "all")


# -- small helpers ----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0..100) of ``values``."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Seconds ``fn(*args, **kwargs)`` took, and its value."""
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - start, value


def latency_stats(seconds: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": statistics.median(ms),
        "p95_ms": percentile(ms, 95),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "times_ms": [round(x, 4) for x in ms],
    }


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def copy_files(source: Path, target: Path) -> None:
    """The raw-copy baseline of a small artifact: ``shutil.copyfile`` of each of its files."""
    for path in source.iterdir():
        shutil.copyfile(path, target / path.name)


def drop(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# -- artifacts --------------------------------------------------------------------------------


def make_base() -> Any:
    """A random BERT of MiniLM-L6-H384's shape (tiny vocabulary: only adapter/head sizes matter)."""
    import torch
    from transformers import BertConfig, BertModel

    from adapterhub_lite.base import from_encoder

    torch.manual_seed(0)
    encoder = BertModel(
        BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536, vocab_size=99)
    )
    return from_encoder(encoder, None, model_id=BASE_ID)


def small_model_and_metadata(base: Any, *, name: str, task: str) -> tuple[Any, dict[str, Any]]:
    """A Pfeiffer adapter + head on ``base`` and its metadata as ``api.train`` builds it (no training)."""
    import hashlib

    from adapterhub_lite.api import artifact_metadata
    from adapterhub_lite.config import AdapterConfig, HeadConfig, TrainConfig
    from adapterhub_lite.model import AdapterModel
    from adapterhub_lite.training.data import Columns
    from adapterhub_lite.training.loop import FitResult

    model = AdapterModel(base)
    adapter = AdapterConfig.from_preset("pfeiffer")
    model.add_adapter(name, adapter)
    head = HeadConfig(label_names=["negative", "positive"])
    model.set_head(head)
    history = [{"epoch": 1, "step": 100, "train_loss": 0.4, "dev_accuracy": 0.9, "dev_macro_f1": 0.89}]
    record = {"source": "train.csv", "sha256": hashlib.sha256(b"x").hexdigest(), "examples": 1000}
    metadata = artifact_metadata(
        kind="adapter",
        name=name,
        task=task,
        base=base,
        head=head,
        columns=Columns(),
        extra={"adapter": adapter.to_dict()},
        config=TrainConfig(mode="adapter", epochs=1),
        fit_result=FitResult(history=history, best_epoch=1, best_metrics={"accuracy": 0.9, "macro_f1": 0.89}),
        data={"train": record, "dev": {**record, "source": "train.csv (dev split)"}},
        parameters=model.count_parameters(),
    )
    return model, metadata


def write_small(out: Path, model: Any, metadata: dict[str, Any], seed: int) -> Any:
    """Write the small artifact; ``seed`` perturbs the weights so each seed is new content."""
    import torch

    from adapterhub_lite.artifact import render_model_card, write_artifact

    generator = torch.Generator().manual_seed(seed)
    weights = {k: v + 1e-3 * torch.randn(v.shape, generator=generator) for k, v in model.artifact_state_dict().items()}
    return write_artifact(
        out, metadata, weights, render_model_card(metadata), extra_files={"metrics.jsonl": b'{"epoch": 1}\n'}
    )


def write_big(out: Path, metadata: dict[str, Any], megabytes: int) -> Any:
    """An artifact whose weights file holds ``megabytes`` MB of random float32 (4 MB tensors)."""
    import torch

    from adapterhub_lite.artifact import render_model_card, write_artifact

    generator = torch.Generator().manual_seed(1)
    per_tensor = 1_000_000  # float32 -> 4 MB each
    count = max(1, round(megabytes * MB / (4 * per_tensor)))
    weights = {
        f"adapter.{i}.ffn.down.weight": torch.randn(1000, per_tensor // 1000, generator=generator) for i in range(count)
    }
    meta = {**metadata, "name": "big", "task": "big-task"}
    return write_artifact(out, meta, weights, render_model_card(meta))


# -- 1. transfer throughput -------------------------------------------------------------------


# Orders of the four operations per repetition; push always precedes the pull from its registry.
ORDERS = [("copy", "hash", "push", "pull"), ("push", "pull", "copy", "hash"), ("hash", "push", "copy", "pull")]


def bench_transfer(work: Path, big: Any, reps: int) -> dict[str, Any]:
    from adapterhub_lite.artifact import sha256_file
    from adapterhub_lite.registry.client.local import LocalRegistry
    from adapterhub_lite.registry.format.refs import Ref

    weights = big.weights_path
    weight_bytes = weights.stat().st_size
    artifact_bytes = dir_bytes(big.path)
    ref = Ref(BASE_ID, "big-task", "big")
    times: dict[str, list[float]] = {"copy": [], "hash": [], "push": [], "pull": []}
    for rep in range(reps):
        reg_dir, copy_to, pull_to = work / f"reg-big-{rep}", work / f"copy-{rep}.bin", work / f"pulled-big-{rep}"
        registry = LocalRegistry(reg_dir)  # opening a fresh registry is not part of the push
        for op in ORDERS[rep % len(ORDERS)]:
            if op == "copy":
                seconds, _ = timed(shutil.copyfile, weights, copy_to)
            elif op == "hash":
                seconds, _ = timed(sha256_file, weights)
            elif op == "push":
                seconds, _ = timed(registry.push, big.path, version="1.0.0")
            else:
                seconds, _ = timed(registry.pull, ref, pull_to)
                assert dir_bytes(pull_to) == artifact_bytes
            times[op].append(seconds)
        drop(reg_dir)
        drop(pull_to)
        copy_to.unlink()
    mbps = {
        op: [(weight_bytes if op in ("copy", "hash") else artifact_bytes) / MB / s for s in ts]
        for op, ts in times.items()
    }
    median = {op: statistics.median(v) for op, v in mbps.items()}
    return {
        "weights_bytes": weight_bytes,
        "artifact_bytes": artifact_bytes,
        "reps": reps,
        "seconds": times,
        "mb_per_s": mbps,
        "median_mb_per_s": median,
        "push_ratio_to_copy": median["push"] / median["copy"],
        "pull_ratio_to_copy": median["pull"] / median["copy"],
    }


# -- 2. small pull latency --------------------------------------------------------------------


def bench_small_pull(work: Path, small_dir: Path, pulls: int) -> dict[str, Any]:
    from adapterhub_lite import hub
    from adapterhub_lite.registry.client.local import LocalRegistry
    from adapterhub_lite.registry.format.refs import Ref

    reg_dir = work / "reg-small"
    registry = LocalRegistry(reg_dir)
    entry = registry.push(small_dir)
    latest = Ref(*entry.ref.entry)  # no version: resolves "latest"
    ref_text = f"{BASE_ID}/{entry.ref.task}/{entry.ref.name}"
    dests = work / "small-pulls"
    results: dict[str, list[float]] = {"resolve": [], "pull": [], "hub_pull": [], "copy_files": []}
    for i in range(2):  # warm-up, untimed
        registry.pull(latest, dests / f"warm-{i}")
    for i in range(pulls):  # interleaved: resolve, pull, hub.pull, raw copy of the same files
        seconds, _ = timed(registry.resolve, latest)
        results["resolve"].append(seconds)
        seconds, _ = timed(registry.pull, latest, dests / f"pull-{i}")
        results["pull"].append(seconds)
        seconds, _ = timed(hub.pull, ref_text, to=dests / f"hub-{i}", registry=reg_dir)
        results["hub_pull"].append(seconds)
        target = dests / f"copy-{i}"
        target.mkdir(parents=True)
        seconds, _ = timed(copy_files, small_dir, target)
        results["copy_files"].append(seconds)
    drop(dests)
    return {
        "artifact_bytes": dir_bytes(small_dir),
        "files": len(list(small_dir.iterdir())),
        **{k: latency_stats(v) for k, v in results.items()},
        "_registry": reg_dir,
        "_entry": entry,
    }


# -- 3. search at 10k -------------------------------------------------------------------------


def populate(registry: Any, template: dict[str, Any], total: int, rng: random.Random) -> dict[str, Any]:
    """Write ``total`` version manifests + index rows the way ``LocalRegistry.push`` does."""
    from adapterhub_lite.registry.format.manifest import Entry
    from adapterhub_lite.registry.format.refs import Ref

    written, yanked, entries = 0, 0, 0
    start = time.perf_counter()
    while written < total:
        base, task = rng.choice(BASES), rng.choice(TASKS)
        architecture = rng.choice(ARCHITECTURES)
        name = f"{task}-{architecture.replace('_', '-')}-{entries:05d}"
        entries += 1
        for patch in range(min(rng.choice([1, 1, 1, 2, 3]), total - written)):
            metrics = {"macro_f1": round(rng.uniform(0.3, 0.95), 4)}
            if rng.random() < 0.9:  # some entries report no accuracy (sorts last)
                metrics["accuracy"] = round(rng.uniform(0.5, 0.99), 4)
            tags = sorted(
                {f"task:{task}", "head:classification", f"lang:{rng.choice(LANGS)}", f"domain:{rng.choice(DOMAINS)}"}
            )
            manifest = {
                **template,
                "base": base,
                "task": task,
                "name": name,
                "version": f"1.0.{patch}",
                "summary": {**template["summary"], "architecture": architecture, "metrics": metrics, "tags": tags},
            }
            ref = Ref(base, task, name, f"1.0.{patch}")
            path = registry._manifest_path(ref, ref.version)
            registry.blob_store.write_atomic(path, (json.dumps(manifest, indent=2) + "\n").encode())
            is_yanked = rng.random() < 0.02
            if is_yanked:
                registry.blob_store.write_atomic(path.with_suffix(".yanked"), b"")
                yanked += 1
            registry._index.add(Entry(ref, manifest, is_yanked))
            written += 1
    seconds = time.perf_counter() - start
    return {
        "versions": written,
        "entries": entries,
        "yanked": yanked,
        "seconds": seconds,
        "ms_per_version": seconds / written * 1000,
    }


def search_plan(rng: random.Random, count: int) -> list[tuple[str, dict[str, Any]]]:
    """``count`` searches, round-robin over the kinds, with values that exist in the registry."""
    plan = []
    for i in range(count):
        kind = SEARCH_KINDS[i % len(SEARCH_KINDS)]
        filters: dict[str, Any] = {
            "task": {"task": rng.choice(TASKS)},
            "base": {"base": rng.choice(BASES)},
            "name": {"name": rng.choice(["sst", "news", "houlsby", "task-1", "0042", "QNLI", "pfeif"])},
            "tag": {"tag": rng.choice([f"lang:{rng.choice(LANGS)}", f"domain:{rng.choice(DOMAINS)}"])},
            "sort": {"sort": "accuracy"},
            "all": {},
        }[kind]
        plan.append((kind, {**filters, "limit": 50}))
    return plan


def bench_search(
    work: Path, small_entry: Any, small_registry: Any, total: int, searches: int, rebuilds: int, opens: int, seed: int
) -> dict[str, Any]:
    from adapterhub_lite.registry.client.local import LocalRegistry

    rng = random.Random(seed)
    reg_dir = work / "reg-10k"
    registry = LocalRegistry(reg_dir)
    # One real artifact's blobs, shared by every manifest (content addressing makes that legal).
    for record in small_entry.manifest["files"].values():
        registry.blob_store.store_file(small_registry.blob_store.path(record["sha256"]), record["sha256"])
    population = populate(registry, small_entry.manifest, total, rng)

    plan = search_plan(rng, searches)
    end_to_end: dict[str, list[float]] = {k: [] for k in SEARCH_KINDS}
    sql_only: dict[str, list[float]] = {k: [] for k in SEARCH_KINDS}
    rows: dict[str, list[int]] = {k: [] for k in SEARCH_KINDS}
    registry.search(limit=50)  # warm-up
    for kind, filters in plan:  # end to end and SQL-only alternate, query by query
        seconds, found = timed(registry.search, **filters)
        end_to_end[kind].append(seconds)
        rows[kind].append(len(found))
        seconds, _ = timed(registry._index.search, **filters)
        sql_only[kind].append(seconds)

    open_times = [timed(LocalRegistry, reg_dir)[0] for _ in range(opens)]
    rebuild_times = []
    for _ in range(rebuilds):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{reg_dir / 'index.sqlite'}{suffix}").unlink(missing_ok=True)
        seconds, rebuilt = timed(LocalRegistry, reg_dir)
        rebuild_times.append(seconds)
    assert len(rebuilt.search(limit=10**6)) == len(registry.search(limit=10**6)) > 0

    flat = [s for kind in SEARCH_KINDS for s in end_to_end[kind]]
    flat_sql = [s for kind in SEARCH_KINDS for s in sql_only[kind]]
    return {
        "population": {
            **population,
            "method": "manifest written with registry.blob_store.write_atomic + "
            "registry._index.add(Entry) per version, blobs of one real pushed artifact reused",
        },
        "per_kind": {
            k: {
                "filters_example": next(f for kk, f in plan if kk == k),
                "rows_returned_median": statistics.median(rows[k]),
                "end_to_end": latency_stats(end_to_end[k]),
                "sql_only": latency_stats(sql_only[k]),
            }
            for k in SEARCH_KINDS
        },
        "overall": {"end_to_end": latency_stats(flat), "sql_only": latency_stats(flat_sql)},
        "open": latency_stats(open_times),
        "rebuild": latency_stats(rebuild_times),
        "_registry": registry,
    }


# -- 4. small push latency --------------------------------------------------------------------


def bench_push(work: Path, model: Any, metadata: dict[str, Any], pushes: int, big_registry: Any) -> dict[str, Any]:
    from adapterhub_lite.registry.client.local import LocalRegistry

    sources = work / "push-sources"
    dirs = [write_small(sources / f"s{i}", model, metadata, seed=100 + i).path for i in range(pushes + 2)]
    registry = LocalRegistry(work / "reg-push")
    dedup_registry = LocalRegistry(work / "reg-push-dedup")
    dedup_registry.push(dirs[0], version="1.0.0")
    registry.push(dirs[0])  # warm-up, untimed
    big_registry.push(dirs[0])
    auto, same, into_10k = [], [], []
    for i in range(pushes):  # interleaved
        seconds, last = timed(registry.push, dirs[i + 1])  # new content, next patch version
        auto.append(seconds)
        same.append(timed(dedup_registry.push, dirs[0], version=f"2.0.{i}")[0])
        if i < max(5, pushes // 2):
            into_10k.append(timed(big_registry.push, dirs[i + 1])[0])
    drop(sources)
    return {
        "new_content_auto_version": latency_stats(auto),
        "same_content_new_version": latency_stats(same),
        "new_content_into_10k_registry": latency_stats(into_10k),
        "versions_in_entry_at_end": len(registry.versions(last.ref)),
    }


# -- 5. remote: the same through ahl serve ----------------------------------------------------


def bench_remote(work: Path, small_dir: Path, big: Any, reg_10k: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Pull latency, transfer throughput and search through a real ``ahl serve`` subprocess
    (``benchmarks/_registry_remote.py``); the 10k search reuses the local part's directory, so
    local and remote search see the same entries."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helper sits beside this script
    import _registry_remote as remote

    from adapterhub_lite.artifact import sha256_file

    with remote.client_env(work):
        print(f"5/5 remote: {args.pulls} x 3 pulls of the small artifact through ahl serve", file=sys.stderr)
        pull = remote.bench_pull(work, small_dir, args.pulls, copy_files=copy_files, latency_stats=latency_stats)
        print(
            f"5/5 remote: {args.reps} x push/pull of {dir_bytes(big.path) / MB:.0f} MB through ahl serve"
            f"{' (+1 profiled)' if args.profile else ''}",
            file=sys.stderr,
        )
        transfer = remote.bench_transfer(
            work, big, args.reps, sha256_file=sha256_file, dir_bytes=dir_bytes, profile=args.profile
        )
        print(f"5/5 remote: search through ahl serve over the {args.entries} registry", file=sys.stderr)
        # The same kinds and value distributions as the local plan (another draw of the same rng).
        rng = random.Random(args.seed + 1)
        plan = []
        for kind, filters in search_plan(rng, args.searches):
            plan.append((kind, filters))
            if kind == "tag":
                # ahl serve's ahl/SLUG mirrors carry only the entry tags (task:, adapter:, head,
                # ahl-entry:, base_model:), not the summary's lang:/domain: tags that the local
                # tag queries use; an architecture filter is a server-side adapter: tag query.
                plan.append(("arch_tag", {"architecture": rng.choice(["pfeiffer", "houlsby"]), "limit": 50}))
        search = remote.bench_search(
            work, reg_10k, plan, (*SEARCH_KINDS, "arch_tag"), args.remote_sort_searches, latency_stats=latency_stats
        )
    return {
        "server": "python -m adapterhub_lite serve on 127.0.0.1 (uvicorn), a subprocess sharing this "
        "machine's CPUs with the client; client = hub.* with the registry URL",
        "pull": pull,
        "transfer": transfer,
        "search": search,
    }


# -- report -----------------------------------------------------------------------------------


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t, p, s, u = result["transfer"], result["small_pull"], result["search"], result["push"]
    table = Table(
        title=f"Registry (local; remote through ahl serve) on {result['meta']['workdir_fs']} "
        f"(page cache NOT dropped; medians; baselines measured in this run)"
    )
    for column in ("measure", "result", "baseline (same run)", "goal", "meets"):
        table.add_column(column, overflow="fold")

    def meets(ok: bool) -> str:
        return "[green]yes[/]" if ok else "[red]NO[/]"

    def lat(stats: dict[str, Any]) -> str:
        return f"p50 {stats['p50_ms']:.2f} ms, p95 {stats['p95_ms']:.2f} ms"

    m = t["median_mb_per_s"]
    size = f"{t['artifact_bytes'] / MB:.0f} MB"
    table.add_row(
        f"push {size} artifact",
        f"{m['push']:.0f} MB/s ({t['push_ratio_to_copy']:.2f}x copy)",
        f"copyfile {m['copy']:.0f} MB/s",
        f">= {GOAL_TRANSFER_RATIO:.0%} of copy",
        meets(t["push_ratio_to_copy"] >= GOAL_TRANSFER_RATIO),
    )
    table.add_row(
        f"pull {size} artifact",
        f"{m['pull']:.0f} MB/s ({t['pull_ratio_to_copy']:.2f}x copy)",
        f"copyfile {m['copy']:.0f} MB/s",
        f">= {GOAL_TRANSFER_RATIO:.0%} of copy",
        meets(t["pull_ratio_to_copy"] >= GOAL_TRANSFER_RATIO),
    )
    table.add_row("sha256_file of the weights", f"{m['hash']:.0f} MB/s", "(explains push/pull)", "", "")
    table.add_section()
    small = f"{p['artifact_bytes'] / MB:.2f} MB, {p['files']} files"
    table.add_row(f"resolve latest ({small})", lat(p["resolve"]), "", "", "")
    table.add_row(
        f"resolve + pull ({small})",
        lat(p["pull"]),
        f"copy files: {lat(p['copy_files'])}",
        f"median < {GOAL_PULL_MS:.0f} ms",
        meets(p["pull"]["p50_ms"] < GOAL_PULL_MS),
    )
    table.add_row(
        "hub.pull by ref (opens registry too)",
        lat(p["hub_pull"]),
        "",
        f"median < {GOAL_PULL_MS:.0f} ms",
        meets(p["hub_pull"]["p50_ms"] < GOAL_PULL_MS),
    )
    table.add_section()
    pop = s["population"]
    table.add_row(
        f"populate {pop['versions']} versions ({pop['entries']} entries)",
        f"{pop['seconds']:.1f} s ({pop['ms_per_version']:.2f} ms/version)",
        "",
        "",
        "",
    )
    for kind, stats in s["per_kind"].items():
        e2e = stats["end_to_end"]
        table.add_row(
            f"search {kind} {stats['filters_example']}",
            lat(e2e),
            f"SQL only: {lat(stats['sql_only'])}",
            f"p95 < {GOAL_SEARCH_P95_MS:.0f} ms",
            meets(e2e["p95_ms"] < GOAL_SEARCH_P95_MS),
        )
    overall = s["overall"]["end_to_end"]
    table.add_row(
        f"[bold]search overall ({overall['n']})[/]",
        lat(overall),
        f"SQL only: {lat(s['overall']['sql_only'])}",
        f"p95 < {GOAL_SEARCH_P95_MS:.0f} ms",
        meets(overall["p95_ms"] < GOAL_SEARCH_P95_MS),
    )
    table.add_row(f"open LocalRegistry at {pop['versions']}", lat(s["open"]), "", "", "")
    table.add_row(
        f"index rebuild at {pop['versions']} (index.sqlite deleted)",
        f"median {s['rebuild']['p50_ms'] / 1000:.2f} s (n={s['rebuild']['n']})",
        "",
        "",
        "",
    )
    table.add_section()
    table.add_row("push small, new content, auto version", lat(u["new_content_auto_version"]), "", "", "")
    table.add_row("push small, same content, new version", lat(u["same_content_new_version"]), "", "", "")
    table.add_row(
        f"push small into the {pop['versions']} registry", lat(u["new_content_into_10k_registry"]), "", "", ""
    )
    if "remote" in result:
        add_remote_rows(table, result["remote"], meets, lat)
    console = Console(width=max(Console().width, 190))  # wide: the table is meant to be pasted
    console.print(table)
    print(
        "note: the page cache cannot be dropped here; sources are warm in memory, so throughput is "
        "memory-copy and hashing bound for baseline and registry alike."
    )
    if "remote" in result:
        for op, rows in result["remote"]["transfer"]["client_profile_top_by_own_time"].items():
            print(f"client-side cProfile of one remote {op} of the big artifact, top by own time:")
            for row in rows[:8]:
                print(
                    f"  {row['tottime_s']:7.3f} s own {row['cumtime_s']:7.3f} s cum {row['calls']:>7} calls  "
                    f"{row['function']}"
                )


def add_remote_rows(
    table: Any, r: dict[str, Any], meets: Callable[[bool], str], lat: Callable[[dict[str, Any]], str]
) -> None:
    """The ``remote`` section's rows: what goes through ``ahl serve``, with its same-run baselines."""

    def reqs(stats: dict[str, Any]) -> str:
        return f"{stats['requests_median']:g} req"

    p, t, s = r["pull"], r["transfer"], r["search"]
    table.add_section()
    table.add_row("[bold]remote: hub.* through ahl serve on 127.0.0.1[/]", "", "", "", "")
    table.add_row(
        "pull small by exact version, uncached",
        f"{lat(p['uncached_exact'])}, {reqs(p['uncached_exact'])}",
        f"copy files: {lat(p['copy_files'])}",
        "",
        "",
    )
    table.add_row(
        "pull small by exact version, cached",
        f"{lat(p['cached_exact'])}, {reqs(p['cached_exact'])}",
        f"copy files: {lat(p['copy_files'])}",
        f"median < {GOAL_PULL_MS:.0f} ms",
        meets(p["cached_exact"]["p50_ms"] < GOAL_PULL_MS),
    )
    table.add_row(
        "pull small latest, cached",
        f"{lat(p['cached_latest'])}, {reqs(p['cached_latest'])}",
        "",
        f"median < {GOAL_PULL_MS:.0f} ms",
        meets(p["cached_latest"]["p50_ms"] < GOAL_PULL_MS),
    )
    stopped = p["cached_exact_with_server_stopped"]
    table.add_row(
        "cached exact pull, server stopped",
        f"{'ok' if stopped['ok_without_requests'] else 'FAILED'}, {stopped['ms']:.1f} ms",
        "",
        "no request",
        meets(stopped["ok_without_requests"]),
    )
    m, split = t["median_mb_per_s"], t["cpu_split"]
    size = f"{t['artifact_bytes'] / MB:.0f} MB"
    baseline = f"copyfile {m['copy']:.0f} MB/s; copy+fsync {m['copy_fsync']:.0f} MB/s"
    for op in ("push", "pull"):
        cpu = split[op]
        table.add_row(
            f"{op} {size} artifact",
            f"{m[op]:.0f} MB/s ({t[f'{op}_ratio_to_copy']:.2f}x copy, "
            f"{t[f'{op}_ratio_to_copy_fsync']:.2f}x copy+fsync); wall {cpu['wall_s_median']:.2f} s = "
            f"client CPU {cpu['client_cpu_s_median']:.2f} s + server CPU {cpu['server_cpu_s_median']:.2f} s",
            baseline,
            f">= {GOAL_TRANSFER_RATIO:.0%} of copy",
            meets(t[f"{op}_ratio_to_copy"] >= GOAL_TRANSFER_RATIO),
        )
    table.add_row(
        "sha256_file of the weights", f"{m['hash']:.0f} MB/s", "(every verified transfer hashes what it moves)", "", ""
    )
    first = s["first_search_with_index_sync"]
    table.add_row(
        f"first search ({s['repositories_listed']} repos: builds the repo index)",
        f"{first['wall_s'] * 1000:.0f} ms (server CPU {first['server_cpu_s'] * 1000:.0f} ms)",
        f"second: {s['second_search']['wall_s'] * 1000:.1f} ms",
        "",
        "",
    )
    for kind, stats in s["per_kind"].items():
        remote = stats["remote"]
        table.add_row(
            f"search {kind} {stats['filters_example']} (n={remote['n']})",
            f"{lat(remote)}, {reqs(remote)}",
            f"local: {lat(stats['local_baseline'])}",
            f"p95 < {GOAL_SEARCH_P95_MS:.0f} ms",
            meets(remote["p95_ms"] < GOAL_SEARCH_P95_MS),
        )
    for key, label in (("overall_without_sort", "search overall without sort"), ("overall", "search overall")):
        stats = s[key]
        table.add_row(
            f"[bold]{label} ({stats['n']})[/]",
            lat(stats),
            "",
            f"p95 < {GOAL_SEARCH_P95_MS:.0f} ms",
            meets(stats["p95_ms"] < GOAL_SEARCH_P95_MS),
        )
    if s["disagreements_with_local"]:
        table.add_row(
            "[red]remote/local search disagreements[/]",
            str(len(s["disagreements_with_local"])),
            "see JSON",
            "0",
            meets(False),
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller run: 2 reps, 20 pulls, 2,000 entries, 60 searches")
    p.add_argument("--big-mb", type=int, default=100, help="size of the big artifact's weights (MB)")
    p.add_argument("--reps", type=int, default=5, help="push/pull/copy repetitions of the big artifact")
    p.add_argument("--pulls", type=int, default=50, help="timed pulls of the small artifact")
    p.add_argument("--pushes", type=int, default=50, help="timed pushes of the small artifact")
    p.add_argument("--entries", type=int, default=10_000, help="version manifests in the search registry")
    p.add_argument("--searches", type=int, default=200, help="timed searches (round-robin over kinds)")
    p.add_argument("--rebuilds", type=int, default=1, help="timed index rebuilds")
    p.add_argument("--opens", type=int, default=20, help="timed LocalRegistry opens")
    p.add_argument(
        "--remote-sort-searches",
        type=int,
        default=12,
        help="remote searches sorted by accuracy (each lists every match; the client sorts)",
    )
    p.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip the cProfile'd remote push and pull"
    )
    p.add_argument("--skip-remote", action="store_true", help="only the local registry (no ahl serve)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="scratch directory on the disk to measure (default: a temporary directory)",
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--json-out", type=Path, default=DEFAULT_JSON)
    p.add_argument(
        "--versions",
        type=int,
        default=None,
        help="only the scale section: a synthetic registry of this many versions (bulk SQL, see "
        "benchmarks/_registry_scale.py) against a 10k one built the same way",
    )
    p.add_argument(
        "--reuse",
        type=Path,
        default=None,
        help="with --versions: keep the synthetic registries in this directory and reuse them in later runs",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.pulls, args.pushes = min(args.reps, 2), min(args.pulls, 20), min(args.pushes, 20)
        args.entries, args.searches, args.rebuilds, args.opens = min(args.entries, 2000), min(args.searches, 60), 1, 5
        args.remote_sort_searches = min(args.remote_sort_searches, 4)
    return args


def cpu_model() -> str:
    """The CPU's model name and whether it has the SHA extensions (they make sha256 ~3x faster)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    return f"{name}; SHA extensions: {'yes' if 'sha_ni' in flags else 'no'}"


def filesystem_of(path: Path) -> str:
    """``device (fstype) on mountpoint`` of ``path``, from /proc/mounts (best effort)."""
    try:
        best = ("?", "?", "/")
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype = line.split()[:3]
            if str(path.resolve()).startswith(mount) and len(mount) >= len(best[2]):
                best = (device, fstype, mount)
        return f"{best[0]} ({best[1]}) on {best[2]}"
    except OSError:
        return "unknown"


def main_scale(args: argparse.Namespace) -> None:
    """``--versions N``: the index and listing at N versions vs 10k, local and served (issue 16)."""
    import _registry_remote as remote
    import _registry_scale as scale

    from adapterhub_lite.registry.client.local import LocalRegistry

    work = Path(tempfile.mkdtemp(prefix="ahl-registry-scale-", dir=args.workdir))
    try:
        base = make_base()
        model, metadata = small_model_and_metadata(base, name="sst2", task="sst2")
        small = write_small(work / "small", model, metadata, seed=0)
        source = LocalRegistry(work / "reg-small")
        entry = source.push(small.path)

        # Every run pushes new weights into entries of its own: with --reuse the registries keep
        # earlier runs' pushes, a server that holds a file already is sent none of it, and a push
        # with an automatic version reads each earlier version of its entry (the client's check
        # for content pushed before).
        run = int(time.time())

        def write_sources(where: Path, count: int, name: str) -> list[Path]:
            named, meta = small_model_and_metadata(base, name=f"{name}-{run}", task="sst2")
            paths = [write_small(where / f"s{i}", named, meta, seed=run * 100 + i).path for i in range(count)]
            named.remove_hooks()
            return paths

        plan = search_plan(random.Random(args.seed), args.searches)
        result = scale.bench_scale(
            work,
            entry,
            source,
            args.versions,
            write_sources=write_sources,
            plan=plan,
            remote=remote,
            latency_stats=latency_stats,
            bases=BASES,
            tasks=TASKS,
            architectures=ARCHITECTURES,
            tags=(LANGS, DOMAINS),
            reuse=args.reuse,
        )
        out = args.json_out if args.json_out != DEFAULT_JSON else DEFAULT_JSON.with_name("registry_scale.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")  # before the (slow) clean-up
    finally:
        if not args.keep:
            drop(work)
    a, b = result["10k"], result["scale"]
    print(
        f"| at {b['build']['versions']:,} versions ({b['build']['entries']:,} entries) | 10k (same run) | "
        f"{b['build']['versions']:,} | ratio |"
    )
    print("|---|---:|---:|---:|")
    for key, label in (
        ("open", "open LocalRegistry"),
        ("search", "local search p95"),
        ("search_sql", "local search p95, SQL only"),
        ("push", "local push p50"),
        ("cached_pull", "local cached pull p50"),
        ("served_search", "served search p95"),
        ("served_search_after_pushes", "served search p95 after pushes"),
        ("served_push", "served push p50"),
        ("served_cached_pull", "served cached pull p50"),
    ):
        stat = "p95_ms" if "search" in key else "p50_ms"
        print(f"| {label} (ms) | {a[key][stat]:.1f} | {b[key][stat]:.1f} | {b[key][stat] / a[key][stat]:.2f}x |")
    for kind in a["served_search_by_kind_p95_ms"]:
        ka, kb = a["served_search_by_kind_p95_ms"][kind], b["served_search_by_kind_p95_ms"][kind]
        print(f"| served search p95, {kind} (ms) | {ka:.1f} | {kb:.1f} | {kb / ka:.2f}x |")
    for key, label in (
        ("served_first_request_s", "served first request (s)"),
        ("server_peak_rss_mb", "server peak RSS (MB)"),
        ("client_peak_rss_mb", "client peak RSS (MB)"),
        ("server_index_mb", "server index with its WAL (MB)"),
    ):
        print(f"| {label} | {a[key]:.1f} | {b[key]:.1f} | {b[key] / a[key]:.2f}x |")
    both = result["interleaved"]
    for key, label in (("served_push", "served push p50"), ("served_cached_pull", "served cached pull p50")):
        ka, kb = both["10k"][key]["p50_ms"], both["scale"][key]["p50_ms"]
        print(f"| {label}, both servers at once, alternating (ms) | {ka:.1f} | {kb:.1f} | {kb / ka:.2f}x |")
    loads = [a["load_average_before"], b["load_average_after"]]
    print(
        f"load average (1, 5, 15 min) before / after: {' / '.join(', '.join(f'{x:.1f}' for x in la) for la in loads)}"
    )
    print(f"build: {b['build']['seconds']:.0f} s ({b['build']['method']}); wrote {out}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.versions:
        main_scale(args)
        return
    started = time.perf_counter()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ahl-registry-bench-", dir=args.workdir))
    steps = 4 if args.skip_remote else 5
    remote: dict[str, Any] | None = None
    try:
        print(f"scratch directory {work} on {filesystem_of(work)}", file=sys.stderr)
        base = make_base()
        model, metadata = small_model_and_metadata(base, name="sst2", task="sst2")
        small = write_small(work / "small", model, metadata, seed=0)
        big = write_big(work / "big", metadata, args.big_mb)

        print(f"1/{steps} transfer: {args.reps} x push/pull/copy of {dir_bytes(big.path) / MB:.0f} MB", file=sys.stderr)
        transfer = bench_transfer(work, big, args.reps)
        print(f"2/{steps} small pull: {args.pulls} pulls", file=sys.stderr)
        small_pull = bench_small_pull(work, small.path, args.pulls)
        small_registry, small_entry = small_pull.pop("_registry"), small_pull.pop("_entry")
        from adapterhub_lite.registry.client.local import LocalRegistry

        print(f"3/{steps} search: populating {args.entries} versions, {args.searches} searches", file=sys.stderr)
        search = bench_search(
            work,
            small_entry,
            LocalRegistry(small_registry),
            args.entries,
            args.searches,
            args.rebuilds,
            args.opens,
            args.seed,
        )
        big_registry = search.pop("_registry")
        print(f"4/{steps} push: {args.pushes} pushes", file=sys.stderr)
        push = bench_push(work, model, metadata, args.pushes, big_registry)
        model.remove_hooks()
        if not args.skip_remote:
            remote = bench_remote(work, small.path, big, big_registry.root, args)
    finally:
        if not args.keep:
            drop(work)
    import adapterhub_lite

    meta = {
        "benchmark": "registry",
        "quick": args.quick,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "adapterhub_lite": getattr(adapterhub_lite, "__version__", "?"),
        "workdir_fs": filesystem_of(work.parent),
        "page_cache_dropped": False,
        "note": "page cache not dropped (needs root); sources are warm in memory; copyfile and registry blob "
        "writes are not fsynced; manifests are (registry.blob_store.write_atomic); the remote download cache "
        "fsyncs each blob (compare remote pulls with copy+fsync too)",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "goals": {
            "transfer_ratio_to_copy": GOAL_TRANSFER_RATIO,
            "pull_median_ms": GOAL_PULL_MS,
            "search_p95_ms": GOAL_SEARCH_P95_MS,
        },
        "total_seconds": time.perf_counter() - started,
    }
    result = {"meta": meta, "transfer": transfer, "small_pull": small_pull, "search": search, "push": push}
    if remote is not None:
        result["remote"] = remote
    print_table(result)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"total {meta['total_seconds']:.0f} s; wrote {args.json_out}")


if __name__ == "__main__":
    main()
