"""Hostile clients against a real ``ahl serve`` subprocess on 127.0.0.1 (issue 13, server side).

One test (or group) per finding: 3 the YAML validation endpoint, 4 CPU amplification (card
bombs, deep paths, huge commits, concurrent uploads), 5 entry spoofing, 6 crashes at each
write step (the ``AHL_SERVE_TEST_CRASH_AT`` hook, set only in the server subprocess), 7 long
path parts, 8 unclear failures; plus slow-loris clients and a search that must stay fast while
hostile bodies arrive. ``registry/SPEC.md`` 14.7 lists the limits these check.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import httpx2 as httpx  # noqa: E402  (huggingface_hub's own HTTP client)
import pytest  # noqa: E402
from huggingface_hub import HfApi, snapshot_download  # noqa: E402

from adapterhub_lite.artifact import read_artifact  # noqa: E402
from adapterhub_lite.errors import AhlError, ConfigError  # noqa: E402
from adapterhub_lite.registry.client.local import LocalRegistry  # noqa: E402
from adapterhub_lite.registry.client.remote import RemoteRegistry  # noqa: E402
from adapterhub_lite.registry.format.refs import Ref, repo_slug  # noqa: E402

from .conftest import HUB_ID, AhlServer, without_root_powers  # noqa: E402
from .test_cli import ahl_in_process, assert_one_line_error  # noqa: E402

ENTRY_TAG = "ahl-entry:" + HUB_ID + "/{task}/{name}"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AHL_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server with small limits: 1 upload at a time, 2 s read timeout, 2 MiB uploads."""
    running = AhlServer(
        tmp_path_factory.mktemp("hostile") / "registry",
        "--max-concurrent-uploads",
        "1",
        "--read-timeout",
        "2",
        "--max-upload-mb",
        "2",
    ).start()
    yield running
    running.stop()


def api(server: AhlServer, token: str | None = None) -> HfApi:
    return HfApi(endpoint=server.url, token=token or server.token)


def auth(token: str = "alice-token") -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def commit_body(*lines: dict) -> bytes:
    header = {"key": "header", "value": {"summary": "hostile"}}
    return b"".join(json.dumps(line).encode() + b"\n" for line in (header, *lines))


def raw_file(path: str, content: bytes = b"x") -> dict:
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(content).decode(), "encoding": "base64"}}


def post_commit(server: AhlServer, repo_id: str, body, token: str = "alice-token") -> httpx.Response:
    return httpx.post(f"{server.url}/api/models/{repo_id}/commit/main", content=body, headers=auth(token), timeout=60)


def refused(response: httpx.Response, status: int, words: str) -> None:
    """A refusal as the Hub answers one: the status, the error headers (a 401 has no code: the
    Hub client reads a coded one as "repository not found"), one clear line."""
    assert response.status_code == status, response.text
    assert status == 401 or response.headers.get("x-error-code"), response.headers
    message = response.headers["x-error-message"]
    assert words in message and "\n" not in message and "Traceback" not in response.text


def yaml_bomb(levels: int) -> str:
    """A card header whose aliases expand to 10**levels values (a "billion laughs")."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "---\n" + "\n".join(lines) + "\n---\n# card\n"


# -- finding 3: the YAML validation endpoint ---------------------------------------------------------


def test_yaml_validation_needs_a_token_and_a_small_body(server):
    url = f"{server.url}/api/validate-yaml"
    refused(httpx.post(url, json={"content": "---\na: 1\n---\n"}), 401, "authentication required")
    big = {"content": "---\n" + "k: v\n" * 60_000 + "---\n"}  # about 300 KiB
    refused(httpx.post(url, json=big, headers=auth()), 413, "limit of 256 KiB")
    answer = httpx.post(url, json={"content": yaml_bomb(7)}, headers=auth(), timeout=30)
    assert answer.status_code == 400 and "aliases" in answer.json()["errors"][0]["message"]
    assert httpx.post(url, json={"content": "---\ntags: [a]\n---\n"}, headers=auth()).json() == {
        "errors": [],
        "warnings": [],
    }


ATTACKER = """
import json, sys, time
import httpx2 as httpx
url, kind, token = sys.argv[1], sys.argv[2], sys.argv[3]
auth = {"authorization": "Bearer " + token}
bomb = "---\\n" + "\\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [
    "a%d: &a%d [%s]" % (i, i, ", ".join(["*a%d" % (i - 1)] * 10)) for i in range(1, 9)]) + "\\n---\\n"
