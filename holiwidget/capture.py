"""Hook handling: one forward and one backward pass that record layer outputs and gradients.

The gradients are taken with respect to the recorded layer outputs only. While a model is
prepared (:func:`prepared`), its parameters do not require gradients, so autograd builds the
graph from the shallowest recorded output onwards and the backward pass stops there: no
parameter gradient is computed and nothing lands in ``.grad``.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .devices import DEVICE_TYPES, resolve_device
from .errors import HoliwidgetError, warn

__all__ = ["PassRecord", "check_layer_output", "model_device", "prepared", "record_pass"]

log = logging.getLogger(__name__)


def check_layer_output(name: str, output: object) -> None:
    """A one-line error unless a recorded layer's output is an (N, K, h, w) tensor."""
    if not isinstance(output, torch.Tensor) or output.dim() != 4:
        raise HoliwidgetError(
            f"layer {name!r} does not output an (N, K, h, w) tensor; "
            "explain a convolutional layer or block instead"
        )


def model_device(model: nn.Module) -> torch.device:
    """Where a model's parameters live (the CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@contextlib.contextmanager
def prepared(model: nn.Module, device: torch.device | None = None) -> Iterator[nn.Module]:
    """Put a model in evaluation mode with frozen parameters, on ``device``; restore all after.

    Every module's ``training`` flag, every parameter's ``requires_grad`` flag and the
    model's device are put back as they were, also when the body raises. This is the one
    way holiwidget borrows a user's model. The model is only moved between devices it can
    come back from (see :func:`holiwidget.devices.resolve_device`): a model whose weights
    are on the ``meta`` device (no values) is refused, and so is such a ``device``.

    Args:
        model: the network.
        device: where to run it (None: where it is).

    Yields:
        The same model, ready for :func:`record_pass`.

    Raises:
        HoliwidgetError: for a model or device that cannot run (nothing is moved then).
    """
    home = model_device(model)
    if home.type not in DEVICE_TYPES:
        raise HoliwidgetError(
            f"the model's weights are on the {home.type!r} device, where they cannot run; "
            "move the model to the CPU (or CUDA) with its real weights loaded first"
        )
    if device is not None:
        device = resolve_device(device)
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        if device is not None:
            model.to(device)
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        model.to(home)
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


@dataclass
class PassRecord:
    """What one pass recorded.

    Attributes:
        logits: the model's output, (N, classes), detached.
        targets: the class explained for each image, (N,) int64.
        activations: layer name -> output (N, K, h, w), detached.
        gradients: layer name -> d(logit of the target)/d(output), same shapes; empty when the
            pass ran without gradients.
    """

    logits: torch.Tensor
    targets: torch.Tensor
    activations: dict[str, torch.Tensor]
    gradients: dict[str, torch.Tensor]


def record_pass(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    x: torch.Tensor,
    choose_targets: Callable[[torch.Tensor], torch.Tensor],
    *,
    gradients: bool = True,
    saving: contextlib.AbstractContextManager | None = None,
) -> PassRecord:
    """Run one forward (and, if asked, one backward) pass recording the given layers.

    A recorded output goes on through the network as it is, unless an operation downstream
    changes it in place (``ReLU(inplace=True)``, ``out += identity``): the pass notices that
    from the tensor's version counter (or from autograd's refusal to modify a leaf), runs again
    with a copy handed downstream instead, and remembers the module, so that recorded values
    and gradients are always those of the layer's own output. A module called several times
    in one forward pass is recorded at its last call. Hooks are removed even when the pass
    raises.

    Args:
        model: a model inside :func:`prepared`.
        layers: name -> module to record.
        x: the input batch (N, 3, H, W) on the model's device.
        choose_targets: maps the detached logits to the class index of each image.
        gradients: whether to run the backward pass.
        saving: a context around the forward and backward passes for what autograd saves
            (see :mod:`holiwidget.saved`: counted, or kept on disk); None keeps it in memory.

    Returns:
        The recorded logits, targets, activations and gradients.
    """
    while True:
        try:
            with saving if saving is not None else contextlib.nullcontext():
                return _record(model, layers, x, choose_targets, gradients)
        except _ChangedInPlaceError as changed:
            for name in changed.names:
                log.debug("layer %r is changed in place downstream: it is copied", name)
                _COPY_OUTPUT.add(layers[name])


# Modules whose output an operation downstream changes in place: handed on as a copy.
_COPY_OUTPUT: weakref.WeakSet[nn.Module] = weakref.WeakSet()


class _ChangedInPlaceError(Exception):
    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


def _record(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    x: torch.Tensor,
    choose_targets: Callable[[torch.Tensor], torch.Tensor],
    gradients: bool,
) -> PassRecord:
    """One pass of :func:`record_pass`; raises :class:`_ChangedInPlaceError` for shared outputs."""
    outputs: dict[str, torch.Tensor] = {}
    versions: dict[str, int] = {}
    leaves: set[str] = set()
    calls: dict[str, int] = dict.fromkeys(layers, 0)

    def hook_for(name: str, copy: bool) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: object) -> torch.Tensor:
            check_layer_output(name, output)
            calls[name] += 1
            if gradients and not output.requires_grad:
                output = output.detach().requires_grad_(True)
                leaves.add(name)
            outputs[name] = output
            if copy:
                return output.clone()
            versions[name] = output._version
            return output

        return hook

    handles = [
        module.register_forward_hook(hook_for(name, module in _COPY_OUTPUT))
        for name, module in layers.items()
    ]
    try:
        with torch.enable_grad() if gradients else torch.no_grad():
            try:
                logits = model(x)
            except RuntimeError as error:
                # autograd refuses to change a leaf that requires grad in place: which of the
                # shared leaves it was, the message does not say
                shared = sorted(leaves & set(versions))
                if shared and "in-place" in str(error):
                    raise _ChangedInPlaceError(shared) from error
                raise
            changed = [n for n, v in versions.items() if outputs[n]._version != v]
            if changed:
                raise _ChangedInPlaceError(changed)
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                raise HoliwidgetError(
                    "the model must return class scores of shape (N, classes); "
                    "wrap it so that forward() returns the logits"
                )
            missing = [name for name, n in calls.items() if n == 0]
            if missing:
                raise HoliwidgetError(
                    f"layer(s) {', '.join(missing)} did not run in the forward pass; "
                    "choose layers on the path from the input to the output"
                )
            targets = choose_targets(logits.detach())
            grads: dict[str, torch.Tensor] = {}
            if gradients:
                grads = _gradients(logits, targets, outputs)
    finally:
        for handle in handles:
            handle.remove()
    for name, n in calls.items():
        if n > 1:
            warn(f"layer {name!r} ran {n} times in one forward pass; its last call is explained")
    acts = {name: out.detach() for name, out in outputs.items()}
    return PassRecord(logits.detach(), targets, acts, grads)


def _gradients(
    logits: torch.Tensor, targets: torch.Tensor, outputs: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """d(sum over images of the target logit) / d(each recorded output)."""
    score = logits.gather(1, targets.view(-1, 1)).sum()
    names = list(outputs)
    if not score.requires_grad:
        return {name: torch.zeros_like(outputs[name]) for name in names}
    grads = torch.autograd.grad(score, [outputs[n] for n in names], allow_unused=True)
    return {
        name: torch.zeros_like(outputs[name]) if g is None else g
        for name, g in zip(names, grads, strict=True)
    }
