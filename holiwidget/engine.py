"""The explain engine: validation, the input pyramid, one pass per scale, maps, the dataset.

Data flow per group of images: one recorded pass per pyramid scale (:mod:`.capture`) hands
each layer's activations and gradients to its fuser (:mod:`.fusion`) as the pass ends; after
the last pass the baselines are computed from the fundamental scale, the fused maps are
denoised (Holistic-CAM) or finished (CAMERAS), and everything becomes one dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from .capture import prepared, record_pass
from .checks import finite_logits, positive_int
from .dataset import build_dataset
from .devices import resolve_device
from .errors import HoliwidgetError, warn
from .fusion import LayerFuser, resolve_backend
from .heap import bound_heap
from .images import ImageInput, prepare_images
from .layers import check_layer_sizes, resolve_layers
from .methods import GRADIENT_METHODS, PYRAMID_METHODS, gradient, parse_methods
from .methods.eigen import eigen_projection
from .methods.finish import finish_maps, minmax
from .methods.holistic import Denoising
from .methods.iia import finish_iia, iia
from .methods.relevance import finish_relevancecam, relevancecam
from .pyramid import check_scales, pyramid_sizes
from .saved import PassMemory
from .targets import target_chooser, targets_from

__all__ = ["explain"]

# Pixels (summed over images) of one forward pass before a scale's batch is split. On the
# CPU every image gets passes of its own: oneDNN sums in other orders for other batch sizes,
# and FSD's 8-bit step can turn such a rounding difference into a visible flip, so this keeps
# each image's maps bit-identical to explaining it alone (and costs no speed on the CPU).
_PASS_PIXELS = {"cpu": 1, "default": 16 * 924 * 924}
# Images whose captures are held at once (natives of every scale) before fusion. On the CPU,
# where every image has passes of its own anyway, a larger group only holds more memory (and
# costs time in page faults: 8 images in one group ran 10 % slower per image than one by one).
_GROUP = {"cpu": 1, "default": 32}

# The single-scale methods: raw maps (N, h, w) from the fundamental scale's A and G.
_BASELINES: dict[str, Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]] = {
    "gradcam": gradient.gradcam,
    "gradcampp": gradient.gradcampp,
    "xgradcam": gradient.xgradcam,
    "eigencam": lambda a, _: eigen_projection(a),
    "layercam": gradient.layercam,
}
# The methods with passes of their own: raw maps of every layer, and their ending.
_OWN_PASSES = {
    "relevancecam": (relevancecam, finish_relevancecam),
    "iia": (iia, finish_iia),
}


def _pass_order(sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The fundamental scale first (it fixes the targets), then the largest passes first."""
    return [sizes[0], *sorted(sizes[1:], reverse=True)]


def _warn_negative(name: str, a: torch.Tensor, warned: set[str]) -> None:
    if name not in warned and float(a.min()) < 0:
        warned.add(name)
        warn(
            f"layer {name!r} has negative activations (min {float(a.min()):.3g}); CAM methods "
            "assume non-negative (post-ReLU) outputs: explain a post-activation layer instead"
        )


