"""The remote half of ``benchmarks/registry.py``: the same artifacts through a real ``ahl serve``.

Every measurement goes end to end through this project's client (``hub.push`` / ``hub.pull`` /
``hub.search`` with a registry URL, i.e. ``RemoteRegistry`` over ``huggingface_hub``) against an
``ahl serve`` subprocess on 127.0.0.1 that this module starts and stops. Client and server share
this machine's CPUs, so the server's CPU time is read from ``/proc/PID/stat`` next to the
client's ``time.process_time()``: with two cores, that split tells what bounds a transfer.

HTTP requests are counted with a request hook on ``huggingface_hub``'s shared HTTP session (the
one session every client call uses), which is how "a cached exact pull makes no request" is
checked rather than assumed.

The helpers the local half already has (artifact writers, timing, statistics) are passed in by
the caller rather than imported, because ``registry.py`` runs as ``__main__``.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TOKEN, USER = "bench-token", "bench"
MB = 1e6
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- plumbing ---------------------------------------------------------------------------------


class Server:
    """An ``ahl serve`` subprocess on a free port of 127.0.0.1 over the registry directory ``root``.

    ``url`` is the endpoint (reads from any namespace, as ``ahl search`` uses it); ``ns_url``
    adds the benchmark user's namespace, so that pushes need no ``whoami`` and resolving needs
    no search by tag (one ``refs`` request for ``latest``).
    """

    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log = root, log
        with socket.socket() as probe:  # a port free now; the server binds it a moment later
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.ns_url = f"{self.url}/{USER}"
        self.process: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0

    def start(self) -> Server:
        """Start the server and wait until its port accepts connections (at most 120 s)."""
        env = {**os.environ, "AHL_SERVE_TOKENS": f"{TOKEN}:{USER}"}
        command = [
            sys.executable,
            "-m",
            "adapterhub_lite",
            "serve",
            "--registry",
            str(self.root),
            "--port",
            str(self.port),
        ]
        started = time.perf_counter()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ahl serve exited with {self.process.returncode}: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                self.start_seconds = time.perf_counter() - started
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"ahl serve did not start within 120 s: {self.log.read_text()}")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process (all its threads) has used so far."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)

    def stop(self) -> None:
        """SIGTERM (uvicorn's graceful shutdown), then wait; no-op when not running."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None


@contextmanager
def serving(root: Path, log: Path) -> Iterator[Server]:
    """A started :class:`Server`, stopped on the way out whatever happens."""
    server = Server(root, log).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def client_env(work: Path) -> Iterator[None]:
    """The client's environment for the whole remote part: the benchmark user's token, no stored
    tokens of the real user, online; restored afterwards."""
    wanted = {
        "AHL_TOKEN": TOKEN,
        "XDG_CONFIG_HOME": str(work / "client-config"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "AHL_CACHE": str(work / "client-cache-default"),
    }
    removed = ("AHL_OFFLINE", "HF_HUB_OFFLINE", "AHL_REGISTRY")
    saved = {k: os.environ.get(k) for k in (*wanted, *removed)}
    os.environ.update(wanted)
    for name in removed:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def use_cache(path: Path) -> None:
    """Point the client at a download cache: ``RemoteRegistry`` reads ``$AHL_CACHE`` when it is
    built, and ``hub.*`` with a URL builds one per call (as one CLI command does)."""
    os.environ["AHL_CACHE"] = str(path)


class RequestCounter:
    """Counts the HTTP requests ``huggingface_hub``'s shared session sends (a request hook)."""

    def __init__(self) -> None:
        from huggingface_hub.utils import get_session

        self.count = 0
        self.session = get_session()
        hooks = self.session.event_hooks
        self._before = hooks
        self.session.event_hooks = {**hooks, "request": [*hooks.get("request", []), self._hook]}

    def _hook(self, request: Any) -> None:
        self.count += 1

    def close(self) -> None:
        self.session.event_hooks = self._before


def measured(
    server: Server, counter: RequestCounter, fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> tuple[dict[str, float], Any]:
    """Run ``fn``; return wall seconds, client and server CPU seconds, HTTP requests, and its value."""
    requests, server_cpu = counter.count, server.cpu_seconds()
    client_cpu, start = time.process_time(), time.perf_counter()
    value = fn(*args, **kwargs)
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "client_cpu_s": time.process_time() - client_cpu,
        "server_cpu_s": server.cpu_seconds() - server_cpu,
        "requests": counter.count - requests,
    }, value


def copy_fsync(source: Path, target: Path) -> None:
    """``shutil.copyfile`` and then fsync the copy: the baseline for writes that must be durable
    (the download cache fsyncs each blob before renaming it into place)."""
    shutil.copyfile(source, target)
    with target.open("rb+") as handle:
        os.fsync(handle.fileno())


def profile_top(fn: Callable[[], Any], top: int) -> list[dict[str, Any]]:
    """Run ``fn`` under cProfile; the ``top`` functions by own time (with calls and cumulative)."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        fn()
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, function), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(filename).parent.name}/{Path(filename).name}:{line}" if line else filename
        rows.append(
            {
                "function": f"{where}({function})",
                "calls": calls,
                "tottime_s": round(own, 4),
                "cumtime_s": round(cumulative, 4),
            }
        )
    rows.sort(key=lambda r: -r["tottime_s"])
    return rows[:top]


def summarize(
    samples: list[dict[str, float]], latency_stats: Callable[[list[float]], dict[str, Any]]
) -> dict[str, Any]:
    """Latency statistics of the wall times, plus median CPU split and request count."""
    return {
        **latency_stats([s["wall_s"] for s in samples]),
        "client_cpu_ms_median": statistics.median(s["client_cpu_s"] for s in samples) * 1000,
        "server_cpu_ms_median": statistics.median(s["server_cpu_s"] for s in samples) * 1000,
        "requests_median": statistics.median(s["requests"] for s in samples),
        "requests_max": max(s["requests"] for s in samples),
    }


# -- pull latency of the small artifact --------------------------------------------------------


def bench_pull(
    work: Path,
    small_dir: Path,
    pulls: int,
    *,
    copy_files: Callable[[Path, Path], None],
    latency_stats: Callable[[list[float]], dict[str, Any]],
) -> dict[str, Any]:
    """Uncached vs cached ``hub.pull`` of the small artifact by exact version, and cached ``latest``.

    Uncached: a fresh ``$AHL_CACHE`` per pull, so every file downloads. Cached: one cache that
    holds the version. The four operations rotate their order per iteration. Finally the
    server is stopped and a cached exact pull is repeated: it must still succeed.
    """
    from adapterhub_lite import hub

    dests, caches = work / "remote-small-pulls", work / "remote-small-caches"
    counter = RequestCounter()
    try:
        with serving(work / "serve-small", work / "serve-small.log") as server:
            use_cache(caches / "push")
            entry = hub.push(small_dir, registry=server.ns_url, version="1.0.0")
            exact = str(entry.ref)
            latest = exact.rpartition("@")[0]
            warm = caches / "warm"

            def uncached(i: int) -> Any:
                use_cache(caches / f"cold-{i}")
                return hub.pull(exact, registry=server.ns_url, to=dests / f"cold-{i}")

            def cached(i: int, ref: str, kind: str) -> Any:
                use_cache(warm)
                return hub.pull(ref, registry=server.ns_url, to=dests / f"{kind}-{i}")

            def raw_copy(i: int) -> None:
                target = dests / f"copy-{i}"
                target.mkdir(parents=True)
                copy_files(small_dir, target)

            ops: dict[str, Callable[[int], Any]] = {
                "uncached_exact": uncached,
                "cached_exact": lambda i: cached(i, exact, "exact"),
                "cached_latest": lambda i: cached(i, latest, "latest"),
                "copy_files": raw_copy,
            }
            for i in range(2):  # warm-up (imports, connections, the warm cache), untimed
                uncached(-1 - i)
                cached(-1 - i, exact, "exact")
                cached(-1 - i, latest, "latest")
            samples: dict[str, list[dict[str, float]]] = {k: [] for k in ops}
            names = list(ops)
            for i in range(pulls):
                for name in names[i % len(names) :] + names[: i % len(names)]:
                    sample, _ = measured(server, counter, ops[name], i)
                    samples[name].append(sample)
                shutil.rmtree(caches / f"cold-{i}", ignore_errors=True)
                shutil.rmtree(dests, ignore_errors=True)
            profile = profile_top(lambda: cached(-9, exact, "profiled"), 12)  # where a cached pull's time goes
        # The server is gone: a cached exact version must still pull (it makes no request).
        before = counter.count
        use_cache(warm)
        offline_seconds = time.perf_counter()
        hub.pull(exact, registry=server.ns_url, to=dests / "server-stopped")
        offline_seconds = time.perf_counter() - offline_seconds
        offline_ok = counter.count == before
    finally:
        counter.close()
        shutil.rmtree(dests, ignore_errors=True)
        shutil.rmtree(caches, ignore_errors=True)
    return {
        "ref": exact,
        "server_start_s": server.start_seconds,
        **{k: summarize(v, latency_stats) for k, v in samples.items()},
        "cached_exact_profile_top_by_own_time": profile,
        "cached_exact_with_server_stopped": {"ok_without_requests": offline_ok, "ms": offline_seconds * 1000},
    }


# -- throughput of the big artifact ------------------------------------------------------------


# Per repetition, rotating; push always precedes the pull of what it pushed.
ORDERS = [
    ("copy", "copy_fsync", "hash", "push", "pull"),
    ("push", "pull", "copy", "copy_fsync", "hash"),
    ("hash", "push", "copy", "copy_fsync", "pull"),
]


def _transfer_rep(
    work: Path,
    big: Any,
    rep: int,
    order: tuple[str, ...],
    counter: RequestCounter,
    samples: dict[str, list[dict[str, float]]],
    sha256_file: Callable[[Path], str],
    profiles: dict[str, list[dict[str, Any]]] | None,
) -> None:
    """One repetition against a fresh server: the five operations in ``order``, appended to
    ``samples``; or, with ``profiles``, one push and one pull under cProfile."""
    from adapterhub_lite import hub

    weights, copy_to, pulled = big.weights_path, work / f"remote-copy-{rep}.bin", work / f"remote-pulled-big-{rep}"
    with serving(work / f"serve-big-{rep}", work / f"serve-big-{rep}.log") as server:
        ref: list[str] = []

        def push() -> None:
            use_cache(work / f"cache-big-push-{rep}")  # a fresh cache: nothing known about the server
            ref.append(str(hub.push(big.path, registry=server.ns_url, version="1.0.0").ref))

        def pull() -> None:
            use_cache(work / f"cache-big-pull-{rep}")  # a fresh cache: every byte downloads
            hub.pull(ref[0], registry=server.ns_url, to=pulled)

        if profiles is not None:
            profiles["push"] = profile_top(push, 15)
            profiles["pull"] = profile_top(pull, 15)
            return
        ops: dict[str, Callable[[], Any]] = {
            "copy": lambda: shutil.copyfile(weights, copy_to),
            "copy_fsync": lambda: copy_fsync(weights, copy_to),
            "hash": lambda: sha256_file(weights),
            "push": push,
            "pull": pull,
        }
        for op in order:
            sample, _ = measured(server, counter, ops[op])
            samples[op].append(sample)
            copy_to.unlink(missing_ok=True)


def bench_transfer(
    work: Path,
    big: Any,
    reps: int,
    *,
    sha256_file: Callable[[Path], str],
    dir_bytes: Callable[[Path], int],
    profile: bool,
) -> dict[str, Any]:
    """``hub.push`` / ``hub.pull`` of the big artifact through a fresh ``ahl serve`` per repetition
    (fresh server directory, fresh client cache, fresh destination), interleaved with the
    same-disk baselines: ``shutil.copyfile``, copy + fsync and ``sha256_file`` of the weights
    file. Optionally one more push and pull under cProfile (client side)."""
    weights = big.weights_path
    weight_bytes, artifact_bytes = weights.stat().st_size, dir_bytes(big.path)
    samples: dict[str, list[dict[str, float]]] = {op: [] for op in ORDERS[0]}
    counter = RequestCounter()
    profiles: dict[str, list[dict[str, Any]]] = {}
    try:
        for rep in range(reps + (1 if profile else 0)):
            # The extra repetition is profiled, not timed: cProfile slows what it watches.
            _transfer_rep(
                work,
                big,
                rep,
                ORDERS[rep % len(ORDERS)],
                counter,
                samples,
                sha256_file,
                profiles if rep == reps else None,
            )
            assert dir_bytes(work / f"remote-pulled-big-{rep}") == artifact_bytes
            for path in (
                work / f"serve-big-{rep}",
                work / f"remote-pulled-big-{rep}",
                work / f"cache-big-push-{rep}",
                work / f"cache-big-pull-{rep}",
            ):
                shutil.rmtree(path, ignore_errors=True)
    finally:
        counter.close()
    size = {
        "copy": weight_bytes,
        "copy_fsync": weight_bytes,
        "hash": weight_bytes,
        "push": artifact_bytes,
        "pull": artifact_bytes,
    }
    mbps = {op: [size[op] / MB / s["wall_s"] for s in ss] for op, ss in samples.items()}
    median = {op: statistics.median(v) for op, v in mbps.items()}
    split = {
        op: {
            "wall_s_median": statistics.median(s["wall_s"] for s in ss),
            "client_cpu_s_median": statistics.median(s["client_cpu_s"] for s in ss),
            "server_cpu_s_median": statistics.median(s["server_cpu_s"] for s in ss),
            "requests_median": statistics.median(s["requests"] for s in ss),
        }
        for op, ss in samples.items()
        if op in ("push", "pull")
    }
    return {
        "weights_bytes": weight_bytes,
        "artifact_bytes": artifact_bytes,
        "reps": reps,
        "samples": samples,
        "mb_per_s": mbps,
        "median_mb_per_s": median,
        "cpu_split": split,
        "push_ratio_to_copy": median["push"] / median["copy"],
        "pull_ratio_to_copy": median["pull"] / median["copy"],
        "push_ratio_to_copy_fsync": median["push"] / median["copy_fsync"],
        "pull_ratio_to_copy_fsync": median["pull"] / median["copy_fsync"],
        "client_profile_top_by_own_time": profiles,
    }


# -- search at 10k -----------------------------------------------------------------------------


def bench_search(
    work: Path,
    reg_dir: Path,
    plan: list[tuple[str, dict[str, Any]]],
    kinds: tuple[str, ...],
    sort_searches: int,
    *,
    latency_stats: Callable[[list[float]], dict[str, Any]],
) -> dict[str, Any]:
    """``hub.search`` through ``ahl serve`` over the local part's 10k registry directory.

    The server mirrors every locally pushed entry as a repository ``ahl/SLUG``; it builds that
    repository index on the first request that needs it, which is timed on its own. Then the
    local part's search plan runs end to end through the client, each query alternating with
    ``LocalRegistry.search`` of the same directory (the local baseline, measured in this run);
    row counts are compared. ``sort`` lists every match on a remote (the client sorts), so only
    the first ``sort_searches`` of them run.
    """
    from adapterhub_lite import hub
    from adapterhub_lite.registry.client.local import LocalRegistry

    local = LocalRegistry(reg_dir)
    shutil.rmtree(reg_dir / "repos", ignore_errors=True)  # a server never started here: sync from scratch
    counter = RequestCounter()
    try:
        with serving(reg_dir, work / "serve-10k.log") as server:
            first, _ = measured(server, counter, hub.search, registry=server.url, limit=50)
            second, _ = measured(server, counter, hub.search, registry=server.url, limit=50)
            remote: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
            baseline: dict[str, list[float]] = {k: [] for k in kinds}
            rows: dict[str, list[int]] = {k: [] for k in kinds}
            disagreements: list[dict[str, Any]] = []
            done_sorts = 0
            for kind, filters in plan:
                if kind == "sort":
                    if done_sorts >= sort_searches:
                        continue
                    done_sorts += 1
                sample, found = measured(server, counter, hub.search, registry=server.url, **filters)
                remote[kind].append(sample)
                rows[kind].append(len(found))
                start = time.perf_counter()
                expected = local.search(**filters)
                baseline[kind].append(time.perf_counter() - start)
                if kind == "sort":  # ties may order differently: compare the metric values
                    same = [e.summary.get("metrics", {}).get("accuracy") for e in found] == [
                        e.summary.get("metrics", {}).get("accuracy") for e in expected
                    ]
                else:
                    same = len(found) == len(expected)
                if not same:
                    disagreements.append(
                        {"kind": kind, "filters": filters, "remote_rows": len(found), "local_rows": len(expected)}
                    )
            repos_in_index = len(hub.search(registry=server.url, limit=10**6))
    finally:
        counter.close()
    non_sort = [s for k in kinds if k != "sort" for s in remote[k]]
    every = [s for k in kinds for s in remote[k]]
    return {
        "server_start_s": server.start_seconds,
        "first_search_with_index_sync": first,
        "second_search": second,
        "repositories_listed": repos_in_index,
        "per_kind": {
            k: {
                "filters_example": next(f for kk, f in plan if kk == k),
                "rows_returned_median": statistics.median(rows[k]),
                "remote": summarize(remote[k], latency_stats),
                "local_baseline": latency_stats(baseline[k]),
            }
            for k in kinds
            if remote[k]
        },
        "overall_without_sort": summarize(non_sort, latency_stats),
        "overall": summarize(every, latency_stats),
        "disagreements_with_local": disagreements,
    }
