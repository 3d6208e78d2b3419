"""Running a sensitivity sweep: :func:`sweep`, on the runner that ``evaluate`` uses."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from ..capture import prepared
from ..checks import positive_int, seed_value
from ..dataset import dataset_format
from ..devices import resolve_device
from ..errors import HoliwidgetError
from ..evaluation.inputs import AnnotationsLike
from ..evaluation.run import (
    check_run_options,
    check_target,
    model_identity,
    run_images,
    run_inputs,
)
from ..layers import resolve_layers
from ..methods.holistic import Denoising
from ..metrics.road import impute, removal_masks
from ..outputs import check_output
from .grid import KERNELS, Grid, as_sequence
from .report import write_sweep_summary
from .results import build_sweep_results
from .scoring import (
    SWEEP_METRICS,
    SWEEP_METRICS_ALL,
    SweepProtocol,
    curve_steps,
    score_sweep_image,
    sweep_shapes,
)

__all__ = ["SweepPlan", "check_metrics", "plan_sweep", "sweep"]

log = logging.getLogger(__name__)


def check_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    """A sweep's metric names (a comma-separated string or a sequence), in canonical order."""
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names = [str(n).strip().lower() for n in names]
    unknown = [n for n in names if n not in SWEEP_METRICS_ALL]
    if unknown or not names:
        raise HoliwidgetError(
            f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(SWEEP_METRICS_ALL)}"
        )
    return tuple(m for m in SWEEP_METRICS_ALL if m in names)


@dataclass(frozen=True)
class SweepPlan:
    """The size of a sweep, worked out before it runs.

    Attributes:
        images, layers: how many.
        settings: settings per layer and image (grid cells plus extra settings).
        maps: maps scored per image (settings x layers).
        explain_passes: forward-and-backward passes per image (all scale sets' sides).
        forward_passes: insertion/deletion and ROAD forward passes per image, at most
            (maps that change the same pixels at every step are evaluated once).
        seconds: estimated time of the whole sweep (from one timed batch of the model and,
            with ROAD, timed imputation solves).
    """

    images: int
    layers: int
    settings: int
    maps: int
    explain_passes: int
    forward_passes: int
    seconds: float

    def describe(self) -> str:
        """One line for the start of a run."""
        minutes = self.seconds / 60
        return (
            f"sweep: {self.settings} settings x {self.layers} layers x {self.images} images "
            f"= {self.maps * self.images} maps; per image {self.explain_passes} explain "
            f"passes and up to {self.forward_passes} forward passes; estimated "
            f"{minutes:.0f} min" + (" (less where maps coincide)" if minutes >= 1 else "")
        )


def plan_sweep(
    model: nn.Module,
    protocol: SweepProtocol,
    images: int,
    *,
    device: str | torch.device = "auto",
    parallel: int = 1,
) -> SweepPlan:
    """How big a sweep is, with a time estimate from one timed batch of forward passes.

    An explain pass (forward and backward) at side ``s`` is counted as three forward passes
    at 224 scaled by ``(s / 224)^2``. With ROAD, each imputed image also costs one timed
    imputation solve (on the CPU, where ROAD solves).
    """
    grid = protocol.grid
    per_layer = len(grid.cells()) + len(grid.scale_sets) * len(grid.extra_settings())
    maps = per_layer * len(protocol.layers)
    sides = [s for sset in grid.scale_sets for s in sset]
    curves = 2 if {"insertion", "deletion", "overall"} & set(protocol.metrics) else 0
    forward = maps * curves * curve_steps(protocol)
    imputed = 0
    if "road" in protocol.metrics:  # both orders at every percentage, per map
        imputed = maps * 2 * len(protocol.percentiles)
        forward += imputed + per_layer  # and the unperturbed image once per setting
    size = protocol.input_size
    batch = 8
    dev = resolve_device(device)
    x = torch.zeros(batch, 3, size, size, device=dev)
    with prepared(model, dev), torch.no_grad():
        model(x)
        t0 = time.perf_counter()
        model(x)
        each = (time.perf_counter() - t0) / batch
    explain_cost = sum(3 * (s / sides[0]) ** 2 for s in sides) if sides else 0
    solves = imputed * _solve_seconds(size) if imputed else 0.0
    seconds = images * (each * (forward + explain_cost) + solves) / max(1, parallel)
    return SweepPlan(images, len(protocol.layers), per_layer, maps, len(sides), forward, seconds)


def _solve_seconds(size: int) -> float:
    """Seconds per ROAD imputation solve at ``size`` x ``size``: the mean of the four masks
    of a random map at 10 % and 90 % (both orders), after one untimed solve that plans the
    size's dissection."""
    cam = np.random.default_rng(0).random((size, size), dtype=np.float32)
    masks = np.concatenate(removal_masks(cam, (10, 90)))
    image = torch.zeros(3, size, size)
    impute(image, masks[:1], noise=0.0)
    t0 = time.perf_counter()
    impute(image, masks, noise=0.0)
    return (time.perf_counter() - t0) / len(masks)