def _passes(
    model: nn.Module,
    modules: dict[str, nn.Module],
    x: torch.Tensor,
    given: torch.Tensor | None,
    methods: list[str],
    backend: str,
    progress: tqdm,
    warned: set[str],
    own_targets: bool,
    ids: Sequence[str],
    scales: tuple[int, ...],
    memory: PassMemory,
) -> tuple[dict[str, LayerFuser], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every network pass of one group of images, each layer's captures handed to its fuser.

    The fundamental scale's pass is checked before any other: the model's output must be
    finite and every layer must keep at least 2 x 2 pixels.

    Returns:
        The fusers, the fundamental scale's logits, the targets, and (n, passes) flags of
        the scales that count for each image (in pass order).
    """
    n, _, height, width = x.shape
    sizes = pyramid_sizes(height, width, scales)
    pyramid = bool(PYRAMID_METHODS & set(methods))
    order = _pass_order(sizes) if pyramid else sizes[:1]
    budget = _PASS_PIXELS.get(x.device.type, _PASS_PIXELS["default"])
    fusers = {
        name: LayerFuser(
            name,
            n,
            order,
            holistic="holistic" in methods,
            cameras="cameras" in methods,
            backend=backend,
        )
        for name in modules
    }
    logits, targets, used = torch.empty(0), given, []
    for scale, size in enumerate(order):
        xs = x if scale == 0 else F.interpolate(x, size=size, mode="bicubic", align_corners=False)
        step = max(1, budget // (size[0] * size[1]))
        scale_logits, chosen = [], []
        for i0 in range(0, n, step):
            sub = slice(i0, min(i0 + step, n))
            if scale == 0:
                fixed = given[sub] if given is not None else None
            else:
                fixed = None if own_targets else targets[sub]
            gradients = bool(GRADIENT_METHODS & set(methods))
            rec = record_pass(
                model,
                modules,
                xs[sub],
                target_chooser(fixed),
                gradients=gradients,
                saving=memory.saving((sub.stop - sub.start) * size[0] * size[1]),
            )
            if scale == 0:
                finite_logits(rec.logits, ids[sub])
                check_layer_sizes(model, modules, rec.activations, xs)
            scale_logits.append(rec.logits)
            chosen.append(rec.targets)
            counts = None if scale == 0 or not own_targets else rec.targets == targets[sub]
            for name in modules:
                # taken out of the record, so that a summed layer's natives go once summed
                a = rec.activations.pop(name)
                if scale == 0:
                    _warn_negative(name, a, warned)
                fusers[name].add(scale, sub, a, rec.gradients.pop(name, None), counts)
            del rec
            progress.update(sub.stop - sub.start)
        picked = torch.cat(chosen)
        if scale == 0:
            logits, targets = torch.cat(scale_logits), picked
        used.append((picked == targets).cpu())
    return fusers, logits, targets, torch.stack(used, dim=1)


def _ascending(used: np.ndarray, size: tuple[int, int], scales: tuple[int, ...]) -> np.ndarray:
    """(n, scales) flags from the pass order (fundamental, then largest first) to ascending."""
    sizes = pyramid_sizes(*size, scales)
    order = _pass_order(sizes)
    return used[:, [order.index(s) for s in sizes]]


def _maps(
    fusers: dict[str, LayerFuser], methods: list[str], used: torch.Tensor, denoising: Denoising
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(n, methods, layers, H, W) maps, plus Holistic-CAM's PHA and M_f (n, layers, H, W).

    Each layer's captures are let go as soon as its maps are made."""
    layers = list(fusers)
    first = fusers[layers[0]]
    n, size = first.images, first.size
    out = np.zeros((n, len(methods), len(layers), *size), dtype=np.float32)
    holistic = "holistic" in methods
    primary = np.zeros((n, len(layers), *size), dtype=np.float32) if holistic else None
    fundamental = np.zeros_like(primary) if holistic else None
    for li, name in enumerate(layers):
        fuser = fusers.pop(name)
        a0, g0 = fuser.natives(0)
        for mi, method in enumerate(methods):
            if method in _BASELINES:
                out[:, mi, li] = finish_maps(_BASELINES[method](a0, g0), size).cpu().numpy()
        fused = fuser.fuse(used)
        del fuser, a0, g0
        if holistic:
            primary[:, li], fundamental[:, li] = fused.primary, fused.fundamental
            for i in range(n):
                pha, mf = fused.primary[i], fused.fundamental[i]
                out[i, methods.index("holistic"), li] = denoising.apply(pha, mf)[0]
        if "cameras" in methods:
            cameras = minmax(torch.relu(torch.from_numpy(fused.cameras)))
            out[:, methods.index("cameras"), li] = cameras.numpy()
    return out, primary, fundamental


def _own_pass_maps(
    model: nn.Module,
    modules: dict[str, nn.Module],
    x: torch.Tensor,
    targets: torch.Tensor,
    methods: list[str],
    out: np.ndarray,
) -> None:
    """Relevance-CAM and IIA, each from network passes of its own, into ``out`` (n, methods,
    layers, H, W)."""
    size = tuple(x.shape[-2:])
    for method, (raw_maps, finish) in _OWN_PASSES.items():
        if method in methods:
            raw = raw_maps(model, modules, x, targets.to(x.device))
            for li, name in enumerate(modules):
                out[:, methods.index(method), li] = finish(raw[name], size).cpu().numpy()


def explain(
    model: nn.Module,
    images: ImageInput | Sequence[ImageInput] | torch.Tensor,
    layers: str | Sequence[str] = "auto",
    methods: str | Sequence[str] = ("holistic",),
    target: int | Sequence[int] | None = None,
    threshold: float = Denoising.threshold,
    median: int = Denoising.median,
    box: int = Denoising.box,
    device: str | torch.device = "auto",
    *,
    scale_targets: str = "fixed",
    scales: Sequence[int] | None = None,
    pass_memory: float | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    fusion: str = "auto",
) -> xr.Dataset:
    """Explain a CNN's decision at several layers with Holistic-CAM and its baselines.

    One forward and one backward pass per pyramid scale serve every requested layer and
    method. Holistic-CAM (Chen et al., ACM MM 2024) per layer::

        W_s = alpha * ReLU(G_s)                     PGE, at every scale s of the pyramid
        PHA = sum_k mean_s up(W_s)[k] * mean_s up(A_s)[k]
        M_f = sum_k up(W_s0)[k] * up(A_s0)[k]       fundamental scale
        H   = PHA * LPW(M_f; tau, m, b)             fundamental-scale denoising
        cam = minmax(H)

    Args:
        model: a classifier returning logits (N, classes); it is left as it was found
            (training mode, ``requires_grad`` flags, no hooks, nothing in ``.grad``).
        images: file paths, sample names (chelsea, coffee, astronaut, rocket), PIL images,
            arrays, or an already-normalised float tensor (N, 3, H, W) used as is.
        layers: ``"auto"`` (the holistic stage), a dotted module name, comma-separated
            names, or a list of names.
        methods: any of holistic, gradcam, gradcampp, xgradcam, eigencam, layercam, cameras,
            relevancecam, iia, or ``"all"`` (see :func:`holiwidget.methods.parse_methods`).
        target: the class to explain: one index for all images, one per image, or None for
            each image's top-1 class at the fundamental scale.
        threshold: Holistic-CAM's fusion denoising threshold tau, in (0, 1].
        median: median kernel m of the low-pass wrap (odd).
        box: box kernel b of the low-pass wrap, the low-pass cutoff (odd).
        device: ``"auto"`` (CUDA, then MPS, then CPU) or a device.
        scale_targets: ``"fixed"`` (default, as the paper's results): every pyramid scale
            explains the target class. ``"own"``: each scale explains its own top-1 class and
            a scale whose top-1 differs from the fundamental scale's is left out of the
            means (the reference implementation's mode without a given class; needs
            ``target=None``). ``scale_used`` in the result says which scales counted.
        scales: the pyramid's sides (default the paper's 224, 324, ..., 924): the first is
            the fundamental scale (the input size), the others are relative to it (see
            :func:`pyramid_sizes`). ``(224,)`` is the one-scale method (PHA equals M_f).
            Recorded in ``attrs["scales"]``.
        pass_memory: the most megabytes a network pass may keep for its backward pass;
            the pyramid's passes predicted to need more keep what autograd saves in a
            temporary file (:mod:`holiwidget.saved`), ``fusion="auto"`` takes the torch
            way, and the process's heap is kept from growing by fragmentation from then on
            (:func:`holiwidget.heap.bound_heap`): lower peak memory, identical maps,
            slower. None (default) keeps everything in memory.
        batch_size: images whose captures are held at once (default: 1 on the CPU, where
            each image has passes of its own anyway, 32 on an accelerator); memory is bounded
            by this, not by the number of images.
        progress: show a progress bar.
        fusion: how the pyramid is fused: ``"auto"`` (compiled loops on the CPU without a
            ``pass_memory`` budget, torch operations elsewhere), ``"torch"`` or
            ``"compiled"`` (CPU only); the two agree to float rounding.

    Returns:
        A dataset with ``attribution`` (image, cam, layer, y, x) in [0, 1]; for
        Holistic-CAM also ``primary`` (PHA) and ``fundamental`` (M_f), (image, layer, y, x);
        ``input`` (image, y, x, rgb) uint8; coordinates for targets and probabilities; the
        parameters, model, versions and device in ``attrs``.
    """
    chosen = parse_methods(methods, model)
    if scale_targets not in ("fixed", "own"):
        raise HoliwidgetError(f"scale_targets must be 'fixed' or 'own', got {scale_targets!r}")
    if scale_targets == "own" and target is not None:
        raise HoliwidgetError("scale_targets='own' explains each scale's top-1 class; drop target=")
    denoising = Denoising(threshold, median, box)
    sides = check_scales(scales)
    memory = PassMemory.from_megabytes(pass_memory)
    dev = resolve_device(device)
    backend = resolve_backend(fusion, dev, budget=pass_memory is not None)
    if pass_memory is not None:
        bound_heap()
    prep = prepare_images(images)
    n = prep.tensor.shape[0]
    given = targets_from(target, n)
    modules = resolve_layers(model, layers)
    group = _GROUP.get(dev.type, _GROUP["default"])
    if batch_size is not None:
        group = positive_int(batch_size, "batch_size")
    size = tuple(prep.tensor.shape[-2:])
    passes = len(sides) if PYRAMID_METHODS & set(chosen) else 1

    parts: dict[str, list] = {"maps": [], "primary": [], "fundamental": [], "logits": []}
    parts.update(targets=[], used=[])
    warned: set[str] = set()
    bar = tqdm(total=n * passes, desc="explain", unit="pass", disable=not progress)
    try:
        with prepared(model, dev):
            for g0 in range(0, n, group):
                sub = slice(g0, min(g0 + group, n))
                fixed = given[sub] if given is not None else None
                x = prep.tensor[sub].to(dev)
                fusers, logits, targets, used = _passes(
                    model,
                    modules,
                    x,
                    fixed,
                    chosen,
                    backend,
                    bar,
                    warned,
                    scale_targets == "own",
                    prep.ids[sub],
                    sides,
                    memory,
                )
                maps, primary, fundamental = _maps(fusers, chosen, used, denoising)
                _own_pass_maps(model, modules, x, targets, chosen, maps)
                for key, value in zip(
                    parts,
                    (maps, primary, fundamental, logits.cpu(), targets.cpu(), used),
                    strict=True,
                ):
                    parts[key].append(value)
    finally:
        bar.close()
    holistic = "holistic" in chosen
    return build_dataset(
        attribution=np.concatenate(parts["maps"]),
        primary=np.concatenate(parts["primary"]) if holistic else None,
        fundamental=np.concatenate(parts["fundamental"]) if holistic else None,
        display=prep.display,
        ids=prep.ids,
        methods=chosen,
        layers=list(modules),
        logits=torch.cat(parts["logits"]),
        targets=torch.cat(parts["targets"]),
        scale_used=_ascending(torch.cat(parts["used"]).numpy(), size, sides)
        if passes > 1
        else None,
        model=model,
        params={
            **denoising.as_dict(),
            "layers": list(modules),
            "methods": chosen,
            "target": None if given is None else given.tolist(),
            "scales": [list(s) for s in pyramid_sizes(*size, sides)]
            if passes > 1
            else [list(size)],
            "pyramid": list(sides),
            "passes_on_disk": memory.on_disk,
            "input_size": list(size),
            "batch_size": group,
            "scale_targets": scale_targets,
        },
        device=str(dev),
    )
