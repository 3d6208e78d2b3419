"""Borrowing the user's model (capture.prepared, record_pass): it is left as it was found
(hooks, flags, modes, state), in-place operations downstream are handled, and many calls
leak neither hooks nor memory."""

from __future__ import annotations

import copy
import gc
import types

import numpy as np
import psutil
import pytest
import reference as ref
import torch
import xarray as xr
from conftest import BASE_METHODS, hook_count, tiny_image
from torch import nn
from torchvision.models.resnet import Bottleneck

import holiwidget
from holiwidget import HoliwidgetError
from holiwidget.methods.eigen import eigen_projection
from holiwidget.methods.finish import finish_maps

# --------------------------------------------------------------------------------------
# 4. The model is left as it was found


def test_no_hooks_left_after_call_and_after_error(tiny):
    user_handle = tiny.stage2.register_forward_hook(lambda m, i, o: None)
    before = hook_count(tiny)
    assert before == 1
    holiwidget.explain(tiny, tiny_image(), layers="stage1,stage3", methods="all")
    assert hook_count(tiny) == before
    with pytest.raises(HoliwidgetError, match="outside"):
        holiwidget.explain(tiny, tiny_image(), layers="stage1,stage3", methods="all", target=10)
    assert hook_count(tiny) == before
    user_handle.remove()
    assert hook_count(tiny) == 0
    assert all(p.grad is None for p in tiny.parameters())


def _mixed_state(model: nn.Module) -> tuple[list, list, dict]:
    model.train()
    model.stage2[1].eval()  # a mixed state must come back exactly
    for p in model.stage1.parameters():
        p.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return flags, modes, state


def _assert_state(model: nn.Module, flags: list, modes: list, state: dict) -> None:
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)  # BN running stats untouched
    assert hook_count(model) == 0


def test_flags_modes_and_state_restored(tiny):
    flags, modes, state = _mixed_state(tiny)
    ds = holiwidget.explain(
        tiny, tiny_image(), layers="stage1,stage2,stage3", methods="all", target=2
    )
    _assert_state(tiny, flags, modes, state)
    # also after a call that fails inside the network pass
    with pytest.raises(HoliwidgetError):
        holiwidget.explain(tiny, tiny_image(), layers="stage2", methods="all", target=99)
    _assert_state(tiny, flags, modes, state)
    # explained in evaluation mode: the same maps as for the model in eval mode
    tiny.eval()
    for p in tiny.parameters():
        p.requires_grad_(True)
    ds_eval = holiwidget.explain(
        tiny, tiny_image(), layers="stage1,stage2,stage3", methods="all", target=2
    )
    xr.testing.assert_allclose(ds.attribution, ds_eval.attribution, atol=1e-6)
    assert all(p.grad is None for p in tiny.parameters())


def test_modes_restored_with_auto_layers(tiny):
    flags, modes, state = _mixed_state(tiny)
    holiwidget.explain(tiny, tiny_image(), layers="auto", methods=("gradcam",), target=2)
    _assert_state(tiny, flags, modes, state)


def test_works_inside_no_grad(tiny):
    outside = holiwidget.explain(tiny, tiny_image(), methods="all", target=4)
    with torch.no_grad():
        inside = holiwidget.explain(tiny, tiny_image(), methods="all", target=4)
    assert torch.is_grad_enabled()
    xr.testing.assert_allclose(outside.attribution, inside.attribution, atol=1e-7)
    assert hook_count(tiny) == 0
    assert all(p.grad is None for p in tiny.parameters())


