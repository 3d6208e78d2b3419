"""``holiwidget explain``: maps of images as a dataset, and figures."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..dataset import check_dataset_output, save_dataset
from ..devices import resolve_device
from ..engine import explain
from ..figure import explain_figure, figure_format, save_figure
from ..methods import parse_methods
from ..methods.holistic import Denoising
from ..models import load_model
from ..outputs import check_output, is_marked_figure, output_lock
from .options import (
    add_denoising_options,
    add_explained_options,
    add_model_options,
    add_verbose,
    denoising_from,
    positive_int,
    target_type,
)

__all__ = ["add_command"]

log = logging.getLogger(__name__)


def add_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "explain",
        help="explain images with Holistic-CAM and baselines; write a dataset (and a figure)",
        description=(
            "Explain a classifier's decision on IMAGEs at several layers and with several "
            "CAM methods; write the maps as a netCDF (.nc) or zarr (.zarr) dataset, and "
            "optionally a figure."
        ),
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files, or embedded samples: chelsea, coffee, astronaut, rocket",
    )
    add_model_options(p, "resnet50")
    add_explained_options(p, "holistic")
    p.add_argument(
        "--target",
        type=target_type,
        default=None,
        help="class index to explain, or auto (each image's top-1 class; default)",
    )
    add_denoising_options(p)
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="images held in memory at once (default 1 on the CPU, 32 on a GPU)",
    )
    p.add_argument(
        "--output", required=True, type=Path, help="output dataset: FILE.nc or FILE.zarr"
    )
    p.add_argument(
        "--figure",
        type=Path,
        default=None,
        help="also write a figure (FILE.png, .pdf, .svg, ...); with several images one per "
        "image, named FILE-<image id>.png",
    )
    add_verbose(p, default=argparse.SUPPRESS)
    p.set_defaults(run=_run)


def _figure_paths(figure: Path, ids: list[str]) -> list[Path]:
    """One figure path per image: the path itself for one image, FILE-<id>.ext for several."""
    if len(ids) == 1:
        return [figure]
    return [figure.with_name(f"{figure.stem}-{i}{figure.suffix}") for i in ids]


def _run(args: argparse.Namespace) -> int:
    # Everything that can be checked without the network, before loading it.
    check_dataset_output(args.output)
    if args.figure is not None:
        figure_format(args.figure)
        # One image: its figure is that path, refused now unless it is a figure of ours.
        one = len(args.images) == 1
        check_output(args.figure, "figure", replaces=is_marked_figure if one else None)
    parse_methods(args.methods)  # the names; "all" is resolved once the model is known
    denoising = denoising_from(args)
    resolve_device(args.device)
    with output_lock(args.output, "dataset"):
        return _explain_and_write(args, denoising)


def _explain_and_write(args: argparse.Namespace, denoising: Denoising) -> int:
    log.info("loading %s (weights: %s)", args.model, args.weights)
    model = load_model(args.model, args.weights)
    methods = parse_methods(args.methods, model)
    log.info("explaining %d image(s) with %s", len(args.images), ", ".join(methods))
    ds = explain(
        model,
        list(args.images),
        layers=args.layers,
        methods=methods,
        target=args.target,
        **denoising.as_dict(),
        device=args.device,
        batch_size=args.batch_size,
        progress=args.verbose,
    )

    written = [save_dataset(ds, args.output)]
    ids = [str(i) for i in ds["image"].values]
    if args.figure is not None:
        # One figure at a time: memory stays bounded however many images there are.
        for i, path in enumerate(_figure_paths(args.figure, ids)):
            written.append(save_figure(explain_figure(ds, i), path))
            log.info("wrote %s", path)

    for i, image_id in enumerate(ids):
        print(
            f"{image_id}: class {int(ds['target'].values[i])} "
            f"{ds['target_name'].values[i]} (p = {float(ds['probability'].values[i]):.3f})"
        )
    for path in written:
        print(f"wrote {path}")
    return 0