header = "---\\n" + "".join("k%d: [v, v, v, v, v, v, v, v]\\n" % i for i in range(8000))[:250000] + "---\\n"
bodies = [json.dumps({"content": bomb}).encode(), json.dumps({"content": header}).encode()]
huge = json.dumps({"content": "---\\n" + "".join("k%d: [v, v]\\n" % i for i in range(400000)) + "---\\n"}).encode()

def trickle():
    yield b'{"key": "header", "value": {"summary": "slow"}}\\n'
    for _ in range(30):
        time.sleep(0.05)
        yield b" " * (64 << 10)

while True:
    try:
        if kind == "yaml":
            for body in bodies:
                httpx.post(url + "/api/validate-yaml", content=body, headers=auth, timeout=60)
        elif kind == "huge-yaml":  # over the cap (refused at once); the 2-minute freeze of issue 13
            httpx.post(url + "/api/validate-yaml", content=huge, timeout=300)
        else:
            httpx.post(url + "/api/models/alice/attacked/commit/main", content=trickle(), headers=auth, timeout=60)
    except httpx.TransportError:
        pass
"""


def test_search_answers_promptly_while_hostile_bodies_arrive(server):
    """Largest allowed bodies from other clients (YAML bombs, card headers near the cap, a
    commit body near the upload limit sent slowly) and an anonymous 6 MB YAML body (over the
    cap), each from its own process, do not hold up an
    anonymous search. The goal is 1 s, which ``benchmarks/server_under_attack.py`` measures;
    here the bound is 3 s, generous for a loaded CI machine yet far below the minutes a search
    waited when bodies were parsed on the event loop."""
    api(server).create_repo("alice/attacked")
    attackers = [
        subprocess.Popen([sys.executable, "-c", ATTACKER, server.url, kind, server.token])
        for kind in ("yaml", "yaml", "huge-yaml", "commit")
    ]
    try:
        time.sleep(2)
        assert all(a.poll() is None for a in attackers)
        worst = 0.0
        for _ in range(20):
            started = time.monotonic()
            response = httpx.get(f"{server.url}/api/models", params={"search": "attacked"}, timeout=30)
            worst = max(worst, time.monotonic() - started)
            assert response.status_code == 200 and [m["id"] for m in response.json()] == ["alice/attacked"]
        assert worst < 3.0, f"search took {worst:.2f} s under attack"
    finally:
        for attacker in attackers:
            attacker.kill()
            attacker.wait()


# -- finding 4: CPU and memory amplification -----------------------------------------------------------


def test_card_bomb_gives_no_card_data_and_reads_stay_cheap(server):
    client = api(server)
    client.create_repo("alice/bomb")
    card = yaml_bomb(6).replace("---\n", "---\ntags: [hostile]\n", 1).encode()  # 10**6 values by aliases
    # (huggingface_hub asks validate-yaml first and would stop here; a hostile client does not ask)
    assert post_commit(server, "alice/bomb", commit_body(raw_file("README.md", card))).status_code == 200
    started = time.monotonic()
    for _ in range(10):
        info = httpx.get(f"{server.url}/api/models/alice/bomb", timeout=60)
        assert info.status_code == 200 and len(info.content) < 10_000 and info.json()["cardData"] == {}
    assert time.monotonic() - started < 10  # generous: each read is a cached lookup
    assert client.model_info("alice/bomb").tags == []  # no card data, so no card tags either


def test_long_deep_and_many_paths_are_refused(server):
    client = api(server)
    client.create_repo("alice/paths")
    part = "p" * 256
    refused(post_commit(server, "alice/paths", commit_body(raw_file(f"{part}/x"))), 400, "longer than 255 bytes")
    refused(post_commit(server, "alice/paths", commit_body(raw_file("é" * 128))), 400, "longer than 255 bytes")
    deep = "/".join(["d"] * 17)
    refused(post_commit(server, "alice/paths", commit_body(raw_file(deep))), 400, "17 levels deep")
    refused(
        post_commit(server, "alice/paths", commit_body(raw_file("/".join(["q" * 200] * 6)))),
        400,
        "longer than 1000 characters",
    )
    many = commit_body(*[{"key": "deletedFile", "value": {"path": f"f{i}"}} for i in range(10_001)])
    refused(post_commit(server, "alice/paths", many), 400, "more than 10000 operations")
    assert client.model_info("alice/paths").siblings == []
    # the deepest and longest allowed paths list in pages, and tags keep working (finding 7)
    ok = "/".join(["d" * 60] * 16)
    assert post_commit(server, "alice/paths", commit_body(raw_file(ok), raw_file("p" * 255))).status_code == 200
    listing = client.list_repo_tree("alice/paths", recursive=True)
    assert {entry.path for entry in listing} >= {ok, "p" * 255, "d" * 60}


def test_concurrent_uploads_are_capped_and_slow_bodies_time_out(server):
    api(server).create_repo("alice/slow")
    started = threading.Event()
    results: list[httpx.Response | Exception] = []

    def stalled() -> None:
        def body():
            yield b'{"key": "header", "value": {"summary": "stall"}}\n'
            started.set()
            time.sleep(6)  # longer than --read-timeout 2
            yield b"\n"

        try:
            results.append(post_commit(server, "alice/slow", body()))
        except httpx.TransportError as exc:
            results.append(exc)

    thread = threading.Thread(target=stalled)
    thread.start()
    assert started.wait(10)
    time.sleep(0.3)
    # the one upload slot is taken: a second upload is told to come back later
    refused(post_commit(server, "alice/slow", commit_body(raw_file("a.txt"))), 429, "uploads are in progress")
    thread.join(30)
    response = results[0]
    if isinstance(response, httpx.Response):  # the server answered before the client finished sending
        refused(response, 408, "stopped arriving")
    # the slot is free again
    assert post_commit(server, "alice/slow", commit_body(raw_file("a.txt"))).status_code == 200
    # a request head that never ends is cut after the read timeout
    with socket.create_connection(("127.0.0.1", server.port)) as conn:
        conn.sendall(b"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        conn.settimeout(15)
        began = time.monotonic()
        assert conn.recv(1024) == b""  # closed by the server
        assert time.monotonic() - began < 10
    assert not list((server.root / "tmp").glob("serve-commit-*"))


def test_oversized_json_bodies_are_refused(server):
    refused(
        httpx.post(f"{server.url}/api/repos/create", json={"name": "x" * 70_000}, headers=auth()),
        413,
        "limit of 64 KiB",
    )
    files = [{"path": f"f{i}", "size": 1, "sample": ""} for i in range(10_001)]
    refused(
        httpx.post(f"{server.url}/api/models/alice/slow/preupload/main", json={"files": files}, headers=auth()),
        400,
        "at most 10000",
    )


# -- finding 5 and issue 16: entry binding only by tagged versions ------------------------------------


def test_card_tags_and_stray_copies_do_not_bind_an_entry(server, art, tmp_path):
    alice_artifact = art(task="spoof", name="spoof")
    alice_repo = f"alice/{repo_slug(HUB_ID, 'spoof', 'spoof')}"
    alice = api(server)
    alice.create_repo(alice_repo)
    alice.upload_folder(repo_id=alice_repo, folder_path=alice_artifact)
    alice.create_tag(alice_repo, tag="v1.0.0")

    bob = api(server, "bob-token")
    bob.create_repo("bob/spoofer")
    tag = ENTRY_TAG.format(task="spoof", name="spoof")
    bob.upload_file(
        path_or_fileobj=f"---\ntags: [{tag}, other]\n---\n".encode(), path_in_repo="README.md", repo_id="bob/spoofer"
    )
    # a copy of alice's metadata in a folder is just a file
    bob.upload_file(
        path_or_fileobj=alice_artifact / "adapter.json", path_in_repo="copy/adapter.json", repo_id="bob/spoofer"
    )
    # at the top it names alice's entry, which bob's namespace may publish too: committed, but
    # it binds nothing until a version is tagged
    bob.upload_file(path_or_fileobj=alice_artifact / "adapter.json", path_in_repo="adapter.json", repo_id="bob/spoofer")
    assert "other" in bob.model_info("bob/spoofer").tags and tag not in bob.model_info("bob/spoofer").tags

    assert [m.id for m in alice.list_models(filter=tag)] == [alice_repo]
    registry = RemoteRegistry(server.url, cache=None)
    assert registry.resolve(Ref(HUB_ID, "spoof", "spoof")).ref.version == "1.0.0"
    registry.pull(Ref(HUB_ID, "spoof", "spoof"), tmp_path / "pulled")
    assert read_artifact(tmp_path / "pulled").digest == read_artifact(alice_artifact).digest


def test_refused_push_leaves_no_commit(server, art):
    """ahl push of an entry that another repository of the same namespace holds is refused at
    the commit: the pusher's repository keeps only its first commit, no untagged one."""
    artifact = art(task="owned", name="owned")
    alice = api(server)
    alice.create_repo("alice/owned-elsewhere")
    alice.upload_folder(repo_id="alice/owned-elsewhere", folder_path=artifact)
    alice.create_tag("alice/owned-elsewhere", tag="v1.0.0")
    # the server's whole reason reaches the user (SPEC 14.8)
    with pytest.raises(AhlError, match="400 Bad Request: .* already lives in repository alice/owned-elsewhere"):
        RemoteRegistry(f"{server.url}/alice", token="alice-token").push(art(task="owned", name="owned", seed=3))
    slug_repo = f"alice/{repo_slug(HUB_ID, 'owned', 'owned')}"
    refs = alice.list_repo_refs(slug_repo)
    assert not refs.tags and alice.model_info(slug_repo).siblings == []


