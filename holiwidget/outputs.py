"""Writing user-visible files: checks before any work, all-or-nothing writes, one writer.

Every file holiwidget writes for its user goes through :func:`atomic_output`:

- the content is written to a temporary path in a hidden folder beside the target
  (``.NAME.holiwidget-PID-XXXX``) and put in place only when complete, so the final name
  holds the old complete output or the new complete one, never a mix: a folder output (a
  zarr store) is swapped in with one atomic exchange of the two paths where the system has
  one (Linux ``renameat2``), else renamed in two steps that the next write repairs;
- only a previous output of the same kind is replaced, recognised by its content; anything
  else under the name (a user's file or folder, an output of another kind, a file that
  cannot be read) is refused in one line, never deleted. Each writer says how it knows its
  own: a dataset by its attrs, a figure by the :data:`MARK` in its metadata
  (:func:`figure_mark`, :func:`is_marked_figure`), a markdown summary by its first line
  (:func:`markdown_mark`), a CSV table by its exact header line (:func:`has_first_line`);
  without such a test every existing file is refused;
- a failed write (a full disk, a missing permission) is one :class:`HoliwidgetError` and
  leaves nothing behind; temporary folders of writers that died (killed, power cut) are
  removed by the next write into the same folder, and only those;
- :func:`output_lock` keeps a second run from writing the same output at the same time (a
  lock that the system releases when its holder dies); a lock file that cannot be written
  (a full disk) is one :class:`HoliwidgetError` too.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gzip
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import HoliwidgetError

__all__ = [
    "MARK",
    "atomic_output",
    "check_output",
    "figure_mark",
    "has_first_line",
    "is_marked_figure",
    "markdown_mark",
    "output_lock",
    "write_bytes",
]

log = logging.getLogger(__name__)

_TAG = "holiwidget"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2

#: The mark holiwidget writes into its figures' metadata, to know them again.
MARK = "holiwidget figure"
# How each figure format carries the mark: savefig's metadata, or Pillow's options.
_BY_METADATA = dict.fromkeys(("pdf", "svg", "svgz", "eps", "ps"), "Creator") | {"png": "Software"}
_XMP = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><!-- {MARK} --></x:xmpmeta>'.encode()
_BY_PILLOW = {"jpg": {"comment": MARK.encode()}, "tif": {"description": MARK}}
_BY_PILLOW |= {"jpeg": _BY_PILLOW["jpg"], "tiff": _BY_PILLOW["tif"], "webp": {"xmp": _XMP}}
# What a marked file of each text-based format holds, byte for byte.
_NEEDLES = dict.fromkeys(("svg", "svgz"), f"<dc:title>{MARK}</dc:title>")
_NEEDLES |= {"pdf": f"/Creator ({MARK})"} | dict.fromkeys(("eps", "ps"), f"%%Creator: {MARK}\n")


def figure_mark(fmt: str) -> dict[str, object]:
    """The ``savefig`` keywords that put :data:`MARK` into a figure of format ``fmt``.

    Args:
        fmt: the format (``"png"``, ``"pdf"``, ...), as :func:`holiwidget.figure.figure_format`
            names it.

    Returns:
        ``metadata=`` or ``pil_kwargs=`` for ``Figure.savefig``; empty for a format that
        cannot carry the mark (its existing files are then never replaced).
    """
    if fmt in _BY_METADATA:
        return {"metadata": {_BY_METADATA[fmt]: MARK}}
    if fmt in _BY_PILLOW:
        return {"pil_kwargs": dict(_BY_PILLOW[fmt])}
    return {}


def is_marked_figure(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a figure file that holiwidget wrote (its metadata holds
    :data:`MARK`); False for anything else, unreadable files included."""
    out = Path(path)
    fmt = out.suffix.lower().lstrip(".")
    if not out.is_file() or out.is_symlink():
        return False
    try:
        if fmt in _NEEDLES:
            data = out.read_bytes()
            if fmt == "svgz":
                data = gzip.decompress(data)
            return _NEEDLES[fmt].encode() in data
        if fmt not in _BY_METADATA and fmt not in _BY_PILLOW:
            return False
        from PIL import Image

        with Image.open(out) as img:
            if fmt == "png":
                return img.info.get("Software") == MARK
            if fmt in ("jpg", "jpeg"):
                return img.info.get("comment") == MARK.encode()
            if fmt in ("tif", "tiff"):
                return img.getexif().get(270) == MARK
            return img.info.get("xmp") == _XMP
    except Exception:  # not an image of that format: PIL, gzip and the OS raise many types
        return False


