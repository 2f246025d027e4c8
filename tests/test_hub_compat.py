"""``ahl serve`` answers the stock Hugging Face client as the Hub does: one test per operation of
``docs/hub-protocol.md``'s table that is not covered in ``test_server.py``, with ``HfApi`` and the
``hf`` CLI that huggingface_hub installs, against one real server subprocess on 127.0.0.1.

Also the entry binding rules of ``registry/SPEC.md`` 14.2: an entry exists in a repository only
through a valid tagged version there. Artifacts are written without training
(``conftest.make_artifact``); repositories are per test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import httpx2 as httpx  # noqa: E402  (huggingface_hub's own HTTP client)
import pytest  # noqa: E402
from huggingface_hub import CommitOperationAdd, HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    BadRequestError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from adapterhub_lite import hub  # noqa: E402
from adapterhub_lite.artifact import read_artifact  # noqa: E402
from adapterhub_lite.errors import AhlError  # noqa: E402
from adapterhub_lite.registry.client.local import LocalRegistry  # noqa: E402
from adapterhub_lite.registry.format.refs import Ref, repo_slug  # noqa: E402

from .conftest import HUB_ID, AhlServer, requests_sent  # noqa: E402
from .test_cli import ahl_in_process  # noqa: E402

HF = Path(sys.executable).parent / "hf"  # the stock CLI huggingface_hub installs


@pytest.fixture(autouse=True)
def client_env(tmp_path, monkeypatch):
    """An empty download cache and token store per test; alice's token for ahl's client."""
    monkeypatch.setenv("AHL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("AHL_TOKEN", "alice-token")
    for name in ("AHL_OFFLINE", "HF_HUB_OFFLINE", "AHL_REGISTRY"):
        monkeypatch.delenv(name, raising=False)


def api(server: AhlServer, token: str | bool | None = None) -> HfApi:
    return HfApi(endpoint=server.url, token=server.token if token is None else token)


def hf(server: AhlServer, tmp_path: Path, *args: str, token: str = "alice-token") -> subprocess.CompletedProcess:
    """Run the stock ``hf`` CLI against the server (its own HF_HOME, no telemetry, no Xet store)."""
    env = {
        **os.environ,
        "HF_ENDPOINT": server.url,
        "HF_TOKEN": token,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_COLOR": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    }
    return subprocess.run([str(HF), *args], env=env, capture_output=True, text=True, timeout=120)


def status(excinfo: pytest.ExceptionInfo) -> int:
    return excinfo.value.response.status_code


def error_line(excinfo: pytest.ExceptionInfo) -> str:
    """The Hub's error header of a refusal: one line."""
    message = excinfo.value.response.headers["x-error-message"]
    assert "\n" not in message and message
    return message


def entry_repos(server: AhlServer, task: str, name: str) -> list[str]:
    """Repositories a namespace-less lookup finds for an entry (what ``ahl pull`` asks)."""
    return [m.id for m in api(server, False).list_models(filter=f"ahl-entry:{HUB_ID}/{task}/{name}")]


# -- entry binding (SPEC 14.2) ----------------------------------------------------------------------


def test_stray_adapter_json_copy_binds_no_entry(ahl_server, art, tmp_path):
    """A copy of alice's adapter.json in bob's repository, uploaded with HfApi, never binds
    alice's entry there: at the top level or anywhere else it is a plain file until a version is
    tagged. Namespace-less pulls keep finding alice's repository alone."""
    artifact = art(task="stray", name="stray")
    alice_repo = hub.push(artifact, registry=ahl_server.url).manifest["repo"]
    bob = api(ahl_server, "bob-token")
    bob.create_repo("bob/copy")
    bob.upload_file(path_or_fileobj=artifact / "adapter.json", path_in_repo="adapter.json", repo_id="bob/copy")
    assert entry_repos(ahl_server, "stray", "stray") == [alice_repo]
    bob.delete_file("adapter.json", repo_id="bob/copy")
    bob.upload_file(path_or_fileobj=artifact / "adapter.json", path_in_repo="backup/adapter.json", repo_id="bob/copy")
    with pytest.raises(BadRequestError, match="not a valid artifact"):
        bob.create_tag("bob/copy", tag="v1.0.0")  # a copy inside a folder is no artifact either
    assert entry_repos(ahl_server, "stray", "stray") == [alice_repo]
    assert not [t for t in api(ahl_server).model_info("bob/copy").tags if t.startswith("ahl-entry:")]
    entry, _ = hub.pull(f"{HUB_ID}/stray/stray", registry=ahl_server.url, to=tmp_path / "pulled")
    assert entry.manifest["repo"] == alice_repo

    # a copy of an entry nobody published is accepted, and still binds nothing until tagged
    other = art(task="unpublished", name="unpublished")
    bob.upload_file(path_or_fileobj=other / "adapter.json", path_in_repo="adapter.json", repo_id="bob/copy")
    assert entry_repos(ahl_server, "unpublished", "unpublished") == []
    with pytest.raises(AhlError, match="is not on"):
        hub.resolve(f"{HUB_ID}/unpublished/unpublished", registry=ahl_server.url)


