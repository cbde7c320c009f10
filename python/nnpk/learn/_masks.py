"""Learned unit masks: a random network whose hidden units are switched on or off per task.

Unit i of a masked layer multiplies its output by ``m_i = sigmoid(k s_i)`` in training, its score ``s_i``
learned and the slope k rising from step to step, and by the step ``1[s_i > 0]`` in evaluation. Multiplying
unit i's output by m_i is multiplying row i of the weights that read it (every row of that unit's channel,
for a convolution or a flattened map) by m_i: the masked network is the random network with those weights
scaled, and ``dL/dm_i`` is the sum over those rows of ``dL/dW (.) W``, which the engine's weight gradients give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List

import numpy as np

from ..architectures import (
    Activation,
    Aggregate,
    AvgPool,
    BatchNorm,
    Conv,
    Dense,
    Flatten,
    GlobalAvgPool,
    GlobalSumPool,
    LayerNorm,
    MaxPool,
    Parallel,
    Recurrent,
    Residual,
    SumPool,
)

__all__ = ["MaskSite", "apply_masks", "mask_gradients", "mask_sites", "mask_slope", "sigmoid"]

# Layers between a masked activation and the layer that reads it: each keeps channels apart (and commutes with a
# nonnegative per-channel factor).
_PASS_THROUGH = (AvgPool, SumPool, MaxPool, GlobalAvgPool, GlobalSumPool, Flatten, Aggregate)


@dataclass(frozen=True)
class MaskSite:
    """The units of one hidden activation layer: `layer` (an index into arch.layers), `channels` units, read by
    the parametrised layer of sample_params entry `entry`, whose weight row r belongs to unit ``r % channels``."""

    layer: int
    entry: int
    channels: int


def mask_sites(arch) -> List[MaskSite]:
    """Every hidden activation layer of `arch` whose units a Dense or Conv layer reads (through pooling or
    flattening only); a ValueError names a layer that masks cannot go through."""
    layers = arch.layers
    entries = []  # the first sample_params entry of each layer (None for layers without parameters)
    count = 0
    for i, layer in enumerate(layers):
        if isinstance(layer, (Residual, Recurrent, Parallel)):
            raise ValueError(f"train='masks' masks the units of sequential layers; layer {i} ({layer.describe()}) "
                             "is not supported")
        entries.append(count if isinstance(layer, (Dense, Conv, BatchNorm)) else None)
        count += isinstance(layer, (Dense, Conv, BatchNorm))
    sites = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, Activation):
            continue
        j = i + 1
        while j < len(layers) and isinstance(layers[j], _PASS_THROUGH):
            j += 1
        if j == len(layers):
            continue
        if isinstance(layers[j], BatchNorm):
            raise ValueError(f"train='masks': layer {j} ({layers[j].describe()}) normalises the units of layer {i} "
                             "per channel, which would undo their masks")
        if isinstance(layers[j], LayerNorm):
            raise ValueError(f"train='masks': layer {j} ({layers[j].describe()}) normalises the units of layer {i} "
                             "together, which would rescale the units the masks keep by the ones they remove")
        if not isinstance(layers[j], (Dense, Conv)):
            continue
        entry = entries[j]
        assert entry is not None  # a Dense or Conv layer
        sites.append(MaskSite(i, entry, _channels(arch, i)))
    return sites


def _channels(arch, layer: int) -> int:
    """Units per position of layer `layer`'s output: the last Dense or Conv before it sets them."""
    for previous in reversed(arch.layers[:layer]):
        if isinstance(previous, Dense):
            return previous.width
        if isinstance(previous, Conv):
            return previous.channels
    raise ValueError(f"train='masks': layer {layer} reads the input directly; there are no hidden units to mask")


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def mask_slope(slopes, k: int, total: int) -> float:
    """The sigmoid's slope at step k of `total`: geometric from slopes[0] to slopes[1]."""
    first, last = slopes
    return first * (last / first) ** (min(k, total - 1) / max(1, total - 1))


def apply_masks(W0: np.ndarray, masks: np.ndarray, out: np.ndarray) -> None:
    """out (fan_in, fan_out) = W0 with row r scaled by masks[r % len(masks)]."""
    channels = len(masks)
    np.multiply(W0, np.tile(masks, W0.shape[0] // channels)[:, None], out=out, casting="unsafe")


def mask_gradients(grad_W: np.ndarray, W0: np.ndarray, channels: int) -> np.ndarray:
    """dL/dm per unit from the gradient of the weights reading the units (both (fan_in, fan_out))."""
    per_row = np.einsum("ij,ij->i", grad_W, W0)
    return per_row.reshape(-1, channels).sum(axis=0)


def check_slopes(slopes) -> tuple:
    if (not isinstance(slopes, (tuple, list)) or len(slopes) != 2
            or not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in slopes)):
        raise ValueError(f"mask_slope must be a pair of positive numbers (first, last), got {slopes!r}")
    return float(slopes[0]), float(slopes[1])
