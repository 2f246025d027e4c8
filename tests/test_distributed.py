"""``torchrun --nproc_per_node 2`` on CPU (gloo) trains to the metrics of one process.

Runs on the real embedded MiniLM: a tiny random encoder learns too little for its dev accuracy to
be anything but a coin flip between the two classes, which no tolerance can compare.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _run(prefix: list[str], out, spam_files) -> list[dict]:
    args = [
        "train",
        "--train",
        str(spam_files[0]),
        "--dev",
        str(spam_files[1]),
        "--task",
        "spam",
        "--out",
        str(out),
        "--epochs",
        "2",
        "--patience",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
        "--max-length",
        "32",  # the median message fits: enough to compare the runs, at a fraction of the cost
        "--device",
        "cpu",
        "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*prefix, *args], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, minilm_dir, spam_files):
    single = _run([sys.executable, "-m", "adapterhub_lite"], tmp_path / "one", spam_files)
    multi = _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "adapterhub_lite",
        ],
        tmp_path / "two",
        spam_files,
    )
    meta = json.loads((tmp_path / "two" / "adapter.json").read_text())
    assert meta["training"]["world_size"] == 2
    assert len(single) == len(multi) == 2
    for one, two in zip(single, multi, strict=False):
        # same global batch and schedule: only the head's dropout masks differ between the runs
        assert two["step"] == one["step"]
        assert abs(two["train_loss"] - one["train_loss"]) <= 0.1
        assert abs(two["dev_accuracy"] - one["dev_accuracy"]) <= 0.05
