"""Heatmaps of a sweep: a metric over the median kernel m x the box kernel b, per layer."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..errors import HoliwidgetError
from ..evaluation.summary import HEADERS
from ..methods.holistic import Denoising
from .summary import paired_differences, sensitivity_table

__all__ = ["plot_sensitivity"]


def _ink(image: object, value: float) -> str:
    """Black on light cells, white on dark ones (the cell's colour by luminance)."""
    r, g, b, _ = image.cmap(image.norm(value))  # type: ignore[attr-defined]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def plot_sensitivity(
    results: xr.Dataset,
    *,
    layers: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    threshold: float | None = None,
    scales: str | None = None,
    cmap: str = "viridis",
) -> Figure:
    """Heatmaps of a sweep: one per layer (rows) x metric (columns), mean x100 over images.

    Each metric's column shares one colour scale. The default cell (m 51, b 91) is outlined,
    the best cell carries a star (highest; lowest for deletion), and a dot marks the cells
    whose paired difference from the default is significant at 95 %.

    Args:
        results: a dataset from :func:`holiwidget.sweep`.
        layers, metrics: which (default: all of the sweep's).
        threshold, scales: the plane shown (default: the sweep's reference tau and pyramid).
        cmap: a matplotlib colormap name.

    Returns:
        The figure (no pyplot state: display it, or ``savefig``).
    """
    layers = list(results["layer"].values) if layers is None else list(layers)
    metrics = list(results["metric"].values) if metrics is None else list(metrics)
    if not layers or not metrics:
        raise HoliwidgetError("nothing to plot: give at least one layer and one metric")
    ref = json.loads(results.attrs["reference"])
    threshold = ref["threshold"] if threshold is None else threshold
    scales = ref["scales"] if scales is None else scales
    tables = {
        (layer, metric): sensitivity_table(
            results, layer, metric, threshold=threshold, scales=scales
        )
        for layer in layers
        for metric in metrics
    }
    diffs = paired_differences(results.sel(layer=layers, metric=metrics))
    plane = diffs[
        (diffs["setting"] == "grid")
        & (diffs["threshold"] == threshold)
        & (diffs["scales"] == scales)
    ].set_index(["layer", "metric", "median", "box"])
    fig = Figure(figsize=(3.6 * len(metrics) + 0.6, 3.2 * len(layers) + 0.6), layout="constrained")
    axes = np.asarray(fig.subplots(len(layers), len(metrics), squeeze=False))
    for col, metric in enumerate(metrics):
        values = np.concatenate([tables[layer, metric].values.ravel() for layer in layers])
        vmin, vmax = np.nanmin(values), np.nanmax(values)
        higher = HEADERS[metric][1]
        for row, layer in enumerate(layers):
            ax = axes[row, col]
            table = tables[layer, metric]
            ms, bs = list(table.columns), list(table.index)
            image = ax.imshow(
                table.values, cmap=cmap, vmin=vmin, vmax=vmax, origin="upper", aspect="auto"
            )
            ax.set_xticks(range(len(ms)), [str(m) for m in ms])
            ax.set_yticks(range(len(bs)), [str(b) for b in bs])
            ax.set_xlabel("median kernel m (px at 224)")
            ax.set_ylabel("box kernel b (px at 224)")
            arrow = "↑" if higher else "↓"
            ax.set_title(f"{layer}: {HEADERS[metric][0]} {arrow} (x100)", fontsize=10)
            finite = np.isfinite(table.values)
            if finite.any():
                pick = np.nanargmax if higher else np.nanargmin
                bi, mi = np.unravel_index(pick(table.values), table.shape)
                ink = _ink(image, table.values[bi, mi])
                ax.text(mi, bi - 0.05, "★", ha="center", va="center", color=ink, fontsize=15)
            for bi, b in enumerate(bs):
                for mi, m in enumerate(ms):
                    key = (layer, metric, m, b)
                    if key in plane.index and bool(plane.loc[key, "significant"]):
                        ax.plot(
                            mi + 0.3, bi - 0.3, "o", color=_ink(image, table.values[bi, mi]), ms=4
                        )
                    if finite[bi, mi]:
                        ax.text(
                            mi,
                            bi + 0.3,
                            f"{table.values[bi, mi]:.1f}",
                            ha="center",
                            va="center",
                            fontsize=7,
                            color=_ink(image, table.values[bi, mi]),
                        )
            if Denoising.median in ms and Denoising.box in bs:
                ax.add_patch(
                    Rectangle(
                        (ms.index(Denoising.median) - 0.5, bs.index(Denoising.box) - 0.5),
                        1,
                        1,
                        fill=False,
                        edgecolor="red",
                        linewidth=2,
                    )
                )
        fig.colorbar(image, ax=list(axes[:, col]), shrink=0.8, label=f"{HEADERS[metric][0]} x100")
    n = results.sizes["image"]
    fig.suptitle(
        f"Holistic-CAM sensitivity, {n} images, tau {threshold:g}, scales {scales}: "
        f"red = default ({Denoising.median}, {Denoising.box}), ★ = best, "
        "• = paired difference from default significant (95 %)",
        fontsize=9,
    )
    return fig
