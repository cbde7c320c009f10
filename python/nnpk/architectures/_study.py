"""The architectures of the linearised-network study: LeNet, a two-hidden-layer MLP and a CIFAR-style ResNet-18.

All use the "standard" parameterization with He-style weights (``W_std = sqrt(2)``, the variance that keeps a
relu network's activations at the same scale through depth, as PyTorch's ``kaiming_normal_``) and small
nonzero biases (``b_std = 0.1``): a relu network with zero biases has every unit at its kink at x = 0, where the
neural anisotropy directions are taken. The networks are descriptions; their weights are network ``index`` of a
seed, drawn by ``nnpk.sample_params`` the same wherever they are built.
"""

from __future__ import annotations

import math
from typing import List, Optional

from .._validate import check_int
from ._layers import AvgPool, BatchNorm, Conv, Dense, Flatten, GlobalAvgPool, Residual
from ._mlp import MLP
from ._network import Network

__all__ = ["HE_W_STD", "STUDY_B_STD", "lenet", "mlp_100", "resnet18"]

HE_W_STD = math.sqrt(2.0)
STUDY_B_STD = 0.1


def _dims(dims) -> int:
    dims = check_int(dims, "dims", minimum=1)
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 (points (length, channels)) or 2 (points (height, width, channels)), "
                         f"got {dims}")
    return dims


def _window(size: int, dims: int):
    return size if dims == 1 else (size, size)


def lenet(out: int = 1, dims: int = 2, *, W_std: float = HE_W_STD, b_std: Optional[float] = STUDY_B_STD,
          parameterization: str = "standard") -> Network:
    """LeNet-5: Conv 6 5x5, AvgPool 2, Conv 16 5x5, AvgPool 2, Flatten, Dense 120, Dense 84, Dense out.

    relu after every layer but the readout; "valid" convolutions, as in LeCun et al. (1998),
    so 28 x 28 points flatten to 4 x 4 x 16 = 256 features and 32 x 32 ones to 400; with
    ``dims=1`` the convolutions and pools are 1-D (window 5 and 2) for points ``(length,
    channels)`` such as MNIST-1D's ``(40, 1)``, which flatten to 7 x 16 = 112 features.

    Parameters
    ----------
    out : int
        Logits (1: the scalar network of the NTK tasks).
    dims : 1 or 2
        Spatial dimensions of the points.
    W_std, b_std, parameterization
        As in ``nnpk.Network``'s layers, for every layer.

    Returns
    -------
    nnpk.Network
    """
    dims = _dims(dims)
    out = check_int(out, "out", minimum=1)
    conv = lambda channels: Conv(channels, _window(5, dims), padding="valid", W_std=W_std, b_std=b_std)
    return Network((conv(6), "relu", AvgPool(_window(2, dims)), conv(16), "relu", AvgPool(_window(2, dims)),
                    Flatten(), Dense(120, W_std, b_std), "relu", Dense(84, W_std, b_std), "relu",
                    Dense(out, W_std, b_std)), parameterization=parameterization)


def mlp_100(out: int = 1, *, W_std: float = HE_W_STD, b_std: Optional[float] = STUDY_B_STD,
            parameterization: str = "standard") -> MLP:
    """The fully connected network 100-100-out: two hidden relu layers of 100 units and a linear readout.

    Parameters
    ----------
    out : int
        Logits.
    W_std, b_std, parameterization
        As in ``nnpk.MLP``.

    Returns
    -------
    nnpk.MLP
    """
    out = check_int(out, "out", minimum=1)
    return MLP(hidden=[100, 100], out=out, activation="relu", W_std=W_std, b_std=b_std,
               parameterization=parameterization)


def resnet18(width: int = 64, out: int = 1, dims: int = 2, *, batch_norm: bool = True, W_std: float = HE_W_STD,
             b_std: Optional[float] = STUDY_B_STD, parameterization: str = "standard") -> Network:
    """The CIFAR-style ResNet-18 (He et al. 2016): a 3x3 stem, four stages of two basic blocks, pooling, readout.

    Stem: Conv w 3x3, BatchNorm, relu. Stage s (s = 0..3) has ``c = 2^s w`` channels and
    stride 1, 2, 2, 2; a basic block is ``relu(x + F(x))`` with ``F`` = Conv c 3x3,
    BatchNorm, relu, Conv c 3x3, BatchNorm. Then GlobalAvgPool and Dense out. Convolutions
    have no bias (the BatchNorm after each has one), "same" padding; the readout has a bias.

    nnpk's ``Residual`` adds a block's output to its input, so a block must keep the shape,
    and the projection shortcut of the standard network (``relu(P(x) + F(x))``, P a strided
    1x1 convolution and BatchNorm, F starting with a strided 3x3 convolution from ``c / 2``
    channels) cannot be written. Here the first block of stages 1-3 is
    ``relu(y + F(y))`` with ``y = BatchNorm(P(x))``: the strided 1x1 projection and its
    BatchNorm come before the block, outside it, and both of the block's convolutions are
    ``c -> c`` channels. It keeps every identity path of the standard network and its depth
    (18 weight layers counting the readout, plus the three projections); its first
    convolution of stages 1-3 has ``9 c^2`` weights instead of ``9 c^2 / 2``, so
    ``width=64`` has 12,717,633 parameters with ``out=1`` (the standard network: 11,169,345).

    Parameters
    ----------
    width : int
        Channels w of the first stage.
    out : int
        Logits.
    dims : 1 or 2
        Spatial dimensions of the points: 2 for images ``(height, width, channels)``, 1 for
        signals ``(length, channels)`` (kernel sizes 3 and 1 along the one axis).
    batch_norm : bool
        Without it the network has no BatchNorm layers, and its kernels are defined (nnpk's
        kernels refuse batch normalisation, whose output depends on the batch).
    W_std, b_std, parameterization
        As in ``nnpk.Network``'s layers (``b_std`` for the readout only).

    Returns
    -------
    nnpk.Network
    """
    width = check_int(width, "width", minimum=1)
    out = check_int(out, "out", minimum=1)
    dims = _dims(dims)
    if not isinstance(batch_norm, bool):
        raise TypeError(f"batch_norm must be True or False, got {batch_norm!r}")
    norm: List = [BatchNorm()] if batch_norm else []
    conv = lambda channels, size, stride=1: Conv(channels, _window(size, dims), stride=stride, padding="same",
                                                 W_std=W_std, b_std=None)
    block = lambda channels: Residual((conv(channels, 3), *norm, "relu", conv(channels, 3), *norm))
    layers: List = [conv(width, 3), *norm, "relu"]
    for stage in range(4):
        channels = width * 2**stage
        if stage > 0:
            layers += [conv(channels, 1, stride=2), *norm]
        layers += [block(channels), "relu", block(channels), "relu"]
    layers += [GlobalAvgPool(), Dense(out, W_std, b_std)]
    return Network(tuple(layers), parameterization=parameterization)
