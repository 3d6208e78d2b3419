"""The explorer's state without any widget: one :class:`Session` over one provider.

A session holds what the explorer shows (the image, the target, the layers and methods, the
current map, the denoising parameters, the probe, the curves and the grid's scores) and the
current dataset, one image of :func:`holiwidget.explain`'s output plus ``lpw``. Its methods
act as a user would; each change is announced to the subscribers by name:

- ``"busy"``: a network pass starts or ends (:attr:`Session.busy`);
- ``"images"``: the images on offer changed;
- ``"dataset"``: a new dataset (image, target, layers or methods changed): everything;
- ``"map"``: the current layer was re-denoised (the others follow), then ``"maps"``: every
  layer was (no network pass);
- ``"current"``: the current layer or method; ``"probe"``; ``"curves"``; ``"scores"``;
- ``"look"``: the opacity or the colormap.

Errors are :class:`~holiwidget.errors.HoliwidgetError` lines; the state stays as it was.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence

import xarray as xr

from ..checks import class_index
from ..errors import HoliwidgetError
from ..figure import ALPHA, CMAP
from ..methods import LABELS
from ..methods.holistic import Denoising
from .curves import CurveSet
from .denoising import explorer_dataset, redenoise
from .providers import Progress, Provider
from .search import find_class
from .sources import ImageSource

__all__ = ["COLORMAPS", "KINDS", "Session"]

#: The colormaps offered for the maps: the paper's jet, then perceptually uniform ones.
COLORMAPS = ("jet", "turbo", "inferno", "viridis", "gray")


class Session:
    """What the explorer shows and the dataset behind it (see the module's notes).

    Args:
        provider: where the maps come from (a model or a saved dataset).
        target: the class explained for the first image (None: its top-1 class).
        progress: reports long work (the app's status line and progress bar).
    """

    def __init__(
        self, provider: Provider, *, target: int | None = None, progress: Progress | None = None
    ) -> None:
        self.provider = provider
        self.progress = progress or Progress()
        d = provider.denoising
        self.threshold, self.median, self.box, self.denoise = d.threshold, d.median, d.box, True
        self.opacity, self.cmap = ALPHA, CMAP
        self.image = next(iter(provider.sources))
        self.first_target = target
        self.target: int | None = None
        self.layers = list(provider.layers)
        self.methods = [m for m in provider.methods if m in provider.method_options]
        self.layer: str | None = None
        self.method: str | None = None
        self.probe: tuple[int, int] | None = None
        self.curves: CurveSet | None = None
        self.curves_note = "not computed"
        self.scores: dict[tuple[str, str], tuple[float, float]] = {}
        self.ds: xr.Dataset | None = None
        self.busy = False
        self.warnings: list[str] = []
        #: The last action's outcome, for a status line: (text, "ok" | "warn" | "info").
        self.note: tuple[str, str] = ("ready", "info")
        #: Milliseconds of the last re-denoise.
        self.last_update_ms: float | None = None
        self._extra_targets: dict[str, list[int]] = {}
        self._listeners: list[Callable[[str], None]] = []

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(kind)`` after each change (kinds in the module's notes)."""
        self._listeners.append(listener)

    def _emit(self, kind: str) -> None:
        for listener in self._listeners:
            listener(kind)

    @contextlib.contextmanager
    def _working(self) -> Iterator[None]:
        self.busy = True
        self._emit("busy")
        try:
            yield
        finally:
            self.busy = False
            self._emit("busy")

    @property
    def explains(self) -> bool:
        """Whether the session has a model (else it browses a saved dataset)."""
        return self.provider.explains

    @property
    def sources(self) -> list[ImageSource]:
        """The images on offer, in the chooser's order."""
        return list(self.provider.sources.values())

    def ensure(self) -> xr.Dataset:
        """The current dataset, computing the first maps if nothing is shown yet."""
        if self.ds is None and not self.busy:
            self.show(self.image, self.first_target)
        if self.ds is None:
            raise HoliwidgetError("nothing computed yet: wait for the first maps")
        return self.ds

    def show(self, image: str | None = None, target: int | None = None) -> None:
        """Show ``image`` (a source key) explaining ``target`` (None: its top-1 class)."""
        key = self.image if image is None else image
        if key not in self.provider.sources:
            raise HoliwidgetError(f"no image {key!r} on offer; add it first")
        layers, methods = self.provider.chosen(self.layers, self.methods)
        with self._working():
            ds, cached, caught = self.provider.load(key, target, layers, methods, self.progress)
        target = int(ds["target"].values[0])
        new_pair = (key, target) != (self.image, self.target)
        self.image, self.target, self.warnings = key, target, caught
        self._install(ds, new_pair)
        name = str(ds["target_name"].values[0]) if "target_name" in ds.coords else ""
        how = "from the cache, no network pass" if cached else "computed"
        text = (
            f"{self.provider.sources[key].label}: class {self.target} {name} "
            f"(p = {float(ds['probability'].values[0]):.3f}); {len(layers)} layer(s) x "
            f"{len(methods)} method(s), {how}"
        )
        self.note = (text + "; warning: " + "; ".join(caught), "warn") if caught else (text, "ok")
        self._emit("dataset")

    def _install(self, ds: xr.Dataset, new_pair: bool) -> None:
        self.ds = explorer_dataset(ds, self.threshold, self.median, self.box, self.denoise)
        layers, methods = [str(v) for v in ds["layer"].values], [str(v) for v in ds["cam"].values]
        self.layer = self.layer if self.layer in layers else layers[0]
        self.method = self.method if self.method in methods else methods[0]
        self.curves, self.curves_note = None, "not computed"
        if new_pair:
            self.scores = {}
        if self.probe is not None and not (
            self.probe[0] < ds.sizes["y"] and self.probe[1] < ds.sizes["x"]
        ):
            self.probe = None

    def select(
        self, layers: Sequence[str] | None = None, methods: Sequence[str] | None = None
    ) -> None:
        """Show other layers or methods (a network pass only for what is not computed)."""
        chosen = self.provider.chosen(
            self.layers if layers is None else layers, self.methods if methods is None else methods
        )
        before, (self.layers, self.methods) = (self.layers, self.methods), chosen
        try:
            self.show(self.image, self.target)
        except Exception:
            self.layers, self.methods = before  # the state stays as it was
            raise

    def target_choices(self) -> list[tuple[str, int]]:
        """(label, index) for the target chooser: the top-5 and every class asked for."""
        if self.ds is None:
            return [("(not computed yet)", -1)]
        extra = self._extra_targets.get(self.image, [])
        return self.provider.target_choices(self.image, self.target, extra)

    def class_names(self) -> list[str]:
        """Every class name of the model, by index (refused when browsing a dataset)."""
        return self.provider.class_names(self.image)

    def set_target(self, index: int) -> None:
        """Explain class ``index`` (an integer; a float such as 3.7 is refused)."""
        index = class_index(index, "the target class")
        self.ensure()
        if not self.explains:
            raise HoliwidgetError("browsing a saved dataset: the target is fixed (needs a model)")
        names = self.class_names()
        if not 0 <= index < len(names):
            raise HoliwidgetError(
                f"class {index} is outside the model's {len(names)} classes (0..{len(names) - 1})"
            )
        extras = self._extra_targets.setdefault(self.image, [])
        if index not in extras:
            extras.append(index)
        if index == self.target:
            self.note = (f"class {index} is already the target", "info")
            self._emit("dataset")
            return
        self.show(self.image, index)

    def search(self, text: str) -> int:
        """Explain the class that ``text`` names (an index, a name or part of one)."""
        self.ensure()
        index = find_class(str(text).strip(), self.class_names())
        self.set_target(index)
        return index

    def add_images(self, sources: Sequence[ImageSource]) -> None:
        """Offer more images and show the first of them."""
        if not sources:
            raise HoliwidgetError(
                "no images to add; pass at least one path, sample name, PIL image or array"
            )
        self.provider.add(sources)
        self._emit("images")
        self.show(sources[0].key)

    def set_denoising(
        self,
        threshold: float | None = None,
        median: int | None = None,
        box: int | None = None,
        denoise: bool | None = None,
    ) -> None:
        """Re-denoise every layer's Holistic-CAM map from the kept PHA and M_f."""
        d = Denoising(
            self.threshold if threshold is None else threshold,
            self.median if median is None else median,
            self.box if box is None else box,
        )
        self.threshold, self.median, self.box = d.threshold, d.median, d.box
        self.denoise = self.denoise if denoise is None else bool(denoise)
        if self.ds is None:
            self._emit("maps")
            return
        t0 = time.perf_counter()
        # the map in view first, shown while the other layers are re-denoised
        redenoise(
            self.ds, self.threshold, self.median, self.box, self.denoise,
            first=self.indices()[0], after_first=lambda: self._emit("map"),
        )  # fmt: skip
        if self.method == "holistic" and self.curves is not None:
            self.curves, self.curves_note = None, "stale: the map changed; compute again"
        self.scores = {k: v for k, v in self.scores.items() if k[1] != "holistic"}
        self.last_update_ms = (time.perf_counter() - t0) * 1e3
        self.note = (
            f"re-denoised {self.ds.sizes['layer']} layer(s) from the kept PHA "
            f"({self.denoising_text()}), no network pass",
            "ok",
        )
        self._emit("maps")

    def denoising_text(self) -> str:
        """``"τ 0.50, m 51, b 91"``, or ``"denoising off"``."""
        if not self.denoise:
            return "denoising off"
        return f"τ {self.threshold:.2f}, m {self.median}, b {self.box}"

    def set_current(self, layer: str | None = None, method: str | None = None) -> None:
        """Make the map of ``layer`` x ``method`` current (the overlay, curves, grid frame)."""
        ds = self.ensure()
        layer = self.layer if layer is None else str(layer)
        method = self.method if method is None else str(method)
        if layer not in ds["layer"].values or method not in ds["cam"].values:
            raise HoliwidgetError(f"{layer} x {method} is not shown; select it first")
        if (layer, method) != (self.layer, self.method):
            self.layer, self.method = layer, method
            self.curves, self.curves_note = None, "not computed"
            self.note = (f"current map: {self._map_text()}", "info")
            self._emit("current")

    def probe_at(self, y: int, x: int) -> None:
        """Probe pixel (y, x): its value in every layer and method."""
        ds = self.ensure()
        height, width = ds.sizes["y"], ds.sizes["x"]
        if not (0 <= y < height and 0 <= x < width):
            raise HoliwidgetError(f"pixel ({y}, {x}) is outside the {height} x {width} maps")
        self.probe = (int(y), int(x))
        self.note = (f"probed pixel (y {y}, x {x}); current map: {self._map_text()}", "info")
        self._emit("probe")

    def _map_text(self) -> str:
        return f"{LABELS.get(self.method, self.method)}, {self.layer}"

    def set_look(self, opacity: float | None = None, cmap: str | None = None) -> None:
        """The overlay's opacity (0..1) and the maps' colormap (one of :data:`COLORMAPS`)."""
        if opacity is not None:
            if not 0.0 <= float(opacity) <= 1.0:
                raise HoliwidgetError(f"opacity must be within 0..1, got {opacity}")
            self.opacity = float(opacity)
        if cmap is not None:
            if cmap not in COLORMAPS:
                raise HoliwidgetError(f"unknown colormap {cmap!r}; choose from {COLORMAPS}")
            self.cmap = cmap
        self.note = (f"colormap {self.cmap}, opacity {self.opacity:.2f}", "info")
        self._emit("look")

    def indices(self) -> tuple[int, int]:
        """(layer index, method index) of the current map in the dataset."""
        ds = self.ensure()
        layers, methods = list(ds["layer"].values), list(ds["cam"].values)
        return layers.index(self.layer), methods.index(self.method)

    def compute_curves(self) -> CurveSet:
        """Insertion and deletion curves of the current map."""
        ds = self.ensure()
        li, mi = self.indices()
        rgb, saliency = ds["input"].values[0], ds["attribution"].values[0, mi, li]
        with self._working():
            (self.curves,) = self.provider.score(rgb, saliency, self.target, self.progress)
        self.scores[(self.layer, self.method)] = tuple(self.curves[k][2] for k in KINDS)
        self.note = (_auc_text(self.curves), "ok")
        self._emit("curves")
        self._emit("scores")
        return self.curves

    def score_all(self) -> dict[tuple[str, str], tuple[float, float]]:
        """Insertion and deletion AUCs of every layer x method map, in one batched run."""
        ds = self.ensure()
        att = ds["attribution"].values[0]  # (cam, layer, y, x)
        cells = [(str(l_), str(m)) for m in ds["cam"].values for l_ in ds["layer"].values]
        rgb = ds["input"].values[0]
        with self._working():
            results = self.provider.score(
                rgb, att.reshape(-1, *att.shape[2:]), self.target, self.progress
            )
        self.scores = {
            c: tuple(r[k][2] for k in KINDS) for c, r in zip(cells, results, strict=True)
        }
        self.curves = results[cells.index((self.layer, self.method))]
        self.note = (f"scored {len(cells)} maps; current: {_auc_text(self.curves)}", "ok")
        self._emit("curves")
        self._emit("scores")
        return self.scores

    def probe_values(self) -> xr.DataArray | None:
        """The attribution at the probed pixel, (cam, layer), or None before a probe."""
        if self.ds is None or self.probe is None:
            return None
        y, x = self.probe
        return self.ds["attribution"].isel(image=0, y=y, x=x)


#: The causal metrics' kinds, in the order of a score pair.
KINDS = ("insertion", "deletion")


def _auc_text(curves: CurveSet) -> str:
    return "insertion AUC {:.3f}, deletion AUC {:.3f}".format(*(curves[k][2] for k in KINDS))
