"""How the fusion bounds its memory and picks its way: every tuning constant in one place.

The fusion never holds ``K x H x W`` floats per scale (over 400 MB for ResNet-50's layer4).
A layer's natives (activations and gradients of every scale) are held until its last pass
and fused then, unless holding them would cost more than summing as the passes come: a
shallow layer whose natives outnumber the output pixels is summed (torch) or, with the
compiled CPU loops, which are fast on natives, only when its natives would also exceed
:data:`HELD_NATIVE_BYTES` per image. Working sets of the torch ways are sized to stay in
cache, and chunks of the summed way below glibc's mmap threshold (32 MiB), so they reuse the
heap the passes freed instead of mapping fresh memory on top of it.
"""

from __future__ import annotations

#: Natives of one layer (activations and gradients, all scales, per image) that the compiled
#: CPU fusion holds; a larger shallow layer is summed as its passes end (ResNet-50's layer1:
#: 392 MB, summed; MobileNetV2's features.3.conv.0: 220 MB, held).
HELD_NATIVE_BYTES = 256 * 2**20
#: Bytes of one upsampled chunk of channels of a summed layer.
SUM_CHUNK_BYTES = 16 * 2**20
#: Banded way: float32 elements of one chunk of channels' accumulated stacks.
CHUNK_ELEMENTS = 16_000_000
#: Banded way: output rows, and columns, handled by one dense product.
ROW_TILE = 16
COL_TILE = 32
#: Banded way: inputs at most this wide are resized along the columns by one dense product.
DENSE_WIDTH = 64
#: Stacks with at most this many native pixels per output pixel, summed over the scales, go
#: the Gram way (for a 224 x 224 input: ResNet-50's layer4 0.06, layer3 0.24; layer2, at
#: 0.95, is faster upsampled).
GRAM_MAX_DENSITY = 0.35
#: Gram way: candidate tile sides (the cheapest for the stack is taken), and the float32
#: elements one group of tiles may hold at once.
GRAM_TILES = (8, 12, 16, 24, 32, 48, 56)
GRAM_GROUP_ELEMENTS = 6_000_000
