"""The training loop: AdamW, linear warmup and decay, early stopping on the dev metric.

What the config leaves automatic (learning rate, epochs, patience, metric) is settled first, from
the training data, by :func:`.schedule.resolve`.

One function, :func:`fit`, readable top to bottom. It runs on one device or, under ``torchrun``,
as DistributedDataParallel (gloo on CPU, nccl on GPU). ``batch_size`` is the number of examples
per optimizer step whatever the number of processes and accumulation steps, so one process and
N processes follow the same trajectory.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError
from ..modules.heads import head_loss
from .data import Encoded, bucketed_batches, collate, sorted_batches
from .metrics import compute_metrics
from .schedule import Schedule, resolve


@dataclass
class TrainEvent:
    """Progress report sent to ``on_event``: ``params`` (trainable and total parameter counts,
    before training), ``schedule`` (``message``: the chosen schedule in one line), ``start``,
    ``step``, ``epoch`` or ``stop``."""

    kind: str
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    loss: float | None = None
    metrics: dict[str, float] | None = None
    message: str | None = None
    parameters: tuple[int, int] | None = None


@dataclass
class FitResult:
    """What training produced: per-epoch history, the epoch whose weights were kept, and the
    schedule it ran (``schedule.config``: the config with every automatic value filled in)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    main_metric: str = "accuracy"
    stopped_early: bool = False
    device: str = "cpu"
    world_size: int = 1
    schedule: Schedule | None = None


DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"
# Every selection metric (accuracy, macro-F1, Pearson, Spearman) is at most 1.
METRIC_CEILING = 1.0


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; under torchrun, this process's GPU.

    Raises :class:`ConfigError` for a name torch does not parse, or a device this torch build or
    machine lacks: the API calls this before loading a model, so a typo costs no minutes.
    """
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ConfigError(f"unknown device {name!r}; choose one of: {DEVICE_CHOICES}") from None
        if device.type not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"unknown device {name!r}; choose one of: {DEVICE_CHOICES}")
        missing = _missing_reason(device)
        if missing:
            raise ConfigError(f"device {name!r} is not available: {missing}; use --device cpu or --device auto")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _missing_reason(device: torch.device) -> str | None:
    """Why ``device`` cannot be used here, or None when it can."""
    if device.type == "cuda":
        if torch.version.cuda is None:
            return f"this torch build ({torch.__version__}) has no CUDA support"
        count = torch.cuda.device_count()
        if count == 0:
            return "torch sees no CUDA GPU on this machine"
        if device.index is not None and device.index >= count:
            return f"this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps and mps.is_available()):
        return f"this torch build ({torch.__version__}) or machine has no MPS support"
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def distributed(device: torch.device) -> Iterator[tuple[int, int]]:
    """Join the torchrun process group for the duration of training, if launched by torchrun.

    Yields ``(rank, world_size)``; ``(0, 1)`` when not distributed.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield 0, 1
        return
    created = not dist.is_initialized()
    if created:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        if created:
            dist.destroy_process_group()


def autocast_for(device: torch.device) -> tuple[contextlib.AbstractContextManager[Any], torch.dtype | None]:
    """bf16 autocast on GPUs that have it, fp16 on older ones, full precision elsewhere."""
    if device.type != "cuda":
        return contextlib.nullcontext(), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype), dtype


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict_outputs(
    model: nn.Module, data: Encoded, *, batch_size: int, device: torch.device, pad_id: int
) -> np.ndarray:
    """Raw outputs (logits or scores) for every example, in the original order."""
    was_training = model.training
    model.eval()
    cast, _ = autocast_for(device)
    order: list[int] = []
    rows: list[np.ndarray] = []
    for batch_ids in sorted_batches(data.lengths, batch_size):
        batch = _to(collate([data.features[i] for i in batch_ids], pad_id), device)
        with cast:
            logits = model(**batch)
        order.extend(batch_ids)
        rows.extend(logits.float().cpu().numpy())
    model.train(was_training)
    return np.stack(rows)[np.argsort(order)]  # rows[k] is example order[k]


def evaluate_outputs(
    model: nn.Module, data: Encoded, head_type: str, *, batch_size: int, device: torch.device, pad_id: int
) -> dict[str, float]:
    """Metrics of ``model`` on encoded data with targets."""
    outputs = predict_outputs(model, data, batch_size=batch_size, device=device, pad_id=pad_id)
    return compute_metrics(head_type, outputs, np.asarray(data.targets))


def adamw(params: list[nn.Parameter], learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """The optimizer :func:`fit` trains with: AdamW, with its fused kernel where the parameters'
    device has one (CPU from torch 2.4, CUDA). Fused, each tensor's update is one pass instead of
    about a dozen elementwise ops, each a parallel region of its own; that matters for fusion
    layers, whose Query, Key and Value maps hold millions of parameters."""
    try:
        return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay, fused=True)
    except RuntimeError:  # no fused kernel for this device or torch version
        return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)


