"""The options and argument types that several commands share.

The server commands (``lab``, ``app``) use only :func:`add_verbose` and :func:`positive_int`:
what needs torch (the methods, the denoising defaults) is imported where it is used.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import HoliwidgetError

if TYPE_CHECKING:
    import xarray as xr

    from ..methods.holistic import Denoising

__all__ = [
    "add_denoising_options",
    "add_explained_options",
    "add_image_set_options",
    "add_model_options",
    "add_run_options",
    "add_verbose",
    "check_image_set",
    "denoising_from",
    "positive_int",
    "print_run",
    "target_type",
    "weights_type",
]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def target_type(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or a class index (integer), got {text!r}"
        ) from None


def weights_type(text: str) -> str | None:
    return None if text.strip().lower() == "none" else text


def add_verbose(parser: argparse.ArgumentParser, default: object) -> None:
    # On the main parser and on each command, so -v works before or after the command; the
    # commands' default is SUPPRESS so that it does not overwrite a -v given before them.
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="log progress and show a progress bar",
    )


def add_model_options(parser: argparse.ArgumentParser, example: str) -> None:
    """--model and --weights (every command that runs a network)."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", required=True, help=f"torchvision model name, e.g. {example}")
    group.add_argument(
        "--weights",
        type=weights_type,
        default="DEFAULT",
        help="DEFAULT, a torchvision weights name, a state_dict file (.pth), or none (random)",
    )


def add_explained_options(parser: argparse.ArgumentParser, methods_default: str | None) -> None:
    """--layers, --methods (unless ``methods_default`` is None) and --device."""
    from ..methods import METHODS

    group = parser.add_argument_group("what is explained")
    group.add_argument(
        "--layers", default="auto", help="auto (the holistic stage) or comma-separated names"
    )
    if methods_default is not None:
        group.add_argument(
            "--methods",
            default=methods_default,
            help=f"comma-separated methods or all ({', '.join(METHODS)}); default "
            f"{methods_default}",
        )
    group.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def add_image_set_options(parser: argparse.ArgumentParser) -> None:
    """--images, --annotations, --target, --limit and --step (evaluate and sweep)."""
    parser.add_argument("--images", required=True, type=Path, help="folder of image files")
    parser.add_argument(
        "--annotations",
        required=True,
        type=Path,
        help="CSV with columns image, label[, width, height, x0, y0, x1, y1] (one row per box)",
    )
    parser.add_argument(
        "--target",
        choices=("label", "predicted"),
        default="label",
        help="explain the annotated class (default) or the model's top-1 class",
    )
    parser.add_argument("--limit", type=positive_int, default=None, help="the first N images")
    parser.add_argument(
        "--step",
        type=positive_int,
        default=224,
        help="pixels per insertion/deletion step (224, the paper's, is the default)",
    )


def check_image_set(args: argparse.Namespace) -> None:
    """The image folder and the annotation file exist (before the model is loaded)."""
    if not args.annotations.is_file():
        raise HoliwidgetError(f"annotation file {args.annotations} not found; pass --annotations")
    if not args.images.is_dir():
        raise HoliwidgetError(f"image folder {args.images} not found; pass --images DIR")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """--output, --workers | --scheduler, --threads, --seed and --no-progress (evaluate and
    sweep)."""
    parser.add_argument(
        "--output", required=True, type=Path, help="results dataset: RESULTS.zarr (or .nc)"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=positive_int, default=None, help="start a local dask cluster"
    )
    where.add_argument(
        "--scheduler", default=None, help="use a running dask cluster (tcp://HOST:PORT)"
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch CPU threads per image (default 1: serial and cluster runs agree to the "
        "bit; more speeds up a serial run)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the ROAD noise (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_denoising_options(parser: argparse.ArgumentParser) -> None:
    """--threshold, --median and --box: Holistic-CAM's denoising."""
    from ..methods.holistic import Denoising

    group = parser.add_argument_group("Holistic-CAM denoising")
    group.add_argument(
        "--threshold",
        type=float,
        default=Denoising.threshold,
        help=f"denoising threshold tau in (0, 1], default {Denoising.threshold}",
    )
    group.add_argument(
        "--median",
        type=int,
        default=Denoising.median,
        help=f"median kernel (odd), default {Denoising.median}",
    )
    group.add_argument(
        "--box", type=int, default=Denoising.box, help=f"box kernel (odd), default {Denoising.box}"
    )


def denoising_from(args: argparse.Namespace) -> Denoising:
    """The denoising options, validated (before the network is loaded)."""
    from ..methods.holistic import Denoising

    return Denoising(args.threshold, args.median, args.box)


def print_run(summary: str, results: xr.Dataset, output: Path, written: Sequence[Path]) -> int:
    """What evaluate and sweep print at the end: the summary, the images left out, the files."""
    print(summary)
    skipped = json.loads(results.attrs["skipped"])
    if skipped:
        print(f"left out: {len(skipped)} image(s), listed with the reason in attrs['skipped']")
    print(f"wrote {output}")
    for path in written:
        print(f"wrote {path}")
    return 0