def markdown_mark(kind: str) -> str:
    """The first line of a markdown file holiwidget writes as ``kind`` (an HTML comment,
    invisible when rendered); :func:`has_first_line` of it recognises the file."""
    return f"<!-- written by holiwidget: {kind}; it replaces this file when run again -->"


def has_first_line(line: str) -> Callable[[Path], bool]:
    """A test of whether a file begins with exactly ``line`` (for ``replaces``): how a
    marked markdown file, or a CSV table by its header line, is known again."""
    want = line.encode() + b"\n"

    def test(path: Path) -> bool:
        if not path.is_file() or path.is_symlink():
            return False
        try:
            with open(path, "rb") as fh:
                return fh.read(len(want)) == want
        except OSError:
            return False

    return test


def check_output(
    path: str | os.PathLike,
    what: str = "output",
    *,
    folder: bool = False,
    replaces: Callable[[Path], bool] | None = None,
) -> Path:
    """Check, before any work, that ``path`` can be written.

    Args:
        path: the output path.
        what: what it is, for the message (``"output"``, ``"figure"``, ...).
        folder: whether the output is itself a folder (zarr); a file output must not name
            an existing folder, a folder output not an existing file.
        replaces: when given, an existing ``path`` must pass it (be an earlier output of
            ours that :func:`atomic_output` will replace), else it is refused now.

    Returns:
        The path.

    Raises:
        HoliwidgetError: its folder is missing or not writable, or it names a folder where a
            file is written (or the reverse).
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
    if folder and out.exists() and not out.is_dir():
        raise HoliwidgetError(f"{out} is a file, not a zarr folder; choose another {what} path")
    if replaces is not None and out.exists() and not replaces(out):
        raise HoliwidgetError(
            f"{out} is a file that holiwidget did not write as a {what}; it is left alone: "
            "choose another path or move it away"
        )
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _clean_leftovers(out: Path) -> None:
    """Remove temporary folders for ``out`` left by writers that are no longer running."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.{_TAG}-(\d+)-[A-Za-z0-9_]+$")
    with contextlib.suppress(OSError):
        for entry in out.parent.iterdir():
            found = pattern.match(entry.name)
            if found and entry.is_dir() and not _alive(int(found.group(1))):
                _restore(out, entry)
                log.info("removing %s, left by an interrupted write", entry)
                shutil.rmtree(entry, ignore_errors=True)


def _restore(out: Path, tmp: Path) -> None:
    """Put back an output that a two-step replacement had moved aside when it was cut off."""
    old = tmp / "previous"
    if old.exists() and not out.exists():
        os.replace(old, out)
        log.warning("restored %s, moved aside by an interrupted write", out)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _remove(tmp: Path, *, failed: bool) -> None:
    """Remove a temporary folder. After a failed write, until it has stayed gone for a
    moment: zarr writes chunks concurrently, and the writes still under way when the first
    one failed (a full disk) go on for a while after the error has reached us."""
    shutil.rmtree(tmp, ignore_errors=True)
    if not failed:
        return
    gone, deadline = 0, time.monotonic() + 10
    while gone < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
        shutil.rmtree(tmp, ignore_errors=True)
        gone = 0 if tmp.exists() else gone + 1
    if tmp.exists():
        log.warning("could not remove the temporary folder %s", tmp)


