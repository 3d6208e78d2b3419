"""The explorer app: wires the controls to a session and the session to the views.

The state lives in :class:`~.session.Session` (no widget), the maps come from a provider
(:mod:`.providers`), the controls are built from :data:`~.controls.SPECS`, the page is
:func:`~.layout.build_layout`, and the views are drawn by :class:`~.board.Board`. Network
passes run only when the image, the target, the layers or a not-yet-computed method change;
the denoising sliders re-denoise from the kept primary maps.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import xarray as xr
from IPython.display import display
from torch import nn

from ..checks import class_index
from ..dataset import open_dataset, save_dataset
from ..errors import HoliwidgetError
from ..images import ImageInput
from ..methods.holistic import Denoising
from .board import Board
from .controls import Controls, PageProgress
from .downloads import download_link, user_path
from .export import caption, default_name, export_path, save_sheet, state_dataset
from .layout import build_layout
from .providers import DatasetProvider, ModelProvider
from .readouts import status_html
from .session import Session
from .sources import ImageSource, folder_sources, given_sources, upload_sources

__all__ = ["Explorer"]

log = logging.getLogger(__name__)


def _action(fn: Callable) -> Callable:
    """A widget callback: ignored while the app sets widgets itself; errors go to the page."""

    @functools.wraps(fn)
    def wrapper(self: Explorer, *args: object) -> object:
        if self.muted:
            return None
        try:
            return fn(self, *args)
        except HoliwidgetError as exc:
            self._fail(str(exc))
        except Exception as exc:  # shown in the app: a callback has no caller to raise to
            log.exception("explorer callback %s failed", fn.__name__)
            self._fail(f"{type(exc).__name__}: {exc}")
        return None

    return wrapper


def _from_page(app: Explorer, fn: Callable, latest: str | None = None) -> Callable:
    """A callback of the page (a control, a click): run as ``app._act(fn)`` on the kernel's
    event loop, where the views are drawn. The page's messages arrive on another thread (a
    kernel subshell), which would otherwise change the session while the loop draws it and
    compete with it for the interpreter. ``latest``: see :meth:`~.pacing.Pacer.on_loop`."""
    act = app._act(fn)

    def run(*args: object) -> None:
        if app.muted:
            return  # the app setting a widget itself
        app.views.pacer.run(act, *args, latest=latest)

    return run


class Explorer(Controls):
    """An interactive explorer of Holistic-CAM and its baselines at every depth of a CNN.

    ``Explorer(model, images=..., layers="auto", methods=...)`` shows one page: the inputs
    (image with previous / next, folder, upload, target class and search, methods, layers),
    the denoising controls (threshold τ, median and box kernels, denoising on/off, reset),
    the look (opacity, colormap), the views (overlay with colour bar and zoom, low-pass wrap,
    pixel probe, insertion / deletion curves, the layer x method grid, a sweep's heatmaps),
    scores, export, a status line and a progress bar. ``Explorer(dataset="maps.nc")`` browses
    a saved dataset; what would need a network pass is disabled, saying why.

    The controls are public widgets (``explorer.threshold``, ``explorer.median``,
    ``explorer.box``, ``explorer.image``, ``explorer.search``, ... see
    :data:`~holiwidget.explorer.controls.SPECS`): setting their ``value`` acts as a user
    would. The state is :attr:`session`; :attr:`dataset` is a copy of it as data.

    Args:
        model: a torchvision-style classifier, or None to browse ``dataset``.
        images: images to offer before the embedded samples (paths, sample names, PIL
            images, arrays); the first is shown first (default: the sample ``chelsea``).
        layers: ``"auto"`` (the holistic stage) or layer names, the layers shown first.
        methods: methods shown first (names, comma-separated, or ``"all"``).
        dataset: a dataset from :func:`holiwidget.explain` or its path, to browse.
        target: the class explained for the first image (default: its top-1 class).
        threshold, median, box: the initial denoising parameters.
        device: where network passes run (``"auto"``: CUDA, then MPS, then CPU).
        interactive: canvases in the page (default) or plain Agg ones (no browser needed).
        data: a data folder to confine the explorer to (a shared deployment).
        defer: compute the first maps in the background once displayed.
        pass_memory: the most megabytes a network pass may keep for its backward.
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
        start = Denoising(threshold, median, box)
        target = None if target is None else class_index(target, "target")
        self._data = None if data is None else Path(data).expanduser().resolve()
        if self._data is not None and not self._data.is_dir():
            raise HoliwidgetError(f"data folder {self._data} does not exist; create it first")
        if model is None and images is not None:
            raise HoliwidgetError("images= needs a model; a saved dataset is browsed as it is")
        provider = (
            DatasetProvider(dataset)
            if model is None
            else ModelProvider(
                model,
                images,
                layers,
                methods,
                device=device,
                pass_memory=pass_memory,
                denoising=start,
            )
        )
        super().__init__()
        self._defer = defer
        self._started: threading.Thread | None = None
        #: The last error shown in the app (None after a success).
        self.last_error: str | None = None
        self.session = Session(provider, target=target, progress=PageProgress(self))
        clicked, picked = _from_page(self, self._click), _from_page(self, self._picked)
        self.views = Board(self.session, clicked, picked, interactive=interactive)
        self.fill(self.session)
        self.app = build_layout(self, self.views.canvases())
        self._observe()
        self.session.subscribe(self._changed)
        self.sync(self.session, self.views.sweep_shown)
        self.status.value = status_html("ready: display the explorer (or read .dataset)")

    def controls(self) -> dict[str, object]:
        """Every control widget by name (the public attribute of the same name)."""
        return dict(self.widgets)

    def _observe(self) -> None:
        on = {
            "image": lambda ch: self.session.show(ch["new"]),
            "target": self._on_target,
            "search": lambda ch: ch["new"].strip() and self.session.search(ch["new"]),
            "methods": lambda ch: self.session.select(methods=ch["new"]),
            "layers": lambda ch: self.session.select(layers=ch["new"]),
            "layer": lambda ch: self.session.set_current(layer=ch["new"]),
            "method": lambda ch: self.session.set_current(method=ch["new"]),
            "opacity": lambda ch: self.session.set_look(opacity=ch["new"]),
            "colormap": lambda ch: self.session.set_look(cmap=ch["new"]),
            "upload": lambda ch: ch["new"] and self._uploaded(ch["new"]),
            "sweep_metric": lambda ch: self.views.show_sweep(
                self.views.sensitivity.results, ch["new"]
            ),
        }
        for name, fn in on.items():
            self.widgets[name].observe(_from_page(self, fn), "value")
        for name in ("threshold", "median", "box", "denoise"):
            self.widgets[name].observe(_from_page(self, self._on_denoise, "denoise"), "value")
        clicks = {
            "previous_image": lambda: self._step(-1),
            "next_image": lambda: self._step(1),
            "load_folder": lambda: self.add_images(folder_sources(user_path(self._data, self.folder.value, "folder"))),
            "reset": self._reset,
            "curves_button": self.compute_curves,
            "score_button": self.score_all,
            "open_sweep": lambda: self.show_sweep(user_path(self._data, self.sweep_path.value, "sweep")),
            "save_dataset_button": lambda: self._exported(self.save_dataset(self._export("dataset"))),
            "save_figure_button": lambda: self._exported(self.save_figure(self._export("figure"))),
        }  # fmt: skip
        for name, fn in clicks.items():
            self.widgets[name].on_click(_from_page(self, lambda _button, fn=fn: fn()))

    def _act(self, fn: Callable) -> Callable:
        return functools.partial(_action(lambda self, *args: fn(*args)), self)

    def _on_target(self, change: dict) -> None:
        if change["new"] is not None and change["new"] >= 0 and self.session.ds is not None:
            self.session.show(self.session.image, int(change["new"]))

    def _on_denoise(self, change: dict) -> None:
        owner = change["owner"]
        if self.made_odd(change):
            return  # the odd value acts through this callback again
        try:
            self.session.set_denoising(*self.denoising())
        except HoliwidgetError:
            with self.silently():
                owner.value = change["old"]  # a NaN would fail every later move
            raise
        if self.session.ds is None and not self.session.busy:
            self.session.ensure()

    def _uploaded(self, files: tuple) -> None:
        with self.silently():
            self.upload.value = ()  # the same file can be uploaded again
        self.add_images(upload_sources(files))

    def _reset(self) -> None:
        d = Denoising()
        self.session.set_denoising(d.threshold, d.median, d.box, True)

    def _step(self, by: int) -> None:
        keys = [src.key for src in self.session.sources]
        self.image.value = keys[(keys.index(self.session.image) + by) % len(keys)]

    def _click(self, view: str, cell: tuple[int, int] | None, y: int, x: int) -> None:
        s = self.session
        if s.ds is None or s.busy:
            return
        if cell is not None:
            s.set_current(str(s.ds["layer"].values[cell[0]]), str(s.ds["cam"].values[cell[1]]))
        self.probe_at(y, x)

    def _picked(self, threshold: float, median: int, box: int) -> None:
        self.session.set_denoising(threshold, median, box, True)

    def _changed(self, kind: str) -> None:
        if self.views.pacer.elsewhere():  # the first maps' thread: views change on the loop
            self.views.pacer.on_loop(self._changed, kind)
            return
        self.views.update(kind)
        if kind == "map":  # the first part of "maps"
            return
        if kind == "busy":  # at once: the controls are disabled while passes run
            self.reflect(self.session, kind, self.views.sweep_shown)
            return
        self.last_error = None  # a success replaces the status (and an earlier error)
        self.views.pacer.then(
            lambda: self.reflect(
                self.session, kind, self.views.sweep_shown, status=self.last_error is None
            ),
            resting=kind == "maps",
        )

    def _fail(self, message: str) -> None:
        self.last_error = message
        if self.session.ds is not None:  # the widgets show the session again, not what failed
            self.reflect(self.session, "dataset", self.views.sweep_shown, status=False)
        self.progress.bar_style = "danger"
        self.status.value = status_html(f"error: {message}", "error")
        log.info("explorer error: %s", message)

    def _ipython_display_(self) -> None:
        display(self.app)
        self.views.pacer.attach()
        if self._defer:
            self.start()
        else:
            self._act(self.session.ensure)()

    def start(self) -> threading.Thread:
        """Compute the first maps in a background thread; returns it (join it to wait)."""
        if self._started is None:
            self.status.value = status_html("starting: working on the first maps...")
            self._started = threading.Thread(
                target=self._act(self.session.ensure), name="first-maps", daemon=True
            )
            self._started.start()
        return self._started

    def _wait_first_maps(self) -> None:
        if self._started is not None:
            self._started.join()  # the first maps, computing in the background

    @property
    def dataset(self) -> xr.Dataset:
        """A copy of the state as data (see :func:`~.export.state_dataset`)."""
        self._wait_first_maps()
        if self.session.ds is None:
            self._act(self.session.ensure)()
        if self.session.ds is None:
            raise HoliwidgetError(f"nothing computed yet ({self.last_error or 'no maps'})")
        return state_dataset(self.session)

    @property
    def probe_values(self) -> xr.DataArray | None:
        """The attribution at the probed pixel, (cam, layer), or None before a probe."""
        return self.session.probe_values()

    def set_target(self, index: int) -> None:
        """Explain class ``index`` (an integer) for the current image."""
        self.session.set_target(index)

    def probe_at(self, y: int, x: int) -> None:
        """Probe pixel (y, x): crosshairs on every view, its values in every layer and method."""
        self.session.probe_at(y, x)

    def add_images(self, sources: ImageSource | ImageInput | Sequence) -> None:
        """Add images (sources, paths, sample names, PIL images, arrays) and show the first."""
        given = list(sources) if isinstance(sources, (list, tuple)) else [sources]
        self.session.add_images(
            [s if isinstance(s, ImageSource) else given_sources([s])[0] for s in given]
        )

    def compute_curves(self) -> dict:
        """Insertion and deletion curves of the current map."""
        return self.session.compute_curves()

    def score_all(self) -> dict:
        """Insertion and deletion AUCs of every grid map, in one batched run."""
        return self.session.score_all()

    def show_sweep(
        self, results: xr.Dataset | str | os.PathLike, metric: str | None = None
    ) -> None:
        """Show a sweep's heatmaps, linked: the current setting is marked, a click sets it."""
        ds = results if isinstance(results, xr.Dataset) else open_dataset(results)
        self.views.show_sweep(ds, metric)
        with self.silently():
            self.sweep_metric.options = self.views.sensitivity.metrics
            self.sweep_metric.value = self.views.sensitivity.metric
        self.last_error = None
        self.progress.bar_style = "success"
        self.status.value = status_html(f"showing the sweep's {self.sweep_metric.value}", "ok")
        self.sync(self.session, True)

    def _export(self, kind: str) -> Path:
        return export_path(self.export_path.value, kind, default_name(self.session), self._data)

    def _exported(self, path: Path) -> None:
        self.last_error = None
        self.progress.bar_style = "success"
        shown = path.relative_to(self._data) if self._data is not None else path
        self.status.value = status_html(f"wrote {shown}", "ok")
        self.download.value = download_link(path)

    def save_dataset(self, path: str | os.PathLike) -> Path:
        """Write :attr:`dataset` to netCDF (``.nc``) or zarr (``.zarr``), atomically."""
        return save_dataset(self.dataset, path)

    def save_figure(self, path: str | os.PathLike) -> Path:
        """Write the views that show something to one captioned figure file, atomically
        (any format :func:`holiwidget.figure.figure_format` accepts)."""
        s, f = self.session, self.views.figures
        self._wait_first_maps()
        s.ensure()
        top = [f["overlay"], f["lpw"]]
        top += [f["probe"]] if s.probe is not None else []
        top += [f["curves"]] if s.curves is not None else []
        bottom = [f["grid"], *([f["sensitivity"]] if self.views.sweep_shown else [])]
        return save_sheet(Path(path), [top, bottom], caption(s))
