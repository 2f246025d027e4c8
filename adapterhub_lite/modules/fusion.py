"""AdapterFusion at one adapter site (Pfeiffer et al. 2021, §3.2), computed in bottleneck space.

With the adapter input ``u`` (the query's source), adapter ``i``'s update
``a_i = U_i z_i + c_i`` where ``z_i = f_i(D_i u + e_i)`` is its ``r``-dimensional bottleneck:

    Q = W_q u + b_q
    s_i = Q . (W_k a_i + b_k) / T        softmax over i gives p
    o = sum_i p_i W_v a_i = W_v (sum_i p_i a_i)

Write ``[z_i | 1]`` for the bottleneck with a constant unit appended, so that
``a_i = [U_i | c_i] [z_i | 1]``. Then:

* ``Q . b_k`` is the same for every adapter: it cancels in the softmax and is never computed;
* ``Q . W_k a_i / T = (u A_i + b_q^T K_i) . [z_i | 1]`` with ``K_i = W_k [U_i | c_i] / T`` and
  ``A_i = W_q^T K_i`` (``d x (r+1)``): the score needs only ``u A``, ``r + 1`` numbers per adapter;
* ``W_v sum_i p_i a_i = sum_i (W_v [U_i | c_i]) p_i [z_i | 1]``: the value map is folded into the
  stacked up-projections.

``A`` and ``W_v [U | c]`` are formed once per forward (``O(d^2 N r)``, not per token; cached
while nothing trains). Per token, one matmul gives every bottleneck (``D``), one every score
coefficient (``A``), one maps the attention-weighted bottlenecks back to the hidden size: about
``3 d N (r+1)`` multiply-adds, where forming keys and values in the hidden size costs
``3 d^2 + ...``; nothing of shape ``[..., N, d]`` exists, in the forward or the backward. The
constant unit is never materialised: the weights keep every adapter's ``r`` bottleneck columns
first and the ``N`` constant columns after them, so the bias terms are an ``[..., N]`` addition
(no padded copy of ``[..., N, r]``). Without a gradient (inference, dev evaluation) the tokens
go through in chunks, so that the ``[tokens, N, r]`` temporaries stay in the CPU's cache: at
N = 64 that made this function about 30% cheaper, down to the cost of its three matmuls. The
straightforward per-adapter form is kept as :func:`fuse_reference`; the tests hold the two
equal, outputs and gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ..config import FusionConfig
from .adapter import BottleneckAdapter


class FusionLayer(nn.Module):
    """The Query, Key and Value maps of one site; V starts as the identity (plus tiny noise)."""

    def __init__(self, hidden_size: int, config: FusionConfig) -> None:
        super().__init__()
        self.config = config
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size, bias=False)
        with torch.no_grad():
            for linear in (self.query, self.key):
                linear.weight.normal_(0.0, config.query_key_init_std)
                nn.init.zeros_(linear.bias)
            noise = torch.randn(hidden_size, hidden_size) * config.value_init_noise
            self.value.weight.copy_(noise.fill_diagonal_(1.0))

    def value_penalty(self) -> torch.Tensor:
        """``||W_v - I||^2``: the L2 pull of V towards the identity (§4.1)."""
        eye = torch.eye(self.value.weight.size(0), device=self.value.weight.device)
        return (self.value.weight - eye).pow(2).sum()


class Stacked(NamedTuple):
    """The adapters of one site as one set of weights (``r`` = the widest bottleneck)."""

    down: torch.Tensor  # [d, N*r]: every down-projection, transposed for ``u @ down``
    down_bias: torch.Tensor  # [N*r]
    up: torch.Tensor  # [d, N*r + N]: every up-projection, then every up-bias as one column each


class FusedWeights(NamedTuple):
    """What :func:`fuse` multiplies ``u`` and the attention-weighted bottlenecks by."""

    scores: torch.Tensor  # [d, N*r + N]: W_q^T W_k [U | c] / T, the score coefficients of u
    scores_bias: torch.Tensor  # [N*r + N]: b_q^T W_k [U | c] / T
    out: torch.Tensor  # [N*r, d]: (W_v U)^T
    out_bias: torch.Tensor  # [N, d]: (W_v c)^T


def _versions(tensors: Sequence[torch.Tensor]) -> tuple[tuple[int, int, torch.device, torch.dtype], ...]:
    """A key that changes whenever a tensor is written in place or replaced (``.to``, ``load_state_dict``)."""
    return tuple((t._version, t.data_ptr(), t.device, t.dtype) for t in tensors)


class StackedAdapters:
    """The adapters of one site as stacked, zero-padded weights: one matmul for all.

    Padding is exact: a padded bottleneck unit has zero weights and bias, every supported
    non-linearity maps 0 to 0, and its up-projection column is zero.

    Frozen adapters (the fusion training stage, and inference) are stacked once and reused
    until one of their weights changes; so are the fused weights of :func:`fuse` while no
    gradient is wanted (inference).
    """

    def __init__(self, adapters: list[BottleneckAdapter]) -> None:
        self.adapters = adapters
        self.width = max(a.down.out_features for a in adapters)
        acts = {type(a.act) for a in adapters}
        # The common case, one non-linearity for all adapters, is applied in one call.
        self.shared_act = adapters[0].act if len(acts) == 1 else None
        self._params = [p for a in adapters for p in a.parameters()]
        self._stacked: tuple[tuple[object, ...], Stacked] | None = None
        self._fused: tuple[tuple[object, ...], FusedWeights] | None = None

    def tensors(self) -> Stacked:
        """The stacked weights; cached while no adapter weight requires a gradient."""
        if any(p.requires_grad for p in self._params):
            return self._stack()
        key = _versions(self._params)
        if self._stacked is None or self._stacked[0] != key:
            # Built as ordinary tensors even under inference_mode: a later training forward
            # saves them for backward, which inference tensors cannot be.
            with torch.inference_mode(False), torch.no_grad():
                self._stacked = (key, self._stack())
        return self._stacked[1]

    def _stack(self) -> Stacked:
        r = self.width
        down = torch.cat([F.pad(a.down.weight, (0, 0, 0, r - a.down.out_features)) for a in self.adapters])
        down_bias = torch.cat([F.pad(a.down.bias, (0, r - a.down.out_features)) for a in self.adapters])
        up = [F.pad(a.up.weight, (0, r - a.up.in_features)) for a in self.adapters]
        up_bias = [a.up.bias[:, None] for a in self.adapters]
        return Stacked(down.T.contiguous(), down_bias, torch.cat([*up, *up_bias], 1))

    def fused_weights(self, layer: FusionLayer) -> FusedWeights:
        """:class:`FusedWeights` for ``layer``; cached while nothing needs a gradient."""
        params = [*self._params, *layer.parameters()]
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return _fused_weights(self.tensors(), layer)
        key = (id(layer), *_versions(params))
        if self._fused is None or self._fused[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                self._fused = (key, _fused_weights(self.tensors(), layer))
        return self._fused[1]

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        """Every adapter's non-linearity on its pre-activations ``[..., N, r]``."""
        if self.shared_act is not None:
            return self.shared_act(z)
        return torch.stack([a.act(z[..., i, :]) for i, a in enumerate(self.adapters)], dim=-2)