def test_hf_upload_and_tag_is_found_with_and_without_namespace(ahl_server, art, tmp_path):
    """An entry published with the stock CLI into a repository not named by the slug, then
    tagged, is found through http://host and through http://host/alice."""
    artifact = art(task="handmade", name="handmade")
    upload = hf(ahl_server, tmp_path, "upload", "alice/my-handmade-adapter", str(artifact), ".")
    assert upload.returncode == 0, upload.stderr
    tag = hf(ahl_server, tmp_path, "repos", "tag", "create", "alice/my-handmade-adapter", "v1.0.0")
    assert tag.returncode == 0, tag.stderr
    for registry in (ahl_server.url, f"{ahl_server.url}/alice"):
        entry, pulled = hub.pull(f"{HUB_ID}/handmade/handmade", registry=registry, to=tmp_path / registry[-5:])
        assert entry.manifest["repo"] == "alice/my-handmade-adapter" and entry.ref.version == "1.0.0"
        assert read_artifact(pulled).digest == read_artifact(artifact).digest
    with pytest.raises(AhlError, match="is not on"):  # bob's namespace does not have it
        hub.resolve(f"{HUB_ID}/handmade/handmade", registry=f"{ahl_server.url}/bob")


def test_refused_push_leaves_no_commit_and_a_push_reads_back_its_own_repository(ahl_server, art):
    """alice pushing an entry that another of her repositories holds is refused before any
    commit; a push that tags reads the version back from the repository it tagged, never
    through a namespace-less lookup."""
    artifact = art(task="owned", name="owned")
    with requests_sent() as sent:
        entry = hub.push(artifact, registry=ahl_server.url)
    assert not [path for method, path in sent if method == "GET" and path == "/api/models"]
    assert entry.ref.version == "1.0.0"
    other = api(ahl_server)
    other.create_repo("alice/owned-again")
    with pytest.raises(BadRequestError) as excinfo:
        other.upload_folder(repo_id="alice/owned-again", folder_path=artifact)
    assert f"already lives in repository {entry.manifest['repo']} of namespace alice" in error_line(excinfo)
    assert other.list_repo_refs("alice/owned-again").tags == []
    assert len(other.list_repo_commits("alice/owned-again")) == 1  # the initial one
    assert entry_repos(ahl_server, "owned", "owned") == [entry.manifest["repo"]]


def test_one_key_in_two_namespaces_is_listed_and_pickable(art, tmp_path):
    """On the Hub anyone may publish a key under their own name: a namespace-less ref with two
    candidates fails with one line listing them and the --registry values that pick one, and
    each of those picks its own. (ahl serve keeps one repository per key, so the Hub's side is
    played by the Hub-compatible fixture server of tests/hostile_hub.py, answering honestly.)"""
    from .hostile_hub import HostileHub

    artifact = art(task="twice", name="twice")
    with HostileHub() as hub_server:
        for repo_id in ("alice/twice", "bob/twice-copy"):
            hub_server.add(repo_id, artifact)
        listing = [{"id": repo_id, "tags": [f"ahl-entry:{HUB_ID}/twice/twice"]} for repo_id in hub_server.repos]
        hub_server.poison.bodies["listing"] = json.dumps(listing).encode()
        ref = f"{HUB_ID}/twice/twice"
        with pytest.raises(AhlError) as caught:
            hub.resolve(ref, registry=hub_server.url)
        message = str(caught.value)
        assert "\n" not in message and "alice/twice, bob/twice-copy" in message
        assert f"{hub_server.url}/alice, {hub_server.url}/bob" in message
        for namespace, repo_id in (("alice", "alice/twice"), ("bob", "bob/twice-copy")):
            entry, pulled = hub.pull(ref, registry=f"{hub_server.url}/{namespace}", to=tmp_path / namespace)
            assert entry.manifest["repo"] == repo_id
            assert read_artifact(pulled).digest == read_artifact(artifact).digest


