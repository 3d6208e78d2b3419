"""``holiwidget app``: the explorer as a standalone web app (Voila on the explorer notebook).

Voila runs the packaged explorer notebook with its code cells hidden. The explorer is shown
as soon as the kernel has started and computes its first maps afterwards, with its own
status line and progress bar. The app reads and writes only inside its data folder
(``--data``, default ``~/holiwidget-app``): the folder field and the exports refuse paths
outside it, and exports reach the visitor as browser downloads. SIGINT and SIGTERM stop Voila
and its kernels; the command waits for them and exits with Voila's status.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import socket
import sys
from pathlib import Path

from ..errors import HoliwidgetError
from .lab import EXPLORER_NOTEBOOK
from .options import add_verbose, positive_int
from .servers import notebook_env, supervise

__all__ = ["APP_PASS_MEMORY", "DATA", "add_command"]

log = logging.getLogger(__name__)

#: The default data folder (``~`` is the user's home).
DATA = Path("~") / "holiwidget-app"
#: Megabytes a network pass of the app may keep for its backward (more: kept on disk).
APP_PASS_MEMORY = 64


def add_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "app",
        help="the explorer as a standalone web app (Voila)",
        description=(
            "Serve the interactive explorer as a web app (Voila on the packaged explorer "
            "notebook, code hidden) and print the URL that opens it. The explorer shows at "
            "once and computes its first maps afterwards. It reads and writes only inside "
            f"the data folder (--data, default {DATA.as_posix()}); exports reach the visitor "
            "as browser downloads. SIGINT and SIGTERM stop the server and its kernels."
        ),
    )
    p.add_argument("--model", default=None, help="torchvision model name (default mobilenet_v2)")
    p.add_argument(
        "--weights",
        default=None,
        help="DEFAULT (downloads, needs internet), a torchvision weights name or a state_dict "
        "file; default HOLIWIDGET_WEIGHTS, else DEFAULT",
    )
    p.add_argument("--image", default=None, help="the first image: a sample name or an image file")
    p.add_argument("--data", type=Path, default=None, help=f"the data folder (default {DATA})")
    p.add_argument(
        "--pass-memory",
        type=positive_int,
        default=APP_PASS_MEMORY,
        help="megabytes a network pass may keep for its backward; larger passes keep it on "
        "disk, and the heap is kept from growing by fragmentation (same maps to float "
        f"rounding, less memory, slower); default {APP_PASS_MEMORY}",
    )
    p.add_argument(
        "--port", type=positive_int, default=None, help="server port (default: a free one)"
    )
    p.add_argument("--ip", default="127.0.0.1", help="server address (default 127.0.0.1)")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    add_verbose(p, default=argparse.SUPPRESS)
    p.set_defaults(run=_run)


def _free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("voila") is None:
        raise HoliwidgetError("Voila is not installed; pip install voila")
    if not EXPLORER_NOTEBOOK.is_file():
        raise HoliwidgetError(
            f"notebook {EXPLORER_NOTEBOOK} not found: the installed package is incomplete; "
            "reinstall holiwidget"
        )
    data = (args.data or DATA).expanduser().resolve()
    if data.exists() and not data.is_dir():
        raise HoliwidgetError(f"{data} is not a folder; choose another --data")
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HoliwidgetError(
            f"cannot create the data folder {data} ({exc.strerror or exc}); choose another --data"
        ) from None
    image = args.image
    if image is not None and Path(image).expanduser().is_file():
        image = str(Path(image).expanduser().resolve())
    try:
        port = args.port or _free_port(args.ip)
    except OSError as exc:
        raise HoliwidgetError(
            f"cannot use the address {args.ip} ({exc.strerror or exc}); pass another --ip"
        ) from None
    env = notebook_env(
        args,
        HOLIWIDGET_IMAGE=image,
        HOLIWIDGET_DATA=str(data),
        HOLIWIDGET_PASS_MEMORY=str(args.pass_memory),
    )
    cmd = [
        *(sys.executable, "-m", "voila", str(EXPLORER_NOTEBOOK)),
        f"--port={port}",
        f"--Voila.ip={args.ip}",
        "--strip_sources=True",
        "--show_tracebacks=False",
        "--Voila.port_retries=0",  # the port printed below, or a clear failure: never another
    ]
    if args.no_browser:
        cmd.append("--no-browser")
    host = f"[{args.ip}]" if ":" in args.ip else args.ip
    print(f"holiwidget app: the explorer is at http://{host}:{port}/ (data folder {data})")
    sys.stdout.flush()
    log.info("running %s", " ".join(cmd))
    return supervise(cmd, env, data, "Voila")
