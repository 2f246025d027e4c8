"""The bottleneck adapter: ``W_up f(W_down u + b_down) + b_up`` (Houlsby et al. 2019)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import AdapterConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,  # swish with beta = 1 is SiLU
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
}


class BottleneckAdapter(nn.Module):
    """Down-project to ``hidden // reduction_factor``, apply the non-linearity, project back up.

    The residual connection lives outside (see :mod:`adapterhub_lite.model`): this module returns
    only the update ``a`` so that several adapters' updates can be mixed (fusion).
    """

    def __init__(self, hidden_size: int, config: AdapterConfig) -> None:
        super().__init__()
        bottleneck = max(1, hidden_size // config.reduction_factor)
        self.down = nn.Linear(hidden_size, bottleneck)
        self.act = ACTIVATIONS[config.non_linearity]()
        self.up = nn.Linear(bottleneck, hidden_size)
        self.reset_parameters(config.init)

    @torch.no_grad()
    def reset_parameters(self, init: str) -> None:
        """Initialise the weights as ``init`` names (see :class:`AdapterConfig`)."""
        for linear in (self.down, self.up):
            nn.init.zeros_(linear.bias)
        if init == "bert":
            self.down.weight.normal_(0.0, 0.02)
            self.up.weight.normal_(0.0, 0.02)
        elif init == "zero_up":
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
            nn.init.zeros_(self.up.weight)
        elif init == "houlsby":
            nn.init.trunc_normal_(self.down.weight, std=1e-2, a=-2e-2, b=2e-2)
            nn.init.trunc_normal_(self.up.weight, std=1e-2, a=-2e-2, b=2e-2)
        else:
            raise ValueError(f"unknown init {init!r}")

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(u)))
