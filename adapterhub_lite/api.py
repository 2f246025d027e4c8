"""The verbs of the Python API: train, load, evaluate, predict, info.

Each CLI command is a thin shell over one of these. They return values and raise
:class:`~adapterhub_lite.errors.AhlError` subclasses; they never print.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .artifact import (
    FUSION_ADAPTERS_DIR,
    HEATMAP_FILE,
    Artifact,
    check_license,
    check_writable,
    fusion_adapters,
    new_metadata,
    read_artifact,
    read_whole_artifact,
    render_model_card,
    write_artifact,
)
from .base import BaseFingerprint, BaseModel, load_base
from .config import AdapterConfig, FusionConfig, HeadConfig, TrainConfig, only_with
from .errors import ConfigError, DataError, IncompatibleBaseError
from .model import AdapterModel
from .registry.format.refs import base_key, check_segment
from .training.data import (
    HUB_PREFIX,
    Columns,
    Example,
    ExampleSet,
    encode_labels,
    label_names_from,
    load_examples,
    split_dev,
    tokenize,
)
from .training.loop import FitResult, TrainEvent, evaluate_outputs, fit, predict_outputs, select_device
from .training.schedule import check_fits_head


@dataclass
class TrainResult:
    """The outcome of :func:`train`: the saved artifact (if any), metrics and the live model."""

    artifact: Artifact | None
    fit: FitResult
    model: AdapterModel
    trainable_parameters: int
    total_parameters: int

    @property
    def metrics(self) -> dict[str, float]:
        return self.fit.best_metrics


@dataclass
class LoadedAdapter:
    """An artifact loaded into its base, ready to predict."""

    artifact: Artifact
    model: AdapterModel
    base: BaseModel

    @property
    def head(self) -> HeadConfig:
        head = self.model.head
        assert head is not None  # loading an artifact always sets its head
        return head.config

    @property
    def columns(self) -> Columns:
        return Columns.from_dict(self.artifact.metadata.get("columns", {}))


def _data_record(data: ExampleSet) -> dict[str, Any]:
    return {
        "source": Path(data.source).name if not data.source.startswith("hf:") else data.source,
        "sha256": data.sha256,
        "examples": len(data),
    }


def train(
    train_data: str | Path | ExampleSet,
    *,
    task: str,
    dev_data: str | Path | ExampleSet | None = None,
    base: str | BaseModel | None = None,
    head: str = "classification",
    columns: Columns | None = None,
    adapter: AdapterConfig | str | None = "pfeiffer",
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    overwrite: bool = False,
    on_event: Callable[[TrainEvent], None] | None = None,
    license: str | None = None,
    task_embedding: bool = True,
    init_from: str | Path | None = None,
    registry: Any = None,
) -> TrainResult:
    """Train an adapter (or, with ``adapter=None``, a head alone) and save it as an artifact.

    Args:
        train_data: training data source (path, ``hf:NAME:SPLIT``) or loaded examples.
        task: task name recorded in the artifact (searchable in registries).
        dev_data: dev data; without it ``config.dev_split`` of train is held out.
        base: base model id, directory, loaded :class:`BaseModel`, or None (embedded default).
        head: ``classification``, ``regression`` or ``multiple_choice``.
        columns: which columns hold text, pair, label and choices.
        adapter: an :class:`AdapterConfig`, a preset name, or None for head-only training.
        config: training configuration; what it leaves automatic (learning rate, epochs, patience,
            metric) is chosen from the data and recorded in ``training.schedule`` (docs/small-data.md).
        out: artifact directory to write (only the first process writes under torchrun).
        name: artifact name; defaults to the task name.
        overwrite: replace an existing artifact at ``out``.
        on_event: progress callback.
        license: the license id recorded in the metadata and the model card (e.g. ``apache-2.0``).
        task_embedding: record the training data's task embedding in the artifact (SPEC 2.8;
            a mean sentence vector of up to 256 examples, no text), which ranks the adapter
            in ``ahl search --like``. Off: nothing about the data beyond its digest is stored.
        init_from: warm start: an adapter artifact directory or registry ref (pulled from
            ``registry``) whose adapter weights initialise this adapter (same architecture and
            base required); the head starts fresh.

    Returns:
        :class:`TrainResult` with the dev metrics of the best epoch.

    Raises:
        DataError, ConfigError, BaseModelError: bad input, before any training starts.

    Example:
        >>> result = train("train.csv", dev_data="dev.csv", task="sentiment", out="sentiment-adapter")
        >>> result.metrics["accuracy"]
    """
    config = config or TrainConfig()
    config.validate()
    select_device(config.device)  # an unknown or missing device fails before the model loads
    columns = columns or Columns()
    name = name or task
    check_segment(task, "task")  # names become registry keys and paths: one rule for both
    check_segment(name, "name")
    check_license(license)
    if isinstance(adapter, str):
        adapter = AdapterConfig.from_preset(adapter)
    if config.mode == "adapter" and adapter is None:
        config = dataclasses.replace(config, mode="head_only")
    if config.mode not in ("adapter", "head_only", "full"):
        raise ConfigError(f"train() runs modes adapter, head_only and full; use fuse() for {config.mode!r}")
    if config.mode == "full" and out is not None:
        raise ConfigError("full fine-tuning produces no adapter artifact; train without an output dir")
    if out is not None:
        check_writable(Path(out), overwrite=overwrite)
    data = _prepare_data(train_data, dev_data, columns, head, config)  # bad input fails before loading

    trained = adapter if config.mode == "adapter" else None  # the adapter this run trains, if any
    source = None
    if init_from is not None:
        if trained is None:
            raise ConfigError("--init-from warm-starts an adapter; it needs an adapter preset, not head-only training")
        source = _warm_start_source(init_from, trained, registry)

    base_model = base if isinstance(base, BaseModel) else load_base(base)
    config = dataclasses.replace(
        config, max_length=base_model.check_fits(max_length=config.max_length, adapter=trained)
    )
    if source is not None:
        check_base(source.metadata, base_model)
    torch.manual_seed(config.seed)
    model = AdapterModel(base_model)
    if trained is not None:
        model.add_adapter(name, trained)
        if source is not None:
            model.adapters[name].load_state_dict(source.weights, strict=True)
    result, trainable, total = _fit(model, base_model, data, config, out, on_event)

    artifact = None
    if out is not None and result_is_writer():
        extra: dict[str, Any] = {"adapter": trained.to_dict() if trained is not None else None}
        if task_embedding:
            from .task_embedding import compute_task_embedding

            extra["task_embedding"] = compute_task_embedding(
                base_model, data.train, max_length=config.max_length
            ).to_dict()
        if source is not None:
            extra["init_from"] = {
                "name": source.metadata["name"],
                "task": source.metadata["task"],
                "digest": source.digest,
            }
        metadata = artifact_metadata(
            kind="adapter",
            name=name,
            task=task,
            base=base_model,
            head=data.head,
            columns=columns,
            config=config,
            fit_result=result,
            data=data.records(),
            parameters=(trainable, total),
            license=license,
            extra=extra,
        )
        artifact = _save(Path(out), metadata, model.artifact_state_dict(), overwrite=overwrite)
    return TrainResult(artifact, result, model, trainable, total)


@dataclass
class _TaskData:
    """Target-task data, read and checked, with the head it implies."""

    train: ExampleSet
    dev: ExampleSet
    head: HeadConfig
    train_targets: list[Any]
    dev_targets: list[Any]

    def records(self) -> dict[str, dict[str, Any]]:
        return {"train": _data_record(self.train), "dev": _data_record(self.dev)}


def _prepare_data(
    train_data: str | Path | ExampleSet,
    dev_data: str | Path | ExampleSet | None,
    columns: Columns,
    head: str,
    config: TrainConfig,
) -> _TaskData:
    """Read train and dev (or split dev off train), derive the head, encode the labels."""
    train_set = train_data if isinstance(train_data, ExampleSet) else load_examples(train_data, columns)
    if dev_data is None:
        train_set, dev_set = split_dev(train_set, config.dev_split, config.seed, by_label=head == "classification")
    else:
        dev_set = dev_data if isinstance(dev_data, ExampleSet) else load_examples(dev_data, columns)
    head_cfg = HeadConfig(type=head)
    if head == "classification":
        head_cfg.label_names = label_names_from(train_set)
    if head == "multiple_choice" and not columns.choices:
        raise ConfigError("a multiple-choice head needs --choices-column")
    head_cfg.validate()
    check_fits_head(config, head)
    return _TaskData(
        train_set,
        dev_set,
        head_cfg,
        encode_labels(train_set, head, head_cfg.label_names),
        encode_labels(dev_set, head, head_cfg.label_names),
    )


def _fit(
    model: AdapterModel,
    base_model: BaseModel,
    data: _TaskData,
    config: TrainConfig,
    out: str | Path | None,
    on_event: Callable[[TrainEvent], None] | None,
) -> tuple[FitResult, int, int]:
    """Attach the head, train what ``config.mode`` trains, leave the model frozen in eval mode."""
    model.set_head(data.head)
    params = model.set_trainable(config.mode, base_dropout=config.base_dropout)
    trainable, total = model.count_parameters()
    tok = base_model.tokenizer
    enc_train = tokenize(tok, data.train, config.max_length, data.train_targets)
    enc_dev = tokenize(tok, data.dev, config.max_length, data.dev_targets)
    if on_event:
        on_event(TrainEvent("params", parameters=(trainable, total)))
    log = _metrics_path(out)
    try:
        result = fit(
            model,
            params,
            enc_train,
            enc_dev,
            data.head.type,
            config,
            pad_id=pad_id_of(tok),
            on_event=on_event,
            metrics_path=log,
            regularizer=model.regularization,
        )
    except BaseException:  # an error or an interruption (Ctrl-C, SIGTERM) leaves no partial log behind
        if log:
            log.unlink(missing_ok=True)
        raise
    model.requires_grad_(False)
    model.eval()
    return result, trainable, total


def _save(
    out: Path,
    metadata: dict[str, Any],
    weights: dict[str, torch.Tensor],
    *,
    overwrite: bool,
    extra_dirs: dict[str, Path] | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Artifact:
    """Write the artifact with its card, ``extra_files`` and the per-epoch log that grew beside it."""
    log = _metrics_path(out)
    extra = {**(extra_files or {}), **({"metrics.jsonl": log.read_bytes()} if log and log.exists() else {})}
    try:
        return write_artifact(
            out,
            metadata,
            weights,
            render_model_card(metadata),
            extra_files=extra,
            extra_dirs=extra_dirs,
            overwrite=overwrite,
        )
    finally:
        if log:
            log.unlink(missing_ok=True)


def fuse(
    adapters: Sequence[str | Path | LoadedAdapter] = (),
    train_data: str | Path | ExampleSet | None = None,
    *,
    task: str,
    dev_data: str | Path | ExampleSet | None = None,
    base: str | BaseModel | None = None,
    head: str = "classification",
    columns: Columns | None = None,
    fusion: FusionConfig | None = None,
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    overwrite: bool = False,
    on_event: Callable[[TrainEvent], None] | None = None,
    license: str | None = None,
    auto: int | None = None,
    registry: Any = None,
    target_adapter: str | Path | None = None,
    candidates_dir: str | Path | None = None,
) -> Any:
    """Train an AdapterFusion layer and a new head over trained adapters (the paper's stage 2).

    Every adapter must have been trained on the same base (fingerprint): a mismatch fails
    before any training, naming both bases. Base and adapters stay frozen. The artifact records
    each adapter's entry and digest (a lock) and keeps verified copies under ``adapters/``.

    Args:
        adapters: adapter artifact directories (or loaded adapters), at least two.
        train_data, dev_data, task, head, columns: the target task, as in :func:`train`.
        base: the base to use; defaults to the adapters' base.
        fusion: the fusion configuration.
        config: training configuration, automatic values chosen as in :func:`train` (the
            paper's setup: ``TrainConfig(learning_rate=5e-5, epochs=10, patience=2, metric="accuracy")``).
        out, name, overwrite, on_event, license: as in :func:`train`.

        auto: compose automatically (:func:`adapterhub_lite.compose.fuse_auto`): rank the
            pool (``adapters`` if given, else ``registry``'s adapters for the base), take the
            ``auto`` best, always include the target's own adapter (``target_adapter``, or
            trained here), try fusion and a warm start, and ship the best on dev; returns an
            :class:`~adapterhub_lite.compose.AutoResult`. ``config`` (default lr 1e-3) then
            trains every candidate: the target's adapter, the warm start and the fusion.
        candidates_dir: with ``auto``, keep every candidate's artifact there (default: removed).

    Example:
        >>> fuse(["sst2-adapter", "mnli-adapter"], "rte/train.csv", task="rte", out="rte-fusion")
        >>> fuse(train_data="rte/train.csv", task="rte", auto=3, registry="./registry", out="rte-auto")
    """
    if train_data is None:
        raise ConfigError("fuse needs the target's training data")
    # What one mode would ignore is refused, not dropped: the run would differ from the one asked for.
    only_with(
        {"--target-adapter": target_adapter, "candidates_dir": candidates_dir},
        needs="--auto",
        present=auto is not None,
        fix="add --auto K",
    )
    if auto is not None and (head != "classification" or license is not None):
        flag = f"--head {head}" if head != "classification" else "--license"
        raise ConfigError(
            f"--auto trains classification heads and records no license; drop {flag}, "
            "or name the adapters to fuse with --adapters"
        )
    select_device((config or TrainConfig()).device)  # a bad device fails before any adapter or model loads
    if auto is not None:
        from .compose import fuse_auto

        return fuse_auto(
            train_data,
            task=task,
            auto=auto,
            dev_data=dev_data,
            adapters=[str(a) for a in adapters],
            registry=registry,
            target_adapter=target_adapter,
            base=base,
            columns=columns,
            adapter_config=config,
            fusion=fusion,
            fusion_config=config,
            out=out,
            name=name,
            overwrite=overwrite,
            on_event=on_event,
            candidates_dir=candidates_dir,
        )
    config = dataclasses.replace(config or TrainConfig(), mode="fusion")
    config.validate()
    columns = columns or Columns()
    name = name or f"{task}-fusion"
    check_segment(task, "task")
    check_segment(name, "name")
    check_license(license)
    if out is not None:
        check_writable(Path(out), overwrite=overwrite)
    parts = [a.artifact if isinstance(a, LoadedAdapter) else read_artifact(a) for a in adapters]
    names = [p.metadata["name"] for p in parts]
    if len(parts) < 2:
        raise ConfigError("fusion needs at least two adapters")
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(
            f"adapters to fuse need distinct names (a fusion keeps each under its name); {', '.join(twice)} "
            "comes more than once: fuse one version of it, or retrain one copy under another --name"
        )
    for part in parts:
        if part.kind != "adapter" or not part.metadata.get("adapter"):
            raise ConfigError(f"{part.path} holds no adapter (kind {part.kind}); fuse trained adapters")
        check_base(part.metadata, parts[0].metadata)
    data = _prepare_data(train_data, dev_data, columns, head, config)

    base_model = (
        base
        if isinstance(base, BaseModel)
        else load_base(base if base is not None else parts[0].metadata["base"]["model_id"])
    )
    for part in parts:
        check_base(part.metadata, base_model)
    config = dataclasses.replace(config, max_length=base_model.check_fits(max_length=config.max_length))
    torch.manual_seed(config.seed)
    model = AdapterModel(base_model)
    for part in parts:
        _add_stored_adapter(model, part)
    positions = model.add_fusion(name, names, fusion or FusionConfig())
    result, trainable, total = _fit(model, base_model, data, config, out, on_event)

    artifact = None
    if out is not None and result_is_writer():
        from .analysis import measure_activations  # analysis imports this module

        records = [
            {
                "name": p.metadata["name"],
                "task": p.metadata["task"],
                "base": base_key(p.metadata["base"]["model_id"]),
                "digest": p.digest,
            }
            for p in parts
        ]
        # what the fusion attends to on its dev set: recorded, and drawn into the artifact (SPEC 13)
        activations = measure_activations(
            model,
            base_model.tokenizer,
            data.dev,
            [f"{p.metadata['task']}/{p.metadata['name']}" for p in parts],
            max_length=config.max_length,
            batch_size=config.batch_size,
        )
        metadata = artifact_metadata(
            kind="fusion",
            name=name,
            task=task,
            base=base_model,
            head=data.head,
            columns=columns,
            config=config,
            fit_result=result,
            data=data.records(),
            parameters=(trainable, total),
            license=license,
            extra={
                "fusion": {**model.fusion_configs[name].to_dict(), "positions": list(positions)},
                "adapters": records,
                "activations": {"data": "dev", **activations.to_dict()},
            },
        )
        heatmap = activations.svg(f"{name}: mean fusion attention on the dev set")
        artifact = _save(
            Path(out),
            metadata,
            model.artifact_state_dict(kind="fusion"),
            overwrite=overwrite,
            extra_dirs={f"{FUSION_ADAPTERS_DIR}/{p.metadata['name']}": p.path for p in parts},
            extra_files={HEATMAP_FILE: heatmap.encode()},
        )
    return TrainResult(artifact, result, model, trainable, total)


@dataclass
class _WarmStart:
    """What a warm start takes from its source adapter: identity and adapter weights."""

    metadata: dict[str, Any]
    digest: str
    weights: dict[str, torch.Tensor]


def _warm_start_source(init_from: str | Path, adapter: AdapterConfig, registry: Any) -> _WarmStart:
    """The adapter a warm start copies, checked to have exactly ``adapter``'s architecture (a
    registry ref is pulled, verified, into a temporary directory that is removed again)."""
    import tempfile

    from .hub import fetch

    with tempfile.TemporaryDirectory(prefix="ahl-init-") as tmp:
        where = (
            Path(init_from)
            if Path(init_from).is_dir()
            else fetch(str(init_from), to=Path(tmp) / "a", registry=registry)
        )
        source = read_artifact(where)
        if source.kind != "adapter" or not source.metadata.get("adapter"):
            raise ConfigError(f"--init-from {init_from}: holds no adapter (kind {source.kind}); name a trained adapter")
        theirs, ours = AdapterConfig.from_dict(source.metadata["adapter"]).to_dict(), adapter.to_dict()
        differs = [f"{k} ({theirs.get(k)!r}, here {v!r})" for k, v in sorted(ours.items()) if theirs.get(k) != v]
        if differs:
            raise ConfigError(
                f"--init-from {init_from}: its adapter differs in {', '.join(differs)}; "
                f"train with the same architecture options to warm-start from it"
            )
        return _WarmStart(source.metadata, source.digest, _adapter_weights(source))


def _adapter_weights(artifact: Artifact) -> dict[str, torch.Tensor]:
    """An adapter artifact's adapter weights (not its head), keyed as in ``model.adapters[name]``."""
    prefix = "adapter."
    return {k[len(prefix) :]: v for k, v in artifact.load_weights().items() if k.startswith(prefix)}


def _add_stored_adapter(model: AdapterModel, artifact: Artifact) -> None:
    """Add an adapter artifact's adapter (not its head) to ``model``, inactive."""
    name = artifact.metadata["name"]
    model.add_adapter(name, AdapterConfig.from_dict(artifact.metadata["adapter"]), activate=False)
    weights = _adapter_weights(artifact)
    try:
        model.adapters[name].load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0]
        raise IncompatibleBaseError(f"{artifact.path}: weights do not fit the model ({reason})") from None


