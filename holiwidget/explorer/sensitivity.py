"""A sweep's heatmaps linked to the explorer's denoising setting (no widgets, no pyplot).

The numbers are :func:`holiwidget.sweeps.summary.sensitivity_table`'s. Only
:meth:`SensitivityView.set_results` builds axes; :meth:`SensitivityView.mark` updates in place.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import matplotlib
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.backend_bases import MouseEvent
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from ..errors import HoliwidgetError
from ..evaluation.summary import HEADERS
from ..sweeps.summary import sensitivity_table

__all__ = ["SensitivityView"]

_PLACEHOLDER = "open a sweep: explorer.show_sweep(results)"
_NEEDED = ("layer", "scales", "threshold", "median", "box", "metric")
_OUTLINE = {"edgecolor": "red", "linewidth": 2.5}
_HIGHLIGHT = {"color": "#ff2bd6", "width": 3.5}
_PLAIN = {"color": "0.75", "width": 0.6}
_FONT = 8  # points: readable at 72 dpi


def _ink(image: AxesImage, value: float) -> str:
    """Black on light cells, white on dark ones (the cell's colour by luminance)."""
    r, g, b, _ = image.cmap(image.norm(value))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _reference(results: xr.Dataset) -> dict:
    """The sweep's reference setting, checking that ``results`` is a sweep's dataset."""
    fix = "pass the dataset of holiwidget.sweep (or holiwidget.open_dataset of its .nc file)"
    if not isinstance(results, xr.Dataset):
        raise HoliwidgetError(f"not a sweep result: got {type(results).__name__}; {fix}")
    if "score" not in results.data_vars or "computed" not in results.data_vars:
        raise HoliwidgetError(f"not a sweep result: no `score` / `computed` variable; {fix}")
    if missing := [d for d in _NEEDED if d not in results["score"].dims or not results.sizes[d]]:
        raise HoliwidgetError(f"not a sweep result: `score` lacks (or has empty) {missing}; {fix}")
    try:
        ref = json.loads(results.attrs["reference"])
    except (KeyError, TypeError, ValueError):
        ref = None
    if not isinstance(ref, dict) or not {"threshold", "scales"} <= ref.keys():
        raise HoliwidgetError(f"not a sweep result: no valid attrs['reference']; {fix}")
    return ref


class SensitivityView:
    """Heatmaps of a sweep (metric x100 over median m x box b, one per layer) linked to the
    explorer's denoising setting: the current setting is marked, a click picks a setting.

    Attributes: ``metric`` shown, the sweep's ``metrics`` and ``layers``, ``threshold`` (the
    tau plane shown), ``scales`` (the pyramid shown), the grid's ``medians`` and ``boxes``.
    """

    def __init__(self, figure: Figure, on_pick: Callable[[float, int, int], None]) -> None:
        """Draw a placeholder in ``figure`` (which has its canvas already) and
        call ``on_pick(threshold, median, box)`` when a computed cell is left-clicked
        (``threshold``: the tau plane shown)."""
        self.figure, self._on_pick = figure, on_pick
        self.metric: str = ""
        self.metrics: list[str] = []
        self.layers: list[str] = []
        self.threshold: float = math.nan
        self.scales: str = ""
        self.medians: list[int] = []
        self.boxes: list[int] = []
        self._results: xr.Dataset | None = None
        self._tables: dict[float, dict[str, pd.DataFrame]] = {}  # plane -> layer -> b x m
        self._axes: list[Axes] = []
        self._images: list[AxesImage] = []
        self._texts: list[list[list[Text]]] = []  # layer, box, median
        self._outlines: list[Rectangle] = []
        self._title = Text()
        self._mark: tuple[float, int, int, bool, str | None] | None = None
        figure.text(0.5, 0.5, _PLACEHOLDER, ha="center", va="center", fontsize=10, color="0.4")
        figure.canvas.mpl_connect("button_press_event", self._press)

    def set_results(
        self, results: xr.Dataset, *, metric: str | None = None, scales: str | None = None
    ) -> None:
        """Show a sweep: one heatmap per layer, one shared colour scale (rebuilds the axes).

        Args:
            results: a dataset from :func:`holiwidget.sweep`.
            metric: which (default: the one shown before if the sweep has it, else
                ``overall``, else the sweep's first).
            scales: the pyramid (default: the sweep's reference one).
        """
        ref = _reference(results)
        metrics = [str(m) for m in results["metric"].values]
        if metric is None:
            metric = next(m for m in (self.metric, "overall", metrics[0]) if m in metrics)
        choices = {"metric": (metric, metrics), "scales": (scales, results["scales"].values)}
        for name, (value, allowed) in choices.items():
            if value is not None and value not in allowed:
                known = ", ".join(map(str, allowed))
                raise HoliwidgetError(f"{name} {value!r} is not in the sweep; choose from {known}")
        scales = str(ref["scales"] if scales is None else scales)
        layers = [str(layer) for layer in results["layer"].values]
        self._tables = {
            float(t): {
                layer: sensitivity_table(results, layer, metric, threshold=t, scales=scales)
                for layer in layers
            }
            for t in results["threshold"].values
        }
        self._results, self.metric, self.metrics, self.layers = results, metric, metrics, layers
        self.scales = scales
        self.medians = [int(m) for m in results["median"].values]
        self.boxes = [int(b) for b in results["box"].values]
        self.threshold = self._nearest(float(ref["threshold"]))
        self._build()
        if self._mark is not None:
            self.mark(*self._mark[:3], denoise=self._mark[3], layer=self._mark[4])
            return
        self._title.set_text(f"τ {self.threshold:g} plane, scales {scales}: no setting marked")

    @property
    def results(self) -> xr.Dataset | None:
        """The sweep shown (None before :meth:`set_results`)."""
        return self._results

    def set_metric(self, metric: str) -> None:
        """Show another metric of the same sweep (and pyramid)."""
        if self._results is None:
            raise HoliwidgetError("no sweep is shown: call set_results(results) first")
        self.set_results(self._results, metric=metric, scales=self.scales)

    def mark(
        self,
        threshold: float,
        median: int,
        box: int,
        *,
        denoise: bool = True,
        layer: str | None = None,
    ) -> None:
        """Mark the explorer's setting (in place: no axes or images are rebuilt).

        Args:
            threshold, median, box: the setting; the plane shown becomes the sweep's tau
                nearest ``threshold``.
            denoise: False when denoising is off (no cell is outlined).
            layer: the explorer's layer; its heatmap gets a highlighted frame.
        """
        self._mark = (threshold, int(median), int(box), denoise, layer)
        if self._results is None:
            return
        plane = self._nearest(threshold) if math.isfinite(threshold) else self.threshold
        if plane != self.threshold:
            self.threshold = plane
            self._fill()
        on_grid = median in self.medians and box in self.boxes
        shown = denoise and on_grid
        where = (self.medians.index(median) - 0.5, self.boxes.index(box) - 0.5) if on_grid else None
        for outline in self._outlines:
            outline.set_visible(shown)
            if where is not None:
                outline.set_xy(where)
        for ax, name in zip(self._axes, self.layers, strict=True):
            style = _HIGHLIGHT if name == layer else _PLAIN
            for spine in ax.spines.values():
                spine.set_color(style["color"])
                spine.set_linewidth(style["width"])
        head = f"τ {plane:g} plane, scales {self.scales}"
        if denoise and math.isfinite(threshold) and not math.isclose(plane, threshold):
            head += f" (nearest the setting's τ {threshold:g})"
        text = f"setting m {median}, b {box}"
        if not denoise:
            text = "denoising off: no cell marked"
        elif not on_grid:
            text += " is off the sweep's grid"
        else:
            values = [float(self._tables[plane][n].loc[box, median]) for n in self.layers]
            pairs = zip(self.layers, values, strict=True)
            done = [f"{n} {v:.1f}" for n, v in pairs if math.isfinite(v)]
            text += f": {' · '.join(done)}" if done else f": not computed at τ {plane:g}"
        self._title.set_text(f"{head}\n{text}")

    def values(self, layer: str) -> np.ndarray:
        """The table shown for ``layer`` (rows box b, columns median m; NaN: not computed)."""
        if layer not in self.layers:
            raise HoliwidgetError(f"layer {layer!r} is not shown; choose from {self.layers}")
        return self._tables[self.threshold][layer].to_numpy(dtype=np.float64, copy=True)

    def _nearest(self, threshold: float) -> float:
        planes = np.array(list(self._tables), dtype=np.float64)
        return float(planes[np.argmin(np.abs(planes - threshold))])

    def _build(self) -> None:
        """The axes, images, cell texts, outlines and colour bar of the current sweep."""
        fig, n = self.figure, len(self.layers)
        fig.clear()
        fig.set_layout_engine("constrained")
        every = [t.to_numpy(np.float64) for p in self._tables.values() for t in p.values()]
        finite = np.concatenate([t[np.isfinite(t)] for t in every])  # one scale for all planes
        vmin, vmax = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.9")
        name, higher = HEADERS.get(self.metric, (self.metric, True))
        arrow = "↑" if higher else "↓"
        axes = fig.subplots(1, n, squeeze=False)[0]
        self._axes, self._images, self._texts, self._outlines = list(axes), [], [], []
        shape = (len(self.boxes), len(self.medians))
        rows, cols = range(shape[0]), range(shape[1])
        for ax, layer in zip(axes, self.layers, strict=True):
            image = ax.imshow(
                np.full(shape, np.nan), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                interpolation="nearest", origin="upper",
            )  # fmt: skip
            self._images.append(image)
            ax.set_xticks(cols, [str(m) for m in self.medians], fontsize=_FONT)
            ax.set_yticks(rows, [str(b) for b in self.boxes], fontsize=_FONT)
            ax.set_xlabel("median m (px at 224)", fontsize=_FONT)
            ax.set_ylabel("box b (px at 224)", fontsize=_FONT)
            ax.set_title(f"{layer}  {name} {arrow}", fontsize=9)
            cell = {"ha": "center", "va": "center", "fontsize": _FONT}
            self._texts.append([[ax.text(m, b, "", **cell) for m in cols] for b in rows])
            outline = Rectangle((-0.5, -0.5), 1, 1, fill=False, visible=False, **_OUTLINE)
            self._outlines.append(ax.add_patch(outline))
        bar = fig.colorbar(self._images[-1], ax=list(axes), shrink=0.9)
        bar.set_label(f"{name} x100", fontsize=_FONT)
        bar.ax.tick_params(labelsize=_FONT)
        self._title = fig.suptitle("", fontsize=9)
        self._fill()

    def _fill(self) -> None:
        """Put the plane ``self.threshold`` into the existing images and cell texts."""
        for image, texts, layer in zip(self._images, self._texts, self.layers, strict=True):
            table = self._tables[self.threshold][layer].to_numpy(np.float64)
            image.set_data(table)
            for bi, row in enumerate(texts):
                for mi, text in enumerate(row):
                    value = table[bi, mi]
                    text.set_text(f"{value:.1f}" if np.isfinite(value) else "")
                    text.set_color(_ink(image, value) if np.isfinite(value) else "black")

    def _press(self, event: MouseEvent) -> None:
        ax = event.inaxes
        if ax not in self._axes or event.button != 1 or event.xdata is None:
            return
        mi, bi = round(event.xdata), round(event.ydata)
        if not (0 <= mi < len(self.medians) and 0 <= bi < len(self.boxes)):
            return
        layer = self.layers[self._axes.index(ax)]
        if np.isfinite(self._tables[self.threshold][layer].iat[bi, mi]):
            self._on_pick(self.threshold, self.medians[mi], self.boxes[bi])
