"""The client against a malicious Hub-compatible server (issue 13; registry/SPEC.md 14.8).

Every poisoned answer must end in one typed error line, and nothing outside the cache and the
pull/import target may be created, changed or deleted: each test snapshots the directory that
holds the cache, the target and a sibling directory with a file a hostile server would love to
delete, before and after.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapterhub_lite import adapters_format as af
from adapterhub_lite.errors import AhlError, IntegrityError, RemoteError
from adapterhub_lite.registry.client.cache import DownloadCache
from adapterhub_lite.registry.client.remote import RemoteRegistry
from adapterhub_lite.registry.format import boundary
from adapterhub_lite.registry.format.refs import parse_ref, repo_slug

from .conftest import make_artifact
from .hostile_hub import HostileHub

HUB_ID = "test-org/tiny-bert"
REF = f"{HUB_ID}/sst2/sst2@1.0.0"
REPO = f"evil/{repo_slug(HUB_ID, 'sst2', 'sst2')}"
FIXTURES = Path(__file__).parent / "fixtures" / "adapters"
ADAPTERS_REPO = "evil/bert-adapter"


@pytest.fixture(scope="module")
def artifact_files(tmp_path_factory, tiny_base_model) -> dict[str, bytes]:
    """The files of a real artifact on base ``HUB_ID`` (what an honest server would serve)."""
    base = dataclasses.replace(tiny_base_model, model_id=HUB_ID)
    path = make_artifact(tmp_path_factory.mktemp("served") / "sst2", base)
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}


@pytest.fixture
def world(tmp_path, monkeypatch) -> Path:
    """``WORLD/cache`` (the download cache), ``WORLD/out`` (targets), ``WORLD/sibling/victim.txt``."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("AHL_TOKEN", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    root = tmp_path / "world"
    (root / "sibling").mkdir(parents=True)
    (root / "sibling" / "victim.txt").write_text("precious")
    (root / "out").mkdir()
    return root


@pytest.fixture
def hub() -> Iterator[HostileHub]:
    with HostileHub() as server:
        yield server


def snapshot(root: Path) -> dict[str, Any]:
    """Every path under ``root`` (and its parent's listing) outside ``cache/`` and ``out/``,
    with type, size, mode and content hash."""
    seen: dict[str, Any] = {"..": sorted(p.name for p in root.parent.iterdir())}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] in ("cache", "out"):
            continue
        stat = path.lstat()
        seen[rel] = (
            stat.st_mode,
            stat.st_size,
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None,
        )
    return seen


@pytest.fixture
def untouched(world) -> Iterator[None]:
    """Fail unless the test leaves everything outside ``cache/`` and ``out/`` as it was."""
    before = snapshot(world)
    yield
    assert snapshot(world) == before


