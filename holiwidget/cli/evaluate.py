"""``holiwidget evaluate``: every method scored at every layer on a labelled image set."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..dataset import dataset_format
from ..devices import resolve_device
from ..errors import HoliwidgetError
from ..evaluation import evaluate, parse_metrics, summary_markdown, summary_paths
from ..methods import parse_methods
from ..models import load_model
from ..outputs import check_output
from .options import (
    add_denoising_options,
    add_explained_options,
    add_model_options,
    add_verbose,
    denoising_from,
    positive_int,
)

__all__ = ["add_command"]

log = logging.getLogger(__name__)


def add_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "evaluate",
        help="score CAM methods on a labelled image set (Ins, Del, Over-all, ROAD, EPG)",
        description=(
            "Explain every image with every method at every layer, score each map with "
            "Insertion, Deletion, Over-all, ROAD and the energy pointing game, and write the "
            "per-image results (RESULTS.zarr) and a summary table (RESULTS-summary.md, "
            ".csv). Interrupt and re-run the same command to resume."
        ),
    )
    p.add_argument("--images", required=True, type=Path, help="folder of image files")
    p.add_argument(
        "--annotations",
        required=True,
        type=Path,
        help="CSV with columns image, label[, width, height, x0, y0, x1, y1] (one row per box)",
    )
    add_model_options(p, "mobilenet_v2")
    add_explained_options(p, "all")
    p.add_argument(
        "--metrics",
        default="all",
        help="comma-separated: insertion, deletion, overall, road, epg; or all (default)",
    )
    p.add_argument(
        "--target",
        choices=("label", "predicted"),
        default="label",
        help="explain the annotated class (default) or the model's top-1 class",
    )
    p.add_argument("--limit", type=positive_int, default=None, help="score the first N images")
    p.add_argument(
        "--step",
        type=positive_int,
        default=224,
        help="pixels per insertion/deletion step (224, the paper's, is the default)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the ROAD noise (default 0)")
    add_denoising_options(p)
    p.add_argument(
        "--output", required=True, type=Path, help="results dataset: RESULTS.zarr (or .nc)"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=positive_int, default=None, help="start a local dask cluster"
    )
    where.add_argument(
        "--scheduler", default=None, help="use a running dask cluster (tcp://HOST:PORT)"
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch CPU threads per image (default 1: serial and cluster runs agree to the "
        "bit; more speeds up a serial run)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_verbose(p, default=argparse.SUPPRESS)
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    check_output(args.output, "results", folder=dataset_format(args.output) == "zarr")
    if not args.annotations.is_file():
        raise HoliwidgetError(f"annotation file {args.annotations} not found; pass --annotations")
    if not args.images.is_dir():
        raise HoliwidgetError(f"image folder {args.images} not found; pass --images DIR")
    parse_metrics(args.metrics)
    parse_methods(args.methods)
    denoising = denoising_from(args)
    resolve_device(args.device)

    log.info("loading %s (weights: %s)", args.model, args.weights)
    model = load_model(args.model, args.weights)
    results = evaluate(
        model,
        args.images,
        args.annotations,
        layers=args.layers,
        methods=args.methods,
        metrics=args.metrics,
        target=args.target,
        step=args.step,
        seed=args.seed,
        limit=args.limit,
        **denoising.as_dict(),
        device=args.device,
        output=args.output,
        workers=args.workers,
        scheduler=args.scheduler,
        threads=args.threads,
        progress=not args.no_progress,
    )
    print(summary_markdown(results))
    skipped = json.loads(results.attrs["skipped"])
    if skipped:
        print(f"left out: {len(skipped)} image(s), listed with the reason in attrs['skipped']")
    print(f"wrote {args.output}")
    for path in summary_paths(args.output):
        print(f"wrote {path}")
    return 0
