"""``holiwidget lab``: JupyterLab on a working copy of the explorer notebook.

The explorer notebook runs from a working copy in a folder of the user's (``--workdir``,
by default ``~/holiwidget-lab``), never from the package's source file: JupyterLab's
autosave, checkpoints and the explorer's exports land there, not in a source checkout. The
copy is made once and never overwritten, so the user's edits stay.

JupyterLab runs as a child process. SIGTERM and SIGHUP sent to ``holiwidget lab`` are
passed on to it, and so is SIGINT, as SIGTERM (JupyterLab's clean stop, which shuts its
kernels down); ``holiwidget lab`` waits until it has stopped and exits with its status. A
Ctrl-C at the terminal reaches JupyterLab directly (the terminal signals the whole
foreground process group), so it is not sent again: JupyterLab asks to confirm, as it
always does.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path

from ..errors import HoliwidgetError
from ..outputs import write_bytes
from .options import add_verbose, positive_int
from .servers import notebook_env, running_as_root, supervise

__all__ = ["EXPLORER_NOTEBOOK", "WORKDIR", "add_command"]

log = logging.getLogger(__name__)


#: The explorer notebook ``holiwidget lab`` copies and ``holiwidget app`` serves (package data).
EXPLORER_NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explorer.ipynb"
#: The default working folder (``~`` is the user's home).
WORKDIR = Path("~") / "holiwidget-lab"
#: Where the working copy lies inside the working folder (as in a checkout: the same URL).
_COPY = Path("notebooks") / "explorer.ipynb"


def add_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "lab",
        help="start JupyterLab on the explorer notebook",
        description=(
            "Start JupyterLab on the interactive explorer notebook. It runs from a working "
            f"copy, WORKDIR/{_COPY.as_posix()} (WORKDIR: --workdir, default "
            f"{WORKDIR.as_posix()}), made from the package's notebooks/explorer.ipynb the "
            "first time and never overwritten afterwards (delete it to get a fresh one); "
            "JupyterLab's root is WORKDIR, so saved notebooks and the explorer's exports "
            "land there. The notebook reads the model and weights from HOLIWIDGET_MODEL and "
            "HOLIWIDGET_WEIGHTS, which --model and --weights set for its kernel. SIGTERM "
            "and SIGINT stop JupyterLab and its kernels; the command exits with "
            "JupyterLab's status."
        ),
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help=f"folder for the working copy of the explorer notebook (default {WORKDIR})",
    )
    where.add_argument(
        "--notebook",
        type=Path,
        default=None,
        help="open this notebook instead, where it is (JupyterLab's root is its folder)",
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


def _working_copy(workdir: Path) -> Path:
    """The explorer notebook's copy in ``workdir`` (made from the package's if missing)."""
    if not EXPLORER_NOTEBOOK.is_file():
        raise HoliwidgetError(
            f"notebook {EXPLORER_NOTEBOOK} not found: the installed package is incomplete; "
            "reinstall holiwidget, or pass --notebook PATH"
        )
    if workdir.exists() and not workdir.is_dir():
        raise HoliwidgetError(f"{workdir} is not a folder; choose another --workdir")
    copy = workdir / _COPY
    if copy.is_file():
        if copy.read_bytes() != EXPLORER_NOTEBOOK.read_bytes():
            log.info("using your copy %s (delete it to start from the packaged one)", copy)
        return copy
    try:
        copy.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HoliwidgetError(
            f"cannot create {copy.parent} ({exc.strerror or exc}); choose another --workdir"
        ) from None
    write_bytes(copy, EXPLORER_NOTEBOOK.read_bytes(), "notebook")
    log.info("copied the explorer notebook to %s", copy)
    return copy


def _run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("jupyterlab") is None:
        raise HoliwidgetError("JupyterLab is not installed; pip install jupyterlab")
    if args.notebook is not None:
        notebook = args.notebook.expanduser().resolve()
        root = notebook.parent
        if not notebook.is_file():
            raise HoliwidgetError(f"notebook {notebook} not found; check the --notebook path")
    else:
        root = (args.workdir or WORKDIR).expanduser().resolve()
        notebook = _working_copy(root)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        notebook.relative_to(root).as_posix(),
        f"--ServerApp.root_dir={root}",
        # the URL JupyterLab prints (and opens) is the notebook's, not the Launcher's
        f"--LabApp.default_url=/lab/tree/{notebook.relative_to(root).as_posix()}",
    ]
    if args.port is not None:
        cmd.append(f"--port={args.port}")
    if args.ip is not None:
        cmd.append(f"--ip={args.ip}")
    if args.no_browser:
        cmd.append("--no-browser")
    if running_as_root():
        cmd.append("--allow-root")  # containers and Binder-like hosts run as root
    extra = list(args.jupyter_args)
    cmd += extra[1:] if extra[:1] == ["--"] else extra
    log.info("running %s", " ".join(cmd))
    return supervise(cmd, notebook_env(args), root, "JupyterLab")
