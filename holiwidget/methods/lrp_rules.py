"""LRP rules, canonizers and composites (zennit) reproducing the Relevance-CAM authors' code.

Relevance-CAM (Lee et al. 2021) propagates relevance with its own layer rules, which differ
from zennit's built-in ones in small ways; the rules here follow the released code (see
``spec/baselines-and-metrics.md``, "Relevance-CAM, exactly"):

- :class:`AlphaOneBetaZero` on ``Conv2d`` and ``Linear``: with ``x+ = max(x, 0)``,
  ``x- = min(x, 0)``, ``w+ = max(w, 0)``, ``w- = min(w, 0)``::

      Z    = f(x+, w+) + f(x-, w-)          (a convolution adds its bias in BOTH terms)
      S    = R / Z                          (0 where Z == 0, no stabiliser)
      R_in = x+ * f'(w+)^T S + x- * f'(w-)^T S

  A linear layer leaves its bias out of ``f``. (zennit's ``AlphaBeta(1, 0)`` puts only the
  bias' positive part in the positive term and shifts ``Z`` by a signed epsilon.)
- :class:`ZRule` on ``MaxPool2d`` (the winner of each window takes the window's relevance)
  and on the residual additions (zennit's ``Sum``): ``R_in = x * f'(x)^T (R / f(x))``.
- :class:`PositiveZRule` on ``AdaptiveAvgPool2d``: the same on ``max(x, 0)``.
- :class:`PassThrough` on ``BatchNorm2d``, ``ReLU``, ``ReLU6`` and ``Dropout``: ``R_in = R``.
  BatchNorm is therefore NOT merged into the convolution before it (zennit's
  ``ResNetCanonizer`` / ``VGGCanonizer`` would merge it, which changes alpha-beta's result).
- A convolution on 3 input channels (the stem, on the image) gets no rule: relevance is only
  needed at the explained layers, which are never the input.

Residual additions are made modules by canonizers: zennit's ``ResNetBasicBlockCanonizer`` and
``ResNetBottleneckCanonizer`` (without their batch-norm merge) and
:class:`MobileNetV2Canonizer` for torchvision's ``InvertedResidual`` (``x + self.conv(x)``)
and MobileNetV2's functional average pool.

zennit's ``Composite`` assigns the rules and applies and reverts the canonizers. The rules
are zennit hooks (:class:`LRPRule`) that do not use zennit's gradient hooks: those let
autograd compute each module's ordinary input gradient and then overwrite it (twice the
backward work, and a copy of every module input); here the relevance is the module's
backward itself (see :class:`LRPRule`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import mobilenetv2 as tv_mobilenet
from torchvision.models import resnet as tv_resnet
from torchvision.models import vgg as tv_vgg
from zennit.canonizers import AttributeCanonizer, Canonizer, CompositeCanonizer
from zennit.core import Composite, Hook, RemovableHandle, RemovableHandleList
from zennit.layer import Sum
from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

from ..errors import HoliwidgetError

__all__ = [
    "AlphaOneBetaZero",
    "LRPRule",
    "MobileNetV2Canonizer",
    "PassThrough",
    "PositiveZRule",
    "ZRule",
    "relevance_composite",
]

SUPPORTED = "torchvision ResNet, VGG, MobileNetV2"


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator``, 0 where the denominator is 0."""
    return (numerator / denominator).masked_fill_(denominator == 0, 0)


