"""A deliberately naive Holistic-CAM and CAMERAS, written from the spec alone.

This module is the tests' stand-in for the authors' reference implementation. It follows
``shared/spec/holistic-cam.md`` sections 1-5 (and the CAMERAS paragraph of
``baselines-and-metrics.md``) line by line, for ONE image and ONE layer, and shares no
code with holiwidget's engine:

- eight scales, each a separate forward and backward pass through a private copy of the
  model (parameters left requiring gradients, as a plain script would);
- a pytorch-grad-cam-style forward hook that keeps the layer's output and registers a
  tensor hook for its gradient; the hook hands the rest of the network a clone, so that
  in-place operations downstream cannot overwrite what was recorded;
- every channel of W_s and A_s upsampled with ``F.interpolate`` to s0 x s0 (the K x s0 x s0
  tensors are materialised on purpose), W-bar and A-bar averaged separately;
- fundamental-scale denoising with numpy and OpenCV exactly as the spec words it.

It is slow and memory hungry by design; use it on one image at a time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SCALES = tuple(range(224, 1000, 100))  # 224, 324, ..., 924
EPS = 1e-6


def preprocess(path, size: int = 224) -> torch.Tensor:
    """Spec section 1: resize to size x size (bilinear, no crop), /255, ImageNet-normalise."""
    img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255.0
    x = (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    return x.unsqueeze(0)


def module_by_name(model: nn.Module, name: str) -> nn.Module:
    return dict(model.named_modules())[name]


@dataclass
class Capture:
    """What one pass recorded at the explained layer (batch of one)."""

    activation: torch.Tensor  # (1, K, h, w)
    gradient: torch.Tensor  # (1, K, h, w)
    logits: torch.Tensor  # (1, classes)
    target: int


def capture(model: nn.Module, layer: str, x: torch.Tensor, target: int | None = None) -> Capture:
    """One forward + backward pass with a pytorch-grad-cam-style hook.

    ``target`` None explains the top-1 class of this pass. The model is used as given
    (call this on a private copy: parameter gradients accumulate in ``.grad``).
    """
    store: dict[str, torch.Tensor] = {}

    def save_gradient(grad: torch.Tensor) -> None:
        store["g"] = grad.detach().clone()

    def forward_hook(module, inputs, output):
        store["a"] = output.detach().clone()
        output.register_hook(save_gradient)
        # The rest of the network gets a copy: in-place operations downstream (ReLU(inplace),
        # out += identity) then leave the recorded output and its gradient alone.
        return output.clone()

    handle = module_by_name(model, layer).register_forward_hook(forward_hook)
    try:
        logits = model(x)
        c = int(logits[0].argmax()) if target is None else int(target)
        model.zero_grad(set_to_none=True)
        logits[0, c].backward()
    finally:
        handle.remove()
    return Capture(store["a"], store["g"], logits.detach(), c)


def pyramid_captures(
    model: nn.Module,
    layer: str,
    x: torch.Tensor,
    target: int | None = None,
    scales: tuple[int, ...] = SCALES,
) -> list[Capture]:
    """Spec section 1: the eight-scale input pyramid, one pass per scale.

    The class is the given one, else the top-1 class at the fundamental scale, and it is
    used at every scale. Scale s0 uses x itself; the others are bicubic interpolations
    (align_corners=False) of the normalised tensor x.
    """
    assert x.shape[0] == 1 and x.shape[-1] == x.shape[-2] == scales[0]
    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(True)
    caps = []
    c = target
    for s in scales:
        xs = (
            x
            if s == scales[0]
            else F.interpolate(x, size=(s, s), mode="bicubic", align_corners=False)
        )
        cap = capture(net, layer, xs, c)
        c = cap.target
        caps.append(cap)
    return caps


def pge(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Spec section 2: W = alpha * ReLU(G), element-wise, no spatial reduction."""
    gp = torch.relu(gradient)
    s_k = activation.sum(dim=(2, 3), keepdim=True)
    alpha = gp**2 / (2 * gp**2 + s_k * gp**3 + EPS)
    alpha = torch.where(gp == 0, torch.zeros_like(alpha), alpha)
    return alpha * gp


def up(t: torch.Tensor, s0: int) -> torch.Tensor:
    """Bilinear, align_corners=False, every channel, to the input grid s0 x s0."""
    return F.interpolate(t, size=(s0, s0), mode="bilinear", align_corners=False)


