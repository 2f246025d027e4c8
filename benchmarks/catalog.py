"""Catalog page speed: ``ahl serve``'s HTML catalog at 10k entries, against its JSON listing.

A registry of ``--entries`` (10,000) version manifests is built as ``benchmarks/registry.py``
builds its search registry (one small artifact pushed for real, its blobs reused by every
manifest, each manifest written and indexed as ``LocalRegistry.push`` does: 6 bases, 40 tasks,
three architectures, 1-3 versions per entry, ~2% yanked). A real ``ahl serve`` subprocess on
127.0.0.1 serves it (the entries appear as the read-only ``ahl/SLUG`` repositories).

Then ``--queries`` (300) mixed catalog queries, round-robin over nine kinds (no filter, name
search, task, base, tag, architecture, sort by accuracy, a later page, task + sort), each asked
twice in alternation: the HTML page ``GET /?...`` and the JSON listing it is a view of (``GET
/api/models?...`` with the same filters, sort, page size and offset: the baseline). Latency is
the client's wall time over one keep-alive connection. Also timed: entry pages and base-model
pages. Goal: catalog page p95 < 100 ms.

    python benchmarks/catalog.py            # ~2 min on 2 CPU cores
    python benchmarks/catalog.py --quick    # 2,000 entries, 90 queries
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers sit beside this script
import _registry_remote as remote  # noqa: E402

from registry import (  # noqa: E402
    ARCHITECTURES,
    BASES,
    DOMAINS,
    LANGS,
    TASKS,
    cpu_model,
    drop,
    filesystem_of,
    latency_stats,
    make_base,
    populate,
    small_model_and_metadata,
    write_small,
)

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "catalog.json"
GOAL_PAGE_P95_MS = 100.0
KINDS = ("all", "name", "task", "base", "tag", "architecture", "sort", "page", "task+sort")


def query_plan(rng: random.Random, count: int) -> list[tuple[str, dict[str, str]]]:
    """``count`` catalog queries (page parameters), round-robin over :data:`KINDS`."""
    plan = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        params = {
            "all": {},
            "name": {"q": rng.choice(["sst", "news", "houlsby", "task-1", "0042", "QNLI", "pfeif"])},
            "task": {"task": rng.choice(TASKS)},
            "base": {"base": rng.choice(BASES)},
            "tag": {"tag": rng.choice([f"lang:{rng.choice(LANGS)}", f"domain:{rng.choice(DOMAINS)}"])},
            "architecture": {"architecture": rng.choice(ARCHITECTURES)},
            "sort": {"sort": "accuracy"},
            "page": {"page": str(rng.randint(2, 20))},
            "task+sort": {"task": rng.choice(TASKS), "sort": "accuracy"},
        }[kind]
        plan.append((kind, params))
    return plan


def listing_params(params: dict[str, str]) -> list[tuple[str, str]]:
    """The JSON listing request a catalog page is a view of (``pages.Catalog.catalog``)."""
    from adapterhub_lite.registry.format.tags import listing_filters
    from adapterhub_lite.registry.server.pages import PAGE_ROWS
    from adapterhub_lite.registry.server.repo_model import METRIC_SORT

    filters = listing_filters(
        base=params.get("base"), task=params.get("task"), architecture=params.get("architecture"), tag=params.get("tag")
    )
    query = [("filter", f) for f in filters] + ([("search", params["q"])] if params.get("q") else [])
    query += [("sort", f"{METRIC_SORT}{params['sort']}")] if params.get("sort") else []
    page = int(params.get("page", "1"))
    return query + [("limit", str(PAGE_ROWS + 1)), ("cursor", str((page - 1) * PAGE_ROWS))]


def build(work: Path, entries: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """The 10k registry of ``benchmarks/registry.py`` section 3."""
    from adapterhub_lite.registry.client.local import LocalRegistry

    base = make_base()
    model, metadata = small_model_and_metadata(base, name="sst2", task="sst2")
    small = write_small(work / "small", model, metadata, seed=0)
    model.remove_hooks()
    registry = LocalRegistry(work / "registry")
    entry = registry.push(small.path, version="1.0.0")
    population = populate(registry, entry.manifest, entries, random.Random(seed))
    return registry.root, population


def bench(root: Path, work: Path, queries: int, pages: int, seed: int) -> dict[str, Any]:
    import httpx2 as httpx

    rng = random.Random(seed + 1)
    plan = query_plan(rng, queries)
    page_ms: dict[str, list[float]] = {k: [] for k in KINDS}
    json_ms: dict[str, list[float]] = {k: [] for k in KINDS}
    rows: dict[str, list[int]] = {k: [] for k in KINDS}
    with remote.serving(root, work / "serve.log") as server, httpx.Client(base_url=server.url, timeout=120) as client:
        start = time.perf_counter()
        first = client.get("/")  # the first read mirrors every locally pushed entry into the repo index
        first_seconds = time.perf_counter() - start
        assert first.status_code == 200, first.text[:300]
        for _ in range(3):  # warm-up
            client.get("/"), client.get("/api/models", params={"limit": "26"})
        for index, (kind, params) in enumerate(plan):
            page_url, api = "/?" + urlencode(params), listing_params(params)
            order = ("page", "json") if index % 2 == 0 else ("json", "page")  # alternate who goes first
            for what in order:
                start = time.perf_counter()
                answer = client.get(page_url) if what == "page" else client.get("/api/models", params=api)
                seconds = time.perf_counter() - start
                assert answer.status_code == 200, (what, params, answer.text[:300])
                (page_ms if what == "page" else json_ms)[kind].append(seconds)
                if what == "page":
                    rows[kind].append(answer.text.count('<tr class="result"'))
        listing = client.get("/api/models", params={"limit": "1000"}).json()
        repos = [row["id"] for row in rng.sample(listing, min(pages, len(listing)))]
        entry_s = []
        for repo in repos:
            start = time.perf_counter()
            assert client.get(f"/{repo}").status_code == 200
            entry_s.append(time.perf_counter() - start)
        base_s = []
        for base in (BASES * pages)[: max(2, pages // 4)]:
            start = time.perf_counter()
            assert client.get(f"/-/base/{base}").status_code == 200
            base_s.append(time.perf_counter() - start)
    flat_page = [s for k in KINDS for s in page_ms[k]]
    flat_json = [s for k in KINDS for s in json_ms[k]]
    overall = {"page": latency_stats(flat_page), "json": latency_stats(flat_json)}
    overall["p95_ratio_page_to_json"] = overall["page"]["p95_ms"] / overall["json"]["p95_ms"]
    return {
        "first_request_seconds": first_seconds,
        "per_kind": {
            k: {
                "example": next(p for kk, p in plan if kk == k),
                "rows_median": sorted(rows[k])[len(rows[k]) // 2],
                "page": latency_stats(page_ms[k]),
                "json": latency_stats(json_ms[k]),
            }
            for k in KINDS
        },
        "overall": overall,
        "entry_page": latency_stats(entry_s),
        "base_page": latency_stats(base_s),
    }


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"catalog at {result['population']['versions']:,} versions "
        f"({result['population']['entries']:,} entries); ms, client wall time"
    )
    for column in ("query", "rows", "page p50", "page p95", "JSON p50", "JSON p95", "page/JSON p95"):
        table.add_column(column, justify="left" if column == "query" else "right")
    bench_result = result["catalog"]
    for kind, data in bench_result["per_kind"].items():
        table.add_row(
            kind,
            str(data["rows_median"]),
            f"{data['page']['p50_ms']:.1f}",
            f"{data['page']['p95_ms']:.1f}",
            f"{data['json']['p50_ms']:.1f}",
            f"{data['json']['p95_ms']:.1f}",
            f"{data['page']['p95_ms'] / data['json']['p95_ms']:.2f}x",
        )
    overall = bench_result["overall"]
    meets = "meets" if overall["page"]["p95_ms"] < GOAL_PAGE_P95_MS else "MISSES"
    table.add_row(
        "all (mixed)",
        "",
        f"{overall['page']['p50_ms']:.1f}",
        f"{overall['page']['p95_ms']:.1f}",
        f"{overall['json']['p50_ms']:.1f}",
        f"{overall['json']['p95_ms']:.1f}",
        f"{overall['p95_ratio_page_to_json']:.2f}x",
        style="bold",
    )
    Console(soft_wrap=True).print(table)
    entry = bench_result["entry_page"]
    print(
        f"catalog page p95 {overall['page']['p95_ms']:.1f} ms: {meets} the goal (< {GOAL_PAGE_P95_MS:.0f} ms); "
        f"entry page p50/p95 {entry['p50_ms']:.1f}/{entry['p95_ms']:.1f} ms; "
        f"base-model page p50/p95 {bench_result['base_page']['p50_ms']:.1f}/"
        f"{bench_result['base_page']['p95_ms']:.1f} ms; first request (index mirror) "
        f"{bench_result['first_request_seconds']:.1f} s"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--entries", type=int, default=10_000, help="version manifests in the registry")
    p.add_argument("--queries", type=int, default=300, help="timed catalog queries (each also as JSON)")
    p.add_argument("--pages", type=int, default=40, help="timed entry pages (and a quarter as many base pages)")
    p.add_argument("--quick", action="store_true", help="2,000 entries, 90 queries, 12 entry pages")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a temporary one)")
    p.add_argument("--json-out", type=Path, default=DEFAULT_JSON)
    args = p.parse_args(argv)
    if args.quick:
        args.entries, args.queries, args.pages = min(args.entries, 2000), min(args.queries, 90), min(args.pages, 12)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="ahl-catalog-bench-", dir=args.workdir))
    try:
        print(f"building {args.entries:,} versions in {work}", file=sys.stderr)
        root, population = build(work, args.entries, args.seed)
        print(f"{args.queries} catalog queries + as many JSON listings", file=sys.stderr)
        catalog = bench(root, work, args.queries, args.pages, args.seed)
    finally:
        drop(work)
    import platform

    result = {
        "meta": {
            "benchmark": "catalog",
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_model": cpu_model(),
            "workdir_fs": filesystem_of(work.parent),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "goal_page_p95_ms": GOAL_PAGE_P95_MS,
            "total_seconds": time.perf_counter() - started,
        },
        "population": population,
        "catalog": catalog,
    }
    print_table(result)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
