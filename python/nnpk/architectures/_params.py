"""The parameters of random network number `index`, given parameters checked, and a network's logits."""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np

from .. import _core
from .._validate import as_points, as_shaped_points, check_int, compute_dtype
from ._layers import Dense
from ._network import Compiled, Network, NormLayer

__all__ = ["DRAW_SCHEME", "PREVIOUS_DRAW_SCHEMES", "SEED_MAX", "check_arch", "check_buffers", "check_network_params",
           "check_points", "initial_buffers", "network_outputs", "network_params", "prepare_network_points",
           "sample_params"]

SEED_MAX = 2**64 - 1
# How network m of a seed is drawn. Stores record it: sums drawn by another scheme cannot be continued.
DRAW_SCHEME = ("nnpk_v3: Philox4x32-10 keyed by (seed, network, layer, stream), float32 Box-Muller with a correctly "
               "rounded radius")
# Stores without a recorded scheme were made by nnpk 0.1. nnpk 0.2's scheme (nnpk_v2, recorded as such) took the
# radius's square root by an approximation whose last bits depend on the CPU.
PREVIOUS_DRAW_SCHEMES = {None: "nnpk_v1 (nnpk 0.1: Philox4x64-10, float64 Box-Muller)"}


def check_arch(arch, kernel: Optional[str] = None) -> Network:
    """`arch` if it is a network (an ``nnpk.MLP`` or ``nnpk.Network``), else a TypeError; with `kernel`
    (the caller's name), a ValueError if the network has batch normalisation, whose kernels are not defined."""
    if not isinstance(arch, Network):
        raise TypeError(f"arch must be an nnpk.MLP or nnpk.Network, got {type(arch).__name__}")
    if kernel is not None and arch.has_batch_norm:
        raise ValueError(f"{kernel} cannot take a network with BatchNorm: batch normalisation makes a point's "
                         "output depend on the whole batch it is normalised with, so a kernel entry for a pair of "
                         "points is not defined by the pair alone")
    return arch


def check_points(x, name: str, network: Network, dtype, *, point_shape=None, other: str = "x1"):
    """x as the points the network takes, in `dtype` (C-contiguous, finite): (n, features) for a network
    that starts with a Dense layer, else (n, features), (n, length, channels) or (n, height, width,
    channels); with `point_shape`, each point must have that shape (`other`'s)."""
    dt = compute_dtype(dtype)
    if isinstance(network.layers[0], Dense):  # flat points only
        n_features = None if point_shape is None else point_shape[0]
        return as_points(x, name, dt, n_features=n_features, other=other)
    points = as_shaped_points(x, name, dt, point_shape=point_shape, other=other)
    if network.reads_graphs:
        from ._graphs import check_graph_points

        check_graph_points(points, name, network)
    return points


def prepare_network_points(x1, x2, network: Network, dtype, *, names=("x1", "x2")):
    """(compiled network, x1, x2): the points checked against each other and the network (errors name
    them by `names`), converted to `dtype` and flattened to (n, features per point)."""
    a1 = check_points(x1, names[0], network, dtype)
    a2 = None if x2 is None else check_points(x2, names[1], network, dtype, point_shape=a1.shape[1:],
                                                other=names[0])
    compiled = network.compile(a1.shape[1:])
    flat = lambda a: None if a is None else a.reshape(a.shape[0], -1)
    return compiled, flat(a1), flat(a2)