def fsd(
    pha: np.ndarray, mf: np.ndarray, tau: float = 0.5, m: int = 51, b: int = 91
) -> tuple[np.ndarray, np.ndarray]:
    """Spec section 4 (denoising) and 5 (output): returns (final map, lpw)."""
    u = (mf - mf.min()) / (mf.max() - mf.min())
    u = np.minimum(u, tau)
    u = (u - u.min()) / (u.max() - u.min())
    q = np.uint8(np.round(255 * u))
    med = cv2.medianBlur(q, m)  # square m x m window, border replicates the edge pixel
    lpw = cv2.blur(med, (b, b), borderType=cv2.BORDER_REFLECT_101)  # uint8 out: rounded
    h = pha * lpw
    cam = (h - h.min()) / (h.max() - h.min() + 1e-8)
    return cam, lpw


@dataclass
class HolisticResult:
    pha: np.ndarray
    mf: np.ndarray
    cam: np.ndarray
    target: int


def holistic_from_captures(
    caps: list[Capture], tau: float = 0.5, m: int = 51, b: int = 91
) -> HolisticResult:
    """Spec sections 2-5 on recorded captures (fundamental scale first)."""
    s0 = SCALES[0]
    w_sum = a_sum = None
    mf = None
    for i, cap in enumerate(caps):
        w_up = up(pge(cap.activation, cap.gradient), s0)[0]  # (K, s0, s0)
        a_up = up(cap.activation, s0)[0]
        if i == 0:
            mf = (w_up * a_up).sum(0)
        w_sum = w_up if w_sum is None else w_sum + w_up
        a_sum = a_up if a_sum is None else a_sum + a_up
        del w_up, a_up
    w_bar = w_sum / len(caps)
    a_bar = a_sum / len(caps)
    pha = (w_bar * a_bar).sum(0)
    pha_np = pha.numpy()
    mf_np = mf.numpy()
    cam, _ = fsd(pha_np, mf_np, tau, m, b)
    return HolisticResult(pha_np, mf_np, cam.astype(np.float32), caps[0].target)


def cameras_from_captures(caps: list[Capture]) -> np.ndarray:
    """CAMERAS: L = ReLU(sum_k mean_s up(A_s) * mean_s up(G_s)), min-max to [0, 1]."""
    s0 = SCALES[0]
    a_bar = sum(up(c.activation, s0)[0] for c in caps) / len(caps)
    g_bar = sum(up(c.gradient, s0)[0] for c in caps) / len(caps)
    cam = torch.relu((a_bar * g_bar).sum(0)).numpy()
    return (cam - cam.min()) / (cam.max() - cam.min())


def holistic_cam(
    model: nn.Module,
    layer: str,
    x: torch.Tensor,
    target: int | None = None,
    tau: float = 0.5,
    m: int = 51,
    b: int = 91,
) -> HolisticResult:
    """Naive Holistic-CAM for one image (1, 3, 224, 224) and one layer: PHA, M_f, map."""
    return holistic_from_captures(pyramid_captures(model, layer, x, target), tau, m, b)


def cameras(model: nn.Module, layer: str, x: torch.Tensor, target: int | None = None) -> np.ndarray:
    """Naive CAMERAS for one image and one layer."""
    return cameras_from_captures(pyramid_captures(model, layer, x, target))


def base_scale_maps(activation: torch.Tensor, gradient: torch.Tensor, s0: int) -> dict:
    """Naive single-scale baselines on one (1, K, h, w) capture, finished like the spec says:
    ReLU, bilinear upsampling to s0, min-max."""
    a, g = activation[0].double(), gradient[0].double()
    s = a.sum(dim=(1, 2), keepdim=True)
    raw = {
        "gradcam": (g.mean(dim=(1, 2), keepdim=True) * a).sum(0),
        "xgradcam": ((g * a / (s + 1e-7)).sum(dim=(1, 2), keepdim=True) * a).sum(0),
        "layercam": (torch.relu(g) * a).sum(0),
    }
    alpha = g**2 / (2 * g**2 + s * g**3 + 1e-6)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    raw["gradcampp"] = ((alpha * torch.relu(g)).sum(dim=(1, 2), keepdim=True) * a).sum(0)
    out = {}
    for name, r in raw.items():
        u = up(torch.relu(r)[None, None], s0)[0, 0]
        out[name] = ((u - u.min()) / (u.max() - u.min())).float().numpy()
    return out
