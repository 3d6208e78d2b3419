"""Relevance-CAM (Lee et al., CVPR 2021): a CAM weighted by the LRP relevance at the layer.

Layer-wise relevance propagation runs from the class scores down to the explained layers,
with the authors' rules (:mod:`.lrp_rules`, through zennit), starting from the contrastive
initial relevance::

    R_out = -1/C for every class,  R_out[c] = 1          (not multiplied by the logit)

At a layer with output A (K x h x w) and arriving relevance R_A::

    w_k = mean_ij R_A[k, i, j]
    L   = sum_k w_k A^k                                   (no ReLU)

then min-max to [0, 1] and bilinear resize to the input size
(:func:`finish_relevancecam`). One forward and one backward pass serve every requested
layer: the relevance reaching each layer's output is read off the same propagation.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import torch
from torch import nn

from ..capture import check_layer_output, prepared
from ..errors import HoliwidgetError
from ..targets import target_chooser, target_tensor
from .finish import minmax, resize_maps
from .lrp_rules import relevance_composite

__all__ = [
    "finish_relevancecam",
    "initial_relevance",
    "relevancecam",
    "relevancecam_unsupported",
]


def initial_relevance(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The contrastive initial relevance: ``-1/C`` everywhere, ``1`` at each image's target.

    Args:
        logits: the class scores (N, C); only their shape, dtype and device are used.
        targets: the explained class of each image, (N,) int64.

    Returns:
        (N, C) relevance.
    """
    n, classes = logits.shape
    targets = target_chooser(target_tensor(targets, n, logits.device))(logits)
    relevance = torch.full_like(logits, -1.0 / classes)
    return relevance.scatter_(1, targets.view(-1, 1), 1.0)


def relevancecam(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    x: torch.Tensor,
    targets: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Raw Relevance-CAM maps ``L = sum_k (mean_ij R_A^k) A^k`` of several layers at once.

    The model is put in evaluation mode with frozen parameters for the pass
    (:func:`holiwidget.capture.prepared`; calling this inside ``prepared`` is fine), the
    canonizers and LRP rules are attached, one forward and one LRP backward pass run, and
    everything is removed again, also when the pass raises: no hook, attribute or gradient
    remains, parameters are untouched (BatchNorm is not merged), modes and ``requires_grad``
    flags are restored.

    Args:
        model: a torchvision ResNet, VGG or MobileNetV2 (see
            :func:`holiwidget.methods.lrp_rules.relevance_composite`).
        layers: name -> module whose output (N, K, h, w) is explained.
        x: ImageNet-normalised input (N, 3, H, W) on the model's device.
        targets: the class explained for each image, (N,) int64.

    Returns:
        name -> raw maps (N, h, w) at the layer's resolution, before
        :func:`finish_relevancecam`.

    Raises:
        HoliwidgetError: for an unsupported architecture, bad targets, or a layer that does
            not output an (N, K, h, w) tensor or does not run.
    """
    if not layers:
        raise HoliwidgetError("relevancecam needs at least one layer to explain")
    composite = relevance_composite(model)
    with prepared(model):
        try:
            composite.register(model)
            activations, relevances = _propagate(model, layers, x, targets)
        finally:
            composite.remove()
    return {
        name: torch.einsum("nk,nkhw->nhw", relevances[name].mean(dim=(2, 3)), act)
        for name, act in activations.items()
    }


def _propagate(
    model: nn.Module, layers: Mapping[str, nn.Module], x: torch.Tensor, targets: torch.Tensor
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Forward with the rules attached, then one backward pass; the outputs and relevances."""
    outputs: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = dict.fromkeys(layers, 0)

    def hook_for(name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: object) -> torch.Tensor:
            check_layer_output(name, output)
            calls[name] += 1
            if not output.requires_grad:  # the shallowest layer: the graph starts here
                output = output.detach().requires_grad_(True)
            outputs[name] = output
            # Downstream gets a copy: an in-place change there cannot touch the recorded
            # output, whose gradient is the relevance arriving at the layer.
            return output.clone()

        return hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in layers.items()]
    try:
        with torch.enable_grad():
            logits = model(x.detach())
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                raise HoliwidgetError(
                    "the model must return class scores of shape (N, classes); "
                    "wrap it so that forward() returns the logits"
                )
            missing = [name for name in layers if name not in outputs]
            if missing:
                raise HoliwidgetError(
                    f"layer(s) {', '.join(missing)} did not run in the forward pass; "
                    "choose layers on the path from the input to the output"
                )
            start = initial_relevance(logits.detach(), targets)
            names = list(layers)
            grads = torch.autograd.grad(
                logits, [outputs[n] for n in names], start, allow_unused=True
            )
    finally:
        for handle in handles:
            handle.remove()
    for name, n in calls.items():
        if n > 1:
            warnings.warn(
                f"layer {name!r} ran {n} times in one forward pass; its last call is explained",
                stacklevel=3,
            )
    relevances = {
        n: torch.zeros_like(outputs[n]) if g is None else g
        for n, g in zip(names, grads, strict=True)
    }
    return {n: outputs[n].detach() for n in names}, relevances


def relevancecam_unsupported(model: nn.Module) -> str | None:
    """Why Relevance-CAM cannot explain ``model`` (one line), or None when it can."""
    try:
        relevance_composite(model)
    except HoliwidgetError as exc:
        return str(exc)
    return None


def finish_relevancecam(native: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Relevance-CAM's ending: min-max to [0, 1], then bilinear resize to the input size.

    No ReLU (the map keeps its negative evidence until the min-max). The order is the
    authors': normalise at the layer's resolution, then resize, so a resized map lies in
    [0, 1] but need not reach 0 or 1 exactly. A constant map becomes all zeros.

    Args:
        native: raw maps (N, h, w) from :func:`relevancecam`.
        size: the input (H, W).

    Returns:
        (N, H, W) maps in [0, 1].
    """
    return resize_maps(minmax(native), size).clamp_(0, 1)
