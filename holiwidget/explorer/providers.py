"""Where a session's maps come from: a model (network passes, cached) or a saved dataset.

A :class:`~holiwidget.explorer.session.Session` asks its provider for the images it can
show, the layers and methods on offer, the class choices of an image and the dataset of an
(image, target, layers, methods) request. :class:`ModelProvider` runs
:func:`holiwidget.explain` (once per image, target and layers; see
:class:`~holiwidget.explorer.passes.PassCache`); :class:`DatasetProvider` selects from a
saved dataset and refuses what needs a model in one line. No widget here.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import nn

from ..dataset import open_dataset
from ..devices import resolve_device
from ..engine import explain
from ..errors import HoliwidgetError
from ..heap import release_memory
from ..layers import resolve_layers
from ..methods import PYRAMID_METHODS, parse_methods
from ..methods.holistic import Denoising
from ..models import class_names, model_info
from .curves import CurveSet, score_maps
from .passes import PassCache, Predictions, candidate_layers, order_methods, predict
from .sources import ImageSource, given_sources, sample_sources

__all__ = ["DatasetProvider", "ModelProvider", "Progress", "Provider"]

NO_MODEL = "browsing a saved dataset: {} needs a model"


class Progress:
    """How a provider reports long work: ``begin`` a job of some steps, ``tick`` each one.

    This base reports nothing; the app's status line and progress bar subclass it.
    """

    def begin(self, message: str, steps: int) -> None:
        """A job of ``steps`` steps starts (controls that cannot act meanwhile are disabled)."""

    def tick(self) -> None:
        """One step of the job is done."""

    def end(self) -> None:
        """The job is over (done or failed)."""


class Provider:
    """What a session needs from the source of its maps (see the module's notes).

    Attributes:
        sources: the images on offer, by key, in the chooser's order.
        layer_options, layers: the layers on offer (the first shown, then the rest) and
            those shown first; model_order: the layers on offer in the model's order.
        method_options, methods: the methods on offer and those shown first.
        denoising: the denoising parameters the session starts with.
        explains: whether it runs network passes (a model) or browses a dataset.
        name: what the export names and captions call the model.
    """

    explains = False
    name = "dataset"

    def __init__(self) -> None:
        self.sources: dict[str, ImageSource] = {}
        self.layer_options: list[str] = []
        self.model_order: list[str] = []
        self.layers: list[str] = []
        self.method_options: list[str] = []
        self.methods: list[str] = []
        self.denoising = Denoising()

    def chosen(self, layers: Sequence[str], methods: Sequence[str]) -> tuple[list, list]:
        """The layers in the model's order and the methods in the engine's, without repeats.

        Raises:
            HoliwidgetError: no layer or no method.
        """
        rank = {n: i for i, n in enumerate(self.model_order)}
        chosen_l = sorted(set(layers), key=lambda n: rank.get(n, len(rank)))
        order = {m: i for i, m in enumerate(self.method_options)}
        chosen_m = sorted(set(methods), key=lambda m: order.get(m, len(order)))
        if not chosen_l:
            raise HoliwidgetError("no layer selected: select at least one layer")
        if not chosen_m:
            raise HoliwidgetError("no method selected: select at least one method")
        return chosen_l, chosen_m

    def class_names(self, key: str) -> list[str]:
        """Every class name of the model (index order)."""
        raise HoliwidgetError(NO_MODEL.format("searching classes"))

    def target_choices(self, key: str, target: int | None, extra: Sequence[int]) -> list:
        """(label, index) choices for the target chooser; the first is the default target."""
        raise NotImplementedError

    def load(
        self,
        key: str,
        target: int | None,
        layers: list[str],
        methods: list[str],
        progress: Progress,
    ) -> tuple[xr.Dataset, bool, list[str]]:
        """The dataset of one image: (dataset, served without a pass, warnings)."""
        raise NotImplementedError

    def add(self, sources: Sequence[ImageSource]) -> None:
        """Offer more images."""
        raise HoliwidgetError(NO_MODEL.format("adding images"))

    def score(
        self, rgb: np.ndarray, maps: np.ndarray, target: int, progress: Progress
    ) -> list[CurveSet]:
        """Insertion and deletion curves of maps of one image."""
        raise HoliwidgetError(NO_MODEL.format("insertion and deletion"))


class ModelProvider(Provider):
    """Maps from a model: top-5 predictions, then cached :func:`holiwidget.explain` calls.

    Args:
        model: the classifier.
        images: what the explorer's ``images=`` takes (offered before the samples).
        layers, methods: those shown first (``"auto"``: the holistic stage; ``"all"``).
        device: where passes run; pass_memory: the backward's budget in megabytes.
        denoising: the parameters of the first passes.
    """

    explains = True

    def __init__(
        self,
        model: nn.Module,
        images: object,
        layers: str | Sequence[str],
        methods: str | Sequence[str],
        *,
        device: str | torch.device = "auto",
        pass_memory: float | None = None,
        denoising: Denoising = Denoising(),  # noqa: B008 (frozen)
    ) -> None:
        super().__init__()
        self.model = model
        self.device = device
        self.pass_memory = pass_memory
        self.denoising = denoising
        self.name = str(model_info(model)["model"] or type(model).__name__)
        self.methods = parse_methods(methods, model)
        self.layers = list(resolve_layers(model, layers))
        self.model_order = candidate_layers(model, self.layers)
        rest = [n for n in self.model_order if n not in self.layers]
        self.layer_options = [*self.layers, *rest]  # the holistic stage first, then the rest
        # Those that can explain the model, and any named (refused when computed).
        self.method_options = order_methods({*parse_methods("all", model), *self.methods})
        self.add([*given_sources(images), *sample_sources()])
        self._cache = PassCache()
        self._predictions: dict[str, Predictions] = {}

    def add(self, sources: Sequence[ImageSource]) -> None:
        for src in sources:
            self.sources.setdefault(src.key, src)

    def predictions(self, key: str, progress: Progress) -> Predictions:
        """The image's class probabilities (one forward pass, then kept)."""
        if key not in self._predictions:
            progress.begin("predicting the top-5 classes (one forward pass)...", 1)
            try:
                device = resolve_device(self.device)
                self._predictions[key] = predict(self.model, self.sources[key].item, device)
                progress.tick()
            finally:
                progress.end()
        return self._predictions[key]

    def class_names(self, key: str) -> list[str]:
        pred = self._predictions.get(key)
        return pred.names if pred is not None else class_names(1000)

    def target_choices(self, key: str, target: int | None, extra: Sequence[int]) -> list:
        preds = self._predictions[key]
        indices = [i for i, _, _ in preds.top(5)]
        for index in [*extra, *([] if target is None else [target])]:
            if index not in indices:
                indices.append(index)
        return [(preds.label(i), i) for i in indices]

    def load(
        self,
        key: str,
        target: int | None,
        layers: list[str],
        methods: list[str],
        progress: Progress,
    ) -> tuple[xr.Dataset, bool, list[str]]:
        preds = self.predictions(key, progress)
        target = preds.top(1)[0][0] if target is None else target
        if not 0 <= target < len(preds.names):
            raise HoliwidgetError(
                f"target {target} is outside the model's {len(preds.names)} classes "
                f"(0..{len(preds.names) - 1})"
            )
        ds = self._cache.get(key, target, layers, methods)
        if ds is not None:
            return ds, True, []
        need = order_methods(
            {*methods, *self.methods, *self._cache.methods_for(key, target, layers)}
        )
        full, caught = self._explain(key, target, layers, need, progress)
        self._cache.put(key, target, layers, full)
        return self._cache.get(key, target, layers, methods), False, caught

    def _explain(
        self, key: str, target: int, layers: list[str], methods: list[str], progress: Progress
    ) -> tuple[xr.Dataset, list[str]]:
        src = self.sources[key]
        steps = 8 if PYRAMID_METHODS & set(methods) else 1
        progress.begin(
            f"network passes for {src.label}, class {target}, {len(layers)} layer(s): "
            f"{steps} forward and backward pass(es)...",
            steps + 1,
        )
        handle = self.model.register_forward_hook(lambda *_: progress.tick())
        d = self.denoising
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = explain(
                    self.model,
                    [src.item],
                    layers=layers,
                    methods=methods,
                    target=int(target),
                    threshold=d.threshold,
                    median=d.median,
                    box=d.box,
                    device=self.device,
                    pass_memory=self.pass_memory,
                )
        finally:
            handle.remove()
            release_memory()
            progress.end()
        if src.name is not None:
            ds = ds.assign_coords(image=[src.name])
        return ds, [str(w.message) for w in caught]

    def score(
        self, rgb: np.ndarray, maps: np.ndarray, target: int, progress: Progress
    ) -> list[CurveSet]:
        count = 1 if np.ndim(maps) == 2 else len(maps)
        progress.begin(
            f"insertion and deletion of {count} map(s): 2 x 225 forward passes each...", 1
        )
        try:
            result = score_maps(self.model, rgb, maps, target, resolve_device(self.device))
            progress.tick()
        finally:
            progress.end()
        return result


class DatasetProvider(Provider):
    """Maps from a saved dataset (a path or an :class:`xarray.Dataset` from explain).

    The target of each image is the one it was explained for; the denoising starts from the
    dataset's parameters.
    """

    def __init__(self, dataset: xr.Dataset | str | os.PathLike) -> None:
        super().__init__()
        ds = dataset if isinstance(dataset, xr.Dataset) else open_dataset(Path(dataset))
        missing = [v for v in ("attribution", "input") if v not in ds.data_vars]
        if missing:
            raise HoliwidgetError(
                f"the dataset has no {' or '.join(missing)} variable; open a dataset made by "
                "explain"
            )
        self.data = ds.load()
        self.name = str(ds.attrs.get("model") or "dataset")
        self.layers = [str(v) for v in ds["layer"].values]
        self.layer_options = self.model_order = list(self.layers)
        self.methods = self.method_options = [str(v) for v in ds["cam"].values]
        for image_id in ds["image"].values:
            key = f"dataset:{image_id}"
            self.sources[key] = ImageSource(key, str(image_id), name=str(image_id))
        params = json.loads(ds.attrs.get("parameters", "{}"))
        d = Denoising()
        self.denoising = Denoising(
            params.get("threshold", d.threshold),
            params.get("median", d.median),
            params.get("box", d.box),
        )

    def target_choices(self, key: str, target: int | None, extra: Sequence[int]) -> list:
        ds = self._image(key)
        index = int(ds["target"].values[0])
        name = str(ds["target_name"].values[0]) if "target_name" in ds.coords else ""
        p = float(ds["probability"].values[0]) if "probability" in ds.coords else float("nan")
        return [(f"{index} {name} ({100 * p:.1f}%)", index)]

    def load(
        self,
        key: str,
        target: int | None,
        layers: list[str],
        methods: list[str],
        progress: Progress,
    ) -> tuple[xr.Dataset, bool, list[str]]:
        ds = self._image(key)
        if target is not None and target != int(ds["target"].values[0]):
            raise HoliwidgetError(NO_MODEL.format("another target"))
        return ds.sel(layer=layers, cam=methods).copy(deep=True), True, []

    def _image(self, key: str) -> xr.Dataset:
        ids = [str(i) for i in self.data["image"].values]
        return self.data.isel(image=[ids.index(self.sources[key].label)])
