"""The parameters of random network number `index`."""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np

from . import _core
from ._arch import MLP
from ._architecture import Network
from ._sequential import network_params
from ._validate import check_int

__all__ = ["sample_params"]

SEED_MAX = 2**64 - 1


def _check_arch(arch, allow_network: bool = False):
    if not isinstance(arch, (MLP, Network) if allow_network else MLP):
        kinds = "an nnpk.MLP or nnpk.Network" if allow_network else "an nnpk.MLP"
        raise TypeError(f"arch must be {kinds}, got {type(arch).__name__}")
    return arch


def sample_params(arch, input_dim, seed: int, index: int) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """Network `index`'s stored parameters, as the engine draws them.

    For an ``nnpk.MLP``, one ``(W, b)`` per layer (hidden layers, then the readout), ``W``
    of shape ``(n_in, n_out)``; for an ``nnpk.Network``, one per Dense or Conv layer in order
    (residual blocks expanded), a convolution's ``W`` of shape ``kernel_size + (in_channels,
    channels)`` (neural-tangents' and JAX's HWIO layout), and `input_dim` is the shape of one
    point (an int for flat features). ``b`` has shape ``(n_out,)``, or is None without biases.
    Under "ntk" they are the unit-variance draws ``eps, beta`` of CONVENTIONS.md (Gaussian, or
    by the network's init scheme); under "standard" ``W = W_std / sqrt(fan_in) * eps`` and
    ``b = b_std * beta``.

    The draws come from Philox4x64-10 keyed by (seed, index, layer): network
    ``index`` is the same whichever thread, tile or process draws it. The engine
    uses these values (rounded to float32 when it computes in float32).
    """
    seed = check_int(seed, "seed", minimum=0, maximum=SEED_MAX)
    index = check_int(index, "index", minimum=0, maximum=SEED_MAX)
    if isinstance(_check_arch(arch, allow_network=True), Network):
        shape = (input_dim,) if not isinstance(input_dim, (tuple, list)) else tuple(input_dim)
        return network_params(arch, tuple(check_int(s, "input_dim", minimum=1) for s in shape), seed, index)
    arch = _check_arch(arch)
    input_dim = check_int(input_dim, "input_dim", minimum=1)
    spec = arch._spec(input_dim)
    widths = arch.widths(input_dim)
    params = []
    for layer in range(arch.n_layers):
        eps, beta = _core.draw_layer(spec, seed, index, layer)
        if arch.parameterization == "standard":
            eps *= arch.w_stds[layer] / math.sqrt(widths[layer])
            if beta is not None:
                beta *= arch.b_stds[layer]
        params.append((eps, beta))
    return params