def test_one_key_in_two_namespaces_of_ahl_serve(art, tmp_path, monkeypatch):
    """alice and bob each publish the same key on one ahl serve (SPEC 14.2): search lists both
    repositories with their own versions, a namespace-less pull lists the --registry values
    that pick one, and each pulls its own bytes; bob's versions live in his repository's own
    registry, which a restart with a lost index keeps and deleting his repository removes,
    leaving alice's intact. The server is given a relative --registry: every path it keeps is
    absolute (a second holder's versions are read through a file URI)."""
    server = AhlServer(tmp_path / "registry")
    server.popen, server.registry_arg = {"cwd": tmp_path}, "registry"
    server.start()
    try:
        ref = f"{HUB_ID}/shared/shared"
        artifacts = {"alice": art(task="shared", name="shared"), "bob": art(task="shared", name="shared", seed=1)}
        repos = {"alice": hub.push(artifacts["alice"], registry=server.url).manifest["repo"]}
        monkeypatch.setenv("AHL_TOKEN", "bob-token")
        bob_entry = hub.push(artifacts["bob"], registry=server.url)  # into bob's namespace: no refusal
        repos["bob"] = bob_entry.manifest["repo"]
        assert repos["bob"].startswith("bob/") and bob_entry.ref.version == "1.0.0"
        bob_versions = server.root / "repos" / repos["bob"] / "versions"
        assert bob_versions.is_dir()
        digests = {user: read_artifact(path).digest for user, path in artifacts.items()}
        assert digests["alice"] != digests["bob"]

        def both_listed_and_pickable(label: str) -> None:
            assert sorted(entry_repos(server, "shared", "shared")) == sorted(repos.values())
            listed = {e.manifest["repo"]: e.manifest["digest"] for e in hub.search(registry=server.url, task="shared")}
            assert listed == {repos[user]: digests[user] for user in repos}  # each once, its own version
            # the CLI tells the two rows apart by their repository, in the table and in --json
            shown = ahl_in_process("search", "--registry", server.url, "--task", "shared", env={"COLUMNS": "250"})
            rows = [line for line in shown.stdout.splitlines() if "shared/shared" in line]
            assert sorted(next(r for r in repos.values() if r in row) for row in rows) == sorted(repos.values())
            as_json = ahl_in_process("search", "--registry", server.url, "--task", "shared", "--json").stdout
            assert sorted(row["repo"] for row in json.loads(as_json)) == sorted(repos.values())
            with pytest.raises(AhlError) as caught:
                hub.resolve(ref, registry=server.url)
            message = str(caught.value)
            assert "\n" not in message and "several namespaces" in message
            assert f"{server.url}/alice, {server.url}/bob" in message
            for user in repos:
                entry, pulled = hub.pull(ref, registry=f"{server.url}/{user}", to=tmp_path / f"{label}-{user}")
                assert entry.manifest["repo"] == repos[user] and read_artifact(pulled).digest == digests[user]

        both_listed_and_pickable("first")
        server.stop()  # the search index is derived: rebuilt from the files at the next start
        for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
            (server.root / "repos" / name).unlink(missing_ok=True)
        server.start()
        both_listed_and_pickable("restarted")

        api(server, "bob-token").delete_repo(repos["bob"])
        assert not bob_versions.exists() and not list((server.root / "tmp").glob("serve-delete-*"))
        assert entry_repos(server, "shared", "shared") == [repos["alice"]]
        entry, pulled = hub.pull(ref, registry=server.url, to=tmp_path / "after-delete")
        assert entry.manifest["repo"] == repos["alice"] and read_artifact(pulled).digest == digests["alice"]
        assert LocalRegistry(server.root).versions(Ref(HUB_ID, "shared", "shared")) == ["1.0.0"]
    finally:
        server.stop()


def test_a_second_holders_version_locked_by_a_fusion_blocks_its_delete(
    ahl_server, tmp_path, tiny_base_model, spam_files, monkeypatch
):
    """A fusion locking the version of bob's repository, published in bob's namespace (its key
    is alice's too, so it lives in a registry of its own), refuses deleting bob's repository."""
    from adapterhub_lite import TrainConfig
    from adapterhub_lite import api as ahl_api

    from .conftest import make_artifact

    def made(label: str, task: str, seed: int, name: str | None = None) -> Path:
        return make_artifact(tmp_path / label, tiny_base_model, task=task, name=name or task, seed=seed)

    hub.push(made("alice-k", "lockk", 0), registry=ahl_server.url)
    sources = [made("bob-k", "lockk", 1), made("bob-q", "lockq", 2)]
    fusion = tmp_path / "fusion"
    config = TrainConfig(mode="fusion", epochs=1, batch_size=32, learning_rate=1e-3, device="cpu")
    ahl_api.fuse(sources, spam_files[0], task="lockfuse2", config=config, out=fusion)
    fused = read_artifact(fusion).metadata
    hub.push(made("alice-f", fused["task"], 3, fused["name"]), registry=ahl_server.url)  # alice holds the fusion's key
    # (an adapter under the fusion's task/name: a key is a key, whatever the kind)
    monkeypatch.setenv("AHL_TOKEN", "bob-token")
    bob_k = hub.push(sources[0], registry=ahl_server.url).manifest["repo"]
    bob_f = hub.push(fusion, registry=ahl_server.url).manifest["repo"]
    assert (ahl_server.root / "repos" / bob_f / "versions").is_dir()
    with pytest.raises(HfHubHTTPError) as excinfo:
        api(ahl_server, "bob-token").delete_repo(bob_k)
    assert status(excinfo) == 409
    assert f"{bob_k} cannot be deleted" in error_line(excinfo) and f"repository {bob_f}" in error_line(excinfo)
    assert api(ahl_server, "bob-token").repo_exists(bob_k)


