"""How fast ``ahl serve`` answers an honest client while others send hostile requests.

Starts a real ``python -m adapterhub_lite serve`` subprocess on 127.0.0.1 over a scratch
registry, then, for each scenario, runs attacker processes in the background and times
``--requests`` anonymous searches (``GET /api/models?search=...``) and model-info reads from a
separate client, one after the other. The baseline (no attacker) is measured in the same run.

Scenarios (each attacker is its own process, looping until stopped):
    none          no attacker: the baseline
    yaml          2 clients POST ``/api/validate-yaml`` with the largest allowed bodies (256 KiB):
                  a YAML alias bomb (10**9 values) and a 250 KB header of flow lists
    big-commit    1 client POSTs commit bodies of ``--upload-mb`` (the server's upload limit) as
                  fast as it can: one inline base64 file, decoded and hashed by the server
    slow-commit   2 clients trickle commit bodies at ~20 KiB/s (just above the minimum rate)
    card-reads    2 clients read model info of a repository whose card is a YAML bomb
    all           every attacker above at once

Writes JSON to ``benchmarks/results/server_under_attack.json`` (``--json-out``) and prints a table:
p50 / p95 / max latency per scenario and the p95 ratio to the baseline.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "server_under_attack.json"
TOKEN, USER = "bench-token", "bench"

ATTACKER = r"""
import base64, json, sys, time
import httpx2 as httpx
url, kind, token, upload_mb = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
auth = {"authorization": "Bearer " + token}
bomb = "---\n" + "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [
    "a%d: &a%d [%s]" % (i, i, ", ".join(["*a%d" % (i - 1)] * 10)) for i in range(1, 9)]) + "\n---\n"
header = "---\n" + "".join("k%d: [v, v, v, v, v, v, v, v]\n" % i for i in range(8000))[:250000] + "---\n"
yaml_bodies = [json.dumps({"content": bomb}).encode(), json.dumps({"content": header}).encode()]
head = b'{"key": "header", "value": {"summary": "attack"}}\n'
size = int(upload_mb * (1 << 20) * 3 / 4) - 4096  # decoded bytes whose base64 line fits the limit
big = head + json.dumps({"key": "file", "value": {"path": "big.bin", "encoding": "base64",
                         "content": base64.b64encode(b"\0" * size).decode()}}).encode() + b"\n"

def trickle():
    yield head
    for _ in range(200):
        time.sleep(0.1)
        yield b" " * 2048

while True:
    try:
        if kind == "yaml":
            for body in yaml_bodies:
                httpx.post(url + "/api/validate-yaml", content=body, headers=auth, timeout=120)
        elif kind == "big-commit":
            httpx.post(url + "/api/models/bench/target/commit/main", content=big, headers=auth, timeout=300)
        elif kind == "slow-commit":
            httpx.post(url + "/api/models/bench/target/commit/main", content=trickle(), headers=auth, timeout=300)
        elif kind == "card-reads":
            httpx.get(url + "/api/models/bench/bomb", timeout=120)
    except httpx.HTTPError:
        time.sleep(0.1)
