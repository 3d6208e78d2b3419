"""``holiwidget evaluate``: every method scored at every layer on a labelled image set."""

from __future__ import annotations

import argparse
import logging

from ..dataset import dataset_format
from ..devices import resolve_device
from ..evaluation import evaluate, parse_metrics, summary_markdown, summary_paths
from ..methods import parse_methods
from ..models import load_model
from ..outputs import check_output
from .options import (
    add_denoising_options,
    add_explained_options,
    add_image_set_options,
    add_model_options,
    add_run_options,
    add_verbose,
    check_image_set,
    denoising_from,
    print_run,
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
    add_image_set_options(p)
    add_model_options(p, "mobilenet_v2")
    add_explained_options(p, "all")
    p.add_argument(
        "--metrics",
        default="all",
        help="comma-separated: insertion, deletion, overall, road, epg; or all (default)",
    )
    add_denoising_options(p)
    add_run_options(p)
    add_verbose(p, default=argparse.SUPPRESS)
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    check_output(args.output, "results", folder=dataset_format(args.output) == "zarr")
    check_image_set(args)
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
    return print_run(summary_markdown(results), results, args.output, summary_paths(args.output))
