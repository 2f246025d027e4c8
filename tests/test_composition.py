"""Ranking and automatic composition: task embeddings, search --like (local and through a real
``ahl serve``), the transfer probe, warm starts and ``fuse --auto``, on real data."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import pytest

from adapterhub_lite import api, hub, ranking
from adapterhub_lite.artifact import read_artifact
from adapterhub_lite.compose import Candidate, choose
from adapterhub_lite.config import AdapterConfig, TrainConfig
from adapterhub_lite.errors import ArtifactError, ConfigError, RemoteError
from adapterhub_lite.registry.client.local import LocalRegistry
from adapterhub_lite.task_embedding import TaskEmbedding, sample_indices

from .conftest import AhlServer, bundled_rows, serve_in_thread, write_csv
from .test_cli import ahl, ahl_in_process, assert_one_line_error

# The target is TREC question types; the sources are TREC itself (other rows: the target's own
# distribution), SMS spam and movie-review sentiment (unrelated).
SOURCES = {"trec": 0, "sms_spam": 0, "rotten_tomatoes": 0}


def balanced(task: str, split: str, per_label: int, skip: int = 0) -> list[dict]:
    rows, seen = [], {}
    for row in bundled_rows(task, split, 3000):
        n = seen.get(row["label"], 0)
        seen[row["label"]] = n + 1
        if skip <= n < skip + per_label:
            rows.append(row)
    return rows


@pytest.fixture(scope="module")
def pool(tmp_path_factory, minilm):
    """Three adapters on the real MiniLM, trained briefly, pushed into a local registry (minutes on
    2 cores: the tests that use it are marked slow)."""
    root = tmp_path_factory.mktemp("pool")
    registry = LocalRegistry(root / "registry")
    config = TrainConfig(learning_rate=3e-3, epochs=3, patience=3, batch_size=16, max_length=32, seed=0)
    for task in SOURCES:
        train = write_csv(root / f"{task}-train.csv", balanced(task, "train", 30 if task == "trec" else 40))
        dev = write_csv(root / f"{task}-dev.csv", balanced(task, "dev", 5))
        api.train(train, dev_data=dev, task=task, base=minilm, config=config, out=root / task)
        registry.push(root / task)
    target = write_csv(root / "target.csv", balanced("trec", "train", 20, skip=100))
    return root, registry, target


# -- task embeddings ----------------------------------------------------------------------------


def test_task_embedding_round_trips_and_refuses_malformed_records():
    vector = np.linspace(-1, 1, 48, dtype=np.float32).astype(np.float16).astype(np.float32)
    record = TaskEmbedding(vector, 12, 64).to_dict()
    assert len(json.dumps(record)) < 4096 and record["dtype"] == "float16" and record["dim"] == 48
    back = TaskEmbedding.from_dict(record)
    assert np.array_equal(back.vector, vector) and back.examples == 12 and back.similarity(back) == pytest.approx(1)
    nan = base64.b64encode(np.full(48, np.nan, dtype="<f2").tobytes()).decode()
    for bad in (
        {**record, "method": "other"},
        {**record, "dim": 49},
        {**record, "vector": record["vector"][:-4]},
        {**record, "vector": nan},
        {**record, "examples": 0},
        {**record, "dim": 10**9},
        "x",
    ):
        with pytest.raises(ArtifactError):
            TaskEmbedding.from_dict(bad)


def test_sample_indices_spread_over_the_whole_file():
    assert sample_indices(5, 10) == [0, 1, 2, 3, 4]
    assert sample_indices(100, 4) == [0, 25, 50, 75]


def test_train_records_the_embedding_without_text_and_can_opt_out(tmp_path, tiny_base_model, spam_files):
    config = TrainConfig(epochs=1, batch_size=32, max_length=32)
    result = api.train(
        spam_files[0],
        dev_data=spam_files[1],
        task="sms_spam",
        base=tiny_base_model,
        config=config,
        out=tmp_path / "with",
    )
    meta = read_artifact(result.artifact.path).metadata
    embedding = TaskEmbedding.from_dict(meta["task_embedding"])
    assert embedding.vector.size == 32 and embedding.examples == 160 and embedding.max_length == 32
    text = (result.artifact.path / "adapter.json").read_text()
    assert all(row["text"][:30] not in text for row in bundled_rows("sms_spam", "train", 50))
    pushed = LocalRegistry(tmp_path / "reg").push(result.artifact.path)
    assert pushed.summary["task_embedding"] == meta["task_embedding"]
    without = api.train(
        spam_files[0],
        dev_data=spam_files[1],
        task="sms_spam",
        base=tiny_base_model,
        config=config,
        out=tmp_path / "without",
        task_embedding=False,
    )
    assert "task_embedding" not in read_artifact(without.artifact.path).metadata


# -- search --like ------------------------------------------------------------------------------


@pytest.mark.slow
def test_search_like_ranks_the_targets_own_distribution_first_deterministically(pool, minilm):
    root, registry, target = pool
    first = hub.search(registry=registry, like=target, base=minilm)
    again = hub.search(registry=registry, like=target, base=minilm)
    assert [e.ref.task for e in first][0] == "trec"
    assert [(str(e.ref), e.score) for e in first] == [(str(e.ref), e.score) for e in again]
    assert all(-1 <= e.score <= 1 for e in first) and len(first) == len(SOURCES)
    assert [e.ref.task for e in hub.search(registry=registry, like=target, base=minilm, top=1)] == ["trec"]


@pytest.mark.slow
def test_search_like_through_ahl_serve_equals_local(pool, minilm, tmp_path):
    root, registry, target = pool
    embedding = hub.task_embedding_of(target, base=minilm)
    local = hub.search(registry=registry, like=embedding)
    server = AhlServer(registry.root).start()
    try:
        served = hub.search(registry=server.url, like=embedding)
        listing = hub.search(registry=server.url)
        import httpx2 as httpx

        bad = httpx.post(f"{server.url}/api/ahl/search-like", json={"task_embedding": {"method": "x"}})
        too_many = httpx.post(
            f"{server.url}/api/ahl/search-like", json={"task_embedding": embedding.to_dict(), "top": 10**6}
        )
    finally:
        server.stop()
    assert [(str(e.ref), e.digest, round(e.score, 6)) for e in served] == [
        (str(e.ref), e.digest, round(e.score, 6)) for e in local
    ]
    assert all(e.summary.get("task_embedding") for e in listing)  # the listing carries them too
    assert bad.status_code == 400 and too_many.status_code == 400


@pytest.mark.slow
def test_search_like_refuses_other_filters(pool, minilm):
    root, registry, target = pool
    with pytest.raises(ConfigError, match="only with --base and --top"):
        hub.search(registry=registry, like=target, base=minilm, task="trec")


@pytest.mark.slow
def test_remote_search_like_refuses_a_malformed_answer(pool, minilm, tmp_path):
    """A hostile server's rows fail as one RemoteError: a real HTTP server on 127.0.0.1."""
    import http.server

    class Hostile(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.dumps([{"id": "x/y", "score": "high", "ahlEntry": {}}]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    serve_in_thread(server)
    try:
        embedding = TaskEmbedding(np.ones(384, dtype=np.float32), 1, 32)
        with pytest.raises(RemoteError, match="malformed"):
            hub.search(registry=f"http://127.0.0.1:{server.server_address[1]}", like=embedding)
    finally:
        server.shutdown()


# -- the transfer probe -------------------------------------------------------------------------


@pytest.mark.slow
def test_probe_ranks_the_targets_own_distribution_first_deterministically(pool, minilm):
    root, registry, target = pool
    adapters = [str(root / task) for task in SOURCES]
    first = ranking.rank(target, adapters=adapters, base=minilm, max_length=32)
    again = ranking.rank(target, adapters=list(reversed(adapters)), base=minilm, max_length=32)
    assert first.candidates[0].task == "trec", first.to_dict()
    assert [(c.task, c.gain) for c in first.candidates] == [(c.task, c.gain) for c in again.candidates]
    assert first.base_probe is not None and first.examples > 60 and first.seconds > 0
    from_registry = ranking.rank(target, registry=registry, base=minilm, top=2, max_length=32)
    assert [c.task for c in from_registry.candidates] == [c.task for c in first.candidates][:2]


def test_probe_folds_are_stratified():
    ids = ranking.fold_ids([0, 0, 0, 1, 1, 1], 3)
    assert sorted(ids[:3]) == [0, 1, 2] and sorted(ids[3:]) == [0, 1, 2]
    score = ranking.probe_score(np.array([[0.0], [0.1], [0.2], [1.0], [1.1], [1.2]]), [0, 0, 0, 1, 1, 1], 2, 3)
    assert score["accuracy"] == 1.0 and math.isfinite(score["mse"])


@pytest.mark.slow
def test_cli_rank_prints_json_and_refuses_one_label(pool, tmp_path):
    root, registry, target = pool
    proc = ahl("rank", "--train", target, "--adapters", f"{root / 'trec'},{root / 'sms_spam'}", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert [c["task"] for c in result["candidates"]][0] == "trec" and result["seconds"] > 0
    one = write_csv(tmp_path / "one.csv", [{"text": f"q {i}", "label": "HUM"} for i in range(10)])
    assert_one_line_error(ahl_in_process("rank", "--train", one, "--adapters", root / "trec"), "two labels")


# -- warm start and fuse --auto (tiny base: fast) ------------------------------------------------


@pytest.fixture(scope="module")
def tiny_pool(tmp_path_factory, tiny_base_model):
    root = tmp_path_factory.mktemp("tiny-pool")
    config = TrainConfig(learning_rate=1e-3, epochs=1, batch_size=16, max_length=32)
    for task in ("trec", "rotten_tomatoes"):
        train = write_csv(root / f"{task}.csv", balanced(task, "train", 15))
        api.train(train, task=task, base=tiny_base_model, config=config, out=root / task)
        hub.push(root / task, registry=root / "registry")
    return root


def test_warm_start_copies_the_source_and_refuses_another_architecture(
    tiny_pool, tiny_base_model, tiny_base_dir, spam_files, tmp_path
):
    config = TrainConfig(learning_rate=1e-3, epochs=1, batch_size=32, max_length=32)
    result = api.train(
        spam_files[0],
        dev_data=spam_files[1],
        task="sms_spam",
        base=tiny_base_model,
        config=config,
        out=tmp_path / "warm",
        init_from=tiny_pool / "trec",
    )
    meta = read_artifact(result.artifact.path).metadata
    assert meta["init_from"]["task"] == "trec" and meta["init_from"]["digest"].startswith("sha256:")
    with pytest.raises(ConfigError, match="reduction_factor"):
        api.train(
            spam_files[0],
            dev_data=spam_files[1],
            task="sms_spam",
            base=tiny_base_model,
            config=config,
            adapter=AdapterConfig.from_preset("pfeiffer", reduction_factor=8),
            out=tmp_path / "bad",
            init_from=tiny_pool / "trec",
        )
    assert not (tmp_path / "bad").exists()
    proc = ahl(
        "train",
        "--base",
        tiny_base_dir,
        "--train",
        spam_files[0],
        "--task",
        "s",
        "--out",
        tmp_path / "cli",
        "--init-from",
        tiny_pool / "trec",
        "--reduction-factor",
        "8",
    )
    assert_one_line_error(proc, "reduction_factor")
    assert not (tmp_path / "cli").exists()


def test_choose_prefers_the_simplest_on_ties_and_never_drops_below_the_adapter():
    own = Candidate("adapter", {"accuracy": 0.8, "macro_f1": 0.7}, ["t"])
    fusion = Candidate("fusion", {"accuracy": 0.9, "macro_f1": 0.7}, ["a", "t"])
    warm = Candidate("warm_start", {"accuracy": 0.7, "macro_f1": 0.75}, ["a"])
    assert choose([own, fusion]) is own  # macro-F1 ties: the simpler one ships
    assert choose([own, fusion, warm]) is warm
    assert choose([fusion, own]) is own


def test_fuse_auto_never_ships_below_the_targets_adapter_on_dev(tiny_pool, tiny_base_model, spam_files, tmp_path):
    result = api.fuse(
        train_data=spam_files[0],
        dev_data=spam_files[1],
        task="sms_spam",
        auto=2,
        registry=tiny_pool / "registry",
        base=tiny_base_model,
        config=TrainConfig(learning_rate=1e-3, epochs=1, batch_size=32, max_length=32),
        out=tmp_path / "auto",
    )
    meta = read_artifact(tmp_path / "auto").metadata
    record = meta["composition"]
    by_method = {c["method"]: c for c in record["candidates"]}
    assert set(by_method) == {"adapter", "warm_start", "fusion"}
    metric = record["selection_metric"]
    assert by_method[record["chosen"]]["dev"][metric] >= by_method["adapter"]["dev"][metric]
    assert result.chosen.method == record["chosen"] and meta["metrics"]["dev"] == by_method[record["chosen"]]["dev"]
    assert {c["task"] for c in record["ranking"]["candidates"]} == {"trec", "rotten_tomatoes"}
    assert by_method["fusion"]["adapters"][-1] == "sms_spam"  # the target's own adapter is always fused
    assert meta["kind"] == ("fusion" if record["chosen"] == "fusion" else "adapter")
    from jsonschema import Draft202012Validator

    schema = json.loads((Path(__file__).parents[1] / "registry" / "schema" / f"{meta['kind']}.schema.json").read_text())
    Draft202012Validator(schema).validate(meta)  # composition and task_embedding as SPEC 2.8-2.9 say


def test_cli_fuse_auto_and_bad_input(tiny_pool, tiny_base_dir, spam_files, tmp_path):
    proc = ahl(
        "fuse",
        "--auto",
        "2",
        "--registry",
        tiny_pool / "registry",
        "--base",
        tiny_base_dir,
        "--task",
        "sms_spam",
        "--train",
        spam_files[0],
        "--dev",
        spam_files[1],
        "--epochs",
        "1",
        "--max-length",
        "32",
        "--out",
        tmp_path / "auto",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["chosen"] in ("adapter", "warm_start", "fusion") and len(answer["ranking"]["candidates"]) == 2
    assert_one_line_error(ahl_in_process("fuse", "--task", "t", "--train", spam_files[0]), "--adapters", "--auto")
    assert_one_line_error(
        ahl_in_process(
            "fuse",
            "--auto",
            "0",
            "--task",
            "t",
            "--train",
            spam_files[0],
            "--registry",
            tiny_pool / "registry",
            "--base",
            tiny_base_dir,
        ),
        "K >= 1",
    )


def test_cli_search_like_ranks_and_refuses_bad_input(tiny_pool, tiny_base_dir, tmp_path):
    target = write_csv(tmp_path / "questions.csv", balanced("trec", "dev", 4))
    proc = ahl("search", "--like", target, "--registry", tiny_pool / "registry", "--base", tiny_base_dir, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["task"] for r in rows][0] == "trec" and all(-1 <= r["similarity"] <= 1 for r in rows)
    assert_one_line_error(
        ahl_in_process(
            "search", "--like", tmp_path / "missing.csv", "--registry", tiny_pool / "registry", "--base", tiny_base_dir
        ),
        "missing.csv",
    )
    assert_one_line_error(
        ahl_in_process(
            "search", "--like", target, "--top", "0", "--registry", tiny_pool / "registry", "--base", tiny_base_dir
        ),
        "--top",
    )


def test_search_like_sees_pushes_and_yanks_in_a_long_lived_registry(tiny_pool, tiny_base_model, tmp_path):
    import shutil

    shutil.copytree(tiny_pool / "registry", tmp_path / "registry")
    registry = LocalRegistry(tmp_path / "registry")
    query = TaskEmbedding.from_dict(read_artifact(tiny_pool / "trec").metadata["task_embedding"])
    first = registry.search_like(query, top=5)
    assert first[0][0].ref.task == "trec" and first[0][1] == pytest.approx(1.0, abs=1e-3)
    registry.yank(first[0][0].ref)  # the in-memory vectors must not outlive the change
    assert [e.ref.task for e, _ in registry.search_like(query, top=5)] == ["rotten_tomatoes"]
    other = tmp_path / "spam"
    api.train(
        write_csv(tmp_path / "s.csv", balanced("sms_spam", "train", 10)),
        task="sms_spam",
        base=tiny_base_model,
        config=TrainConfig(epochs=1, max_length=32),
        out=other,
    )
    LocalRegistry(tmp_path / "registry").push(other)  # another registry object: another process
    assert {e.ref.task for e, _ in registry.search_like(query, top=5)} == {"rotten_tomatoes", "sms_spam"}