def artifact_metadata(
    *,
    kind: str,
    name: str,
    task: str,
    base: BaseModel,
    head: HeadConfig,
    columns: Columns,
    config: TrainConfig,
    fit_result: FitResult,
    data: dict[str, dict[str, Any]],
    parameters: tuple[int, int],
    extra: dict[str, Any],
    license: str | None = None,
) -> dict[str, Any]:
    """The metadata file of a trained artifact (``files`` is added when writing).

    ``extra`` holds what the kind adds: ``adapter`` (its config, or None for a head alone), or
    ``fusion`` and ``adapters`` (the fused adapters' entries and digests). ``license`` (a Hub
    license id) is recorded when given.
    """
    return new_metadata(
        kind=kind,
        name=name,
        task=task,
        base=base,
        license=license,
        fields={
            **extra,
            "head": head.to_dict(),
            "columns": columns.to_dict(),
            "training": {
                **_ran(config, fit_result),
                "best_epoch": fit_result.best_epoch,
                "stopped_early": fit_result.stopped_early,
                "world_size": fit_result.world_size,
                "data": data,
                "history": fit_result.history,
            },
            "metrics": {"dev": fit_result.best_metrics},
            "parameters": {"trainable": parameters[0], "total": parameters[1]},
        },
    )


def _ran(config: TrainConfig, fit_result: FitResult) -> dict[str, Any]:
    """The training config as it ran: automatic values filled in, with the schedule's reasons."""
    if fit_result.schedule is None:  # a FitResult built by hand: automatic values stay unrecorded
        return {k: v for k, v in config.to_dict().items() if v is not None}
    return {**fit_result.schedule.config.to_dict(), "schedule": fit_result.schedule.to_dict()}


