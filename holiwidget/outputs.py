"""Writing user-visible files: checks before any work, all-or-nothing writes, one writer.

Every file holiwidget writes for its user goes through :func:`atomic_output`:

- the content is written to a temporary path in a hidden folder beside the target
  (``.NAME.holiwidget-PID-XXXX``) and put in place only when complete, so the final name
  holds the old complete output or the new complete one, never a mix: a folder output (a
  zarr store) is swapped in with one atomic exchange of the two paths where the system has
  one (Linux ``renameat2``), else renamed in two steps that the next write repairs;
- only a previous output of the same kind is replaced (the caller says what counts); any
  other file or folder under the name is refused, never deleted;
- a failed write (a full disk, a missing permission) is one :class:`HoliwidgetError` and
  leaves nothing behind; temporary folders of writers that died (killed, power cut) are
  removed by the next write into the same folder, and only those;
- :func:`output_lock` keeps a second run from writing the same output at the same time (a
  lock that the system releases when its holder dies).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import HoliwidgetError

__all__ = ["atomic_output", "check_output", "output_lock", "write_bytes"]

log = logging.getLogger(__name__)

_TAG = "holiwidget"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def check_output(path: str | os.PathLike, what: str = "output", *, folder: bool = False) -> Path:
    """Check, before any work, that ``path`` can be written.

    Args:
        path: the output path.
        what: what it is, for the message (``"output"``, ``"figure"``, ...).
        folder: whether the output is itself a folder (zarr); a file output must not name
            an existing folder, a folder output not an existing file.

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
            that may be replaced (default: an existing plain file may be, a folder not).

    Yields:
        Where to write (the same name, inside a hidden temporary folder beside ``path``).

    Raises:
        HoliwidgetError: ``path`` holds something else, the folder cannot be written, or the
            write failed (then nothing is left).
    """
    out = Path(path)
    _clean_leftovers(out)
    if out.exists() or out.is_symlink():
        ours = replaces(out) if replaces is not None else out.is_file()
        if not ours:
            kind = "folder" if out.is_dir() else "file"
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
        HoliwidgetError: another process holds the lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    out = Path(path)
    lock = out.with_name(f".{out.name}.lock")
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
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder before us removed this file: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)