def test_a_fusion_over_another_namespaces_version_adds_none_to_the_first_holder(
    ahl_server, tmp_path, tiny_base_model, spam_files, monkeypatch
):
    """bob's fusion over his version of a key alice holds first goes into the directory's
    registry, where alice's versions are: it adds no version to her entry (before, its adapter
    copy became her v1.0.1, with bob's bytes), its catalog page links bob's version, and it
    still locks that version against delete."""
    from adapterhub_lite import TrainConfig
    from adapterhub_lite import api as ahl_api

    from .conftest import make_artifact

    def made(label: str, task: str, seed: int) -> Path:
        return make_artifact(tmp_path / label, tiny_base_model, task=task, name=task, seed=seed)

    alice_k = made("alice-k", "polk", 0)
    alice = hub.push(alice_k, registry=ahl_server.url)
    ref = "/".join(alice.ref.entry)
    sources = [made("bob-k", "polk", 1), made("bob-q", "polq", 2)]
    fusion = tmp_path / "fusion"
    config = TrainConfig(mode="fusion", epochs=1, batch_size=32, learning_rate=1e-3, device="cpu")
    ahl_api.fuse(sources, spam_files[0], task="polfuse", config=config, out=fusion)
    monkeypatch.setenv("AHL_TOKEN", "bob-token")
    bob_k = hub.push(sources[0], registry=ahl_server.url).manifest["repo"]
    bob_fusion = hub.push(fusion, registry=ahl_server.url)
    bob_f = bob_fusion.manifest["repo"]
    assert not (ahl_server.root / "repos" / bob_f / "versions").exists()  # the directory's registry

    assert LocalRegistry(ahl_server.root).versions(Ref(*alice.ref.entry), include_yanked=True) == ["1.0.0"]
    assert [t.name for t in api(ahl_server).list_repo_refs(alice.manifest["repo"]).tags] == ["v1.0.0"]
    for user, source in (("alice", alice_k), ("bob", sources[0])):
        entry, pulled = hub.pull(ref, registry=f"{ahl_server.url}/{user}", to=tmp_path / f"pulled-{user}")
        assert entry.ref.version == "1.0.0" and read_artifact(pulled).digest == read_artifact(source).digest
    fusion_ref = "/".join(bob_fusion.ref.entry)
    pulled_fusion = hub.pull(fusion_ref, registry=f"{ahl_server.url}/bob", to=tmp_path / "pulled-fusion")[1]
    assert read_artifact(pulled_fusion).digest == read_artifact(fusion).digest
    # the fusion's catalog page links the version it locks in bob's repository, not alice's
    page = httpx.get(f"{ahl_server.url}/{bob_f}").text
    assert f'href="/{bob_k}?version=1.0.0"' in page and f'href="/{alice.manifest["repo"]}' not in page
    with pytest.raises(HfHubHTTPError) as excinfo:
        api(ahl_server, "bob-token").delete_repo(bob_k)
    assert status(excinfo) == 409 and f"repository {bob_f}" in error_line(excinfo)


# -- Hub API ------------------------------------------------------------------------------------------


def test_list_repo_commits(ahl_server):
    client = api(ahl_server)
    client.create_repo("alice/history")
    for number in range(3):
        client.upload_file(
            path_or_fileobj=f"{number}".encode(),
            path_in_repo="n.txt",
            repo_id="alice/history",
            commit_message=f"step {number}",
        )
    commits = client.list_repo_commits("alice/history")
    assert [c.title for c in commits] == ["step 2", "step 1", "step 0", "initial commit"]
    assert commits[0].commit_id == client.list_repo_refs("alice/history").branches[0].target_commit
    assert all(c.authors == ["alice"] for c in commits)
    client.upload_file(path_or_fileobj=b"<", path_in_repo="n.txt", repo_id="alice/history", commit_message="a < b")
    assert client.list_repo_commits("alice/history", formatted=True)[0].formatted_title == "a &lt; b"
    commits = client.list_repo_commits("alice/history")[1:]
    assert [c.title for c in client.list_repo_commits("alice/history", revision=commits[1].commit_id)][0] == "step 1"
    with pytest.raises(RevisionNotFoundError):
        client.list_repo_commits("alice/history", revision="nope")