def result_is_writer() -> bool:
    """Only the first torchrun process writes files."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _metrics_path(out: str | Path | None) -> Path | None:
    """Where the per-epoch JSON Lines log grows during training (beside the artifact to be)."""
    if out is None:
        return None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.parent / f".{out.name}.metrics.jsonl"


def pad_id_of(tokenizer: Any) -> int:
    """The tokenizer's padding id (0 where it has none)."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def load(path: str | Path, *, base: str | BaseModel | None = None, device: str = "cpu") -> LoadedAdapter:
    """Load an adapter artifact into its base model, refusing a base with another fingerprint.

    Args:
        path: the artifact directory.
        base: the base to load into; defaults to the one recorded in the artifact.
        device: where to put the model.

    Raises:
        ArtifactError / IntegrityError: not an artifact, or a file fails verification.
        IncompatibleBaseError: the base differs (hidden size, layers, or weights digest).
    """
    target = select_device(device)  # before the base loads: a bad device fails at once
    artifact = read_artifact(path)
    meta = artifact.metadata
    weights = artifact.load_weights()
    base_model = (
        base
        if isinstance(base, BaseModel)
        else load_base(base if base is not None else meta["base"]["model_id"], revision=meta["base"].get("revision"))
    )
    check_base(meta, base_model)
    model = AdapterModel(base_model)
    stored = None
    if artifact.kind == "fusion":
        for part in fusion_adapters(artifact):
            check_base(part.metadata, base_model)
            _add_stored_adapter(model, part)
        stored = meta["name"]
        fusion = FusionConfig.from_dict(meta["fusion"])
        model.add_fusion(stored, [record["name"] for record in meta["adapters"]], fusion)
    elif meta.get("adapter"):
        stored = meta["name"]
        model.add_adapter(stored, AdapterConfig.from_dict(meta["adapter"]))
    model.set_head(HeadConfig.from_dict(meta["head"]))
    try:
        model.load_artifact_state_dict(stored, weights, kind=artifact.kind)
    except RuntimeError as exc:
        raise IncompatibleBaseError(
            f"{artifact.path}: weights do not fit the model ({str(exc).splitlines()[0]})"
        ) from None
    model.requires_grad_(False)
    model.eval()
    model.to(target)
    return LoadedAdapter(artifact, model, base_model)


