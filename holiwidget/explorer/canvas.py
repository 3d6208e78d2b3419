"""Figures for the explorer's views: an ipympl canvas in the app, plain Agg elsewhere.

Sizes are given in pixels (figures are made at :data:`DPI`), so that the app's layout is
fixed from the first render. No pyplot: a figure is shown only where the app puts its canvas.

Speed in the browser comes from two things here:

- :class:`Frame`: a view's moving parts (its maps, crosshairs, marks, changing titles) are
  *animated* artists, in layers. A full draw keeps the figure without them as a background
  (and after each layer); an update restores the latest kept state below the changed
  layers, draws only what lies above it and sends the frame at once (``blit``), instead of
  re-rendering every label and waiting for the browser to ask for a draw.
- the ipympl canvas sends its frames as whole PNGs from :func:`quick_png`, about twenty
  times as quick as the web backend's (Pillow at zlib level 6) for these figures.
"""

from __future__ import annotations

import itertools
import struct
import warnings
from collections.abc import Sequence

import numpy as np
from isal import isal_zlib
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backend_bases import DrawEvent
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D

__all__ = [
    "DPI",
    "FONT",
    "Frame",
    "crosshair",
    "fit_image",
    "image_axes",
    "move_crosshair",
    "new_figure",
    "pixel",
    "quick_png",
]

#: Dots per inch of every view: 1 pt of text is 1.39 px, legible at 100 % zoom.
DPI = 100
#: Font sizes (points): titles, labels, ticks.
FONT = {"title": 10, "label": 9, "tick": 8}
_FRAME = "0.7"
_CROSS = {"color": "white", "linewidth": 0.9, "linestyle": "--", "alpha": 0.9}
_numbers = itertools.count(1)


def new_figure(
    width: int, height: int, label: str, *, interactive: bool, tools: bool = False
) -> Figure:
    """A ``width`` x ``height`` pixel figure with an ipympl canvas or a plain Agg one.

    Args:
        label: the figure's name (the canvas's title in ipympl).
        interactive: an ipympl canvas (a widget) rather than Agg.
        tools: show ipympl's toolbar (zoom, pan, home) to the left of the canvas.
    """
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    fig.set_label(label)
    if not interactive:
        FigureCanvasAgg(fig)
        return fig
    from ipympl.backend_nbagg import FigureManager

    canvas = _canvas_class()(fig)
    with warnings.catch_warnings():
        # ipympl's toolbar passes matplotlib's arguments on to traitlets (harmless).
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="traitlets")
        manager = FigureManager(canvas, next(_numbers))
    manager.set_window_title(label)
    canvas.header_visible = False
    canvas.footer_visible = False
    canvas.toolbar_visible = "visible" if tools else "hidden"
    canvas.toolbar_position = "left"
    canvas.resizable = False
    canvas.layout.overflow = "hidden"
    canvas.layout.flex = "0 0 auto"
    return fig


def image_axes(ax: Axes) -> None:
    """No ticks; a thin grey frame."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color(_FRAME)
        spine.set_linewidth(0.6)


def crosshair(ax: Axes) -> tuple[Line2D, Line2D]:
    """A hidden horizontal and vertical dashed line (the probe's crosshair)."""
    return ax.axhline(0, visible=False, **_CROSS), ax.axvline(0, visible=False, **_CROSS)


def move_crosshair(lines: tuple[Line2D, Line2D], y: float | None, x: float | None) -> None:
    """Show the crosshair at (y, x), or hide it (None)."""
    h, v = lines
    visible = y is not None and x is not None
    if visible:
        h.set_ydata([y, y])
        v.set_xdata([x, x])
    h.set_visible(visible)
    v.set_visible(visible)


def fit_image(ax: Axes, art: AxesImage, height: int, width: int) -> None:
    """Make an image artist span ``height x width`` pixels (after a change of size)."""
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    if tuple(art.get_extent()) != extent:
        art.set_extent(extent)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])


def pixel(value: float, size: int) -> int:
    """A data coordinate as a pixel index within 0..size-1."""
    return int(np.clip(round(value), 0, size - 1))


