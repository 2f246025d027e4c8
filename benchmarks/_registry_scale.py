"""``benchmarks/registry.py --versions N``: the registry's index and listing at N versions.

How the registry is built (not by N pushes, which would take hours): ``LocalRegistry(root)``
creates the layout and the index schema; the blobs of one real small artifact (pushed for real by
the caller) are copied in and shared by every version (content addressing makes that legal);
then the index rows of N versions (``--per-entry`` versions per entry, 10 by default: N / 10
entries over 6 bases and 40 tasks, metrics and tags varied) are written with bulk SQL inserts
in one transaction, ``latest`` set on each entry's newest version and ``latest_metrics`` filled
as ``_Index`` does. Only the newest version of each entry gets a manifest file (the only one a
search or a ``latest`` pull reads; a minimal manifest naming the shared blobs), so an index
rebuild from ``entries/`` is NOT part of this benchmark. A 10,000-version registry built the
same way is measured in the same run as the baseline.

Measured on each registry, interleaved where it matters: opening ``LocalRegistry``; local
search (the section 3 plan, end to end); pushing the small artifact (new content, automatic
version) and a cached local pull of an entry's latest version; then through a real ``ahl
serve`` over the directory: the first request (which builds the server's repository index from
the registry index), listings (``hub.search`` with filters, one request each), a push, an
uncached and a cached pull (``hub.pull``); peak RSS of the benchmark process and of the server,
the size of the server's index with its write-ahead log while it still runs, and the machine's
load average before and after (the machine may be shared). Last, both registries served at once,
pushes and cached pulls alternating between them (:func:`interleaved`): the comparison of the two
sizes that a shared machine's load does not skew.
"""

from __future__ import annotations

import json
import os
import random
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PER_ENTRY = 10