# -- finding 6: crashes at every write step --------------------------------------------------------------


# a push: create the repository (repo:record and index:update #1), commit (#2), tag (#3)
CRASH_STEPS = [
    "commit:blobs",
    "commit:file",
    "repo:record#2",
    "index:update#2",
    "push:manifest",
    "tag:manifest",
    "repo:record#3",
    "index:update#3",
]


@pytest.mark.parametrize("step", CRASH_STEPS)
def test_crash_at_each_write_step_leaves_a_consistent_registry(tmp_path, art, step):
    crashing = AhlServer(tmp_path / "registry")
    crashing.env = {"AHL_SERVE_TEST_CRASH_AT": step}
    crashing.start()
    artifact = art(task="crash", name=step.replace(":", "-").replace("#", "-"))
    meta = read_artifact(artifact).metadata
    ref = Ref(HUB_ID, meta["task"], meta["name"])
    repo_id = f"alice/{repo_slug(*ref.entry)}"
    try:
        api(crashing).create_repo(repo_id)
        # ahl push (one commit, then its tag), not HfApi.upload_folder: that one retries a
        # commit whose connection failed for 23 s (1+2+4+8+8, huggingface_hub's backoff)
        # against the server that is down by design here
        with pytest.raises(AhlError):  # the connection dies with the server
            RemoteRegistry(f"{crashing.url}/alice", token="alice-token").push(artifact, version="1.0.0")
        assert crashing.process.wait(30) == -signal.SIGKILL, f"the server did not stop at {step}"
        crashing.process = None
        crashing.env = {}
        crashing.start()
        assert_consistent(crashing, ref, repo_id, tmp_path)
        # and the push completes when tried again
        RemoteRegistry(f"{crashing.url}/alice", token="alice-token").push(artifact, version="1.0.0")
        assert_consistent(crashing, ref, repo_id, tmp_path, tagged=True)
        assert not list((crashing.root / "repos" / "pending").iterdir())
        assert not list((crashing.root / "tmp").glob("serve-*"))
    finally:
        crashing.stop()


