"""One layer's fusion over the input pyramid: per-scale captures in, PHA, M_f and CAMERAS out.

The engine hands each scale's activations A_s and gradients G_s of a layer to its
:class:`LayerFuser` as that scale's pass ends (the fundamental scale first) and asks for the
fused maps after the last pass::

    PHA = sum_k mean_s up(W_s)[k] * mean_s up(A_s)[k]     W_s = PGE(G_s), Holistic-CAM
    M_f = sum_k up(W_s0)[k] * up(A_s0)[k]                 the fundamental scale alone
    CAM = sum_k mean_s up(G_s)[k] * mean_s up(A_s)[k]     CAMERAS (before its ReLU)

Inside, the fuser holds the natives and fuses each image after the last pass (compiled CPU
loops, or torch's banded or Gram way), or sums a shallow layer's upsampled stacks as the
passes end (:mod:`holiwidget.fusion.summed`); :mod:`holiwidget.fusion.policy` says when.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import HoliwidgetError, warn
from ..heap import release_memory
from .policy import HELD_NATIVE_BYTES
from .products import torch_products
from .summed import ScaleSums

__all__ = ["BACKENDS", "FusedLayer", "LayerFuser", "resolve_backend"]

#: The fusion's ways of computing: ``"auto"`` is ``"compiled"`` on the CPU, else ``"torch"``.
BACKENDS = ("auto", "torch", "compiled")


def resolve_backend(backend: str, device: torch.device, *, budget: bool = False) -> str:
    """``"torch"`` or ``"compiled"`` for a backend name on a device (one-line errors).

    ``"auto"`` is the compiled loops on the CPU, unless a memory budget is set (``budget``):
    they hold a layer's natives of every scale and load numba's LLVM (about 100 MB), where
    the torch way sums a shallow layer as its passes end."""
    if backend not in BACKENDS:
        raise HoliwidgetError(f"unknown fusion backend {backend!r}; choose {', '.join(BACKENDS)}")
    if backend == "auto":
        return "compiled" if device.type == "cpu" and not budget else "torch"
    if backend == "compiled" and device.type != "cpu":
        raise HoliwidgetError(
            f"the compiled fusion runs on the CPU only, not on {device.type}; use fusion='auto'"
        )
    return backend


@dataclass
class FusedLayer:
    """One layer's fused maps for a group of images, each (n, H, W) float32 (None when the
    method was not asked for): Holistic-CAM's PHA and M_f, and CAMERAS before its ReLU."""

    primary: np.ndarray | None
    fundamental: np.ndarray | None
    cameras: np.ndarray | None


def _compiled() -> types.ModuleType:
    """:mod:`holiwidget.fusion.compiled`, imported at the first fusion, after the passes.

    Its numba and LLVM take about 100 MB resident. Before they load, the heap that the passes
    freed is handed back to the system (glibc's ``malloc_trim``), so that the compiler's
    memory takes the place of the passes' instead of adding to it.
    """
    if "holiwidget.fusion.compiled" not in sys.modules:
        release_memory()
    from . import compiled

    return compiled


def _channels_last(stack: torch.Tensor) -> np.ndarray:
    """(K, h, w) -> C-contiguous (h, w, K) array (a view when the stack is channels-last)."""
    return stack.permute(1, 2, 0).contiguous().numpy()


def _finite(fused: torch.Tensor, layer: str) -> np.ndarray:
    """Replace non-finite values (PGE's denominator can vanish on negative activations)."""
    if not bool(torch.isfinite(fused).all()):
        warn(
            f"Holistic-CAM at layer {layer!r} produced non-finite values (negative "
            "activations?); they were set to 0: explain a post-activation layer instead"
        )
        fused = torch.nan_to_num(fused, nan=0.0, posinf=0.0, neginf=0.0)
    return fused.cpu().numpy()