"""

SCENARIOS = {
    "none": [],
    "yaml": ["yaml", "yaml"],
    "big-commit": ["big-commit"],
    "slow-commit": ["slow-commit", "slow-commit"],
    "card-reads": ["card-reads", "card-reads"],
    "all": ["yaml", "yaml", "big-commit", "slow-commit", "slow-commit", "card-reads", "card-reads"],
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(root: Path, port: int, upload_mb: float, log: Path) -> subprocess.Popen:
    env = {**os.environ, "AHL_SERVE_TOKENS": f"{TOKEN}:{USER}"}
    command = [
        sys.executable,
        "-m",
        "adapterhub_lite",
        "serve",
        "--registry",
        str(root),
        "--port",
        str(port),
        "--max-upload-mb",
        str(upload_mb),
        "--max-concurrent-uploads",
        "8",
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"ahl serve exited: {log.read_text()}") from None
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("ahl serve did not start within 120 s")


def prepare(url: str) -> None:
    """A few repositories to search, and one whose card is a YAML bomb (sent raw, unvalidated)."""
    auth = {"authorization": f"Bearer {TOKEN}"}
    for name in ["target", "bomb", *[f"honest-{i}" for i in range(20)]]:
        httpx.post(f"{url}/api/repos/create", json={"name": name}, headers=auth).raise_for_status()
    bomb = (
        "---\ntags: [x]\n"
        + "\n".join(
            ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
            + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
        )
        + "\n---\n# card\n"
    )
    line = {
        "key": "file",
        "value": {"path": "README.md", "encoding": "base64", "content": base64.b64encode(bomb.encode()).decode()},
    }
    body = b'{"key": "header", "value": {"summary": "bomb"}}\n' + json.dumps(line).encode() + b"\n"
    httpx.post(f"{url}/api/models/{USER}/bomb/commit/main", content=body, headers=auth).raise_for_status()


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
        "max_ms": 1000 * ordered[-1],
        "n": len(ordered),
    }


def measure(url: str, requests: int) -> dict[str, dict[str, float]]:
    search, info = [], []
    with httpx.Client(timeout=120) as client:
        for i in range(requests):
            started = time.perf_counter()
            response = client.get(f"{url}/api/models", params={"search": f"honest-{i % 20}"})
            search.append(time.perf_counter() - started)
            response.raise_for_status()
            started = time.perf_counter()
            client.get(f"{url}/api/models/{USER}/honest-{i % 20}").raise_for_status()
            info.append(time.perf_counter() - started)
    return {"search": stats(search), "model_info": stats(info)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100, help="timed searches (and model infos) per scenario")
    parser.add_argument("--upload-mb", type=float, default=64, help="the server's --max-upload-mb")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds the attackers run before timing")
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--json-out", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="ahl-attack-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(work / "registry", port, args.upload_mb, work / "serve.log")
    results: dict[str, Any] = {
        "requests": args.requests,
        "upload_mb": args.upload_mb,
        "cpus": os.cpu_count(),
        "scenarios": {},
    }
    try:
        prepare(url)
        for name in args.scenarios:
            attackers = [
                subprocess.Popen(
                    [sys.executable, "-c", ATTACKER, url, kind, TOKEN, str(args.upload_mb)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for kind in SCENARIOS[name]
            ]
            try:
                time.sleep(args.warmup if attackers else 0)
                results["scenarios"][name] = measure(url, args.requests)
            finally:
                for attacker in attackers:
                    attacker.kill()
                    attacker.wait()
            print(f"  {name}: done", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(30)
    base = results["scenarios"].get("none", {}).get("search", {}).get("p95_ms")
    print(
        f"\nahl serve under attack: {args.requests} searches + model infos per scenario, "
        f"--max-upload-mb {args.upload_mb:g}, {os.cpu_count()} CPUs"
    )
    print(
        f"{'scenario':<12} {'search p50':>11} {'p95':>9} {'max':>9} {'p95 / none':>11} "
        f"{'info p50':>9} {'p95':>9} {'max':>9}"
    )
    for name, row in results["scenarios"].items():
        s, i = row["search"], row["model_info"]
        ratio = f"{s['p95_ms'] / base:.1f}x" if base else "-"
        print(
            f"{name:<12} {s['p50_ms']:>9.1f}ms {s['p95_ms']:>7.1f}ms {s['max_ms']:>7.1f}ms {ratio:>11} "
            f"{i['p50_ms']:>7.1f}ms {i['p95_ms']:>7.1f}ms {i['max_ms']:>7.1f}ms"
        )
    worst = max(row["search"]["max_ms"] for row in results["scenarios"].values())
    results["worst_search_ms"] = worst
    print(f"goal: every search under 1 s while attacked: {'met' if worst < 1000 else 'NOT met'} (worst {worst:.0f} ms)")
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
