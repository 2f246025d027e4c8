"""Remote registries (registry/SPEC.md §14): this project's client against a real ``ahl serve`` on
127.0.0.1, through the real ``huggingface_hub``: round trips, the download cache, offline use,
faults (a killed server, a flipped byte, a cut download, bad tokens, restarts), bad input and
concurrent processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from adapterhub_lite import hub
from adapterhub_lite.base import BaseModel, load_base
from adapterhub_lite.errors import (
    ArtifactError,
    ConfigError,
    IncompatibleBaseError,
    IntegrityError,
    NotFoundError,
    RefError,
    VersionConflictError,
)
from adapterhub_lite.registry.client.cache import DownloadCache
from adapterhub_lite.registry.format.refs import repo_slug

from .conftest import AhlServer, flip_a_byte, make_artifact, requests_sent, serve_in_thread
from .test_cli import ahl_in_process, assert_one_line_error

HUB_ID = "test-org/tiny-bert"
AHL = [sys.executable, "-m", "adapterhub_lite"]


@pytest.fixture(scope="module")
def hub_base(tiny_base_model) -> BaseModel:
    """The tiny local base under a Hugging Face style id (same weights, same fingerprint)."""
    return dataclasses.replace(tiny_base_model, model_id=HUB_ID)


@pytest.fixture
def server(tmp_path):
    """A fresh ``ahl serve`` per test: several tests stop, kill or restart it."""
    running = AhlServer(tmp_path / "served").start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def client_env(tmp_path, monkeypatch):
    """An empty download cache and token store per test; alice's token; no endpoint known yet."""
    from adapterhub_lite.registry.client import remote

    # as a new client process would: an earlier test's server (in this module or another one this
    # process ran) may have had the port a server here reuses, and a listing without ahlEntry
    # there would otherwise be remembered for this one
    monkeypatch.setattr(remote, "_REACHED", {})
    monkeypatch.setenv("AHL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("AHL_TOKEN", "alice-token")
    for name in ("AHL_OFFLINE", "HF_HUB_OFFLINE", "AHL_REGISTRY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def art(tmp_path, hub_base):
    counter = iter(range(1000))

    def make(*, seed: int = 0, task: str = "sst2", name: str = "sst2", base: BaseModel | None = None) -> Path:
        out = tmp_path / "artifacts" / f"{task}-{name}-{seed}-{next(counter)}"
        return make_artifact(out, base or hub_base, task=task, name=name, seed=seed)

    return make


def same_files(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and all(
        (a / f).read_bytes() == (b / f).read_bytes() for f in files
    )


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under a server directory, except the derived search index (touched by reads)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "index.sqlite" not in p.name and "locks" not in p.parts
    }


# -- round trips -------------------------------------------------------------------------------------


def test_push_search_pull_through_ahl_serve(server, art, tmp_path, hub_base):
    artifact = art(seed=1)
    entry = hub.push(artifact, registry=server.url, version="1.0.0")
    assert str(entry.ref) == f"{HUB_ID}/sst2/sst2@1.0.0"
    assert entry.manifest["repo"] == f"alice/{repo_slug(HUB_ID, 'sst2', 'sst2')}"

    found = hub.search(registry=server.url, task="sst2")
    assert [str(e.ref) for e in found] == [str(entry.ref)]
    assert found[0].summary["metrics"] == {"accuracy": pytest.approx(0.51)}
    assert hub.search(registry=server.url, task="trec") == []
    assert [str(e.ref) for e in hub.search(registry=server.url, base=HUB_ID, architecture="pfeiffer", name="ss")]

    _, pulled = hub.pull("sst2/sst2@1.0.0", base=hub_base, registry=server.url, to=tmp_path / "pulled")
    assert same_files(artifact, pulled)  # bit-identical, metrics log and card included
    # Pushing the same content again is an idempotent success; other content is refused.
    assert hub.push(artifact, registry=server.url, version="1.0.0").digest == entry.digest
    assert str(hub.push(artifact, registry=server.url).ref).endswith("@1.0.0")
    with pytest.raises(VersionConflictError, match="immutable"):
        hub.push(art(seed=2), registry=server.url, version="1.0.0")
    assert str(hub.push(art(seed=2), registry=server.url).ref).endswith("@1.0.1")
    assert str(hub.resolve(f"{HUB_ID}/sst2/sst2", registry=server.url).ref).endswith("@1.0.1")
    assert hub.resolve(f"{HUB_ID}/sst2/sst2@{entry.digest}", registry=server.url).ref.version == "1.0.0"


def test_plain_huggingface_hub_tooling_moves_the_same_adapter(server, art, tmp_path):
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi(endpoint=server.url, token=server.token)
    artifact = art(seed=3, task="trec", name="qc")
    repo = f"alice/{repo_slug(HUB_ID, 'trec', 'qc')}"
    api.create_repo(repo)
    commit = api.upload_folder(repo_id=repo, folder_path=artifact)
    api.create_tag(repo, tag="v2.0.0", revision=commit.oid)
    # ... ahl sees it as a version, and pulls it bit-identically
    _, pulled = hub.pull(f"{HUB_ID}/trec/qc", registry=server.url, to=tmp_path / "ahl-pulled")
    assert same_files(artifact, pulled)

    # ... and what ahl pushes, snapshot_download fetches as a loadable artifact.
    pushed = art(seed=4, task="trec", name="other")
    entry = hub.push(pushed, registry=server.url, version="1.0.0")
    fetched = snapshot_download(
        entry.manifest["repo"], revision="v1.0.0", endpoint=server.url, cache_dir=tmp_path / "hf-cache", token=False
    )
    assert same_files(pushed, Path(fetched))
    assert {m.id for m in api.list_models(filter="task:trec")} == {repo, entry.manifest["repo"]}


def test_push_sends_large_files_raw_over_lfs(server, art, tmp_path, hub_base):
    """ahl's client takes the LFS basic path (Xet off for the call only) and names each file by the
    sha256 its metadata records: the weights go raw in one PUT, bit-identical at the other end."""
    from huggingface_hub import constants

    artifact = make_artifact(tmp_path / "art", hub_base, seed=1)
    (artifact / "extra.bin").write_bytes(os.urandom(3 << 20))  # over the 1 MiB line, listed in the metadata
    meta = json.loads((artifact / "adapter.json").read_text())
    meta["files"]["extra.bin"] = {
        "sha256": hashlib.sha256((artifact / "extra.bin").read_bytes()).hexdigest(),
        "size": 3 << 20,
    }
    (artifact / "adapter.json").write_text(json.dumps(meta))
    xet_setting = constants.HF_HUB_DISABLE_XET
    with requests_sent() as sent:
        entry = hub.push(artifact, registry=server.url)
    assert constants.HF_HUB_DISABLE_XET == xet_setting  # restored after the push
    puts = sorted(path.rsplit("/", 1)[1] for method, path in sent if method == "PUT")
    assert puts == sorted(meta["files"][name]["sha256"] for name in ("adapter.safetensors", "extra.bin"))
    assert not [path for _, path in sent if "xet" in path]
    _, pulled = hub.pull(str(entry.ref), registry=server.url, to=tmp_path / "pulled")
    assert same_files(artifact, pulled)


def test_damaged_local_file_is_refused_and_nothing_is_committed(server, art):
    """The client checks files while they upload: a flipped byte stops the push before its commit."""
    from huggingface_hub import HfApi

    artifact = art(seed=1)
    flip_a_byte(artifact / "adapter.safetensors")
    repo = f"alice/{repo_slug(HUB_ID, 'sst2', 'sst2')}"
    with pytest.raises(IntegrityError, match="adapter.safetensors does not match its sha256"):
        hub.push(artifact, registry=server.url)
    assert HfApi(endpoint=server.url).list_repo_files(repo) == []  # created, never committed to
    assert hub.search(registry=server.url) == [] and not list((server.root / "tmp").iterdir())


def test_xet_switch_is_shared_by_concurrent_pushes():
    from huggingface_hub import constants

    from adapterhub_lite.registry.client.remote import _XetSwitch

    switch, before = _XetSwitch(), constants.HF_HUB_DISABLE_XET
    with switch.off():
        with switch.off():
            assert constants.HF_HUB_DISABLE_XET is True
        assert constants.HF_HUB_DISABLE_XET is True  # the first push still uploads
    assert constants.HF_HUB_DISABLE_XET == before


def test_cached_pull_needs_no_server_and_offline_resolves_latest(server, art, tmp_path, monkeypatch, caplog):
    artifact = art(seed=5)
    hub.push(artifact, registry=server.url, version="1.2.0")
    hub.pull(f"{HUB_ID}/sst2/sst2@1.2.0", registry=server.url, to=tmp_path / "first")
    server.stop()
    # An exact version is immutable: the cache answers without a single request.
    _, again = hub.pull(f"{HUB_ID}/sst2/sst2@1.2.0", registry=server.url, to=tmp_path / "second")
    assert same_files(artifact, again)
    # The server cannot be reached: as huggingface_hub does, the cache answers, and says so.
    with caplog.at_level("WARNING", logger="adapterhub_lite"):
        entry, latest = hub.pull(f"{HUB_ID}/sst2/sst2", registry=server.url, to=tmp_path / "latest")
    assert entry.ref.version == "1.2.0" and same_files(artifact, latest)
    assert any("unreachable; using cached" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigError, match="cannot reach.*not in the download cache"):
        hub.pull(f"{HUB_ID}/sst2/other", registry=server.url, to=tmp_path / "third")
    assert not (tmp_path / "third").exists()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry, third = hub.pull(f"{HUB_ID}/sst2/sst2", registry=server.url, to=tmp_path / "third")
    assert entry.ref.version == "1.2.0" and same_files(artifact, third)
    monkeypatch.setenv("AHL_OFFLINE", "1")
    with pytest.raises(NotFoundError, match="offline"):
        hub.pull(f"{HUB_ID}/sst2/other", registry=server.url, to=tmp_path / "fourth")


def test_yank_hides_from_search_and_latest_but_not_exact_pulls(server, art, tmp_path):
    hub.push(art(seed=1), registry=server.url, version="1.0.0")
    hub.push(art(seed=2), registry=server.url, version="1.1.0")
    assert hub.yank(f"{HUB_ID}/sst2/sst2@1.1.0", registry=server.url).yanked
    assert str(hub.resolve(f"{HUB_ID}/sst2/sst2", registry=server.url).ref).endswith("@1.0.0")
    assert [e.ref.version for e in hub.search(registry=server.url)] == ["1.0.0"]
    entry, _ = hub.pull(f"{HUB_ID}/sst2/sst2@1.1.0", registry=server.url, to=tmp_path / "yanked")
    assert entry.ref.version == "1.1.0"
    hub.yank(f"{HUB_ID}/sst2/sst2@1.0.0", registry=server.url)
    with pytest.raises(NotFoundError, match=r"every version of .*/sst2/sst2 is yanked \(1\.0\.0, 1\.1\.0\); name one"):
        hub.resolve(f"{HUB_ID}/sst2/sst2", registry=server.url)


def test_base_mismatch_is_refused_before_weights_move(server, art, tmp_path, other_tiny_base_dir, client_env):
    entry = hub.push(art(seed=1), registry=server.url)
    other = dataclasses.replace(load_base(str(other_tiny_base_dir)), model_id=HUB_ID)
    with pytest.raises(IncompatibleBaseError, match="differ in"):
        hub.pull(str(entry.ref), base=other, registry=server.url, to=tmp_path / "pulled")
    weights_sha = entry.manifest["files"]["adapter.safetensors"]["sha256"]
    assert not DownloadCache(client_env).blob_store.has(weights_sha) and not (tmp_path / "pulled").exists()


def test_fusion_round_trip_through_ahl_serve(server, tmp_path, tiny_base_model, spam_files):
    """A fusion pushed to ahl serve brings its adapters; pulled into an empty cache it predicts the same."""
    from adapterhub_lite import TrainConfig, api

    sources = [
        make_artifact(tmp_path / name, tiny_base_model, task=name, name=name, seed=i)
        for i, name in enumerate(("sentiment", "topic"))
    ]
    fusion = tmp_path / "fusion"
    api.fuse(
        sources,
        spam_files[0],
        dev_data=spam_files[1],
        task="sms_spam",
        out=fusion,
        config=TrainConfig(mode="fusion", epochs=1, batch_size=16, learning_rate=1e-3, device="cpu"),
    )
    texts = ["free prize now, text WIN", "see you at lunch"]
    before = [(p.label, p.probabilities) for p in api.predict(api.load(fusion), texts)]
    entry = hub.push(fusion, registry=server.url, version="1.0.0")
    assert {e.ref.task for e in hub.search(registry=server.url)} == {"sentiment", "topic", "sms_spam"}
    os.environ["AHL_CACHE"] = str(tmp_path / "empty-cache")
    _, pulled = hub.pull(str(entry.ref), registry=server.url, to=tmp_path / "pulled")
    assert same_files(fusion, pulled)
    assert [(p.label, p.probabilities) for p in api.predict(api.load(pulled), texts)] == before
    # A fusion whose adapter copy is not the locked version fails the pull, leaving nothing.
    record = json.loads((fusion / "fusion.json").read_text())["adapters"][0]
    blob = next(server.root.joinpath("blobs").rglob(record["digest"].removeprefix("sha256:")))
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes().replace(b'"task"', b'"Task"', 1))
    os.environ["AHL_CACHE"] = str(tmp_path / "other-cache")
    with pytest.raises(IntegrityError):
        hub.pull(str(entry.ref), registry=server.url, to=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_fusion_pushed_locally_is_pulled_through_ahl_serve(server, tmp_path, tiny_base_model, spam_files):
    """A fusion pushed into the served directory directly (no repository, adapters stored as their
    own entries) is served as ``ahl/SLUG`` with its locked adapters, so a client pull works."""
    from adapterhub_lite import TrainConfig, api

    sources = [
        make_artifact(tmp_path / name, tiny_base_model, task=name, name=name, seed=i)
        for i, name in enumerate(("sentiment", "topic"))
    ]
    fusion = tmp_path / "fusion"
    api.fuse(
        sources,
        spam_files[0],
        dev_data=spam_files[1],
        task="sms_spam",
        out=fusion,
        config=TrainConfig(mode="fusion", epochs=1, batch_size=16, learning_rate=1e-3, device="cpu"),
    )
    entry = hub.push(fusion, registry=str(server.root))
    assert entry.manifest["files"].keys() == {"fusion.json", *json.loads((fusion / "fusion.json").read_text())["files"]}
    _, pulled = hub.pull(str(entry.ref), registry=server.url, to=tmp_path / "pulled")
    assert same_files(fusion, pulled)
    texts = ["free prize now, text WIN", "see you at lunch"]
    assert [p.probabilities for p in api.predict(api.load(pulled), texts)] == [
        p.probabilities for p in api.predict(api.load(fusion), texts)
    ]


# -- faults --------------------------------------------------------------------------------------------


def test_flipped_byte_in_stored_blob_is_caught_and_nothing_is_cached(server, art, tmp_path, client_env):
    entry = hub.push(art(seed=1), registry=server.url)
    weights_sha = entry.manifest["files"]["adapter.safetensors"]["sha256"]
    flip_a_byte(next(server.root.joinpath("blobs").rglob(weights_sha)))
    with pytest.raises(IntegrityError, match="damaged"):
        hub.pull(str(entry.ref), registry=server.url, to=tmp_path / "pulled")
    cache = DownloadCache(client_env)
    assert not cache.blob_store.has(weights_sha) and not list((client_env / "tmp").iterdir())
    assert not cache.cached_versions() and not (tmp_path / "pulled").exists()
    with pytest.raises(IntegrityError):
        hub.verify(str(entry.ref), registry=server.url)


def test_damaged_cached_blob_is_caught_evicted_and_fetched_again(server, art, tmp_path, client_env):
    entry = hub.push(art(seed=1), registry=server.url)
    _, first = hub.pull(str(entry.ref), registry=server.url, to=tmp_path / "first")
    blob = DownloadCache(client_env).blob_store.path(entry.manifest["files"]["adapter.safetensors"]["sha256"])
    flip_a_byte(blob)
    with pytest.raises(IntegrityError, match="sha256"):
        hub.pull(str(entry.ref), registry=server.url, to=tmp_path / "second")
    assert not (tmp_path / "second").exists() and not blob.exists()
    _, third = hub.pull(str(entry.ref), registry=server.url, to=tmp_path / "third")
    assert same_files(first, third)


def test_server_killed_mid_upload_leaves_no_version(server, art):
    """A commit whose body stops half-way (the server dies) never becomes visible."""
    from huggingface_hub import HfApi

    artifact = art(seed=1)
    hub.push(artifact, registry=server.url, version="1.0.0")
    repo = f"alice/{repo_slug(HUB_ID, 'sst2', 'sst2')}"
    before = HfApi(endpoint=server.url).list_repo_refs(repo)
    body = b'{"key": "header", "value": {"summary": "half"}}\n{"key": "file", "value": {"content": "' + b"A" * 100_000
    with socket.create_connection(("127.0.0.1", server.port)) as conn:
        conn.sendall(
            f"POST /api/models/{repo}/commit/main HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {server.token}\r\nContent-Type: application/x-ndjson\r\n"
            f"Content-Length: {len(body) * 10}\r\n\r\n".encode()
            + body
        )
        server.process.kill()  # SIGKILL mid-body: no graceful anything
        server.process.wait()
    server.process = None
    server.start()
    after = HfApi(endpoint=server.url).list_repo_refs(repo)
    assert [t.name for t in after.tags] == [t.name for t in before.tags] == ["v1.0.0"]
    assert [b.target_commit for b in after.branches] == [b.target_commit for b in before.branches]
    assert [e.ref.version for e in hub.search(registry=server.url)] == ["1.0.0"]


def test_restarted_server_loses_nothing(server, art, tmp_path):
    artifact = art(seed=1)
    entry = hub.push(artifact, registry=server.url)
    hub.yank(str(entry.ref), registry=server.url)
    server.stop()
    server.start()
    os.environ["AHL_CACHE"] = str(tmp_path / "fresh-cache")
    again, pulled = hub.pull(str(entry.ref), registry=server.url, to=tmp_path / "pulled")
    assert again.yanked and same_files(artifact, pulled)


class CuttingProxy:
    """A TCP proxy in front of the server that cuts the first response carrying ``needle`` after
    ``cut_after`` bytes, and records every request line and Range header it forwards."""

    def __init__(self, port: int, needle: bytes, cut_after: int) -> None:
        self.target, self.needle, self.cut_after = port, needle, cut_after
        self.cut_done = False
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target))
        armed = threading.Event()

        def downstream() -> None:
            sent = 0
            try:
                while data := upstream.recv(65536):
                    if armed.is_set() and not self.cut_done:
                        sent += len(data)
                        if sent > self.cut_after:
                            self.cut_done = True
                            client.sendall(data[: len(data) - (sent - self.cut_after)])
                            client.shutdown(socket.SHUT_RDWR)
                            return
                    client.sendall(data)
            except OSError:
                pass
            finally:
                client.close()
                upstream.close()

        threading.Thread(target=downstream, daemon=True).start()
        try:
            while data := client.recv(65536):
                head = data.split(b"\r\n\r\n", 1)[0]
                self.requests.append(head)
                if self.needle in head.split(b"\r\n", 1)[0] and b"GET" in head[:4] and not self.cut_done:
                    armed.set()
                upstream.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


