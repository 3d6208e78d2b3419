"""A deliberately naive Relevance-CAM, written from the spec alone (no zennit, no hooks).

It follows ``shared/spec/baselines-and-metrics.md``, "Relevance-CAM, exactly", layer by
layer: the network is rebuilt as a tree of nodes (one per module, residual blocks as
explicit ``branch + shortcut``), each with a plain forward and a ``relprop`` that forms the
explicit contributions ``x_i w_ij`` of its inputs (convolutions through ``F.unfold``,
max-pools by scattering to the winners, adaptive pools bin by bin) instead of autograd.
Small networks only: the contribution tensors are (N, out, in, positions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm
from torchvision.models.resnet import BasicBlock, Bottleneck


def _safe(r: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return torch.where(z == 0, torch.zeros_like(r), r / torch.where(z == 0, 1, z))


class _Node:
    def forward(self, x):
        raise NotImplementedError

    def relprop(self, r):
        raise NotImplementedError


class _Seq(_Node):
    def __init__(self, nodes):
        self.nodes = nodes

    def forward(self, x):
        for node in self.nodes:
            x = node.forward(x)
        return x

    def relprop(self, r):
        for node in reversed(self.nodes):
            r = node.relprop(r)
        return r


class _Conv(_Node):
    def __init__(self, conv):
        self.c = conv

    def forward(self, x):
        self.x = x
        c = self.c
        return F.conv2d(x, c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups)

    def relprop(self, r):
        c, x = self.c, self.x
        n, _, h, w = x.shape
        k = c.kernel_size
        geo = {"dilation": c.dilation, "padding": c.padding, "stride": c.stride}
        cols = F.unfold(x, k, **geo)  # (N, C*kh*kw, L)
        g, o, length = c.groups, c.out_channels, cols.shape[-1]
        cols = cols.view(n, g, -1, length)
        wt = c.weight.reshape(g, o // g, -1)
        contrib = (
            cols.clamp(min=0)[:, :, None] * wt.clamp(min=0)[None, :, :, :, None]
            + cols.clamp(max=0)[:, :, None] * wt.clamp(max=0)[None, :, :, :, None]
        )  # (N, g, O/g, I, L)
        bias = torch.zeros(o, dtype=x.dtype) if c.bias is None else c.bias
        z = contrib.sum(3) + 2 * bias.view(1, g, o // g, 1)  # the bias in both terms
        s = _safe(r.reshape(n, g, o // g, length), z)
        rcols = (contrib * s[:, :, :, None]).sum(2).reshape(n, -1, length)
        return F.fold(rcols, (h, w), k, **geo)


class _Linear(_Node):
    def __init__(self, linear):
        self.m = linear

    def forward(self, x):
        self.x = x
        return F.linear(x, self.m.weight, self.m.bias)

    def relprop(self, r):
        w, x = self.m.weight, self.x
        contrib = x.clamp(min=0)[:, None] * w.clamp(min=0) + x.clamp(max=0)[:, None] * w.clamp(
            max=0
        )
        return (contrib * _safe(r, contrib.sum(-1))[..., None]).sum(1)  # no bias


class _Pass(_Node):
    def __init__(self, fn):
        self.fn = fn

    def forward(self, x):
        return self.fn(x)

    def relprop(self, r):
        return r


class _MaxPool(_Node):
    def __init__(self, pool):
        self.p = pool

    def forward(self, x):
        p = self.p
        out, self.idx = F.max_pool2d(
            x, p.kernel_size, p.stride, p.padding, p.dilation, p.ceil_mode, return_indices=True
        )
        self.shape, self.out = x.shape, out
        return out

    def relprop(self, r):
        r = torch.where(self.out == 0, torch.zeros_like(r), r)
        flat = torch.zeros(*self.shape[:2], self.shape[2] * self.shape[3], dtype=r.dtype)
        return flat.scatter_add_(2, self.idx.flatten(2), r.flatten(2)).view(self.shape)


class _AvgPool(_Node):
    def __init__(self, size):
        self.size = (size, size) if isinstance(size, int) else size

    def forward(self, x):
        self.x = x
        return F.adaptive_avg_pool2d(x, self.size)

    def relprop(self, r):
        x, (oh, ow) = self.x, self.size
        h, w = x.shape[-2:]
        rel = torch.zeros_like(x)
        for i in range(oh):
            for j in range(ow):
                rows = slice(i * h // oh, -(-(i + 1) * h // oh))
                cols = slice(j * w // ow, -(-(j + 1) * w // ow))
                xp = x[:, :, rows, cols].clamp(min=0)
                rel[:, :, rows, cols] += xp * _safe(r[:, :, i, j], xp.sum((2, 3)))[..., None, None]
        return rel


class _Flatten(_Node):
    def forward(self, x):
        self.shape = x.shape
        return x.flatten(1)

    def relprop(self, r):
        return r.view(self.shape)


class _Residual(_Node):
    def __init__(self, branch, shortcut):
        self.branch, self.shortcut = branch, shortcut

    def forward(self, x):
        self.a = self.branch.forward(x)
        self.b = x if self.shortcut is None else self.shortcut.forward(x)
        self.out = self.a + self.b
        return self.out

    def relprop(self, r):
        s = _safe(r, self.out)
        rb = self.b * s
        rel = self.branch.relprop(self.a * s)
        return rel + (rb if self.shortcut is None else self.shortcut.relprop(rb))


class _Tap(_Node):
    def __init__(self, name, store):
        self.name, self.store = name, store

    def forward(self, x):
        self.store[self.name] = [x]
        return x

    def relprop(self, r):
        self.store[self.name].append(r)
        return r


def _naive(module: nn.Module, name: str, store: dict) -> _Node:
    node = _naive_node(module, name, store)
    return _Seq([node, _Tap(name, store)]) if name in store["taps"] else node


def _naive_node(m: nn.Module, name: str, store: dict) -> _Node:
    def sub(child: str) -> _Node:
        return _naive(getattr(m, child), f"{name}.{child}" if name else child, store)

    if isinstance(m, tvm.ResNet):
        stem = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
        return _Seq([*map(sub, stem), sub("avgpool"), _Flatten(), sub("fc")])
    if isinstance(m, (BasicBlock, Bottleneck)):
        parts = ["conv1", "bn1", "relu", "conv2", "bn2"]
        parts += ["relu", "conv3", "bn3"] if isinstance(m, Bottleneck) else []
        shortcut = None if m.downsample is None else sub("downsample")
        return _Seq([_Residual(_Seq([*map(sub, parts)]), shortcut), _Pass(F.relu)])
    if isinstance(m, tvm.VGG):
        return _Seq([sub("features"), sub("avgpool"), _Flatten(), sub("classifier")])
    if isinstance(m, tvm.MobileNetV2):
        return _Seq([sub("features"), _AvgPool(1), _Flatten(), sub("classifier")])
    if isinstance(m, tvm.mobilenetv2.InvertedResidual):
        return _Residual(sub("conv"), None) if m.use_res_connect else sub("conv")
    if isinstance(m, nn.Sequential):
        return _Seq([sub(child) for child, _ in m.named_children()])
    if isinstance(m, nn.Conv2d):
        return _Conv(m)
    if isinstance(m, nn.Linear):
        return _Linear(m)
    if isinstance(m, nn.BatchNorm2d):
        return _Pass(
            lambda x: F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, eps=m.eps)
        )
    if isinstance(m, nn.ReLU):
        return _Pass(F.relu)
    if isinstance(m, nn.ReLU6):
        return _Pass(F.relu6)
    if isinstance(m, nn.Dropout):
        return _Pass(lambda x: x)
    if isinstance(m, nn.MaxPool2d):
        return _MaxPool(m)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return _AvgPool(m.output_size)
    raise TypeError(type(m))


def naive_relevancecam(model, names, x, targets):
    store: dict = {"taps": set(names)}
    net = _naive(model, "", store)
    with torch.no_grad():
        logits = net.forward(x)
        torch.testing.assert_close(logits, model(x))  # the naive network is the model
        start = torch.full_like(logits, -1.0 / logits.shape[1])
        start[torch.arange(len(targets)), targets] = 1.0
        net.relprop(start)
    return {n: torch.einsum("nk,nkhw->nhw", store[n][1].mean((2, 3)), store[n][0]) for n in names}
