"""Metrics: accuracy (the paper's), macro-F1, Pearson and Spearman correlation."""

from __future__ import annotations

import numpy as np


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float((pred == gold).mean()) if len(gold) else 0.0


def macro_f1(pred: np.ndarray, gold: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in gold or predictions."""
    scores = []
    for c in range(num_classes):
        tp = int(((pred == c) & (gold == c)).sum())
        fp = int(((pred == c) & (gold != c)).sum())
        fn = int(((pred != c) & (gold == c)).sum())
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties sharing their average rank, as Spearman's rho requires."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return pearson(_ranks(x), _ranks(y))


def compute_metrics(head_type: str, outputs: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """All metrics of a head type from raw outputs (logits or scores) and gold targets."""
    if head_type == "regression":
        return {
            "pearson": pearson(outputs, gold),
            "spearman": spearman(outputs, gold),
            "mse": float(((outputs - gold) ** 2).mean()),
        }
    pred = outputs.argmax(-1)
    metrics = {"accuracy": accuracy(pred, gold)}
    if head_type == "classification":
        metrics["macro_f1"] = macro_f1(pred, gold, outputs.shape[-1])
    return metrics
