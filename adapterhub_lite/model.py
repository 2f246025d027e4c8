"""AdapterModel: a frozen base encoder carrying named bottleneck adapters and a prediction head.

Adapters enter the encoder through forward hooks on the modules that
:mod:`adapterhub_lite.architectures` names; the base model's classes and weights are untouched.
At a site with sublayer output ``h``, sublayer input ``x`` and pretrained LayerNorm ``LN``:

* ``original_ln_before`` (Pfeiffer): a pre-hook on ``LN`` turns its input ``s = h + x`` into
  ``s + A(LN(s))``, so that ``LN`` yields ``LN(h + x + A(y))`` with ``y = LN(h + x)``: the
  pretrained LayerNorm before and after the adapter.
* otherwise (Houlsby): a hook on the module producing ``h`` turns it into ``h + A(h)``, which the
  model's own code then normalises as ``LN(h + A(h) + x)``.

Either way a zero up-projection (weights and bias) leaves the base output unchanged.

Hooks act only while their own model runs (``forward`` / ``encode``), so several AdapterModels
can share one loaded encoder without their adapters leaking into each other.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import nn

from .architectures import AdapterSite, adapter_sites
from .base import BaseModel
from .config import POSITIONS, AdapterConfig, FusionConfig, HeadConfig
from .errors import ConfigError
from .modules.adapter import BottleneckAdapter
from .modules.fusion import FusionLayer, StackedAdapters, fuse
from .modules.heads import PredictionHead

HEAD_PREFIX = "head."

# Tokens per encoder call in CPU inference (see AdapterModel.encode). Every sublayer's
# temporaries scale with the tokens in flight; the feed-forward block's are the largest, and
# they outlive the FFN adapter site ([tokens, 4 x hidden] floats: 24 MiB for a batch of 32 x 128
# in MiniLM). Slices of 2048 tokens keep them a quarter of that, which lowers peak RSS by
# 50-80 MiB for that batch, while the matmuls stay large enough to run at full speed on the CPU.
# A GPU wants the whole batch at once, and under autograd every slice's activations stay alive
# until backward anyway, so slicing is for CPU inference only.
INFERENCE_SLICE_TOKENS = 2048


class AdapterModel(nn.Module):
    """A frozen base + named adapters + one prediction head.

    Example:
        >>> model = AdapterModel(load_base())
        >>> model.add_adapter("sst2", AdapterConfig.from_preset("pfeiffer"))
        >>> model.set_head(HeadConfig(label_names=["neg", "pos"]))
        >>> logits = model(**batch)

    ``inference_slice_tokens`` (default :data:`INFERENCE_SLICE_TOKENS`) bounds the tokens per
    encoder call in CPU inference; ``None`` runs every batch whole.
    """

    def __init__(self, base: BaseModel) -> None:
        super().__init__()
        self.base = base
        self.encoder = base.encoder
        self.hidden_size = base.fingerprint.hidden_size
        self.model_type = base.fingerprint.model_type
        self.adapters = nn.ModuleDict()
        self.adapter_configs: dict[str, AdapterConfig] = {}
        self.head: PredictionHead | None = None
        self.active: str | None = None
        # AdapterFusion layers by name, and which adapters each one mixes.
        self.fusions = nn.ModuleDict()
        self.fusion_configs: dict[str, FusionConfig] = {}
        self.fusion_members: dict[str, tuple[str, ...]] = {}
        self.active_fusion: str | None = None
        # Stacked adapter weights per (fusion, layer, position): built once, reused every forward.
        self._stacks: dict[tuple[str, int, str], StackedAdapters] = {}
        # While recording: site key -> [sum of attention over real tokens (per adapter), token count].
        self._activations: dict[str, list[Any]] | None = None
        self._token_mask: torch.Tensor | None = None
        # Dropout inside the frozen base while training adapters (see TrainConfig.base_dropout).
        self.base_dropout = True
        self.inference_slice_tokens: int | None = INFERENCE_SLICE_TOKENS
        self._running = False
        self._sites = adapter_sites(self.encoder, self.model_type, POSITIONS)
        self._hooks = [handle for site in self._sites for handle in self._hook(site)]

    # -- adapters ---------------------------------------------------------------------------

    def add_adapter(self, name: str, config: AdapterConfig, *, activate: bool = True) -> None:
        """Create a new adapter at every layer and position its config names."""
        config.validate()
        if name in self.adapters:
            raise ConfigError(f"an adapter named {name!r} is already in the model")
        layers = nn.ModuleList()
        for _ in range(self.base.fingerprint.num_layers):
            layers.append(nn.ModuleDict({p: BottleneckAdapter(self.hidden_size, config) for p in config.positions}))
        device = next(self.encoder.parameters()).device
        self.adapters[name] = layers.to(device)
        self.adapter_configs[name] = config
        if activate:
            self.active, self.active_fusion = name, None

    def add_fusion(
        self, name: str, adapter_names: list[str], config: FusionConfig | None = None, *, activate: bool = True
    ) -> tuple[str, ...]:
        """Add an AdapterFusion layer over existing adapters at every position they share.

        Returns the positions fused. Adapters that read different inputs (Pfeiffer-style
        after the LayerNorm, Houlsby-style before it) cannot be mixed at one site.
        """
        config = config or FusionConfig()
        config.validate()
        if name in self.fusions:
            raise ConfigError(f"a fusion named {name!r} is already in the model")
        missing = [n for n in adapter_names if n not in self.adapters]
        if missing or len(set(adapter_names)) < 2:
            raise ConfigError(f"a fusion needs at least two distinct adapters of this model; unknown: {missing}")
        configs = [self.adapter_configs[n] for n in adapter_names]
        if len({c.original_ln_before for c in configs}) > 1:
            raise ConfigError(
                "cannot fuse adapters that read the pretrained LayerNorm's output (e.g. pfeiffer) with "
                "adapters that read the sublayer output (e.g. houlsby); fuse adapters of one placement"
            )
        positions = tuple(p for p in POSITIONS if all(p in c.positions for c in configs))
        if not positions:
            raise ConfigError(f"adapters {', '.join(adapter_names)} share no position to fuse at")
        device = next(self.encoder.parameters()).device
        layers = nn.ModuleList(
            nn.ModuleDict({p: FusionLayer(self.hidden_size, config) for p in positions})
            for _ in range(self.base.fingerprint.num_layers)
        )
        self.fusions[name] = layers.to(device)
        self.fusion_configs[name] = config
        self.fusion_members[name] = tuple(adapter_names)
        if activate:
            self.active_fusion = name
        return positions

    def set_head(self, config: HeadConfig) -> None:
        """Replace the prediction head with a freshly initialised one."""
        config.validate()
        device = next(self.encoder.parameters()).device
        self.head = PredictionHead(self.hidden_size, config).to(device)

    def _acts_at(self, site: AdapterSite, ln_before: bool) -> bool:
        """Whether the active adapter (or fusion) updates ``site`` in this run and placement."""
        if not self._running:
            return False
        if self.active_fusion is not None:
            members = self.fusion_members[self.active_fusion]
            fusion = _layer_sites(self.fusions[self.active_fusion], site.layer)
            return site.position in fusion and self.adapter_configs[members[0]].original_ln_before == ln_before
        if self.active is None:
            return False
        config = self.adapter_configs[self.active]
        return site.position in config.positions and config.original_ln_before == ln_before

    def _update(self, site: AdapterSite, u: torch.Tensor) -> torch.Tensor:
        """The active adapter's (or fused) update at a site where :meth:`_acts_at`, for input ``u``."""
        if self.active_fusion is not None:
            fusion = _site_module(self.fusions[self.active_fusion], site, FusionLayer)
            update, attention = fuse(u, self._stack(self.active_fusion, site), fusion)
            self._record(site, attention)
            return update
        assert self.active is not None  # _acts_at(site) held
        return _site_module(self.adapters[self.active], site, BottleneckAdapter)(u)

    def _stack(self, fusion: str, site: AdapterSite) -> StackedAdapters:
        """The adapters ``fusion`` mixes at ``site``, stacked (cached; see :class:`StackedAdapters`)."""
        adapters = [_site_module(self.adapters[n], site, BottleneckAdapter) for n in self.fusion_members[fusion]]
        key = (fusion, site.layer, site.position)
        stack = self._stacks.get(key)
        if stack is None or stack.adapters != adapters:  # members changed (e.g. pruned): restack
            stack = self._stacks[key] = StackedAdapters(adapters)
        return stack

    def _hook(self, site: AdapterSite) -> list[Any]:
        # A weak reference: the encoder outliving this model must not keep it alive.
        me = weakref.ref(self)

        def bind(method: str) -> Callable[..., Any]:
            def hook(module: nn.Module, *args: Any) -> Any:
                model = me()
                return None if model is None else getattr(model, method)(site, module, *args)

            return hook

        return [
            site.layer_norm.register_forward_pre_hook(bind("_before_layer_norm")),
            site.sublayer_output.register_forward_hook(bind("_after_sublayer")),
        ]

    def _record(self, site: AdapterSite, attention: torch.Tensor) -> None:
        """Add ``attention`` at ``site`` to the sums, while :meth:`recording_activations`."""
        if self._activations is None or self._token_mask is None:
            return
        mask = self._token_mask.to(attention.dtype).unsqueeze(-1)  # padding out
        total = (attention.detach() * mask).sum(dim=(0, 1)).float().cpu()
        entry = self._activations.setdefault(site.key, [torch.zeros_like(total), 0.0])
        entry[0] += total
        entry[1] += float(mask.sum())

    @contextmanager
    def recording_activations(self) -> Iterator[dict[str, list[Any]]]:
        """Collect the active fusion's attention over adapters while the block runs.

        Yields a dict filled in place: ``"<layer>.<position>"`` -> ``[sum over real tokens of
        the softmax weights (one per adapter), number of tokens]``.
        """
        self._activations = {}
        try:
            yield self._activations
        finally:
            self._activations = None

    @contextmanager
    def _run(self) -> Iterator[None]:
        previous, self._running = self._running, True
        try:
            yield
        finally:
            self._running = previous

    def _before_layer_norm(
        self, site: AdapterSite, module: nn.Module, inputs: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, ...] | None:
        """Pfeiffer placement: feed the LayerNorm ``s + A(LN(s))`` instead of its input ``s``."""
        # Before the LayerNorm rather than after it: the LN(s) the adapter reads and the update
        # are freed before the final LN runs, instead of living beside its output (two
        # hidden-size tensors less at every adapter site's peak in inference).
        if not self._acts_at(site, ln_before=True):
            return None
        s = inputs[0]
        # module.forward, not module(...): calling the module would re-enter this hook.
        return (s + self._update(site, module.forward(s)), *inputs[1:])

    def _after_sublayer(
        self, site: AdapterSite, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any
    ) -> Any:
        """Houlsby placement: the sublayer output ``h`` becomes ``h + A(h)``."""
        if not self._acts_at(site, ln_before=False):
            return None
        return output + self._update(site, output)

    def remove_hooks(self) -> None:
        """Detach every hook, leaving the encoder exactly as it was loaded."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    # -- training helpers -------------------------------------------------------------------

    def set_trainable(self, mode: str, *, base_dropout: bool = True) -> list[nn.Parameter]:
        """Freeze and unfreeze for a training mode; return the parameters to optimise.

        ``adapter``: the active adapter and the head; ``head_only``: the head;
        ``full``: encoder and head (full fine-tuning, the paper's baseline); ``fusion``: the
        active fusion layer and the head, adapters frozen (the paper's second stage). With
        ``base_dropout=False`` the frozen encoder runs without dropout in training mode too
        (full fine-tuning always keeps it).
        """
        self.base_dropout = base_dropout or mode == "full"
        if self.head is None:
            raise ConfigError("the model has no head; call set_head first")
        self.requires_grad_(False)
        self.head.requires_grad_(True)
        if mode == "adapter":
            if self.active is None:
                raise ConfigError("mode 'adapter' needs an active adapter")
            self.adapters[self.active].requires_grad_(True)
        elif mode == "full":
            self.encoder.requires_grad_(True)
        elif mode == "fusion":
            if self.active_fusion is None:
                raise ConfigError("mode 'fusion' needs an active fusion")
            self.fusions[self.active_fusion].requires_grad_(True)
        elif mode != "head_only":
            raise ConfigError(f"unknown training mode {mode!r}")
        return [p for p in self.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> AdapterModel:
        super().train(mode)
        if mode and not self.base_dropout:
            self.encoder.eval()
        return self

    def regularization(self) -> torch.Tensor | None:
        """The active fusion's L2 pull of every V towards the identity, weighted (§4.1)."""
        if self.active_fusion is None:
            return None
        weight = self.fusion_configs[self.active_fusion].value_l2
        layers = [
            layer
            for sites in self.fusions[self.active_fusion].children()
            for layer in sites.children()
            if isinstance(layer, FusionLayer)
        ]
        return weight * torch.stack([layer.value_penalty() for layer in layers]).sum()

    def count_parameters(self) -> tuple[int, int]:
        """``(trainable, total)`` parameter counts, each tensor counted once."""
        params = {id(p): p for p in self.parameters()}.values()
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    # -- forward ------------------------------------------------------------------------------

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """Logits for a tokenised batch; multiple-choice inputs are ``[batch, choices, seq]``."""
        if self.head is None:
            raise ConfigError("the model has no head; call set_head first")
        num_choices = None
        if input_ids.dim() == 3:
            num_choices = input_ids.size(1)
            flat = lambda t: t.reshape(-1, t.size(-1))
            input_ids, attention_mask = flat(input_ids), flat(attention_mask)
            inputs = {k: flat(v) for k, v in inputs.items()}
        hidden = self.encode(input_ids, attention_mask, **inputs)
        return self.head(hidden, attention_mask, num_choices)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """Last hidden states of the encoder with the active adapter (no head).

        Without gradients on the CPU, a batch of more than :attr:`inference_slice_tokens` tokens
        runs through the encoder in slices of whole sequences (why: :data:`INFERENCE_SLICE_TOKENS`);
        the result is the same tensor.
        """
        batch = input_ids.size(0)
        rows = self._slice_rows(input_ids)
        if rows >= batch:
            return self._encode_slice(input_ids, attention_mask, inputs)

        def rows_of(value: Any, i: int) -> Any:  # per-sequence inputs are sliced, anything else is shared
            per_sequence = isinstance(value, torch.Tensor) and value.dim() > 0 and value.size(0) == batch
            return value[i : i + rows] if per_sequence else value

        return torch.cat(
            [
                self._encode_slice(
                    input_ids[i : i + rows], attention_mask[i : i + rows], {k: rows_of(v, i) for k, v in inputs.items()}
                )
                for i in range(0, batch, rows)
            ]
        )

    def _slice_rows(self, input_ids: torch.Tensor) -> int:
        """Sequences per encoder call for this batch (all of them unless :meth:`encode` slices)."""
        if self.inference_slice_tokens is None or torch.is_grad_enabled() or input_ids.device.type != "cpu":
            return input_ids.size(0)
        return max(1, self.inference_slice_tokens // max(1, input_ids.size(1)))

    def _encode_slice(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, inputs: dict[str, Any]
    ) -> torch.Tensor:
        self._token_mask = attention_mask
        with self._run():
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask, **inputs)[0]

    # -- weights ------------------------------------------------------------------------------

    def _stored(self, kind: str, name: str | None) -> dict[str, nn.Module]:
        """Prefix -> module for what an artifact of ``kind`` stores: the named adapter or fusion,
        and the head."""
        modules: dict[str, nn.Module] = {}
        if name is not None:
            modules[f"{kind}."] = (self.adapters if kind == "adapter" else self.fusions)[name]
        if self.head is not None:
            modules[HEAD_PREFIX] = self.head
        return modules

    def artifact_state_dict(self, name: str | None = None, *, kind: str = "adapter") -> dict[str, torch.Tensor]:
        """Weights an artifact stores: ``adapter.<layer>.<position>.*`` (or ``fusion.…``) and ``head.*``.

        ``name`` defaults to the active adapter (or, for ``kind="fusion"``, the active fusion).
        """
        name = name or (self.active if kind == "adapter" else self.active_fusion)
        return {
            prefix + key: tensor.detach().cpu().contiguous()
            for prefix, module in self._stored(kind, name).items()
            for key, tensor in module.state_dict().items()
        }

    def load_artifact_state_dict(
        self, name: str | None, state: dict[str, torch.Tensor], *, kind: str = "adapter"
    ) -> None:
        """Load weights saved by :meth:`artifact_state_dict`; every key must match exactly."""
        expected = set(self.artifact_state_dict(name, kind=kind))
        if set(state) != expected:
            unexpected, missing = sorted(set(state) - expected), sorted(expected - set(state))
            raise RuntimeError(f"unexpected tensors {unexpected[:3]}, missing tensors {missing[:3]}")
        for prefix, module in self._stored(kind, name).items():
            module.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)


def _layer_sites(layers: nn.Module, layer: int) -> nn.ModuleDict:
    """Position -> module at ``layer`` of an adapter's or a fusion's layers (a ModuleList of
    ModuleDicts; torch types a container's items as plain ``Module``, the checks narrow them)."""
    assert isinstance(layers, nn.ModuleList)
    sites = layers[layer]
    assert isinstance(sites, nn.ModuleDict)
    return sites


M = TypeVar("M", bound=nn.Module)


def _site_module(layers: nn.Module, site: AdapterSite, kind: type[M]) -> M:
    """The ``kind`` module at ``site`` of an adapter's or a fusion's layers (see :func:`_layer_sites`)."""
    module = _layer_sites(layers, site.layer)[site.position]
    assert isinstance(module, kind)
    return module