def _put_in_place(part: Path, out: Path, tmp: Path) -> None:
    if not out.is_dir() or out.is_symlink():
        os.replace(part, out)  # atomic for files (and for a folder onto nothing)
        return
    if _exchange(part, out):
        return  # ``part`` now holds the previous output, removed with ``tmp``
    old = tmp / "previous"
    os.replace(out, old)
    os.replace(part, out)


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike,
    what: str = "output",
    *,
    replaces: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; put it in place when the body
    ends without an error, else remove it.

    Args:
        path: the final path (a file, or a folder such as a zarr store).
        what: what it is, for the messages.
        replaces: says whether an existing ``path`` is a previous output of the same kind
            that may be replaced (default: none is; anything under the name is refused).

    Yields:
        Where to write (the same name, inside a hidden temporary folder beside ``path``).

    Raises:
        HoliwidgetError: ``path`` holds something else, the folder cannot be written, or the
            write failed (then nothing is left).
    """
    out = Path(path)
    _clean_leftovers(out)
    if out.exists() or out.is_symlink():
        kind = "folder" if out.is_dir() else "file"
        if replaces is None:
            raise HoliwidgetError(
                f"{out} already exists and holiwidget cannot tell its own {what} from another "
                f"{kind}; it is left alone: choose another path or move it away"
            )
        if not replaces(out):
            raise HoliwidgetError(
                f"{out} is a {kind} that holiwidget did not write as a {what}; it is left "
                "alone: choose another path or move it away"
            )
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{_TAG}-{os.getpid()}-", dir=out.parent))
    except OSError as exc:
        raise HoliwidgetError(f"cannot write to {out.parent} ({exc.strerror or exc})") from None
    failed = True
    try:
        part = tmp / out.name
        yield part
        _put_in_place(part, out, tmp)
        failed = False
    except OSError as exc:
        raise HoliwidgetError(
            f"cannot write {what} {out} ({exc.strerror or exc}); nothing was written"
        ) from None
    finally:
        _remove(tmp, failed=failed)


def write_bytes(
    path: str | os.PathLike,
    data: bytes,
    what: str = "output",
    *,
    replaces: Callable[[Path], bool] | None = None,
) -> Path:
    """Write a small file whole or not at all (readable by everyone, as a plain file is)."""
    with atomic_output(path, what, replaces=replaces) as part:
        with open(part, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(part, 0o644)
    return Path(path)


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, what: str = "output") -> Iterator[None]:
    """Hold the one writer's lock of ``path`` (``.NAME.lock`` beside it) for the body.

    A second holiwidget run on the same output is refused at once, in one line. The lock is
    the system's (``flock``): a process that dies no longer holds it. Where ``fcntl`` does
    not exist (Windows) runs are not locked.

    Raises:
        HoliwidgetError: another process holds the lock, or the lock file cannot be written
            (a full disk, a missing permission).
    """
    try:
        import fcntl  # noqa: F401 - only whether it exists
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    out = Path(path)
    lock = out.with_name(f".{out.name}.lock")
    fd = -1
    try:
        try:
            fd = _take_lock(lock, out, what)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError as exc:  # a full disk, a read-only folder
            raise HoliwidgetError(
                f"cannot write the lock file {lock} ({exc.strerror or exc}); free some space "
                f"or choose another {what} path"
            ) from None
        yield
    finally:
        if fd >= 0:  # only the lock's holder removes it
            with contextlib.suppress(OSError):
                os.unlink(lock)
            os.close(fd)


def _take_lock(lock: Path, out: Path, what: str) -> int:
    """Open and lock ``lock``; the descriptor (OSError where the file cannot be made)."""
    import fcntl

    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise HoliwidgetError(
                f"another holiwidget run (pid {holder}) is writing {what} {out}; wait for it "
                "to finish or choose another output path"
            ) from None
        except OSError:
            os.close(fd)
            raise
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder before us removed this file: lock the new one
