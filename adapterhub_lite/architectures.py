"""Where adapters sit in each supported model family: the one table to extend for a new family.

Every supported encoder layer has two residual sublayers (attention, feed-forward) whose output
``h`` is added to the sublayer input ``x`` and normalised by a pretrained LayerNorm:
``LN(h + x)``. For each family we name, relative to one layer, the module whose output is ``h``
and the LayerNorm module. Adapters attach to those two modules with forward hooks, so no
transformers class is forked or patched and any transformers version with the same module names
works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import UnsupportedModelError

if TYPE_CHECKING:  # annotations only: base.py (and so the registry) imports this without torch
    from torch import nn


@dataclass(frozen=True)
class FamilyLayout:
    """Module paths of one model family, relative to the encoder (``AutoModel``) root."""

    layers: str
    # position -> (path of the module whose output is the sublayer output h, path of its LayerNorm)
    sites: dict[str, tuple[str, str]]
    # The encoder class takes add_pooling_layer: we load without the pooler, which heads never
    # use and which some checkpoints lack (it would be randomly initialised and break the
    # weights digest).
    optional_pooler: bool = False


_BERT_SITES = {
    "attention": ("attention.output.dropout", "attention.output.LayerNorm"),
    "ffn": ("output.dropout", "output.LayerNorm"),
}
_BERT_LIKE = FamilyLayout(layers="encoder.layer", sites=_BERT_SITES, optional_pooler=True)

FAMILIES: dict[str, FamilyLayout] = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "camembert": _BERT_LIKE,
    "electra": FamilyLayout(layers="encoder.layer", sites=_BERT_SITES),
    "deberta-v2": FamilyLayout(layers="encoder.layer", sites=_BERT_SITES),
    "distilbert": FamilyLayout(
        layers="transformer.layer",
        sites={
            "attention": ("attention.out_lin", "sa_layer_norm"),
            "ffn": ("ffn", "output_layer_norm"),
        },
    ),
}


@dataclass(frozen=True)
class AdapterSite:
    """One place an adapter attaches: layer index, position, and the two modules it hooks."""

    layer: int
    position: str
    sublayer_output: nn.Module
    layer_norm: nn.Module

    @property
    def key(self) -> str:
        """The name of this site in weight files: ``"<layer>.<position>"``."""
        return f"{self.layer}.{self.position}"


def layout_for(model_type: str) -> FamilyLayout:
    """Return the layout of a model family, or raise :class:`UnsupportedModelError`."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise UnsupportedModelError(
            f"model type {model_type!r} is not supported; supported families: {', '.join(sorted(FAMILIES))}"
        ) from None


def adapter_sites(encoder: nn.Module, model_type: str, positions: tuple[str, ...]) -> list[AdapterSite]:
    """List the adapter sites of ``encoder`` at ``positions``, layer by layer."""
    layout = layout_for(model_type)
    layers = encoder.get_submodule(layout.layers)
    sites = []
    for index, layer in enumerate(layers.children()):  # a ModuleList: its layers in order
        for position in positions:
            out_path, ln_path = layout.sites[position]
            sites.append(AdapterSite(index, position, layer.get_submodule(out_path), layer.get_submodule(ln_path)))
    return sites