def test_get_paths_info(ahl_server, art):
    artifact = art(task="paths", name="paths")
    repo_id = hub.push(artifact, registry=ahl_server.url).manifest["repo"]
    client = api(ahl_server)
    infos = {
        i.path: i
        for i in client.get_paths_info(repo_id, ["README.md", "adapter.safetensors", "missing"], revision="v1.0.0")
    }
    assert set(infos) == {"README.md", "adapter.safetensors"}
    weights = read_artifact(artifact).metadata["files"]["adapter.safetensors"]
    assert infos["adapter.safetensors"].lfs.sha256 == weights["sha256"]
    readme = (artifact / "README.md").read_bytes()
    assert infos["README.md"].lfs is None  # a regular file, named by its git blob id
    assert infos["README.md"].blob_id == hashlib.sha1(b"blob %d\0" % len(readme) + readme).hexdigest()


def test_delete_repo(ahl_server, art):
    client = api(ahl_server)
    client.create_repo("alice/doomed")
    client.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/doomed")
    with pytest.raises(HfHubHTTPError) as excinfo:  # only its namespace's token
        api(ahl_server, "bob-token").delete_repo("alice/doomed")
    assert status(excinfo) == 403
    client.delete_repo("alice/doomed")
    assert not client.repo_exists("alice/doomed")
    assert "alice/doomed" not in [m.id for m in client.list_models(author="alice")]
    with pytest.raises(RepositoryNotFoundError):
        client.delete_repo("alice/doomed")
    client.delete_repo("alice/doomed", missing_ok=True)
    client.create_repo("alice/doomed")  # the name is free again

    # a published entry goes with its repository: its versions are gone, and it can be published anew
    artifact = art(task="gone", name="gone")
    repo_id = hub.push(artifact, registry=ahl_server.url).manifest["repo"]
    client.delete_repo(repo_id)
    assert LocalRegistry(ahl_server.root).versions(Ref(HUB_ID, "gone", "gone"), include_yanked=True) == []
    assert entry_repos(ahl_server, "gone", "gone") == []
    assert hub.push(artifact, registry=ahl_server.url).ref.version == "1.0.0"


def test_delete_is_refused_while_another_repositorys_fusion_locks_a_version(
    ahl_server, tmp_path, tiny_base_model, spam_files
):
    from adapterhub_lite import TrainConfig
    from adapterhub_lite import api as ahl_api
    from adapterhub_lite.registry.format.refs import base_key

    from .conftest import make_artifact

    sources = [
        make_artifact(tmp_path / name, tiny_base_model, task=name, name=name, seed=i)
        for i, name in enumerate(("lockeda", "lockedb"))
    ]
    repos = [hub.push(s, registry=ahl_server.url).manifest["repo"] for s in sources]
    fusion = tmp_path / "fusion"
    config = TrainConfig(mode="fusion", epochs=1, batch_size=32, learning_rate=1e-3, device="cpu")
    ahl_api.fuse(sources, spam_files[0], task="lockfuse", config=config, out=fusion)
    LocalRegistry(ahl_server.root).push(fusion, version="1.0.0")  # published by someone else (ahl/)
    with pytest.raises(HfHubHTTPError) as excinfo:
        api(ahl_server).delete_repo(repos[0])
    assert status(excinfo) == 409
    key = base_key(str(tiny_base_model.model_id))
    assert f"locked by the fusion {key}/lockfuse/" in error_line(excinfo) and "yank" in error_line(excinfo)
    assert api(ahl_server).repo_exists(repos[0])


def test_private_repositories(ahl_server, tmp_path):
    alice, bob, anonymous = api(ahl_server), api(ahl_server, "bob-token"), api(ahl_server, False)
    alice.create_repo("alice/secret", private=True)
    alice.upload_file(path_or_fileobj=b"hidden", path_in_repo="s.txt", repo_id="alice/secret")
    assert alice.model_info("alice/secret").private is True
    for other in (bob, anonymous):
        with pytest.raises(RepositoryNotFoundError):
            other.model_info("alice/secret")
        with pytest.raises(RepositoryNotFoundError):
            other.list_repo_files("alice/secret")
        assert "alice/secret" not in [m.id for m in other.list_models(author="alice")]
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("alice/secret", "s.txt", endpoint=ahl_server.url, cache_dir=tmp_path / "c", token=False)
    assert httpx.get(f"{ahl_server.url}/alice/secret").status_code == 404  # nor its catalog page
    assert [m.id for m in alice.list_models(author="alice", search="secret")] == ["alice/secret"]
    assert hf_hub_download(
        "alice/secret", "s.txt", endpoint=ahl_server.url, cache_dir=tmp_path / "c", token=ahl_server.token
    )
    alice.update_repo_settings("alice/secret", private=False)
    assert anonymous.model_info("alice/secret").private is False
    assert "alice/secret" in [m.id for m in anonymous.list_models(author="alice")]
    with pytest.raises(HfHubHTTPError) as excinfo:
        bob.update_repo_settings("alice/secret", private=True)
    assert status(excinfo) == 403