def build(
    root: Path,
    template: dict[str, Any],
    source: Any,
    versions: int,
    *,
    bases: list[str],
    tasks: list[str],
    architectures: list[str],
    tags: tuple[list[str], list[str]],
    seed: int = 0,
) -> dict[str, Any]:
    """A synthetic registry of ``versions`` versions at ``root`` (see the module docstring)."""
    import sqlite3

    from adapterhub_lite.registry.client.local import LocalRegistry, _Index

    started = time.perf_counter()
    rng = random.Random(seed)
    registry = LocalRegistry(root)
    for record in template["files"].values():
        registry._store_blob(source.blob_store.path(record["sha256"]), record["sha256"])
    langs, domains = tags
    entries = (versions + PER_ENTRY - 1) // PER_ENTRY
    db = sqlite3.connect(root / "index.sqlite")
    manifests = 0
    try:
        # a rollback journal for the bulk load, as an index that grew by pushes would be: with
        # the WAL, the first 1M run measured SQL search p95 193 ms; a rollback-built 1M index,
        # 19 ms (same queries, same machine, 2026-12-01)
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("BEGIN")
        batch: list[tuple[Any, ...]] = []
        for e in range(entries):
            base, task, architecture = bases[e % len(bases)], tasks[(e // 7) % len(tasks)], rng.choice(architectures)
            name = f"{task}-{architecture.replace('_', '-')}-{e:07d}"
            count = min(PER_ENTRY, versions - e * PER_ENTRY)
            entry_tags = json.dumps(
                sorted(
                    {
                        f"task:{task}",
                        "head:classification",
                        f"lang:{rng.choice(langs)}",
                        f"domain:{rng.choice(domains)}",
                    }
                )
            )
            for patch in range(count):
                metrics = {"macro_f1": round(rng.uniform(0.3, 0.95), 4), "accuracy": round(rng.uniform(0.5, 0.99), 4)}
                batch.append(
                    (
                        base,
                        task,
                        name,
                        f"1.0.{patch}",
                        1,
                        0,
                        patch,
                        template["digest"],
                        architecture,
                        "classification",
                        entry_tags,
                        json.dumps(metrics),
                        "2026-12-01T00:00:00+00:00",
                        0,
                        int(patch == count - 1),
                    )
                )
            latest = batch[-1]
            manifest = {
                **template,
                "base": base,
                "task": task,
                "name": name,
                "version": latest[3],
                "summary": {
                    **template["summary"],
                    "architecture": architecture,
                    "metrics": json.loads(latest[11]),
                    "tags": json.loads(entry_tags),
                },
            }
            path = registry._manifest_path(registry_ref(base, task, name), latest[3])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(manifest))
            manifests += 1
            if len(batch) >= 50_000:
                db.executemany(f"INSERT INTO versions VALUES ({', '.join('?' * 15)})", batch)
                batch = []
        db.executemany(f"INSERT INTO versions VALUES ({', '.join('?' * 15)})", batch)
        db.execute(_Index._FILL_METRICS)
        db.execute("INSERT INTO generation VALUES (0, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1")
        db.execute("COMMIT")
    finally:
        db.close()
    return {
        "versions": versions,
        "entries": entries,
        "manifest_files": manifests,
        "seconds": time.perf_counter() - started,
        "method": "bulk SQL inserts of every version's index row in one transaction; one minimal manifest "
        "file per entry (its newest version); blobs of one real pushed artifact shared",
    }


def registry_ref(base: str, task: str, name: str) -> Any:
    from adapterhub_lite.registry.format.refs import Ref

    return Ref(base, task, name)


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident memory (VmHWM) of a process, or of this one, in MB."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(
    root: Path,
    work: Path,
    label: str,
    sources: list[Path],
    served: list[Path],
    plan: list[tuple[str, dict[str, Any]]],
    *,
    remote: Any,
    latency_stats: Callable[[list[float]], dict[str, Any]],
    pulls: int = 10,
) -> dict[str, Any]:
    """Open, search, push and pull on the registry at ``root``, locally and through ``ahl serve``."""
    from adapterhub_lite import hub
    from adapterhub_lite.registry.client.local import LocalRegistry

    def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
        start = time.perf_counter()
        value = fn(*args, **kwargs)
        return time.perf_counter() - start, value

    out: dict[str, Any] = {"load_average_before": os.getloadavg()}
    opens = [timed(LocalRegistry, root)[0] for _ in range(5)]
    registry = LocalRegistry(root)
    out["open"] = latency_stats(opens)
    registry.search(limit=50)  # warm-up
    out["search"] = latency_stats([timed(registry.search, **filters)[0] for _, filters in plan])
    out["search_sql"] = latency_stats([timed(registry._index.search, **filters)[0] for _, filters in plan])
    out["search_by_kind_p95_ms"] = {
        kind: latency_stats([timed(registry.search, **f)[0] for k, f in plan if k == kind])["p95_ms"]
        for kind in dict(plan)
    }
    latest = [e.ref for e in registry.search(limit=pulls)]
    pull_times, push_times = [], []
    for i, source in enumerate(sources):  # interleaved: a push, then a pull
        push_times.append(timed(registry.push, source)[0])
        if i < len(latest):
            pull_times.append(timed(registry.pull, latest[i], work / f"{label}-pulled-{i}")[0])
    out["push"], out["cached_pull"] = latency_stats(push_times), latency_stats(pull_times)
    with remote.client_env(work), remote.serving(root, work / f"serve-{label}.log") as server:
        from adapterhub_lite.registry.format import boundary

        # the first request builds the server's repository index (minutes at a million
        # versions): the client's 60 s stall limit is lifted for it alone
        stall, boundary.STALL_TIMEOUT_S = boundary.STALL_TIMEOUT_S, 3600.0
        try:
            first, _ = timed(hub.search, registry=server.url, limit=50)
        finally:
            boundary.STALL_TIMEOUT_S = stall
        out["served_first_request_s"] = first
        searched = [(kind, timed(hub.search, registry=server.url, **filters)[0]) for kind, filters in plan]
        out["served_search"] = latency_stats([seconds for kind, seconds in searched if kind != "sort"])
        out["served_search_by_kind_p95_ms"] = {
            kind: latency_stats([seconds for k, seconds in searched if k == kind])["p95_ms"] for kind in dict(plan)
        }
        served_push = []
        for i, source in enumerate(served):
            remote.use_cache(work / f"{label}-client-cache-push-{i}")
            seconds, pushed = timed(hub.push, source, registry=server.ns_url)
            served_push.append(seconds)
        ref = str(pushed.ref)  # a real artifact (the synthetic versions share one artifact's files)
        remote.use_cache(work / f"{label}-client-cache")
        uncached, _ = timed(hub.pull, ref, to=work / f"{label}-served-0", registry=server.ns_url)
        cached = [
            timed(hub.pull, ref, to=work / f"{label}-served-{i + 1}", registry=server.ns_url)[0] for i in range(pulls)
        ]
        after_push = [
            timed(hub.search, registry=server.url, **filters)[0] for _, filters in plan[:12] if "sort" not in filters
        ]
        out["served_push"], out["served_cached_pull"] = latency_stats(served_push), latency_stats(cached)
        out["served_uncached_pull_ms"] = uncached * 1000
        out["served_search_after_pushes"] = latency_stats(after_push)
        out["server_peak_rss_mb"] = peak_rss_mb(server.process.pid)
        out["server_index_mb"] = sum(f.stat().st_size for f in (root / "repos").glob("index.sqlite*")) / 1e6
    out["client_peak_rss_mb"] = peak_rss_mb()
    out["load_average_after"] = os.getloadavg()
    return out


