"""Running an evaluation: serially, or spread over a dask.distributed cluster.

:func:`run_images` is the one runner, of :func:`evaluate` and of :func:`holiwidget.sweep`.
Each image is one task (for evaluate, :func:`holiwidget.evaluation.scoring.score_image`); results come
back to the calling process, which keeps each one on disk as it arrives (see
:mod:`holiwidget.evaluation.store`). On a cluster the model is sent to every worker once.
The numbers do not depend on how the run is spread: every image's ROAD noise has its own
seed, and nothing else is random.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from ..checks import positive_int, seed_value
from ..dataset import dataset_format
from ..devices import resolve_device
from ..errors import HoliwidgetError
from ..layers import resolve_layers
from ..methods import parse_methods
from ..methods.holistic import Denoising
from ..models import model_info
from ..outputs import check_output, output_lock
from .inputs import AnnotationsLike, EvaluationInputs, EvaluationItem, collect_inputs
from .scoring import METRICS, TARGETS, ImageRecord, Protocol, model_fingerprint, score_image
from .store import ResultStore, build_results, result_shapes
from .summary import write_summary

__all__ = [
    "Scorer",
    "check_run_options",
    "check_target",
    "evaluate",
    "model_identity",
    "parse_metrics",
    "run_images",
    "run_inputs",
]

log = logging.getLogger(__name__)


def parse_metrics(metrics: str | Sequence[str]) -> list[str]:
    """Metric names from ``"all"``, a comma-separated string or a sequence, in canonical order."""
    if isinstance(metrics, str):
        names = list(METRICS) if metrics.strip() == "all" else metrics.split(",")
    else:
        names = list(metrics)
    names = [str(n).strip().lower() for n in names]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise HoliwidgetError(
            f"unknown metric(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(METRICS)} or all"
        )
    return [m for m in METRICS if m in names]


def evaluate(
    model: nn.Module,
    images: str | os.PathLike | Sequence[str | os.PathLike],
    annotations: AnnotationsLike = None,
    *,
    layers: str | Sequence[str] = "auto",
    methods: str | Sequence[str] = "all",
    metrics: str | Sequence[str] = METRICS,
    target: str | None = None,
    step: int = 224,
    seed: int = 0,
    limit: int | None = None,
    threshold: float = Denoising.threshold,
    median: int = Denoising.median,
    box: int = Denoising.box,
    device: str | torch.device = "auto",
    output: str | os.PathLike | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    threads: int = 1,
    progress: bool = False,
) -> xr.Dataset:
    """Score CAM methods on a set of images: Insertion, Deletion, Over-all, ROAD and EPG.

    Every image is explained with every method at every layer (:func:`holiwidget.explain`);
    each map is then scored. Per image and map::

        insertion, deletion = AUC of p_c over the changed fraction (RISE; ``step`` pixels
                              per step, blurred / zero substrate)
        overall             = insertion - deletion
        road                = (mean_p LeRF_p - mean_p MoRF_p) / 2, p = 10..90 %
        epg                 = sum(L * boxes) / sum(L)

    Args:
        model: the classifier (e.g. from :func:`holiwidget.load_model`).
        images: a folder of images, or a list of image files.
        annotations: a CSV with columns image, label[, width, height, x0, y0, x1, y1] (the
            layout of the shared ImageNet subset), its parsed dict, or None: then every image
            explains its top-1 class and EPG is not available.
        layers: ``"auto"`` (the holistic stage), names, or a comma-separated string.
        methods: methods to compare, or ``"all"``.
        metrics: any of insertion, deletion, overall, road, epg, or ``"all"``.
        target: ``"label"`` (the annotated class; the default with annotations) or
            ``"predicted"`` (the top-1 class; the default and only choice without).
        step: pixels changed per insertion/deletion step (224 at 224 x 224 is the paper's).
        seed: seed of the ROAD noise (each image's noise also depends on its name).
        limit: score only the first ``limit`` images. Images that ``output`` already holds
            stay in it, whether this run includes them or not: a re-run with a smaller
            ``limit`` or fewer files keeps the union (and says so in a warning).
        threshold, median, box: Holistic-CAM's denoising parameters.
        device: ``"auto"`` (CUDA, MPS, CPU) or a device.
        output: where to keep the results (``*.zarr`` or ``*.nc``); with it, finished images
            are kept as they finish, a re-run resumes (trying the images left out again),
            and the summary is written beside it (``*-summary.md``, ``*-summary.csv``).
            Finished results are never dropped; damaged per-image files are scored again.
        workers: run on a new dask.distributed LocalCluster with this many workers.
        scheduler: run on an existing dask.distributed cluster (its scheduler address).
        threads: torch CPU threads per image, in this process or on each worker. CPU
            numbers depend on it at float rounding, so the default (1) makes serial and
            cluster runs agree to the bit; more threads speed up a serial run. Recorded in
            ``attrs["threads"]``.
        progress: show a progress bar with the time left.

    Returns:
        ``score`` (image, cam, layer, metric); ``insertion_curve`` and ``deletion_curve``
        (image, cam, layer, step) over the coordinate ``fraction``; ``road_morf`` and
        ``road_lerf`` (image, cam, layer, percentile); per-image coordinates label, target,
        prediction, correct, probability, boxes, centre_prior_epg; in ``attrs`` the protocol,
        the images left out and why (``skipped``), the mismatches between files and
        annotations (``input_problems``) and the versions.
    """
    chosen_metrics = parse_metrics(metrics)
    chosen_methods = parse_methods(methods, model)
    target = check_target(target, annotations, "epg" in chosen_metrics)
    step = positive_int(step, "step")
    seed = seed_value(seed)
    denoising = Denoising(threshold, median, box)
    workers, threads = check_run_options(workers, scheduler, threads)
    resolve_device(device)
    if output is not None:
        check_output(output, "results", folder=dataset_format(output) == "zarr")

    inputs = run_inputs(images, annotations, limit)
    layer_names = list(resolve_layers(model, layers))
    protocol = Protocol(
        **model_identity(model),
        layers=tuple(layer_names),
        methods=tuple(chosen_methods),
        metrics=tuple(chosen_metrics),
        target=target,
        step=step,
        seed=seed,
        **denoising.as_dict(),
    )

    def build(records: list[ImageRecord], skipped: dict[str, str]) -> xr.Dataset:
        return build_results(records, protocol, skipped, inputs.problems)

    return run_images(
        model,
        inputs.items,
        protocol,
        score_image,
        build,
        shapes=result_shapes(protocol),
        output=output,
        summarise=write_summary,
        device=device,
        threads=threads,
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        desc="evaluate",
    )


def check_target(target: str | None, annotations: AnnotationsLike, boxes: bool) -> str:
    """The target of a run (``"label"`` with annotations, else ``"predicted"``), checked
    against what the annotations give; ``boxes``: whether a metric needs them (EPG)."""
    target = target or ("label" if annotations is not None else "predicted")
    if target not in TARGETS:
        raise HoliwidgetError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if annotations is None and (target == "label" or boxes):
        raise HoliwidgetError(
            "labels and boxes come from annotations; pass annotations=CSV, or use "
            "target='predicted' and leave out the epg metric"
        )
    return target


def run_inputs(
    images: str | os.PathLike | Sequence[str | os.PathLike],
    annotations: AnnotationsLike,
    limit: int | None,
) -> EvaluationInputs:
    """The images of a run matched to their annotations; each mismatch logged once."""
    inputs = collect_inputs(images, annotations, limit)
    for problem in inputs.problems:
        log.warning("%s", problem)
    return inputs


def model_identity(model: nn.Module) -> dict[str, str]:
    """The model's name, weights and fingerprint, as every protocol records them."""
    info = model_info(model)
    return {
        "model": str(info["model"]),
        "weights": str(info["weights"]),
        "fingerprint": model_fingerprint(model),
    }


def check_run_options(
    workers: int | None, scheduler: str | None, threads: int | None
) -> tuple[int | None, int | None]:
    """The cluster and thread options of a run, checked: (workers, threads)."""
    if workers is not None and scheduler is not None:
        raise HoliwidgetError("give workers or scheduler, not both")
    if workers is not None:
        workers = positive_int(workers, "workers")
    if threads is not None:
        threads = positive_int(threads, "threads")
    return workers, threads


#: Scores one image: (model, item, protocol, device, threads) -> its record. A module-level
#: function, so that it travels to dask workers by name.
Scorer = Callable[[nn.Module, EvaluationItem, Any, "str | torch.device", "int | None"], ImageRecord]


def run_images(
    model: nn.Module,
    items: list[EvaluationItem],
    protocol: Any,
    scorer: Scorer,
    build: Callable[[list[ImageRecord], dict[str, str]], xr.Dataset],
    *,
    shapes: dict[str, tuple[int, ...]],
    output: str | os.PathLike | None,
    summarise: Callable[[xr.Dataset, str | os.PathLike], object] | None,
    device: str | torch.device,
    threads: int | None,
    workers: int | None,
    scheduler: str | None,
    progress: bool,
    desc: str,
) -> xr.Dataset:
    """Score every image once, keeping each as it finishes; the results dataset.

    The one runner of :func:`evaluate` and :func:`holiwidget.sweep`: with ``output`` it
    holds the output's lock, resumes from the finished images (trying skipped ones again),
    never drops finished images that this run does not include, and on an interruption
    says how to resume. Images run here one after the other, or on a dask.distributed
    cluster (``workers`` or ``scheduler``); the numbers are the same either way.

    Args:
        model: the classifier.
        items: the images, in the results' order.
        protocol: what to compute (a frozen dataclass with ``to_json``); resuming compares it.
        scorer: scores one image (see :data:`Scorer`).
        build: the results dataset from the finished records and the skipped images.
        shapes: each per-image variable's shape (how stored records are checked).
        output: where to keep the results, or None.
        summarise: writes the summary beside ``output`` (called after it is written).
        device, threads, workers, scheduler: where and how to run.
        progress: show a progress bar with the time left.
        desc: the progress bar's label.
    """
    with contextlib.ExitStack() as held:
        if output is not None:
            held.enter_context(output_lock(output, "results"))
        store = ResultStore(output, protocol, shapes) if output is not None else None
        done = store.load() if store is not None else {}
        wanted = {item.image for item in items}
        # Images left out earlier are tried again (the file may have been fixed since).
        done = {k: v for k, v in done.items() if v.error is None or k not in wanted}
        todo = [item for item in items if item.image not in done]
        resumed = len(items) - len(todo)
        if resumed:
            log.info("resuming: %d of %d images already scored", resumed, len(items))
        # Never drop finished results: images of the output that this run does not include
        # (a smaller --limit, fewer files) stay in it.
        kept = [k for k in done if k not in wanted]
        if kept:
            log.warning(
                "%s holds %d image(s) this run does not include (%s); they are kept, so the "
                "results cover %d images (choose another --output for these images alone)",
                output,
                len(kept),
                ", ".join(kept[:3]) + (", ..." if len(kept) > 3 else ""),
                len(items) + len(kept),
            )

        bar = tqdm(total=len(items), initial=resumed, desc=desc, unit="image", disable=not progress)

        def keep(record: ImageRecord) -> None:
            if store is not None:
                store.add(record)
            done[record.image] = record
            for note in record.notes:
                log.info("%s", note)
            if record.error is not None:
                log.warning("%s left out: %s", record.image, record.error)
            bar.update()

        try:
            if todo:
                _score_all(
                    model,
                    todo,
                    protocol,
                    scorer,
                    device,
                    keep,
                    threads=threads,
                    workers=workers,
                    scheduler=scheduler,
                )
        except KeyboardInterrupt:
            if store is not None:
                log.warning(
                    "interrupted: %d of %d images kept in %s; run the same command again to resume",
                    len(done) - len(kept),
                    len(items),
                    store.partial,
                )
            raise
        finally:
            bar.close()

        ordered = [done[item.image] for item in items] + [done[k] for k in kept]
        skipped = {r.image: r.error for r in ordered if r.error is not None}
        results = build([r for r in ordered if r.error is None], skipped)
        results.attrs["threads"] = threads
        if store is not None:
            store.finish(results)
            if summarise is not None:
                summarise(results, output)
        return results


@contextlib.contextmanager
def _client(workers: int | None, scheduler: str | None) -> Iterator[object]:
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - a dependency of holiwidget
        raise HoliwidgetError(
            "dask.distributed is not installed; pip install distributed"
        ) from None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise HoliwidgetError(
                f"cannot reach the dask scheduler at {scheduler} ({type(exc).__name__}); "
                "check the address (tcp://HOST:PORT) and that the scheduler runs"
            ) from None
        with client:
            yield client
        return
    # Dask's workers trim the heap eagerly (MALLOC_TRIM_THRESHOLD_); with torch's large,
    # short-lived tensors that makes them up to twice as slow: spawn them without it.
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


#: Models unpickled in this (worker) process, by fingerprint.
_WORKER_MODELS: dict[str, nn.Module] = {}


def _score_on_worker(
    blob: bytes,
    fingerprint: str,
    scorer: Scorer,
    item: EvaluationItem,
    protocol: Any,
    device: str | torch.device,
    threads: int | None,
) -> ImageRecord:
    model = _WORKER_MODELS.get(fingerprint)
    if model is None:
        _WORKER_MODELS.clear()
        model = _WORKER_MODELS[fingerprint] = pickle.loads(blob)
    return scorer(model, item, protocol, device, threads)


def _score_all(
    model: nn.Module,
    todo: list[EvaluationItem],
    protocol: Any,
    scorer: Scorer,
    device: str | torch.device,
    keep: Callable[[ImageRecord], None],
    *,
    threads: int | None,
    workers: int | None,
    scheduler: str | None,
) -> None:
    """Score the images here, one after the other, or on a cluster; ``keep`` each record."""
    if workers is None and scheduler is None:
        for item in todo:
            keep(scorer(model, item, protocol, device, threads))
        return
    from distributed import as_completed

    with _client(workers, scheduler) as client:
        # The model travels pickled (dask's own tensor serialisation drops the module's
        # hook dictionaries), once per worker, and is unpickled once per worker process.
        blob = client.scatter(pickle.dumps(model), broadcast=True)
        futures = [
            client.submit(
                _score_on_worker,
                *(blob, protocol.fingerprint, scorer, item, protocol, device, threads),
                pure=False,
            )
            for item in todo
        ]
        try:
            for future in as_completed(futures):
                keep(future.result())
        finally:
            client.cancel(futures)
