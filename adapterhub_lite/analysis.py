"""Fusion activation analysis (Pfeiffer et al. 2021, Fig. 4 and 6) and pruning (§8.2).

For every fused site (layer x position), the mean softmax weight of each adapter over all real
(non-padding) tokens of a dataset; adapters a fusion hardly uses can then be dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from .api import LoadedAdapter, check_batch_size, ensure_loaded, evaluate, max_length_of, pad_id_of
from .artifact import FUSION_ADAPTERS_DIR, Artifact, read_artifact, render_model_card, write_artifact
from .base import BaseModel
from .errors import ConfigError, DataError
from .files import replacing
from .training.data import Columns, ExampleSet, load_examples, tokenize
from .training.loop import predict_outputs

# viridis at 0, 0.25, 0.5, 0.75, 1 (matplotlib's values), interpolated linearly in between
_VIRIDIS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))


@dataclass
class FusionActivations:
    """Mean attention per site (rows, ``"<layer>.<position>"``) and adapter (columns)."""

    adapters: list[str]
    sites: list[str]
    mean: np.ndarray
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "adapters": self.adapters,
            "tokens": self.tokens,
            "sites": {
                site: dict(zip(self.adapters, map(float, row), strict=True))
                for site, row in zip(self.sites, self.mean, strict=True)
            },
        }

    def svg(self, title: str | None = None) -> str:
        """The heatmap as an SVG document (:func:`heatmap_svg`)."""
        return heatmap_svg(self, title)

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """Write a heatmap (sites x adapters), atomically: SVG for a ``.svg`` path (no optional
        dependency, :func:`heatmap_svg`), PNG for a ``.png`` one, which needs matplotlib.

        Raises:
            ConfigError: another suffix (:func:`check_plot_path`).
        """
        path = Path(path)
        check_plot_path(path)
        if path.suffix.lower() == ".svg":
            with replacing(path, suffix=".svg") as tmp:
                tmp.write_text(heatmap_svg(self, title), encoding="utf-8")
            return path
        try:
            import matplotlib

            matplotlib.use("Agg")
            from matplotlib import pyplot as plt
        except ImportError:
            raise ConfigError(
                "a PNG heatmap needs matplotlib (pip install 'adapterhub-lite[plot]'); a .svg path needs nothing"
            ) from None
        fig, ax = plt.subplots(figsize=(3.0 + 1.1 * len(self.adapters), 1.8 + 0.4 * len(self.sites)))
        image = ax.imshow(self.mean, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(self.adapters)), self.adapters, rotation=45, ha="right")
        ax.set_yticks(range(len(self.sites)), [f"layer {s}" for s in self.sites])
        for (row, col), value in np.ndenumerate(self.mean):
            ax.text(
                col,
                row,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value < 0.6 else "black",
            )
        ax.set_title(title or "mean fusion attention per layer")
        fig.colorbar(image, ax=ax, fraction=0.05)
        fig.tight_layout()
        try:
            with replacing(path, suffix=".png") as tmp:
                fig.savefig(tmp, dpi=120, bbox_inches="tight")
        finally:
            plt.close(fig)
        return path


PLOT_SUFFIXES = (".svg", ".png")


def check_plot_path(path: Path) -> None:
    """Refuse a heatmap path whose suffix names neither format :meth:`FusionActivations.plot` writes."""
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(
            f"a heatmap is written as .svg or .png, not {path.name!r}: name the file FILE.svg or FILE.png"
        )


def _color(value: float) -> str:
    position = min(max(value, 0.0), 1.0) * (len(_VIRIDIS) - 1)
    low = min(int(position), len(_VIRIDIS) - 2)
    share = position - low
    red, green, blue = (round(a + (b - a) * share) for a, b in zip(_VIRIDIS[low], _VIRIDIS[low + 1], strict=True))
    return f"#{red:02x}{green:02x}{blue:02x}"


def heatmap_svg(report: FusionActivations, title: str | None = None) -> str:
    """The heatmap of ``report`` as a standalone SVG document (sites x adapters, value in each
    cell, a 0-1 colour bar), built without any plotting library. Every text is XML-escaped, so
    adapter names can hold any character; the document holds no script and no external link."""
    cell_w, cell_h, left, top = 84, 28, 96, 46
    label_h = 14 + 6 * max((len(a) for a in report.adapters), default=0)  # names written at 45 degrees
    title = title or "mean fusion attention per layer"
    width = max(left + cell_w * len(report.adapters) + 70, left + 8 * len(title))  # room for the title
    height = top + cell_h * len(report.sites) + min(label_h, 220) + 10
    text = escape(title)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f"<title>{text}</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{left}" y="20" font-size="13" font-weight="bold">{text}</text>',
    ]
    for row, site in enumerate(report.sites):
        y = top + row * cell_h
        out.append(f'<text x="{left - 6}" y="{y + cell_h / 2 + 4}" text-anchor="end">layer {escape(site)}</text>')
        for col, value in enumerate(report.mean[row]):
            x = left + col * cell_w
            out.append(f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="{_color(float(value))}"/>')
            out.append(
                f'<text x="{x + cell_w / 2}" y="{y + cell_h / 2 + 4}" text-anchor="middle" '
                f'fill="{"#ffffff" if value < 0.6 else "#000000"}">{float(value):.2f}</text>'
            )
    base_y = top + cell_h * len(report.sites) + 12
    for col, adapter in enumerate(report.adapters):
        middle = left + col * cell_w + cell_w / 2
        out.append(
            f'<text x="{middle}" y="{base_y}" text-anchor="end" transform="rotate(-45 {middle} {base_y})">'
            f"{escape(adapter)}</text>"
        )
    bar_x, bar_h = left + cell_w * len(report.adapters) + 16, max(cell_h * len(report.sites), 60)
    out.append(
        '<defs><linearGradient id="scale" x1="0" y1="1" x2="0" y2="0">'
        + "".join(
            f'<stop offset="{i / (len(_VIRIDIS) - 1)}" stop-color="{_color(i / (len(_VIRIDIS) - 1))}"/>'
            for i in range(len(_VIRIDIS))
        )
        + "</linearGradient></defs>"
    )
    out.append(f'<rect x="{bar_x}" y="{top}" width="12" height="{bar_h}" fill="url(#scale)"/>')
    out.append(f'<text x="{bar_x + 16}" y="{top + 8}">1.0</text>')
    out.append(f'<text x="{bar_x + 16}" y="{top + bar_h}">0.0</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def measure_activations(
    model: Any, tokenizer: Any, data: ExampleSet, adapters: list[str], *, max_length: int, batch_size: int = 64
) -> FusionActivations:
    """Mean softmax weight per fused site and adapter of a fusion model over ``data`` (any split)."""
    if not data.examples:
        raise DataError(f"{data.source}: no rows to inspect")
    enc = tokenize(tokenizer, data, max_length, None)
    with model.recording_activations() as stats:
        predict_outputs(
            model, enc, batch_size=batch_size, device=next(model.parameters()).device, pad_id=pad_id_of(tokenizer)
        )
    sites = sorted(stats, key=lambda key: (int(key.split(".")[0]), key))
    mean = np.stack([(stats[s][0] / max(stats[s][1], 1.0)).numpy() for s in sites])
    return FusionActivations(adapters, sites, mean, int(stats[sites[0]][1]) if sites else 0)


def _check_fusion(fusion: LoadedAdapter | str | Path, command: str) -> None:
    """Refuse a target that is no fusion, naming the command that needs one; from the metadata
    alone, before any model loads."""
    artifact = fusion.artifact if isinstance(fusion, LoadedAdapter) else read_artifact(fusion, verify=False)
    if artifact.kind != "fusion":
        raise ConfigError(
            f"{artifact.path} is an {artifact.kind}, not a fusion; {command} needs a fusion artifact "
            "(ahl fuse makes one)"
        )


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
    check_batch_size(batch_size)
    _check_fusion(fusion, "inspect")
    loaded = ensure_loaded(fusion, base)
    meta = loaded.artifact.metadata
    data_set = (
        data if isinstance(data, ExampleSet) else load_examples(data, columns or loaded.columns, require_label=False)
    )
    adapters = [f"{a['task']}/{a['name']}" for a in meta["adapters"]]
    return measure_activations(
        loaded.model, loaded.base.tokenizer, data_set, adapters, max_length=max_length_of(loaded), batch_size=batch_size
    )


@dataclass
class PruneReport:
    """AdapterDrop-style pruning of a fusion (paper §8.2): what was kept, and what it cost."""

    kept: list[str]
    dropped: list[str]
    activations: FusionActivations
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]
    seconds_before: float
    seconds_after: float
    artifact: Artifact | None = None
    # (seconds before, seconds after) of each interleaved timing; seconds_* are their medians
    timings: list[tuple[float, float]] = field(default_factory=list)

    @property
    def speedups(self) -> list[float]:
        """Before/after time ratio of each timing."""
        pairs = self.timings or [(self.seconds_before, self.seconds_after)]
        return [b / a if a else float("nan") for b, a in pairs]

    @property
    def speedup(self) -> float:
        """The median ratio over the timings."""
        return float(np.median(self.speedups))

    @property
    def speedup_measured(self) -> bool:
        """Whether every timing agrees the pruned fusion is faster (more than one timing, all above 1)."""
        return len(self.speedups) > 1 and min(self.speedups) > 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kept": self.kept,
            "dropped": self.dropped,
            "metrics_before": self.metrics_before,
            "metrics_after": self.metrics_after,
            "seconds_before": self.seconds_before,
            "seconds_after": self.seconds_after,
            "speedup": self.speedup,
            "speedups": self.speedups,
            "speedup_measured": self.speedup_measured,
            "artifact": str(self.artifact.path) if self.artifact else None,
        }


def prune_fusion(
    fusion: LoadedAdapter | str | Path,
    data: str | Path,
    *,
    threshold: float | None = None,
    keep: int | None = None,
    columns: Columns | None = None,
    base: str | BaseModel | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    batch_size: int = 64,
    repeats: int = 3,
) -> PruneReport:
    """Drop the adapters a fusion hardly uses; measure accuracy and inference time before/after.

    Activations are measured on ``data`` (labelled: it is also the evaluation set). With
    ``threshold``, an adapter goes when its mean attention stays below it at every site; with
    ``keep``, the ``keep`` adapters with the highest mean attention over all sites stay. Q, K and V
    act per site, not per adapter, so the fusion runs unchanged over the remaining adapters (the
    softmax renormalises). With ``out`` the pruned fusion is saved as a new artifact. Inference
    time is measured ``repeats`` times, unpruned and pruned interleaved (load drifts affect both).

    Raises:
        ConfigError: neither or both of ``threshold``/``keep``, or fewer than two adapters would stay
            (``keep`` below 2 is refused before any work).
    """
    if (threshold is None) == (keep is None):
        raise ConfigError("prune needs exactly one of --threshold or --keep (threshold= or keep= in Python)")
    if keep is not None and keep < 2:
        raise ConfigError(
            f"--keep {keep} would leave fewer than two adapters; a fusion needs two (keep 2 or more, "
            f"or use the adapter alone)"
        )
    if repeats < 1:
        raise ConfigError("--repeats must be at least 1")
    _check_fusion(fusion, "prune")
    loaded = ensure_loaded(fusion, base)
    report = fusion_activations(loaded, data, columns=columns, batch_size=batch_size)
    names = [a["name"] for a in loaded.artifact.metadata["adapters"]]
    if threshold is not None:
        kept = [n for n, col in zip(names, report.mean.T, strict=True) if col.max() >= threshold]
    else:
        assert keep is not None  # exactly one of the two is set (checked above)
        order = np.argsort(-report.mean.mean(axis=0), kind="stable")[:keep]
        kept = [names[i] for i in sorted(order)]
    if len(kept) < 2:
        raise ConfigError(f"pruning would leave {len(kept)} adapter(s); a fusion needs two (use the adapter alone)")
    model, name = loaded.model, loaded.artifact.metadata["name"]

    def timed_eval() -> tuple[dict[str, float], float]:
        start = time.perf_counter()
        metrics = evaluate(loaded, data, columns=columns, batch_size=batch_size)
        return metrics, time.perf_counter() - start

    timed_eval()  # warm-up: first-call costs must not count against the unpruned model
    members = model.fusion_members[name]
    timings = []
    for _ in range(repeats):
        model.fusion_members[name] = members
        before, seconds_before = timed_eval()
        model.fusion_members[name] = tuple(kept)
        after, seconds_after = timed_eval()
        timings.append((seconds_before, seconds_after))
    artifact = None
    if out is not None:
        meta = loaded.artifact.metadata
        # the recorded activations (and their heatmap) describe the unpruned fusion: not carried over
        metadata = {k: v for k, v in meta.items() if k not in ("files", "format_version", "activations")}
        metadata["adapters"] = [a for a in meta["adapters"] if a["name"] in kept]
        metadata["pruned_from"] = {"digest": loaded.artifact.digest, "dropped": [n for n in names if n not in kept]}
        metadata["metrics"] = {**meta.get("metrics", {}), "pruned": after}
        sources = {f"{FUSION_ADAPTERS_DIR}/{n}": loaded.artifact.path / FUSION_ADAPTERS_DIR / n for n in kept}
        artifact = write_artifact(
            Path(out),
            metadata,
            model.artifact_state_dict(kind="fusion"),
            render_model_card(metadata),
            extra_dirs=sources,
            overwrite=overwrite,
        )
    return PruneReport(
        kept,
        [n for n in names if n not in kept],
        report,
        before,
        after,
        float(np.median([t[0] for t in timings])),
        float(np.median([t[1] for t in timings])),
        artifact,
        timings,
    )
