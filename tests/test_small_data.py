"""Small data trains by default: the automatic schedule, macro-F1 model selection, class weights."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from adapterhub_lite import api
from adapterhub_lite.config import TrainConfig
from adapterhub_lite.errors import ConfigError
from adapterhub_lite.training.metrics import macro_f1
from adapterhub_lite.training.schedule import auto_learning_rate, resolve

from .conftest import bundled_rows, write_csv
from .test_cli import ahl, ahl_in_process, assert_one_line_error


def labels(counts: dict[int, int]) -> list[int]:
    return [c for c, n in counts.items() for _ in range(n)]


# -- the schedule, as a function of the data (no model) --------------------------------------------


def test_small_data_gets_more_epochs_a_larger_rate_and_macro_f1():
    schedule = resolve(TrainConfig(), "classification", labels({0: 44, 1: 6}))
    config = schedule.config
    assert schedule.steps_per_epoch == 2
    assert config.epochs == 100 and schedule.planned_steps == 200  # at least min_steps
    assert config.learning_rate == 3e-3
    assert config.patience == 25  # about 50 optimizer steps
    assert config.metric == "macro_f1" and "imbalanced" in schedule.reasons["metric"]
    assert schedule.class_weights is None


def test_large_data_keeps_the_papers_schedule():
    config = resolve(TrainConfig(), "classification", labels({0: 50_000, 1: 50_000})).config
    assert (config.epochs, config.learning_rate, config.patience, config.metric) == (10, 1e-4, 2, "accuracy")
    fusion = resolve(TrainConfig(mode="fusion"), "classification", labels({0: 50_000, 1: 50_000})).config
    assert fusion.learning_rate == 5e-5  # the paper's fusion rate


def test_learning_rate_falls_log_linearly_between_few_and_many_steps():
    rates = [auto_learning_rate("adapter", steps) for steps in (500, 1_000, 3_162, 10_000, 40_000)]
    assert rates[:2] == [3e-3, 3e-3] and rates[3:] == [1e-4, 1e-4]
    assert math.isclose(rates[2], 5.5e-4)  # halfway in log steps: sqrt(3e-3 x 1e-4), two digits


def test_given_values_are_kept_and_said_to_be_given():
    config = TrainConfig(learning_rate=3e-3, epochs=4, patience=1, metric="accuracy", class_weight="balanced")
    schedule = resolve(config, "classification", labels({0: 90, 1: 10}))
    assert (schedule.config.learning_rate, schedule.config.epochs, schedule.config.patience) == (3e-3, 4, 1)
    assert schedule.config.metric == "accuracy"
    assert set(schedule.reasons.values()) == {"given"}
    assert schedule.class_weights == pytest.approx([100 / (2 * 90), 100 / (2 * 10)])  # n / (classes x count)
    assert schedule.summary().startswith("schedule: lr 0.003 (given), 4 epochs x 4 steps (given)")
    one = resolve(TrainConfig(epochs=1, batch_size=100), "classification", labels({0: 90, 1: 10}))
    assert "1 epoch x 1 step (given)" in one.summary()


def test_regression_selects_on_pearson_and_refuses_class_metrics():
    assert resolve(TrainConfig(), "regression", [0.1, 0.5, 0.9]).config.metric == "pearson"
    with pytest.raises(ConfigError, match="does not apply to a regression head"):
        resolve(TrainConfig(metric="macro_f1"), "regression", [0.1, 0.5])
    with pytest.raises(ConfigError, match="class weighting applies to classification heads"):
        resolve(TrainConfig(class_weight="balanced"), "regression", [0.1, 0.5])


# -- the real model ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imbalanced_spam(tmp_path_factory):
    """64 training and 64 dev messages from the bundled SMS data, about 1 in 8 spam (as the data)."""
    root = tmp_path_factory.mktemp("small-spam")
    rows = bundled_rows("sms_spam", "train", 2000)
    spam, ham = [r for r in rows if r["label"] == "spam"], [r for r in rows if r["label"] == "ham"]
    train, dev = spam[:8] + ham[:56], spam[8:16] + ham[56:112]
    return write_csv(root / "train.csv", train), write_csv(root / "dev.csv", dev)


@pytest.mark.slow
def test_defaults_train_an_imbalanced_small_task_past_the_majority_class(imbalanced_spam, minilm, tmp_path):
    train, dev = imbalanced_spam
    result = api.train(
        train,
        dev_data=dev,
        task="spam",
        base=minilm,
        out=tmp_path / "spam",
        # The schedule's patience (25 epochs, tested above) only adds epochs after the best one:
        # a smaller one can only lower the kept dev score, so passing here implies passing with it.
        config=TrainConfig(max_length=32, device="cpu", patience=5),
    )
    # A model that always answers "ham" scores macro-F1 0.47 on this dev set (56 ham, 8 spam).
    gold = np.array([1] * 8 + [0] * 56)
    always_ham = macro_f1(np.zeros(64, dtype=int), gold, 2)
    assert always_ham == pytest.approx(0.467, abs=1e-3)
    assert result.fit.main_metric == "macro_f1"
    assert result.metrics["macro_f1"] > always_ham + 0.3, result.fit.history
    # The artifact records the schedule it ran and why.
    training = json.loads((tmp_path / "spam" / "adapter.json").read_text())["training"]
    assert training["learning_rate"] == 3e-3 and training["epochs"] == 100 and training["metric"] == "macro_f1"
    assert training["schedule"]["planned_steps"] == 200
    assert training["schedule"]["reasons"]["learning_rate"].startswith("auto: 200 planned steps")
    assert training["schedule"]["summary"].startswith("schedule: lr 0.003 (auto")


def test_training_stops_once_the_dev_metric_is_perfect(minilm, tmp_path):
    """Only a strictly better epoch replaces the kept one: after a perfect dev score, more epochs
    would change nothing, so none are run."""
    rows = bundled_rows("sms_spam", "train", 400)
    spam, ham = [r for r in rows if r["label"] == "spam"][:16], [r for r in rows if r["label"] == "ham"][:16]
    train = write_csv(tmp_path / "train.csv", spam + ham)
    dev = write_csv(tmp_path / "dev.csv", [spam[0], ham[0]])  # seen in training: soon perfect
    config = TrainConfig(max_length=32, epochs=40, patience=40, learning_rate=3e-3, metric="accuracy", device="cpu")
    fit = api.train(train, dev_data=dev, task="spam", base=minilm, config=config).fit
    assert fit.best_metrics["accuracy"] == 1.0, fit.history
    assert len(fit.history) == fit.best_epoch < 40 and fit.stopped_early
    assert all(h["dev_accuracy"] < 1.0 for h in fit.history[:-1])


def test_cli_lr_overrides_and_the_schedule_line(imbalanced_spam, tiny_base_dir, tmp_path):
    train, dev = imbalanced_spam
    out = tmp_path / "spam"
    proc = ahl(
        "train",
        "--base",
        tiny_base_dir,
        "--train",
        train,
        "--dev",
        dev,
        "--task",
        "spam",
        "--out",
        out,
        "--lr",
        "0.003",
        "--epochs",
        "1",
        "--metric",
        "accuracy",
        "--class-weight",
        "balanced",
    )
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stderr.splitlines() if line.startswith("schedule: "))
    assert "lr 0.003 (given)" in line and "class weight balanced" in line
    training = json.loads((out / "adapter.json").read_text())["training"]
    assert (training["learning_rate"], training["epochs"], training["metric"]) == (0.003, 1, "accuracy")
    assert training["class_weight"] == "balanced" and training["schedule"]["class_weights"] == [0.5714285714285714, 4.0]
    assert training["schedule"]["reasons"]["learning_rate"] == "given"


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--metric", "f1"), ("unknown metric 'f1'", "macro_f1")),
        (("--class-weight", "auto"), ("unknown class weight 'auto'", "balanced")),
        (("--metric", "pearson"), ("metric 'pearson' does not apply to a classification head",)),
        (("--head", "regression", "--class-weight", "balanced"), ("class weighting applies to classification",)),
        (("--lr", "0"), ("learning rate must be > 0",)),
    ],
)
def test_cli_refuses_bad_metric_and_class_weight(imbalanced_spam, tmp_path, args, needles):
    train, dev = imbalanced_spam
    proc = ahl_in_process("train", "--train", train, "--dev", dev, "--task", "spam", "--out", tmp_path / "x", *args)
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "x").exists()


def test_fuse_refuses_a_bad_metric_before_fetching(imbalanced_spam, tmp_path):
    train, _ = imbalanced_spam
    proc = ahl_in_process(
        "fuse",
        "--adapters",
        "a/b,c/d",
        "--task",
        "spam",
        "--train",
        train,
        "--metric",
        "recall",
        "--registry",
        tmp_path / "empty-registry",
    )
    assert_one_line_error(proc, "unknown metric 'recall'")