def _bottleneck_forward_no_inplace(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return self.relu(out + identity)


def test_inplace_downstream_resnet(resnet, three):
    """layer4.2.bn3's output is changed in place by ``out += identity`` and the in-place
    ReLU: the engine must explain the bn3 output itself."""
    x, _ = three
    x = x[:1]
    layer, target = "layer4.2.bn3", 17
    with pytest.warns(UserWarning, match="negative"):
        ds = holiwidget.explain(resnet, x, layers=layer, methods=BASE_METHODS, target=target)
    assert hook_count(resnet) == 0
    assert all(p.grad is None for p in resnet.parameters())

    # An equivalent model without any in-place operation, captured with a plain hook.
    clean = copy.deepcopy(resnet)
    for m in clean.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
        if isinstance(m, Bottleneck):
            m.forward = types.MethodType(_bottleneck_forward_no_inplace, m)
    store = {}

    def plain_hook(module, inputs, output):
        store["a"] = output.detach()  # shares storage, as pytorch-grad-cam does
        output.register_hook(lambda g: store.__setitem__("g", g))

    handle = dict(clean.named_modules())[layer].register_forward_hook(plain_hook)
    clean(x)[0, target].backward()
    handle.remove()
    plain = ref.base_scale_maps(store["a"], store["g"], 224)
    # ... and the in-place model captured with a cloning hook (the naive reference)
    cap = ref.capture(copy.deepcopy(resnet), layer, x, target)
    assert torch.allclose(cap.activation, store["a"], atol=1e-5)
    cloned = ref.base_scale_maps(cap.activation, cap.gradient, 224)
    for method in ("gradcam", "gradcampp", "xgradcam", "layercam"):
        ours = ds.attribution.sel(cam=method).values[0, 0]
        assert np.abs(ours - plain[method]).max() <= 1e-4, method
        assert np.abs(ours - cloned[method]).max() <= 1e-4, method
    eig = finish_maps(eigen_projection(cap.activation), (224, 224))[0].numpy()
    assert np.abs(ds.attribution.sel(cam="eigencam").values[0, 0] - eig).max() <= 1e-4

    # The hazard is real: a plain (non-cloning) hook on the in-place model records the sum.
    store.clear()
    handle = dict(resnet.named_modules())[layer].register_forward_hook(
        lambda m, i, o: store.__setitem__("a", o.detach())
    )
    with torch.no_grad():
        resnet(x)
    handle.remove()
    assert (store["a"] - cap.activation).abs().max() > 1e-2


def test_outputs_are_copied_only_where_changed_in_place(tiny):
    """A recorded output goes on uncopied unless an op downstream changes it in place: then
    the pass runs again with a copy (found by the version counter for a non-leaf, by
    autograd's refusal for the leaf), and the module is remembered."""
    from holiwidget.capture import _COPY_OUTPUT, prepared, record_pass

    x = holiwidget.images.prepare_images([tiny_image()]).tensor
    conv1, conv2, bn2 = tiny.stage1[0], tiny.stage2[0], tiny.stage2[1]
    layers = {"stage1.0": conv1, "stage2.0": conv2, "stage2.1": bn2, "stage3": tiny.stage3}
    for m in layers.values():
        _COPY_OUTPUT.discard(m)
    with prepared(tiny):
        rec = record_pass(tiny, layers, x, lambda logits: logits.argmax(1))
    # conv1 (the leaf) and bn2 (not a leaf) feed in-place ReLUs; conv2 feeds bn2, stage3 the
    # pooling: those two are handed on as they are.
    assert conv1 in _COPY_OUTPUT and bn2 in _COPY_OUTPUT
    assert conv2 not in _COPY_OUTPUT and tiny.stage3 not in _COPY_OUTPUT
    # what was recorded is each layer's own output, before an in-place ReLU changed it
    clean = copy.deepcopy(tiny)
    for m in clean.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    store = {}

    def keep(name):
        def hook(module, inputs, output):
            store[name] = output
            output.retain_grad()

        return hook

    handles = [
        dict(clean.named_modules())[name].register_forward_hook(keep(name)) for name in layers
    ]
    x_grad = x.clone().requires_grad_(True)  # so that conv1's output is not a leaf here
    logits = clean(x_grad)
    logits[0, int(rec.targets[0])].backward()
    for h in handles:
        h.remove()
    assert float(store["stage1.0"].detach().min()) < 0
    assert float(store["stage2.1"].detach().min()) < 0
    for name in layers:
        torch.testing.assert_close(rec.activations[name], store[name].detach())
        torch.testing.assert_close(rec.gradients[name], store[name].grad)


def test_many_calls_leave_no_hooks_and_no_memory_growth(tiny):
    proc = psutil.Process()
    img = tiny_image()

    def run(i: int) -> None:
        methods = ("holistic",) if i % 50 == 0 else ("gradcam",)
        holiwidget.explain(tiny, img, layers="stage2,stage3", methods=methods, target=i % 10)

    for i in range(20):
        run(i)
    gc.collect()
    before = proc.memory_info().rss
    for i in range(200):
        run(i)
    gc.collect()
    growth = (proc.memory_info().rss - before) / 2**20
    assert hook_count(tiny) == 0
    assert all(p.grad is None for p in tiny.parameters())
    assert growth < 30, f"RSS grew by {growth:.1f} MB over 200 calls"
