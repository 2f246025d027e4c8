"""Prediction heads: classification, regression and multiple choice over a pooled sequence."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..config import HeadConfig


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """Summarise ``[batch, seq, hidden]`` as ``[batch, hidden]``: first token or masked mean."""
    if how == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class PredictionHead(nn.Module):
    """Two-layer head as in BERT-style classifiers: dense, tanh, dense.

    Multiple choice scores every candidate with one output and returns ``[batch, choices]``
    logits; the caller flattens candidates into the batch and passes ``num_choices``.
    """

    def __init__(self, hidden_size: int, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        self.dropout = nn.Dropout(config.dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, config.num_outputs)

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, num_choices: int | None = None
    ) -> torch.Tensor:
        x = pool(hidden, attention_mask, self.config.pooling)
        x = torch.tanh(self.dense(self.dropout(x)))
        logits = self.out(self.dropout(x))
        if self.config.type == "multiple_choice":
            return logits.view(-1, num_choices or 1)
        if self.config.type == "regression":
            return logits.squeeze(-1)
        return logits


def head_loss(
    head_type: str, logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The training loss of a head: cross-entropy (optionally class-weighted), or mean squared
    error for regression."""
    if head_type == "regression":
        return F.mse_loss(logits.float(), labels.float())
    return F.cross_entropy(logits.float(), labels, weight=class_weights)
