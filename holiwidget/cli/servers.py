"""Running a Jupyter server for a command: its environment, its stop signals, its status."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path

from ..errors import HoliwidgetError

__all__ = ["notebook_env", "running_as_root", "supervise"]

#: Signals passed on to the server.
_FORWARDED = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)


def notebook_env(args: argparse.Namespace, **extra: str | None) -> dict[str, str]:
    """The server's environment: ours, with HOLIWIDGET_MODEL / HOLIWIDGET_WEIGHTS from
    ``--model`` / ``--weights`` (a weights file as an absolute path) and ``extra``."""
    env = dict(os.environ)
    if args.model is not None:
        env["HOLIWIDGET_MODEL"] = args.model
    if args.weights is not None:
        weights = Path(args.weights).expanduser()
        env["HOLIWIDGET_WEIGHTS"] = str(weights.resolve()) if weights.exists() else args.weights
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def running_as_root() -> bool:
    """Whether this process runs as root (containers, Binder-like hosts)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _terminal_sent_it() -> bool:
    """Whether a SIGINT most likely came from the terminal (Ctrl-C): this process is in its
    foreground process group, which the terminal signals as a whole, JupyterLab included."""
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: not POSIX
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
    return False


def supervise(cmd: list[str], env: dict[str, str], cwd: Path, what: str) -> int:
    """Run the server ``cmd`` in ``cwd``, pass stop signals on to it, wait for it.

    SIGTERM and SIGHUP are passed on; so is SIGINT, as SIGTERM (a Jupyter server's clean
    stop, which shuts its kernels down), unless it came from the terminal, which signals
    the server itself. A signal this process ignores (SIGHUP under ``nohup``, SIGINT in a
    shell's background job) stays ignored, as the server inherits it. Returns its exit
    status (128 + N when signal N ended it, as a shell reports it); nothing is left running.
    """
    try:
        child = subprocess.Popen(cmd, env=env, cwd=cwd)
    except OSError as exc:
        raise HoliwidgetError(f"cannot start {what} ({exc.strerror or exc})") from None

    def forward(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT:
            if _terminal_sent_it():
                return
            # Without a terminal JupyterLab takes SIGINT as KeyboardInterrupt and leaves
            # its kernels to notice; SIGTERM makes it shut them down first.
            signum = signal.SIGTERM
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {
            s: signal.signal(s, forward)
            for s in _FORWARDED
            if signal.getsignal(s) is not signal.SIG_IGN
        }
    try:
        status = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if child.poll() is None:  # this process is going down for another reason
            child.terminate()
            child.wait()
    return status if status >= 0 else 128 - status
