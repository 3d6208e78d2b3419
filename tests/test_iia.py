"""IIA against a naive loop over the 11 scaled inputs, batching, and the model left as found."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm
from torchvision.models.resnet import BasicBlock

from holiwidget.errors import HoliwidgetError
from holiwidget.methods.iia import IIA_STEPS, finish_iia, iia


def _input(n: int, size: int = 32, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(7)).to(dtype)


def _resnet() -> nn.Module:
    """BasicBlocks: ``out += identity`` and in-place ReLUs change recorded outputs in place."""
    torch.manual_seed(0)
    return tvm.ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10).eval()


def _keeper(outputs: dict, name: str):
    def hook(module, inputs, output):
        outputs[name] = output
        return output.clone()  # what follows may change its input in place

    return hook


def naive_iia(model: nn.Module, names: list[str], x: torch.Tensor, targets: torch.Tensor):
    """One scaled input at a time, plain autograd: sum_t sum_k ReLU(A_t) * dy_c/dA_t."""
    modules = dict(model.named_modules())
    maps = {name: [] for name in names}
    for i in range(x.shape[0]):
        total = dict.fromkeys(names, 0.0)
        for t in range(11):
            outputs: dict[str, torch.Tensor] = {}
            handles = [modules[n].register_forward_hook(_keeper(outputs, n)) for n in names]
            try:
                xt = (x[i : i + 1] * (t / 10)).requires_grad_(True)
                logit = model(xt)[0, targets[i]]
                grads = torch.autograd.grad(logit, [outputs[n] for n in names])
            finally:
                for h in handles:
                    h.remove()
            for n, g in zip(names, grads, strict=True):
                total[n] = total[n] + (torch.relu(outputs[n].detach()) * g).sum(1)[0]
        for n in names:
            maps[n].append(total[n])
    return {n: torch.stack(v) for n, v in maps.items()}


def _layers(model, names):
    modules = dict(model.named_modules())
    return {n: modules[n] for n in names}


@pytest.mark.parametrize("case", ["tiny", "resnet"])
def test_matches_naive_loop(case, tiny):
    model, names = (
        (tiny, ["stage1", "stage2", "stage3"])
        if case == "tiny"
        else (_resnet(), ["layer1", "layer2.0.bn2", "layer4"])
    )
    model = model.double()
    n = 2 if case == "tiny" else 1
    x, targets = _input(n, dtype=torch.float64), torch.tensor([4, 1])[:n]
    ours = iia(model, _layers(model, names), x, targets, images_per_pass=2)
    naive = naive_iia(model, names, x, targets)
    assert IIA_STEPS == 10
    for n in names:
        assert ours[n].shape == naive[n].shape
        scale = float(naive[n].abs().max())
        assert scale > 0
        torch.testing.assert_close(ours[n], naive[n], rtol=1e-6, atol=1e-6 * scale)


def test_batch_equals_one_at_a_time(tiny):
    names = ["stage2", "stage3"]
    x, targets = _input(3), torch.tensor([0, 5, 9])
    results = [iia(tiny, _layers(tiny, names), x, targets, images_per_pass=k) for k in (1, 2, 3)]
    singles = [iia(tiny, _layers(tiny, names), x[i : i + 1], targets[i : i + 1]) for i in range(3)]
    for n in names:
        one = torch.cat([s[n] for s in singles])
        for result in results:
            torch.testing.assert_close(
                result[n], one, rtol=1e-5, atol=1e-6 * float(one.abs().max())
            )


def test_model_left_as_found():
    model = _resnet().train()
    model.fc.weight.requires_grad_(False)
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]

    def check():
        for k, v in model.state_dict().items():
            assert torch.equal(v, tensors[k]), k
        assert [(p, p.requires_grad) for p in model.parameters()] == flags
        assert [(m, m.training) for m in model.modules()] == modes
        assert all(p.grad is None for p in model.parameters())
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())

    iia(model, _layers(model, ["layer2", "layer4"]), _input(2), torch.tensor([1, 2]))
    check()
    with pytest.raises(HoliwidgetError, match="outside the model's 10 classes"):
        iia(model, _layers(model, ["layer2"]), _input(1), torch.tensor([10]))
    check()
    with pytest.raises(HoliwidgetError, match="does not output an"):
        iia(model, _layers(model, ["layer2", "fc"]), _input(1), torch.tensor([0]))
    check()


def test_bad_arguments(tiny):
    layers = _layers(tiny, ["stage2"])
    with pytest.raises(HoliwidgetError, match="integer class indices"):
        iia(tiny, layers, _input(2), torch.tensor([1.0, 2.0]))
    with pytest.raises(HoliwidgetError, match="images_per_pass"):
        iia(tiny, layers, _input(1), torch.tensor([1]), images_per_pass=0)
    with pytest.raises(HoliwidgetError, match="at least one layer"):
        iia(tiny, {}, _input(1), torch.tensor([1]))


def test_finish_iia():
    native = torch.tensor([[[-2.0, 0.0], [1.0, 3.0]], [[1.5, 1.5], [1.5, 1.5]]])
    out = finish_iia(native, (9, 9))
    assert out.shape == (2, 9, 9)
    assert torch.isfinite(out).all()
    assert out[0].min() == 0 and out[0].max() == 1  # min-max after the upsampling
    assert torch.equal(out[1], torch.zeros(9, 9))  # constant -> zeros
    up = F.interpolate(native[:1, None], size=(9, 9), mode="bicubic", align_corners=False)[0, 0]
    torch.testing.assert_close(out[0], (up - up.min()) / (up.max() - up.min()))
    # no ReLU: negative evidence is ranked, not cut off at zero
    assert out[0, 0, 0] < out[0, 4, 4]
