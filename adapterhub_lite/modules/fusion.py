"""AdapterFusion at one adapter site (Pfeiffer et al. 2021, §3.2), computed in bottleneck space.

With the adapter input ``u`` (the query's source), adapter ``i``'s update
``a_i = U_i z_i + c_i`` where ``z_i = f_i(D_i u + e_i)`` is its ``r``-dimensional bottleneck:

    Q = W_q u + b_q
    s_i = Q . (W_k a_i + b_k) / T        softmax over i gives p
    o = sum_i p_i W_v a_i = W_v (sum_i p_i a_i)

Because ``Q . b_k`` is the same for every adapter it cancels in the softmax, and
``Q . W_k a_i = (W_k^T Q) . (U_i z_i + c_i)``. So the keys never need to be formed in the
hidden dimension: one matmul gives every adapter's bottleneck, one maps ``W_k^T Q`` into all
bottlenecks at once, and the value map is applied once, to the mixture. The straightforward
per-adapter form is kept as :func:`fuse_reference`; tests hold the two equal.
"""

from __future__ import annotations

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


class StackedAdapters:
    """The frozen adapters of one site as stacked, zero-padded weights: one matmul for all.

    Padding is exact: a padded bottleneck unit has zero weights and bias, every supported
    non-linearity maps 0 to 0, and its up-projection column is zero.
    """

    def __init__(self, adapters: list[BottleneckAdapter]) -> None:
        self.adapters = adapters
        self.width = max(a.down.out_features for a in adapters)
        acts = {type(a.act) for a in adapters}
        # The common case, one non-linearity for all adapters, is applied in one call.
        self.shared_act = adapters[0].act if len(acts) == 1 else None

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``D [N*r, d]``, ``e [N*r]``, ``U [d, N*r]``, ``C [N, d]`` (r = the widest bottleneck)."""
        r = self.width
        pad_rows = lambda w: F.pad(w, (0, 0, 0, r - w.size(0)))
        down = torch.cat([pad_rows(a.down.weight) for a in self.adapters])
        down_bias = torch.cat([F.pad(a.down.bias, (0, r - a.down.bias.size(0))) for a in self.adapters])
        up = torch.cat([F.pad(a.up.weight, (0, r - a.up.weight.size(1))) for a in self.adapters], dim=1)
        up_bias = torch.stack([a.up.bias for a in self.adapters])
        return down, down_bias, up, up_bias

    def bottlenecks(self, u: torch.Tensor, down: torch.Tensor, down_bias: torch.Tensor) -> torch.Tensor:
        """Every adapter's bottleneck activations, ``[..., N, r]``."""
        z = F.linear(u, down, down_bias).unflatten(-1, (len(self.adapters), self.width))
        if self.shared_act is not None:
            return self.shared_act(z)
        return torch.stack([a.act(z[..., i, :]) for i, a in enumerate(self.adapters)], dim=-2)


def fuse(u: torch.Tensor, stack: StackedAdapters, layer: FusionLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused update ``W_v sum_i p_i a_i`` and the attention ``p`` (``[..., N]``)."""
    down, down_bias, up, up_bias = stack.tensors()
    z = stack.bottlenecks(u, down, down_bias)  # [..., N, r]
    q = layer.query(u) @ layer.key.weight  # W_k^T Q as a row vector; b_k cancels in the softmax
    scores = ((q @ up).unflatten(-1, z.shape[-2:]) * z).sum(-1) + q @ up_bias.T  # [..., N]
    p = torch.softmax(scores / layer.config.temperature, dim=-1)
    mixture = (z * p.unsqueeze(-1)).flatten(-2) @ up.T + p @ up_bias  # sum_i p_i a_i
    return layer.value(mixture), p


def fuse_reference(u: torch.Tensor, adapters: list[BottleneckAdapter], layer: FusionLayer) -> torch.Tensor:
    """The same output computed adapter by adapter, as the paper writes it (for tests)."""
    outputs = [adapter(u) for adapter in adapters]
    query = layer.query(u)
    scores = torch.stack([(query * layer.key(a)).sum(-1) for a in outputs], dim=-1)
    p = torch.softmax(scores / layer.config.temperature, dim=-1)
    return sum(p[..., i : i + 1] * layer.value(a) for i, a in enumerate(outputs))
