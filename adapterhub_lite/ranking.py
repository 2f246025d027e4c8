"""Rank adapters for a target data set: which ones are likely to help it?

Two signals, cheap to expensive:

- **similarity** of task embeddings (SPEC 2.8): no forward pass over the candidates, only the
  target's own embedding; the registry ranks by it (``ahl search --like``);
- a **transfer probe**: the target's examples run once through the frozen base with each
  candidate adapter active, and a cross-validated linear (ridge) classifier on the mean-pooled last
  hidden states measures how well those features separate the target's labels, against the
  same probe on the base alone. ``gain`` is the drop in the probe's out-of-fold squared error
  (a continuous score: macro-F1 on a few dozen examples moves in steps and ties); an adapter
  whose features carry the target's distinctions gains, one that hides them loses.

The probe costs one forward pass per candidate over at most ``max_examples`` examples and a few
closed-form fits; it is deterministic (fixed stratified folds, float64 solves).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import Artifact, read_artifact
from .base import BaseModel, load_base
from .errors import ConfigError, DataError
from .task_embedding import TaskEmbedding, compute_task_embedding, embedding_of, pooled_features, sample_indices
from .training.data import Columns, ExampleSet, label_names_from, load_examples, tokenize
from .training.metrics import compute_metrics

DEFAULT_MAX_EXAMPLES = 2000
DEFAULT_FOLDS = 5
DEFAULT_POOL = 20  # registry candidates the probe looks at (the most similar by embedding)
PROBE_L2 = 1.0  # ridge penalty of the probe, per training example (features are standardised)


@dataclass
class RankedAdapter:
    """One candidate's scores: ``gain`` (probe score minus the base's) ranks them."""

    source: str  # the directory or registry ref it came from
    name: str
    task: str
    similarity: float | None = None  # cosine of the task embeddings (None: the candidate has none)
    probe: dict[str, float] | None = None  # out-of-fold accuracy, macro_f1 and mse with it active
    gain: float | None = None  # how much the probe's out-of-fold squared error drops with it active
    seconds: float = 0.0  # forward pass + probe fits
    path: Path | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("path")
        return out


@dataclass
class Ranking:
    """Candidates best first, with what the probe scored on the base alone and the cost."""

    candidates: list[RankedAdapter]
    base_probe: dict[str, float] | None
    examples: int
    folds: int
    method: str  # "probe" or "similarity"
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "examples": self.examples,
            "folds": self.folds,
            "seconds": round(self.seconds, 3),
            "base_probe": self.base_probe,
            "candidates": [c.to_dict() for c in self.candidates],
        }


# -- the probe ----------------------------------------------------------------------------------


def fold_ids(labels: Sequence[int], folds: int) -> np.ndarray:
    """Stratified, deterministic folds: within each label, examples in order go round-robin."""
    ids = np.zeros(len(labels), dtype=np.int64)
    seen: dict[int, int] = {}
    for i, label in enumerate(labels):
        ids[i] = seen.get(label, 0) % folds
        seen[label] = seen.get(label, 0) + 1
    return ids


def probe_score(
    features: np.ndarray, labels: Sequence[int], num_labels: int, folds: int = DEFAULT_FOLDS, l2: float = PROBE_L2
) -> dict[str, float]:
    """Out-of-fold accuracy, macro-F1 and mean squared error of a ridge-regression classifier
    (one-vs-rest on one-hot targets, closed form in float64) on standardised features.

    Closed form: a fraction of a second for 2,000 examples and exactly reproducible (an
    iterative logistic-regression fit cost seconds of CPU per candidate on this machine)."""
    import torch  # here only: ``ahl rank``'s defaults and --help come from this module without torch

    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    x_all = torch.as_tensor(features, dtype=torch.float64)
    targets = torch.nn.functional.one_hot(y, num_labels).to(torch.float64)
    ids = fold_ids(list(labels), folds)
    scores = torch.zeros(len(y), num_labels, dtype=torch.float64)
    for fold in range(folds):
        test = torch.as_tensor(ids == fold)
        train = ~test
        if not test.any() or not train.any():
            continue
        mean, std = x_all[train].mean(0), x_all[train].std(0).clamp(min=1e-6)
        x_train, x_test = (x_all[train] - mean) / std, (x_all[test] - mean) / std
        offset = targets[train].mean(0)
        gram = x_train.T @ x_train + l2 * int(train.sum()) * torch.eye(x_all.size(1), dtype=torch.float64)
        weight = torch.linalg.solve(gram, x_train.T @ (targets[train] - offset))
        scores[test] = x_test @ weight + offset
    metrics = compute_metrics("classification", scores.numpy(), y.numpy())
    mse = float(((scores - targets) ** 2).sum(1).mean())
    return {"accuracy": float(metrics["accuracy"]), "macro_f1": float(metrics["macro_f1"]), "mse": mse}


def _order(candidate: RankedAdapter) -> tuple[Any, ...]:
    """Best first: probe gain (then higher macro-F1), else similarity; ties by task and name."""
    if candidate.gain is not None:
        f1 = candidate.probe["macro_f1"] if candidate.probe else 0.0
        return (0, -round(candidate.gain, 12), -f1, candidate.task, candidate.name)
    if candidate.similarity is not None:
        return (1, -candidate.similarity, 0.0, candidate.task, candidate.name)
    return (2, 0.0, 0.0, candidate.task, candidate.name)


# -- candidates ---------------------------------------------------------------------------------


def _candidates(
    adapters: Sequence[str | Path] | None,
    registry: Any,
    target: TaskEmbedding | None,
    base_id: str,
    pool: int,
    workdir: Path,
) -> list[RankedAdapter]:
    """Named adapters (directories or refs, fetched), or the ``pool`` entries of ``base_id`` in
    ``registry`` most similar to the target, pulled (verified) into ``workdir``."""
    from .hub import fetch, open_registry

    out = []
    if adapters:
        for i, source in enumerate(adapters):
            path = fetch(str(source), to=workdir / f"c{i}", registry=registry)
            meta = read_artifact(path).metadata
            if meta.get("kind") != "adapter" or not meta.get("adapter"):
                raise ConfigError(f"{source}: holds no adapter (kind {meta.get('kind')}); rank trained adapters")
            own = embedding_of(meta)
            out.append(
                RankedAdapter(
                    str(source),
                    meta["name"],
                    meta["task"],
                    own.similarity(target) if own and target else None,
                    path=path,
                )
            )
        return out
    if target is None:
        raise ConfigError("ranking a registry needs the target's task embedding")
    reg = open_registry(registry)
    for i, (entry, score) in enumerate(reg.search_like(target, base=base_id, top=pool)):
        if entry.summary.get("kind", "adapter") != "adapter" or entry.summary.get("architecture") in (
            "fusion",
            "head_only",
        ):
            continue
        path = fetch(str(entry.ref), to=workdir / f"c{i}", registry=registry)
        out.append(RankedAdapter(str(entry.ref), entry.ref.name, entry.ref.task, score, path=path))
    return out


def rank(
    train_data: str | Path | ExampleSet,
    *,
    adapters: Sequence[str | Path] | None = None,
    registry: Any = None,
    top: int | None = None,
    pool: int = DEFAULT_POOL,
    base: str | BaseModel | None = None,
    columns: Columns | None = None,
    probe: bool = True,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    folds: int = DEFAULT_FOLDS,
    max_length: int = 128,
    exclude: Sequence[str] = (),
    on_candidate: Callable[[RankedAdapter], None] | None = None,
    workdir: str | Path | None = None,
) -> Ranking:
    """Estimate how much each candidate adapter helps a target task, best first.

    Args:
        train_data: the target's labelled training data (classification).
        adapters: candidates by directory or registry ref; without them, the ``pool`` entries
            of the base in ``registry`` most similar to the target (task embeddings) are probed.
        top: keep this many (default: all).
        probe: run the transfer probe; off, the order is by similarity alone (no forward pass
            over any candidate).
        max_examples: the probe's examples at most (evenly spaced over the file).
        folds: cross-validation folds of the probe.
        exclude: candidate names or tasks to leave out (e.g. the target's own adapter).
        workdir: where pulled candidates are kept (default: a temporary directory that is
            removed, after which each candidate's ``path`` no longer exists).

    Raises:
        DataError: the data has fewer examples than ``folds`` or one label only.
        ConfigError: no candidate, or a candidate is not an adapter.
        IncompatibleBaseError: a candidate was trained on another base.

    Example:
        >>> ranking = rank("train.csv", registry="./registry", top=3)
        >>> [(c.task, round(c.gain, 3)) for c in ranking.candidates]
    """
    from .api import _add_stored_adapter, check_base, pad_id_of
    from .model import AdapterModel

    start = time.perf_counter()
    data = train_data if isinstance(train_data, ExampleSet) else load_examples(train_data, columns or Columns())
    if probe and folds < 2:
        raise ConfigError("the probe needs at least 2 folds")
    if probe and max_examples < folds:  # each fold needs an example; 0 would index an empty sample
        raise ConfigError(f"the probe needs max examples >= folds ({folds}); raise --max-examples")
    labels_all = [str(e.label) for e in data.examples]
    if probe and (len(set(labels_all)) < 2 or len(data) < folds):
        raise DataError(f"{data.source}: the probe needs at least {folds} examples and two labels")
    loaded = base if isinstance(base, BaseModel) else load_base(base)
    target = compute_task_embedding(loaded, data, max_length=max_length)
    with tempfile.TemporaryDirectory(prefix="ahl-rank-") as tmp:
        candidates = _candidates(adapters, registry, target, loaded.model_id, pool, Path(workdir or tmp))
        candidates = [c for c in candidates if c.name not in exclude and c.task not in exclude]
        if not candidates:
            raise ConfigError(
                "no candidate adapters to rank (the registry holds none with a task embedding for "
                "this base; name them with --adapters)"
            )
        artifacts: dict[str, Artifact] = {}
        for c in candidates:
            assert c.path is not None  # every candidate found here was fetched
            artifacts[c.source] = read_artifact(c.path)
            check_base(artifacts[c.source].metadata, loaded)
        base_probe = None
        used = min(len(data), max_examples)
        if probe:
            picked = ExampleSet([data.examples[i] for i in sample_indices(len(data), max_examples)], data.source)
            names = label_names_from(picked)
            labels = [names.index(str(e.label)) for e in picked.examples]
            enc = tokenize(loaded.tokenizer, picked, max_length, None)
            model = AdapterModel(loaded)
            model.eval()
            pad = pad_id_of(loaded.tokenizer)
            base_features = pooled_features(model.encode, enc, pad_id=pad)
            base_probe = probe_score(base_features, labels, len(names), folds)
            for i, c in enumerate(candidates):
                began = time.perf_counter()
                art = artifacts[c.source]
                name = f"candidate{i}"
                _add_stored_adapter(model, Artifact(art.path, {**art.metadata, "name": name}))
                model.active = name
                try:
                    features = pooled_features(model.encode, enc, pad_id=pad)
                finally:
                    model.active = None
                    del model.adapters[name]
                    model.adapter_configs.pop(name, None)
                c.probe = probe_score(features, labels, len(names), folds)
                c.gain = base_probe["mse"] - c.probe["mse"]
                c.seconds = time.perf_counter() - began
                if on_candidate:
                    on_candidate(c)
            model.remove_hooks()  # the base outlives this model
        candidates.sort(key=_order)
        if top is not None:
            candidates = candidates[:top]
        if workdir is None:
            for c in candidates:
                c.path = None
    return Ranking(candidates, base_probe, used, folds, "probe" if probe else "similarity", time.perf_counter() - start)