def assert_consistent(server: AhlServer, ref: Ref, repo_id: str, tmp_path: Path, tagged: bool | None = None) -> None:
    """Listing, search, refs, the registry's versions and pulls agree: a version is all there or absent."""
    client = api(server)
    tags = {t.name for t in client.list_repo_refs(repo_id).tags}
    versions = LocalRegistry(server.root).versions(ref, include_yanked=True)
    by_tag = [m.id for m in client.list_models(filter=f"ahl-entry:{ref.base}/{ref.task}/{ref.name}")]
    rows = httpx.get(f"{server.url}/api/models", params={"search": repo_id.split("/")[1]}).json()
    listed = {row["id"]: row for row in rows}
    present = "v1.0.0" in tags
    if tagged is not None:
        assert present is tagged
    assert versions == (["1.0.0"] if present else [])
    assert by_tag == ([repo_id] if present else [])
    assert repo_id in listed and listed[repo_id]["sha"] == client.model_info(repo_id).sha
    assert (listed[repo_id]["ahlEntry"] or {}).get("version") == ("1.0.0" if present else None)
    found = RemoteRegistry(server.url, cache=None).search(task=ref.task)
    assert [e.ref.version for e in found if e.ref.name == ref.name] == (["1.0.0"] if present else [])
    if present:
        pulled = snapshot_download(repo_id, revision="v1.0.0", endpoint=server.url, cache_dir=tmp_path / "hf")
        read_artifact(pulled)  # verifies every file


