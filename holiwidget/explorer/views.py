"""The explorer's linked views: matplotlib figures whose artists are updated in place.

Each view is its own figure (an ipympl canvas in the app, plain Agg elsewhere):

- ``overlay``: the input with the current map overlaid (opacity adjustable);
- ``grid``: every layer x method map on one colour scale, the current one highlighted;
- ``lpw``: Holistic-CAM's low-pass wrap of the current layer (the mask denoising multiplies in);
- ``probe``: the attribution at the probed pixel across layers (x) and methods (one line each);
- ``curves``: insertion and deletion curves of the current map.

After a figure is built, updates only call ``set_data`` / ``set_alpha`` / ``set_xdata`` /
``set_ydata`` / ``set_text`` on the existing artists and ``draw_idle``. Only a change of the
layer or method *lists* rebuilds the grid's axes and the probe's lines.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backend_bases import MouseEvent
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D

from ..figure import ALPHA, CMAP
from ..methods import LABELS

__all__ = ["VIEWS", "Views", "new_figure"]

#: The views, in the order the app lays them out.
VIEWS = ("overlay", "lpw", "probe", "curves", "grid")

_DPI = 72
_PANEL = 1.45  # grid panel side, inches
_CROSS = {"color": "white", "linewidth": 0.8, "linestyle": "--", "alpha": 0.9}
_HIGHLIGHT = {"color": "#ff2bd6", "width": 3.5}
_PLAIN = {"color": "0.75", "width": 0.6}
_numbers = itertools.count(1)


def new_figure(width: float, height: float, label: str, *, interactive: bool) -> Figure:
    """A figure with an ipympl canvas (``interactive``) or a plain Agg canvas.

    No pyplot: the figure is not registered anywhere and is shown only where the app puts
    its canvas widget.
    """
    fig = Figure(figsize=(width, height), dpi=_DPI)
    fig.set_label(label)
    if interactive:
        from ipympl.backend_nbagg import Canvas, FigureManager

        canvas = Canvas(fig)
        with warnings.catch_warnings():
            # ipympl's toolbar passes matplotlib's arguments on to traitlets (harmless).
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="traitlets")
            manager = FigureManager(canvas, next(_numbers))
        manager.set_window_title(label)
        canvas.header_visible = False
        canvas.footer_visible = False
        canvas.toolbar_visible = False
        canvas.resizable = False
        canvas.layout.overflow = "hidden"
        canvas.layout.flex = "0 0 auto"
        canvas.layout.margin = "0 8px 8px 0"
    else:
        FigureCanvasAgg(fig)
    return fig


def _image_axes(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color(_PLAIN["color"])
        spine.set_linewidth(_PLAIN["width"])


def _crosshair(ax: Axes) -> tuple[Line2D, Line2D]:
    h = ax.axhline(0, visible=False, **_CROSS)
    v = ax.axvline(0, visible=False, **_CROSS)
    return h, v


def _fit(ax: Axes, art: AxesImage, height: int, width: int) -> None:
    """Make an image artist span ``height x width`` pixels (after a change of size)."""
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    if tuple(art.get_extent()) != extent:
        art.set_extent(extent)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])


class Views:
    """The five figures and their artists.

    Args:
        on_click: called as ``on_click(view, cell, y, x)`` when a pixel of an image view is
            clicked: ``view`` is ``"overlay"``, ``"lpw"`` or ``"grid"``; ``cell`` is the
            grid's (layer index, method index), else None; ``y, x`` the pixel.
        interactive: ipympl canvases (True) or plain Agg ones (False).
    """

    def __init__(
        self,
        on_click: Callable[[str, tuple[int, int] | None, int, int], None],
        *,
        interactive: bool = True,
    ) -> None:
        self._on_click = on_click
        self.interactive = interactive
        self.layers: list[str] = []
        self.methods: list[str] = []
        self.size = (224, 224)
        self._dirty: set[str] = set()
        blank = np.zeros(self.size, dtype=np.float32)

        self.overlay = new_figure(4.0, 4.3, "fused map", interactive=interactive)
        self.overlay_ax = self.overlay.add_axes((0.02, 0.02, 0.96, 0.84))
        _image_axes(self.overlay_ax)
        self.rgb_art = self.overlay_ax.imshow(np.zeros((*self.size, 3), np.uint8))
        self.map_art = self.overlay_ax.imshow(
            blank, cmap=CMAP, vmin=0.0, vmax=1.0, alpha=ALPHA, interpolation="nearest"
        )
        self.overlay_title = self.overlay_ax.set_title(" ", fontsize=9)

        self.lpw = new_figure(4.0, 4.3, "low-pass wrap", interactive=interactive)
        self.lpw_ax = self.lpw.add_axes((0.02, 0.02, 0.96, 0.84))
        _image_axes(self.lpw_ax)
        self.lpw_art = self.lpw_ax.imshow(
            np.full(self.size, 255, np.uint8),
            cmap="gray",
            vmin=0,
            vmax=255,
            interpolation="nearest",
        )
        self.lpw_title = self.lpw_ax.set_title(" ", fontsize=9)

        self.probe = new_figure(4.2, 2.9, "pixel probe", interactive=interactive)
        self.probe_ax = self.probe.add_axes((0.13, 0.3, 0.83, 0.58))
        self.probe_ax.set_ylim(-0.03, 1.03)
        self.probe_ax.set_ylabel("attribution", fontsize=8)
        self.probe_ax.tick_params(labelsize=7)
        self.probe_title = self.probe_ax.set_title("click a pixel of any map", fontsize=9)
        self.probe_lines: list[Line2D] = []
        self.probe_layer = self.probe_ax.axvline(0, color="0.5", linewidth=6, alpha=0.25)

        self.curves = new_figure(4.2, 2.9, "insertion / deletion", interactive=interactive)
        self.curves_ax = self.curves.add_axes((0.13, 0.2, 0.83, 0.66))
        self.curves_ax.set_xlim(0, 1)
        self.curves_ax.set_ylim(0, 1.02)
        self.curves_ax.set_xlabel("fraction of pixels", fontsize=8)
        self.curves_ax.set_ylabel("probability", fontsize=8)
        self.curves_ax.tick_params(labelsize=7)
        (self.insertion_line,) = self.curves_ax.plot([], [], color="tab:green", label="insertion")
        (self.deletion_line,) = self.curves_ax.plot([], [], color="tab:red", label="deletion")
        self.curves_legend = self.curves_ax.legend(fontsize=7, loc="upper right")
        self.curves_title = self.curves_ax.set_title("not computed", fontsize=9)

        self.grid = new_figure(4.0, 2.0, "maps", interactive=interactive)
        self.grid_axes: dict[tuple[int, int], Axes] = {}
        self.grid_arts: dict[tuple[int, int], AxesImage] = {}
        self._cell_of: dict[Axes, tuple[int, int]] = {}
        self.current: tuple[int, int] | None = None

        self.crosshairs: list[tuple[Line2D, Line2D]] = [
            _crosshair(self.overlay_ax),
            _crosshair(self.lpw_ax),
        ]
        self._grid_cross: list[tuple[Line2D, Line2D]] = []
        for fig in self.figures.values():
            fig.canvas.mpl_connect("button_press_event", self._press)

    # -----------------------------------------------------------------------------------
    # structure

    @property
    def figures(self) -> dict[str, Figure]:
        """The view figures by name (see :data:`VIEWS`)."""
        return {name: getattr(self, name) for name in VIEWS}

    def canvases(self) -> dict[str, object]:
        """The figures' canvases (ipympl widgets when interactive)."""
        return {name: fig.canvas for name, fig in self.figures.items()}

    def fixed_size(self) -> None:
        """Tell displayed canvases again that they are not resizable: a page that took the
        widgets' state before the first change (Voila) still draws ipympl's resize handle."""
        for canvas in self.canvases().values():
            if hasattr(canvas, "resizable"):
                canvas.resizable = True
                canvas.resizable = False

    def structure(
        self, layers: Sequence[str], methods: Sequence[str], size: tuple[int, int]
    ) -> bool:
        """Rebuild the grid and the probe's lines if the layer or method lists changed.

        Returns:
            Whether anything was rebuilt.
        """
        layers, methods, size = list(layers), list(methods), tuple(size)
        if layers == self.layers and methods == self.methods and size == self.size:
            return False
        self.layers, self.methods, self.size = layers, methods, size
        self._build_grid()
        self._build_probe()
        for ax, art in ((self.overlay_ax, self.rgb_art), (self.overlay_ax, self.map_art)):
            _fit(ax, art, *size)
        _fit(self.lpw_ax, self.lpw_art, *size)
        self._dirty.update(VIEWS)
        return True

    def _build_grid(self) -> None:
        fig = self.grid
        fig.clear()
        rows, cols = max(1, len(self.layers)), max(1, len(self.methods))
        left, top, bottom, gap, bar = 0.3, 0.3, 0.08, 0.06, 0.55
        width = left + cols * _PANEL + (cols - 1) * gap + bar
        height = top + rows * _PANEL + (rows - 1) * gap + bottom
        fig.set_size_inches(width, height, forward=True)
        self.grid_axes, self.grid_arts, self._cell_of = {}, {}, {}
        self._grid_cross = []
        blank = np.zeros(self.size, dtype=np.float32)
        art = None
        for li, layer in enumerate(self.layers):
            for mi, method in enumerate(self.methods):
                x0 = left + mi * (_PANEL + gap)
                y0 = height - top - (li + 1) * _PANEL - li * gap
                ax = fig.add_axes((x0 / width, y0 / height, _PANEL / width, _PANEL / height))
                _image_axes(ax)
                art = ax.imshow(blank, cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
                if li == 0:
                    ax.set_title(LABELS.get(method, method), fontsize=8)
                if mi == 0:
                    ax.set_ylabel(layer, fontsize=7)
                self.grid_axes[(li, mi)] = ax
                self.grid_arts[(li, mi)] = art
                self._cell_of[ax] = (li, mi)
                self._grid_cross.append(_crosshair(ax))
        if art is not None:
            cax = fig.add_axes(
                (
                    (width - bar + 0.12) / width,
                    bottom / height,
                    0.12 / width,
                    rows * _PANEL / height,
                )
            )
            fig.colorbar(art, cax=cax)
            cax.tick_params(labelsize=7)
        self.current = None

    def _build_probe(self) -> None:
        for line in self.probe_lines:
            line.remove()
        xs = np.arange(len(self.layers))
        self.probe_lines = [
            self.probe_ax.plot(
                xs, np.full(len(xs), np.nan), marker="o", markersize=4, label=LABELS.get(m, m)
            )[0]
            for m in self.methods
        ]
        self.probe_ax.set_xticks(xs, [_short(name) for name in self.layers], rotation=20)
        self.probe_ax.set_xlim(-0.4, max(0.4, len(xs) - 0.6))
        legend = self.probe_ax.get_legend()
        if legend is not None:
            legend.remove()
        if self.probe_lines:
            self.probe_ax.legend(fontsize=6, loc="upper left", ncols=2, framealpha=0.6)

    # -----------------------------------------------------------------------------------
    # in-place updates

    def set_image(self, rgb: np.ndarray) -> None:
        self.rgb_art.set_data(rgb)
        self._dirty.add("overlay")

    def set_maps(self, attribution: np.ndarray) -> None:
        """Every grid map: ``attribution`` is (method, layer, H, W)."""
        for (li, mi), art in self.grid_arts.items():
            art.set_data(attribution[mi, li])
        self._dirty.add("grid")

    def set_current(
        self, layer: int, method: int, fused: np.ndarray, lpw: np.ndarray | None, titles: dict
    ) -> None:
        """The current map: overlay, grid highlight, low-pass wrap and the probe's layer band."""
        self.map_art.set_data(fused)
        self.overlay_title.set_text(titles.get("overlay", ""))
        if lpw is not None:
            self.lpw_art.set_data(lpw)
        self.lpw_title.set_text(titles.get("lpw", ""))
        if self.current != (layer, method):
            for cell, ax in self.grid_axes.items():
                style = _HIGHLIGHT if cell == (layer, method) else _PLAIN
                for spine in ax.spines.values():
                    spine.set_color(style["color"])
                    spine.set_linewidth(style["width"])
            self.current = (layer, method)
            self._dirty.add("grid")
        self.probe_layer.set_xdata([layer, layer])
        self._dirty.update(("overlay", "lpw", "probe"))

    def set_opacity(self, alpha: float) -> None:
        self.map_art.set_alpha(float(alpha))
        self._dirty.add("overlay")

    def set_probe(self, y: int | None, x: int | None, values: np.ndarray | None) -> None:
        """Crosshairs on every image view and the probe's lines; None hides them.

        ``values`` is (method, layer): the attribution at pixel (y, x).
        """
        visible = y is not None and x is not None
        for h, v in [*self.crosshairs, *self._grid_cross]:
            if visible:
                h.set_ydata([y, y])
                v.set_xdata([x, x])
            h.set_visible(visible)
            v.set_visible(visible)
        for mi, line in enumerate(self.probe_lines):
            line.set_ydata(values[mi] if visible else np.full(len(self.layers), np.nan))
        self.probe_title.set_text(
            f"pixel (y {y}, x {x})" if visible else "click a pixel of any map"
        )
        self._dirty.update(VIEWS)

    def set_curves(self, curves: dict | None, message: str = "not computed") -> None:
        """Insertion and deletion curves ({"insertion": (x, y, auc), "deletion": ...})."""
        if not curves:
            self.insertion_line.set_data([], [])
            self.deletion_line.set_data([], [])
            self.curves_title.set_text(message)
        else:
            texts = []
            for name, line in (
                ("insertion", self.insertion_line),
                ("deletion", self.deletion_line),
            ):
                xs, ys, auc = curves[name]
                line.set_data(xs, ys)
                texts.append(f"{name} {auc:.3f}")
            self.curves_title.set_text("AUC: " + ", ".join(texts))
        self._dirty.add("curves")

    def draw(self) -> None:
        """Ask every changed canvas to redraw (``draw_idle``)."""
        for name in VIEWS:
            if name in self._dirty:
                self.figures[name].canvas.draw_idle()
        self._dirty.clear()

    # -----------------------------------------------------------------------------------
    # events

    def _press(self, event: MouseEvent) -> None:
        ax = event.inaxes
        if ax is None or event.xdata is None or event.ydata is None or event.button != 1:
            return
        toolbar = getattr(event.canvas, "toolbar", None)
        if toolbar is not None and str(getattr(toolbar, "mode", "")):
            return  # zooming or panning
        height, width = self.size
        y = int(np.clip(round(event.ydata), 0, height - 1))
        x = int(np.clip(round(event.xdata), 0, width - 1))
        if ax is self.overlay_ax:
            self._on_click("overlay", None, y, x)
        elif ax is self.lpw_ax:
            self._on_click("lpw", None, y, x)
        elif ax in self._cell_of:
            self._on_click("grid", self._cell_of[ax], y, x)


def _short(name: str) -> str:
    return name if len(name) <= 14 else "…" + name[-13:]
