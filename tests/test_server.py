"""``ahl serve`` against the real ``huggingface_hub`` client: a real server subprocess on 127.0.0.1.

Artifacts are written without training (``conftest.make_artifact``) on the tiny local base under
a Hub-style id. One server runs for the module (tests use their own repositories); the private
and small-upload-limit cases get a second one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import httpx2 as httpx  # noqa: E402  (huggingface_hub's own HTTP client)
import pytest  # noqa: E402
from huggingface_hub import (  # noqa: E402
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub import constants as hf_constants  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    BadRequestError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils._runtime import is_xet_available  # noqa: E402  (what the upload path asks)

from adapterhub_lite.artifact import read_artifact  # noqa: E402
from adapterhub_lite.constants import LFS_TRANSFER_HEADER  # noqa: E402
from adapterhub_lite.errors import ConfigError  # noqa: E402
from adapterhub_lite.registry.client.local import LocalRegistry  # noqa: E402
from adapterhub_lite.registry.format.refs import Ref, repo_slug  # noqa: E402
from adapterhub_lite.registry.server.app import create_app, load_tokens  # noqa: E402

from .conftest import HUB_ID, AhlServer, requests_sent  # noqa: E402


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory):
    """A private server that takes commits of at most 1 MiB."""
    server = AhlServer(
        tmp_path_factory.mktemp("ahl-serve-private") / "registry", "--private", "--max-upload-mb", "1"
    ).start()
    yield server
    server.stop()


def api(server: AhlServer, token: str | bool | None = None) -> HfApi:
    return HfApi(endpoint=server.url, token=server.token if token is None else token)


def lfs_api(server: AhlServer) -> HfApi:
    """A client that announces LFS basic uploads; used with Xet off (``no_xet``), as ahl's own client is."""
    return HfApi(endpoint=server.url, token=server.token, headers={LFS_TRANSFER_HEADER: "basic"})


@pytest.fixture
def no_xet(monkeypatch):
    """Xet off for the test: huggingface_hub then sends "lfs" files over the LFS batch API."""
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)


def auth(server: AhlServer) -> dict[str, str]:
    return {"authorization": f"Bearer {server.token}"}


def upload_link(server: AhlServer, repo_id: str, content: bytes, size: int | None = None) -> str:
    """The signed link the LFS batch endpoint gives for ``content`` (announced with ``size``)."""
    oid = hashlib.sha256(content).hexdigest()
    response = httpx.post(
        f"{server.url}/{repo_id}.git/info/lfs/objects/batch",
        headers=auth(server),
        json={
            "operation": "upload",
            "transfers": ["basic", "multipart"],
            "hash_algo": "sha256",
            "objects": [{"oid": oid, "size": len(content) if size is None else size}],
        },
    )
    assert response.status_code == 200, response.text
    return response.json()["objects"][0]["actions"]["upload"]["href"]


def lfs_leftovers(server: AhlServer) -> list[Path]:
    return list((server.root / "tmp").glob("serve-lfs-*"))


def status(excinfo: pytest.ExceptionInfo) -> int:
    return excinfo.value.response.status_code


def files_under(root: Path) -> dict[str, int]:
    """Every file of the registry except the derived indexes (sqlite files change on reads)."""
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and ".sqlite" not in p.name and "locks" not in p.parts
    }


def publish(server: AhlServer, artifact: Path, *, version: str = "1.0.0", namespace: str | None = None) -> str:
    """Upload an artifact into its entry's repository and tag the version: what a client push does."""
    meta = read_artifact(artifact).metadata
    repo_id = f"{namespace or server.user}/{repo_slug(HUB_ID, meta['task'], meta['name'])}"
    client = api(server)
    client.create_repo(repo_id, exist_ok=True)
    client.upload_folder(repo_id=repo_id, folder_path=artifact, commit_message=f"v{version}")
    client.create_tag(repo_id, tag=f"v{version}")
    return repo_id


def commit_body(*lines: dict) -> bytes:
    header = {"key": "header", "value": {"summary": "raw", "description": ""}}
    return b"".join(json.dumps(line).encode() + b"\n" for line in (header, *lines))


def raw_file(path: str, content: bytes = b"x") -> dict:
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(content).decode(), "encoding": "base64"}}


# -- the push / search / pull cycle -----------------------------------------------------------------


