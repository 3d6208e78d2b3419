"""Writing user-visible files: the checks before any work, and writes that are all or nothing.

Every file holiwidget writes for its user goes through :func:`atomic_output`: the content is
written to a temporary path in a hidden folder beside the target and renamed into place only
when complete, so the output appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import HoliwidgetError

__all__ = ["atomic_output", "check_output", "write_bytes"]


def check_output(path: str | os.PathLike, what: str = "output", *, folder: bool = False) -> Path:
    """Check, before any work, that ``path`` can be written.

    Args:
        path: the output path.
        what: what it is, for the message (``"output"``, ``"figure"``, ...).
        folder: whether the output is itself a folder (zarr); a file output must not name
            an existing folder.

    Returns:
        The path.

    Raises:
        HoliwidgetError: its folder is missing or not writable, or it names a folder where a
            file is written.
    """
    out = Path(path)
    parent = out.parent
    if not parent.is_dir():
        raise HoliwidgetError(
            f"folder {parent} does not exist; create it or choose another {what} path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise HoliwidgetError(f"folder {parent} is not writable; choose another {what} path")
    if not folder and out.is_dir():
        raise HoliwidgetError(f"{out} is a folder; choose a file name for the {what}")
    return out


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, what: str = "output") -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; put it in place when the body
    ends without an error, else remove it.

    Args:
        path: the final path (a file, or a folder such as a zarr store).
        what: what it is, for the messages.

    Yields:
        Where to write (same name, inside a hidden temporary folder beside ``path``).

    Raises:
        HoliwidgetError: the folder cannot be written, or the write failed (nothing is left).
    """
    out = Path(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise HoliwidgetError(f"cannot write to {out.parent} ({exc.strerror or exc})") from None
    try:
        part = tmp / out.name
        yield part
        if out.is_dir() and not out.is_symlink():
            shutil.rmtree(out)
        os.replace(part, out)
    except OSError as exc:
        raise HoliwidgetError(
            f"cannot write {what} {out} ({exc.strerror or exc}); nothing was written"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes, what: str = "output") -> Path:
    """Write a small file whole or not at all (readable by everyone, as a plain file is)."""
    with atomic_output(path, what) as part:
        part.write_bytes(data)
        os.chmod(part, 0o644)
    return Path(path)
