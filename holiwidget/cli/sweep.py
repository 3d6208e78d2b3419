"""``holiwidget sweep``: Holistic-CAM's sensitivity to its denoising parameters and pyramid."""

from __future__ import annotations

import argparse
import logging

from ..dataset import dataset_format
from ..devices import resolve_device
from ..methods.holistic import Denoising
from ..models import load_model
from ..outputs import check_output
from ..sweeps import (
    DESIGNS,
    EXTRAS,
    KERNELS,
    SWEEP_METRICS,
    SWEEP_METRICS_ALL,
    Grid,
    parse_scale_sets,
    parse_values,
    sweep,
    sweep_summary_markdown,
    sweep_summary_paths,
)
from ..sweeps.run import check_metrics
from .options import (
    add_explained_options,
    add_image_set_options,
    add_model_options,
    add_run_options,
    add_verbose,
    check_image_set,
    print_run,
)

__all__ = ["add_command"]

log = logging.getLogger(__name__)

_KERNELS = ",".join(map(str, KERNELS))


def add_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "sweep",
        help="Holistic-CAM's sensitivity to tau, the low-pass kernels and the pyramid",
        description=(
            "Explain every image once per pyramid, re-denoise each layer's maps for every "
            "setting of the grid, score them (Ins, Del, Over-all, EPG; ROAD on request) and "
            "write the per-image results (SWEEP.zarr), the paper's tables with paired "
            "differences from the default (SWEEP-summary.md, .csv) and heatmaps "
            "(SWEEP-heatmaps.png). "
            "Interrupt and re-run the same command to resume. LIST is a,b,c or "
            "start:stop:step (inclusive); SETS is e.g. '224;224,324,424,524;all'."
        ),
    )
    add_image_set_options(p)
    add_model_options(p, "mobilenet_v2")
    add_explained_options(p, None)
    grid = p.add_argument_group("the grid")
    grid.add_argument(
        "--threshold",
        default=str(Denoising.threshold),
        help=f"LIST of tau in (0, 1]; default {Denoising.threshold}",
    )
    grid.add_argument(
        "--median", default=_KERNELS, help=f"LIST of median kernels; default {_KERNELS}"
    )
    grid.add_argument("--box", default=_KERNELS, help=f"LIST of box kernels; default {_KERNELS}")
    grid.add_argument("--scales", default="all", help="SETS of pyramid sides; default all")
    grid.add_argument(
        "--design",
        choices=DESIGNS,
        default="full",
        help="full: every combination (default); star: the m x b plane at the reference tau "
        "and pyramid, each other tau and pyramid at the reference kernels",
    )
    grid.add_argument(
        "--extras",
        default=",".join(EXTRAS),
        help="extra settings at every pyramid: off (no denoising), ablation (Table 1's filter "
        "ablation), both (default) or none",
    )
    p.add_argument(
        "--metrics",
        default=",".join(SWEEP_METRICS),
        help=f"comma-separated, of {', '.join(SWEEP_METRICS_ALL)} (default "
        f"{','.join(SWEEP_METRICS)}: ROAD's imputation per map costs far more)",
    )
    add_run_options(p)
    add_verbose(p, default=argparse.SUPPRESS)
    p.set_defaults(run=_run)


def _grid(args: argparse.Namespace) -> Grid:
    extras = [] if args.extras.strip() == "none" else args.extras.split(",")
    return Grid(
        tuple(parse_values(args.threshold, "threshold")),
        tuple(parse_values(args.median, "median")),
        tuple(parse_values(args.box, "box")),
        tuple(parse_scale_sets(args.scales)),
        args.design,
        tuple(e.strip() for e in extras),
    )


def _run(args: argparse.Namespace) -> int:
    check_output(args.output, "results", folder=dataset_format(args.output) == "zarr")
    check_image_set(args)
    grid = _grid(args)
    metrics = check_metrics(args.metrics)
    resolve_device(args.device)

    log.info("loading %s (weights: %s)", args.model, args.weights)
    model = load_model(args.model, args.weights)
    # The job's size and estimated time are shown at the start, whatever -v says.
    planner = logging.getLogger("holiwidget.sweeps.run")
    level = planner.level
    planner.setLevel(logging.INFO)
    try:
        results = sweep(
            model,
            args.images,
            args.annotations,
            layers=args.layers,
            threshold=grid.thresholds,
            median=grid.medians,
            box=grid.boxes,
            scales=grid.scale_sets,
            design=grid.design,
            extras=grid.extras,
            metrics=metrics,
            target=args.target,
            step=args.step,
            seed=args.seed,
            limit=args.limit,
            device=args.device,
            output=args.output,
            workers=args.workers,
            scheduler=args.scheduler,
            threads=args.threads,
            progress=not args.no_progress,
        )
    finally:
        planner.setLevel(level)
    return print_run(
        sweep_summary_markdown(results), results, args.output, sweep_summary_paths(args.output)
    )
