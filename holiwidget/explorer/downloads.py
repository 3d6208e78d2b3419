"""A shared deployment's needs: paths confined to a data folder, exports handed to the
browser."""

from __future__ import annotations

import base64
import html
import mimetypes
from pathlib import Path

from ..errors import HoliwidgetError

__all__ = ["MAX_DOWNLOAD_BYTES", "confined_path", "download_link", "user_path"]

#: The largest export handed to the browser as a download (it travels base64-encoded).
MAX_DOWNLOAD_BYTES = 64 * 2**20


def confined_path(root: Path, text: str, what: str) -> Path:
    """``text`` as a path inside the data folder ``root`` (relative names are taken from it).

    Raises:
        HoliwidgetError: the path leads outside ``root`` (absolute elsewhere, ``..``, a
            symbolic link out), in one line naming the data folder.
    """
    name = str(text).strip()
    if not name:
        raise HoliwidgetError(f"type a {what} name inside the data folder first")
    given = Path(name).expanduser()
    path = (given if given.is_absolute() else root / given).resolve()
    if path != root and root not in path.parents:
        raise HoliwidgetError(
            f"{what} {name!r} is outside the data folder; this app reads and writes only "
            f"inside {root} (give a name relative to it)"
        )
    return path


def user_path(root: Path | None, text: str, what: str) -> Path:
    """A path typed into the app: inside the data folder ``root`` when there is one."""
    if root is not None:
        return confined_path(root, text, what)
    if not str(text).strip():
        raise HoliwidgetError(f"type a {what} path first")
    return Path(str(text).strip()).expanduser()


def download_link(path: Path) -> str:
    """An HTML link that hands the file to the browser as a download (a data URL)."""
    size = path.stat().st_size if path.is_file() else 0
    if not path.is_file() or size > MAX_DOWNLOAD_BYTES:
        why = "a folder" if path.is_dir() else f"{size / 2**20:.0f} MB"
        return f"<i>{html.escape(path.name)} is {why}: too large to download here</i>"
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = html.escape(path.name, quote=True)
    return (
        f'<a class="holiwidget-download" download="{name}" href="data:{kind};base64,{data}">'
        f"⬇ download {name}</a>"
    )