def test_cut_download_resumes_with_a_range_request(server, tmp_path, hub_base, client_env):
    # Big enough that the cut lands mid-body: a base-sized head is not needed, extra weights are.
    artifact = make_artifact(tmp_path / "art", hub_base, seed=1)
    entry = hub.push(artifact, registry=server.url)
    size = entry.manifest["files"]["adapter.safetensors"]["size"]
    proxy = CuttingProxy(server.port, b"adapter.safetensors", cut_after=size // 2)
    try:
        _, pulled = hub.pull(str(entry.ref), registry=proxy.url, to=tmp_path / "pulled")
    finally:
        proxy.close()
    assert proxy.cut_done and same_files(artifact, pulled)
    ranges = [r for r in proxy.requests if b"adapter.safetensors" in r and b"range: bytes=" in r.lower()]
    assert ranges, "the second try must resume with a Range request"


def test_push_without_or_with_a_wrong_token_writes_nothing(server, art, monkeypatch):
    artifact = art(seed=1)
    hub.push(art(seed=9, name="seed"), registry=server.url)  # the server holds something already
    before = snapshot(server.root)
    monkeypatch.delenv("AHL_TOKEN")
    with pytest.raises(ConfigError, match="needs a token"):
        hub.push(artifact, registry=server.url)
    with pytest.raises(ConfigError, match="needs a token"):  # asked before any request
        hub.push(artifact, registry=f"{server.url}/alice")
    monkeypatch.setenv("AHL_TOKEN", "not-a-token")
    # the message says which token was refused, since only there can it be fixed
    with pytest.raises(ConfigError, match=r"refused the token in AHL_TOKEN \(401 .*\); replace it: run 'ahl login"):
        hub.push(artifact, registry=server.url)
    monkeypatch.setenv("AHL_TOKEN", "bob-token")
    with pytest.raises(ConfigError, match="403"):
        hub.push(artifact, registry=f"{server.url}/alice")
    assert snapshot(server.root) == before


def test_oversized_upload_is_refused_in_one_line(tmp_path, hub_base):
    small = AhlServer(tmp_path / "small", "--max-upload-mb", "1").start()
    try:
        artifact = make_artifact(tmp_path / "art", hub_base, seed=1)
        (artifact / "big.bin").write_bytes(os.urandom(2 << 20))
        # Listed in the metadata, so it is part of the artifact and must be uploaded.
        meta = json.loads((artifact / "adapter.json").read_text())
        meta["files"]["big.bin"] = {
            "sha256": hashlib.sha256((artifact / "big.bin").read_bytes()).hexdigest(),
            "size": 2 << 20,
        }
        (artifact / "adapter.json").write_text(json.dumps(meta))
        result = ahl_in_process("push", artifact, "--registry", small.url, env={"AHL_TOKEN": small.token})
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "413" in lines[0] and "Traceback" not in result.stderr, result.stderr
        assert hub.search(registry=small.url) == []
    finally:
        small.stop()


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref", ["../sst2/sst2", "/abs/sst2", "sst2//sst2", "x" * 97 + "/sst2", "sst2/ѕst2", "sst2/s\\t2"]
)
def test_bad_refs_fail_before_any_request(ref, tmp_path):
    # The server URL is unreachable: a request would fail differently (ConfigError).
    with pytest.raises(RefError):
        hub.pull(ref, registry="http://127.0.0.1:9", to=tmp_path / "x")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765/a/b", "http://", "hf://../x", "http://h:1/?q=1"])