def test_upload_tag_search_and_download(ahl_server, art, tmp_path):
    artifact = art(task="sst2", name="sst2")
    repo_id = publish(ahl_server, artifact)
    client = api(ahl_server)

    found = [m.id for m in client.list_models(filter=[f"ahl-entry:{HUB_ID}/sst2/sst2", "adapter:pfeiffer"])]
    assert found == [repo_id]
    info = client.model_info(repo_id, revision="v1.0.0", files_metadata=True)
    assert {"adapterhub-lite", "task:sst2", "adapter:pfeiffer", "classification", f"base_model:{HUB_ID}"} <= set(
        info.tags
    )
    assert info.card_data.library_name == "adapterhub-lite"
    weights = next(s for s in info.siblings if s.rfilename == "adapter.safetensors")
    assert weights.lfs.sha256 == read_artifact(artifact).metadata["files"]["adapter.safetensors"]["sha256"]
    refs = client.list_repo_refs(repo_id)
    assert [t.name for t in refs.tags] == ["v1.0.0"] and refs.tags[0].target_commit == info.sha

    pulled = Path(
        snapshot_download(
            repo_id, revision="v1.0.0", endpoint=ahl_server.url, cache_dir=tmp_path / "hf-cache", token=ahl_server.token
        )
    )
    for path in artifact.iterdir():
        assert (pulled / path.name).read_bytes() == path.read_bytes()
    assert read_artifact(pulled).digest == read_artifact(artifact).digest

    # the version lives in the registry layout, recording where it came from
    entry = LocalRegistry(ahl_server.root).resolve(Ref(HUB_ID, "sst2", "sst2"))
    assert entry.ref.version == "1.0.0" and entry.manifest["origin"] == {"repo": repo_id, "commit": info.sha}

    with pytest.raises(HfHubHTTPError) as excinfo:  # versions are immutable
        client.create_tag(repo_id, tag="v1.0.0", revision="main")
    assert status(excinfo) == 409


def test_range_requests_and_file_metadata(ahl_server, art, tmp_path):
    repo_id = publish(ahl_server, art(task="rng", name="rng"))
    url = f"{ahl_server.url}/{repo_id}/resolve/v1.0.0/adapter.safetensors"
    whole = httpx.get(url)
    head = httpx.head(url)
    assert head.headers["x-repo-commit"] == whole.headers["x-repo-commit"]
    assert head.headers["x-linked-etag"].strip('"') == hashlib.sha256(whole.content).hexdigest()
    assert int(head.headers["content-length"]) == len(whole.content)
    part = httpx.get(url, headers={"Range": "bytes=10-109"})
    assert part.status_code == 206 and part.content == whole.content[10:110]
    assert part.headers["content-range"] == f"bytes 10-109/{len(whole.content)}"

    local = hf_hub_download(
        repo_id, "README.md", revision="v1.0.0", endpoint=ahl_server.url, cache_dir=tmp_path / "hf-cache"
    )
    assert Path(local).read_text().startswith("---")
    with pytest.raises(Exception) as excinfo:
        hf_hub_download(repo_id, "missing.txt", endpoint=ahl_server.url, cache_dir=tmp_path / "hf-cache")
    assert type(excinfo.value).__name__ == "RemoteEntryNotFoundError"


def test_yank_tag(ahl_server, art):
    repo_id = publish(ahl_server, art(task="yank", name="yank"))
    client = api(ahl_server)
    client.create_tag(repo_id, tag="v1.0.0-yanked", revision="v1.0.0")
    registry = LocalRegistry(ahl_server.root)
    assert registry.versions(Ref(HUB_ID, "yank", "yank")) == []
    assert registry.resolve(Ref(HUB_ID, "yank", "yank", version="1.0.0")).yanked
    tags = {t.name: t.target_commit for t in client.list_repo_refs(repo_id).tags}
    assert tags["v1.0.0"] == tags["v1.0.0-yanked"]
    with pytest.raises(BadRequestError):  # a yank tag must sit on the version's commit
        client.create_tag(repo_id, tag="v2.0.0-yanked", revision="main")


def test_locally_pushed_entries_appear_under_ahl(ahl_server, art, tmp_path):
    artifact = art(task="localtask", name="local")
    LocalRegistry(ahl_server.root).push(artifact, version="2.1.0")
    repo_id = f"ahl/{repo_slug(HUB_ID, 'localtask', 'local')}"
    client = api(ahl_server)
    assert [m.id for m in client.list_models(author="ahl", filter="task:localtask")] == [repo_id]
    assert [t.name for t in client.list_repo_refs(repo_id).tags] == ["v2.1.0"]
    pulled = Path(snapshot_download(repo_id, revision="v2.1.0", endpoint=ahl_server.url, cache_dir=tmp_path / "c"))
    assert read_artifact(pulled).digest == read_artifact(artifact).digest

    # another namespace may publish the key too (SPEC 14.2): its versions are its own
    alice_repo = publish(ahl_server, artifact, version="3.0.0")
    assert [t.name for t in client.list_repo_refs(alice_repo).tags] == ["v3.0.0"]
    assert [t.name for t in client.list_repo_refs(repo_id).tags] == ["v2.1.0"]
    assert LocalRegistry(ahl_server.root).versions(Ref(HUB_ID, "localtask", "local")) == ["2.1.0"]
    with pytest.raises(HfHubHTTPError) as excinfo:  # the mirror is read-only
        client.create_tag(repo_id, tag="v9.0.0", revision="v2.1.0")
    assert status(excinfo) == 403