class _RuleFunction(torch.autograd.Function):
    """A module's forward whose backward is an LRP rule instead of the module's gradient."""

    @staticmethod
    def forward(ctx, rule: LRPRule, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        # an in-place module works on a copy: x stays intact for the other rules that read it
        out = type(module).forward(module, x.clone() if getattr(module, "inplace", False) else x)
        if out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
            out = out.clone()  # an identity (eval-mode Dropout) must not hand on x itself
        ctx.rule, ctx.module = rule, module
        ctx.save_for_backward(x if rule.needs_input else None)
        return out

    @staticmethod
    def backward(ctx, relevance: torch.Tensor) -> tuple:
        (x,) = ctx.saved_tensors
        return None, None, ctx.rule.relevance(ctx.module, x, relevance)


class _RestoreForward:
    """Handle that takes a rule's forward override off its module again."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def remove(self) -> None:
        if "forward" in vars(self.module):
            del self.module.forward


class LRPRule(Hook):
    """Base of the rules here: the rule's relevance takes the place of the module's gradient.

    zennit's own hooks let autograd compute the module's ordinary input gradient and then
    overwrite it with the relevance, and copy every module input; here ``register`` gives
    the module an instance-level ``forward`` that runs the original forward inside an autograd
    function whose backward is :meth:`relevance`: one computation per module in the backward
    pass, no copies. ``remove`` (through the composite) deletes the override. Rules ignore
    zennit's ``Composite.inactive``.
    """

    #: Whether :meth:`relevance` reads the module's input (saved for the backward pass).
    needs_input = True

    def register(self, module: nn.Module) -> RemovableHandleList:
        """Attach the rule to ``module`` (which must not have its own instance ``forward``)."""
        if "forward" in vars(module):
            raise HoliwidgetError(
                f"cannot attach an LRP rule to a {type(module).__name__} whose forward is "
                "already overridden on the instance; remove the override first"
            )

        def forward(x: torch.Tensor) -> torch.Tensor:
            return _RuleFunction.apply(self, module, x)

        module.forward = forward
        return RemovableHandleList([RemovableHandle(self), _RestoreForward(module)])

    def relevance(self, module: nn.Module, x: torch.Tensor | None, r: torch.Tensor) -> torch.Tensor:
        """The relevance of the module's input from the relevance ``r`` of its output.

        Args:
            module: the module.
            x: its input (``None`` unless :attr:`needs_input`).
            r: relevance at its output.
        """
        raise NotImplementedError


class PassThrough(LRPRule):
    """``R_in = R``: BatchNorm, ReLU, ReLU6, Dropout (the module's own gradient is ignored)."""

    needs_input = False

    def relevance(self, module: nn.Module, x: torch.Tensor | None, r: torch.Tensor) -> torch.Tensor:
        """The relevance, unchanged."""
        return r


class AlphaOneBetaZero(LRPRule):
    """Alpha-beta with alpha = 1, beta = 0, as the Relevance-CAM authors compute it.

    ``Z = f(x+, w+) + f(x-, w-)``, ``S = R / Z`` (0 where ``Z == 0``),
    ``R_in = x+ * f'(w+)^T S + x- * f'(w-)^T S``. ``Conv2d``: the bias is added in both terms
    (twice in ``Z``); ``Linear``: no bias. When the input has no negative entry (after a
    ReLU), the ``x-`` term is skipped: it is zero.
    """

    def relevance(self, module: nn.Module, x: torch.Tensor | None, r: torch.Tensor) -> torch.Tensor:
        """Alpha-beta relevance of the input."""
        if isinstance(module, nn.Linear):
            return _linear_relevance(module, x, r)
        return _conv_relevance(module, x, r)


def _linear_relevance(module: nn.Linear, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    w = module.weight.detach()
    wp, xp = w.clamp(min=0), x.clamp(min=0)
    negative = bool((x < 0).any())
    z = xp @ wp.T
    if negative:
        wn, xn = w.clamp(max=0), x.clamp(max=0)
        z = z + xn @ wn.T
    s = _safe_divide(r, z)
    relevance = xp * (s @ wp)
    if negative:
        relevance = relevance + xn * (s @ wn)
    return relevance


def _conv_relevance(module: nn.Conv2d, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    w = module.weight.detach()
    b = None if module.bias is None else module.bias.detach()
    geometry = {
        "stride": module.stride,
        "padding": module.padding,
        "dilation": module.dilation,
        "groups": module.groups,
    }
    wp, xp = w.clamp(min=0), x.clamp(min=0)
    negative = bool((x < 0).any())
    z = F.conv2d(xp, wp, b, **geometry)
    if negative:
        wn, xn = w.clamp(max=0), x.clamp(max=0)
        z = z + F.conv2d(xn, wn, b, **geometry)
    elif b is not None:
        z = z + b.view(1, -1, 1, 1)  # f(0, w-) is the bias alone
    s = _safe_divide(r, z)
    relevance = xp * torch.nn.grad.conv2d_input(x.shape, wp, s, **geometry)
    if negative:
        relevance = relevance + xn * torch.nn.grad.conv2d_input(x.shape, wn, s, **geometry)
    return relevance


class ZRule(LRPRule):
    """z-rule through a parameter-free module ``f``: ``R_in = x * f'(x)^T (R / f(x))``.

    ``S = R / f(x)`` is 0 where ``f(x) == 0``. On a max-pool the winner of each window takes
    the window's relevance; on a residual sum (zennit's ``Sum`` over a stacked last axis)
    each addend gets its share ``addend / out``.
    """

    #: Whether the rule sees ``max(x, 0)`` instead of ``x``.
    positive = False

    def relevance(self, module: nn.Module, x: torch.Tensor | None, r: torch.Tensor) -> torch.Tensor:
        """z-rule relevance of the input."""
        if self.positive:
            x = x.clamp(min=0)
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            z = type(module).forward(module, leaf)  # the class's forward, not the rule's
            (gradient,) = torch.autograd.grad(z, leaf, _safe_divide(r, z.detach()))
        return x * gradient


class PositiveZRule(ZRule):
    """z-rule on ``max(x, 0)``: ``R_in = x+ * f'(x+)^T (R / f(x+))`` (adaptive average pool)."""

    positive = True


class MobileNetV2Canonizer(CompositeCanonizer):
    """Makes MobileNetV2's additions and pooling modules, so that rules can attach to them.

    torchvision's ``InvertedResidual`` returns ``x + self.conv(x)``; here it returns
    ``canonizer_sum(stack([x, conv(x)], -1))`` (zennit's ``Sum``). ``MobileNetV2`` pools with
    ``nn.functional.adaptive_avg_pool2d``; here with an ``AdaptiveAvgPool2d`` module
    ``canonizer_pool``. Removing the canonizer deletes both attributes and the forward
    overrides; no parameter is touched.
    """

    def __init__(self) -> None:
        super().__init__(
            (
                AttributeCanonizer(self._residual_attributes),
                AttributeCanonizer(self._pool_attributes),
            )
        )

    @staticmethod
    def _residual_attributes(name: str, module: nn.Module) -> dict | None:
        if isinstance(module, tv_mobilenet.InvertedResidual) and module.use_res_connect:
            return {"forward": _residual_forward.__get__(module), "canonizer_sum": Sum()}
        return None

    @staticmethod
    def _pool_attributes(name: str, module: nn.Module) -> dict | None:
        if isinstance(module, tv_mobilenet.MobileNetV2):
            return {
                "forward": _mobilenet_forward.__get__(module),
                "canonizer_pool": nn.AdaptiveAvgPool2d((1, 1)),
            }
        return None


def _residual_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return self.canonizer_sum(torch.stack([x, self.conv(x)], dim=-1))


def _mobilenet_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = self.canonizer_pool(self.features(x))
    return self.classifier(torch.flatten(x, 1))


# The torchvision network classes whose forward() the canonizers know, with the blocks
# (containers with their own forward) they may hold.
_FAMILIES: tuple[tuple[type[nn.Module], tuple[str, ...], tuple[type[nn.Module], ...]], ...] = (
    (tv_resnet.ResNet, ("forward", "_forward_impl"), (tv_resnet.BasicBlock, tv_resnet.Bottleneck)),
    (tv_vgg.VGG, ("forward",), ()),
    (tv_mobilenet.MobileNetV2, ("forward", "_forward_impl"), (tv_mobilenet.InvertedResidual,)),
)

_PASS_TYPES = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Dropout)
_LEAF_TYPES = (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AdaptiveAvgPool2d, *_PASS_TYPES)


def _rule_for(ctx: dict, name: str, module: nn.Module) -> Hook | None:
    kind = type(module)
    if kind is nn.Conv2d:
        return None if module.in_channels == 3 else AlphaOneBetaZero()
    if kind is nn.Linear:
        return AlphaOneBetaZero()
    if kind in _PASS_TYPES:
        return PassThrough()
    if kind in (nn.MaxPool2d, Sum):
        return ZRule()
    if kind is nn.AdaptiveAvgPool2d:
        return PositiveZRule()
    return None


def _same_methods(kind: type, base: type, names: tuple[str, ...]) -> bool:
    return all(getattr(kind, n, None) is getattr(base, n) for n in names)


def _check_supported(model: nn.Module) -> list[Canonizer]:
    """The canonizers the model needs; raises for a model the rules would explain wrongly."""
    kind = type(model)
    family = next((f for f in _FAMILIES if isinstance(model, f[0])), None)
    if family is None or not _same_methods(kind, family[0], family[1]):
        raise HoliwidgetError(
            f"relevancecam has no LRP canonizer for {kind.__name__} (its forward() may add or "
            f"pool tensors outside modules); supported: {SUPPORTED}"
        )
    base, _, blocks = family
    for name, module in model.named_modules():
        if module is model:
            continue
        sub = type(module)
        if any(isinstance(module, b) for b in blocks):
            block = next(b for b in blocks if isinstance(module, b))
            if not _same_methods(sub, block, ("forward",)):
                raise HoliwidgetError(
                    f"relevancecam has no LRP canonizer for {sub.__name__} at {name!r} (a "
                    f"changed forward()); supported: {SUPPORTED}"
                )
        elif isinstance(module, nn.Sequential):
            if sub.forward is not nn.Sequential.forward:
                raise HoliwidgetError(
                    f"relevancecam has no LRP canonizer for {sub.__name__} at {name!r} (a "
                    f"changed forward()); supported: {SUPPORTED}"
                )
        elif sub not in _LEAF_TYPES:
            raise HoliwidgetError(
                f"relevancecam has no LRP rule for {sub.__name__} at {name!r}; supported "
                "layers: Conv2d, Linear, BatchNorm2d, ReLU, ReLU6, Dropout, MaxPool2d, "
                "AdaptiveAvgPool2d"
            )
        elif sub is nn.Conv2d and (
            module.padding_mode != "zeros" or isinstance(module.padding, str)
        ):
            raise HoliwidgetError(
                f"relevancecam needs zero padding given in pixels, but {name!r} has "
                f"padding={module.padding!r}, padding_mode={module.padding_mode!r}"
            )
    if base is tv_resnet.ResNet:
        return [ResNetBasicBlockCanonizer(), ResNetBottleneckCanonizer()]
    if base is tv_mobilenet.MobileNetV2:
        return [MobileNetV2Canonizer()]
    return []


def relevance_composite(model: nn.Module) -> Composite:
    """The zennit composite (rules and canonizers) of Relevance-CAM for one model.

    Args:
        model: a torchvision ResNet (BasicBlock or Bottleneck), VGG (with or without batch
            norm) or MobileNetV2, or a subclass that keeps their forward() methods.

    Returns:
        A composite, not yet registered: ``register(model)`` applies the canonizers and the
        rules, ``remove()`` undoes both.

    Raises:
        HoliwidgetError: for any other architecture, or a layer without a rule.
    """
    return Composite(module_map=_rule_for, canonizers=_check_supported(model))