def check_base(metadata: dict[str, Any], base: BaseModel | dict[str, Any]) -> None:
    """Raise :class:`IncompatibleBaseError` naming both bases if fingerprints differ.

    ``base`` is a loaded base, or another artifact's metadata (adapters to fuse must agree).
    """
    recorded = BaseFingerprint.from_dict(metadata["base"]["fingerprint"])
    if isinstance(base, BaseModel):
        other, other_base = base.fingerprint, f"the base is {base.model_id}"
    else:
        other = BaseFingerprint.from_dict(base["base"]["fingerprint"])
        other_base = f"{base['kind']} {base['name']!r} was trained on {base['base']['model_id']}"
    recorded.check_compatible(
        other,
        trained=f"{metadata['kind']} {metadata['name']!r} was trained on {metadata['base']['model_id']}",
        other_base=other_base,
    )


def ensure_loaded(adapter: LoadedAdapter | str | Path, base: str | BaseModel | None) -> LoadedAdapter:
    """A loaded artifact ready to predict: as given, or loaded from its directory.

    Raises:
        ConfigError: its head is a placeholder (an adapter imported without one) that would
            answer 0.0 for every input.
    """
    loaded = adapter if isinstance(adapter, LoadedAdapter) else load(adapter, base=base)
    if loaded.head.extra.get("placeholder"):
        raise ConfigError(
            f"{loaded.artifact.path} has no trained prediction head (it was imported without one); "
            f"fuse it with 'ahl fuse' or train a head before predicting"
        )
    return loaded