def test_a_private_entry_is_hidden_from_search_and_the_catalog(ahl_server, art, monkeypatch):
    artifact = art(task="hushed", name="hushed")
    repo_id = hub.push(artifact, registry=ahl_server.url).manifest["repo"]
    api(ahl_server).update_repo_settings(repo_id, private=True)
    assert [e.ref.name for e in hub.search(registry=ahl_server.url, task="hushed")] == ["hushed"]  # alice's token
    assert repo_id not in httpx.get(f"{ahl_server.url}/", params={"task": "hushed"}).text
    assert httpx.get(f"{ahl_server.url}/{repo_id}").status_code == 404
    monkeypatch.setenv("AHL_TOKEN", "bob-token")
    assert hub.search(registry=ahl_server.url, task="hushed") == []
    with pytest.raises(AhlError, match="is not on"):
        hub.resolve(f"{HUB_ID}/hushed/hushed", registry=ahl_server.url)


def test_cli_private_repository_create_and_delete(ahl_server, tmp_path):
    created = hf(ahl_server, tmp_path, "repos", "create", "alice/cli-private", "--private")
    assert created.returncode == 0, created.stderr
    assert api(ahl_server).model_info("alice/cli-private").private is True
    assert not api(ahl_server, False).repo_exists("alice/cli-private")
    deleted = hf(ahl_server, tmp_path, "repos", "delete", "alice/cli-private", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert not api(ahl_server).repo_exists("alice/cli-private")


def test_branches(ahl_server, tmp_path, art):
    """Work in progress on a branch (the stock CLI's ``--revision dev``); main does not move,
    refs list the branch, a version can be tagged from it and stays an immutable tag."""
    client = api(ahl_server)
    artifact = art(task="branchy", name="branchy")
    repo_id = f"alice/{repo_slug(HUB_ID, 'branchy', 'branchy')}"
    client.create_repo(repo_id)
    main = client.list_repo_refs(repo_id).branches[0].target_commit
    upload = hf(ahl_server, tmp_path, "upload", repo_id, str(artifact), ".", "--revision", "dev")
    assert upload.returncode == 0, upload.stderr
    refs = client.list_repo_refs(repo_id)
    branches = {b.name: b.target_commit for b in refs.branches}
    assert set(branches) == {"main", "dev"} and branches["main"] == main != branches["dev"]
    assert "adapter.json" in client.list_repo_files(repo_id, revision="dev")
    assert client.list_repo_files(repo_id) == []
    assert entry_repos(ahl_server, "branchy", "branchy") == []  # nothing binds before a tag
    client.create_tag(repo_id, tag="v1.0.0", revision="dev")
    entry = hub.resolve(f"{HUB_ID}/branchy/branchy", registry=ahl_server.url)
    assert entry.ref.version == "1.0.0" and entry.manifest["commit"] == branches["dev"]
    client.create_branch(repo_id, branch="other", revision="v1.0.0")
    with pytest.raises(HfHubHTTPError) as excinfo:
        client.create_branch(repo_id, branch="other")
    assert status(excinfo) == 409
    client.create_branch(repo_id, branch="other", exist_ok=True)
    for bad in ("main", "v2.0.0"):
        with pytest.raises(BadRequestError):
            client.create_branch(repo_id, branch=bad)
    client.delete_branch(repo_id, branch="other")
    assert {b.name for b in client.list_repo_refs(repo_id).branches} == {"main", "dev"}
    with pytest.raises(RevisionNotFoundError):  # a commit to a branch that does not exist
        client.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id, revision="nowhere")


def test_list_models_filters_and_card_data(ahl_server, art):
    artifact = art(task="listed", name="listed")
    repo_id = hub.push(artifact, registry=ahl_server.url).manifest["repo"]
    client = api(ahl_server)
    client.create_repo("alice/plain-listed")
    card = b"---\nlibrary_name: transformers\npipeline_tag: fill-mask\n---\n# plain\n"
    client.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id="alice/plain-listed")
    ids = {m.id for m in client.list_models(search="listed", pipeline_tag="text-classification")}
    assert ids == {repo_id}
    assert {m.id for m in client.list_models(search="listed", pipeline_tag="fill-mask")} == {"alice/plain-listed"}
    assert {m.id for m in client.list_models(search="listed", filter="transformers")} == {"alice/plain-listed"}
    response = httpx.get(f"{ahl_server.url}/api/models", params={"search": "listed", "library": "adapterhub-lite"})
    assert [m["id"] for m in response.json()] == [repo_id]
    plain = [m for m in client.list_models(search="listed") if m.id == repo_id][0]
    assert plain.card_data is None and plain.siblings is None
    with_card = {m.id: m for m in client.list_models(search="listed", cardData=True)}
    assert with_card[repo_id].card_data.base_model == HUB_ID
    assert with_card["alice/plain-listed"].card_data.library_name == "transformers"
    full = {m.id: m for m in client.list_models(search="listed", full=True)}
    assert "adapter.safetensors" in {s.rfilename for s in full[repo_id].siblings}
    expanded = [m for m in client.list_models(search="listed", expand=["cardData", "pipeline_tag"])]
    by_id = {m.id: m for m in expanded}
    assert by_id[repo_id].pipeline_tag == "text-classification" and by_id[repo_id].card_data is not None
    assert by_id[repo_id].tags is None  # only what was asked for


