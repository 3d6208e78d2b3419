"""The explorer app: core ipywidgets controls driving linked ipympl views.

One controls object (:class:`Explorer`) owns the widgets, the pass cache and the current
dataset; every view is updated in place from that dataset. Network passes run only when the
image, the target, the layers or a not-yet-computed method change, once per (image, target,
layers); the denoising sliders re-denoise from the kept primary maps (no network pass).
"""

from __future__ import annotations

import contextlib
import functools
import html
import io
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import ipywidgets as W
import numpy as np
import torch
import xarray as xr
from IPython.display import display
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from ..checks import class_index
from ..dataset import dataset_format, open_dataset
from ..dataset import save_dataset as _save_dataset
from ..devices import resolve_device
from ..engine import explain
from ..errors import HoliwidgetError
from ..figure import ALPHA, figure_format
from ..heap import release_memory
from ..images import ImageInput
from ..layers import resolve_layers
from ..methods import LABELS, PYRAMID_METHODS, parse_methods
from ..methods.holistic import Denoising
from ..models import class_names
from ..outputs import atomic_output, check_output, figure_mark, is_marked_figure
from . import curves as _curves
from .downloads import confined_path, download_link
from .state import (
    ImageSource,
    PassCache,
    Predictions,
    candidate_layers,
    folder_sources,
    given_sources,
    order_methods,
    predict,
    redenoise,
    sample_sources,
    upload_sources,
    with_lpw,
)
from .views import Views

__all__ = ["Explorer"]

log = logging.getLogger(__name__)

_RED, _AMBER, _GREEN = "#b00020", "#8a5a00", "#1b5e20"


def _action(fn: Callable) -> Callable:
    """A widget callback: ignored while the explorer sets widgets itself; errors go to the app."""

    @functools.wraps(fn)
    def wrapper(self: Explorer, *args, **kwargs):
        if self._quiet:
            return None
        try:
            return fn(self, *args, **kwargs)
        except HoliwidgetError as exc:
            self._fail(str(exc))
        except Exception as exc:  # shown in the app: a callback has no caller to raise to
            log.exception("explorer callback %s failed", fn.__name__)
            self._fail(f"{type(exc).__name__}: {exc}")
        return None

    return wrapper