def check_batch_size(batch_size: int) -> None:
    """Raise :class:`ConfigError` for a batch size below 1 (before a model loads for nothing)."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, not {batch_size}; pass e.g. --batch-size 64")


def evaluate(
    adapter: LoadedAdapter | str | Path,
    data: str | Path | ExampleSet,
    *,
    columns: Columns | None = None,
    base: str | BaseModel | None = None,
    batch_size: int = 64,
    max_length: int | None = None,
) -> dict[str, float]:
    """Metrics of an adapter on labelled data (columns default to those used in training)."""
    check_batch_size(batch_size)
    loaded = ensure_loaded(adapter, base)
    columns = columns or loaded.columns
    data_set = data if isinstance(data, ExampleSet) else load_examples(data, columns)
    head = loaded.head
    targets = encode_labels(data_set, head.type, head.label_names)
    enc = tokenize(loaded.base.tokenizer, data_set, max_length or max_length_of(loaded), targets)
    device = next(loaded.model.parameters()).device
    return evaluate_outputs(
        loaded.model, enc, head.type, batch_size=batch_size, device=device, pad_id=pad_id_of(loaded.base.tokenizer)
    )


def max_length_of(loaded: LoadedAdapter) -> int:
    """The token limit the artifact was trained with."""
    return int(loaded.artifact.metadata.get("training", {}).get("max_length", 128))


@dataclass
class Prediction:
    """One prediction: the label (or score) and, for classes, each class's probability."""

    label: str | float | int
    probabilities: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label}
        if self.probabilities is not None:
            out["probabilities"] = self.probabilities
        return out


