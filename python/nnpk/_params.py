"""The parameters of random network number `index`."""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np

from . import _core
from ._arch import MLP
from ._validate import check_int

__all__ = ["sample_params"]

SEED_MAX = 2**64 - 1


def _check_arch(arch) -> MLP:
    if not isinstance(arch, MLP):
        raise TypeError(f"arch must be an nnpk.MLP, got {type(arch).__name__}")
    return arch


def sample_params(arch: MLP, input_dim: int, seed: int, index: int) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """Network `index`'s stored parameters, as the engine draws them.

    Returns one ``(W, b)`` per layer (hidden layers, then the readout), ``W`` of
    shape ``(n_in, n_out)`` and ``b`` of shape ``(n_out,)`` or None without biases.
    Under "ntk" they are the standard normals ``eps, beta`` of CONVENTIONS.md;
    under "standard" ``W = W_std / sqrt(n_in) * eps`` and ``b = b_std * beta``.

    The draws come from Philox4x64-10 keyed by (seed, index, layer): network
    ``index`` is the same whichever thread, tile or process draws it. The engine
    uses these values (rounded to float32 when it computes in float32).
    """
    arch = _check_arch(arch)
    input_dim = check_int(input_dim, "input_dim", minimum=1)
    seed = check_int(seed, "seed", minimum=0, maximum=SEED_MAX)
    index = check_int(index, "index", minimum=0, maximum=SEED_MAX)
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