def test_tree_commits_and_deletions(ahl_server):
    client = api(ahl_server)
    repo_id = f"{ahl_server.user}/tree"
    client.create_repo(repo_id)
    paths = ("a/b/c.txt", "a/d.txt", "e.txt")
    client.create_commit(
        repo_id,
        operations=[CommitOperationAdd(path_in_repo=p, path_or_fileobj=p.encode()) for p in paths],
        commit_message="three files",
    )
    top = client.list_repo_tree(repo_id)
    assert sorted((type(e).__name__, e.path) for e in top) == [("RepoFile", "e.txt"), ("RepoFolder", "a")]
    assert sorted(e.path for e in client.list_repo_tree(repo_id, path_in_repo="a")) == ["a/b", "a/d.txt"]
    assert sorted(e.path for e in client.list_repo_tree(repo_id, path_in_repo="a", recursive=True)) == [
        "a/b",
        "a/b/c.txt",
        "a/d.txt",
    ]
    assert [e.path for e in client.list_repo_tree(repo_id, path_in_repo="a/b")] == ["a/b/c.txt"]  # sent as a%2Fb
    assert sorted(client.list_repo_files(repo_id)) == sorted(paths)
    with pytest.raises(Exception) as excinfo:
        client.list_repo_tree(repo_id, path_in_repo="nowhere").__iter__().__next__()
    assert "EntryNotFound" in type(excinfo.value).__name__

    head = client.model_info(repo_id).sha
    client.create_commit(
        repo_id,
        operations=[CommitOperationDelete(path_in_repo="a/b/"), CommitOperationDelete(path_in_repo="e.txt")],
        commit_message="prune",
    )
    assert client.list_repo_files(repo_id) == ["a/d.txt"]
    assert sorted(client.list_repo_files(repo_id, revision=head)) == sorted(paths)

    url, auth = f"{ahl_server.url}/api/models/{repo_id}/commit/main", {"authorization": f"Bearer {ahl_server.token}"}
    clash = httpx.post(url, headers=auth, content=commit_body(raw_file("a/d.txt/inner")))
    assert clash.status_code == 400 and "both a file and the folder" in clash.json()["error"]
    stale = {"key": "header", "value": {"summary": "late", "parentCommit": head}}
    late = httpx.post(url, headers=auth, content=json.dumps(stale).encode() + b"\n")
    assert late.status_code == 412
    missing = httpx.post(url, headers=auth, content=commit_body({"key": "deletedFile", "value": {"path": "zz"}}))
    assert missing.status_code == 404 and missing.headers["x-error-code"] == "EntryNotFound"


def test_version_tags_cannot_be_deleted(ahl_server, art):
    repo_id = publish(ahl_server, art(task="keep", name="keep"))
    client = api(ahl_server)
    with pytest.raises(BadRequestError, match="permanent"):
        client.delete_tag(repo_id, tag="v1.0.0")
    with pytest.raises(RevisionNotFoundError):
        client.delete_tag(repo_id, tag="v9.9.9")
    assert [t.name for t in client.list_repo_refs(repo_id).tags] == ["v1.0.0"]


