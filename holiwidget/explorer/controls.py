"""The explorer's controls: core ipywidgets built from one table of specs.

Each control is a public attribute of :class:`Controls` (and of the app) named as in
:data:`SPECS`; setting its ``value`` acts as a user would. Every control carries the CSS
class ``holiwidget-<name>`` (dashes for underscores) for styling and browser tests, and a
tooltip; a disabled control's tooltip says why (:meth:`Controls.sync`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import ipywidgets as W

from ..figure import ALPHA
from ..methods import LABELS
from .providers import Progress
from .readouts import probe_table, status_html
from .session import COLORMAPS, Session

__all__ = ["SPECS", "Controls", "PageProgress", "Spec"]

TAU = (
    "τ, the fusion denoising threshold: the fundamental-scale map M_f is saturated at τ "
    "before the low-pass wrap is made (lower τ: more of the image kept)"
)
FSD = (
    "FSD, fundamental-scale denoising: the primary attribution map (PHA, fused over the "
    "eight-scale pyramid) is multiplied by the low-pass wrap, a median then box filtered M_f"
)
LPW = "pixels at 224 x 224, odd; the low-pass wrap is M_f median filtered (m) then box filtered (b)"


@dataclass(frozen=True)
class Spec:
    """One control: its widget class, keyword arguments, tooltip and width."""

    kind: type
    tooltip: str
    width: str = "340px"
    options: dict = field(default_factory=dict)


_WIDE = {"description_width": "100px"}
#: Every control, in the order the sidebar lists them.
SPECS: dict[str, Spec] = {
    "image": Spec(W.Dropdown, "the image to explain", options={"description": "image", "style": _WIDE}),
    "previous_image": Spec(W.Button, "the previous image", "40px", {"icon": "chevron-left"}),
    "next_image": Spec(W.Button, "the next image", "40px", {"icon": "chevron-right"}),
    "folder": Spec(W.Text, "a folder of image files", "220px", {"placeholder": "folder of images"}),
    "load_folder": Spec(W.Button, "add the folder's images", "116px", {"description": "add folder", "icon": "folder-open"}),
    "upload": Spec(W.FileUpload, "upload image files", "340px", {"accept": "image/*", "multiple": True, "description": "upload images"}),
    "target": Spec(W.Dropdown, "the class to explain (top-5 predictions and classes asked for)", options={"description": "target", "style": _WIDE}),
    "search": Spec(
        W.Combobox, "type a class name (or part of it) or an index, then press Enter",
        options={"description": "search", "placeholder": "class name or index", "ensure_option": False, "continuous_update": False, "style": _WIDE},
    ),
    "methods": Spec(W.SelectMultiple, "methods to show (ctrl/shift-click for several)", options={"description": "methods", "rows": 5, "style": _WIDE}),
    "layers": Spec(
        W.SelectMultiple, "layers to explain: the holistic stage first, then the rest (ctrl/shift-click for several)",
        options={"description": "layers", "rows": 6, "style": _WIDE},
    ),
    "threshold": Spec(W.FloatSlider, TAU, options={"description": "threshold τ", "min": 0.01, "max": 1.0, "step": 0.01, "readout_format": ".2f", "style": _WIDE}),
    "median": Spec(W.IntSlider, "median kernel m of the low-pass wrap: " + LPW, options={"description": "median m (px)", "min": 1, "max": 151, "step": 2, "style": _WIDE}),
    "box": Spec(W.IntSlider, "box kernel b of the low-pass wrap, the low-pass cutoff: " + LPW, options={"description": "box b (px)", "min": 1, "max": 223, "step": 2, "style": _WIDE}),
    "denoise": Spec(W.Checkbox, FSD + "; off: Holistic-CAM is the normalised PHA", "160px", {"description": "denoise (FSD)", "indent": False, "value": True}),
    "reset": Spec(W.Button, "the paper's defaults: τ 0.5, m 51, b 91, denoising on", "176px", {"description": "reset defaults", "icon": "undo"}),
    "layer": Spec(W.Dropdown, "the current layer (overlay, low-pass wrap, curves)", options={"description": "layer", "style": _WIDE}),
    "method": Spec(W.Dropdown, "the current method (overlay, curves)", options={"description": "method", "style": _WIDE}),
    "opacity": Spec(W.FloatSlider, "opacity of the map over the image", options={"description": "opacity", "min": 0.0, "max": 1.0, "step": 0.05, "value": ALPHA, "style": _WIDE}),
    "colormap": Spec(
        W.Dropdown, "colormap of the maps: jet as in the paper; turbo, inferno and viridis are perceptually ordered",
        options={"description": "colormap", "options": list(COLORMAPS), "style": _WIDE},
    ),
    "curves_button": Spec(W.Button, "insertion and deletion curves of the current map (450 forward passes)", "168px", {"description": "curves", "icon": "line-chart"}),
    "score_button": Spec(W.Button, "insertion and deletion AUCs of every map of the grid, in one batched run", "168px", {"description": "score all maps", "icon": "th"}),
    "sweep_path": Spec(W.Text, "a sweep's results (.nc or .zarr from holiwidget sweep)", "220px", {"placeholder": "sweep results file"}),
    "open_sweep": Spec(W.Button, "show the sweep's heatmaps, linked to the sliders", "116px", {"description": "open sweep", "icon": "table"}),
    "sweep_metric": Spec(W.Dropdown, "the metric the sweep's heatmaps show", options={"description": "sweep metric", "style": _WIDE}),
    "export_path": Spec(
        W.Text, "file name; empty: named after the image, model and parameters; an extension picks the format (.nc/.zarr, .png/.svg/.pdf/...)",
        options={"description": "export to", "style": _WIDE},
    ),
    "save_dataset_button": Spec(W.Button, "write the current dataset to netCDF (or zarr)", "168px", {"description": "dataset", "icon": "download"}),
    "save_figure_button": Spec(W.Button, "write the views, with a caption, to one image", "168px", {"description": "figure", "icon": "image"}),
}  # fmt: skip


class Controls:
    """Every control of :data:`SPECS` as a public widget attribute, plus the readouts:
    ``status`` (HTML), ``progress`` (a bar), ``position`` ("3 / 12"), ``probe`` (a table of
    the probed values), ``legend`` (what the low-pass wrap is), ``download`` (links)."""

    def __init__(self) -> None:
        self._muting = threading.local()
        self.widgets: dict[str, W.DOMWidget] = {}
        for name, spec in SPECS.items():
            widget = spec.kind(tooltip=spec.tooltip, **spec.options)
            widget.layout.width = spec.width
            widget.add_class("holiwidget-" + name.replace("_", "-"))
            setattr(self, name, widget)
            self.widgets[name] = widget
        self.status = _readout("status", W.HTML(""))
        self.progress = _readout("progress", W.IntProgress(value=0, min=0, max=1))
        self.position = _readout("position", W.HTML(""))
        self.probe = _readout("probe", W.HTML("<i>click a pixel of any map to probe it</i>"))
        self.download = _readout("download", W.HTML(""))
        self._taken: tuple | None = None  # the denoising values the session last took

    @contextlib.contextmanager
    def silently(self) -> Iterator[None]:
        """Set widgets from the session without acting on the change (observers skip it).
        Only changes made in this thread are skipped: the page's, arriving meanwhile on the
        kernel's other thread, still act."""
        self._muting.depth = getattr(self._muting, "depth", 0) + 1
        try:
            yield
        finally:
            self._muting.depth -= 1

    @property
    def muted(self) -> bool:
        """Whether this thread is setting widgets itself (see :meth:`silently`)."""
        return getattr(self._muting, "depth", 0) > 0

    def fill(self, s: Session) -> None:
        """The choices and values a new session starts with."""
        p = s.provider
        with self.silently():
            self._images(s)
            self.methods.options = [(LABELS.get(m, m), m) for m in p.method_options]
            self.methods.value = tuple(s.methods)
            self.methods.rows = min(7, len(p.method_options))
            self.layers.options = p.layer_options
            self.layers.value = tuple(s.layers)
            self.colormap.value, self.opacity.value = s.cmap, s.opacity
            self._denoising(s)

    def reflect(self, s: Session, kind: str, sweep: bool, status: bool = True) -> None:
        """Show a session change of ``kind`` in the controls and readouts (see
        :class:`~.session.Session` for the kinds); ``sweep``: a sweep is shown; ``status``:
        replace the status line (not over a later error)."""
        with self.silently():
            if kind in ("dataset", "images"):
                self._images(s)
            if kind == "dataset":
                self._choices(s)
            if kind in ("dataset", "current"):
                self.layer.value, self.method.value = s.layer, s.method
            if kind == "maps":
                self._denoising(s)
        if kind in ("dataset", "current", "probe", "maps") and s.ds is not None:
            values = s.probe_values()
            self.probe.value = probe_table(
                s.probe,
                None if values is None else values.values,
                [str(v) for v in s.ds["layer"].values],
                [str(v) for v in s.ds["cam"].values],
                s.indices(),
            )
        if kind != "busy" and status:  # a success replaces the status (and an earlier error)
            self.progress.bar_style = "success"
            self.status.value = status_html(*s.note)
        self.sync(s, sweep)

    def denoising(self) -> tuple[float, int, int, bool]:
        """The denoising controls' values (τ, m, b, on), for the session to take."""
        self._taken = (self.threshold.value, self.median.value, self.box.value, self.denoise.value)
        return self._taken

    def _denoising(self, s: Session) -> None:
        # a kernel beyond a slider's range (a saved dataset's, a sweep's) widens it
        self.median.max, self.box.max = max(self.median.max, s.median), max(self.box.max, s.box)
        if (s.threshold, s.median, s.box, s.denoise) == self._taken:
            # Taken from these controls: not written back. The page may have moved a slider
            # on since (a burst of key presses), and the older value would move it back.
            return
        self.threshold.value, self.median.value, self.box.value = s.threshold, s.median, s.box
        self.denoise.value = s.denoise

    def _images(self, s: Session) -> None:
        keys = [src.key for src in s.sources]
        self.image.options = [(src.label, src.key) for src in s.sources]
        self.image.value = s.image
        self.position.value = f"image {keys.index(s.image) + 1} / {len(keys)}"

    def _choices(self, s: Session) -> None:
        self.target.options = s.target_choices()
        self.target.value = s.target
        if s.explains:
            names = s.class_names()
            if len(self.search.options) != len(names):
                self.search.options = [f"{n} ({i})" for i, n in enumerate(names)]
            self.search.value = f"{names[s.target]} ({s.target})"  # follows the target
        methods = [str(v) for v in s.ds["cam"].values]
        self.layer.options = [str(v) for v in s.ds["layer"].values]
        self.method.options = [(LABELS.get(m, m), m) for m in methods]
        self.layers.value, self.methods.value = tuple(s.layers), tuple(s.methods)
        self.colormap.value, self.opacity.value = s.cmap, s.opacity

    def made_odd(self, change: dict) -> bool:
        """Whether a kernel slider's even value was replaced by the next odd one (said in the
        status line; the new value notifies the observers again)."""
        owner, new = change["owner"], change["new"]
        if owner not in (self.median, self.box) or int(new) % 2:
            return False
        owner.value = value = int(new) + (1 if new < owner.max else -1)
        text = f"{owner.description}: kernels must be odd, using {value} instead of {new}"
        self.status.value = status_html(text, "warn")
        return True

    def enable(self, name: str, ok: bool, why: str) -> None:
        """Enable a control, or disable it with ``why`` as its tooltip."""
        widget = self.widgets[name]
        widget.disabled = not ok
        widget.tooltip = SPECS[name].tooltip if ok else why

    def sync(self, session: Session, sweep: bool) -> None:
        """Enable exactly the controls that can act now (``sweep``: a sweep is shown)."""
        busy = "busy: a network pass is running"
        shown = session.ds is not None
        nothing = "nothing shown yet"
        no_model = "browsing a saved dataset: needs a model"
        has_pha = shown and "primary" in session.ds.data_vars
        no_pha = (
            "needs Holistic-CAM: select it among the methods"
            if session.explains
            else "the dataset has no Holistic-CAM primary maps"
        )
        rules = {
            "image": (len(session.sources) > 1, "only one image to show"),
            "previous_image": (len(session.sources) > 1, "only one image to show"),
            "next_image": (len(session.sources) > 1, "only one image to show"),
            "folder": (session.explains, no_model),
            "load_folder": (session.explains, no_model),
            "upload": (session.explains, no_model),
            "target": (session.explains, "browsing a saved dataset: the target is fixed"),
            "search": (session.explains and shown, no_model if not session.explains else nothing),
            "denoise": (has_pha, no_pha if shown else nothing),
            "reset": (has_pha, no_pha if shown else nothing),
            "curves_button": (session.explains and shown, no_model if shown else nothing),
            "score_button": (session.explains and shown, no_model if shown else nothing),
            "sweep_metric": (sweep, "open a sweep first"),
        }
        for name in ("threshold", "median", "box"):
            rules[name] = (
                has_pha and session.denoise,
                "denoising is off" if has_pha else (no_pha if shown else nothing),
            )
        for name in ("layer", "method", "opacity", "colormap", "export_path"):
            rules[name] = (shown, nothing)
        for name in ("save_dataset_button", "save_figure_button"):
            rules[name] = (shown, nothing)
        for name in self.widgets:
            ok, why = rules.get(name, (True, ""))
            self.enable(name, ok and not session.busy, busy if session.busy else why)


def _readout(name: str, widget: W.DOMWidget) -> W.DOMWidget:
    widget.add_class("holiwidget-" + name)
    return widget


class PageProgress(Progress):
    """The page's progress bar and status line as a session's progress."""

    def __init__(self, c: Controls) -> None:
        self.c = c

    def begin(self, message: str, steps: int) -> None:
        self.c.progress.max, self.c.progress.value = max(1, steps), 0
        self.c.progress.bar_style = "info"
        self.c.status.value = status_html(message)

    def tick(self) -> None:
        self.c.progress.value = min(self.c.progress.max, self.c.progress.value + 1)

    def end(self) -> None:
        self.c.progress.value = self.c.progress.max
