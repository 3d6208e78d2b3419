"""The grid view: every layer x method map on one colour scale, as one mosaic image.

The maps are reduced to :data:`CELL` pixels a side (a block mean) and placed in one array,
drawn by one figure image, pixel for pixel over the axes (no resampling): a 4 x 5 grid
costs one copy of its pixels, not twenty axes' draws. Method
names head the columns in each method's colour, layer names label the rows, the current
map is framed, the probe's crosshair shows in every cell, and each cell can carry its
insertion / deletion AUCs. Only a change of the layer or method lists rebuilds the figure.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import cv2
import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.font_manager import FontProperties
from matplotlib.image import FigureImage
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.textpath import TextToPath
from matplotlib.transforms import IdentityTransform

from ..methods import COLORS, LABELS
from .canvas import DPI, FONT, Frame, image_axes

__all__ = ["CELL", "GridView", "mosaic"]

#: A cell's largest side in pixels (224-pixel maps show at 112), and the gap between cells.
CELL, GAP = 112, 6
#: Margins in pixels: above the cells (the method names), below, and right of them (the
#: colour bar with its ticks and label); left of them the longest layer name sets it.
_TOP, _BOTTOM, _BAR = 34, 10, 72
_HIGHLIGHT = "#ff2bd6"
_TEXT = TextToPath()  # text metrics without a renderer


def _label_width(layers: Sequence[str]) -> int:
    """Pixels left of the cells: the longest layer name, 8 pixels from the cells, and 6."""
    font = FontProperties(size=FONT["label"])
    widths = [_TEXT.get_text_width_height_descent(name, font, ismath=False)[0] for name in layers]
    return max(40, math.ceil(max(widths, default=0.0) * DPI / 72) + 14)


def _reduce(maps: np.ndarray) -> np.ndarray:
    """(..., H, W) maps reduced to at most CELL pixels a side (area averaging)."""
    height, width = maps.shape[-2:]
    k = max(1, -(-max(height, width) // CELL))
    if k == 1:
        return maps
    size = (width // k, height // k)
    flat = maps.reshape(-1, height, width)
    small = [cv2.resize(m, size, interpolation=cv2.INTER_AREA) for m in flat]
    return np.stack(small).reshape(*maps.shape[:-2], size[1], size[0])


@functools.lru_cache(maxsize=16)
def _with_gaps(cmap: str) -> Colormap:
    """The named colormap with white for NaN (the gaps between cells), made once (its colour
    table is built at first use)."""
    return matplotlib.colormaps[cmap].with_extremes(bad="white")


def mosaic(attribution: np.ndarray) -> np.ndarray:
    """The grid's image: (layer rows x method columns) cells of reduced maps, NaN gaps.

    Args:
        attribution: (method, layer, H, W) maps.
    """
    small = _reduce(np.asarray(attribution, dtype=np.float32))
    methods, layers, h, w = small.shape
    out = np.full((layers * (h + GAP) - GAP, methods * (w + GAP) - GAP), np.nan, np.float32)
    for mi in range(methods):
        _place(out, small[mi], mi)
    return out


def _place(out: np.ndarray, column: np.ndarray, method: int) -> None:
    """Write one method's reduced maps, (layer, h, w), into its column of the mosaic."""
    h, w = column.shape[-2:]
    for li, cell in enumerate(column):
        y, x = li * (h + GAP), method * (w + GAP)
        out[y : y + h, x : x + w] = cell


class _Mosaic(FigureImage):
    """A figure image of RGBA pixels, drawn as they are at the figure's own dpi: matplotlib
    would pass them through its resampler and colour checks, several times the copy's cost
    (at another dpi, as when saved larger, it does)."""

    def make_image(
        self, renderer: object, magnification: float = 1.0, unsampled: bool = False
    ) -> tuple:
        if magnification != 1.0 or renderer.dpi != self.figure.dpi:
            return super().make_image(renderer, magnification, unsampled)
        return np.ascontiguousarray(self.get_array()[::-1]), self.ox, self.oy, IdentityTransform()