def sweep(
    model: nn.Module,
    images: str | os.PathLike | Sequence[str | os.PathLike],
    annotations: AnnotationsLike = None,
    *,
    layers: str | Sequence[str] = "auto",
    threshold: float | Sequence[float] = (Denoising.threshold,),
    median: int | Sequence[int] = KERNELS,
    box: int | Sequence[int] = KERNELS,
    scales: Sequence[Sequence[int]] | None = None,
    design: str = "full",
    extras: Sequence[str] = ("off", "ablation"),
    metrics: str | Sequence[str] = SWEEP_METRICS,
    target: str | None = None,
    step: int = 224,
    seed: int = 0,
    limit: int | None = None,
    device: str | torch.device = "auto",
    output: str | os.PathLike | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    threads: int = 1,
    progress: bool = False,
) -> xr.Dataset:
    """Score Holistic-CAM over a grid of denoising parameters and input pyramids.

    Per image, one :func:`holiwidget.explain` per scale set gives each layer's PHA and M_f;
    every setting is then re-denoised from them (``H = PHA * LPW(M_f; tau, m, b)``) and all
    maps of the image are scored together (insertion and deletion as one batched stream;
    EPG without a forward pass). The run machinery is :func:`holiwidget.evaluate`'s: a
    progress bar with the time left, resuming after an interruption, a changed protocol
    refused, local or remote dask clusters, the same numbers whichever way it runs.

    Args:
        model: the classifier (e.g. from :func:`holiwidget.load_model`).
        images: a folder of images, or a list of image files.
        annotations: the annotation CSV (labels and boxes), its parsed dict, or None (then
            the top-1 class is explained and EPG is not available).
        layers: ``"auto"`` (the holistic stage), names, or a comma-separated string.
        threshold, median, box: the lists of tau, median kernels m and box kernels b (a
            kernel of 1 is no filter); single values are one-element lists.
        scales: pyramids, each a list of sides with the fundamental scale first (None or
            ``"all"`` in the list: the paper's eight); None is that pyramid only.
        design: ``"full"`` (every combination) or ``"star"`` (the m x b plane at the
            reference tau and pyramid, and each other tau and pyramid at the reference
            kernels; see :mod:`holiwidget.sweeps.grid`).
        extras: extra settings at every pyramid: ``"off"`` (no denoising) and
            ``"ablation"`` (the filter ablation of the paper's Table 1). The default setting
            (0.5 / 51 / 91) is always scored: paired differences are taken from it.
        metrics: any of insertion, deletion, overall, road, epg (default all but ROAD,
            whose imputation per map costs far more than the rest).
        target: ``"label"`` or ``"predicted"``; None (default) is ``"label"`` with
            annotations and ``"predicted"`` without, as in :func:`holiwidget.evaluate`.
        step: pixels changed per insertion/deletion step.
        seed: seed of the ROAD noise (each image's noise also depends on its name; every
            setting of an image meets the same noise).
        limit: score only the first ``limit`` images (finished images stay in ``output``).
        device: ``"auto"`` or a device.
        output: where to keep the results (``*.zarr`` or ``*.nc``); with it a re-run
            resumes and the summary (markdown, CSV, PNG heatmaps) is written beside it.
        workers: run on a new dask.distributed LocalCluster with this many workers.
        scheduler: run on an existing dask.distributed cluster (its scheduler address).
        threads: torch CPU threads per image (1: serial and cluster runs agree to the bit).
        progress: show a progress bar with the time left, and above it the grid and the
            job's size (settings x layers x images, passes, estimated time), which are
            otherwise logged at INFO.

    Returns:
        The results (see :mod:`holiwidget.sweeps.results`): ``score`` (image, layer, scales,
        threshold, median, box, metric), ``extra_score`` (image, layer, scales, setting,
        metric), per-image coordinates as in evaluate, the protocol in ``attrs``.
    """
    grid = Grid(
        tuple(as_sequence(threshold, "threshold")),
        tuple(as_sequence(median, "median")),
        tuple(as_sequence(box, "box")),
        (None,) if scales is None else scales,
        design,
        tuple(extras),
    )
    chosen_metrics = check_metrics(metrics)
    target = check_target(target, annotations, "epg" in chosen_metrics)
    step = positive_int(step, "step")
    seed = seed_value(seed)
    workers, threads = check_run_options(workers, scheduler, threads)
    resolve_device(device)
    if output is not None:
        check_output(output, "results", folder=dataset_format(output) == "zarr")

    inputs = run_inputs(images, annotations, limit)
    layer_names = list(resolve_layers(model, layers))
    protocol = SweepProtocol(
        **model_identity(model),
        layers=tuple(layer_names),
        metrics=chosen_metrics,
        target=target,
        step=step,
        thresholds=grid.thresholds,
        medians=grid.medians,
        boxes=grid.boxes,
        scale_sets=grid.scale_sets,
        design=grid.design,
        extras=grid.extras,
        seed=seed,
    )
    plan = plan_sweep(model, protocol, len(inputs.items), device=device, parallel=workers or 1)
    for line in (grid.describe(), plan.describe()):
        log.info("%s", line)
        if progress and not log.isEnabledFor(logging.INFO):  # else the log shows it
            tqdm.write(line, file=sys.stderr)  # above the progress bar, once

    def build(records: list, skipped: dict[str, str]) -> xr.Dataset:
        return build_sweep_results(records, protocol, skipped, inputs.problems)

    return run_images(
        model,
        inputs.items,
        protocol,
        score_sweep_image,
        build,
        shapes=sweep_shapes(protocol),
        output=output,
        summarise=write_sweep_summary,
        device=device,
        threads=threads,
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        desc="sweep",
    )