def test_fsck_repairs_a_stale_index(tmp_path, art):
    """A stale index without any record of the write (an index restored from a backup, say):
    ``ahl fsck`` reconciles it with the manifests and records."""
    root = tmp_path / "registry"
    running = AhlServer(root).start()
    try:
        artifact = art(task="fsck", name="fsck")
        RemoteRegistry(f"{running.url}/alice", token="alice-token").push(artifact, version="1.0.0")
    finally:
        running.stop()
    import sqlite3

    with sqlite3.connect(root / "index.sqlite") as db:
        db.execute("DELETE FROM versions")
    with sqlite3.connect(root / "repos" / "index.sqlite") as db:
        db.execute("DELETE FROM repo_tags")
        db.execute("DELETE FROM repos")
    ahl = [sys.executable, "-m", "adapterhub_lite"]
    done = subprocess.run([*ahl, "fsck", "--registry", str(root)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 entr" in done.stderr and "re-indexed" in done.stderr
    again = subprocess.run(
        [*ahl, "serve", "--check", "--registry", str(root)], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and "0 entr" in again.stderr
    running.start()
    try:
        ref = Ref(HUB_ID, "fsck", "fsck")
        assert_consistent(running, ref, f"alice/{repo_slug(*ref.entry)}", tmp_path, tagged=True)
    finally:
        running.stop()
    # a missing blob cannot be repaired here: reported, exit 1
    next(p for p in (root / "blobs" / "sha256").rglob("*") if p.is_file()).unlink()
    broken = subprocess.run([*ahl, "fsck", "--registry", str(root)], capture_output=True, text=True, timeout=300)
    assert broken.returncode == 1 and "missing blob" in broken.stderr and "Traceback" not in broken.stderr


# -- finding 8: clear failures ------------------------------------------------------------------------


def test_bad_urls_and_cursors_get_400_without_a_traceback(server):
    refused(httpx.get(f"{server.url}/api/models", params={"cursor": "9" * 30}), 400, "cursor must be")
    refused(httpx.get(f"{server.url}/api/models", params={"limit": "-1"}), 400, "limit must be")
    refused(httpx.get(f"{server.url}/api/models/alice/x%00y"), 400, "control character")
    refused(httpx.get(f"{server.url}/alice/x/resolve/main/a%00b"), 400, "control character")
    refused(httpx.get(f"{server.url}/api/models", params={"search": "a\x00b"}), 400, "control character")
    time.sleep(0.2)
    assert "Traceback" not in server.log.read_text()


def _read_only(root: Path, writable: bool = False) -> None:
    for sub in [root, *root.rglob("*")]:
        if sub.is_dir():
            sub.chmod(0o755 if writable else 0o555)


def test_read_only_registry_is_reported_at_start(tmp_path):
    root = tmp_path / "registry"
    LocalRegistry(root)  # an existing registry, made read-only
    _read_only(root)
    port = AhlServer(root).port  # a free one
    command = [sys.executable, "-m", "adapterhub_lite", "serve", "--registry", str(root), "--port", str(port)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, preexec_fn=without_root_powers)
    finally:
        _read_only(root, writable=True)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write the registry directory" in lines[0], done.stderr


def test_an_unreadable_registry_is_one_line_and_a_read_only_one_is_read(tmp_path):
    """ahl search on a registry it may not list (chmod 000): one line naming the cause, no
    traceback, and no advice to delete the index; on one it may not write (0555), the search
    answers (as root, without the powers that ignore file modes)."""
    root = tmp_path / "registry"
    LocalRegistry(root)
    search = [sys.executable, "-m", "adapterhub_lite", "search", "--registry", str(root)]
    for mode in (0o000, 0o555):
        _read_only(root)
        root.chmod(mode)
        try:
            done = subprocess.run(search, capture_output=True, text=True, timeout=60, preexec_fn=without_root_powers)
        finally:
            _read_only(root, writable=True)
        lines = done.stderr.strip().splitlines()
        if mode == 0o000:
            assert done.returncode == 2 and len(lines) == 1, done.stderr
            assert f"cannot read the registry at {root}: Permission denied" in lines[0] and "delete it" not in lines[0]
        else:
            assert done.returncode == 0 and done.stdout.startswith("the registry lists no adapters"), done.stderr


def test_a_store_that_ends_cleanly_leaves_no_lock_file(tmp_path):
    """fsck, serve --check and a server stopped by SIGTERM delete their liveness lock file (one
    that dies leaves it to the next server's recovery)."""
    root = tmp_path / "registry"
    LocalRegistry(root)
    for args in (["fsck", "--registry", root], ["serve", "--check", "--registry", root]):
        assert ahl_in_process(*args).returncode == 0
        assert not list((root / "locks").glob("serve-*.lock")), args
    running = AhlServer(root).start()
    assert len(list((root / "locks").glob("serve-*.lock"))) == 1
    running.stop()
    assert not list((root / "locks").glob("serve-*.lock"))


@pytest.mark.parametrize("option", [("--port", "9000"), ("--private",), ("--read-timeout", "5"), ("--host", "0.0.0.0")])
def test_serve_check_refuses_the_options_of_serving(tmp_path, option):
    """serve --check reconciles and exits: an option for serving would have been ignored silently."""
    root = tmp_path / "registry"
    LocalRegistry(root)
    proc = ahl_in_process("serve", "--check", "--registry", root, *option)
    assert_one_line_error(
        proc, f"{option[0]} applies to serving, which --check does not do; drop {option[0]} or --check"
    )
    assert proc.returncode == ConfigError.exit_code
    assert ahl_in_process("serve", "--check", "--registry", root).returncode == 0


def test_fsck_of_a_directory_that_is_no_registry_makes_none(tmp_path):
    """fsck and serve --check check a registry; pointed at a missing or empty directory (a typo)
    they say there is none, exit 7, and create nothing (they made an empty registry and reported
    it clean)."""
    (tmp_path / "empty").mkdir()
    for root in (tmp_path / "empty", tmp_path / "typo"):
        for args in (["fsck", "--registry", root], ["serve", "--check", "--registry", root]):
            proc = ahl_in_process(*args)
            assert_one_line_error(proc, f"no registry at {root}", "check --registry")
            assert proc.returncode == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"] and not any((tmp_path / "empty").iterdir())


def test_a_port_taken_or_out_of_range_is_one_line_and_creates_nothing(tmp_path):
    """The socket is bound before the registry is opened: no traceback from the event loop, and
    no registry directory left behind by a start that failed."""
    root = tmp_path / "registry"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = ahl_in_process("serve", "--registry", root, "--port", port)
    assert_one_line_error(proc, f"cannot listen on 127.0.0.1:{port}: address already in use", "--port")
    proc = ahl_in_process("serve", "--registry", root, "--port", 70000)
    assert proc.returncode == 2 and "--port" in proc.stderr and "Traceback" not in proc.stderr
    assert not root.exists()


def test_writes_on_a_read_only_or_full_disk_answer_clearly(tmp_path):
    root = tmp_path / "registry"
    running = AhlServer(root)
    running.popen = {"preexec_fn": without_root_powers}
    running.start()
    try:
        api(running).create_repo("alice/ro")
        _read_only(root)
        try:
            refused(
                post_commit(running, "alice/ro", commit_body(raw_file("a.txt", b"abc"))),
                500,
                "cannot write its registry directory",
            )
        finally:
            _read_only(root, writable=True)
    finally:
        running.stop()

    # a full disk: a file-size limit on the server process stands in for it (no write past 1 MiB)
    def limit_writes() -> None:
        without_root_powers()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    running.popen = {"preexec_fn": limit_writes}
    running.start()
    try:
        response = post_commit(running, "alice/ro", commit_body(raw_file("big.bin", os.urandom(3 << 20))))
        refused(response, 507, "storage is full")
        assert post_commit(running, "alice/ro", commit_body(raw_file("small.txt", b"ok"))).status_code == 200
    finally:
        running.stop()
    assert "Traceback" not in running.log.read_text()


def test_commit_refused_with_a_bad_token_or_stale_parent_keeps_hub_headers(server):
    api(server).create_repo("alice/headers")  # its own repository: the test runs alone too
    response = post_commit(server, "alice/headers", commit_body(raw_file("x")), token="nope")
    assert response.status_code == 401 and response.headers["x-error-message"] == "Invalid user token."
    body = b'{"key": "header", "value": {"summary": "s", "parentCommit": "' + b"0" * 40 + b'"}}\n'
    refused(post_commit(server, "alice/headers", body), 412, "is not the head of main")
