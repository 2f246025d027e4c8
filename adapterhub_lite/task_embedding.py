"""Task embeddings: a compact, fixed-size summary of a data set, computed with the frozen base.

An adapter's artifact records the embedding of its training data (SPEC 2.8), so that a registry
can rank its adapters by how similar their training data is to a user's data (``ahl search
--like``), as SEmb does (Poth et al., 2021, "What to Pre-Train on?"). The recipe, exactly:

1. take at most ``examples`` (default 256) examples of the data, at the evenly spaced indices
   ``floor(i * n / k)`` for ``i < k`` (all of them when ``n <= k``), in file order;
2. tokenise each one as training does (text, and the text pair when there is one; truncated to
   ``max_length`` tokens);
3. run the frozen base alone (no adapter), mean-pool the last hidden states over the real tokens
   (attention mask), and L2-normalise each example's vector: a sentence embedding;
4. average these vectors over the examples and store the mean as little-endian float16, base64.

Similarity between two embeddings is their cosine. No text is stored, only the mean vector.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ArtifactError
from .training.data import Encoded, Example, ExampleSet, collate, sorted_batches, tokenize

# The registry and ``ahl serve`` read, store and rank embeddings with numpy alone; torch (seconds to
# import) is imported only where one is computed.
if TYPE_CHECKING:
    import torch

    from .base import BaseModel

METHOD = "mean-sentence-v1"
DEFAULT_EXAMPLES = 256
MAX_DIM = 8192  # the widest hidden size a summary may claim; anything larger is refused


@dataclass(frozen=True)
class TaskEmbedding:
    """The mean sentence embedding of (a sample of) a data set under one base model."""

    vector: np.ndarray  # float32 copy of the stored float16 values
    examples: int
    max_length: int
    method: str = METHOD

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in ``adapter.json`` and in registry summaries."""
        data = self.vector.astype("<f2").tobytes()
        return {
            "method": self.method,
            "dtype": "float16",
            "dim": int(self.vector.size),
            "examples": self.examples,
            "max_length": self.max_length,
            "vector": base64.b64encode(data).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "task embedding") -> TaskEmbedding:
        """Validate and decode the JSON form (it may come from a hostile server).

        Raises:
            ArtifactError: a field is missing or malformed, the method unknown, or a value not finite.
        """
        if not isinstance(data, dict):
            raise ArtifactError(f"{where}: must be an object")
        method, dim, vector = data.get("method"), data.get("dim"), data.get("vector")
        if method != METHOD:
            raise ArtifactError(f"{where}: unknown method {method!r} (this version reads {METHOD})")
        if data.get("dtype") != "float16" or not isinstance(dim, int) or not 0 < dim <= MAX_DIM:
            raise ArtifactError(f"{where}: needs dtype float16 and a dim in 1..{MAX_DIM}")
        if not isinstance(vector, str) or len(vector) != 4 * math.ceil(2 * dim / 3):
            raise ArtifactError(f"{where}: vector must be the base64 of {dim} float16 values")
        try:
            raw = base64.b64decode(vector, validate=True)
        except ValueError:
            raise ArtifactError(f"{where}: vector is not valid base64") from None
        values = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        if values.size != dim or not np.isfinite(values).all():
            raise ArtifactError(f"{where}: vector must hold {dim} finite float16 values")
        examples, max_length = data.get("examples"), data.get("max_length")
        if not isinstance(examples, int) or examples < 1 or not isinstance(max_length, int) or max_length < 1:
            raise ArtifactError(f"{where}: examples and max_length must be positive integers")
        return cls(values, examples, max_length, method)

    def similarity(self, other: TaskEmbedding | np.ndarray) -> float:
        """Cosine similarity (0.0 when either vector is zero or the sizes differ)."""
        b = other.vector if isinstance(other, TaskEmbedding) else np.asarray(other, dtype=np.float32)
        if b.shape != self.vector.shape:
            return 0.0
        norm = float(np.linalg.norm(self.vector) * np.linalg.norm(b))
        return float(self.vector @ b) / norm if norm > 0 else 0.0


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` with each row divided by its L2 norm (zero rows stay zero): the cosine with a
    unit query is then one matrix-vector product."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def sample_indices(n: int, k: int) -> list[int]:
    """Evenly spaced indices ``floor(i * n / k)``: deterministic and spread over the whole file
    (a file sorted by label still contributes every label)."""
    return list(range(n)) if n <= k else [i * n // k for i in range(k)]


def text_examples(data: ExampleSet) -> ExampleSet:
    """The examples as text (+ pair) only: labels and answer candidates play no part."""
    return ExampleSet([Example(e.text, e.text_pair) for e in data.examples], data.source)


def pooled_features(
    encode: Any, enc: Encoded, *, pad_id: int, batch_size: int = 64, device: torch.device | None = None
) -> np.ndarray:
    """Mean-pooled, L2-normalised last hidden states, one row per example, in input order.

    ``encode(input_ids, attention_mask, **rest)`` returns ``[batch, seq, hidden]``: the base
    encoder alone, or :meth:`AdapterModel.encode` with an adapter active.
    """
    import torch

    order: list[int] = []
    rows: list[np.ndarray] = []
    with torch.no_grad():
        for ids in sorted_batches(enc.lengths, batch_size):
            batch = collate([enc.features[i] for i in ids], pad_id)
            if device is not None:
                batch = {k: v.to(device) for k, v in batch.items()}
            mask = batch["attention_mask"]
            hidden = encode(**batch)
            if not isinstance(hidden, torch.Tensor):
                hidden = hidden[0]
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
            order.extend(ids)
            rows.extend(pooled.cpu().numpy())
    return np.stack(rows)[np.argsort(order)]  # rows[k] is example order[k]


def compute_task_embedding(
    base: BaseModel, data: ExampleSet, *, examples: int = DEFAULT_EXAMPLES, max_length: int = 128, batch_size: int = 64
) -> TaskEmbedding:
    """The task embedding of ``data`` under ``base`` (the recipe in the module docstring)."""
    if examples < 1:
        raise ValueError("examples must be >= 1")
    chosen = text_examples(data)
    chosen = ExampleSet([chosen.examples[i] for i in sample_indices(len(chosen), examples)], data.source)
    tok = base.tokenizer
    enc = tokenize(tok, chosen, max_length, None)
    pad = getattr(tok, "pad_token_id", None)
    encoder = base.encoder
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    try:
        features = pooled_features(
            lambda **b: encoder(**b)[0], enc, pad_id=int(pad or 0), batch_size=batch_size, device=device
        )
    finally:
        encoder.train(was_training)
    mean = features.mean(0).astype(np.float16).astype(np.float32)  # what is stored is what is compared
    return TaskEmbedding(mean, len(chosen), max_length)


def embedding_of(summary_or_metadata: dict[str, Any], where: str = "task embedding") -> TaskEmbedding | None:
    """The task embedding a summary or artifact metadata carries, or None (absent or unreadable:
    an entry without a usable embedding is ranked by other means, never trusted blindly)."""
    data = summary_or_metadata.get("task_embedding")
    if data is None:
        return None
    try:
        return TaskEmbedding.from_dict(data, where)
    except ArtifactError:
        return None
