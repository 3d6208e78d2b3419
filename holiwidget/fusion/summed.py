"""The summed way (torch): a shallow layer's upsampled stacks added up as its passes end.

A layer whose natives over the eight scales outnumber the output pixels (ResNet-50's layer1
holds 3.8 native pixels per input pixel) is cheaper summed than held: each scale's stacks
are bilinearly upsampled, chunk of channels by chunk, and added to running sums
``sum_s up(X_s)`` for X in A, PGE weights W and (for CAMERAS) G. That holds K x H x W per
stack instead of the natives' 3.8 times as much. The fundamental scale gives M_f during its
pass and joins the sums only after the last pass, so no K x H x W sum is held during the
largest passes. Chunks stay below glibc's mmap threshold
(:data:`~holiwidget.fusion.policy.SUM_CHUNK_BYTES`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..methods.holistic import pge_from_totals
from .policy import SUM_CHUNK_BYTES

__all__ = ["ScaleSums"]


def _layout(x: torch.Tensor) -> torch.memory_format:
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _shares_memory(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x.untyped_storage().data_ptr() == y.untyped_storage().data_ptr()


def _upsampled(
    a: torch.Tensor, g: torch.Tensor | None, holistic: bool, cameras: bool, size: tuple[int, int]
) -> Iterator[tuple[str, int, torch.Tensor]]:
    """One scale's stacks (n, K, h, w), bilinearly upsampled chunk of channels by chunk: per
    chunk (its index), "a", then "g" (for CAMERAS), then Holistic-CAM's PGE weights "w"."""
    layout = _layout(a)
    step = max(1, SUM_CHUNK_BYTES // (a.element_size() * size[0] * size[1]))
    totals = a.sum(dim=(2, 3), keepdim=True) if holistic else None
    for index, k0 in enumerate(range(0, a.shape[1], step)):
        ks = slice(k0, min(k0 + step, a.shape[1]))
        chunk = {"a": a[:, ks].contiguous(memory_format=layout)}
        if holistic or cameras:
            chunk["g"] = g[:, ks].contiguous(memory_format=layout)
        if holistic:  # PGE may take the chunk's own copy of G, if nothing else reads it
            own = not cameras and not _shares_memory(chunk["g"], g)
            chunk["w"] = pge_from_totals(chunk["g"], totals[:, ks], overwrite=own)
        if not cameras:
            chunk.pop("g", None)
        for key, stack in chunk.items():
            yield key, index, F.interpolate(stack, size=size, mode="bilinear", align_corners=False)


class ScaleSums:
    """One layer's running sums over the scales, for a group of ``images`` images.

    Args:
        images: the images of the group.
        size: the output (H, W).
        holistic: sum what Holistic-CAM needs (A and PGE weights) and keep M_f.
        cameras: sum what CAMERAS needs (A and G).
    """

    def __init__(self, images: int, size: tuple[int, int], holistic: bool, cameras: bool) -> None:
        self.images = images
        self.size = size
        self.holistic = holistic
        self.cameras = cameras
        self.sums: dict[str, list[torch.Tensor]] = {}  # stack -> chunks (n, k, H, W)
        self.fundamental: torch.Tensor | None = None  # (n, H, W) M_f

    def add_fundamental_pass(self, a: torch.Tensor, g: torch.Tensor, sub: slice) -> None:
        """M_f of ``sub``'s images from their fundamental-scale stacks (which join the sums in
        :meth:`finish`)."""
        if not self.holistic:
            return
        mf = a.new_zeros((a.shape[0], *self.size))
        ups = {}
        for key, _, up in _upsampled(a, g, True, False, self.size):
            ups[key] = up
            if key == "w":  # the chunk's "a" came first
                mf += (ups.pop("w") * ups.pop("a")).sum(dim=1)
        if self.fundamental is None:
            self.fundamental = a.new_zeros((self.images, *self.size))
        self.fundamental[sub] = mf

    def add_pass(
        self, a: torch.Tensor, g: torch.Tensor, sub: slice, used: torch.Tensor | None = None
    ) -> None:
        """Add one scale's upsampled stacks of ``sub``'s images (those ``used``) to the sums."""
        for key, index, up in _upsampled(a, g, self.holistic, self.cameras, self.size):
            if used is not None:
                up[~used] = 0
            chunks = self.sums.setdefault(key, [])
            if index < len(chunks):
                chunks[index][sub] += up
            elif up.shape[0] == self.images:
                chunks.append(up)
            else:  # laid out as the upsampled stacks are, for a fast sum
                chunks.append(
                    up.new_zeros((self.images, *up.shape[1:])).contiguous(memory_format=_layout(up))
                )
                chunks[index][sub] = up

    def _dot(self, x: str, y: str, i: int) -> torch.Tensor:
        """sum_k x[i, k] * y[i, k] over the chunks of channels of two sums."""
        return sum(
            (p[i] * q[i]).sum(dim=0) for p, q in zip(self.sums[x], self.sums[y], strict=True)
        )

    def finish(
        self, a0: torch.Tensor, g0: torch.Tensor, counts: list[int]
    ) -> dict[str, list[torch.Tensor]]:
        """Add the fundamental scale's stacks (all images) and fuse.

        Args:
            a0: the fundamental scale's activations (n, K, h, w).
            g0: its gradients.
            counts: per image, the scales in its means.

        Returns:
            Per image: ``"primary"`` (PHA) and ``"fundamental"`` (M_f) for Holistic-CAM,
            ``"cameras"`` for CAMERAS, each (H, W).
        """
        self.add_pass(a0, g0, slice(None))
        out: dict[str, list[torch.Tensor]] = {}
        for i, count in enumerate(counts):
            if self.holistic:
                out.setdefault("primary", []).append(self._dot("w", "a", i) / count**2)
                out.setdefault("fundamental", []).append(self.fundamental[i])
            if self.cameras:
                out.setdefault("cameras", []).append(self._dot("g", "a", i) / count**2)
        return out