def test_derived_tags_and_library_name(ahl_server, art):
    artifact = art(task="derived", name="derived")
    repo_id = hub.push(artifact, registry=ahl_server.url).manifest["repo"]
    client = api(ahl_server)
    info = client.model_info(repo_id)
    assert f"base_model:adapter:{HUB_ID}" in info.tags and f"base_model:{HUB_ID}" in info.tags
    assert "adapterhub-lite" in info.tags and info.library_name == "adapterhub-lite"
    adapters_of_base = [m.id for m in client.list_models(filter=f"base_model:adapter:{HUB_ID}", search="derived")]
    assert adapters_of_base == [repo_id]
    client.create_repo("alice/not-an-artifact")
    assert client.model_info("alice/not-an-artifact").library_name is None
    card = b"---\nlibrary_name: peft\nbase_model: org/base\nbase_model_relation: adapter\n---\n"
    client.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id="alice/not-an-artifact")
    info = client.model_info("alice/not-an-artifact")
    assert info.library_name == "peft"
    assert {"peft", "base_model:org/base", "base_model:adapter:org/base"} <= set(info.tags)
    assert "adapterhub-lite" not in info.tags


def test_only_real_lfs_files_are_lfs(ahl_server, art, tmp_path):
    artifact = art(task="lfsness", name="lfsness")
    repo_id = hub.push(artifact, registry=ahl_server.url).manifest["repo"]
    client = api(ahl_server)
    siblings = {s.rfilename: s for s in client.model_info(repo_id, files_metadata=True).siblings}
    assert siblings["adapter.safetensors"].lfs is not None
    assert siblings["README.md"].lfs is None and siblings["adapter.json"].lfs is None
    tree = {f.path: f for f in client.list_repo_tree(repo_id)}
    assert tree["adapter.json"].lfs is None and tree["adapter.safetensors"].lfs is not None
    readme = (artifact / "README.md").read_bytes()
    meta = get_hf_file_metadata(hf_hub_url(repo_id, "README.md", endpoint=ahl_server.url))
    assert meta.etag == hashlib.sha1(b"blob %d\0" % len(readme) + readme).hexdigest()
    weights = get_hf_file_metadata(hf_hub_url(repo_id, "adapter.safetensors", endpoint=ahl_server.url))
    assert weights.etag == hashlib.sha256((artifact / "adapter.safetensors").read_bytes()).hexdigest()
    local = hf_hub_download(repo_id, "README.md", endpoint=ahl_server.url, cache_dir=tmp_path / "c")
    assert Path(local).read_bytes() == readme


def test_repository_existence_helpers(ahl_server, art):
    artifact = art(task="exists", name="exists")
    repo_id = hub.push(artifact, registry=ahl_server.url).manifest["repo"]
    client = api(ahl_server)
    assert client.repo_exists(repo_id) and not client.repo_exists("alice/never-made")
    assert client.revision_exists(repo_id, "v1.0.0") and not client.revision_exists(repo_id, "v9.0.0")
    assert client.file_exists(repo_id, "adapter.json") and not client.file_exists(repo_id, "nope.bin")
    assert set(client.list_repo_files(repo_id)) == {p.name for p in artifact.iterdir()}


def test_auth_check(ahl_server):
    alice, bob = api(ahl_server), api(ahl_server, "bob-token")
    alice.create_repo("alice/checked", private=True)
    alice.auth_check("alice/checked")
    alice.auth_check("alice/checked", write=True)
    with pytest.raises(RepositoryNotFoundError):
        bob.auth_check("alice/checked")
    alice.update_repo_settings("alice/checked", private=False)
    bob.auth_check("alice/checked")
    with pytest.raises(HfHubHTTPError) as excinfo:
        bob.auth_check("alice/checked", write=True)
    assert status(excinfo) == 403


def test_repo_info_and_safetensors_metadata(ahl_server, art):
    artifact = art(task="stinfo", name="stinfo")
    repo_id = hub.push(artifact, registry=ahl_server.url).manifest["repo"]
    client = api(ahl_server)
    info = client.repo_info(repo_id, revision="v1.0.0", files_metadata=True)
    assert info.sha == client.list_repo_refs(repo_id).tags[0].target_commit
    # the header of a weights file, read with ranged requests (its name is not model.safetensors)
    metadata = client.parse_safetensors_file_metadata(repo_id, "adapter.safetensors", revision="v1.0.0")
    from safetensors import safe_open

    with safe_open(str(artifact / "adapter.safetensors"), "pt") as weights:
        assert set(metadata.tensors) == set(weights.keys())


