"""Figures for the explorer's views: a canvas in the page in the app, plain Agg elsewhere.

Sizes are given in pixels (figures are made at :data:`DPI`), so that the app's layout is
fixed from the first render. No pyplot: a figure is shown only where the app puts its canvas.

Speed in the browser comes from two things here:

- :class:`Frame`: a view's moving parts (its maps, crosshairs, marks, changing titles) are
  *animated* artists, in layers. A full draw keeps the figure without them as a background
  (and after each layer); an update restores the latest kept state below the changed
  layers, draws only what lies above it and sends the frame at once (``blit``), instead of
  re-rendering every label and waiting for the browser to ask for a draw.
- in the app, a figure's canvas is a :class:`~.surface.SurfaceCanvas`: a frame goes to the
  page as a PNG of the pixels that changed, from :func:`~.surface.quick_png`, about twenty
  times as quick as matplotlib's web backend's (Pillow at zlib level 6) for these figures,
  and the page draws it without re-encoding anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backend_bases import DrawEvent
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D

__all__ = [
    "DPI",
    "FONT",
    "Frame",
    "PixelImage",
    "crosshair",
    "fit_image",
    "image_axes",
    "image_extent",
    "move_crosshair",
    "new_figure",
    "pixel",
]

#: Dots per inch of every view: 1 pt of text is 1.39 px, legible at 100 % zoom.
DPI = 100
#: Font sizes (points): titles, labels, ticks.
FONT = {"title": 10, "label": 9, "tick": 8}
_FRAME = "0.7"
_CROSS = {"color": "white", "linewidth": 0.9, "linestyle": "--", "alpha": 0.9}


def new_figure(
    width: int,
    height: int,
    label: str,
    *,
    interactive: bool,
    zoom: bool = False,
    cursor: str = "default",
    hint: str = "",
) -> Figure:
    """A ``width`` x ``height`` pixel figure with a canvas in the page or a plain Agg one.

    Args:
        label: the figure's name.
        interactive: a :class:`~.surface.SurfaceCanvas` (its ``widget`` goes in the page)
            rather than Agg.
        zoom: the page sends the mouse wheel and drags over the canvas (the view zooms and
            pans with them).
        cursor, hint: the CSS cursor over the canvas and its tooltip in the page.
    """
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    fig.set_label(label)
    if not interactive:
        FigureCanvasAgg(fig)
        return fig
    from .surface import SurfaceCanvas

    SurfaceCanvas(fig, zoom=zoom, cursor=cursor, hint=hint)
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


def image_extent(height: int, width: int) -> tuple[float, float, float, float]:
    """The extent (left, right, bottom, top) of a ``height x width`` image drawn with its
    first row at the top, pixel centres at whole numbers: also its axes' whole view."""
    return (-0.5, width - 0.5, height - 0.5, -0.5)


def fit_image(ax: Axes, art: AxesImage, height: int, width: int) -> None:
    """Make an image artist span ``height x width`` pixels (after a change of size)."""
    extent = image_extent(height, width)
    if tuple(art.get_extent()) != extent:
        art.set_extent(extent)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])


class PixelImage(AxesImage):
    """An image of (H, W, 3) uint8 pixels that, while it fills its axes (not zoomed), draws
    the pixels matplotlib would draw by one lookup.

    ``AxesImage`` spends most of its draw (about 7 ms for a 224 x 224 image shown at
    336 x 336) on array handling around the resampling. Here each screen pixel shows the
    image pixel under its centre, found by one gather of whole RGBA pixels through a table
    made once per size (under a millisecond). The first draw at each size draws both ways
    and keeps the lookup only where it gives exactly matplotlib's pixels (the explorer's
    224 x 224 maps do); elsewhere, zoomed or panned, drawn by another renderer (a vector
    file) or given other data, it is drawn as any ``AxesImage``.
    """

    def __init__(self, ax: Axes, data: np.ndarray, **kwargs: object) -> None:
        super().__init__(ax, interpolation="none", **kwargs)  # on Agg: no resampling pass
        self.set_data(data)
        ax.add_image(self)
        ax.set_aspect("equal")  # as imshow: square pixels, the axes' limits at the extent
        self.set_extent(self.get_extent())
        self._table: tuple = ((), False, None, None, None)  # key, exact, index, RGBA in, out

    def draw(self, renderer: object) -> None:
        data, ax = np.asarray(self.get_array()), self.axes
        height, width = data.shape[:2]
        extent = image_extent(height, width)
        if not (
            isinstance(renderer, RendererAgg)
            and self.get_visible()
            and self.get_alpha() is None
            and data.dtype == np.uint8
            and data.ndim == 3
            and data.shape[2] == 3
            and tuple(self.get_extent()) == extent
            and ax.get_xlim() == extent[:2]
            and ax.get_ylim() == extent[2:]
        ):
            super().draw(renderer)
            return
        key = (height, width, tuple(ax.bbox.bounds), renderer.dpi)
        if self._table[0] == key:
            if self._table[1]:
                self._lookup(renderer, data)
            else:
                super().draw(renderer)
            return
        # a new size: matplotlib's pixels of an image of distinct pixels (their indices),
        # then the lookup's over them; the lookup is kept if they are the same
        box = ax.bbox
        out = (int(np.ceil(box.height)), int(np.ceil(box.width)))
        rows = ((np.arange(out[0])[::-1] + 0.5) * height / out[0]).astype(np.intp)  # bottom up
        columns = ((np.arange(out[1]) + 0.5) * width / out[1]).astype(np.intp)
        index = rows[:, None] * width + columns
        source = np.full((height, width, 4), 255, np.uint8)  # opaque: alpha stays 255
        self._table = (key, True, index, source, np.empty((*out, 4), np.uint8))
        ids = np.arange(height * width, dtype=np.uint32).reshape(height, width)
        coded = np.stack([ids & 255, (ids >> 8) & 255, ids >> 16], axis=-1).astype(np.uint8)
        self.set_data(coded)
        super().draw(renderer)
        screen = np.asarray(renderer.buffer_rgba())
        drawn = screen.copy()
        self._lookup(renderer, coded)
        if not np.array_equal(drawn, screen):
            self._table = (key, False, None, None, None)
            screen[...] = drawn  # the lookup's pixels off again (it may cover more)
        self.set_data(data)
        self.draw(renderer)

    def _lookup(self, renderer: object, data: np.ndarray) -> None:
        _, _, index, source, rgba = self._table
        source[..., :3] = data
        np.take(source.view(np.uint32).reshape(-1), index, out=rgba.view(np.uint32)[..., 0])
        box = self.axes.bbox
        gc = renderer.new_gc()
        gc.set_clip_rectangle(box.frozen())
        renderer.draw_image(gc, box.x0, box.y0, rgba)
        gc.restore()
        self.stale = False


def pixel(value: float, size: int) -> int:
    """A data coordinate as a pixel index within 0..size-1."""
    return int(np.clip(round(value), 0, size - 1))


class Frame:
    """A figure whose ``animated`` artists are redrawn over a kept background.

    The animated artists come in ``layers``, drawn in order. After any full draw of the
    figure on screen (``canvas.draw``, a zoom) the figure without them is kept as
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
        """Draw the whole figure (and send it, on a canvas in the page)."""
        self.figure.canvas.draw()
