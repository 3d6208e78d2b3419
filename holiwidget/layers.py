"""Which layers to explain: names, the holistic stage of known networks, and a general rule."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torchvision import models as tvm

from .capture import model_device, prepared
from .errors import HoliwidgetError

__all__ = ["check_layer_sizes", "holistic_stage", "probe_outputs", "resolve_layers"]

# Spec section 6: the post-ReLU6 expansion output of the last block of each resolution stage.
_MOBILENET_V2 = ("features.3.conv.0", "features.6.conv.0", "features.13.conv.0", "features.18")


def holistic_stage(model: nn.Module, input_size: tuple[int, int] = (224, 224)) -> list[str]:
    """The four layers whose outputs Holistic-CAM explains ("the holistic stage").

    ResNet family: ``layer1`` .. ``layer4``. VGG: the outputs of the second to fifth max-pool
    (``features.9, .16, .23, .30`` for vgg16; ``features.13, .23, .33, .43`` for vgg16_bn).
    MobileNetV2: the post-ReLU6 expansion outputs ``features.3.conv.0``, ``features.6.conv.0``,
    ``features.13.conv.0`` and ``features.18``. Any other CNN: the last non-negative
    (post-activation) output of each of its last four spatial-resolution stages, found by one
    probe pass on a blank input.

    Args:
        model: the network.
        input_size: the input (H, W) used by the probe pass.

    Returns:
        Dotted module names, shallowest first.
    """
    if isinstance(model, tvm.ResNet):
        return ["layer1", "layer2", "layer3", "layer4"]
    if isinstance(model, tvm.VGG):
        pools = [
            f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)
        ]
        return pools[1:5]
    if isinstance(model, tvm.MobileNetV2):
        return list(_MOBILENET_V2)
    return _stage_outputs(model, input_size)


def probe_outputs(
    model: nn.Module, input_size: tuple[int, int] = (224, 224)
) -> list[tuple[str, int, tuple[int, int], bool]]:
    """One probe pass (a fixed random input) listing every named module's 4-D output.

    Args:
        model: the network; its modes are restored afterwards.
        input_size: the input (H, W).

    Returns:
        ``(name, storage id, (h, w), non-negative)`` per call, in the order the calls
        finished (a block after its last layer). Modules that share one output tensor (a
        block and its last in-place activation) share the storage id.
    """
    seen: list[tuple[str, torch.Tensor, bool]] = []

    def hook_for(name: str):
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                # Kept alive until the pass ends, so that storage ids stay unique.
                seen.append((name, output, bool(output.min() >= 0)))

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in model.named_modules() if n]
    generator = torch.Generator().manual_seed(0)
    try:
        with prepared(model) as m, torch.no_grad():
            m(torch.randn(1, 3, *input_size, generator=generator).to(model_device(m)))
    finally:
        for h in handles:
            h.remove()
    return [(n, t.data_ptr(), tuple(t.shape[-2:]), nonneg) for n, t, nonneg in seen]


def _stage_outputs(model: nn.Module, input_size: tuple[int, int]) -> list[str]:
    """Last non-negative 4-D output of each of the last four spatial resolutions."""
    seen = [(name, hw, nonneg) for name, _, hw, nonneg in probe_outputs(model, input_size)]
    stages: dict[tuple[int, int], str] = {}
    for name, hw, nonneg in seen:
        if nonneg and min(hw) > 1:
            stages.pop(hw, None)
            stages[hw] = name
    chosen = list(stages.values())[-4:]
    if not chosen:
        raise HoliwidgetError(
            "found no non-negative convolutional output to explain; pass layers= by name"
        )
    return chosen


def resolve_layers(model: nn.Module, layers: str | Sequence[str]) -> dict[str, nn.Module]:
    """Map layer names (or ``"auto"``) to the model's modules.

    Args:
        model: the network.
        layers: ``"auto"`` for :func:`holistic_stage`, one dotted name, a comma-separated
            string of names, or a sequence of names.

    Returns:
        name -> module, in the order given.

    Raises:
        HoliwidgetError: for an unknown name, listing the closest valid names.
    """
    if isinstance(layers, str):
        names = (
            holistic_stage(model) if layers == "auto" else [n.strip() for n in layers.split(",")]
        )
    else:
        names = list(layers)
    if not names or any(not isinstance(n, str) or not n for n in names):
        raise HoliwidgetError(
            "layers must be 'auto' or non-empty dotted module names, e.g. 'layer4'"
        )
    if len(set(names)) != len(names):
        raise HoliwidgetError(f"layers {names} name a layer twice; give each layer once")
    modules = dict(model.named_modules())
    resolved = {}
    for name in names:
        if name not in modules or name == "":
            close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
            hint = f"closest: {', '.join(close)}" if close else "see model.named_modules()"
            raise HoliwidgetError(f"unknown layer {name!r} ({hint})")
        resolved[name] = modules[name]
    return resolved


# The side that files, PIL images and arrays are resized to (see holiwidget.images).
_RESIZED = 224
#: The fewest pixels (each side) an explained layer must keep: a 1-pixel map is constant,
#: and every CAM of it would be all zeros.
_MIN_LAYER_SIDE = 2


def _smallest_side(model: nn.Module, modules: dict[str, nn.Module], device: torch.device) -> int:
    """The smallest side s of a square input for which every layer keeps at least
    ``_MIN_LAYER_SIDE`` pixels each way, by bisection over probe passes (0 if even 1792 is
    not enough). Only run to word an error."""

    def keeps(side: int) -> bool:
        sides: dict[str, int] = {}

        def hook_for(name: str) -> Callable:
            def hook(module: nn.Module, inputs: tuple, output: object) -> None:
                if isinstance(output, torch.Tensor) and output.dim() == 4:
                    sides[name] = min(output.shape[-2:])

            return hook

        handles = [m.register_forward_hook(hook_for(n)) for n, m in modules.items()]
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, side, side, device=device))
        except RuntimeError:  # too small for the model itself (a pooling window, say)
            return False
        finally:
            for handle in handles:
                handle.remove()
        return len(sides) == len(modules) and min(sides.values()) >= _MIN_LAYER_SIDE

    low, high = 1, _RESIZED
    while not keeps(high):
        low, high = high, 2 * high
        if high > 2048:
            return 0
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if keeps(mid) else (mid, high)
    return high


def check_layer_sizes(
    model: nn.Module,
    modules: dict[str, nn.Module],
    activations: dict[str, torch.Tensor],
    x: torch.Tensor,
) -> None:
    """A one-line error if an explained layer keeps fewer than 2 x 2 pixels of input ``x``,
    naming the smallest input that would do."""
    small = [
        (n, tuple(a.shape[-2:]))
        for n, a in activations.items()
        if min(a.shape[-2:]) < _MIN_LAYER_SIDE
    ]
    if not small:
        return
    # the layer that keeps the fewest pixels (of those, the last given: the deepest, usually)
    name, (h, w) = min(reversed(small), key=lambda item: min(item[1]))
    side = _smallest_side(model, modules, x.device)
    need = f"give inputs of at least {side}x{side} pixels" if side else "explain shallower layers"
    raise HoliwidgetError(
        f"input {x.shape[-2]}x{x.shape[-1]} is too small: layer {name!r} keeps {h}x{w} "
        f"pixels (a map needs at least {_MIN_LAYER_SIDE}x{_MIN_LAYER_SIDE}); {need} (files, PIL "
        f"images and arrays are resized to {_RESIZED}x{_RESIZED})"
    )
