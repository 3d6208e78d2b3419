"""Relevance-CAM: each rule, an independent naive LRP (tests/naive_lrp.py), the
unsupported-architecture error, and the model left as found."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from naive_lrp import naive_relevancecam
from torch import nn
from torchvision import models as tvm
from torchvision.models.resnet import BasicBlock, Bottleneck
from zennit.layer import Sum

from holiwidget.errors import HoliwidgetError
from holiwidget.methods.lrp_rules import AlphaOneBetaZero, PassThrough, PositiveZRule, ZRule
from holiwidget.methods.relevance import finish_relevancecam, initial_relevance, relevancecam

# ----------------------------------------------------------------------------------------
# Tiny torchvision models (real classes, so that the canonizers apply)


class TinyVGG(tvm.VGG):
    """VGG's forward() on a small conv stack with biases and batch norm, and a small head."""

    def __init__(self, batch_norm: bool = True) -> None:
        nn.Module.__init__(self)
        self.features = tvm.vgg.make_layers([8, "M", 16, 16, "M", 32, "M"], batch_norm=batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(32 * 4, 24),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(24, 24),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(24, 10),
        )


def _randomise(model: nn.Module, gain: float = 1.0) -> nn.Module:
    """Random batch-norm statistics and affine parameters and random biases, so that BN is no
    identity (merging it into the convolution would then change the result); ``gain`` scales
    the BN weights (so that ReLU6 saturates)."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5 * gain, 1.5 * gain)
            m.bias.data.uniform_(-0.3, 0.3)
        elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            m.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


def tiny_resnet(block: type = BasicBlock) -> nn.Module:
    torch.manual_seed(0)
    extra = {"width_per_group": 16} if block is Bottleneck else {}
    return _randomise(tvm.ResNet(block, [1, 1, 1, 1], num_classes=10, **extra))


def tiny_vgg(batch_norm: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return _randomise(TinyVGG(batch_norm))


def tiny_mobilenet() -> nn.Module:
    torch.manual_seed(0)
    setting = [[1, 8, 1, 1], [6, 12, 2, 2], [6, 16, 2, 2]]
    model = tvm.MobileNetV2(num_classes=10, width_mult=0.5, inverted_residual_setting=setting)
    return _randomise(model, gain=3.0)  # ReLU6 saturates: 0.1-40 % above 6


MODELS = {
    "resnet_basic": (tiny_resnet, ["layer1", "layer2", "layer3", "layer4"]),
    "resnet_bottleneck": (lambda: tiny_resnet(Bottleneck), ["layer2", "layer4"]),
    "vgg_bn": (tiny_vgg, ["features.3", "features.10", "features.14"]),
    "vgg": (lambda: tiny_vgg(False), ["features.2", "features.7"]),
    "mobilenet": (
        tiny_mobilenet,
        ["features.2.conv.0", "features.3", "features.5.conv.0", "features.6"],
    ),
}


def _input(n: int = 2, size: int = 32, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(3)).to(dtype)


def _layers(model: nn.Module, names: list[str]) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    return {n: modules[n] for n in names}


# ----------------------------------------------------------------------------------------
# Each rule on its own


def _through(rule, module: nn.Module, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Relevance at the input of ``module`` for relevance ``r`` at its output."""
    hook = rule.copy()
    handles = hook.register(module)
    try:
        leaf = x.clone().requires_grad_(True)
        out = module(leaf)
        (rel,) = torch.autograd.grad(out, leaf, r)
    finally:
        handles.remove()
    return rel


