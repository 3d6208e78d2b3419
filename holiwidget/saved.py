"""What a recorded pass keeps for its backward: counted, or kept on disk for large passes.

The backward pass needs what autograd saved during the forward pass: at the pyramid's
largest scales that is most of a pass's memory (MobileNetV2's holistic stage at 924 x 924
saves about 0.7 GB). :class:`OnDisk` moves each large saved tensor to a temporary file as it
is saved and reads it back when the backward pass needs it, so that memory holds the
tensors of one step of the backward at a time; the values, their layout (strides) and so
every map stay exactly the same, at the cost of the file's writes and reads.
:class:`Counted` only adds up the bytes saved (to predict the next passes' needs).
"""

from __future__ import annotations

import contextlib
import numbers
import tempfile
from typing import Any

import torch

from .errors import HoliwidgetError

__all__ = ["MIN_BYTES", "Counted", "OnDisk", "PassMemory"]

#: Saved tensors smaller than this stay in memory (weights, small feature maps).
MIN_BYTES = 1 << 20


class Counted(contextlib.AbstractContextManager):
    """Count the bytes autograd saves inside the block (tensors kept as they are)."""

    def __init__(self) -> None:
        self.bytes = 0
        self._hooks: Any = None

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, torch.nn.Parameter):
            self.bytes += t.numel() * t.element_size()
        return t

    def __enter__(self) -> Counted:
        self.bytes = 0  # a pass run again (see record_pass) counts once
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


class OnDisk(contextlib.AbstractContextManager):
    """Keep the large CPU tensors autograd saves inside the block in a temporary file.

    Contiguous and channels-last tensors of at least :data:`MIN_BYTES` are written to the
    file and read back with the same shape, dtype and strides; others stay in memory. The
    file is deleted when the block ends (use it around the forward and the backward).
    """

    def __init__(self) -> None:
        self.bytes = 0
        self._file: Any = None
        self._hooks: Any = None

    def _pack(self, t: torch.Tensor) -> Any:
        size = t.numel() * t.element_size()
        if size < MIN_BYTES or t.device.type != "cpu" or isinstance(t, torch.nn.Parameter):
            return t
        if t.is_contiguous():
            order = None
        elif t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
            order = (0, 2, 3, 1)
        else:
            return t
        data = t.detach() if order is None else t.detach().permute(*order)
        offset = self._file.seek(0, 2)
        self._file.write(memoryview(data.contiguous().numpy()).cast("B"))
        self.bytes += size
        return (offset, size, tuple(data.shape), t.dtype, order)

    def _unpack(self, packed: Any) -> torch.Tensor:
        if isinstance(packed, torch.Tensor):
            return packed
        offset, size, shape, dtype, order = packed
        self._file.seek(offset)
        buffer = bytearray(size)
        self._file.readinto(buffer)
        t = torch.frombuffer(buffer, dtype=dtype).view(shape)
        return t if order is None else t.permute(0, 3, 1, 2)  # back to channels-last strides

    def __enter__(self) -> OnDisk:
        self.bytes = 0
        self._file = tempfile.TemporaryFile(prefix="holiwidget-saved-")
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)
        self._file.close()


class PassMemory:
    """Which passes of a pyramid keep their saved tensors on disk, under a memory budget.

    The first pass (the fundamental scale) is counted; a later pass is predicted to save
    that many bytes times its pixels over the first pass's pixels, and is kept on disk
    (:class:`OnDisk`) when that exceeds ``budget``. Without a budget nothing is counted or
    moved.

    Args:
        budget: the most bytes a pass may keep in memory for its backward, or None.
    """

    def __init__(self, budget: int | None) -> None:
        self.budget = budget
        self.on_disk = 0  #: passes that kept their saved tensors on disk
        self._first: tuple[Counted, int] | None = None

    @classmethod
    def from_megabytes(cls, megabytes: float | None) -> PassMemory:
        """A budget of ``megabytes`` per pass (None: no budget), checked for the user."""
        if megabytes is not None and (
            isinstance(megabytes, bool)
            or not isinstance(megabytes, numbers.Real)
            or not megabytes > 0
        ):
            raise HoliwidgetError(
                f"pass_memory must be a positive number of megabytes (or None), got {megabytes!r}"
            )
        return cls(None if megabytes is None else int(megabytes * 2**20))

    def saving(self, pixels: int) -> contextlib.AbstractContextManager | None:
        """The ``saving`` context of :func:`holiwidget.capture.record_pass` for a pass over
        ``pixels`` input pixels (summed over its images)."""
        if self.budget is None:
            return None
        if self._first is None:
            self._first = (Counted(), pixels)
            return self._first[0]
        counted, first_pixels = self._first
        if counted.bytes * pixels / first_pixels <= self.budget:
            return None
        self.on_disk += 1
        return OnDisk()