class Explorer:
    """An interactive explorer of Holistic-CAM and its baselines at every depth of a CNN.

    ``Explorer(model, images=..., layers="auto", methods=...)`` shows one app of core
    ipywidgets and ipympl canvases: inputs (image, target class, methods, layers), the
    denoising controls (threshold tau, median and box kernels, a switch to turn denoising
    off), linked views (fused overlay, the layer x method grid, the low-pass wrap, a pixel
    probe, insertion and deletion curves), a status line with a progress bar, and export.

    ``Explorer(dataset="maps.nc")`` (no model) browses a saved dataset: the denoising
    controls still work when it holds Holistic-CAM's primary maps; inputs that would need a
    network pass are disabled.

    The controls are public widgets (``explorer.threshold``, ``explorer.median``,
    ``explorer.box``, ``explorer.denoise``, ``explorer.opacity``, ``explorer.image``,
    ``explorer.target``, ``explorer.search``, ``explorer.methods``, ``explorer.layers``,
    ``explorer.layer``, ``explorer.method``, ...): setting their ``value`` acts as a user
    would. The state is :attr:`dataset`.

    Args:
        model: a torchvision-style classifier (see :func:`holiwidget.load_model`), or None
            to browse ``dataset``.
        images: images to offer besides the embedded samples (paths, sample names, PIL
            images, arrays); the first is shown first (default: the sample ``chelsea``).
        layers: ``"auto"`` (the holistic stage) or layer names, the layers shown first.
        methods: methods shown first (names, comma-separated, or ``"all"``).
        dataset: a dataset from :func:`holiwidget.explain` or the path of a saved one, to
            browse without a model.
        target: the class explained for the first image (default: its top-1 class).
        threshold, median, box: the initial denoising parameters.
        device: where network passes run (``"auto"``: CUDA, then MPS, then CPU).
        interactive: ipympl canvases (default) or plain Agg ones (no browser needed).
        data: a data folder to confine the explorer to (a shared deployment): the folder
            field and the exports then take names inside it only, and each export is also
            offered as a download to the browser.
        defer: compute the first maps in the background once the explorer is displayed
            (the app shows at once, with its status and progress bar), not before.
        pass_memory: the most megabytes a network pass may keep for its backward (see
            :func:`holiwidget.explain`); None keeps everything in memory.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        images: object = None,
        layers: str | Sequence[str] = "auto",
        methods: str | Sequence[str] = "all",
        *,
        dataset: xr.Dataset | str | os.PathLike | None = None,
        target: int | None = None,
        threshold: float = Denoising.threshold,
        median: int = Denoising.median,
        box: int = Denoising.box,
        device: str | torch.device = "auto",
        interactive: bool = True,
        data: str | os.PathLike | None = None,
        defer: bool = False,
        pass_memory: float | None = None,
    ) -> None:
        if (model is None) == (dataset is None):
            raise HoliwidgetError(
                "pass a model (to explain images) or a dataset (to browse it), not both or neither"
            )
        Denoising(threshold, median, box)
        self._data = None if data is None else Path(data).expanduser().resolve()
        if self._data is not None and not self._data.is_dir():
            raise HoliwidgetError(f"data folder {self._data} does not exist; create it first")
        self._defer = defer
        self._pass_memory = pass_memory
        self._started: threading.Thread | None = None
        self._model = model
        self._device = device
        self._quiet = 0
        self._busy = False
        self._ds: xr.Dataset | None = None
        self._image_key: str | None = None
        self._target: int | None = None
        self._first_target = target
        self._probe: tuple[int, int] | None = None
        self._curves: dict | None = None
        self._cache = PassCache()
        self._predictions: dict[str, Predictions] = {}
        self._extra_targets: dict[str, list[int]] = {}
        self._sources: dict[str, ImageSource] = {}
        self._browse: xr.Dataset | None = None
        self._warnings: list[str] = []
        self._tooltips: dict[int, str] = {}
        #: The last error shown in the app (None after a success).
        self.last_error: str | None = None
        #: Milliseconds of the last re-denoise, from the slider change to updated artists.
        self.last_update_ms: float | None = None

        if model is not None:
            self._methods_default = parse_methods(methods, model)
            first_layers = list(resolve_layers(model, layers))
            layer_options = candidate_layers(model, first_layers)
            for src in [*given_sources(images), *sample_sources()]:
                self._sources.setdefault(src.key, src)
            # Those that can explain the model, and any named (refused when computed).
            method_options = order_methods({*parse_methods("all", model), *self._methods_default})
        else:
            self._browse = self._open(dataset)
            first_layers = [str(v) for v in self._browse["layer"].values]
            layer_options = first_layers
            method_options = [str(v) for v in self._browse["cam"].values]
            self._methods_default = method_options
            for image_id in self._browse["image"].values:
                key = f"dataset:{image_id}"
                self._sources[key] = ImageSource(key, str(image_id))
            if images is not None:
                raise HoliwidgetError("images= needs a model; a saved dataset is browsed as it is")
            params = json.loads(self._browse.attrs.get("parameters", "{}"))
            threshold = params.get("threshold", threshold)
            median = params.get("median", median)
            box = params.get("box", box)

        self._build_widgets(
            layer_options,
            first_layers,
            method_options,
            [m for m in self._methods_default if m in method_options],
            float(threshold),
            int(median),
            int(box),
        )
        self.views = Views(self._on_click, interactive=interactive)
        self.app = self._layout()
        self._observe()
        self._sync_enabled()
        self._status("ready: display the explorer (or read .dataset) to compute the first maps")

    # -----------------------------------------------------------------------------------
    # construction

    @staticmethod
    def _open(dataset: xr.Dataset | str | os.PathLike) -> xr.Dataset:
        ds = dataset if isinstance(dataset, xr.Dataset) else open_dataset(dataset)
        missing = [v for v in ("attribution", "input") if v not in ds.data_vars]
        if missing:
            raise HoliwidgetError(
                f"the dataset has no {' or '.join(missing)} variable; open a dataset made by explain"
            )
        return ds.load()

    def _build_widgets(
        self,
        layer_options: list[str],
        layers: list[str],
        method_options: list[str],
        methods: list[str],
        threshold: float,
        median: int,
        box: int,
    ) -> None:
        wide = {"description_width": "initial"}
        first = next(iter(self._sources))
        self.image = W.Dropdown(
            options=[(s.label, s.key) for s in self._sources.values()],
            value=first,
            description="image",
            tooltip="the image to explain",
        )
        self.folder = W.Text(
            placeholder="folder of images", description="folder", tooltip="a folder of image files"
        )
        self.load_folder = W.Button(
            description="add folder",
            icon="folder-open",
            tooltip="add the folder's images to the image list",
        )
        self.upload = W.FileUpload(
            accept="image/*", multiple=True, description="upload", tooltip="upload image files"
        )
        self.target = W.Dropdown(
            options=[("(not computed yet)", -1)],
            value=-1,
            description="target",
            tooltip="the class to explain (top-5 predictions)",
        )
        self.search = W.Combobox(
            placeholder="search a class name, or type an index",
            options=[],
            ensure_option=False,
            continuous_update=False,
            description="search",
            tooltip="type a class name (or part of it) or an index, then press Enter",
        )
        self.methods = W.SelectMultiple(
            options=[(LABELS.get(m, m), m) for m in method_options],
            value=tuple(methods),
            rows=min(7, len(method_options)),
            description="methods",
            tooltip="methods to show (ctrl/shift-click for several)",
        )
        self.layers = W.SelectMultiple(
            options=layer_options,
            value=tuple(layers),
            rows=7,
            description="layers",
            tooltip="layers of the holistic stage to explain (ctrl/shift-click for several)",
        )
        self.threshold = W.FloatSlider(
            value=threshold,
            min=0.01,
            max=1.0,
            step=0.01,
            description="threshold τ",
            style=wide,
            readout_format=".2f",
            tooltip="fusion denoising threshold tau",
        )
        self.median = W.IntSlider(
            value=median,
            min=1,
            max=151,
            step=2,
            description="median m",
            style=wide,
            tooltip="median kernel of the low-pass wrap (odd)",
        )
        self.box = W.IntSlider(
            value=box,
            min=1,
            max=223,
            step=2,
            description="box b (cutoff)",
            style=wide,
            tooltip="box kernel of the low-pass wrap: the low-pass cutoff (odd)",
        )
        self.denoise = W.Checkbox(
            value=True,
            description="denoise (FSD)",
            indent=False,
            tooltip="off: Holistic-CAM without denoising",
        )
        self.opacity = W.FloatSlider(
            value=ALPHA,
            min=0.0,
            max=1.0,
            step=0.05,
            description="opacity",
            tooltip="opacity of the fused map over the image",
        )
        self.layer = W.Dropdown(
            options=layers,
            value=layers[0] if layers else None,
            description="layer",
            tooltip="the current layer",
        )
        self.method = W.Dropdown(
            options=[(LABELS.get(m, m), m) for m in methods],
            value=methods[0] if methods else None,
            description="method",
            tooltip="the current method",
        )
        self.curves_button = W.Button(
            description="insertion / deletion",
            icon="line-chart",
            tooltip="compute the insertion and deletion curves of the current map",
        )
        self.export_path = W.Text(
            value="holiwidget-explorer",
            description="export to",
            tooltip="file name; an extension picks the format (.nc/.zarr, .png/.svg/.pdf/...), else .nc and .png",
        )
        self.save_dataset_button = W.Button(
            description="dataset (.nc)",
            icon="download",
            tooltip="write the current dataset to netCDF",
        )
        self.save_figure_button = W.Button(
            description="figure",
            icon="image",
            tooltip="write the current views to one image (PNG unless the name says otherwise)",
        )
        self.status = W.HTML(value="")
        self.download = W.HTML(value="")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="", bar_style="")
        self.probe = W.HTML(value="<i>click a pixel of any map to probe it</i>")
        for w, width in (
            (self.image, "340px"),
            (self.folder, "230px"),
            (self.load_folder, "130px"),
            (self.upload, "130px"),
            (self.methods, "300px"),
            (self.layers, "360px"),
            (self.target, "420px"),
            (self.search, "420px"),
            (self.export_path, "360px"),
            (self.curves_button, "180px"),
        ):
            w.layout.width = width
        for name, w in self.controls().items():
            w.add_class(f"holiwidget-{name.replace('_', '-')}")
            self._tooltips[id(w)] = w.tooltip or ""
        self.status.add_class("holiwidget-status")
        self.probe.add_class("holiwidget-probe")
        self.progress.add_class("holiwidget-progress")

    def controls(self) -> dict[str, W.DOMWidget]:
        """Every control widget by name (the public attribute of the same name)."""
        names = (
            "image", "folder", "load_folder", "upload", "target", "search", "methods", "layers",
            "threshold", "median", "box", "denoise", "opacity", "layer", "method",
            "curves_button", "export_path", "save_dataset_button", "save_figure_button",
        )  # fmt: skip
        return {n: getattr(self, n) for n in names}

    def _layout(self) -> W.VBox:
        canvases = self.views.canvases()
        for name, canvas in canvases.items():
            if isinstance(canvas, W.DOMWidget):
                canvas.add_class(f"holiwidget-view-{name}")

        def row(children: list, **kw) -> W.HBox:
            # Rows wrap on narrow screens instead of squeezing their widgets.
            return W.HBox(children, layout=W.Layout(flex_flow="row wrap", **kw))

        def column(children: list) -> W.VBox:
            return W.VBox(children, layout=W.Layout(margin="0 16px 0 0", flex="0 0 auto"))

        inputs = W.VBox(
            [
                row([self.image, self.folder, self.load_folder, self.upload]),
                row([self.target, self.search]),
                row([self.methods, self.layers]),
            ]
        )
        controls = row(
            [
                column([self.threshold, self.median, self.box, self.denoise]),
                column([self.layer, self.method, self.opacity]),
            ]
        )

        def view(name: str) -> W.Widget:
            canvas = canvases[name]
            return canvas if isinstance(canvas, W.Widget) else W.HTML(f"<i>{name}</i>")

        views = row(
            [
                view("overlay"),
                view("lpw"),
                column([view("probe"), self.probe]),
                column([view("curves"), self.curves_button]),
            ],
            align_items="flex-start",
        )
        export = row(
            [self.export_path, self.save_dataset_button, self.save_figure_button, self.download]
        )
        app = W.VBox(
            [
                W.HTML("<b>holiwidget explorer</b>: Holistic-CAM at every depth"),
                inputs,
                controls,
                W.HBox([self.progress, self.status]),
                views,
                view("grid"),
                export,
            ]
        )
        app.add_class("holiwidget-explorer")
        return app

    def _observe(self) -> None:
        self.image.observe(self._on_image, "value")
        self.target.observe(self._on_target, "value")
        self.search.observe(self._on_search, "value")
        self.methods.observe(self._on_selection, "value")
        self.layers.observe(self._on_selection, "value")
        for w in (self.threshold, self.median, self.box, self.denoise):
            w.observe(self._on_denoise, "value")
        self.opacity.observe(self._on_opacity, "value")
        self.layer.observe(self._on_current, "value")
        self.method.observe(self._on_current, "value")
        self.load_folder.on_click(self._on_folder)
        self.upload.observe(self._on_upload, "value")
        self.curves_button.on_click(self._on_curves)
        self.save_dataset_button.on_click(self._on_save_dataset)
        self.save_figure_button.on_click(self._on_save_figure)

    # -----------------------------------------------------------------------------------
    # display and public state

    def _ipython_display_(self) -> None:
        display(self.app)
        if self._defer:
            self.start()
        else:
            self._first_maps()

    def start(self) -> threading.Thread:
        """Compute the first maps in a background thread (the kernel stays free to show
        the app and answer the browser meanwhile); returns the thread (join it to wait)."""
        if self._started is None:
            self._status("starting: working on the first maps...")
            self._started = threading.Thread(
                target=self._first_maps, name="first-maps", daemon=True
            )
            self._started.start()
        return self._started

    @_action
    def _first_maps(self) -> None:
        self._ensure_maps()
        if self._defer:
            self.views.fixed_size()  # the page is connected by now

    def _ensure_maps(self) -> None:
        """Compute the first maps if nothing is shown yet."""
        if self._ds is None and not self._busy:
            self._load(self.image.value, self._first_target)

    @property
    def dataset(self) -> xr.Dataset:
        """A copy of the current state: the maps, PHA, M_f, the low-pass wraps, the input,
        the parameters (``attrs["parameters"]``) and the explorer's settings
        (``attrs["explorer"]``: image, target, current layer and method, probe, opacity),
        plus the insertion / deletion curves when computed."""
        self._ensure_maps()
        if self._ds is None:
            raise HoliwidgetError(f"nothing computed yet ({self.last_error or 'no maps'})")
        ds = self._ds.copy(deep=True)
        ds.attrs["explorer"] = json.dumps(self._settings(), sort_keys=True)
        if self._curves:
            fractions = np.asarray(self._curves["insertion"][0], dtype=np.float32)
            ds = ds.assign_coords(fraction=("fraction", fractions))
            for name, (_, ys, auc) in self._curves.items():
                ds[name] = (("fraction",), np.asarray(ys, dtype=np.float32), {"auc": auc})
        return ds

    def _settings(self) -> dict:
        return {
            "image": self._image_key,
            "target": self._target,
            "layer": self.layer.value,
            "method": self.method.value,
            "probe": list(self._probe) if self._probe else None,
            "opacity": float(self.opacity.value),
            "denoise": bool(self.denoise.value),
        }

    @property
    def probe_values(self) -> xr.DataArray | None:
        """The attribution at the probed pixel, (cam, layer), or None before a probe."""
        if self._ds is None or self._probe is None:
            return None
        y, x = self._probe
        return self._ds["attribution"].isel(image=0, y=y, x=x)

    # -----------------------------------------------------------------------------------
    # status, errors, busy state, enabled controls

    def _status(self, text: str, color: str | None = None) -> None:
        style = f' style="color:{color}"' if color else ""
        self.status.value = f"<span{style}>{html.escape(text)}</span>"

    def _fail(self, message: str) -> None:
        self.last_error = message
        self.progress.bar_style = "danger"
        self._status(f"error: {message}", _RED)
        log.info("explorer error: %s", message)

    @contextlib.contextmanager
    def _silently(self) -> Iterator[None]:
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    @contextlib.contextmanager
    def _working(self, message: str, steps: int) -> Iterator[Callable[[], None]]:
        """Busy state: controls disabled, the progress bar counting ``steps``."""
        self._busy = True
        self._sync_enabled()
        self.progress.max = max(1, steps)
        self.progress.value = 0
        self.progress.bar_style = "info"
        self._status(message)

        def tick() -> None:
            self.progress.value = min(self.progress.max, self.progress.value + 1)

        try:
            yield tick
            self.progress.value = self.progress.max
            self.progress.bar_style = "success"
        finally:
            self._busy = False
            self._sync_enabled()

    def _enable(self, widget: W.DOMWidget, enabled: bool, why: str = "") -> None:
        widget.disabled = not enabled
        widget.tooltip = self._tooltips.get(id(widget), "") if enabled else why

    def _sync_enabled(self) -> None:
        """Enable exactly the controls that can act now; a disabled one's tooltip says why."""
        busy = "busy: a network pass is running"
        browse = self._model is None
        shown = self._ds is not None
        nothing = "nothing shown yet"
        has_pha = shown and "primary" in self._ds.data_vars

        def set_(w: W.DOMWidget, ok: bool, why: str) -> None:
            self._enable(w, not self._busy and ok, busy if self._busy else why)

        set_(self.image, len(self.image.options) > 1, "only one image to show")
        no_model = "browsing a saved dataset: needs a model"
        for w in (self.folder, self.load_folder, self.upload):
            set_(w, not browse, no_model)
        set_(self.target, not browse, "browsing a saved dataset: the target is fixed")
        set_(self.search, not browse and shown, no_model if browse else nothing)
        set_(self.methods, True, "")
        set_(self.layers, True, "")
        no_pha = (
            "the dataset has no Holistic-CAM primary maps"
            if browse
            else "needs Holistic-CAM: select it among the methods"
        )
        set_(self.denoise, has_pha, no_pha if shown else nothing)
        for w in (self.threshold, self.median, self.box):
            ok = has_pha and self.denoise.value
            set_(w, ok, "denoising is off" if has_pha else (no_pha if shown else nothing))
        for w in (self.opacity, self.layer, self.method):
            set_(w, shown, nothing)
        set_(self.curves_button, not browse and shown, no_model if browse else nothing)
        for w in (self.export_path, self.save_dataset_button, self.save_figure_button):
            set_(w, shown, nothing)

    # -----------------------------------------------------------------------------------
    # network passes and installing a dataset

    def _prediction(self, key: str) -> Predictions:
        if key not in self._predictions:
            with self._working("predicting the top-5 classes (one forward pass)...", 1) as tick:
                self._predictions[key] = predict(
                    self._model, self._sources[key].item, self._pass_device()
                )
                tick()
        return self._predictions[key]

    def _pass_device(self) -> torch.device:
        return resolve_device(self._device)

    def _explain(self, key: str, target: int, layers: list[str], methods: list[str]) -> xr.Dataset:
        pyramid = bool(PYRAMID_METHODS & set(methods))
        steps = 8 if pyramid else 1
        label = self._sources[key].label
        with self._working(
            f"network passes for {label}, class {target}, {len(layers)} layer(s): "
            f"{steps} forward and backward pass(es)...",
            steps + 1,
        ) as tick:
            handle = self._model.register_forward_hook(lambda *_: tick())
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    ds = explain(
                        self._model,
                        [self._sources[key].item],
                        layers=layers,
                        methods=methods,
                        target=int(target),
                        threshold=float(self.threshold.value),
                        median=int(self.median.value),
                        box=int(self.box.value),
                        device=self._device,
                        pass_memory=self._pass_memory,
                    )
            finally:
                handle.remove()
                release_memory()
        self._warnings = [str(w.message) for w in caught]
        return ds

    def _load(self, key: str, target: int | None = None) -> None:
        """Show ``key`` (an image) explaining ``target`` (None: top-1), running passes if needed."""
        self._warnings: list[str] = []
        layers = self._chosen_layers()
        methods = self._chosen_methods()
        if self._model is None:
            ds = self._browse_dataset(key, layers, methods)
            self._image_key, self._target = key, int(ds["target"].values[0])
            with self._silently():
                self.target.options = [(self._browse_label(ds), self._target)]
                self.target.value = self._target
            self._show_dataset(ds, cached=True)
            return
        preds = self._prediction(key)
        if target is None:
            target = preds.top(1)[0][0]
        target = class_index(target, "target")
        if not 0 <= target < len(preds.names):
            raise HoliwidgetError(
                f"target {target} is outside the model's {len(preds.names)} classes (0..{len(preds.names) - 1})"
            )
        self._set_target_options(key, preds, target)
        ds = self._cache.get(key, target, layers, methods)
        cached = ds is not None
        if ds is None:
            need = order_methods(
                {*methods, *self._methods_default, *self._cache.methods_for(key, target, layers)}
            )
            full = self._explain(key, target, layers, need)
            self._cache.put(key, target, layers, full)
            ds = self._cache.get(key, target, layers, methods)
        self._image_key, self._target = key, target
        self._show_dataset(ds, cached=cached)

    def _browse_dataset(self, key: str, layers: list[str], methods: list[str]) -> xr.Dataset:
        image_id = self._sources[key].label
        ids = [str(i) for i in self._browse["image"].values]
        ds = self._browse.isel(image=[ids.index(image_id)]).sel(layer=layers, cam=methods)
        return ds.copy(deep=True)

    @staticmethod
    def _browse_label(ds: xr.Dataset) -> str:
        name = str(ds["target_name"].values[0]) if "target_name" in ds.coords else ""
        p = float(ds["probability"].values[0]) if "probability" in ds.coords else float("nan")
        return f"{int(ds['target'].values[0])} {name} ({100 * p:.1f}%)"

    def _chosen_layers(self) -> list[str]:
        layers = [n for n in self.layers.options if n in set(self.layers.value)]
        if not layers:
            raise HoliwidgetError("no layer selected: select at least one layer")
        return layers

    def _chosen_methods(self) -> list[str]:
        chosen = set(self.methods.value)
        methods = [m for _, m in self.methods.options if m in chosen]
        if not methods:
            raise HoliwidgetError("no method selected: select at least one method")
        return methods

    def _set_target_options(self, key: str, preds: Predictions, target: int) -> None:
        indices = [i for i, _, _ in preds.top(5)]
        for extra in [*self._extra_targets.get(key, []), target]:
            if extra not in indices:
                indices.append(extra)
        with self._silently():
            self.target.options = [(preds.label(i), i) for i in indices]
            self.target.value = target
            if len(self.search.options) != len(preds.names):
                self.search.options = [f"{name} ({i})" for i, name in enumerate(preds.names)]

    def _show_dataset(self, ds: xr.Dataset, *, cached: bool) -> None:
        """Make ``ds`` the current dataset and update every view in place."""
        with_lpw(ds)
        params = json.loads(ds.attrs.get("parameters", "{}"))
        params.update(
            layers=[str(v) for v in ds["layer"].values], methods=[str(v) for v in ds["cam"].values]
        )
        ds.attrs["parameters"] = json.dumps(params, sort_keys=True)
        redenoise(ds, self.threshold.value, self.median.value, self.box.value, self.denoise.value)
        self._ds = ds
        self._curves = None
        layers = [str(v) for v in ds["layer"].values]
        methods = [str(v) for v in ds["cam"].values]
        with self._silently():
            layer = self.layer.value if self.layer.value in layers else layers[0]
            method = self.method.value if self.method.value in methods else methods[0]
            self.layer.options = layers
            self.layer.value = layer
            self.method.options = [(LABELS.get(m, m), m) for m in methods]
            self.method.value = method
        size = tuple(ds.sizes[d] for d in ("y", "x"))
        self.views.structure(layers, methods, size)
        self.views.set_image(np.asarray(ds["input"].values[0]))
        self.views.set_maps(ds["attribution"].values[0])
        self._show_current()
        if self._probe is not None and not (self._probe[0] < size[0] and self._probe[1] < size[1]):
            self._probe = None
        self._show_probe()
        self.views.draw()
        self.last_error = None
        self._sync_enabled()
        self.progress.bar_style = "success"
        note = "from the cache, no network pass" if cached else "computed"
        name = str(ds["target_name"].values[0]) if "target_name" in ds.coords else ""
        message = (
            f"{self._sources[self._image_key].label}: class {self._target} {name} "
            f"(p = {float(ds['probability'].values[0]):.3f}); {len(layers)} layer(s) x "
            f"{len(methods)} method(s), {note}"
        )
        if self._warnings:
            self._status(message + "; warning: " + "; ".join(self._warnings), _AMBER)
        else:
            self._status(message, _GREEN)

    def _indices(self) -> tuple[int, int]:
        layers = [str(v) for v in self._ds["layer"].values]
        methods = [str(v) for v in self._ds["cam"].values]
        return layers.index(self.layer.value), methods.index(self.method.value)

    def _show_current(self) -> None:
        li, mi = self._indices()
        ds = self._ds
        fused = ds["attribution"].values[0, mi, li]
        lpw = ds["lpw"].values[0, li] if "lpw" in ds.data_vars else None
        method = LABELS.get(self.method.value, self.method.value)
        name = str(ds["target_name"].values[0]) if "target_name" in ds.coords else ""
        if lpw is None:
            lpw_title = "no low-pass wrap (no Holistic-CAM primary maps)"
        elif not self.denoise.value:
            lpw_title = f"low-pass wrap, {self.layer.value}: denoising off"
        else:
            lpw_title = (
                f"low-pass wrap, {self.layer.value}\n"
                f"τ {self.threshold.value:.2f}, m {self.median.value}, b {self.box.value}"
            )
        self.views.set_current(
            li,
            mi,
            fused,
            lpw,
            {"overlay": f"{name}\n{method}, {self.layer.value}", "lpw": lpw_title},
        )

    def _show_probe(self) -> None:
        if self._probe is None:
            self.views.set_probe(None, None, None)
            self.probe.value = "<i>click a pixel of any map to probe it</i>"
            return
        y, x = self._probe
        values = self._ds["attribution"].values[0, :, :, y, x]
        self.views.set_probe(y, x, values)
        layers = [str(v) for v in self._ds["layer"].values]
        methods = [str(v) for v in self._ds["cam"].values]
        li, mi = self._indices()
        head = "".join(f"<th>{html.escape(name)}</th>" for name in layers)
        rows = []
        for m, method in enumerate(methods):
            cells = "".join(
                f"<td><b>{values[m, j]:.3f}</b></td>"
                if (m, j) == (mi, li)
                else f"<td>{values[m, j]:.3f}</td>"
                for j in range(len(layers))
            )
            rows.append(f"<tr><th>{html.escape(LABELS.get(method, method))}</th>{cells}</tr>")
        self.probe.value = (
            f'<div class="holiwidget-probe-pixel">pixel (y {y}, x {x})</div>'
            f'<table style="font-size:11px"><tr><th></th>{head}</tr>{"".join(rows)}</table>'
        )

    # -----------------------------------------------------------------------------------
    # callbacks

    @_action
    def _on_image(self, change: dict) -> None:
        self._load(change["new"])

    @_action
    def _on_target(self, change: dict) -> None:
        if change["new"] is None or change["new"] < 0 or self._image_key is None:
            return
        self._load(self._image_key, int(change["new"]))

    @_action
    def _on_selection(self, change: dict) -> None:
        if self._image_key is None:
            self._ensure_maps()
            return
        self._load(self._image_key, self._target)

    @_action
    def _on_search(self, change: dict) -> None:
        text = str(change["new"]).strip()
        if not text:
            return
        self.set_target(self._find_class(text))

    def _find_class(self, text: str) -> int:
        names = self._class_names()
        if text.isdigit():
            return int(text)
        if text.endswith(")") and "(" in text:
            index = text.rsplit("(", 1)[1][:-1]
            if index.isdigit():
                return int(index)
        lower = text.lower()
        exact = [i for i, n in enumerate(names) if n.lower() == lower]
        found = exact or [i for i, n in enumerate(names) if lower in n.lower()]
        if len(found) == 1:
            return found[0]
        if not found:
            raise HoliwidgetError(f"no class name contains {text!r}; try another word or an index")
        listed = ", ".join(f"{names[i]} ({i})" for i in found[:6])
        more = f" and {len(found) - 6} more" if len(found) > 6 else ""
        raise HoliwidgetError(
            f"{len(found)} classes match {text!r}: {listed}{more}; pick one from the list"
        )

    def _class_names(self) -> list[str]:
        if self._image_key in self._predictions:
            return self._predictions[self._image_key].names
        if self._ds is not None and self._model is not None:
            return class_names(1000)
        raise HoliwidgetError("nothing shown yet: wait for the first maps")

    def set_target(self, index: int) -> None:
        """Explain class ``index`` for the current image (adds it to the target list).

        ``index`` is an integer (numpy integers and 0-d integer tensors too); a float such
        as 3.7 is refused, not truncated."""
        index = class_index(index, "the target class")
        self._ensure_maps()
        if self._model is None:
            raise HoliwidgetError("browsing a saved dataset: the target is fixed (needs a model)")
        names = self._class_names()
        if not 0 <= index < len(names):
            raise HoliwidgetError(
                f"class {index} is outside the model's {len(names)} classes (0..{len(names) - 1})"
            )
        extras = self._extra_targets.setdefault(self._image_key, [])
        if index not in extras:
            extras.append(index)
        if index == self._target:
            self._status(f"class {index} is already the target")
            return
        self._load(self._image_key, index)

    @_action
    def _on_denoise(self, change: dict) -> None:
        owner = change["owner"]
        if owner is self.threshold:
            try:
                Denoising(threshold=change["new"])
            except HoliwidgetError:
                with self._silently():
                    owner.value = change["old"]  # a NaN would fail every later move
                raise
        if owner in (self.median, self.box) and int(change["new"]) % 2 == 0:
            value = int(change["new"]) + 1 if change["new"] < owner.max else int(change["new"]) - 1
            owner.value = value  # acts through this callback again
            self._status(
                f"{owner.description}: kernels must be odd, using {value} instead of {change['new']}",
                _AMBER,
            )
            return
        if self._ds is None:
            self._ensure_maps()
            return
        self._redenoise()

    def _redenoise(self) -> None:
        t0 = time.perf_counter()
        redenoise(
            self._ds,
            float(self.threshold.value),
            int(self.median.value),
            int(self.box.value),
            bool(self.denoise.value),
        )
        self.views.set_maps(self._ds["attribution"].values[0])
        self._show_current()
        if self._probe is not None:
            self._show_probe()
        if self._curves is not None and self.method.value == "holistic":
            self._curves = None
            self.views.set_curves(None, "stale: the map changed; compute again")
        self.views.draw()
        self.last_update_ms = (time.perf_counter() - t0) * 1e3
        self._sync_enabled()
        state = (
            f"τ {self.threshold.value:.2f}, m {self.median.value}, b {self.box.value}"
            if self.denoise.value
            else "denoising off"
        )
        self.last_error = None
        self._status(
            f"re-denoised {self._ds.sizes['layer']} layer(s) from the kept PHA ({state}) in "
            f"{self.last_update_ms:.1f} ms, no network pass",
            _GREEN,
        )

    @_action
    def _on_opacity(self, change: dict) -> None:
        self.views.set_opacity(change["new"])
        self.views.draw()

    @_action
    def _on_current(self, change: dict) -> None:
        if self._ds is None:
            return
        self._curves = None
        self.views.set_curves(None)
        self._show_current()
        if self._probe is not None:
            self._show_probe()
        self.views.draw()

    def _on_click(self, view: str, cell: tuple[int, int] | None, y: int, x: int) -> None:
        self._clicked(view, cell, y, x)

    @_action
    def _clicked(self, view: str, cell: tuple[int, int] | None, y: int, x: int) -> None:
        if self._ds is None or self._busy:
            return
        if cell is not None:
            li, mi = cell
            with self._silently():
                self.layer.value = str(self._ds["layer"].values[li])
                self.method.value = str(self._ds["cam"].values[mi])
            self._curves = None
            self.views.set_curves(None)
            self._show_current()
        self.probe_at(y, x)

    def probe_at(self, y: int, x: int) -> None:
        """Probe pixel (y, x): crosshairs on every view and its values across layers and methods."""
        self._ensure_maps()
        height, width = self._ds.sizes["y"], self._ds.sizes["x"]
        if not (0 <= y < height and 0 <= x < width):
            raise HoliwidgetError(f"pixel ({y}, {x}) is outside the {height} x {width} maps")
        self._probe = (int(y), int(x))
        self._show_probe()
        self.views.draw()

    @_action
    def _on_folder(self, _button: object) -> None:
        folder = self.folder.value
        if self._data is not None:
            folder = confined_path(self._data, folder, "folder")
        self.add_images(folder_sources(folder))

    @_action
    def _on_upload(self, change: dict) -> None:
        files = change["new"]
        if files:
            self.add_images(upload_sources(files))

    def add_images(
        self, sources: ImageSource | ImageInput | Sequence[ImageSource | ImageInput]
    ) -> None:
        """Add images to the chooser and show the first of them.

        Args:
            sources: image sources (from :func:`folder_sources`, :func:`upload_sources`), or
                what ``images=`` takes (paths, sample names, PIL images, arrays), one or a
                list.
        """
        if self._model is None:
            raise HoliwidgetError("browsing a saved dataset: adding images needs a model")
        given = list(sources) if isinstance(sources, (list, tuple)) else [sources]
        sources = [s if isinstance(s, ImageSource) else given_sources([s])[0] for s in given]
        if not sources:
            raise HoliwidgetError(
                "no images to add; pass at least one path, sample name, PIL image or array"
            )
        for src in sources:
            self._sources.setdefault(src.key, src)
        with self._silently():
            current = self.image.value
            self.image.options = [(s.label, s.key) for s in self._sources.values()]
            self.image.value = current
        self._sync_enabled()
        self.image.value = sources[0].key

    @_action
    def _on_curves(self, _button: object) -> None:
        self.compute_curves()

    def compute_curves(self) -> dict:
        """Insertion and deletion curves of the current map (from holiwidget.metrics)."""
        self._ensure_maps()
        if self._model is None:
            raise HoliwidgetError("insertion and deletion curves need the model")
        li, mi = self._indices()
        saliency = self._ds["attribution"].values[0, mi, li]
        rgb = self._ds["input"].values[0]
        with self._working("insertion and deletion curves (many forward passes)...", 1) as tick:
            result = _curves.compute_curves(
                self._model, rgb, saliency, self._target, self._pass_device()
            )
            tick()
        self._curves = result
        self.views.set_curves(result)
        self.views.draw()
        self.last_error = None
        self._status(
            "insertion AUC {:.3f}, deletion AUC {:.3f}".format(
                result["insertion"][2], result["deletion"][2]
            ),
            _GREEN,
        )
        return result

    # -----------------------------------------------------------------------------------
    # export

    def _export_path(self, kind: str) -> Path:
        """The export file of ``kind`` ("dataset" or "figure") named by the export box.

        A name ending in a format of that kind keeps it (``state.svg`` -> the figure
        ``state.svg``); any other gets the default (``.nc``, ``.png``) added, after dropping
        an extension of the other kind (``state.svg`` -> the dataset ``state.nc``).
        """
        text = self.export_path.value.strip() or "holiwidget-explorer"
        path = Path(text).expanduser()
        if self._data is not None:
            path = confined_path(self._data, text, "export")

        def accepts(check: Callable[[Path], str]) -> bool:
            try:
                check(path)
            except HoliwidgetError:
                return False
            return True

        kinds = {"dataset": (dataset_format, ".nc"), "figure": (figure_format, ".png")}
        (own, default), (other, _) = kinds.pop(kind), *kinds.values()
        if accepts(own):
            return path
        if accepts(other):
            path = path.with_suffix("")
        return path.with_name(path.name + default)

    @_action
    def _on_save_dataset(self, _button: object) -> None:
        self._exported(self.save_dataset(self._export_path("dataset")))

    @_action
    def _on_save_figure(self, _button: object) -> None:
        self._exported(self.save_figure(self._export_path("figure")))

    def _exported(self, path: Path) -> None:
        self.last_error = None  # a success clears the error shown before it
        self.progress.bar_style = "success"
        if self._data is None:
            self._status(f"wrote {path}", _GREEN)
            return
        self._status(f"wrote {path.relative_to(self._data)} in the data folder", _GREEN)
        self.download.value = download_link(path)

    def save_dataset(self, path: str | os.PathLike) -> Path:
        """Write :attr:`dataset` to netCDF (``.nc``) or zarr (``.zarr``), atomically."""
        return _save_dataset(self.dataset, path)

    def save_figure(self, path: str | os.PathLike) -> Path:
        """Write every view, laid out as in the app, to one figure file, atomically.

        The extension picks the format: any that :func:`holiwidget.figure.figure_format`
        accepts (png, jpg, tif, webp, pdf, svg, svgz, eps, ps). The views are drawn at their
        resolution on screen and placed on one matplotlib sheet: pixel for pixel in the
        raster formats, as embedded images in the vector ones.
        """
        self._ensure_maps()
        fmt = figure_format(path)
        out = check_output(path, "figure")
        tiles = {}
        for name, fig in self.views.figures.items():
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=fig.dpi, facecolor="white")
            buf.seek(0)
            with Image.open(buf) as tile:
                tiles[name] = np.asarray(tile.convert("RGB"))
        top = [tiles[n] for n in ("overlay", "lpw", "probe", "curves")]
        top_height = max(t.shape[0] for t in top)
        width = max(sum(t.shape[1] for t in top), tiles["grid"].shape[1])
        height = top_height + tiles["grid"].shape[0]
        dpi = 100  # any: the sheet's pixels are the views' pixels
        sheet = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
        x = 0
        for tile in top:  # figimage offsets count pixels from the sheet's bottom left
            sheet.figimage(tile, xo=x, yo=height - tile.shape[0], origin="upper")
            x += tile.shape[1]
        sheet.figimage(tiles["grid"], xo=0, yo=0, origin="upper")
        with atomic_output(out, "figure", replaces=is_marked_figure) as part:
            sheet.savefig(part, format=fmt, dpi=dpi, facecolor="white", **figure_mark(fmt))
        return out
