"""Handing the heap that network passes freed back to the system."""

from __future__ import annotations

import contextlib
import ctypes

__all__ = ["release_memory"]


def release_memory() -> None:
    """Return the memory that ``free`` kept in the process's heap to the system (glibc's
    ``malloc_trim``), so that what comes next (numba's compiler, the next image's passes)
    takes its place instead of adding to it and a long session does not grow by
    fragmentation. Elsewhere (macOS, Windows, musl) a no-op."""
    with contextlib.suppress(AttributeError, OSError, TypeError):
        ctypes.CDLL(None).malloc_trim(0)