def predict(
    adapter: LoadedAdapter | str | Path,
    inputs: Sequence[str] | Sequence[Example] | ExampleSet | str | Path,
    *,
    columns: Columns | None = None,
    base: str | BaseModel | None = None,
    batch_size: int = 64,
) -> list[Prediction]:
    """Predict labels for texts, examples, or a data file (labels in the file are ignored).

    Example:
        >>> predict("sentiment-adapter", ["a gripping, funny film", "two hours I want back"])
        [Prediction(label='positive', ...), Prediction(label='negative', ...)]
    """
    check_batch_size(batch_size)
    loaded = ensure_loaded(adapter, base)
    if isinstance(inputs, (str, Path)):
        if isinstance(inputs, str) and not inputs.startswith(HUB_PREFIX) and not Path(inputs).exists():
            raise DataError(
                f"data file {inputs[:60]!r} does not exist; to predict texts pass a list: predict(adapter, [text, ...])"
            )
        data_set = load_examples(inputs, columns or loaded.columns, require_label=False)
    elif isinstance(inputs, ExampleSet):
        data_set = inputs
    else:
        items = list(inputs)
        examples = [e if isinstance(e, Example) else Example(str(e)) for e in items]
        data_set = ExampleSet(examples, "<inputs>")
    if not data_set.examples:
        raise DataError("nothing to predict: the input has no rows")
    head = loaded.head
    if head.type == "multiple_choice" and any(not e.choices for e in data_set.examples):
        raise DataError("a multiple-choice adapter needs candidate answers for every input")
    enc = tokenize(loaded.base.tokenizer, data_set, max_length_of(loaded), None)
    device = next(loaded.model.parameters()).device
    outputs = predict_outputs(
        loaded.model, enc, batch_size=batch_size, device=device, pad_id=pad_id_of(loaded.base.tokenizer)
    )
    return [_prediction(head, row, example) for row, example in zip(outputs, data_set.examples, strict=False)]


def _prediction(head: HeadConfig, row: np.ndarray, example: Example) -> Prediction:
    if head.type == "regression":
        return Prediction(float(row))
    probs = torch.softmax(torch.from_numpy(np.asarray(row, dtype=np.float64)), -1).numpy()
    names = head.label_names if head.type == "classification" else (example.choices or [])
    best = int(probs.argmax())
    label: str | int = names[best] if head.type == "classification" else best
    return Prediction(label, {str(n): float(p) for n, p in zip(names, probs, strict=False)})


def info(path: str | Path) -> dict[str, Any]:
    """The metadata of an artifact directory, after verifying its files (and a fusion's adapter
    copies: a fusion without them is damaged, and ``ahl info`` must say so)."""
    return read_whole_artifact(path).metadata
