"""The process heap: handing freed memory back to the system, and keeping it bounded."""

from __future__ import annotations

import contextlib
import ctypes

__all__ = ["BOUNDED_MMAP_BYTES", "bound_heap", "release_memory"]

#: Under a memory budget, blocks from this size up get pages of their own, unmapped when
#: freed. glibc's default threshold starts at 128 KiB but rises with every large block
#: freed (up to 32 MiB), after which the pyramid's tensors of every size share one heap
#: that fragments: MobileNetV2's eight passes then peak 0.3 GB higher.
BOUNDED_MMAP_BYTES = 2**20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def release_memory() -> None:
    """Return the memory that ``free`` kept in the process's heap to the system (glibc's
    ``malloc_trim``), so that what comes next (numba's compiler, the next image's passes)
    takes its place instead of adding to it and a long session does not grow by
    fragmentation. Elsewhere (macOS, Windows, musl) a no-op."""
    with contextlib.suppress(AttributeError, OSError, TypeError):
        ctypes.CDLL(None).malloc_trim(0)


def bound_heap() -> None:
    """Keep the heap from growing by fragmentation for the rest of the process: blocks of
    :data:`BOUNDED_MMAP_BYTES` and more are mapped on their own and returned to the system
    when freed (glibc's ``mallopt(M_MMAP_THRESHOLD)``, which also stops the threshold's
    growth). Lower peak memory, at the cost of fresh pages for every large tensor (about a
    third more time for a pyramid's passes on the CPU). Elsewhere a no-op."""
    with contextlib.suppress(AttributeError, OSError, TypeError):
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, BOUNDED_MMAP_BYTES)
