"""The explain engine: input pyramid, one pass per scale for all layers and methods, fusion."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys
import types
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from .capture import prepared, record_pass
from .devices import resolve_device
from .errors import HoliwidgetError
from .images import ImageInput, prepare_images
from .layers import resolve_layers
from .maps import finish_maps, minmax
from .methods import GRADIENT_METHODS, METHODS, PYRAMID_METHODS, eigen, gradient
from .methods.holistic import check_denoise_parameters, holistic_map, pge_from_totals
from .resize import channel_products

__all__ = ["PYRAMID_SIDES", "explain", "parse_methods", "pyramid_sizes"]

log = logging.getLogger(__name__)

#: Side lengths of the input pyramid for a 224 x 224 input: range(224, 1000, 100).
PYRAMID_SIDES = tuple(range(224, 1000, 100))
# Pixels (summed over images) of one forward pass before a scale's batch is split. On the
# CPU every image gets passes of its own: oneDNN sums in other orders for other batch sizes,
# and FSD's 8-bit step can turn such a rounding difference into a visible flip, so this keeps
# each image's maps bit-identical to explaining it alone (and costs no speed on the CPU).
_PASS_PIXELS = {"cpu": 1, "default": 16 * 924 * 924}
# Images whose captures are held at once (natives of every scale) before fusion. On the CPU,
# where every image has passes of its own anyway, a larger group only holds more memory (and
# costs time in page faults: 8 images in one group ran 10 % slower per image than one by one).
_GROUP = {"cpu": 1, "default": 32}
# Bytes of one upsampled chunk of a summed layer (below glibc's largest mmap threshold, 32 MiB).
_SUM_CHUNK_BYTES = 16 * 2**20
# On the CPU the fusion runs as compiled loops (:mod:`holiwidget.fusion_cpu`); elsewhere, and
# on the CPU when this is False (the tests compare the two), as torch operations.
_COMPILED_FUSION = True
# With it, a layer's natives (activations and gradients of all scales, per image) are held up
# to this size; a larger shallow layer is summed over the scales as the passes come instead.
_HELD_NATIVE_BYTES = 256 * 2**20

# Holistic-CAM's PGE weights, computed chunk by chunk inside the fusion.
_PGE = {"w": (pge_from_totals, ("g", "s"))}

_BASELINES = {
    "gradcam": gradient.gradcam,
    "gradcampp": gradient.gradcampp,
    "xgradcam": gradient.xgradcam,
    "layercam": gradient.layercam,
}


def pyramid_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """The eight input sizes for a (height, width) input, fundamental scale first.

    For 224 x 224 these are 224, 324, ..., 924 (the paper's scales). Another input size
    scales them by the same factors ``s / 224``; the FSD kernels are used as given (for an
    input of side ``s0`` the paper's kernels correspond to ``m * s0 / 224`` and
    ``b * s0 / 224``, rounded to odd numbers).
    """
    return [
        (round(height * s / PYRAMID_SIDES[0]), round(width * s / PYRAMID_SIDES[0]))
        for s in PYRAMID_SIDES
    ]


def parse_methods(methods: str | Sequence[str]) -> list[str]:
    """Validate method names (a list, a comma-separated string, or ``"all"``)."""
    if isinstance(methods, str):
        methods = list(METHODS) if methods == "all" else [m.strip() for m in methods.split(",")]
    chosen = list(dict.fromkeys(methods))
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise HoliwidgetError(
            f"unknown method {', '.join(unknown) or '(none)'}; choose from {', '.join(METHODS)} or all"
        )
    return chosen


@dataclass
class _Captures:
    """Per layer: the tensors each method needs, per scale (fundamental scale first).

    Layers whose natives outnumber the output pixels (shallow layers: ResNet-50's layer1 holds
    3.8 native pixels per input pixel over the eight scales) may be summed instead (see
    :func:`_summed_layers`): their upsampled stacks are added up over the scales as the
    passes arrive (``sums``), which holds K x H x W per stack instead of the natives' 3.8
    times as much; ``activations`` and ``gradients`` then hold the fundamental scale alone,
    for the single-scale baselines.
    """

    activations: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    used: list[torch.Tensor] = field(default_factory=list)  # per scale: (n,) bool, in the means
    gradients: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    # layer -> stack ("w": PGE, "a", "g") -> (n, K, H, W) sum over the used scales of up(stack)
    # in chunks of channels (see :func:`_upsampled`)
    sums: dict[str, dict[str, list[torch.Tensor]]] = field(default_factory=dict)
    # layer -> (n, H, W) fundamental-scale map M_f of the summed layers
    fundamental: dict[str, torch.Tensor] = field(default_factory=dict)


def _targets_from(target: int | Sequence[int] | None, n: int) -> torch.Tensor | None:
    if target is None or (isinstance(target, str) and target == "auto"):
        return None
    values = [target] * n if isinstance(target, (int, np.integer)) else list(target)
    if len(values) != n:
        raise HoliwidgetError(
            f"{len(values)} targets for {n} images; give one target per image or one for all"
        )
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in values):
        raise HoliwidgetError(f"targets must be class indices (integers), got {values!r}")
    return torch.tensor([int(v) for v in values], dtype=torch.long)


def _chooser(given: torch.Tensor | None):
    def choose(logits: torch.Tensor) -> torch.Tensor:
        classes = logits.shape[1]
        if given is None:
            return logits.argmax(dim=1)
        bad = given[(given < 0) | (given >= classes)]
        if bad.numel():
            raise HoliwidgetError(
                f"target {int(bad[0])} is outside the model's {classes} classes (0..{classes - 1})"
            )
        return given.to(logits.device)

    return choose


def _run_group(
    model: nn.Module,
    modules: dict[str, nn.Module],
    x: torch.Tensor,
    given: torch.Tensor | None,
    methods: list[str],
    device: torch.device,
    progress: tqdm,
    negative: set[str],
    own_targets: bool = False,
) -> tuple[_Captures, torch.Tensor, torch.Tensor]:
    """All network passes for one group of images (``negative``: layers already warned of)."""
    n, _, height, width = x.shape
    sizes = pyramid_sizes(height, width)
    pyramid = bool(PYRAMID_METHODS & set(methods))
    grads_needed = bool(GRADIENT_METHODS & set(methods))
    base_grads = bool(set(_BASELINES) & set(methods))
    order = [sizes[0], *sorted(sizes[1:], reverse=True)] if pyramid else [sizes[0]]
    budget = _PASS_PIXELS.get(device.type, _PASS_PIXELS["default"])
    caps = _Captures()
    logits_all = torch.empty(0)
    targets = given
    for size in order:
        base = size == sizes[0]
        xs = x if base else F.interpolate(x, size=size, mode="bicubic", align_corners=False)
        step = max(1, budget // (size[0] * size[1]))
        parts: dict[str, dict[str, list[torch.Tensor]]] = {
            name: {"a": [], "w": [], "g": []} for name in modules
        }
        logit_parts = []
        for i0 in range(0, n, step):
            sub = slice(i0, min(i0 + step, n))
            if base:
                chooser = _chooser(given[sub] if given is not None else None)
            else:
                chooser = _chooser(None if own_targets else targets[sub])
            rec = record_pass(model, modules, xs[sub], chooser, gradients=grads_needed)
            logit_parts.append((rec.logits, rec.targets))
            if base and pyramid:
                summed = _summed_layers(rec.activations, sizes, _compiled(device))
            used = None if base or not own_targets else rec.targets == targets[sub]
            for name in modules:
                # taken out of the record, so that a summed layer's natives go once summed
                a = rec.activations.pop(name)
                g = rec.gradients.pop(name, None)
                if pyramid and name in summed:
                    _accumulate(caps, name, a, g, methods, n, sub, used, (height, width), base)
                    if not base:
                        continue
                if base and name not in negative and float(a.min()) < 0:
                    negative.add(name)
                    warnings.warn(
                        f"layer {name!r} has negative activations (min {float(a.min()):.3g}); "
                        "CAM methods assume non-negative (post-ReLU) outputs: explain a "
                        "post-activation layer instead",
                        stacklevel=4,
                    )
                parts[name]["a"].append(a)
                if g is not None and (base_grads or pyramid):
                    parts[name]["g"].append(g)
            del rec
            progress.update(sub.stop - sub.start)
        chosen = torch.cat([p[1] for p in logit_parts])
        if base:
            logits_all = torch.cat([p[0] for p in logit_parts])
            targets = chosen
        caps.used.append((chosen == targets).cpu())
        for name in modules:
            for key, store in (("a", caps.activations), ("g", caps.gradients)):
                chunks = parts[name][key]
                if chunks:
                    store.setdefault(name, []).append(
                        chunks[0] if len(chunks) == 1 else torch.cat(chunks)
                    )
    _add_fundamental(caps, methods, (height, width))
    return caps, logits_all, targets


def _compiled(device: torch.device) -> bool:
    return device.type == "cpu" and _COMPILED_FUSION


def _summed_layers(
    activations: dict[str, torch.Tensor], sizes: list[tuple[int, int]], compiled: bool
) -> set[str]:
    """Layers summed over the scales as the passes come (see :class:`_Captures`): those whose
    natives over all scales outnumber the output pixels; with the compiled fusion, which is
    fast on natives, only those whose natives would also hold more than
    ``_HELD_NATIVE_BYTES`` per image (ResNet-50's layer1: 392 MB; MobileNetV2's
    features.3.conv.0: 220 MB, held)."""
    height, width = sizes[0]
    factor = sum(h * w for h, w in sizes) / (height * width)
    summed = set()
    for name, a in activations.items():
        pixels = a.shape[-2] * a.shape[-1] * factor  # natives per channel, all scales
        held = 2 * a.shape[1] * pixels * a.element_size()  # activations and gradients
        if pixels > height * width and (not compiled or held > _HELD_NATIVE_BYTES):
            summed.add(name)
    return summed


def _upsampled(
    a: torch.Tensor,
    g: torch.Tensor | None,
    methods: list[str],
    size: tuple[int, int],
) -> Iterator[tuple[str, int, torch.Tensor]]:
    """One scale's stacks of a summed layer, bilinearly upsampled chunk of channels by chunk:
    per chunk (its index), "a", then "g" (when CAMERAS needs it), then Holistic-CAM's PGE "w".

    Chunks, and so the sums kept per chunk, stay below glibc's mmap threshold: they reuse the
    heap that the network passes have freed instead of mapping fresh memory on top of it
    (whole-layer temporaries raised the peak by up to 140 MB on ResNet-50's layer1).
    """
    channels = a.shape[1]
    layout = _layout(a)
    step = max(1, _SUM_CHUNK_BYTES // (a.element_size() * size[0] * size[1]))
    totals = a.sum(dim=(2, 3), keepdim=True) if "holistic" in methods else None
    for index, k0 in enumerate(range(0, channels, step)):
        ks = slice(k0, min(k0 + step, channels))
        chunk = {"a": a[:, ks].contiguous(memory_format=layout)}
        if g is not None:
            chunk["g"] = g[:, ks].contiguous(memory_format=layout)
        if "holistic" in methods:  # PGE may take the chunk's own copy of G, if nothing else
            own = "cameras" not in methods and not _shares_memory(chunk["g"], g)
            chunk["w"] = pge_from_totals(chunk["g"], totals[:, ks], overwrite=own)
            if own:
                del chunk["g"]
        for key, stack in chunk.items():
            up = F.interpolate(stack, size=size, mode="bilinear", align_corners=False)
            yield key, index, up


def _shares_memory(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x.untyped_storage().data_ptr() == y.untyped_storage().data_ptr()


def _accumulate(
    caps: _Captures,
    name: str,
    a: torch.Tensor,
    g: torch.Tensor | None,
    methods: list[str],
    n: int,
    sub: slice,
    used: torch.Tensor | None,
    size: tuple[int, int],
    base: bool,
) -> None:
    """Add one scale's upsampled stacks of ``sub``'s images (those ``used``) to the sums.

    The fundamental scale gives M_f here and joins the sums only after the last pass
    (:func:`_add_fundamental`): no K x H x W sum is held during the largest passes.
    """
    if not base:
        sums = caps.sums.setdefault(name, {})
        for key, index, up in _upsampled(a, g, methods, size):
            _add(sums, key, index, up, n, sub, used)
    elif "holistic" in methods:
        mf = a.new_zeros((a.shape[0], *size))
        ups = {}
        for key, _, up in _upsampled(a, g, ["holistic"], size):
            ups[key] = up
            if key == "w":  # the chunk's "a" came first
                mf += (ups.pop("w") * ups.pop("a")).sum(dim=1)
        if name not in caps.fundamental:
            caps.fundamental[name] = a.new_zeros((n, *size))
        caps.fundamental[name][sub] = mf


def _add(
    sums: dict[str, list[torch.Tensor]],
    key: str,
    index: int,
    up: torch.Tensor,
    n: int,
    sub: slice,
    used: torch.Tensor | None,
) -> None:
    if used is not None:
        up[~used] = 0
    chunks = sums.setdefault(key, [])
    if index < len(chunks):
        chunks[index][sub] += up
    elif up.shape[0] == n:
        chunks.append(up)
    else:  # laid out as the upsampled stacks are, for a fast sum
        chunks.append(up.new_zeros((n, *up.shape[1:])).contiguous(memory_format=_layout(up)))
        chunks[index][sub] = up


def _add_fundamental(caps: _Captures, methods: list[str], size: tuple[int, int]) -> None:
    """Add the fundamental scale, kept as natives during the passes, to every layer's sums."""
    for name, sums in caps.sums.items():
        a0 = caps.activations[name][0]
        g0 = caps.gradients[name][0] if name in caps.gradients else None
        for key, index, up in _upsampled(a0, g0, methods, size):
            _add(sums, key, index, up, a0.shape[0], slice(None), None)


def _layout(x: torch.Tensor) -> torch.memory_format:
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _ascending(used: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(n, scales) flags from the pass order (fundamental, then largest first) to ascending."""
    sizes = pyramid_sizes(*size)
    order = [sizes[0], *sorted(sizes[1:], reverse=True)]
    return used[:, [order.index(s) for s in sizes]]


def _finite(fused: torch.Tensor, layer: str, stacklevel: int = 5) -> torch.Tensor:
    """Replace non-finite values (PGE's denominator can vanish on negative activations)."""
    if bool(torch.isfinite(fused).all()):
        return fused
    warnings.warn(
        f"Holistic-CAM at layer {layer!r} produced non-finite values (negative activations?); "
        "they were set to 0: explain a post-activation layer instead",
        stacklevel=stacklevel,
    )
    return torch.nan_to_num(fused, nan=0.0, posinf=0.0, neginf=0.0)


def _group_maps(
    caps: _Captures,
    layers: list[str],
    methods: list[str],
    size: tuple[int, int],
    params: dict,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(n, methods, layers, H, W) maps, plus Holistic-CAM's PHA and M_f (n, layers, H, W)."""
    n = caps.activations[layers[0]][0].shape[0]
    out = np.zeros((n, len(methods), len(layers), *size), dtype=np.float32)
    holistic = "holistic" in methods
    primary = np.zeros((n, len(layers), *size), dtype=np.float32) if holistic else None
    fundamental = np.zeros_like(primary) if holistic else None
    for li, name in enumerate(layers):
        acts = caps.activations[name]
        a0 = acts[0]
        grads = caps.gradients.get(name)
        for mi, method in enumerate(methods):
            if method in _BASELINES:
                out[:, mi, li] = finish_maps(_BASELINES[method](a0, grads[0]), size).cpu().numpy()
            elif method == "eigencam":
                out[:, mi, li] = finish_maps(eigen.eigencam(a0), size).cpu().numpy()
        if not PYRAMID_METHODS & set(methods):
            continue
        if name in caps.sums:
            _summed_maps(caps, name, methods, params, out[:, :, li], primary, fundamental, li)
            continue
        fuse = _compiled_fusion if _compiled(a0.device) else _torch_fusion
        for i in range(n):
            keep = [s for s, flags in enumerate(caps.used) if flags[i]]
            fused = fuse([acts[s][i] for s in keep], [grads[s][i] for s in keep], methods, size)
            if holistic:
                pha = _finite(torch.from_numpy(fused["holistic"][0]), name).numpy()
                mf = _finite(torch.from_numpy(fused["holistic"][1]), name).numpy()
                primary[i, li], fundamental[i, li] = pha, mf
                out[i, methods.index("holistic"), li] = holistic_map(
                    pha, mf, params["threshold"], params["median"], params["box"]
                )[0]
            if "cameras" in methods:
                cam = minmax(torch.relu(torch.from_numpy(fused["cameras"])))
                out[i, methods.index("cameras"), li] = cam.numpy()
    return out, primary, fundamental


def _torch_fusion(
    acts: list[torch.Tensor], grads: list[torch.Tensor], methods: list[str], size: tuple[int, int]
) -> dict[str, object]:
    """One image's Holistic-CAM (PHA, M_f) and CAMERAS fused map from its used scales' stacks
    (K, h_s, w_s), fundamental scale first, through torch operations."""
    holistic = "holistic" in methods
    natives = {"a": acts, "g": grads}
    products, base_products = [], []
    if holistic:
        natives["s"] = [t.sum(dim=(1, 2), keepdim=True) for t in acts]  # S_k
        products.append(("w", "a"))
        base_products.append(("w", "a"))
    if "cameras" in methods:
        products.append(("g", "a"))
    fused, based = channel_products(
        natives, products, size, base_products=base_products, derived=_PGE
    )
    result: dict[str, object] = {}
    if holistic:
        result["holistic"] = (fused[("w", "a")].cpu().numpy(), based[("w", "a")].cpu().numpy())
    if "cameras" in methods:
        result["cameras"] = fused[("g", "a")].cpu().numpy()
    return result


def _channels_last(stack: torch.Tensor) -> np.ndarray:
    """(K, h, w) -> C-contiguous (h, w, K) array (a view when the stack is channels-last)."""
    return stack.permute(1, 2, 0).contiguous().numpy()


def _fusion_cpu() -> types.ModuleType:
    """:mod:`holiwidget.fusion_cpu`, imported at the first fusion, after the passes.

    Its numba and LLVM take about 100 MB resident. Before they load, the heap that the passes
    freed is handed back to the system (glibc's ``malloc_trim``), so that the compiler's
    memory takes the place of the passes' instead of adding to it.
    """
    if "holiwidget.fusion_cpu" not in sys.modules:
        # not glibc (macOS, Windows, musl): nothing to hand back this way
        with contextlib.suppress(AttributeError, OSError, TypeError):
            ctypes.CDLL(None).malloc_trim(0)
    from . import fusion_cpu

    return fusion_cpu


def _compiled_fusion(
    acts: list[torch.Tensor], grads: list[torch.Tensor], methods: list[str], size: tuple[int, int]
) -> dict[str, object]:
    """:func:`_torch_fusion` through :mod:`holiwidget.fusion_cpu`."""
    fusion_cpu = _fusion_cpu()
    threads = torch.get_num_threads()
    a = [_channels_last(t) for t in acts]
    g = [_channels_last(t) for t in grads]
    result: dict[str, object] = {}
    if "cameras" in methods:
        result["cameras"] = fusion_cpu.pyramid_products(g, a, size, threads=threads)[0]
    if "holistic" in methods:
        totals = torch.stack([t.sum(dim=(1, 2)) for t in acts]).numpy()  # S_k
        result["holistic"] = fusion_cpu.pyramid_products(a, g, size, totals=totals, threads=threads)
    return result


def _dot_over_chunks(x: list[torch.Tensor], y: list[torch.Tensor], i: int) -> torch.Tensor:
    """sum_k x[i, k] * y[i, k] over the chunks of channels of two sums."""
    return sum((a[i] * b[i]).sum(dim=0) for a, b in zip(x, y, strict=True))


def _summed_maps(
    caps: _Captures,
    name: str,
    methods: list[str],
    params: dict,
    out: np.ndarray,
    primary: np.ndarray | None,
    fundamental: np.ndarray | None,
    li: int,
) -> None:
    """Holistic-CAM and CAMERAS of a layer fused from its scale sums (see :class:`_Captures`)."""
    sums = caps.sums[name]
    counts = torch.stack(caps.used, dim=1).sum(dim=1).tolist()
    for i, count in enumerate(counts):
        if "holistic" in methods:
            pha = _finite(_dot_over_chunks(sums["w"], sums["a"], i), name, stacklevel=6)
            pha = (pha / count**2).cpu().numpy()
            mf = _finite(caps.fundamental[name][i], name, stacklevel=6).cpu().numpy()
            primary[i, li], fundamental[i, li] = pha, mf
            out[i, methods.index("holistic")] = holistic_map(
                pha, mf, params["threshold"], params["median"], params["box"]
            )[0]
        if "cameras" in methods:
            fused = _dot_over_chunks(sums["g"], sums["a"], i) / count**2
            out[i, methods.index("cameras")] = minmax(torch.relu(fused)).cpu().numpy()


def explain(
    model: nn.Module,
    images: ImageInput | Sequence[ImageInput] | torch.Tensor,
    layers: str | Sequence[str] = "auto",
    methods: str | Sequence[str] = ("holistic",),
    target: int | Sequence[int] | None = None,
    threshold: float = 0.5,
    median: int = 51,
    box: int = 91,
    device: str | torch.device = "auto",
    *,
    scale_targets: str = "fixed",
    batch_size: int | None = None,
    progress: bool = False,
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
            or ``"all"``.
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
        batch_size: images whose captures are held at once (default: 1 on the CPU, where
            each image has passes of its own anyway, 32 on an accelerator); memory is bounded
            by this, not by the number of images.
        progress: show a progress bar.

    Returns:
        A dataset with ``attribution`` (image, cam, layer, y, x) in [0, 1]; for
        Holistic-CAM also ``primary`` (PHA) and ``fundamental`` (M_f), (image, layer, y, x);
        ``input`` (image, y, x, rgb) uint8; coordinates for targets and probabilities; the
        parameters, model, versions and device in ``attrs``.
    """
    chosen = parse_methods(methods)
    if scale_targets not in ("fixed", "own"):
        raise HoliwidgetError(f"scale_targets must be 'fixed' or 'own', got {scale_targets!r}")
    if scale_targets == "own" and target is not None:
        raise HoliwidgetError("scale_targets='own' explains each scale's top-1 class; drop target=")
    check_denoise_parameters(threshold, median, box)
    dev = resolve_device(device)
    prep = prepare_images(images)
    n = prep.tensor.shape[0]
    given = _targets_from(target, n)
    modules = resolve_layers(model, layers)
    layer_names = list(modules)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise HoliwidgetError(f"batch_size must be a positive integer, got {batch_size!r}")
    group = batch_size or _GROUP.get(dev.type, _GROUP["default"])
    size = tuple(prep.tensor.shape[-2:])
    params = {"threshold": float(threshold), "median": int(median), "box": int(box)}
    passes = len(PYRAMID_SIDES) if PYRAMID_METHODS & set(chosen) else 1

    param = next(model.parameters(), None)
    home = param.device if param is not None else torch.device("cpu")
    maps, prims, funds, logits, targets = [], [], [], [], []
    negative: set[str] = set()
    used: list[torch.Tensor] = []
    bar = tqdm(total=n * passes, desc="explain", unit="pass", disable=not progress)
    try:
        model.to(dev)
        with prepared(model):
            for g0 in range(0, n, group):
                sub = slice(g0, min(g0 + group, n))
                x = prep.tensor[sub].to(dev)
                caps, lg, tg = _run_group(
                    model,
                    modules,
                    x,
                    given[sub] if given is not None else None,
                    chosen,
                    dev,
                    bar,
                    negative,
                    own_targets=scale_targets == "own",
                )
                m, p, f = _group_maps(caps, layer_names, chosen, size, params)
                used.append(torch.stack(caps.used, dim=1))
                del caps
                maps.append(m)
                prims.append(p)
                funds.append(f)
                logits.append(lg.cpu())
                targets.append(tg.cpu())
    finally:
        model.to(home)
        bar.close()
    from .dataset import build_dataset

    return build_dataset(
        attribution=np.concatenate(maps),
        primary=np.concatenate(prims) if prims[0] is not None else None,
        fundamental=np.concatenate(funds) if funds[0] is not None else None,
        display=prep.display,
        ids=prep.ids,
        methods=chosen,
        layers=layer_names,
        logits=torch.cat(logits),
        targets=torch.cat(targets),
        scale_used=_ascending(torch.cat(used).numpy(), size) if passes > 1 else None,
        model=model,
        params={
            **params,
            "layers": layer_names,
            "methods": chosen,
            "target": None if given is None else given.tolist(),
            "scales": [list(s) for s in pyramid_sizes(*size)] if passes > 1 else [list(size)],
            "input_size": list(size),
            "batch_size": group,
            "scale_targets": scale_targets,
        },
        device=str(dev),
    )