def sample_params(arch, input_dim, seed: int, index: int) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """Network `index`'s stored parameters, as the engine draws them.

    One pair per parametrised layer in order (residual blocks expanded; for an ``nnpk.MLP``
    the hidden layers, then the readout): ``(W, b)`` per Dense or Conv layer, two pairs per
    ``Recurrent`` layer (``(U, b)`` with U of shape ``(features, width)``, then ``(W, None)`` with
    W of shape ``(width, width)``), a dense ``W`` of shape ``(n_in, n_out)``,
    a convolution's of shape ``kernel_size + (in_channels, channels)`` (the HWIO layout of
    JAX); `input_dim` is the shape of one point (an int for flat features). ``b`` has shape
    ``(n_out,)``, or is None without biases. Under "ntk" they are the unit-variance draws
    ``eps, beta`` (Gaussian, or by the network's init scheme); under "standard"
    ``W = W_std / sqrt(fan_in) * eps`` and ``b = b_std * beta``. A ``BatchNorm`` layer's
    entry is ``(gamma, beta)``, ones and zeros of shape ``(channels,)``: nothing is drawn.

    The draws come from Philox4x32-10 keyed by (seed, index, Dense or Conv layer) and a float32
    Box-Muller transform: network ``index`` is the same whichever thread, tile or
    process draws it. The engine uses exactly these values, in float32 and float64
    runs alike.
    """
    seed = check_int(seed, "seed", minimum=0, maximum=SEED_MAX)
    index = check_int(index, "index", minimum=0, maximum=SEED_MAX)
    check_arch(arch)
    shape = tuple(input_dim) if isinstance(input_dim, (tuple, list)) else (input_dim,)
    return network_params(arch, tuple(check_int(s, "input_dim", minimum=1) for s in shape), seed, index)


def network_params(network: Network, input_shape, seed: int,
                   index: int) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """Network `index`'s stored parameters, one pair per parametrised layer (see sample_params)."""
    compiled = network.compile(input_shape)
    params: List[Tuple[np.ndarray, Optional[np.ndarray]]] = []
    k = 0  # the draws are keyed by the index among the Dense and Conv layers
    for p in compiled.entries:
        if isinstance(p, NormLayer):
            params.append((np.ones(p.channels), np.zeros(p.channels)))
            continue
        eps, beta = _core.sequential_draw(compiled.spec, seed, index, k)
        k += 1
        if network.parameterization == "standard":
            eps *= p.w_std / math.sqrt(p.fan_in)
            if beta is not None:
                beta *= p.layer.b_std
        params.append((eps.reshape(p.weight_shape), beta))
    return params


def initial_buffers(compiled: Compiled) -> List[Tuple[np.ndarray, np.ndarray]]:
    """The running statistics of each batch normalisation before training, in network order: a
    (running_mean, running_var) pair of float64 arrays (zeros, ones), which the engine updates in place."""
    return [(np.zeros(p.channels), np.ones(p.channels)) for p in compiled.norms]


def check_network_params(params, compiled: Compiled, dtype) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """User parameters in the layout of sample_params, as the engine's (fan_in, fan_out) matrices of `dtype`
    (and a batch normalisation's (gamma, beta))."""
    if not isinstance(params, (list, tuple)):
        raise TypeError(f"params must be a list of (W, b) pairs, one per Dense or Conv layer, "
                        f"got {type(params).__name__}")
    n_norms = len(compiled.norms)
    if len(params) != len(compiled.entries):
        norms = f" and {n_norms} BatchNorm" if n_norms else ""
        raise ValueError(f"params has {len(params)} layers; the network has {len(compiled.params)} Dense or Conv"
                         f"{norms} layers")
    out: List[Tuple[np.ndarray, Optional[np.ndarray]]] = []
    for k, (pair, p) in enumerate(zip(params, compiled.entries)):
        what = "(gamma, beta)" if isinstance(p, NormLayer) else "(W, b)"
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError(f"params[{k}] must be a {what} pair")
        where = f"layer {p.label} ({p.layer.describe()})"
        if isinstance(p, NormLayer):
            out.append(_norm_pair(pair, k, p, where, dtype))
            continue
        W, b = np.asarray(pair[0]), pair[1]
        if W.shape != p.weight_shape:
            raise ValueError(f"params[{k}] W has shape {W.shape}; {where} expects {p.weight_shape} on points of shape "
                             f"{compiled.input_shape}")
        if p.has_bias == (b is None):
            has = "has no bias" if b is None else "has a bias"
            layer_has = "its W has no bias" if p.recurrent_weights else f"has b_std={p.layer.b_std}"
            raise ValueError(f"params[{k}] {has} but {where} {layer_has}")
        if b is not None:
            b = np.asarray(b)
            if b.shape != (p.fan_out,):
                raise ValueError(f"params[{k}] b has shape {b.shape}; {where} expects ({p.fan_out},)")
        for name, a in (("W", W), ("b", b)):
            if a is not None and (a.dtype.kind not in "biuf" or not np.isfinite(a).all()):
                raise ValueError(f"params[{k}] {name} must hold finite real numbers")
        out.append((np.ascontiguousarray(W.reshape(p.fan_in, p.fan_out), dtype=dtype),
                    None if b is None else np.ascontiguousarray(b, dtype=dtype)))
    return out