def serve(hub: HostileHub, files: dict[str, bytes], edit: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Serve the artifact as version 1.0.0, its metadata edited by ``edit`` first."""
    files = dict(files)
    if edit is not None:
        metadata = json.loads(files["adapter.json"])
        edit(metadata)
        files["adapter.json"] = json.dumps(metadata).encode()
    hub.add(REPO, files)


def pull(hub: HostileHub, world: Path) -> Path:
    registry = RemoteRegistry(f"{hub.url}/evil", cache=DownloadCache(world / "cache"))
    registry.pull(parse_ref(REF), world / "out" / "pulled")
    return world / "out" / "pulled"


def expect_one_line(error: type[AhlError], match: str, call: Callable[[], Any]) -> AhlError:
    with pytest.raises(error, match=match) as caught:
        call()
    assert "\n" not in str(caught.value)
    return caught.value


def weights(metadata: dict[str, Any]) -> dict[str, Any]:
    return metadata["files"]["adapter.safetensors"]


def nothing_pulled(world: Path) -> None:
    assert list((world / "out").iterdir()) == []


# -- the honest case: the fixture serves what a real server does ------------------------------


def test_an_honest_hostile_hub_serves_a_pull(hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    pulled = pull(hub, world)
    assert {p.name: p.read_bytes() for p in pulled.iterdir()} == artifact_files


# -- poisoned version records (finding 1 and 8) -----------------------------------------------

POISONED_RECORDS: dict[str, tuple[Callable[[dict[str, Any], Path], None], type[AhlError], str]] = {
    # a "sha256" that is a relative path to a file the user can delete: main deleted it
    "sha256 is a relative path to a victim": (
        lambda m, w: weights(m).update(sha256="../../sibling/victim.txt"),
        RemoteError,
        "not 64 lowercase hex",
    ),
    # one that does not exist: main created sibling/planted.part and .lock outside the cache
    "sha256 is a relative path to plant files": (
        lambda m, w: weights(m).update(sha256="../../sibling/planted"),
        RemoteError,
        "not 64 lowercase hex",
    ),
    "sha256 is an absolute path": (
        lambda m, w: weights(m).update(sha256=str(w / "sibling" / "absolute")),
        RemoteError,
        "not 64 lowercase hex",
    ),
    "sha256 in upper case": (
        lambda m, w: weights(m).update(sha256=weights(m)["sha256"].upper()),
        RemoteError,
        "not 64 lowercase hex",
    ),
    "record overrides the metadata file's own record": (
        lambda m, w: m["files"].update({"adapter.json": dict(weights(m))}),
        RemoteError,
        "given twice",
    ),
    "huge size": (lambda m, w: weights(m).update(size=10**15), RemoteError, "size of 'adapter.safetensors'"),
    "negative size": (lambda m, w: weights(m).update(size=-1), RemoteError, "size of 'adapter.safetensors'"),
    "size is a string": (lambda m, w: weights(m).update(size="12"), RemoteError, "size|sha256 and size"),
    "NUL in a file name": (lambda m, w: m["files"].update({"x\0y.txt": dict(weights(m))}), RemoteError, "NUL"),
    "../ in a file name": (
        lambda m, w: m["files"].update({"../../sibling/escape.txt": dict(weights(m))}),
        RemoteError,
        "plain name",
    ),
    "absolute file name": (
        lambda m, w: m["files"].update({"/tmp/ahl-hostile-name": dict(weights(m))}),
        RemoteError,
        "plain name",
    ),
    "file/dir name clash": (
        lambda m, w: m["files"].update({"metrics.jsonl/inner": dict(weights(m))}),
        RemoteError,
        "plain name",
    ),
    "files is a list": (lambda m, w: m.update(files=[1, 2]), RemoteError, "files"),
    "task is a number": (lambda m, w: m.update(task=7), RemoteError, "must be strings"),
    "digest of another file": (
        lambda m, w: weights(m).update(sha256=m["files"]["README.md"]["sha256"]),
        IntegrityError,
        "arrived damaged",
    ),
    "digest and size of another file": (
        lambda m, w: weights(m).update(sha256=m["files"]["README.md"]["sha256"], size=m["files"]["README.md"]["size"]),
        RemoteError,
        "declared",
    ),
}


@pytest.mark.parametrize("case", POISONED_RECORDS)
def test_poisoned_record_is_refused_before_any_file_operation(case, hub, world, artifact_files, untouched):
    edit, error, match = POISONED_RECORDS[case]
    serve(hub, artifact_files, lambda metadata: edit(metadata, world))
    expect_one_line(error, match, lambda: pull(hub, world))
    nothing_pulled(world)
    assert (world / "sibling" / "victim.txt").read_text() == "precious"


# -- poisoned bodies and headers (finding 8) --------------------------------------------------


def test_non_json_metadata_is_one_line(hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    hub.poison.bodies[f"{REPO}/adapter.json"] = b"<html>\0 not json</html>"
    expect_one_line(RemoteError, "not JSON", lambda: pull(hub, world))
    nothing_pulled(world)


def test_json_of_another_shape_is_one_line(hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    hub.poison.bodies[f"{REPO}/adapter.json"] = b"[1, 2, 3]"
    expect_one_line(RemoteError, "JSON object", lambda: pull(hub, world))


def test_huge_metadata_body_is_refused_while_streaming(hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    key = f"{REPO}/adapter.json"
    hub.poison.huge[key] = 100 << 20
    expect_one_line(RemoteError, "more than", lambda: pull(hub, world))
    time.sleep(0.5)  # the server notices the closed connection
    # the client stopped reading at the cap: far less than 100 MB ever left the server
    assert hub.sent[key] < 48 << 20


def test_lying_content_length_on_metadata_is_refused_before_reading(hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    hub.poison.headers[f"{REPO}/adapter.json"] = {"Content-Length": str(10 << 30)}
    expect_one_line(RemoteError, "declared", lambda: pull(hub, world))


def test_content_length_over_the_record_size_is_refused(hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    size = len(artifact_files["adapter.safetensors"])
    hub.poison.headers[f"{REPO}/adapter.safetensors"] = {"Content-Length": str(size + 1000)}
    expect_one_line(RemoteError, "declared", lambda: pull(hub, world))
    cache = DownloadCache(world / "cache")
    assert not cache.blob_store.has(hashlib.sha256(artifact_files["adapter.safetensors"]).hexdigest())
    nothing_pulled(world)


def test_wrong_bytes_are_refused_and_not_cached(hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    data = bytearray(artifact_files["adapter.safetensors"])
    data[-1] ^= 0xFF
    hub.poison.bodies[f"{REPO}/adapter.safetensors"] = bytes(data)
    expect_one_line(IntegrityError, "arrived damaged", lambda: pull(hub, world))
    cache = DownloadCache(world / "cache")
    assert not cache.blob_store.has(hashlib.sha256(artifact_files["adapter.safetensors"]).hexdigest())
    assert list((world / "cache" / "tmp").iterdir()) == []
    nothing_pulled(world)


def test_trickled_metadata_is_refused_after_the_deadline(hub, world, artifact_files, untouched, monkeypatch):
    monkeypatch.setattr(boundary, "METADATA_DEADLINE_S", 1.0)
    serve(hub, artifact_files)
    hub.poison.trickle[f"{REPO}/adapter.json"] = 0.01  # ~2 KB at 100 bytes/s: 20 s
    started = time.monotonic()
    expect_one_line(RemoteError, "trickle", lambda: pull(hub, world))
    assert time.monotonic() - started < 10


def test_tag_naming_no_commit_is_refused(hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    hub.repos[REPO].commit = "../../../sibling"
    expect_one_line(RemoteError, "not 40 hex", lambda: pull(hub, world))


def test_non_json_refs_are_one_line(hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    hub.poison.bodies[f"{REPO}:refs"] = b"<html>oops</html>"
    expect_one_line(RemoteError, "not JSON", lambda: pull(hub, world))


@pytest.mark.parametrize("where", ["header", "json"])
def test_the_servers_whole_refusal_reason_reaches_the_user(where, hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    reason = "quota exceeded for namespace evil: delete a repository or ask the operator (ticket 42)"
    key = f"{REPO}:refs"
    hub.poison.status[key] = 400
    if where == "header":
        hub.poison.headers[key] = {"X-Error-Message": reason}
    else:
        hub.poison.bodies[key] = json.dumps({"error": reason}).encode()
    error = expect_one_line(RemoteError, "answered 400", lambda: pull(hub, world))
    assert reason in str(error)


def test_cli_shows_one_line_for_a_hostile_server(hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    hub.poison.bodies[f"{REPO}/adapter.json"] = b"not json at all"
    env = {**os.environ, "AHL_CACHE": str(world / "cache")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "adapterhub_lite",
            "pull",
            REF,
            "--registry",
            f"{hub.url}/evil",
            "--to",
            str(world / "out" / "pulled"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == RemoteError.exit_code, proc.stderr
    assert "Traceback" not in proc.stderr and "not JSON" in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1, proc.stderr


# -- imports from a hostile endpoint (finding 2) ----------------------------------------------


def serve_adapters(hub: HostileHub, **kwargs: Any) -> dict[str, bytes]:
    repo = hub.add(ADAPTERS_REPO, FIXTURES / "bert_seq_bn-safetensors", **kwargs)
    return repo.files


def fetch(hub: HostileHub, world: Path) -> Path:
    directory, origin = af.fetch(ADAPTERS_REPO, endpoint=hub.url, cache_dir=world / "cache")
    assert origin["commit"] == hub.repos[ADAPTERS_REPO].commit
    return directory


def test_an_etag_with_dot_dot_never_becomes_a_path(hub, world, untouched):
    """huggingface_hub's snapshot_download joins the ETag into its cache path; the import does
    not use it (nor huggingface_hub's download) and gets exactly the served files."""
    files = serve_adapters(hub)
    for name in files:
        planted = '"../../../../sibling/planted-by-etag"'
        hub.poison.headers[f"{ADAPTERS_REPO}/{name}"] = {"ETag": planted, "X-Linked-Etag": planted}
    directory = fetch(hub, world)
    assert directory.is_relative_to(world / "cache")
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == files


def test_a_sibling_named_dot_dot_is_ignored(hub, world, untouched):
    files = serve_adapters(hub)

    def add_escape(info: dict[str, Any]) -> dict[str, Any]:
        info["siblings"].append({"rfilename": "../../sibling/escape", "size": 3, "blobId": "0" * 40})
        return info

    hub.poison.info = add_escape
    assert {p.name for p in fetch(hub, world).iterdir()} == set(files)


IMPORT_POISONS: dict[str, tuple[Callable[[dict[str, Any]], Any], type[AhlError], str]] = {
    "commit id with ../": (lambda info: {**info, "sha": "../../../sibling/x"}, RemoteError, "not 40 hex"),
    "lfs sha256 is a path": (
        lambda info: {
            **info,
            "siblings": [{**s, "lfs": {**s["lfs"], "sha256": "../../sibling/victim.txt"}} for s in info["siblings"]],
        },
        RemoteError,
        "not 64 lowercase hex",
    ),
    "lfs size is negative": (
        lambda info: {**info, "siblings": [{**s, "lfs": {**s["lfs"], "size": -1}} for s in info["siblings"]]},
        RemoteError,
        "size of",
    ),
    "no file list": (lambda info: {"sha": info["sha"]}, RemoteError, "without a file list"),
    "not an object": (lambda info: ["x"], RemoteError, "without a file list"),
}


@pytest.mark.parametrize("case", IMPORT_POISONS)
def test_poisoned_repository_info_is_refused(case, hub, world, untouched):
    edit, error, match = IMPORT_POISONS[case]
    serve_adapters(hub)
    hub.poison.info = edit
    expect_one_line(error, match, lambda: fetch(hub, world))
    assert not (world / "cache" / "imports").exists() or not any((world / "cache" / "imports").rglob("*.json"))


def test_non_json_repository_info_is_one_line(hub, world, untouched):
    serve_adapters(hub)
    hub.poison.bodies[f"{ADAPTERS_REPO}:info"] = b"\0\0\0"
    expect_one_line(RemoteError, "not JSON", lambda: fetch(hub, world))


def test_wrong_bytes_of_an_imported_file_are_refused(hub, world, untouched):
    files = serve_adapters(hub)
    hub.poison.bodies[f"{ADAPTERS_REPO}/adapter_config.json"] = files["adapter_config.json"].replace(b"{", b"[", 1)
    expect_one_line(IntegrityError, "arrived damaged", lambda: fetch(hub, world))


def test_wrong_bytes_of_a_regular_imported_file_are_refused(hub, world, untouched):
    """Files without LFS metadata are checked against their git blob id."""
    files = serve_adapters(hub, lfs=False)
    hub.poison.bodies[f"{ADAPTERS_REPO}/adapter_config.json"] = files["adapter_config.json"].replace(b"{", b"[", 1)
    expect_one_line(IntegrityError, "git blob id", lambda: fetch(hub, world))


def test_huge_regular_imported_file_is_refused_while_streaming(hub, world, untouched):
    serve_adapters(hub, lfs=False)
    key = f"{ADAPTERS_REPO}/adapter_config.json"
    hub.poison.huge[key] = 100 << 20
    expect_one_line(RemoteError, "more than", lambda: fetch(hub, world))
    time.sleep(0.5)
    assert hub.sent[key] < 48 << 20


def test_regular_files_import_when_honest(hub, world, untouched):
    files = serve_adapters(hub, lfs=False)
    assert {p.name: p.read_bytes() for p in fetch(hub, world).iterdir()} == files


# -- typed errors against the real ahl serve --------------------------------------------------


def test_push_without_a_token_to_an_existing_repository_is_one_line(
    ahl_server, world, tiny_base_model, tmp_path, monkeypatch
):
    """Once a repository exists, an anonymous push reached huggingface_hub's hf:// URI parser
    and ended in an HfUriError traceback; now it is the one line that asks for a token."""
    from adapterhub_lite import hub as ahl_hub

    base = dataclasses.replace(tiny_base_model, model_id=HUB_ID)
    monkeypatch.setenv("AHL_CACHE", str(world / "cache"))
    monkeypatch.setenv("AHL_TOKEN", ahl_server.token)
    registry = f"{ahl_server.url}/{ahl_server.user}"
    ahl_hub.push(make_artifact(tmp_path / "first", base, name="anon", seed=1), registry=registry)
    monkeypatch.delenv("AHL_TOKEN")
    second = make_artifact(tmp_path / "second", base, name="anon", seed=2)
    with pytest.raises(AhlError) as caught:
        ahl_hub.push(second, registry=registry)
    assert "\n" not in str(caught.value) and "token" in str(caught.value), str(caught.value)


def test_an_imported_repository_serves_again_offline_and_unreachable(world, monkeypatch, untouched):
    with HostileHub() as server:
        files = serve_adapters(server)
        first = fetch(server, world)
    # the server is gone: the copy imported before serves (as huggingface_hub's cache did)
    again, origin = af.fetch(ADAPTERS_REPO, endpoint=server.url, cache_dir=world / "cache")
    assert again == first and origin["commit"] == first.name
    assert {p.name: p.read_bytes() for p in again.iterdir()} == files
    monkeypatch.setenv("AHL_OFFLINE", "1")
    assert af.fetch(ADAPTERS_REPO, endpoint=server.url, cache_dir=world / "cache")[0] == first
    with pytest.raises(AhlError, match="never imported"):
        af.fetch("evil/other", endpoint=server.url, cache_dir=world / "cache")


# -- poisoned search listings (ahl serve's extension rows) ------------------------------------


def listing_row(**entry: Any) -> dict[str, Any]:
    record = {
        "base": HUB_ID,
        "task": "sst2",
        "name": "sst2",
        "version": "1.0.0",
        "digest": "sha256:" + "a" * 64,
        "summary": {},
        **entry,
    }
    return {"id": REPO, "ahlEntry": record}


@pytest.mark.parametrize(
    "row, match",
    [
        (listing_row(base="../../sibling"), "invalid entry"),
        (listing_row(name="x\0y"), "invalid entry"),
        (listing_row(version="../1.0.0"), "invalid entry"),
        (listing_row(digest="sha256:../x"), "digest"),
        ({**listing_row(), "id": "../../x"}, "repository"),
    ],
)
def test_poisoned_search_rows_are_refused(row, match, hub, world):
    hub.poison.bodies["listing"] = json.dumps([row]).encode()
    registry = RemoteRegistry(hub.url, cache=DownloadCache(world / "cache"))
    expect_one_line(RemoteError, match, registry.search)


def test_a_next_page_on_another_server_is_refused(hub, world):
    """Following it would send the token to a server it was not given for."""
    hub.poison.bodies["listing"] = json.dumps([listing_row()]).encode()
    with HostileHub() as other:
        hub.poison.headers["listing"] = {"Link": f'<{other.url}/api/models?cursor=2>; rel="next"'}
        registry = RemoteRegistry(hub.url, token="secret", cache=DownloadCache(world / "cache"))
        expect_one_line(RemoteError, "another server", lambda: registry.search(limit=5))
    assert other.requests == []


@pytest.mark.parametrize("path", ["adapter.json", "adapter.safetensors"])
def test_a_stalled_body_times_out(path, hub, world, artifact_files, untouched, monkeypatch):
    """huggingface_hub's session has no timeout: a server that sends headers and then nothing
    would hold a pull forever. Every read through the client's own path gives up after
    STALL_TIMEOUT_S of silence (1 s here)."""
    monkeypatch.setattr(boundary, "STALL_TIMEOUT_S", 1.0)
    serve(hub, artifact_files)
    hub.poison.stall[f"{REPO}/{path}"] = 5.0
    started = time.monotonic()
    expect_one_line(AhlError, "ReadTimeout", lambda: pull(hub, world))
    assert time.monotonic() - started < 4.5
    nothing_pulled(world)


# -- JSON answers the client parses itself: refs, trees, model listings, the probe ------------
# (huggingface_hub's list_repo_refs / list_repo_tree / list_models read them whole, unchecked)

ENTRY_TAG = f"ahl-entry:{HUB_ID}/sst2/sst2"


def hub_search(hub: HostileHub, world: Path, **query: Any) -> list[Any]:
    """Search the hostile server as a Hub without ahl's extensions (by the repositories' tags)."""
    return RemoteRegistry(f"{hub.url}/evil", cache=DownloadCache(world / "cache")).search(**query)


def listing_requests(hub: HostileHub) -> int:
    return sum(path.startswith("/api/models?") for _, path in hub.requests)


@pytest.mark.parametrize("key", [f"{REPO}:refs", f"{REPO}:tree"])
def test_huge_refs_and_tree_bodies_are_refused_while_streaming(key, hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    hub.poison.huge[key] = 100 << 20
    expect_one_line(RemoteError, "more than 16,777,216 bytes", lambda: pull(hub, world))
    time.sleep(0.5)  # the server notices the closed connection
    assert hub.sent[key] < 48 << 20  # the client stopped at the cap, never held 100 MB
    nothing_pulled(world)


@pytest.mark.parametrize("key", [f"{REPO}:refs", f"{REPO}:tree"])
def test_lying_content_length_on_refs_and_tree_is_refused_before_reading(key, hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    hub.poison.headers[key] = {"Content-Length": str(10 << 30)}
    expect_one_line(RemoteError, "declared", lambda: pull(hub, world))
    nothing_pulled(world)


def test_huge_probe_body_is_refused_while_streaming(hub, world, untouched):
    hub.poison.huge["listing"] = 100 << 20
    expect_one_line(RemoteError, "list models: the server sent more than", lambda: hub_search(hub, world))
    time.sleep(0.5)
    assert hub.sent["listing"] < 48 << 20
    assert listing_requests(hub) == 1  # the probe (limit=1) was refused; nothing followed it


def test_huge_model_listing_is_refused_while_streaming(hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    hub.repos[REPO].model_tags = (ENTRY_TAG,)
    assert [str(e.ref) for e in hub_search(hub, world)] == [REF]  # the probe learnt: no ahlEntry here
    hub.poison.huge["listing"] = 100 << 20
    expect_one_line(RemoteError, "list models: the server sent more than", lambda: hub_search(hub, world))
    time.sleep(0.5)
    assert hub.sent["listing"] < 48 << 20


WRONG_SHAPES: dict[str, tuple[str, Any, str]] = {
    "refs are a list": (f"{REPO}:refs", [], "refs that are not an object"),
    "tags are a string": (f"{REPO}:refs", {"tags": "v1.0.0"}, "refs that are not an object"),
    "a tag without a name": (f"{REPO}:refs", {"tags": [{"targetCommit": "0" * 40}]}, "refs that are not an object"),
    "tree is an object": (f"{REPO}:tree", {"path": "adapter.json"}, "not a list of objects"),
    "tree rows are strings": (f"{REPO}:tree", ["adapter.json"], "not a list of objects"),
    "tree entry without a path": (f"{REPO}:tree", [{"type": "file"}], "tree entry"),
    "tree entry of another type": (f"{REPO}:tree", [{"type": "symlink", "path": "adapter.json"}], "tree entry"),
    "tree path is a number": (f"{REPO}:tree", [{"type": "file", "path": 7}], "tree entry"),
}


@pytest.mark.parametrize("case", WRONG_SHAPES)
def test_refs_and_trees_of_the_wrong_shape_are_one_line(case, hub, world, artifact_files, untouched):
    key, body, match = WRONG_SHAPES[case]
    serve(hub, artifact_files)
    hub.poison.bodies[key] = json.dumps(body).encode()
    expect_one_line(RemoteError, match, lambda: pull(hub, world))
    nothing_pulled(world)


@pytest.mark.parametrize(
    "body, match",
    [
        ({"models": []}, "not a list of objects"),
        ([1, 2], "not a list of objects"),
        ([{"id": 5, "tags": []}], "without a string id"),
        ([{"id": REPO, "tags": ENTRY_TAG}], "list of string tags"),
        ([{"id": REPO, "tags": [ENTRY_TAG, 7]}], "list of string tags"),
    ],
)
def test_model_listings_of_the_wrong_shape_are_one_line(body, match, hub, world, untouched):
    hub.poison.bodies["listing"] = json.dumps(body).encode()
    expect_one_line(RemoteError, match, lambda: hub_search(hub, world))


def test_a_listing_row_with_an_unsafe_repository_id_is_skipped(hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    hub.poison.bodies["listing"] = json.dumps(
        [{"id": "../../sibling", "tags": [ENTRY_TAG]}, {"id": REPO, "tags": [ENTRY_TAG]}]
    ).encode()
    assert [str(e.ref) for e in hub_search(hub, world)] == [REF]


def test_endless_listing_pagination_stops_at_the_page_cap(hub, world, monkeypatch, untouched):
    monkeypatch.setattr(boundary, "MAX_PAGES", 20)
    hub.poison.headers["listing"] = {"Link": f'<{hub.url}/api/models?cursor=1>; rel="next"'}
    expect_one_line(RemoteError, "further pages past 20", lambda: hub_search(hub, world))
    assert listing_requests(hub) <= 21 + 1  # the probe, then at most the cap


def test_endless_tree_pagination_stops_at_the_row_cap(hub, world, artifact_files, monkeypatch, untouched):
    monkeypatch.setattr(boundary, "MAX_LISTED", 10)
    serve(hub, artifact_files)
    hub.poison.headers[f"{REPO}:tree"] = {"Link": f'<{hub.url}/api/models/{REPO}/tree/x?cursor=1>; rel="next"'}
    expect_one_line(RemoteError, "listed over 10 rows", lambda: pull(hub, world))
    trees = sum("/tree/" in path for _, path in hub.requests)
    assert trees <= 10  # each page repeats every file: the cap is reached within a few pages
    nothing_pulled(world)


def test_endless_listing_stops_at_the_byte_budget(hub, world, artifact_files, monkeypatch, untouched):
    monkeypatch.setattr(boundary, "MAX_LISTING_BYTES", 4000)
    serve(hub, artifact_files)
    hub.repos[REPO].model_tags = (ENTRY_TAG,)
    hub.poison.bodies["listing"] = json.dumps([{"id": REPO, "tags": [ENTRY_TAG, "x" * 900]}]).encode()
    hub.poison.headers["listing"] = {"Link": f'<{hub.url}/api/models?cursor=1>; rel="next"'}
    expect_one_line(RemoteError, "bytes", lambda: hub_search(hub, world, sort="accuracy"))
    assert listing_requests(hub) <= 6


def test_honest_pagination_of_trees_and_listings_still_works(hub, world, artifact_files, untouched):
    hub.page_size = 1  # every file and every repository on a page of its own
    serve(hub, artifact_files)
    hub.repos[REPO].model_tags = (ENTRY_TAG,)
    for i in range(3):
        hub.add(f"evil/other-{i}", {"README.md": b"not an adapter"})
    assert [str(e.ref) for e in hub_search(hub, world, sort="accuracy")] == [REF]
    assert listing_requests(hub) >= 4  # the probe, then one page per repository
    hub.requests.clear()
    pulled = pull(hub, world)
    assert {p.name: p.read_bytes() for p in pulled.iterdir()} == artifact_files
    assert sum("/tree/" in path for _, path in hub.requests) == len(artifact_files)


def test_a_namespace_less_pull_finds_the_repository_by_its_listed_tag(hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    hub.repos[REPO].model_tags = (ENTRY_TAG,)
    RemoteRegistry(hub.url, cache=DownloadCache(world / "cache")).pull(parse_ref(REF), world / "out" / "pulled")
    assert {p.name: p.read_bytes() for p in (world / "out" / "pulled").iterdir()} == artifact_files


def test_a_namespace_less_lookup_refuses_an_unsafe_repository_id(hub, world, artifact_files, untouched):
    serve(hub, artifact_files)
    hub.poison.bodies["listing"] = json.dumps([{"id": "../../sibling", "tags": [ENTRY_TAG]}]).encode()
    registry = RemoteRegistry(hub.url, cache=DownloadCache(world / "cache"))
    expect_one_line(RemoteError, "repository", lambda: registry.pull(parse_ref(REF), world / "out" / "pulled"))
    nothing_pulled(world)