def test_token_sources(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("# ci tokens\nabc123 alice\n\n  def456   bob  \n")
    assert load_tokens(tokens, "xyz:carol,abc123:mallory") == {"abc123": "alice", "def456": "bob", "xyz": "carol"}
    for bad in ("abc123\n", "abc alice extra\n", "abc ahl\n", "abc ../x\n"):
        tokens.write_text(bad)
        with pytest.raises(ConfigError):
            load_tokens(tokens)
    with pytest.raises(ConfigError):
        load_tokens(None, "no-user-here")
    with pytest.raises(ConfigError):
        load_tokens(tmp_path / "missing")
    tokens.write_bytes("abc123 j\xf6rg\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="is not UTF-8"):
        load_tokens(tokens)


# -- LFS uploads ------------------------------------------------------------------------------------


def test_preupload_answers_lfs_only_to_clients_that_announce_it(ahl_server):
    repo_id = f"{ahl_server.user}/modes"
    api(ahl_server).create_repo(repo_id)

    def entry(path: str, sample: bytes, size: int) -> dict:
        return {"path": path, "sample": base64.b64encode(sample).decode(), "size": size}

    files = [
        entry("README.md", b"# hi\n", 5),
        entry("w.safetensors", b"\x08\x00\x00\x00{}", 900),
        entry("big.txt", b"a" * 512, 2 << 20),
        entry("empty.bin", b"", 0),
    ]
    url = f"{ahl_server.url}/api/models/{repo_id}/preupload/main"
    for headers, modes in (
        ({}, ["regular"] * 4),
        ({LFS_TRANSFER_HEADER: "basic"}, ["regular", "lfs", "lfs", "regular"]),
    ):
        response = httpx.post(url, headers={**auth(ahl_server), **headers}, json={"files": files})
        assert [f["uploadMode"] for f in response.json()["files"]] == modes


def test_stock_client_with_xet_still_uploads_inline(ahl_server, tmp_path):
    """An unmodified huggingface_hub with hf_xet would take "lfs" to Xet and fail: it gets "regular"."""
    assert is_xet_available()
    folder = tmp_path / "stock"
    folder.mkdir()
    (folder / "big.bin").write_bytes(os.urandom(2 << 20))
    (folder / "README.md").write_text("# stock\n")
    repo_id = f"{ahl_server.user}/stock"
    api(ahl_server).create_repo(repo_id)
    with requests_sent() as sent:
        api(ahl_server).upload_folder(repo_id=repo_id, folder_path=folder)
    assert not [path for _, path in sent if ".git/info/lfs" in path or "xet" in path], sent
    local = hf_hub_download(repo_id, "big.bin", endpoint=ahl_server.url, cache_dir=tmp_path / "hf-cache")
    assert Path(local).read_bytes() == (folder / "big.bin").read_bytes()


def test_lfs_upload_round_trip(ahl_server, art, tmp_path, no_xet):
    artifact = art(task="lfs", name="lfs", seed=42)  # weights no other test has stored
    big = os.urandom(3 << 20)
    repo_id = f"{ahl_server.user}/{repo_slug(HUB_ID, 'lfs', 'lfs')}"
    client = lfs_api(ahl_server)
    client.create_repo(repo_id)
    with requests_sent() as sent:
        client.upload_folder(repo_id=repo_id, folder_path=artifact)
        client.upload_file(path_or_fileobj=big, path_in_repo="extra/big.bin", repo_id=repo_id)
    puts = sorted(path.rsplit("/", 1)[1] for method, path in sent if method == "PUT")
    weights_sha = read_artifact(artifact).metadata["files"]["adapter.safetensors"]["sha256"]
    assert puts == sorted([weights_sha, hashlib.sha256(big).hexdigest()])  # the binary files, raw
    client.create_tag(repo_id, tag="v1.0.0")

    pulled = Path(
        snapshot_download(
            repo_id, revision="v1.0.0", endpoint=ahl_server.url, cache_dir=tmp_path / "hf-cache", token=False
        )
    )
    assert (pulled / "extra" / "big.bin").read_bytes() == big
    for path in artifact.iterdir():
        assert (pulled / path.name).read_bytes() == path.read_bytes()
    blob = LocalRegistry(ahl_server.root).blob_store.path(hashlib.sha256(big).hexdigest())
    assert blob.stat().st_mode & 0o777 == 0o444 and not lfs_leftovers(ahl_server)

    # content the server holds already is not sent again
    with requests_sent() as sent:
        client.upload_file(path_or_fileobj=big, path_in_repo="extra/again.bin", repo_id=repo_id)
    assert [m for m, _ in sent if m == "PUT"] == []
    assert client.list_repo_tree(repo_id, "extra")


def test_upload_links_are_checked(ahl_server):
    repo_id = f"{ahl_server.user}/links"
    api(ahl_server).create_repo(repo_id)
    content = os.urandom(4096)
    link = upload_link(ahl_server, repo_id, content)
    before = files_under(ahl_server.root)
    forged = link[:-4] + ("0000" if not link.endswith("0000") else "1111")
    resized = link.replace("size=4096", "size=4095")
    for href in (forged, resized, link.split("?")[0], link.replace(repo_id, f"{ahl_server.user}/other")):
        response = httpx.put(href, content=content)
        assert response.status_code == 403 and "upload link" in response.headers["x-error-message"], response.text
    # the right link with other bytes: refused after hashing, nothing kept
    other = os.urandom(4096)
    response = httpx.put(link, content=other)
    assert response.status_code == 400 and "is not the object announced" in response.json()["error"]
    assert files_under(ahl_server.root) == before and not lfs_leftovers(ahl_server)
    assert httpx.put(link, content=content).status_code == 200
    assert (
        hashlib.sha256(
            LocalRegistry(ahl_server.root).blob_store.path(hashlib.sha256(content).hexdigest()).read_bytes()
        ).hexdigest()
        == hashlib.sha256(content).hexdigest()
    )


def test_expired_upload_link_is_refused(tmp_path):
    """A server whose links expire at once (``create_app(upload_link_seconds=0)``), run in-process."""
    import uvicorn

    root = tmp_path / "registry"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(root, tokens=AhlServer.TOKENS, upload_link_seconds=0),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        served = SimpleNamespace(url=f"http://127.0.0.1:{port}", token="alice-token", root=root)
        api(served).create_repo("alice/expiring")
        content = b"\0" * 100
        link = upload_link(served, "alice/expiring", content)
        time.sleep(1.1)
        response = httpx.put(link, content=content)
        assert response.status_code == 403 and "expired" in response.json()["error"]
        assert not [p for p in (root / "blobs").rglob("*") if p.is_file()] and not lfs_leftovers(served)
    finally:
        server.should_exit = True
        thread.join(30)


def test_commit_refuses_objects_never_uploaded(ahl_server):
    repo_id = f"{ahl_server.user}/unknown-object"
    client = api(ahl_server)
    client.create_repo(repo_id)
    head = client.model_info(repo_id).sha
    content = os.urandom(1000)
    assert httpx.put(upload_link(ahl_server, repo_id, content), content=content).status_code == 200
    oid = hashlib.sha256(content).hexdigest()
    before = files_under(ahl_server.root)
    url = f"{ahl_server.url}/api/models/{repo_id}/commit/main"
    for value, message in (
        ({"oid": hashlib.sha256(b"never sent").hexdigest(), "size": 10}, "never uploaded"),
        ({"oid": oid, "size": 999}, "is not the 1000 bytes"),
        ({"oid": "ABC", "size": 3}, "needs a sha256 'oid'"),
    ):
        line = {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", **value}}
        response = httpx.post(url, headers=auth(ahl_server), content=commit_body(line))
        assert response.status_code == 400 and message in response.json()["error"], response.text
    assert client.model_info(repo_id).sha == head and files_under(ahl_server.root) == before
    line = {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": 1000}}
    assert httpx.post(url, headers=auth(ahl_server), content=commit_body(line)).status_code == 200
    assert client.list_repo_files(repo_id) == ["w.bin"]


def test_server_killed_mid_lfs_upload_stores_nothing(tmp_path):
    server = AhlServer(tmp_path / "registry").start()
    try:
        api(server).create_repo("alice/cut")
        content = os.urandom(1 << 20)
        link = httpx.URL(upload_link(server, "alice/cut", content))
        with socket.create_connection(("127.0.0.1", server.port)) as conn:
            conn.sendall(
                f"PUT {link.raw_path.decode()} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Length: {len(content)}\r\n\r\n".encode()
                + content[:100_000]
            )
            deadline = time.monotonic() + 30
            while not lfs_leftovers(server) and time.monotonic() < deadline:
                time.sleep(0.05)  # until the server is receiving the body
            server.process.kill()  # SIGKILL mid-body
            server.process.wait()
        server.process = None
        leftovers = lfs_leftovers(server)
        blob = LocalRegistry(server.root).blob_store.path(hashlib.sha256(content).hexdigest())
        assert leftovers and not blob.exists()
        for path in leftovers:
            os.utime(path, (0, 0))  # as if a day old: the next start removes it
        server.start()
        assert not lfs_leftovers(server)
    finally:
        server.stop()


# -- refusals ---------------------------------------------------------------------------------------


def test_tag_refusals(ahl_server, art):
    client = api(ahl_server)
    repo_id = f"{ahl_server.user}/not-an-artifact"
    client.create_repo(repo_id)
    client.upload_file(path_or_fileobj=b"---\ntags: [x]\n---\n# hi\n", path_in_repo="README.md", repo_id=repo_id)
    with pytest.raises(BadRequestError, match="not a valid artifact"):
        client.create_tag(repo_id, tag="v1.0.0")
    with pytest.raises(BadRequestError, match="not a version tag"):
        client.create_tag(repo_id, tag="release")
    with pytest.raises(RevisionNotFoundError):
        client.create_tag(repo_id, tag="v1.0.0", revision="v7.0.0")

    # a repository holds one entry: a commit with another entry's artifact could never be
    # tagged, so it is refused at once and leaves no commit
    first = publish(ahl_server, art(task="bound", name="bound"))
    head = client.model_info(first).sha
    with pytest.raises(BadRequestError, match="is the repository of"):
        client.upload_folder(repo_id=first, folder_path=art(task="intruder", name="intruder"))
    assert client.model_info(first).sha == head

    # and a namespace holds an entry in one repository: a second one there cannot bind it
    second = f"{ahl_server.user}/bound-again"
    client.create_repo(second)
    empty = client.model_info(second).sha
    with pytest.raises(BadRequestError, match=f"already lives in repository {first} of namespace"):
        client.upload_folder(repo_id=second, folder_path=art(task="bound", name="bound", seed=1))
    assert client.model_info(second).sha == empty and not client.list_repo_refs(second).tags


def test_auth_refusals_write_nothing(ahl_server):
    before = files_under(ahl_server.root)
    repo_id = f"{ahl_server.user}/guarded"
    for token in (False, "wrong-token"):
        with pytest.raises(HfHubHTTPError) as excinfo:
            api(ahl_server, token).create_repo(repo_id)
        assert status(excinfo) == 401
    bob = api(ahl_server, "bob-token")
    with pytest.raises(HfHubHTTPError) as excinfo:
        bob.create_repo(repo_id)
    assert status(excinfo) == 403
    assert files_under(ahl_server.root) == before

    api(ahl_server).create_repo(repo_id)
    before = files_under(ahl_server.root)
    with pytest.raises(HfHubHTTPError) as excinfo:
        bob.upload_file(path_or_fileobj=b"evil", path_in_repo="evil.txt", repo_id=repo_id)
    assert status(excinfo) == 403
    for token in (None, "bob-token"):
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = httpx.post(
            f"{ahl_server.url}/api/models/{repo_id}/commit/main",
            headers=headers,
            content=commit_body(raw_file("evil.txt")),
        )
        assert response.status_code == (403 if token else 401) and response.json()["error"]
        assert response.headers["x-error-message"]
    with pytest.raises(HfHubHTTPError) as excinfo:
        bob.create_tag(repo_id, tag="v1.0.0")
    assert status(excinfo) == 403
    assert files_under(ahl_server.root) == before
    assert api(ahl_server).whoami()["name"] == ahl_server.user
    with pytest.raises(HfHubHTTPError):
        api(ahl_server, "wrong-token").whoami()


@pytest.mark.parametrize("path", ["../evil", "/etc/passwd", "a\\b", "a//b", "a/./b", "dir/..", ""])
def test_commit_paths_are_validated(ahl_server, path):
    repo_id = f"{ahl_server.user}/paths"
    api(ahl_server).create_repo(repo_id, exist_ok=True)
    before = files_under(ahl_server.root)
    response = httpx.post(
        f"{ahl_server.url}/api/models/{repo_id}/commit/main",
        headers={"authorization": f"Bearer {ahl_server.token}"},
        content=commit_body(raw_file(path)),
    )
    assert response.status_code == 400, response.text
    assert files_under(ahl_server.root) == before
    assert not (ahl_server.root.parent / "evil").exists()


@pytest.mark.parametrize("name", ["bad..name", "-dash", "a--b", "x" * 97, "..", "a b", "ahl/taken", "api/x"])
def test_invalid_repo_names(ahl_server, name):
    """Raw requests: the client itself refuses most of these names before sending anything."""
    namespace, _, repo = name.rpartition("/")
    before = files_under(ahl_server.root)
    response = httpx.post(
        f"{ahl_server.url}/api/repos/create",
        headers={"authorization": "Bearer alice-token"},
        json={"name": repo, "organization": namespace or None},
    )
    # reserved namespaces are another user's (403) for alice; the rest are malformed (400)
    assert response.status_code == (403 if namespace else 400), response.text
    assert files_under(ahl_server.root) == before


def test_repository_exists(ahl_server):
    client = api(ahl_server)
    client.create_repo(f"{ahl_server.user}/twice")
    with pytest.raises(HfHubHTTPError) as excinfo:
        client.create_repo(f"{ahl_server.user}/twice")
    assert status(excinfo) == 409
    client.create_repo(f"{ahl_server.user}/twice", exist_ok=True)
    with pytest.raises(RepositoryNotFoundError):
        client.model_info(f"{ahl_server.user}/never-created")


def test_concurrent_tags_make_one_version(ahl_server, art):
    artifact = art(task="race", name="race")
    repo_id = f"{ahl_server.user}/{repo_slug(HUB_ID, 'race', 'race')}"
    client = api(ahl_server)
    client.create_repo(repo_id)
    client.upload_folder(repo_id=repo_id, folder_path=artifact)
    outcomes: list[int] = []

    def tag() -> None:
        try:
            api(ahl_server).create_tag(repo_id, tag="v1.0.0")
            outcomes.append(200)
        except HfHubHTTPError as exc:
            outcomes.append(exc.response.status_code)

    threads = [threading.Thread(target=tag) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [200, 409, 409, 409]


def test_two_server_processes_share_a_directory(ahl_server, art):
    """Commits through two servers on one directory serialise (no lost update); a version is made once."""
    other = AhlServer(ahl_server.root).start()
    try:
        repo_id = f"{ahl_server.user}/{repo_slug(HUB_ID, 'shared', 'shared')}"
        api(ahl_server).create_repo(repo_id)
        outcomes: list[int] = []

        def upload(server: AhlServer, index: int) -> None:
            for round_ in range(3):
                api(server).upload_file(
                    path_or_fileobj=f"{index}-{round_}".encode(), path_in_repo=f"f{index}-{round_}.txt", repo_id=repo_id
                )

        def tag(server: AhlServer) -> None:
            try:
                api(server).create_tag(repo_id, tag="v1.0.0")
                outcomes.append(200)
            except HfHubHTTPError as exc:
                outcomes.append(exc.response.status_code)

        threads = [threading.Thread(target=upload, args=(server, i)) for i, server in enumerate((ahl_server, other))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(api(other).list_repo_files(repo_id)) == 6

        api(ahl_server).upload_folder(repo_id=repo_id, folder_path=art(task="shared", name="shared"))
        threads = [threading.Thread(target=tag, args=(server,)) for server in (ahl_server, other, ahl_server, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == [200, 409, 409, 409]
    finally:
        other.stop()


# -- search -----------------------------------------------------------------------------------------


def test_search_filters_and_pagination(ahl_server, art):
    client = api(ahl_server)
    for index in range(3):
        client.create_repo(f"{ahl_server.user}/searchable-{index}")
    api(ahl_server, "bob-token").create_repo("bob/searchable-bob")
    names = {m.id for m in client.list_models(search="searchable")}
    assert names == {f"{ahl_server.user}/searchable-{i}" for i in range(3)} | {"bob/searchable-bob"}
    assert {m.id for m in client.list_models(search="searchable", author="bob")} == {"bob/searchable-bob"}
    # newest first (lastModified)
    assert [m.id for m in client.list_models(search="searchable", limit=1)] == ["bob/searchable-bob"]

    pages, url = [], f"{ahl_server.url}/api/models?search=searchable&limit=2"
    while url:
        response = httpx.get(url)
        pages.append([m["id"] for m in response.json()])
        url = response.links.get("next", {}).get("url")
    assert all(len(page) <= 2 for page in pages) and len(pages) >= 2
    assert sorted(sum(pages, [])) == sorted(names)


def test_metric_sort_pages_through_scored_then_unscored_entries(ahl_server, art):
    """``sort=ahl-metric:M`` lists entries best first, then those without a numeric M by id; pages
    (``limit`` + the Link header) cross that boundary without losing or repeating a row."""
    registry = LocalRegistry(ahl_server.root)
    for seed, name in ((1, "low"), (5, "high"), (3, "mid")):  # accuracy 0.5 + seed / 100
        registry.push(art(task="pagesort", name=name, seed=seed))
    for name in ("nb", "na"):
        unscored = art(task="pagesort", name=name, seed=7)
        meta = json.loads((unscored / "adapter.json").read_text())
        meta["metrics"]["dev"] = {}
        (unscored / "adapter.json").write_text(json.dumps(meta))
        registry.push(unscored)
    expected = [f"ahl/{repo_slug(HUB_ID, 'pagesort', n)}" for n in ("high", "mid", "low")]
    expected += sorted(f"ahl/{repo_slug(HUB_ID, 'pagesort', n)}" for n in ("na", "nb"))
    for size in (1, 2, 3, 5):
        pages, url = [], f"{ahl_server.url}/api/models?filter=task:pagesort&sort=ahl-metric:accuracy&limit={size}"
        while url:
            response = httpx.get(url)
            pages.append([m["id"] for m in response.json()])
            url = response.links.get("next", {}).get("url")
        assert sum(pages, []) == expected, size
        assert all(len(page) <= size for page in pages)


# -- private server, upload limit, restart ----------------------------------------------------------


def test_private_mode(limited_server):
    owner = api(limited_server)
    owner.create_repo(f"{limited_server.user}/secret")
    owner.upload_file(path_or_fileobj=b"hello", path_in_repo="a.txt", repo_id=f"{limited_server.user}/secret")
    assert owner.model_info(f"{limited_server.user}/secret").sha
    for token in (False, "wrong-token"):
        with pytest.raises(RepositoryNotFoundError):
            api(limited_server, token).model_info(f"{limited_server.user}/secret")
        with pytest.raises(HfHubHTTPError) as excinfo:
            list(api(limited_server, token).list_models())
        assert status(excinfo) == 401
    response = httpx.get(f"{limited_server.url}/{limited_server.user}/secret/resolve/main/a.txt")
    assert response.status_code == 404 and response.headers["x-error-code"] == "RepoNotFound"
    assert [m.id for m in owner.list_models()] == [f"{limited_server.user}/secret"]


def test_oversized_commit_is_refused(limited_server):
    repo_id = f"{limited_server.user}/big"
    client = api(limited_server)
    client.create_repo(repo_id)
    before = files_under(limited_server.root)
    with pytest.raises(HfHubHTTPError) as excinfo:
        client.upload_file(path_or_fileobj=os.urandom(2 << 20), path_in_repo="big.bin", repo_id=repo_id)
    assert status(excinfo) == 413 and "upload limit" in str(excinfo.value)
    # without a Content-Length (chunked), the running count stops the upload
    chunks = (b'{"key": "header", "value": {}}\n' if i == 0 else b" " * (64 << 10) for i in range(40))
    response = httpx.post(
        f"{limited_server.url}/api/models/{repo_id}/commit/main",
        content=chunks,
        headers={"authorization": f"Bearer {limited_server.token}"},
    )
    assert response.status_code == 413
    assert files_under(limited_server.root) == before
    assert not list((limited_server.root / "tmp").iterdir())


def test_oversized_lfs_upload_is_refused(limited_server, no_xet):
    repo_id = f"{limited_server.user}/big-lfs"
    api(limited_server).create_repo(repo_id)
    before = files_under(limited_server.root)
    with pytest.raises(HfHubHTTPError) as excinfo:  # refused by the batch request, before any byte moves
        lfs_api(limited_server).upload_file(
            path_or_fileobj=os.urandom(2 << 20), path_in_repo="big.bin", repo_id=repo_id
        )
    assert status(excinfo) == 413 and "upload limit" in str(excinfo.value)
    # a link for a small object does not take more: the running count stops the PUT (with a
    # Content-Length at once, chunked after 1 MiB)
    link = upload_link(limited_server, repo_id, b"small")
    for body in (os.urandom(2 << 20), (b" " * (64 << 10) for _ in range(40))):
        response = httpx.put(link, content=body)
        assert response.status_code == 413 and "upload limit" in response.json()["error"]
    assert files_under(limited_server.root) == before and not lfs_leftovers(limited_server)


def test_restart_keeps_everything(ahl_server, art, tmp_path):
    artifact = art(task="durable", name="durable")
    repo_id = publish(ahl_server, artifact)
    client = api(ahl_server)
    before = (client.model_info(repo_id), client.list_repo_refs(repo_id))

    # a server killed in the middle of a commit upload leaves no commit behind
    sent, release = threading.Event(), threading.Event()

    def body():
        yield b'{"key": "header", "value": {"summary": "cut"}}\n{"key": "file", "value": {"path": "x.bin", '
        sent.set()
        release.wait(30)
        yield b'"content": "AAAA"}}\n'

    def send() -> None:
        with pytest.raises(httpx.TransportError):  # the connection dies with the server
            httpx.post(
                f"{ahl_server.url}/api/models/{repo_id}/commit/main",
                content=body(),
                headers={"authorization": f"Bearer {ahl_server.token}"},
            )

    upload = threading.Thread(target=send)
    upload.start()
    assert sent.wait(30)
    deadline = time.monotonic() + 30
    while not list((ahl_server.root / "tmp").glob("serve-commit-*")) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the server is receiving the body
    ahl_server.process.kill()  # SIGKILL: no graceful shutdown
    ahl_server.process.wait()
    release.set()
    upload.join()
    leftovers = list((ahl_server.root / "tmp").glob("serve-*"))
    assert leftovers  # the cut upload's staging directory, never part of a commit
    for path in leftovers:
        os.utime(path, (0, 0))  # as if a day old: the next start removes it
    ahl_server.start()
    assert not any(path.exists() for path in leftovers)
    info, refs = client.model_info(repo_id), client.list_repo_refs(repo_id)
    assert (info.sha, info.tags, refs.tags) == (before[0].sha, before[0].tags, before[1].tags)
    assert repo_id in {m.id for m in client.list_models(filter="task:durable")}
    pulled = Path(snapshot_download(repo_id, revision="v1.0.0", endpoint=ahl_server.url, cache_dir=tmp_path / "c"))
    assert read_artifact(pulled).digest == read_artifact(artifact).digest
