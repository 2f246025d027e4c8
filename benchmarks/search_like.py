"""Search by similarity (``ahl search --like``) at 10k entries: local and through ``ahl serve``.

A registry of ``--entries`` version manifests (default 10,000, all on one base so that every
query ranks all of them: the worst case), each with a random 384-wide task embedding, is written
directly as manifests and indexed by opening it (the index rebuild reads every manifest, as after
a crash). Then ``--queries`` random query embeddings are ranked (top 10):

- local: ``hub.search(like=...)`` over the directory, with one registry object (a long-lived
  process: the latest versions' vectors stay in memory while the registry is unchanged) and
  with the registry opened for each query (what one command pays);
- served: the same call against a real ``ahl serve`` on 127.0.0.1 over the same directory (one
  POST per query, ranked on the server);
- baseline, in the same run: a plain ``hub.search`` (no ranking) of 10 rows, local and served.

The query's own embedding is computed once outside the timing (that is one forward pass over
the user's data, the same cost whatever the registry holds).

    .venv/bin/python benchmarks/search_like.py [--entries 10000] [--queries 200]

Prints a table and writes ``benchmarks/results/search_like.json``. Goal: p95 < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from adapterhub_lite import hub
from adapterhub_lite.registry.client.local import LocalRegistry
from adapterhub_lite.task_embedding import TaskEmbedding

RESULTS = Path(__file__).resolve().parent / "results"
BASE = "sentence-transformers/all-MiniLM-L6-v2"
GOAL_P95_MS = 50.0


def populate(root: Path, total: int, rng: np.random.Generator) -> float:
    """Write ``total`` manifests with task embeddings, then open the registry (index rebuild)."""
    LocalRegistry(root)  # the layout
    (root / "index.sqlite").unlink()
    org, model = BASE.split("/")
    for i in range(total):
        task = f"task{i % 97:02d}"
        name = f"adapter-{i:05d}"
        vector = rng.standard_normal(384).astype(np.float32)
        summary = {
            "kind": "adapter",
            "architecture": "pfeiffer",
            "head": "classification",
            "labels": ["a", "b"],
            "metrics": {"accuracy": float(rng.uniform(0.5, 1))},
            "tags": [f"task:{task}"],
            "adapters": [],
            "task_embedding": TaskEmbedding(vector, 256, 128).to_dict(),
        }
        manifest = {
            "layout": 1,
            "base": BASE,
            "task": task,
            "name": name,
            "version": "1.0.0",
            "kind": "adapter",
            "digest": "sha256:" + f"{i:064x}",
            "files": {},
            "pushed_at": "2026-12-01T00:00:00+00:00",
            "summary": summary,
        }
        path = root / "entries" / org / model / task / name / "1.0.0.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest))
    start = time.perf_counter()
    LocalRegistry(root)
    return time.perf_counter() - start


def latencies(fn: Any, queries: list[TaskEmbedding]) -> dict[str, float]:
    fn(queries[0])  # warm: connections, page cache
    times = []
    for query in queries:
        start = time.perf_counter()
        fn(query)
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)), "queries": len(times)}


def serve(root: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "AHL_SERVE_TOKENS": "bench-token:bench"}
    process = subprocess.Popen(
        [sys.executable, "-m", "adapterhub_lite", "serve", "--registry", str(root), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("ahl serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    queries = [TaskEmbedding(rng.standard_normal(384).astype(np.float32), 256, 128) for _ in range(args.queries)]
    with tempfile.TemporaryDirectory(prefix="ahl-bench-like-") as tmp:
        root = Path(tmp) / "registry"
        index_seconds = populate(root, args.entries, rng)
        local = LocalRegistry(root)
        result: dict[str, Any] = {"entries": args.entries, "index_rebuild_s": index_seconds}
        result["local_like"] = latencies(lambda q: hub.search(registry=local, like=q, base=BASE, top=10), queries)
        # cold: a registry opened for each query (what one CLI call pays, minus Python's start-up)
        result["local_like_cold"] = latencies(
            lambda q: hub.search(registry=LocalRegistry(root), like=q, base=BASE, top=10), queries[:20]
        )
        result["local_plain"] = latencies(lambda q: hub.search(registry=local, base=BASE, limit=10), queries)
        process, url = serve(root)
        try:
            result["served_like"] = latencies(lambda q: hub.search(registry=url, like=q, base=BASE, top=10), queries)
            result["served_plain"] = latencies(lambda q: hub.search(registry=url, base=BASE, limit=10), queries)
            local_top = [str(e.ref) for e in hub.search(registry=local, like=queries[0], base=BASE, top=10)]
            served_top = [str(e.ref) for e in hub.search(registry=url, like=queries[0], base=BASE, top=10)]
            result["served_equals_local"] = local_top == served_top
        finally:
            process.terminate()
            process.wait(timeout=30)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search_like.json").write_text(json.dumps(result, indent=2))
    print(f"search --like over {args.entries} entries of one base ({args.queries} queries, top 10)")
    print(f"| case | p50 ms | p95 ms | x plain search p95 | goal p95 < {GOAL_P95_MS:.0f} ms |")
    print("|---|---:|---:|---:|---|")
    for where, case in (("local", "local"), ("local", "local_like_cold"), ("served", "served")):
        like = result[f"{case}_like"] if case != "local_like_cold" else result[case]
        plain = result[f"{where}_plain"]
        label = f"{where} --like" + (", registry opened per query" if case == "local_like_cold" else "")
        print(
            f"| {label} | {like['p50_ms']:.1f} | {like['p95_ms']:.1f} | "
            f"{like['p95_ms'] / plain['p95_ms']:.2f}x | {'met' if like['p95_ms'] < GOAL_P95_MS else 'NOT met'} |"
        )
        if case == "local_like_cold":
            continue
        print(f"| {where} plain search (baseline) | {plain['p50_ms']:.1f} | {plain['p95_ms']:.1f} | 1.00x | |")
    print(f"served ranking equals local: {result['served_equals_local']}; index rebuild {index_seconds:.1f} s")


if __name__ == "__main__":
    main()
