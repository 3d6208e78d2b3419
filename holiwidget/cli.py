"""The ``holiwidget`` command line.

::

    holiwidget explain IMAGE... --model NAME --output FILE.nc [--figure FILE.png] [...]
    holiwidget evaluate --images DIR --annotations CSV --model NAME --output RESULTS.zarr [...]
    holiwidget lab [--model NAME] [--weights W] [--port N] [--no-browser] [-- JUPYTER_ARGS]

Bad input is reported as one line ``holiwidget: error: <message>`` on stderr with exit
status 2, never as a traceback. Outputs are written whole or not at all. Subcommands are
registered in :data:`_COMMANDS`; each adds its parser and names the function that runs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from .dataset import dataset_format, save_dataset
from .devices import resolve_device
from .engine import explain, parse_methods
from .errors import HoliwidgetError
from .figure import explain_figure, figure_format, save_figure
from .methods import METHODS
from .methods.holistic import Denoising
from .models import load_model
from .outputs import check_output

__all__ = ["main"]

log = logging.getLogger(__name__)

PROG = "holiwidget"
#: Exit status for bad input (argparse's convention).
EXIT_USAGE = 2
#: Exit status after Ctrl-C.
EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    """An argparse error, raised instead of argparse's print-and-exit."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises on errors, so :func:`main` reports them in one line."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"


# ---------------------------------------------------------------------------------------
# argument types


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _target(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or a class index (integer), got {text!r}"
        ) from None


def _weights(text: str) -> str | None:
    return None if text.strip().lower() == "none" else text


def _add_verbose(parser: argparse.ArgumentParser, default: object) -> None:
    # On the main parser and on each command, so -v works before or after the command; the
    # commands' default is SUPPRESS so that it does not overwrite a -v given before them.
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="log progress and show a progress bar",
    )


def _add_model_options(parser: argparse.ArgumentParser, example: str) -> None:
    """--model and --weights (every command that runs a network)."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", required=True, help=f"torchvision model name, e.g. {example}")
    group.add_argument(
        "--weights",
        type=_weights,
        default="DEFAULT",
        help="DEFAULT, a torchvision weights name, a state_dict file (.pth), or none (random)",
    )


def _add_explained_options(parser: argparse.ArgumentParser, methods_default: str) -> None:
    """--layers, --methods and --device."""
    group = parser.add_argument_group("what is explained")
    group.add_argument(
        "--layers", default="auto", help="auto (the holistic stage) or comma-separated names"
    )
    group.add_argument(
        "--methods",
        default=methods_default,
        help=f"comma-separated methods or all ({', '.join(METHODS)}); default {methods_default}",
    )
    group.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def _add_denoising_options(parser: argparse.ArgumentParser) -> None:
    """--threshold, --median and --box: Holistic-CAM's denoising."""
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


def _denoising(args: argparse.Namespace) -> Denoising:
    """The denoising options, validated (before the network is loaded)."""
    return Denoising(args.threshold, args.median, args.box)


# ---------------------------------------------------------------------------------------
# explain


