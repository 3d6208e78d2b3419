"""The explorer's map views: the overlay, the low-pass wrap, the pixel probe, the curves.

Each view owns one figure and its artists. After a figure is built, updates only call
``set_data`` / ``set_alpha`` / ``set_cmap`` / ``set_text`` on the existing artists; only a
change of the layer or method lists rebuilds the probe's lines. The grid is in
:mod:`.grid`, the sweep's heatmaps in :mod:`.sensitivity`; :mod:`.board` draws them all
from a session.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backend_bases import MouseEvent
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..figure import ALPHA, CMAP
from ..methods import COLORS, LABELS
from .canvas import FONT, Frame, PixelImage, crosshair, fit_image, image_axes, image_extent
from .curves import CurveSet

__all__ = ["CurvesView", "OverlayView", "ProbeView", "WrapView", "composite"]


def composite(rgb: np.ndarray, saliency: np.ndarray, alpha: float, cmap: str) -> np.ndarray:
    """The image with the map over it, (H, W, 3) uint8: (1 - alpha) rgb + alpha cmap(map).

    The colours are the colormap's as matplotlib gives them (its N entries, a value v in
    [0, 1] at entry floor(v N), 1 at the last), looked up in a table made once per colormap.
    """
    table = _colour_table(cmap)
    index = (np.clip(saliency, 0.0, 1.0) * len(table)).astype(np.intp)
    colours = table.take(np.minimum(index, len(table) - 1), axis=0)
    mixed = (1.0 - alpha) * rgb.astype(np.float32) + alpha * colours.astype(np.float32)
    return np.rint(mixed).astype(np.uint8)


@functools.lru_cache(maxsize=16)
def _colour_table(cmap: str) -> np.ndarray:
    colormap = colormaps[cmap]
    return colormap(np.arange(colormap.N), bytes=True)[:, :3]


class OverlayView:
    """The input with the current map over it (opacity and colormap adjustable), drawn as
    one image, a labelled colour bar, the probe's crosshair, and zoom: the mouse wheel zooms
    about the pointer, a drag with shift held (or the middle button) pans, a double click
    shows the whole image again."""

    def __init__(self, figure: Figure) -> None:
        self.figure = figure
        self.ax = figure.add_axes((0.02, 0.02, 0.80, 0.84))
        image_axes(self.ax)
        self.rgb = np.zeros((224, 224, 3), np.uint8)
        self.map = np.zeros((224, 224), np.float32)
        self.alpha, self.cmap = ALPHA, CMAP
        self.art = PixelImage(self.ax, self.rgb)
        # the title's first line (image and class) changes only with the whole figure, the
        # second (method and layer) with the current map: only that line is redrawn then
        self.heading = self.ax.set_title(" ", fontsize=FONT["title"], pad=18)
        self.title = self.ax.text(
            0.5, 1.012, " ", transform=self.ax.transAxes, ha="center", va="bottom",
            fontsize=FONT["title"],
        )  # fmt: skip
        bar = figure.add_axes((0.86, 0.02, 0.035, 0.84))
        self.bar = ScalarMappable(Normalize(0.0, 1.0), CMAP)  # the colormap, not faded
        figure.colorbar(self.bar, cax=bar).set_label("attribution, 0-1", fontsize=FONT["label"])
        bar.tick_params(labelsize=FONT["tick"])
        self.cross = crosshair(self.ax)
        # the title (above the axes) changes with the current map, the map also with the
        # sliders, the crosshair with a probe: each redrawn only with those above it
        self.frame = Frame(figure, [[self.title], [self.art], self.cross])
        self._pan: tuple | None = None  # where a pan started: pixel, limits
        for name, handler in (
            ("scroll_event", self._zoom),
            ("button_press_event", self._press),
            ("motion_notify_event", self._drag),
            ("button_release_event", self._release),
        ):
            figure.canvas.mpl_connect(name, handler)

    def show(
        self,
        rgb: np.ndarray | None = None,
        saliency: np.ndarray | None = None,
        alpha: float | None = None,
        cmap: str | None = None,
    ) -> None:
        """Change any of the image, the map, the opacity and the colormap (in place)."""
        self.rgb = self.rgb if rgb is None else np.asarray(rgb)
        self.map = self.map if saliency is None else np.asarray(saliency)
        self.alpha = self.alpha if alpha is None else float(alpha)
        if cmap is not None:
            self.cmap = cmap
            self.bar.set_cmap(cmap)
        self.art.set_data(composite(self.rgb, self.map, self.alpha, self.cmap))

    def set_size(self, height: int, width: int) -> None:
        """Fit the image to maps of ``height x width`` pixels."""
        fit_image(self.ax, self.art, height, width)

    def _whole(self) -> None:
        left, right, bottom, top = image_extent(*self.map.shape[:2])
        self.ax.set_xlim(left, right)
        self.ax.set_ylim(bottom, top)

    def _zoom(self, event: MouseEvent) -> None:
        if event.inaxes is not self.ax or event.xdata is None:
            return
        factor = 0.8 if event.button == "up" else 1.25
        (x0, x1), (y0, y1) = self.ax.get_xlim(), self.ax.get_ylim()
        if (x1 - x0) * factor >= self.map.shape[1]:
            self._whole()
        else:
            cx, cy = event.xdata, event.ydata
            self.ax.set_xlim(cx - (cx - x0) * factor, cx + (x1 - cx) * factor)
            self.ax.set_ylim(cy + (y0 - cy) * factor, cy - (cy - y1) * factor)
        self.figure.canvas.draw_idle()

    def _press(self, event: MouseEvent) -> None:
        if event.inaxes is not self.ax:
            return
        if event.dblclick:
            self._whole()
            self.figure.canvas.draw_idle()
        elif event.key == "shift" or event.button == 2:
            self._pan = (event.x, event.y, self.ax.get_xlim(), self.ax.get_ylim())

    def _drag(self, event: MouseEvent) -> None:
        if self._pan is None:
            return
        x, y, (x0, x1), (y0, y1) = self._pan
        box = self.ax.bbox  # data units per pixel: the limits over the axes' size
        dx = (event.x - x) * (x1 - x0) / box.width
        dy = (event.y - y) * (y1 - y0) / box.height
        self.ax.set_xlim(x0 - dx, x1 - dx)
        self.ax.set_ylim(y0 - dy, y1 - dy)
        self.figure.canvas.draw_idle()

    def _release(self, event: MouseEvent) -> None:
        self._drag(event)  # to where the pointer was let go
        self._pan = None


class WrapView:
    """Holistic-CAM's low-pass wrap of the current layer: the factor the map is multiplied
    by, white 1 (kept) to black 0 (removed)."""

    def __init__(self, figure: Figure) -> None:
        self.figure = figure
        self.ax = figure.add_axes((0.03, 0.12, 0.70, 0.66))
        image_axes(self.ax)
        self.art = self.ax.imshow(
            np.full((224, 224), 255, np.uint8), cmap="gray", vmin=0, vmax=255,
            interpolation="none",
        )  # fmt: skip
        self.title = self.ax.set_title(" ", fontsize=FONT["title"])  # moves with the sliders
        bar = figure.add_axes((0.76, 0.12, 0.05, 0.66))
        colorbar = figure.colorbar(self.art, cax=bar, ticks=[0, 127.5, 255])
        colorbar.ax.set_yticklabels(["0", "0.5", "1"], fontsize=FONT["tick"])
        colorbar.set_label("factor on the map", fontsize=FONT["label"])
        figure.text(
            0.03, 0.03, "white: kept (x1), black: removed (x0)", fontsize=FONT["tick"],
            color="0.3",
        )  # fmt: skip
        self.cross = crosshair(self.ax)
        self.frame = Frame(figure, [[self.title, self.art], self.cross])

    def set_size(self, height: int, width: int) -> None:
        """Fit the image to maps of ``height x width`` pixels."""
        fit_image(self.ax, self.art, height, width)


class ProbeView:
    """The attribution at the probed pixel across layers (x, full names) and methods (one
    line each, in the method's colour); a band marks the current layer."""

    HINT = "click a pixel of any map to probe it"

    def __init__(self, figure: Figure) -> None:
        self.figure = figure
        self.ax = figure.add_axes((0.20, 0.36, 0.77, 0.52))
        self.ax.set_ylim(-0.03, 1.03)
        self.ax.set_ylabel("attribution", fontsize=FONT["label"])
        self.ax.tick_params(labelsize=FONT["tick"])
        self.title = self.ax.set_title(self.HINT, fontsize=FONT["title"])
        self.band = self.ax.axvline(0, color="0.5", linewidth=8, alpha=0.2)
        self.lines: list = []
        self.layers: list[str] = []
        self.frame = Frame(figure, [[self.band, self.title]])

    def structure(self, layers: Sequence[str], methods: Sequence[str]) -> None:
        """One line per method over the layers (rebuilt only when the lists change)."""
        for line in self.lines:
            line.remove()
        self.layers = list(layers)
        xs = np.arange(len(layers))
        self.lines = [
            self.ax.plot(
                xs, np.full(len(xs), np.nan), marker="o", markersize=4,
                color=COLORS.get(m, "black"), label=LABELS.get(m, m),
            )[0]
            for m in methods
        ]  # fmt: skip
        self.ax.set_xticks(xs, list(layers), rotation=25, ha="right", fontsize=FONT["tick"])
        self.ax.set_xlim(-0.4, max(0.4, len(xs) - 0.6))
        legend = self.ax.get_legend()
        if legend is not None:
            legend.remove()
        if self.lines:
            self.ax.legend(fontsize=FONT["tick"], loc="upper left", ncols=2, framealpha=0.6)
        self.frame.reset([[self.band, self.title, *self.lines]])

    def set_probe(self, y: int | None, x: int | None, values: np.ndarray | None) -> None:
        """``values`` (method, layer) at pixel (y, x); None hides the lines."""
        visible = y is not None and x is not None and values is not None
        for mi, line in enumerate(self.lines):
            line.set_ydata(values[mi] if visible else np.full(len(self.layers), np.nan))
        self.title.set_text(f"pixel (y {y}, x {x})" if visible else self.HINT)

    def set_layer(self, index: int) -> None:
        """Move the band that marks the current layer."""
        self.band.set_xdata([index, index])


class CurvesView:
    """Insertion and deletion curves of the current map, the clean image's probability of
    the target as a dashed line, the y axis from 0 to the data's top, AUCs in the legend."""

    def __init__(self, figure: Figure) -> None:
        self.figure = figure
        self.ax = figure.add_axes((0.15, 0.2, 0.82, 0.66))
        self.ax.set_xlim(0, 1)
        self.ax.set_ylim(0, 1.02)
        self.ax.set_xlabel("fraction of pixels inserted / deleted", fontsize=FONT["label"])
        self.ax.set_ylabel("probability of the target", fontsize=FONT["label"])
        self.ax.tick_params(labelsize=FONT["tick"])
        (self.insertion,) = self.ax.plot([], [], label="insertion")
        (self.deletion,) = self.ax.plot([], [], linestyle="--", label="deletion")
        self.clean = self.ax.axhline(
            0, color="0.4", linestyle=":", linewidth=1, label="clean image", visible=False
        )
        self.legend = self.ax.legend(fontsize=FONT["tick"], loc="upper right")
        self.title = self.ax.set_title("not computed", fontsize=FONT["title"])
        self.frame = Frame(figure, [])

    def set_curves(
        self, curves: CurveSet | None, note: str, clean: float, what: str, color: str = "black"
    ) -> None:
        """The curves of ``what`` (None: ``note`` instead) in the method's ``color``
        (insertion solid, deletion dashed) and the clean image's probability."""
        self.insertion.set_color(color)
        self.deletion.set_color(color)
        for handle in self.legend.legend_handles[:2]:
            handle.set_color(color)
        top = clean
        lines = {"insertion": self.insertion, "deletion": self.deletion}
        texts = self.legend.get_texts()
        for i, (name, line) in enumerate(lines.items()):
            if curves:
                xs, ys, auc = curves[name]
                line.set_data(xs, ys)
                texts[i].set_text(f"{name}, AUC {auc:.3f}")
                top = max(top, float(np.max(ys)))
            else:
                line.set_data([], [])
                texts[i].set_text(name)
        self.clean.set_ydata([clean, clean])
        self.clean.set_visible(True)
        texts[2].set_text(f"clean image, p {clean:.3f}")
        self.ax.set_ylim(0, max(0.05, top * 1.08))
        self.title.set_text(what if curves else note)