def bench_scale(
    work: Path,
    small_entry: Any,
    small_registry: Any,
    versions: int,
    *,
    write_sources: Callable[[Path, int, str], list[Path]],
    plan: list[tuple[str, dict[str, Any]]],
    remote: Any,
    latency_stats: Callable[[list[float]], dict[str, Any]],
    bases: list[str],
    tasks: list[str],
    architectures: list[str],
    tags: tuple[list[str], list[str]],
    reuse: Path | None = None,
) -> dict[str, Any]:
    """Build the 10k baseline and the ``versions`` registry the same way, then measure both.

    With ``reuse``, both registries live under that directory and are built only if absent (a
    1M build takes many minutes); the pushes of earlier runs stay in them, a few versions more.
    """
    result: dict[str, Any] = {}
    roots = []
    for label, count in (("10k", 10_000), ("scale", versions)):
        root = (reuse or work) / f"reg-{label}-{count}"
        roots.append(root)
        record = root / "build.json"
        if reuse is not None and record.exists():
            built = json.loads(record.read_text())
            print(f"  reusing {count:,} versions at {root}; measuring", flush=True)
        else:
            built = build(
                root,
                small_entry.manifest,
                small_registry,
                count,
                bases=bases,
                tasks=tasks,
                architectures=architectures,
                tags=tags,
            )
            record.write_text(json.dumps(built))
            print(f"  built {count:,} versions in {built['seconds']:.0f} s; measuring", flush=True)
        sources = write_sources(work / f"sources-{label}", 10, "scale-local")
        served = write_sources(work / f"served-{label}", 10, "scale-served")
        result[label] = {
            "build": built,
            **measure(root, work, label, sources, served, plan, remote=remote, latency_stats=latency_stats),
        }
    result["interleaved"] = interleaved(
        roots, work, write_sources(work / "served-both", 20, "scale-both"), remote=remote, latency_stats=latency_stats
    )
    return result


def interleaved(
    roots: list[Path],
    work: Path,
    sources: list[Path],
    *,
    remote: Any,
    latency_stats: Callable[[list[float]], dict[str, Any]],
    pulls: int = 20,
) -> dict[str, Any]:
    """Served pushes and cached pulls on both registries at once, alternating between them (which
    goes first alternates too), so that a shared machine's load falls on both sizes alike: the
    comparison of push and cached pull that the goals ask for. Each registry gets every source,
    as versions of one new entry."""
    from adapterhub_lite import hub

    labels = ["10k", "scale"]
    push: dict[str, list[float]] = {label: [] for label in labels}
    pull: dict[str, list[float]] = {label: [] for label in labels}
    refs: dict[str, str] = {}
    with (
        remote.client_env(work),
        remote.serving(roots[0], work / "serve-both-10k.log") as small,
        remote.serving(roots[1], work / "serve-both-scale.log") as large,
    ):
        servers = {"10k": small, "scale": large}
        for i, source in enumerate(sources):
            for label in labels if i % 2 == 0 else labels[::-1]:
                remote.use_cache(work / f"both-{label}-cache-push-{i}")
                start = time.perf_counter()
                refs[label] = str(hub.push(source, registry=servers[label].ns_url).ref)
                push[label].append(time.perf_counter() - start)
        for label in labels:  # the uncached pull that fills each cache
            remote.use_cache(work / f"both-{label}-cache")
            hub.pull(refs[label], to=work / f"both-{label}-pulled-0", registry=servers[label].ns_url)
        for i in range(pulls):
            for label in labels if i % 2 == 0 else labels[::-1]:
                remote.use_cache(work / f"both-{label}-cache")
                start = time.perf_counter()
                hub.pull(refs[label], to=work / f"both-{label}-pulled-{i + 1}", registry=servers[label].ns_url)
                pull[label].append(time.perf_counter() - start)
    return {
        label: {"served_push": latency_stats(push[label]), "served_cached_pull": latency_stats(pull[label])}
        for label in labels
    }
