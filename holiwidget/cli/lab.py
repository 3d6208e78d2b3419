"""``holiwidget lab``: JupyterLab on the explorer notebook."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from ..errors import HoliwidgetError
from .options import add_verbose, positive_int

__all__ = ["EXPLORER_NOTEBOOK", "add_command"]

log = logging.getLogger(__name__)


#: The explorer notebook ``holiwidget lab`` opens (in a source checkout).
EXPLORER_NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explorer.ipynb"


def add_command(commands: argparse._SubParsersAction) -> None:
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
    p.add_argument("--port", type=positive_int, default=None, help="server port")
    p.add_argument("--ip", default=None, help="server address (JupyterLab's default: localhost)")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    add_verbose(p, default=argparse.SUPPRESS)
    p.add_argument(
        "jupyter_args",
        nargs=argparse.REMAINDER,
        metavar="-- JUPYTER_ARGS",
        help="after --, options passed to JupyterLab as they are (e.g. --IdentityProvider.token=T)",
    )
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
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