class LayerFuser:
    """One layer's captures over the pyramid, fused into PHA, M_f and CAMERAS.

    Args:
        layer: the layer's name (for warnings).
        images: the images of the group.
        sizes: the pyramid's input sizes in pass order, the fundamental scale first.
        holistic: fuse Holistic-CAM.
        cameras: fuse CAMERAS.
        backend: ``"torch"`` or ``"compiled"`` (see :func:`resolve_backend`).
    """

    def __init__(
        self,
        layer: str,
        images: int,
        sizes: list[tuple[int, int]],
        *,
        holistic: bool,
        cameras: bool,
        backend: str,
    ) -> None:
        self.layer = layer
        self.images = images
        self.sizes = sizes
        self.size = sizes[0]
        self.holistic = holistic
        self.cameras = cameras
        self.backend = backend
        self._acts: list[list[torch.Tensor]] = [[] for _ in sizes]  # per scale: chunks
        self._grads: list[list[torch.Tensor]] = [[] for _ in sizes]
        self._sums: ScaleSums | None = None

    def _summed(self, a: torch.Tensor) -> bool:
        """Whether this layer is summed as its passes end (see :mod:`.policy`)."""
        height, width = self.size
        factor = sum(h * w for h, w in self.sizes) / (height * width)
        pixels = a.shape[-2] * a.shape[-1] * factor  # natives per channel, all scales
        held = 2 * a.shape[1] * pixels * a.element_size()  # activations and gradients
        fast_on_natives = self.backend == "compiled"
        return pixels > height * width and (not fast_on_natives or held > HELD_NATIVE_BYTES)

    def add(
        self,
        scale: int,
        sub: slice,
        a: torch.Tensor,
        g: torch.Tensor | None,
        used: torch.Tensor | None = None,
    ) -> None:
        """Take one pass's captures of ``sub``'s images at the scale ``sizes[scale]``.

        Args:
            scale: the scale's position in ``sizes`` (0: the fundamental scale, first).
            sub: the images of the group this pass ran on.
            a: their activations (m, K, h, w).
            g: their gradients (None when no method needs them).
            used: (m,) which of them count at this scale (None: all).
        """
        pyramid = self.holistic or self.cameras
        if scale == 0 and pyramid and not self._acts[0] and self._sums is None and self._summed(a):
            self._sums = ScaleSums(self.images, self.size, self.holistic, self.cameras)
        if self._sums is not None:
            if scale > 0:
                self._sums.add_pass(a, g, sub, used)
                return  # the natives go once summed
            self._sums.add_fundamental_pass(a, g, sub)
        self._acts[scale].append(a)
        if g is not None:
            self._grads[scale].append(g)

    def natives(self, scale: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A scale's activations and gradients of every image of the group, (n, K, h, w)."""
        for kept in (self._acts, self._grads):
            if len(kept[scale]) > 1:
                kept[scale][:] = [torch.cat(kept[scale])]
        grads = self._grads[scale]
        return self._acts[scale][0], grads[0] if grads else None

    def fuse(self, used: torch.Tensor) -> FusedLayer:
        """The fused maps after the last pass.

        Args:
            used: (n, scales) bool in the order of ``sizes``: which scales count for which
                image.

        Returns:
            The layer's fused maps.
        """
        if not (self.holistic or self.cameras):
            return FusedLayer(None, None, None)
        if self._sums is not None:
            a0, g0 = self.natives(0)
            per_image = self._sums.finish(a0, g0, used.sum(dim=1).tolist())
        else:
            stacks = [self.natives(s) for s in range(len(self.sizes))]
            per_image = {}
            for i in range(self.images):
                keep = [stacks[s] for s in range(len(self.sizes)) if used[i, s]]
                acts, grads = [a[i] for a, _ in keep], [g[i] for _, g in keep]
                for key, value in self._fuse_image(acts, grads).items():
                    per_image.setdefault(key, []).append(value)
        out = {}
        for key in ("primary", "fundamental", "cameras"):
            if key in per_image:
                maps = per_image[key]
                out[key] = np.stack(
                    [_finite(m, self.layer) if key != "cameras" else m.cpu().numpy() for m in maps]
                )
        return FusedLayer(out.get("primary"), out.get("fundamental"), out.get("cameras"))

    def _fuse_image(
        self, acts: list[torch.Tensor], grads: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """One image's maps from its used scales' stacks (K, h_s, w_s), fundamental first."""
        out = {}
        totals = [t.sum(dim=(1, 2)) for t in acts]  # S_k, for PGE
        if self.backend == "compiled":
            compiled = _compiled()
            threads = torch.get_num_threads()
            a = [_channels_last(t) for t in acts]
            g = [_channels_last(t) for t in grads]
            if self.cameras:
                out["cameras"] = compiled.compiled_products(g, a, self.size, threads=threads)[0]
            if self.holistic:
                s = torch.stack(totals).numpy()
                pha, mf = compiled.compiled_products(a, g, self.size, totals=s, threads=threads)
                out["primary"], out["fundamental"] = pha, mf
            return {k: torch.from_numpy(v) for k, v in out.items()}
        if self.cameras:
            out["cameras"] = torch_products(grads, acts, self.size)[0]
        if self.holistic:
            s = [t.view(-1, 1, 1) for t in totals]
            out["primary"], out["fundamental"] = torch_products(acts, grads, self.size, totals=s)
        return out
