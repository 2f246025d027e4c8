"""Automatic composition: the best model a registry can give for a target, never worse on dev
than the target's own adapter.

``fuse(auto=K)`` (``ahl fuse --auto K``) ranks a pool of adapters for the target
(:mod:`~adapterhub_lite.ranking`), then trains and compares on the target's dev data:

- ``adapter``: the target's own adapter (given, or trained here: ST-A);
- ``fusion``: AdapterFusion over the K best-ranked adapters + the target's own;
- ``warm_start``: the target's adapter trained again, initialised from the best-ranked source
  (intermediate-task transfer; only when that source has the same architecture).

The candidate with the best dev score ships; ties go to the simpler one (in the order above),
so a composition never ships below the target's own adapter on dev. Every candidate's dev
metrics, the ranking and the choice are recorded in the artifact (``composition``, SPEC 2.9).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifact import FUSION_ADAPTERS_DIR, Artifact, check_writable, read_artifact, render_model_card, write_artifact
from .base import BaseModel, load_base
from .config import AdapterConfig, FusionConfig, TrainConfig
from .errors import ConfigError
from .ranking import DEFAULT_POOL, Ranking, rank
from .training.data import Columns, ExampleSet
from .training.loop import TrainEvent

if TYPE_CHECKING:
    from .api import TrainResult

METHOD_ORDER = ("adapter", "warm_start", "fusion")  # simplest first: it wins ties


@dataclass
class AutoResult:
    """What ``fuse(auto=K)`` returns: the shipped artifact, the chosen candidate, every
    candidate tried (with its dev metrics) and the ranking that picked the sources."""

    artifact: Artifact | None
    chosen: Candidate
    candidates: list[Candidate]
    ranking: Ranking

    @property
    def metrics(self) -> dict[str, float]:
        return self.chosen.dev


@dataclass
class Candidate:
    """One composition tried on the target: how it was built and its dev metrics."""

    method: str
    dev: dict[str, float]
    adapters: list[str]
    path: Path | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "dev": self.dev,
            "adapters": self.adapters,
            **({"note": self.note} if self.note else {}),
        }


def selection_metric(metrics: dict[str, float]) -> str:
    """What candidates are compared by: macro-F1 where there is one (a one-class model cannot
    win it on imbalanced data), else accuracy, else the first metric."""
    for name in ("macro_f1", "accuracy"):
        if name in metrics:
            return name
    return next(iter(metrics))


def choose(candidates: Sequence[Candidate]) -> Candidate:
    """The candidate with the best dev score; ties go to the simplest (:data:`METHOD_ORDER`)."""
    metric = selection_metric(candidates[0].dev)

    def key(c: Candidate) -> tuple[float, int]:
        value = c.dev.get(metric)
        return (-(value if value is not None else float("-inf")), METHOD_ORDER.index(c.method))

    return min(candidates, key=key)


def fuse_auto(
    train_data: str | Path | ExampleSet,
    *,
    task: str,
    auto: int,
    dev_data: str | Path | ExampleSet | None = None,
    adapters: Sequence[str | Path] = (),
    registry: Any = None,
    target_adapter: str | Path | None = None,
    base: str | BaseModel | None = None,
    columns: Columns | None = None,
    adapter: AdapterConfig | str = "pfeiffer",
    adapter_config: TrainConfig | None = None,
    fusion: FusionConfig | None = None,
    fusion_config: TrainConfig | None = None,
    pool: int = DEFAULT_POOL,
    warm_start: bool = True,
    out: str | Path | None = None,
    name: str | None = None,
    overwrite: bool = False,
    on_event: Callable[[TrainEvent], None] | None = None,
    candidates_dir: str | Path | None = None,
) -> AutoResult:
    """Rank, compose, compare on dev, and save the best (see the module docstring).

    ``candidates_dir`` keeps every candidate's artifact there (``target``, ``warm``, ``fusion``),
    for instance to inspect the fusion when a simpler candidate won; by default they are trained
    in a temporary directory and removed.

    Returns:
        :class:`AutoResult`; the chosen artifact is written at ``out`` (if given).
    """
    from .api import check_writable, fuse, train
    from .hub import fetch

    if auto < 1:
        raise ConfigError("--auto needs K >= 1 adapters to compose")
    if isinstance(adapter, str):
        adapter = AdapterConfig.from_preset(adapter)
    columns = columns or Columns()
    if out is not None:
        check_writable(Path(out), overwrite=overwrite)
    loaded = base if isinstance(base, BaseModel) else load_base(base)
    adapter_config = adapter_config or TrainConfig(learning_rate=1e-3)
    fusion_config = fusion_config or TrainConfig(learning_rate=1e-3)
    for config in (adapter_config, fusion_config):  # refused now, not after the ranking's minutes
        loaded.check_fits(max_length=config.max_length, adapter=adapter)  # train and fuse apply it
    with _candidates(candidates_dir, overwrite=overwrite) as scratch:
        # Train and dev as ExampleSets once, so every candidate sees the same split.
        from .api import _prepare_data

        data = _prepare_data(train_data, dev_data, columns, "classification", adapter_config)
        own_name = task
        ranking = rank(
            data.train,
            adapters=list(adapters) or None,
            registry=registry,
            pool=pool,
            base=loaded,
            columns=columns,
            exclude=[own_name],
            workdir=scratch / "pool",
        )
        sources = [c for c in ranking.candidates if c.path is not None][:auto]  # the record keeps them all
        if target_adapter is not None:
            own_path = fetch(str(target_adapter), to=scratch / "target", registry=registry)
            own = read_artifact(own_path)
            from .api import evaluate

            own_dev = evaluate(own_path, data.dev, columns=columns, base=loaded)
        else:
            result = train(
                data.train,
                task=task,
                dev_data=data.dev,
                base=loaded,
                columns=columns,
                adapter=adapter,
                config=adapter_config,
                out=scratch / "target",
                name=own_name,
                on_event=on_event,
            )
            own, own_dev = _saved(result), result.metrics
        own_name = own.metadata["name"]
        candidates = [Candidate("adapter", own_dev, [own_name], own.path)]
        if warm_start and sources:
            best = sources[0]
            try:
                result = train(
                    data.train,
                    task=task,
                    dev_data=data.dev,
                    base=loaded,
                    columns=columns,
                    adapter=adapter,
                    config=adapter_config,
                    out=scratch / "warm",
                    name=own_name,
                    init_from=best.path,
                    on_event=on_event,
                )
                candidates.append(
                    Candidate(
                        "warm_start",
                        result.metrics,
                        [best.name],
                        _saved(result).path,
                        f"initialised from {best.source}",
                    )
                )
            except ConfigError as exc:  # another architecture: no warm start from it
                candidates.append(Candidate("warm_start", {}, [best.name], None, str(exc)))
        parts = [c.path for c in sources if c.path is not None and c.name != own_name]
        if parts:
            result = fuse(
                [*parts, own.path],
                data.train,
                task=task,
                dev_data=data.dev,
                base=loaded,
                columns=columns,
                fusion=fusion,
                config=fusion_config,
                out=scratch / "fusion",
                name=name or f"{task}-fusion",
                on_event=on_event,
            )
            candidates.append(
                Candidate("fusion", result.metrics, [*(c.name for c in sources), own_name], _saved(result).path)
            )
        tried = [c for c in candidates if c.dev]
        chosen = choose(tried)
        artifact = None
        if out is not None:
            record = {
                "auto": auto,
                "selection_metric": selection_metric(chosen.dev),
                "chosen": chosen.method,
                "candidates": [c.to_dict() for c in candidates],
                "ranking": ranking.to_dict(),
            }
            assert chosen.path is not None  # a candidate with dev metrics was saved
            artifact = _ship(read_artifact(chosen.path), Path(out), record, overwrite=overwrite)
    chosen = dataclasses.replace(chosen, path=artifact.path if artifact else None)
    return AutoResult(artifact, chosen, candidates, ranking)


def _saved(result: TrainResult) -> Artifact:
    """The artifact a ``train`` or ``fuse`` given ``out`` wrote (``None`` only without ``out``)."""
    assert result.artifact is not None
    return result.artifact


@contextmanager
def _candidates(keep: str | Path | None, *, overwrite: bool) -> Iterator[Path]:
    """Where the candidates are trained: ``keep`` (emptied first when ``overwrite``), else a
    temporary directory removed on the way out."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="ahl-auto-") as tmp:
            yield Path(tmp)
        return
    keep = Path(keep)
    check_writable(keep, overwrite=overwrite)
    if keep.is_dir():
        shutil.rmtree(keep)
    keep.mkdir(parents=True)
    yield keep


def _ship(source: Artifact, out: Path, composition: dict[str, Any], *, overwrite: bool) -> Artifact:
    """Write ``source`` at ``out`` with the composition record added to its metadata."""
    metadata = {k: v for k, v in source.metadata.items() if k not in ("files", "format_version")}
    metadata["composition"] = composition
    extra = {}
    log = source.path / "metrics.jsonl"
    if log.is_file():
        extra["metrics.jsonl"] = log.read_bytes()
    dirs = {}
    if source.kind == "fusion":
        dirs = {f"{FUSION_ADAPTERS_DIR}/{p.name}": p for p in (source.path / FUSION_ADAPTERS_DIR).iterdir()}
    return write_artifact(
        out,
        metadata,
        source.load_weights(),
        render_model_card(metadata),
        extra_files=extra,
        extra_dirs=dirs,
        overwrite=overwrite,
    )