def _fused_weights(stacked: Stacked, layer: FusionLayer) -> FusedWeights:
    # Right to left, every product stays [d, N (r+1)]: no d x d x d product is formed.
    keys = layer.key.weight @ stacked.up  # W_k [U | c]
    if layer.config.temperature != 1.0:
        keys = keys / layer.config.temperature
    # [W_q | b_q]^T keys: u . (W_q^T keys) + b_q . keys = Q . W_k a_i / T in one product; b_k is
    # left out: it cancels in the softmax.
    scores = torch.cat([layer.query.weight, layer.query.bias[:, None]], 1).T @ keys
    values = (layer.value.weight @ stacked.up).T
    nr = stacked.down.size(1)
    return FusedWeights(scores[:-1], scores[-1], values[:nr], values[nr:])


# Tokens per chunk when no gradient is wanted: a 64-adapter fusion's [512, N, r] temporaries
# (about 3 MiB each) stay in cache; larger chunks measured slower, smaller ones no faster.
CHUNK_TOKENS = 512


def fuse(u: torch.Tensor, stack: StackedAdapters, layer: FusionLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused update ``W_v sum_i p_i a_i`` and the attention ``p`` (``[..., N]``)."""
    stacked, weights = stack.tensors(), stack.fused_weights(layer)
    flat = u.reshape(-1, u.size(-1))
    if torch.is_grad_enabled() or flat.size(0) <= CHUNK_TOKENS:
        update, p = _fuse_tokens(flat, stack, stacked, weights)
    else:
        parts = [_fuse_tokens(chunk, stack, stacked, weights) for chunk in flat.split(CHUNK_TOKENS)]
        update, p = torch.cat([part[0] for part in parts]), torch.cat([part[1] for part in parts])
    return update.view(*u.shape[:-1], -1), p.view(*u.shape[:-1], len(stack.adapters))


def _fuse_tokens(
    flat: torch.Tensor, stack: StackedAdapters, stacked: Stacked, weights: FusedWeights
) -> tuple[torch.Tensor, torch.Tensor]:
    t, n, r = flat.size(0), len(stack.adapters), stack.width
    nr = n * r
    # Two matmuls rather than one over [D | scores]: the frozen D then gets no weight gradient.
    z = stack.activate(torch.addmm(stacked.down_bias, flat, stacked.down).view(t, n, r))  # [t, N, r]
    coefficients = torch.addmm(weights.scores_bias, flat, weights.scores)  # [t, N*r + N]
    # elementwise product and sum, not einsum: its batched-matmul backward is slow on the CPU
    p = torch.softmax((z * coefficients[:, :nr].view(t, n, r)).sum(-1) + coefficients[:, nr:], dim=-1)
    # W_v sum_i p_i (U_i z_i + c_i)
    update = torch.addmm(p @ weights.out_bias, (z * p.unsqueeze(-1)).view(t, nr), weights.out)
    return update, p


def fuse_reference(u: torch.Tensor, adapters: list[BottleneckAdapter], layer: FusionLayer) -> torch.Tensor:
    """The same output computed adapter by adapter, as the paper writes it (for tests)."""
    outputs = [adapter(u) for adapter in adapters]
    query = layer.query(u)
    scores = torch.stack([(query * layer.key(a)).sum(-1) for a in outputs], dim=-1)
    p = torch.softmax(scores / layer.config.temperature, dim=-1)
    return sum(p[..., i : i + 1] * layer.value(a) for i, a in enumerate(outputs))