def _linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def fit(
    model: nn.Module,
    params: list[nn.Parameter],
    train: Encoded,
    dev: Encoded,
    head_type: str,
    config: TrainConfig,
    *,
    pad_id: int,
    on_event: Callable[[TrainEvent], None] | None = None,
    metrics_path: Path | None = None,
    regularizer: Callable[[], torch.Tensor | None] | None = None,
) -> FitResult:
    """Train ``params`` of ``model`` on ``train``, early-stopping on ``dev``; keep the best epoch.

    Args:
        model: the model; its forward takes a collated batch and returns logits.
        params: the parameters to optimise (everything else must be frozen).
        train, dev: tokenised data with targets.
        head_type: picks the loss and metrics.
        config: the training configuration.
        pad_id: the tokenizer's padding id.
        on_event: progress callback (only called in the first process).
        metrics_path: a JSON Lines file that receives one record per epoch.
        regularizer: a penalty added to every micro-batch's loss (e.g. fusion's V-to-identity L2).

    Returns:
        The :class:`FitResult`; ``model`` holds the weights of the best epoch.
    """
    schedule = resolve(config, head_type, list(train.targets or []))
    config = schedule.config
    device = select_device(config.device)
    seed_everything(config.seed)
    model.to(device)
    main = str(config.metric)
    result = FitResult(main_metric=main, device=str(device), schedule=schedule)
    emit = on_event or (lambda event: None)
    class_weights = (
        torch.tensor(schedule.class_weights, dtype=torch.float32, device=device) if schedule.class_weights else None
    )

    with distributed(device) as (rank, world):
        result.world_size = world
        shards = world * config.grad_accum
        if config.batch_size % shards:
            raise ConfigError(f"batch size {config.batch_size} must be a multiple of processes x grad accum ({shards})")
        if rank:
            emit = lambda event: None  # one process reports
        runner: nn.Module = model
        if world > 1:
            runner = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        optimizer = adamw(params, schedule.learning_rate, config.weight_decay)
        total = schedule.planned_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _linear_schedule(int(total * config.warmup_ratio), total)
        )
        cast, cast_dtype = autocast_for(device)
        scaler = torch.amp.GradScaler("cuda", enabled=cast_dtype == torch.float16)
        best_state: dict[int, torch.Tensor] | None = None
        best_value, bad_epochs, step = -math.inf, 0, 0
        metrics_file = metrics_path.open("w") if (metrics_path and rank == 0) else None
        emit(TrainEvent("schedule", total_steps=total, message=schedule.summary()))
        emit(TrainEvent("start", total_steps=total))
        try:
            for epoch in range(1, schedule.epochs + 1):
                runner.train()
                losses = []
                for batch_ids in bucketed_batches(train.lengths, config.batch_size, config.seed + epoch):
                    if len(batch_ids) < shards:
                        continue  # a tail smaller than one example per shard cannot be split
                    micro = np.array_split(np.asarray(batch_ids), shards)[rank::world]
                    step_loss = 0.0
                    for i, ids in enumerate(micro):
                        batch = _to(collate([train.features[j] for j in ids], pad_id), device)
                        # ignores: training data always has targets (Encoded types them optional,
                        # for unlabelled prediction), and runner is a DDP wrapper when not sync.
                        targets = torch.tensor([train.targets[j] for j in ids], device=device)  # type: ignore[index]
                        sync = i == len(micro) - 1 or world == 1
                        with contextlib.nullcontext() if sync else runner.no_sync(), cast:  # type: ignore[operator]
                            loss = head_loss(head_type, runner(**batch), targets, class_weights)
                            if regularizer is not None and (penalty := regularizer()) is not None:
                                loss = loss + penalty
                            # weight each micro-batch by its share of the global batch; DDP
                            # averages over processes, hence the factor world.
                            scaled = loss * (len(ids) * world / len(batch_ids))
                        scaler.scale(scaled).backward()
                        step_loss += loss.item() * len(ids) * world / len(batch_ids)
                    if config.max_grad_norm > 0:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    scheduler.step()
                    step += 1
                    losses.append(step_loss)
                    emit(TrainEvent("step", step=step, total_steps=total, epoch=epoch, loss=step_loss))

                metrics = evaluate_outputs(
                    model, dev, head_type, batch_size=config.batch_size * 2, device=device, pad_id=pad_id
                )
                record = {
                    "epoch": epoch,
                    "step": step,
                    "train_loss": float(np.mean(losses)) if losses else None,
                    **{f"dev_{k}": v for k, v in metrics.items()},
                }
                result.history.append(record)
                if metrics_file:
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
                emit(TrainEvent("epoch", step=step, total_steps=total, epoch=epoch, metrics=metrics))
                if metrics[main] > best_value:
                    best_value, bad_epochs = metrics[main], 0
                    result.best_epoch, result.best_metrics = epoch, metrics
                    best_state = {id(p): p.detach().clone() for p in params}
                    if best_value >= METRIC_CEILING:
                        # Only a strictly better epoch replaces the kept one, and none can be:
                        # more epochs would change nothing but the time spent.
                        result.stopped_early = epoch < schedule.epochs
                        break
                else:
                    bad_epochs += 1
                    if bad_epochs >= schedule.patience:
                        result.stopped_early = epoch < schedule.epochs
                        break
        finally:
            if metrics_file:
                metrics_file.close()
        if best_state is not None:
            with torch.no_grad():
                for p in params:
                    p.copy_(best_state[id(p)])
        emit(
            TrainEvent(
                "stop",
                step=step,
                total_steps=total,
                epoch=result.best_epoch,
                metrics=result.best_metrics,
                message="stopped early" if result.stopped_early else "finished",
            )
        )
    return result
