"""Fusion activation analysis (Pfeiffer et al. 2021, Fig. 4 and 6): which adapters a fusion uses.

For every fused site (layer x position) the mean softmax weight of each adapter over all real
(non-padding) tokens of a dataset.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .api import LoadedAdapter, ensure_loaded, max_length_of, pad_id_of
from .base import BaseModel
from .errors import ConfigError, DataError
from .training.data import Columns, ExampleSet, load_examples, tokenize
from .training.loop import predict_outputs


@dataclass
class FusionActivations:
    """Mean attention per site (rows, ``"<layer>.<position>"``) and adapter (columns)."""

    adapters: list[str]
    sites: list[str]
    mean: np.ndarray
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {"adapters": self.adapters, "tokens": self.tokens,
                "sites": {site: dict(zip(self.adapters, map(float, row), strict=True))
                          for site, row in zip(self.sites, self.mean, strict=True)}}

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """Write a PNG heatmap (sites x adapters), atomically. Needs matplotlib."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            from matplotlib import pyplot as plt
        except ImportError:
            raise ConfigError("plotting needs matplotlib: pip install 'adapterhub-lite[plot]'") from None
        path = Path(path)
        fig, ax = plt.subplots(figsize=(3.0 + 1.1 * len(self.adapters), 1.8 + 0.4 * len(self.sites)))
        image = ax.imshow(self.mean, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(self.adapters)), self.adapters, rotation=45, ha="right")
        ax.set_yticks(range(len(self.sites)), [f"layer {s}" for s in self.sites])
        for (row, col), value in np.ndenumerate(self.mean):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if value < 0.6 else "black")
        ax.set_title(title or "mean fusion attention per layer")
        fig.colorbar(image, ax=ax, fraction=0.05)
        fig.tight_layout()
        fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent if str(path.parent) else ".")
        os.close(fd)
        try:
            fig.savefig(tmp, dpi=120, bbox_inches="tight")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        finally:
            plt.close(fig)
        return path


def fusion_activations(
    fusion: LoadedAdapter | str | Path,
    data: str | Path | ExampleSet,
    *,
    columns: Columns | None = None,
    base: str | BaseModel | None = None,
    batch_size: int = 64,
) -> FusionActivations:
    """Mean softmax weight of every adapter at every fused site over ``data`` (labels unused).

    Raises:
        ConfigError: the artifact is not a fusion.
        DataError: the data is missing, unreadable or empty.
    """
    loaded = ensure_loaded(fusion, base)
    meta = loaded.artifact.metadata
    if meta["kind"] != "fusion":
        raise ConfigError(f"{loaded.artifact.path} is an {meta['kind']}, not a fusion; inspect a fusion artifact")
    data_set = data if isinstance(data, ExampleSet) else load_examples(data, columns or loaded.columns,
                                                                       require_label=False)
    if not data_set.examples:
        raise DataError(f"{data_set.source}: no rows to inspect")
    enc = tokenize(loaded.base.tokenizer, data_set, max_length_of(loaded), None)
    model = loaded.model
    with model.recording_activations() as stats:
        predict_outputs(model, enc, batch_size=batch_size, device=next(model.parameters()).device,
                        pad_id=pad_id_of(loaded.base.tokenizer))
    sites = sorted(stats, key=lambda key: (int(key.split(".")[0]), key))
    mean = np.stack([(stats[s][0] / max(stats[s][1], 1.0)).numpy() for s in sites])
    adapters = [f"{a['task']}/{a['name']}" for a in meta["adapters"]]
    return FusionActivations(adapters, sites, mean, int(stats[sites[0]][1]) if sites else 0)
