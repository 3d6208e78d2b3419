"""All the explorer's views, drawn from a :class:`~.session.Session`.

:class:`Board` makes the figures (canvases in the page in the app, Agg without a browser) and
turns each session change into in-place updates of the views it touches. Each changed
figure is then either redrawn whole (its labels changed) or has only its moving parts
redrawn over a kept background (:class:`~.canvas.Frame`). When each frame is sent is
:class:`~.pacing.Pacer`'s (:attr:`Board.pacer`): in a kernel right after the change is
handled, the views an interaction is judged by first, without waiting for the browser to
ask for a draw; elsewhere ``draw_idle``.
Clicks on an image view come back as ``on_click(view, cell, y, x)``, a click on a sweep
heatmap as ``on_pick(tau, m, b)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from matplotlib.backend_bases import MouseEvent
from matplotlib.figure import Figure

from ..methods import COLORS, LABELS
from .canvas import Frame, move_crosshair, new_figure, pixel
from .grid import GridView
from .pacing import Pacer
from .sensitivity import SensitivityView
from .session import Session
from .views import CurvesView, OverlayView, ProbeView, WrapView

__all__ = ["VIEWS", "Board"]

#: The views sent first after a slider move, and after a click (then the grid: see
#: :mod:`.pacing`); a new dataset sends every view at once.
_SLIDER_FIRST, _CLICK_FIRST, _CLICK_NEXT = ("overlay", "grid"), ("overlay", "probe"), ("grid",)
#: The views by name, with their figures' sizes in pixels.
VIEWS = {
    "overlay": (430, 400),
    "lpw": (280, 330),
    "probe": (400, 270),
    "curves": (400, 270),
    "grid": (820, 520),
    "sensitivity": (760, 300),
}
#: What the mouse does over a view in the page: its cursor and the tooltip that says so.
_POINTER = {
    "overlay": (
        "crosshair",
        "click: probe a pixel · wheel: zoom · shift-drag: pan · double-click: whole image",
    ),
    "lpw": ("crosshair", "click: probe a pixel"),
    "grid": ("crosshair", "click a map: make it current and probe that pixel"),
    "sensitivity": ("pointer", "click a cell: set the sliders to its setting"),
}


class Board:
    """The views (see :data:`VIEWS`) and what each session change does to them.

    Args:
        session: the state drawn.
        on_click: called as ``on_click(view, cell, y, x)`` for a left click on a pixel of an
            image view (``"overlay"``, ``"lpw"``, ``"grid"``; ``cell`` is the grid's (layer,
            method) index, else None).
        on_pick: called as ``on_pick(threshold, median, box)`` for a click on a sweep cell.
        interactive: canvases in the page (True) or Agg ones.
    """

    def __init__(
        self,
        session: Session,
        on_click: Callable[[str, tuple[int, int] | None, int, int], None],
        on_pick: Callable[[float, int, int], None],
        *,
        interactive: bool = True,
    ) -> None:
        self.session = session
        self._on_click = on_click
        fig = {}
        for name, (w, h) in VIEWS.items():
            cursor, hint = _POINTER.get(name, ("default", ""))
            fig[name] = new_figure(
                w, h, name, interactive=interactive, zoom=name == "overlay", cursor=cursor,
                hint=hint,
            )  # fmt: skip
        self.figures: dict[str, Figure] = fig
        self.overlay = OverlayView(fig["overlay"])
        self.lpw = WrapView(fig["lpw"])
        self.probe = ProbeView(fig["probe"])
        self.curves = CurvesView(fig["curves"])
        self.grid = GridView(fig["grid"], session.cmap)
        self.sensitivity = SensitivityView(fig["sensitivity"], on_pick)
        self.sweep_shown = False
        self.frames = {
            "overlay": self.overlay.frame,
            "lpw": self.lpw.frame,
            "probe": self.probe.frame,
            "curves": self.curves.frame,
            "grid": self.grid.frame,
            "sensitivity": Frame(fig["sensitivity"], []),
        }
        #: When the frames are sent (and the loop the page's actions run on).
        self.pacer = Pacer(
            self._paint, lambda name: fig[name].canvas.draw_idle(), interactive=interactive
        )
        if interactive:  # the page's mouse events change the views on the loop
            for figure in fig.values():
                figure.canvas.dispatch = self.pacer.run
        self._structure: tuple = ()
        self._curves_shown: tuple | None = None
        for name in ("overlay", "lpw", "grid"):
            fig[name].canvas.mpl_connect("button_press_event", self._press)

    def canvases(self) -> dict[str, object]:
        """What shows each view in the page, by view name: its canvas's widget when
        interactive, else the (Agg) canvas."""
        return {name: getattr(f.canvas, "widget", f.canvas) for name, f in self.figures.items()}

    # -- session changes -> views --------------------------------------------------------

    def update(self, kind: str) -> None:
        """Bring the views up to date after a session change of ``kind``, and redraw."""
        s = self.session
        if s.ds is None or kind in ("busy", "images"):
            return
        if kind == "dataset":
            self._whole()
        elif kind == "map":  # the map in view: sent at once, before the other layers
            self._current(moved=s.method == "holistic", place=False)
            self.pacer.send_now("overlay")
            return
        elif kind == "maps":
            holistic = [i for i, m in enumerate(s.ds["cam"].values) if m == "holistic"]
            self.grid.set_maps(s.ds["attribution"].values[0], holistic)
            self.pacer.mark("grid")
            if s.probe is not None:
                self._probe()
            self._curves()
            self._scores()
            self._sweep_mark()
        elif kind == "current":
            self._current(moved=True)
            self._curves()
            self._sweep_mark()
        elif kind == "probe":
            self._probe()
        elif kind == "curves":
            self._curves()
        elif kind == "scores":
            self._scores()
        elif kind == "look":
            self.overlay.show(alpha=s.opacity, cmap=s.cmap)
            self.grid.set_cmap(s.cmap)
            self.pacer.mark("overlay", whole=True)
            self.pacer.mark("grid", whole=True)
        if kind == "dataset":
            self.pacer.draw(first=VIEWS)
        elif kind == "maps":
            self.pacer.draw(first=_SLIDER_FIRST)
        else:
            self.pacer.draw(first=_CLICK_FIRST, following=_CLICK_NEXT)

    def _whole(self) -> None:
        s, ds = self.session, self.session.ds
        layers, methods = [str(v) for v in ds["layer"].values], [str(v) for v in ds["cam"].values]
        size = (ds.sizes["y"], ds.sizes["x"])
        if (layers, methods, size) != self._structure:
            self._structure = (layers, methods, size)
            self.grid.structure(layers, methods, size)
            self.grid.set_cmap(s.cmap)
            self.probe.structure(layers, methods)
            self.overlay.set_size(*size)
            self.lpw.set_size(*size)
        self.overlay.show(rgb=np.asarray(ds["input"].values[0]), alpha=s.opacity, cmap=s.cmap)
        self.grid.set_maps(ds["attribution"].values[0])
        self._current(moved=True)
        self._probe()
        self._curves()
        self._scores()
        self._sweep_mark()
        for name in ("overlay", "lpw", "probe", "grid"):
            self.pacer.mark(name, whole=True)

    def _current(self, moved: bool, place: bool = True) -> None:
        """The current map: overlay (``moved``), wrap, grid frame and probe band (``place``)."""
        s, ds = self.session, self.session.ds
        li, mi = s.indices()
        if moved:
            self.overlay.show(saliency=ds["attribution"].values[0, mi, li])
            self.pacer.mark("overlay")
        name = str(ds["target_name"].values[0]) if "target_name" in ds.coords else ""
        label = s.provider.sources[s.image].label
        heading = f"{label}: {name}"
        if self.overlay.heading.get_text() != heading:  # not animated: in the background
            self.overlay.heading.set_text(heading)
            self.pacer.mark("overlay", whole=True)
        self.overlay.title.set_text(f"{LABELS.get(s.method, s.method)}, {s.layer}")
        if "primary" not in ds.data_vars:
            self.lpw.title.set_text("no low-pass wrap\n(no Holistic-CAM maps)")
        else:
            self.lpw.art.set_data(ds["lpw"].values[0, li])
            self.lpw.title.set_text(f"low-pass wrap\n{s.layer}\n{s.denoising_text()}")
        self.pacer.mark("lpw")
        if place:
            self.grid.set_current(li, mi)
            self.probe.set_layer(li)
            self.pacer.mark("grid")
            self.pacer.mark("probe")

    def _probe(self) -> None:
        s = self.session
        y, x = s.probe if s.probe is not None else (None, None)
        values = None
        if s.probe is not None:
            values = s.ds["attribution"].values[0, :, :, y, x]
        self.probe.set_probe(y, x, values)
        for cross in (self.overlay.cross, self.lpw.cross):
            move_crosshair(cross, y, x)
        self.grid.set_probe(y, x)
        for view in ("probe", "overlay", "lpw", "grid"):
            self.pacer.mark(view)

    def _curves(self) -> None:
        s, ds = self.session, self.session.ds
        what = f"{LABELS.get(s.method, s.method)}, {s.layer}"
        clean = float(ds["probability"].values[0]) if "probability" in ds.coords else 0.0
        state = (id(s.curves), s.curves_note, what, clean)
        if state != self._curves_shown:
            self._curves_shown = state
            color = COLORS.get(s.method, "black")
            self.curves.set_curves(s.curves, s.curves_note, clean, what, color)
            self.pacer.mark("curves", whole=True)

    def _scores(self) -> None:
        s, ds = self.session, self.session.ds
        layers, methods = list(ds["layer"].values), list(ds["cam"].values)
        cells = {
            (layers.index(layer), methods.index(method)): auc
            for (layer, method), auc in s.scores.items()
            if layer in layers and method in methods
        }
        self.grid.set_scores(cells)
        self.pacer.mark("grid")

    def _sweep_mark(self) -> None:
        if self.sweep_shown:
            s = self.session
            self.sensitivity.mark(s.threshold, s.median, s.box, denoise=s.denoise, layer=s.layer)
            self.pacer.mark("sensitivity", whole=True)

    def show_sweep(self, results: object, metric: str | None = None) -> None:
        """Open a sweep's results in the sensitivity view, marked at the current setting."""
        self.sensitivity.set_results(results, metric=metric)
        self.sweep_shown = True
        self._sweep_mark()
        self.pacer.draw()

    # -- drawing -------------------------------------------------------------------------

    def _paint(self, name: str, whole: bool) -> None:
        if whole:
            self.frames[name].full()
        else:
            self.frames[name].blit()

    # -- clicks --------------------------------------------------------------------------

    def _press(self, event: MouseEvent) -> None:
        ax = event.inaxes
        if ax is None or event.xdata is None or event.ydata is None or event.button != 1:
            return
        if event.key == "shift" or event.dblclick:
            return  # the overlay's pan, its zoom reset
        height, width = self.grid.size
        if ax is self.grid.ax:
            hit = self.grid.at(event.xdata, event.ydata)
            if hit is not None:
                self._on_click("grid", *hit)
            return
        y, x = pixel(event.ydata, height), pixel(event.xdata, width)
        if ax is self.overlay.ax:
            self._on_click("overlay", None, y, x)
        elif ax is self.lpw.ax:
            self._on_click("lpw", None, y, x)