def _norm_pair(pair, k: int, p: NormLayer, where: str, dtype) -> Tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, a in zip(("gamma", "beta"), pair):
        a = np.asarray(a)
        if a.shape != (p.channels,):
            raise ValueError(f"params[{k}] {name} has shape {a.shape}; {where} expects ({p.channels},)")
        if a.dtype.kind not in "biuf" or not np.isfinite(a).all():
            raise ValueError(f"params[{k}] {name} must hold finite real numbers")
        arrays.append(np.ascontiguousarray(a, dtype=dtype))
    return arrays[0], arrays[1]


def check_buffers(buffers, compiled: Compiled) -> Optional[List[Tuple[np.ndarray, np.ndarray]]]:
    """Running statistics, one (running_mean, running_var) pair of (channels,) float64 arrays per batch
    normalisation in network order; None for a network without any."""
    norms = compiled.norms
    if not norms:
        if buffers is not None and len(buffers) > 0:
            raise ValueError(f"buffers has {len(buffers)} entries; the network has no BatchNorm")
        return None
    if buffers is None:
        raise ValueError(f"the network has {len(norms)} BatchNorm layers: pass buffers, one (running_mean, "
                         "running_var) pair per BatchNorm, the statistics they normalise with in evaluation")
    if not isinstance(buffers, (list, tuple)) or len(buffers) != len(norms):
        count = len(buffers) if isinstance(buffers, (list, tuple)) else type(buffers).__name__
        raise ValueError(f"buffers must hold one (running_mean, running_var) pair per BatchNorm ({len(norms)}), got "
                         f"{count}")
    out = []
    for k, (pair, norm) in enumerate(zip(buffers, norms)):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError(f"buffers[{k}] must be a (running_mean, running_var) pair")
        arrays = [np.asarray(a) for a in pair]
        for name, a in zip(("running_mean", "running_var"), arrays):
            if a.shape != (norm.channels,):
                raise ValueError(f"buffers[{k}] {name} has shape {a.shape}; layer {norm.label} "
                                 f"({norm.layer.describe()}) expects ({norm.channels},)")
            if a.dtype.kind not in "biuf" or not np.isfinite(a).all():
                raise ValueError(f"buffers[{k}] {name} must hold finite real numbers")
        if np.any(arrays[1] < 0):
            raise ValueError(f"buffers[{k}] running_var has negative values")
        out.append((np.array(arrays[0], dtype=np.float64), np.array(arrays[1], dtype=np.float64)))
    return out


def network_outputs(x, network: Network, seed: int, index: int, params=None, buffers=None) -> np.ndarray:
    """The logits (n, C) of network `index` of `seed` (or of the network with `params`, its batch normalisations
    using the running statistics `buffers`), by the engine in float64."""
    compiled, a, _ = prepare_network_points(x, None, network, "float64", names=("x", None))
    if params is None:
        params = network_params(network, compiled.input_shape, seed, index)
    checked = check_network_params(params, compiled, np.float64)
    return _core.sequential_outputs(a, compiled.spec, checked, 1, check_buffers(buffers, compiled), False)