def test_verify_repo_checksums(ahl_server, art, tmp_path):
    """The client checks a download against the tree: git blob ids for regular files, sha256 for LFS."""
    artifact = art(task="checksums", name="checksums")
    repo_id = hub.push(artifact, registry=ahl_server.url).manifest["repo"]
    client = api(ahl_server)
    local = tmp_path / "local"
    client.snapshot_download(repo_id, revision="v1.0.0", local_dir=local)
    result = client.verify_repo_checksums(repo_id, revision="v1.0.0", local_dir=local)
    assert not result.mismatches and not result.missing_paths and result.checked_count == len(list(artifact.iterdir()))


def test_hf_file_system(ahl_server, art):
    from huggingface_hub import HfFileSystem

    artifact = art(task="fsys", name="fsys")
    repo_id = hub.push(artifact, registry=ahl_server.url).manifest["repo"]
    fs = HfFileSystem(endpoint=ahl_server.url, token=ahl_server.token)
    assert {Path(p).name for p in fs.ls(repo_id, detail=False)} == {p.name for p in artifact.iterdir()}
    assert fs.cat_file(f"{repo_id}/adapter.json") == (artifact / "adapter.json").read_bytes()


def test_copy_files_in_a_commit(ahl_server):
    from huggingface_hub import CommitOperationCopy

    client = api(ahl_server)
    client.create_repo("alice/copies")
    client.upload_file(path_or_fileobj=b"small text", path_in_repo="a.txt", repo_id="alice/copies")
    client.create_commit("alice/copies", operations=[CommitOperationCopy("a.txt", "b.txt")], commit_message="copy")
    assert client.list_repo_files("alice/copies") == ["a.txt", "b.txt"]
    local = hf_hub_download(
        "alice/copies", "b.txt", endpoint=ahl_server.url, token=False, cache_dir=Path(os.environ["AHL_CACHE"]) / "hf"
    )
    assert Path(local).read_bytes() == b"small text"


def test_delete_file_and_folder(ahl_server):
    client = api(ahl_server)
    client.create_repo("alice/pruned")
    client.create_commit(
        "alice/pruned",
        operations=[CommitOperationAdd(path_in_repo=p, path_or_fileobj=b"x") for p in ("a.txt", "d/b.txt", "d/c.txt")],
        commit_message="three",
    )
    client.delete_file("a.txt", "alice/pruned")
    client.delete_files("alice/pruned", delete_patterns=["d/c.txt"])
    client.delete_folder("d", "alice/pruned")
    assert client.list_repo_files("alice/pruned") == []
    assert len(client.list_repo_commits("alice/pruned")) == 5  # initial, three, and one per deletion


def test_refusals_carry_the_hubs_error_headers(ahl_server):
    """Each new endpoint refuses bad input with a 4xx, X-Error-Message and a JSON error."""
    auth = {"authorization": f"Bearer {ahl_server.token}"}
    api(ahl_server).create_repo("alice/refusals")
    base = f"{ahl_server.url}/api/models/alice/refusals"
    cases = [
        httpx.post(f"{base}/paths-info/main", headers=auth, data={"expand": "false"}),
        httpx.put(f"{base}/settings", headers=auth, json={"visibility": "secret"}),
        httpx.put(f"{base}/settings", headers=auth, json={"gated": "auto"}),
        httpx.post(f"{base}/branch/..", headers=auth, json={}),
        httpx.request("DELETE", f"{ahl_server.url}/api/repos/delete", headers=auth, json={"name": 3}),
        httpx.request("DELETE", f"{ahl_server.url}/api/repos/delete", json={"name": "refusals"}),
        httpx.get(f"{base}/commits/main", params={"cursor": "x"}),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["x-error-message"] and json.loads(response.text)["error"]
    with pytest.raises(HfHubHTTPError) as excinfo:  # a method the table marks "no": the same shape
        api(ahl_server).move_repo("alice/refusals", "alice/moved")
    assert status(excinfo) in (404, 405) and error_line(excinfo)


def test_hf_cli_lists_and_downloads(ahl_server, art, tmp_path):
    artifact = art(task="clidl", name="clidl")
    repo_id = hub.push(artifact, registry=ahl_server.url).manifest["repo"]
    listed = hf(ahl_server, tmp_path, "models", "ls", "--search", "clidl", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [m["id"] for m in json.loads(listed.stdout)] == [repo_id]
    out = tmp_path / "dl"
    download = hf(ahl_server, tmp_path, "download", repo_id, "--revision", "v1.0.0", "--local-dir", str(out))
    assert download.returncode == 0, download.stderr
    assert read_artifact(out).digest == read_artifact(artifact).digest
    shutil.rmtree(out)