class GridView:
    """The layer x method grid (see the module's notes).

    Attributes:
        figure: the view's figure (made by the caller, with its canvas).
        values: the mosaic of attributions (NaN gaps); image: its artist, in colour.
        bar: the colour scale; outline: the current cell's frame.
        frame: redraws the moving parts (see :class:`~.canvas.Frame`).
    """

    def __init__(self, figure: object, cmap: str) -> None:
        self.figure = figure
        self.layers: list[str] = []
        self.methods: list[str] = []
        self.size = (224, 224)
        self.cell = (CELL, CELL)
        self._cmap = cmap
        self.frame = Frame(figure, [])
        self._build()

    def _build(self) -> None:
        fig = self.figure
        fig.clear()
        rows, cols = max(1, len(self.layers)), max(1, len(self.methods))
        ch, cw = self.cell
        inner_w, inner_h = cols * (cw + GAP) - GAP, rows * (ch + GAP) - GAP
        left = _label_width(self.layers)
        width, height = left + inner_w + _BAR, _TOP + inner_h + _BOTTOM
        fig.set_size_inches(width / DPI, height / DPI, forward=True)
        self.ax = fig.add_axes((left / width, _BOTTOM / height, inner_w / width, inner_h / height))
        image_axes(self.ax)
        for spine in self.ax.spines.values():
            spine.set_visible(False)
        blank = np.full((inner_h, inner_w), np.nan, np.float32)
        self.values = blank  # the mosaic's attributions; the image shows them coloured
        # the axes' data coordinates are the mosaic's pixels, which the image lays under it
        self.ax.set_xlim(-0.5, inner_w - 0.5)
        self.ax.set_ylim(inner_h - 0.5, -0.5)
        self.image = _Mosaic(fig, offsetx=left, offsety=_BOTTOM, origin="upper")
        self.image.set_array(self._colour(blank))
        self.ax.add_artist(self.image)  # drawn with the axes (and below their lines)
        self.bar = ScalarMappable(Normalize(0.0, 1.0), self._cmap)
        for mi, method in enumerate(self.methods):
            self.ax.text(
                mi * (cw + GAP) + cw / 2, -8, LABELS.get(method, method), ha="center",
                va="bottom", fontsize=FONT["title"], fontweight="bold",
                color=COLORS.get(method, "black"),
            )  # fmt: skip
        for li, layer in enumerate(self.layers):
            self.ax.text(
                -8, li * (ch + GAP) + ch / 2, layer, ha="right", va="center",
                fontsize=FONT["label"],
            )  # fmt: skip
        self.outline = Rectangle((0, 0), cw, ch, fill=False, edgecolor=_HIGHLIGHT, linewidth=3.5)
        self.outline.set_visible(False)
        self.ax.add_patch(self.outline)
        self.cross = Line2D([], [], color="white", linewidth=0.9, linestyle="--", alpha=0.9)
        self.ax.add_line(self.cross)
        self.auc_texts = {
            (li, mi): self.ax.text(
                mi * (cw + GAP) + 3,
                li * (ch + GAP) + ch - 3,
                "",
                ha="left",
                va="bottom",
                fontsize=FONT["tick"],
                color="black",
                bbox={"facecolor": "white", "alpha": 0.75, "pad": 1, "linewidth": 0},
            )
            for li in range(len(self.layers))
            for mi in range(len(self.methods))
        }
        bar = fig.add_axes(
            ((width - _BAR + 10) / width, _BOTTOM / height, 12 / width, inner_h / height)
        )
        fig.colorbar(self.bar, cax=bar).set_label("attribution, 0-1", fontsize=FONT["label"])
        bar.tick_params(labelsize=FONT["tick"])
        self.current: tuple[int, int] | None = None
        # the maps (with their AUCs) change with the sliders, the frame and crosshair with a
        # click: a click redraws only the latter
        self.frame.reset([[self.image, *self.auc_texts.values()], [self.outline, self.cross]])

    def structure(
        self, layers: Sequence[str], methods: Sequence[str], size: tuple[int, int]
    ) -> bool:
        """Rebuild if the layer or method lists or the maps' size changed; returns whether."""
        layers, methods, size = list(layers), list(methods), tuple(size)
        if (layers, methods, size) == (self.layers, self.methods, self.size):
            return False
        self.layers, self.methods, self.size = layers, methods, size
        self.cell = _reduce(np.zeros((1, *size), np.float32)).shape[-2:]
        self._build()
        return True

    def set_maps(self, attribution: np.ndarray, methods: Sequence[int] | None = None) -> None:
        """The cells' maps: ``attribution`` is (method, layer, H, W); ``methods``: only
        those columns changed (None: all)."""
        if methods is None:
            self.values = mosaic(attribution)
            self.image.set_data(self._colour(self.values))
            return
        shown, width = self.image.get_array(), self.cell[1]  # only those columns recoloured
        for mi in methods:
            _place(self.values, _reduce(np.asarray(attribution[mi], dtype=np.float32)), mi)
            columns = slice(mi * (width + GAP), mi * (width + GAP) + width)
            shown[:, columns] = self._colour(self.values[:, columns])
        self.image.stale = True

    def cell_map(self, layer: int, method: int) -> np.ndarray:
        """The reduced map a cell shows (for checks)."""
        ch, cw = self.cell
        y, x = layer * (ch + GAP), method * (cw + GAP)
        return self.values[y : y + ch, x : x + cw]

    def set_cmap(self, cmap: str) -> None:
        """Colour the maps (and the colour bar) with ``cmap``."""
        self._cmap = cmap
        self.bar.set_cmap(cmap)
        self.image.set_data(self._colour(self.values))

    def _colour(self, values: np.ndarray) -> np.ndarray:
        """The mosaic in colour, (h, w, 4) uint8 (white gaps): drawn without resampling."""
        return _with_gaps(self._cmap)(np.clip(values, 0.0, 1.0), bytes=True)

    def set_current(self, layer: int, method: int) -> None:
        """Frame the current map's cell."""
        ch, cw = self.cell
        self.outline.set_xy((method * (cw + GAP) - 0.5, layer * (ch + GAP) - 0.5))
        self.outline.set_visible(True)
        self.current = (layer, method)

    def set_probe(self, y: int | None, x: int | None) -> None:
        """The crosshair at map pixel (y, x) in every cell (None hides it)."""
        if y is None or x is None:
            self.cross.set_data([], [])
            return
        ch, cw = self.cell
        sy, sx = (y + 0.5) * ch / self.size[0] - 0.5, (x + 0.5) * cw / self.size[1] - 0.5
        xs, ys = [], []
        for li in range(len(self.layers)):
            for mi in range(len(self.methods)):
                top, left = li * (ch + GAP), mi * (cw + GAP)
                xs += [left - 0.5, left + cw - 0.5, np.nan, left + sx, left + sx, np.nan]
                ys += [top + sy, top + sy, np.nan, top - 0.5, top + ch - 0.5, np.nan]
        self.cross.set_data(xs, ys)

    def set_scores(self, scores: dict[tuple[int, int], tuple[float, float]]) -> None:
        """Each scored cell's insertion and deletion AUCs; unscored cells show nothing."""
        for cell, text in self.auc_texts.items():
            auc = scores.get(cell)
            text.set_text("" if auc is None else f"ins {auc[0]:.2f}  del {auc[1]:.2f}")
            text.set_visible(auc is not None)

    def at(self, xdata: float, ydata: float) -> tuple[tuple[int, int], int, int] | None:
        """The cell (layer, method) and map pixel (y, x) under data coordinates, or None."""
        ch, cw = self.cell
        li, ry = divmod(ydata + 0.5, ch + GAP)
        mi, rx = divmod(xdata + 0.5, cw + GAP)
        if not (0 <= li < len(self.layers) and 0 <= mi < len(self.methods)):
            return None
        if ry >= ch or rx >= cw:
            return None  # a gap
        y = min(self.size[0] - 1, int(ry * self.size[0] / ch))
        x = min(self.size[1] - 1, int(rx * self.size[1] / cw))
        return (int(li), int(mi)), y, x