def _mixed(*shape: int, seed: int = 5) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("groups", [1, 4])
def test_conv_without_bias_conserves(groups):
    conv = nn.Conv2d(8, 12, 3, stride=2, padding=1, groups=groups, bias=False).double()
    x, r = _mixed(2, 8, 9, 9), _mixed(2, 12, 5, 5)
    rel = _through(AlphaOneBetaZero(), conv, x, r)
    assert rel.shape == x.shape
    w, geo = conv.weight, {"stride": 2, "padding": 1, "groups": groups}
    z = F.conv2d(x.clamp(min=0), w.clamp(min=0), **geo) + F.conv2d(
        x.clamp(max=0), w.clamp(max=0), **geo
    )
    # conserved, except at outputs where every contribution is 0 (Z == 0: S = 0, not NaN)
    kept = (r * (z != 0)).sum(dim=(1, 2, 3))
    torch.testing.assert_close(rel.sum(dim=(1, 2, 3)), kept, rtol=1e-10, atol=1e-10)
    # relevance lands on both signs of x; a zero input gets none
    x0 = x.clone()
    x0[:, :, 4, 4] = 0
    assert (_through(AlphaOneBetaZero(), conv, x0, r)[:, :, 4, 4] == 0).all()


def test_conv_bias_counts_twice():
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, padding=1).double()
    x, r = _mixed(1, 6, 7, 7).abs(), _mixed(1, 5, 7, 7)
    rel = _through(AlphaOneBetaZero(), conv, x, r)
    w = conv.weight
    z = F.conv2d(x.clamp(min=0), w.clamp(min=0), conv.bias, padding=1) + F.conv2d(
        x.clamp(max=0), w.clamp(max=0), conv.bias, padding=1
    )
    bias = conv.bias.view(1, -1, 1, 1)
    # what the bias (counted in both terms) absorbs is missing from the input's relevance
    expected = (r * (z - 2 * bias) / z).sum()
    torch.testing.assert_close(rel.sum(), expected, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(rel.sum(), r.sum(), rtol=1e-3)


def test_linear_ignores_its_bias_and_conserves():
    torch.manual_seed(0)
    linear = nn.Linear(7, 4).double()
    linear.bias.data.fill_(3.0)
    x, r = _mixed(3, 7), _mixed(3, 4)
    rel = _through(AlphaOneBetaZero(), linear, x, r)
    torch.testing.assert_close(rel.sum(1), r.sum(1), rtol=1e-10, atol=1e-10)
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    wp, wn = linear.weight.clamp(min=0), linear.weight.clamp(max=0)
    contrib = xp[:, None] * wp + xn[:, None] * wn  # (N, out, in)
    torch.testing.assert_close(rel, (contrib * (r / contrib.sum(-1))[..., None]).sum(1))


@pytest.mark.parametrize(
    "module",
    [nn.BatchNorm2d(4), nn.ReLU(), nn.ReLU(inplace=True), nn.ReLU6(), nn.Dropout(0.5)],
    ids=["bn", "relu", "relu_inplace", "relu6", "dropout"],
)
def test_pass_through(module):
    module = module.double().eval()
    if isinstance(module, nn.BatchNorm2d):
        module.running_var.fill_(4.0)
        module.weight.data.fill_(3.0)
    x, r = _mixed(2, 4, 3, 3) * 8, _mixed(2, 4, 3, 3)  # ReLU6 saturates some of these
    assert torch.equal(_through(PassThrough(), module, x, r), r)


def test_maxpool_winner_takes_window():
    pool = nn.MaxPool2d(2)
    x = _mixed(1, 2, 4, 4).abs() + 0.1
    x[0, 1, :2, :2] = 0  # an all-zero window: Z == 0, its relevance is dropped
    r = _mixed(1, 2, 2, 2)
    rel = _through(ZRule(), pool, x, r)
    winners = F.max_pool2d(x, 2, return_indices=True)[1]
    expected = torch.zeros(1, 2, 16, dtype=x.dtype).scatter_(2, winners.flatten(2), r.flatten(2))
    expected[0, 1, winners[0, 1, 0, 0]] = 0
    torch.testing.assert_close(rel, expected.view_as(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rel.sum(), r.sum() - r[0, 1, 0, 0])


def test_overlapping_maxpool_conserves():
    pool = nn.MaxPool2d(3, stride=2, padding=1)
    x, r = _mixed(2, 3, 8, 8).abs() + 0.1, _mixed(2, 3, 4, 4)
    rel = _through(ZRule(), pool, x, r)
    torch.testing.assert_close(rel.sum(dim=(1, 2, 3)), r.sum(dim=(1, 2, 3)))


def test_adaptive_avgpool_zrule_on_positive_part():
    pool = nn.AdaptiveAvgPool2d((1, 1))
    x, r = _mixed(2, 3, 5, 5), _mixed(2, 3, 1, 1)
    rel = _through(PositiveZRule(), pool, x, r)
    torch.testing.assert_close(rel.sum(dim=(2, 3)), r.flatten(2).sum(2))  # per channel
    assert (rel[x <= 0] == 0).all()
    xp = x.clamp(min=0)
    torch.testing.assert_close(rel, xp * r / xp.sum(dim=(2, 3), keepdim=True))


def test_residual_sum_split():
    a, b, r = _mixed(2, 3, 4, 4, seed=1), _mixed(2, 3, 4, 4, seed=2), _mixed(2, 3, 4, 4)
    b[0, 0, 0, 0] = -a[0, 0, 0, 0]  # out == 0 there: no relevance, no NaN
    rel = _through(ZRule(), Sum(), torch.stack([a, b], dim=-1), r)
    out = a + b
    zero = out == 0
    assert zero.sum() == 1 and (rel[zero] == 0).all()
    torch.testing.assert_close(rel[..., 0][~zero], (a * r / out)[~zero])
    torch.testing.assert_close(rel[..., 1][~zero], (b * r / out)[~zero])
    torch.testing.assert_close(rel.sum(-1), r.masked_fill(zero, 0))


def test_initial_relevance_is_contrastive():
    r = initial_relevance(torch.zeros(2, 5), torch.tensor([1, 4]))
    assert torch.equal(r[0], torch.tensor([-0.2, 1.0, -0.2, -0.2, -0.2]))
    assert r[1, 4] == 1 and (r[1, :4] == -0.2).all()
    with pytest.raises(HoliwidgetError, match="outside the model's 5 classes"):
        initial_relevance(torch.zeros(1, 5), torch.tensor([5]))


@pytest.mark.parametrize("case", list(MODELS))
def test_matches_naive_lrp(case):
    make, names = MODELS[case]
    model = make().double()
    x = _input(2, dtype=torch.float64)
    targets = torch.tensor([3, 7])
    ours = relevancecam(model, _layers(model, names), x, targets)
    naive = naive_relevancecam(model, names, x, targets)
    assert list(ours) == names
    for name in names:
        assert ours[name].shape == naive[name].shape
        scale = naive[name].abs().max()
        assert scale > 0
        torch.testing.assert_close(ours[name], naive[name], rtol=1e-5, atol=1e-5 * float(scale))


def test_batch_norm_is_not_merged():
    """Merging BN into the convolution (zennit's standard canonizers) changes the maps."""
    from zennit.canonizers import SequentialMergeBatchNorm

    model = tiny_vgg().double()
    x, targets = _input(1, dtype=torch.float64), torch.tensor([2])
    layers = _layers(model, ["features.3"])
    ours = relevancecam(model, layers, x, targets)["features.3"]
    merge = SequentialMergeBatchNorm()
    handles = merge.apply(model)
    try:
        merged = relevancecam(model, layers, x, targets)["features.3"]
    finally:
        for handle in handles:
            handle.remove()
    assert not torch.allclose(ours, merged, rtol=1e-3)


@pytest.mark.parametrize("case", ["resnet_basic", "mobilenet", "vgg_bn"])
def test_batch_equals_one_at_a_time(case):
    make, names = MODELS[case]
    model = make()
    x = _input(3)
    targets = torch.tensor([1, 5, 9])
    batch = relevancecam(model, _layers(model, names), x, targets)
    for i in range(3):
        single = relevancecam(model, _layers(model, names), x[i : i + 1], targets[i : i + 1])
        for name in names:
            scale = float(batch[name][i].abs().max())
            torch.testing.assert_close(
                single[name][0], batch[name][i], rtol=1e-4, atol=1e-5 * scale
            )


def test_one_propagation_serves_every_layer():
    """All layers of one call (in any order) equal one call per layer."""
    make, names = MODELS["resnet_basic"]
    model = make()
    x, targets = _input(2), torch.tensor([1, 2])
    order = names[::-1]
    together = relevancecam(model, _layers(model, order), x, targets)
    assert list(together) == order
    for name in names:
        alone = relevancecam(model, _layers(model, [name]), x, targets)[name]
        torch.testing.assert_close(together[name], alone, rtol=1e-5, atol=0)


# ----------------------------------------------------------------------------------------
# Unsupported models, and the model left as found


class _Functional(tvm.ResNet):
    def forward(self, x):
        return super().forward(x) + 0


def test_unsupported_architecture(tiny):
    x, t = _input(1), torch.tensor([0])
    with pytest.raises(HoliwidgetError, match=r"^relevancecam has no LRP canonizer for TinyCNN"):
        relevancecam(tiny, {"stage3": tiny.stage3}, x, t)
    torch.manual_seed(0)
    changed = _Functional(BasicBlock, [1, 1, 1, 1], num_classes=10)
    with pytest.raises(HoliwidgetError, match=r"no LRP canonizer for _Functional.*supported: "):
        relevancecam(changed, {"layer4": changed.layer4}, x, t)
    vgg = tiny_vgg()
    vgg.classifier[1] = nn.GELU()
    with pytest.raises(HoliwidgetError, match=r"no LRP rule for GELU at 'classifier.1'"):
        relevancecam(vgg, {"features.3": vgg.features[3]}, x, t)
    for model in (tiny, changed, vgg):
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def _state(model: nn.Module) -> dict:
    return {
        "tensors": {k: v.clone() for k, v in model.state_dict().items()},
        "params": [(p, p.requires_grad) for p in model.parameters()],
        "modes": [(m, m.training) for m in model.modules()],
        "modules": [(n, type(m)) for n, m in model.named_modules()],
    }


def _assert_as_found(model: nn.Module, before: dict) -> None:
    after = model.state_dict()
    assert list(after) == list(before["tensors"])
    for key, value in before["tensors"].items():
        assert torch.equal(after[key], value), key  # bit-identical
    assert [(p, p.requires_grad) for p in model.parameters()] == before["params"]
    assert all(p.grad is None for p in model.parameters())
    assert [(m, m.training) for m in model.modules()] == before["modes"]
    assert [(n, type(m)) for n, m in model.named_modules()] == before["modules"]
    for m in model.modules():
        assert not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks), m
        assert "forward" not in vars(m), m  # canonizers' forward overrides removed


@pytest.mark.parametrize("case", ["resnet_basic", "resnet_bottleneck", "mobilenet", "vgg_bn"])
def test_model_left_as_found(case):
    make, names = MODELS[case]
    model = make().train()
    next(model.parameters()).requires_grad_(False)  # a mix of flags, restored as found
    before = _state(model)
    relevancecam(model, _layers(model, names), _input(2), torch.tensor([0, 1]))
    _assert_as_found(model, before)
    # ... also when the pass raises: after the forward (bad target) and inside it (bad layer)
    with pytest.raises(HoliwidgetError, match="outside the model"):
        relevancecam(model, _layers(model, names), _input(1), torch.tensor([10]))
    _assert_as_found(model, before)
    last = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    with pytest.raises(HoliwidgetError, match="does not output an"):
        relevancecam(model, _layers(model, [names[0], last]), _input(1), torch.tensor([0]))
    _assert_as_found(model, before)


def test_finish_relevancecam():
    native = torch.tensor([[[-1.0, 0.0], [1.0, 3.0]], [[2.0, 2.0], [2.0, 2.0]]])
    out = finish_relevancecam(native, (8, 8))
    assert out.shape == (2, 8, 8)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out[1], torch.zeros(8, 8))  # constant -> zeros
    # min-max first (the negative evidence is kept: no ReLU), then bilinear resize
    expected = F.interpolate(
        ((native[:1] + 1) / 4)[:, None], size=(8, 8), mode="bilinear", align_corners=False
    )[:, 0]
    torch.testing.assert_close(out[:1], expected)
