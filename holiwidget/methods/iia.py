"""IIA, Iterated Integrated Attributions (Barkan et al., ICCV 2023), as its code computes it.

For the target logit ``y_c`` and the 11 scaled inputs ``x_t = (t / 10) x``, ``t = 0 .. 10``
(the baseline is the zero tensor in normalised space), at a layer with output ``A``::

    M = sum_t sum_k ReLU(A^k(x_t)) * dy_c/dA^k(x_t)        element-wise, no spatial pooling

then bicubic upsampling to the input size and min-max, with no final ReLU
(:func:`finish_iia`). The paper's second, activation-level integral collapses in the
released code (its activation baseline equals A itself), so 11 forward and backward passes
at the fundamental scale are all it takes. The 11 inputs of an image run as one batch, and
one pass records every requested layer.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import prepared, record_pass
from ..checks import positive_int
from ..errors import HoliwidgetError
from ..targets import target_chooser, target_tensor
from .finish import minmax

__all__ = ["IIA_STEPS", "finish_iia", "iia"]

#: The number of intervals of the integral: inputs ``(t / IIA_STEPS) x``, t = 0 .. IIA_STEPS.
IIA_STEPS = 10


def iia(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    x: torch.Tensor,
    targets: torch.Tensor,
    *,
    images_per_pass: int = 1,
) -> dict[str, torch.Tensor]:
    """Raw IIA maps ``M = sum_t sum_k ReLU(A^k(x_t)) * dy_c/dA^k(x_t)`` of several layers.

    Each pass holds the 11 scaled copies of ``images_per_pass`` images (11 x that many
    inputs); a batch gives the same maps as one image at a time. The model is put in
    evaluation mode with frozen parameters for the passes (:func:`holiwidget.capture.prepared`;
    calling this inside ``prepared`` is fine) and left as found: no hook or gradient remains.

    Args:
        model: the network.
        layers: name -> module whose output (N, K, h, w) is explained.
        x: ImageNet-normalised input (N, 3, H, W) on the model's device.
        targets: the class explained for each image, (N,) int64.
        images_per_pass: images whose 11 scaled inputs share one forward/backward pass
            (memory grows with it).

    Returns:
        name -> raw maps (N, h, w) at the layer's resolution, before :func:`finish_iia`.

    Raises:
        HoliwidgetError: for bad targets or batch settings, or a layer that does not output
            an (N, K, h, w) tensor or does not run.
    """
    if not layers:
        raise HoliwidgetError("iia needs at least one layer to explain")
    images_per_pass = positive_int(images_per_pass, "images_per_pass")
    n = x.shape[0]
    targets = target_tensor(targets, n, x.device)
    steps = IIA_STEPS + 1
    scales = torch.arange(steps, device=x.device, dtype=x.dtype) / IIA_STEPS
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    with prepared(model):
        for start in range(0, n, images_per_pass):
            chunk = x[start : start + images_per_pass].detach()
            m = chunk.shape[0]
            # image-major: the 11 inputs of image i are rows 11 i .. 11 i + 10
            inputs = (chunk.unsqueeze(1) * scales.view(1, steps, 1, 1, 1)).flatten(0, 1)
            chosen = targets[start : start + m].repeat_interleave(steps)
            record = record_pass(model, layers, inputs, target_chooser(chosen))
            for name in layers:
                act, grad = record.activations[name], record.gradients[name]
                product = torch.relu(act).mul_(grad).sum(dim=1)  # (m * 11, h, w)
                parts[name].append(product.view(m, steps, *product.shape[-2:]).sum(dim=1))
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def finish_iia(native: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """IIA's ending: bicubic upsampling to the input size, then min-max to [0, 1]; no ReLU.

    Bicubic interpolation (``align_corners=False``) may overshoot the native range; the
    min-max afterwards maps the result onto [0, 1] exactly. A constant map becomes zeros (its
    upsampled copy is constant only up to rounding, which the min-max would blow up).

    Args:
        native: raw maps (N, h, w) from :func:`iia`.
        size: the input (H, W).

    Returns:
        (N, H, W) maps in [0, 1].
    """
    flat = native.flatten(-2)
    constant = (flat.max(-1).values == flat.min(-1).values)[..., None, None]
    if native.shape[-2:] != tuple(size):
        native = F.interpolate(
            native.unsqueeze(1), size=tuple(size), mode="bicubic", align_corners=False
        ).squeeze(1)
    # a constant map stays constant only up to the interpolation's rounding: zeros, decided
    # before the min-max could blow that rounding up to [0, 1]
    return minmax(native).masked_fill_(constant, 0)