def test_bad_registry_urls(url):
    with pytest.raises((ConfigError, RefError)):
        hub.open_registry(url)


def test_malformed_metadata_is_refused_before_upload(server, art):
    artifact = art(seed=1)
    meta = json.loads((artifact / "adapter.json").read_text())
    del meta["head"]
    (artifact / "adapter.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError):
        hub.push(artifact, registry=server.url)
    assert hub.search(registry=server.url) == []


# -- processes -------------------------------------------------------------------------------------


def test_eight_pushers_and_eight_pullers_at_once(server, art, tmp_path):
    shared = [art(seed=s, name=f"shared{s}") for s in range(2)]
    for path in shared:
        hub.push(path, registry=server.url, version="1.0.0")
    fresh = [art(seed=10 + i, name=f"fresh{i}") for i in range(8)]
    env = {**os.environ, "AHL_TOKEN": server.token, "AHL_CACHE": str(tmp_path / "shared-cache")}
    procs = [
        subprocess.Popen(
            [*AHL, "push", str(path), "--registry", server.url], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for path in fresh
    ]
    procs += [
        subprocess.Popen(
            [
                *AHL,
                "pull",
                f"{HUB_ID}/sst2/shared{i % 2}@1.0.0",
                "--registry",
                server.url,
                "--to",
                str(tmp_path / f"pulled{i}"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(8)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
    for i in range(8):
        assert same_files(shared[i % 2], tmp_path / f"pulled{i}")
    names = {e.ref.name for e in hub.search(registry=server.url, limit=100)}
    assert names == {"shared0", "shared1", *(f"fresh{i}" for i in range(8))}
    for i in range(8):
        hub.verify(f"{HUB_ID}/sst2/fresh{i}", registry=server.url)


def test_cli_login_search_json_and_cache_commands(server, art, tmp_path, monkeypatch):
    monkeypatch.delenv("AHL_TOKEN")
    run = ahl_in_process  # every command is one line of output or one error: in-process suffices
    bad = run("login", "--registry", server.url, "--token", "wrong")
    assert_one_line_error(bad, "refused the token given (401", "; check it")  # not "run 'ahl login'"
    ok = run("login", "--registry", server.url, "--token", server.token)
    assert ok.returncode == 0 and "alice" in ok.stdout, ok.stderr
    # a token piped in (echo $TOKEN | ahl login) is read as one line, without the hidden prompt's warning
    piped = run("login", "--registry", server.url, stdin=f"{server.token}\n")
    assert piped.returncode == 0 and "alice" in piped.stdout and "Warning" not in piped.stderr, piped.stderr
    assert_one_line_error(run("login", "--registry", server.url, stdin=""), "no token on standard input")
    stored = tmp_path / "config" / "adapterhub-lite" / "tokens.json"
    assert stored.stat().st_mode & 0o077 == 0 and json.loads(stored.read_text()) == {server.url: server.token}
    pushed = run("push", str(art(seed=1)), "--registry", server.url)
    assert pushed.returncode == 0, pushed.stderr
    found = run("search", "--registry", server.url, "--json", "--sort", "accuracy")
    rows = json.loads(found.stdout)
    assert [r["ref"] for r in rows] == [f"{HUB_ID}/sst2/sst2@1.0.0"]
    assert run("pull", rows[0]["ref"], "--registry", server.url, "--to", str(tmp_path / "p")).returncode == 0
    # a command run on a ref works from a whole copy of the version in the cache: listed, sized
    exported = run("export", rows[0]["ref"], str(tmp_path / "x"), "--format", "adapters", "--registry", server.url)
    assert exported.returncode == 0, exported.stderr
    listing = json.loads(run("cache", "ls", "--json").stdout)
    assert [v["ref"] for v in listing["versions"]] == [rows[0]["ref"]] and listing["blob_bytes"] > 0
    (copy,) = listing["artifacts"]
    assert copy["digest"] == listing["versions"][0]["digest"] and listing["artifact_bytes"] == copy["size"] > 0
    assert "artifact copy" in run("cache", "ls").stdout
    (tmp_path / "cache" / "tmp" / "stale.part").write_bytes(b"x" * 10)
    orphan = tmp_path / "cache" / "artifacts" / ("0" * 64)  # a copy of a version no longer cached
    orphan.mkdir()
    (orphan / "adapter.json").write_text("{}")
    assert run("cache", "prune").returncode == 0
    assert not (tmp_path / "cache" / "tmp" / "stale.part").exists() and not orphan.exists()
    listing = json.loads(run("cache", "ls", "--json").stdout)
    assert listing["versions"] and listing["artifacts"] == [copy]  # still in use: kept
    assert run("cache", "prune", "--all").returncode == 0
    assert json.loads(run("cache", "ls", "--json").stdout) == {
        "root": str(tmp_path / "cache"),
        "blob_bytes": 0,
        "versions": [],
        "artifact_bytes": 0,
        "artifacts": [],
    }
    assert run("logout", "--registry", server.url).returncode == 0
    assert json.loads(stored.read_text()) == {}


def test_remote_search_matches_local_search(server, art, hub_base, tmp_path):
    """Filters, tags and metric sorting give the same rows through ahl serve as on the directory,
    for pushed repositories and for entries pushed into the served directory locally."""
    from adapterhub_lite.registry.client.local import LocalRegistry

    for seed, name in ((3, "c"), (9, "a"), (1, "b")):  # accuracy 0.5 + seed / 100
        hub.push(art(seed=seed, name=name), registry=server.url)
    LocalRegistry(server.root).push(art(seed=5, task="trec", name="local"))
    local = LocalRegistry(server.root)
    for filters in (
        {"sort": "accuracy"},
        {"tag": "head:classification", "sort": "accuracy"},
        {"task": "trec"},
        {"name": "b"},
        {"architecture": "pfeiffer", "sort": "accuracy", "limit": 2},
    ):
        remote = [str(e.ref) for e in hub.search(registry=server.url, **filters)]
        assert remote == [str(e.ref) for e in local.search(**filters)], filters
    assert [e.ref.name for e in hub.search(registry=server.url, sort="accuracy")] == ["a", "local", "c", "b"]


class HubLikeProxy:
    """An HTTP proxy in front of ``ahl serve`` that answers model listings without ahl's
    extensions (no ``ahlEntry``, ``ahl-metric:`` sorts ignored), as the Hugging Face Hub does."""

    def __init__(self, target: str) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import httpx2

        upstream = httpx2.Client(base_url=target, timeout=30)

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                path = self.path
                if path.startswith("/api/models?"):
                    path = "&".join(p for p in path.split("&") if not p.startswith("sort=ahl-metric"))
                reply = upstream.request(
                    self.command, path, headers={k: v for k, v in self.headers.items() if k.lower() != "host"}
                )
                body = reply.content
                if path.startswith("/api/models?"):
                    body = json.dumps([{k: v for k, v in m.items() if k != "ahlEntry"} for m in reply.json()]).encode()
                self.send_response(reply.status_code)
                for key, value in reply.headers.items():
                    if key.lower() not in ("content-length", "content-encoding", "transfer-encoding", "link"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        serve_in_thread(self.server)

    def close(self) -> None:
        self.server.shutdown()


def test_search_on_a_server_without_ahl_extensions_reads_the_tags(server, art):
    """Against a Hub-like listing (no ``ahlEntry``), search finds entries by their tags, reads each
    latest version from its repository and sorts by the metric itself: the same rows as ahl serve."""
    from adapterhub_lite.registry.client import remote

    for seed, name in ((3, "c"), (9, "a"), (1, "b")):
        hub.push(art(seed=seed, name=name), registry=server.url)
    hub.push(art(seed=5, task="trec", name="t"), registry=server.url)
    proxy = HubLikeProxy(server.url)
    try:
        for filters in (
            {"sort": "accuracy"},
            {"task": "trec"},
            {"name": "A"},
            {"sort": "accuracy", "limit": 2},
            {"architecture": "pfeiffer", "sort": "accuracy"},
            {"tag": "task:sst2"},
        ):
            through_tags = [str(e.ref) for e in hub.search(registry=proxy.url, **filters)]
            assert through_tags == [str(e.ref) for e in hub.search(registry=server.url, **filters)], filters
        assert remote._REACHED[proxy.url] is False and remote._REACHED[server.url] is True
        assert [e.ref.name for e in hub.search(registry=proxy.url, sort="accuracy")] == ["a", "t", "c", "b"]
        # What this process remembers of an endpoint may belong to another server that had the
        # address before (a restart, a reused port): each listing corrects it, results unchanged.
        expected = [str(e.ref) for e in hub.search(registry=server.url, sort="accuracy")]
        remote._REACHED[proxy.url], remote._REACHED[server.url] = True, False
        assert [str(e.ref) for e in hub.search(registry=proxy.url, sort="accuracy")] == expected
        assert [str(e.ref) for e in hub.search(registry=server.url, sort="accuracy")] == expected
        assert remote._REACHED[proxy.url] is False and remote._REACHED[server.url] is True
    finally:
        proxy.close()