def _add_explain(commands: argparse._SubParsersAction) -> None:
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
    _add_model_options(p, "resnet50")
    _add_explained_options(p, "holistic")
    p.add_argument(
        "--target",
        type=_target,
        default=None,
        help="class index to explain, or auto (each image's top-1 class; default)",
    )
    _add_denoising_options(p)
    p.add_argument(
        "--batch-size",
        type=_positive_int,
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
    _add_verbose(p, default=argparse.SUPPRESS)
    p.set_defaults(run=_run_explain)


def _check_dataset_path(path: Path) -> None:
    check_output(path, folder=dataset_format(path) == "zarr")


def _figure_paths(figure: Path, ids: list[str]) -> list[Path]:
    """One figure path per image: the path itself for one image, FILE-<id>.ext for several."""
    if len(ids) == 1:
        return [figure]
    return [figure.with_name(f"{figure.stem}-{i}{figure.suffix}") for i in ids]


def _run_explain(args: argparse.Namespace) -> int:
    # Everything that can be checked without the network, before loading it.
    _check_dataset_path(args.output)
    if args.figure is not None:
        figure_format(args.figure)
        check_output(args.figure, "figure")
    methods = parse_methods(args.methods)
    denoising = _denoising(args)
    resolve_device(args.device)

    log.info("loading %s (weights: %s)", args.model, args.weights)
    model = load_model(args.model, args.weights)
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

    try:
        written = [save_dataset(ds, args.output)]
    except OSError as exc:
        raise HoliwidgetError(f"cannot write {args.output} ({exc.strerror or exc})") from None
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


# ---------------------------------------------------------------------------------------
# evaluate


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
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
    _add_model_options(p, "mobilenet_v2")
    _add_explained_options(p, "all")
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
    p.add_argument("--limit", type=_positive_int, default=None, help="score the first N images")
    p.add_argument(
        "--step",
        type=_positive_int,
        default=224,
        help="pixels per insertion/deletion step (224, the paper's, is the default)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the ROAD noise (default 0)")
    _add_denoising_options(p)
    p.add_argument(
        "--output", required=True, type=Path, help="results dataset: RESULTS.zarr (or .nc)"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=_positive_int, default=None, help="start a local dask cluster"
    )
    where.add_argument(
        "--scheduler", default=None, help="use a running dask cluster (tcp://HOST:PORT)"
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="torch CPU threads per image (default 1: serial and cluster runs agree to the "
        "bit; more speeds up a serial run)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_verbose(p, default=argparse.SUPPRESS)
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, parse_metrics, summary_markdown, summary_paths

    _check_dataset_path(args.output)
    if not args.annotations.is_file():
        raise HoliwidgetError(f"annotation file {args.annotations} not found; pass --annotations")
    if not args.images.is_dir():
        raise HoliwidgetError(f"image folder {args.images} not found; pass --images DIR")
    parse_metrics(args.metrics)
    parse_methods(args.methods)
    denoising = _denoising(args)
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


# ---------------------------------------------------------------------------------------
# lab

#: The explorer notebook ``holiwidget lab`` opens (in a source checkout).
EXPLORER_NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explorer.ipynb"


def _add_lab(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "lab",
        help="start JupyterLab on the explorer notebook",
        description=(
            "Start JupyterLab on notebooks/explorer.ipynb, the interactive explorer. The "
            "notebook reads the model and weights from HOLIWIDGET_MODEL and HOLIWIDGET_WEIGHTS, "
            "which --model and --weights set for its kernel."
        ),
    )
    p.add_argument(
        "--notebook",
        type=Path,
        default=None,
        help="open this notebook instead (JupyterLab's root is its folder)",
    )
    p.add_argument("--model", default=None, help="torchvision model name for the notebook")
    p.add_argument(
        "--weights", default=None, help="DEFAULT, a torchvision weights name or a state_dict file"
    )
    p.add_argument("--port", type=_positive_int, default=None, help="server port")
    p.add_argument("--ip", default=None, help="server address (JupyterLab's default: localhost)")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    _add_verbose(p, default=argparse.SUPPRESS)
    p.add_argument(
        "jupyter_args",
        nargs=argparse.REMAINDER,
        metavar="-- JUPYTER_ARGS",
        help="after --, options passed to JupyterLab as they are (e.g. --IdentityProvider.token=T)",
    )
    p.set_defaults(run=_run_lab)


def _run_lab(args: argparse.Namespace) -> int:
    if args.notebook is None:
        notebook, root = EXPLORER_NOTEBOOK, EXPLORER_NOTEBOOK.parents[1]
    else:
        notebook = args.notebook.resolve()
        root = notebook.parent
    if not notebook.is_file():
        raise HoliwidgetError(
            f"notebook {notebook} not found; run from a source checkout of holiwidget or pass "
            "--notebook PATH"
        )
    env = dict(os.environ)
    if args.model is not None:
        env["HOLIWIDGET_MODEL"] = args.model
    if args.weights is not None:
        weights = Path(args.weights).expanduser()
        env["HOLIWIDGET_WEIGHTS"] = str(weights.resolve()) if weights.exists() else args.weights
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        notebook.relative_to(root).as_posix(),
        f"--ServerApp.root_dir={root}",
    ]
    if args.port is not None:
        cmd.append(f"--port={args.port}")
    if args.ip is not None:
        cmd.append(f"--ip={args.ip}")
    if args.no_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and Binder-like hosts run as root
    extra = list(args.jupyter_args)
    cmd += extra[1:] if extra[:1] == ["--"] else extra
    log.info("running %s", " ".join(cmd))
    return subprocess.call(cmd, env=env)


# ---------------------------------------------------------------------------------------
# the parser and main

#: Subcommands: each adds its parser (with ``run`` set) to the subparsers action.
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_explain,
    _add_evaluate,
    _add_lab,
]


def build_parser() -> argparse.ArgumentParser:
    """The ``holiwidget`` argument parser, with one subparser per command."""
    parser = _Parser(
        prog=PROG,
        description="Holistic-CAM class-activation maps at every depth of a CNN.",
    )
    _add_verbose(parser, default=False)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    for add in _COMMANDS:
        add(commands)
    return parser


def _run(args: argparse.Namespace) -> int:
    """Run a command; Python warnings become one-line log messages instead of source dumps."""
    with warnings.catch_warnings(record=True) as caught:
        try:
            return args.run(args)
        finally:
            for w in caught:
                log.warning("%s", w.message)


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for bad input (reported in one line on stderr),
        130 after Ctrl-C.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0

    logger = logging.getLogger("holiwidget")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if args.verbose else logging.WARNING)
    logger.propagate = False
    try:
        return _run(args)
    except HoliwidgetError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