class Frame:
    """A figure whose ``animated`` artists are redrawn over a kept background.

    The animated artists come in ``layers``, drawn in order. After any full draw of the
    figure on screen (``canvas.draw``, a zoom, a resize) the figure without them is kept as
    the background, then the layers are drawn on top, keeping the figure as it stands after
    each layer but the last. :meth:`blit` starts from the latest of those kept states that no
    changed artist is part of (matplotlib marks an artist ``stale`` when it is changed), so that a change of the last layer (a crosshair)
    does not redraw the first (a map, a title), and sends the frame; :meth:`full` draws
    everything. Layers are meant not to overlap one another's pixels, except where a later
    layer is meant to lie on top.
    """

    def __init__(self, figure: Figure, layers: Sequence[Sequence[Artist]]) -> None:
        self.figure = figure
        self.reset(layers)
        figure.canvas.mpl_connect("draw_event", self._drawn)

    def reset(self, layers: Sequence[Sequence[Artist]]) -> None:
        """Set the animated artists (again, after the figure was rebuilt), layer by layer."""
        self.layers = [list(layer) for layer in layers if layer]
        for layer in self.layers:
            for artist in layer:
                artist.set_animated(True)
        self._kept: list = []  # the figure without them, then after each layer but the last

    @property
    def animated(self) -> list[Artist]:
        """Every animated artist, in drawing order."""
        return [artist for layer in self.layers for artist in layer]

    def _drawn(self, event: DrawEvent) -> None:
        canvas = event.canvas
        if canvas.is_saving():
            return  # a saved figure draws its animated artists itself
        self._kept = [canvas.copy_from_bbox(self.figure.bbox)]
        self._draw_layers(event.renderer)

    def _draw_layers(self, renderer: object) -> None:
        canvas = self.figure.canvas
        for index in range(len(self._kept) - 1, len(self.layers)):
            for artist in self.layers[index]:
                artist.draw(renderer)
                artist.stale = False  # (an empty text or a patch leaves it set)
            if index < len(self.layers) - 1:
                self._kept.append(canvas.copy_from_bbox(self.figure.bbox))

    def blit(self) -> None:
        """Redraw the changed layers and those above them, and send the frame."""
        canvas = self.figure.canvas
        if not self._kept:
            self.full()
            return
        changed = [any(a.stale for a in layer) for layer in self.layers] + [True]
        start = min(changed.index(True), len(self._kept) - 1)
        del self._kept[start + 1 :]
        canvas.restore_region(self._kept[start])
        self._draw_layers(canvas.get_renderer())
        canvas.blit(self.figure.bbox)

    def full(self) -> None:
        """Draw the whole figure (and send it, on an ipympl canvas)."""
        self.figure.canvas.draw()


def quick_png(rgba: np.ndarray) -> bytes:
    """An (H, W, 4) uint8 image as a PNG: no row filter, deflated by ISA-L (``isal``) at
    level 2.

    Pillow offers no choice of row filter, and its adaptive filtering alone takes about as
    long as the compression; rendered figures (flat backgrounds, smooth maps) compress about
    as well without it. ISA-L deflates a frame about five times as quickly as zlib at level
    1, to about the same size. Any PNG reader decodes the result (tested against Pillow).
    """
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"quick_png takes (H, W, 4) RGBA pixels, not an array of {rgba.shape}")
    height, width = rgba.shape[:2]
    rows = np.zeros((height, width * 4 + 1), np.uint8)  # a 0 (no filter) before each row
    rows[:, 1:] = np.ascontiguousarray(rgba, dtype=np.uint8).reshape(height, -1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = isal_zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", isal_zlib.compress(rows.tobytes(), 2)),
            chunk(b"IEND", b""),
        )
    )


_CANVAS: type | None = None


def _canvas_class() -> type:
    """ipympl's canvas, sending its frames as quickly compressed PNGs (made once)."""
    global _CANVAS
    if _CANVAS is None:
        from ipympl.backend_nbagg import Canvas

        class QuickCanvas(Canvas):
            """ipympl's canvas; every frame is a whole PNG made by :func:`quick_png`.

            Frames are pushed from the kernel (see :class:`Frame`), so two may reach the
            browser before the first is decoded, and the browser then draws only the second:
            a frame of differences would leave the first's changes undrawn for good.
            """

            def get_diff_image(self) -> bytes | None:
                if not self._png_is_old:
                    return None
                rgba = np.asarray(self.get_renderer().buffer_rgba())
                self.set_image_mode("full")
                self._last_buff = rgba.view(np.uint32)[..., 0].copy()
                self._force_full = self._png_is_old = False
                return quick_png(rgba)

        _CANVAS = QuickCanvas
    return _CANVAS
