"""Kernels of sequential networks (nnpk.Network) on the engine: points, plans, parameters."""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np

from . import _core
from ._architecture import Compiled, Dense, Network
from ._streaming import KernelMap, Plan
from ._tangent import check_tangent_memory
from ._validate import as_shaped_points, check_memory, compute_dtype

__all__ = ["check_network_params", "network_feature_bytes", "network_nngp_plan", "network_outputs", "network_params",
           "network_tangent_sums", "prepare_network_points", "readout_layer"]

_DEFAULT_TILE_ROWS = 2 * _core.ROW_QUANTUM
_DEFAULT_GRAM_TILE = 256
_DEFAULT_PANEL_COLS = 128
_DEFAULT_NTK_TILE = 4 * _core.ROW_QUANTUM


def prepare_network_points(x1, x2, network: Network, dtype):
    """(compiled network, x1, x2): the points checked against each other and the network,
    converted to `dtype` and flattened to (n, features per point)."""
    dt = compute_dtype(dtype)
    a1 = as_shaped_points(x1, "x1", dt)
    a2 = None if x2 is None else as_shaped_points(x2, "x2", dt, point_shape=a1.shape[1:])
    compiled = network.compile(a1.shape[1:])
    flat = lambda a: None if a is None else a.reshape(a.shape[0], -1)
    return compiled, flat(a1), flat(a2)


def readout_layer(network: Network) -> Optional[Dense]:
    """The final layer when it is a Dense readout (the "readout" estimator integrates it)."""
    last = network.layers[-1]
    return last if isinstance(last, Dense) else None


def check_network_estimator(network: Network, estimator: Optional[str]) -> None:
    """Refuses the NNGP estimators a Network cannot take."""
    if estimator == "conditional":
        raise ValueError("estimator='conditional' integrates an MLP's last hidden layer by its dual map; an "
                         "nnpk.Network takes 'readout' or 'sampled'")
    if estimator == "readout" and readout_layer(network) is None:
        raise ValueError(f"estimator='readout' integrates a final Dense layer; this network ends with "
                         f"{network.layers[-1].describe()}: use estimator='sampled'")


def node_sums(a1, a2, compiled: Compiled, nodes: List[int], *, seed, start, stop, n_threads, progress=None,
              initial=None, tile_rows=_DEFAULT_TILE_ROWS, gram_tile=_DEFAULT_GRAM_TILE,
              panel_cols=_DEFAULT_PANEL_COLS, in_place=False) -> List[np.ndarray]:
    """Float64 sums over networks [start, stop) of each node's un-normalised feature Gram (a
    spatial node's features averaged over positions), continued from `initial` (in place: in
    its arrays themselves)."""
    n1 = a1.shape[0]
    n2 = n1 if a2 is None else a2.shape[0]
    check_memory(8 * n1 * n2 * len(nodes), f"the output ({len(nodes)} x {n1} x {n2} float64)")
    return _core.sequential_sums(a1, a2, compiled.spec, seed, start, stop, list(nodes), n_threads, tile_rows,
                                 gram_tile, panel_cols, progress, initial, in_place)


def network_nngp_plan(a1, a2, network: Network, compiled: Compiled, *, seed, layers, estimator, n_threads) -> Plan:
    """The NNGP of the logits (and with layers="all" of every layer's pooled features):
    sampled, or with the Dense readout integrated exactly ("readout")."""
    all_layers = layers == "all"
    widths = [shape[-1] for shape in compiled.shapes]
    kernel_layers = list(range(len(network.layers))) if all_layers else [len(network.layers) - 1]
    sampled = kernel_layers if estimator == "sampled" else kernel_layers[:-1]
    maps = [KernelMap(i, 1.0 / widths[l]) for i, l in enumerate(sampled)]
    nodes = [compiled.layer_nodes[l] for l in sampled]
    if estimator == "readout":
        # E[f . f' / C | h] = W_std^2 h . h' / n_in + b_std^2 for the readout's input h, whatever the
        # weights' scheme (each has unit variance and no mean; an orthogonal one has E[W W^T] = C I).
        readout = readout_layer(network)
        n_in = compiled.params[-1].fan_in
        w2, b2 = readout.W_std**2, (readout.b_std or 0.0) ** 2
        if len(network.layers) == 1:
            # The readout reads the input itself: the kernel is exact.
            x1 = a1.astype(np.float64, copy=False)
            x2 = x1 if a2 is None else a2.astype(np.float64, copy=False)
            return Plan(lambda *args, **kwargs: [x1 @ x2.T], [KernelMap(0, w2 / n_in, b2)], exact=True)
        source = compiled.layer_nodes[-2]
        if source not in nodes:
            nodes.append(source)
        maps.append(KernelMap(nodes.index(source), w2 / n_in, b2))
    run = lambda start, stop, initial, progress=None, in_place=False: node_sums(
        a1, a2, compiled, nodes, seed=seed, start=start, stop=stop, n_threads=n_threads, initial=initial,
        progress=progress, in_place=in_place)
    return Plan(run, maps)


def network_feature_bytes(compiled: Compiled, n: int, weights, biases, itemsize: int) -> int:
    """Bytes of one network's stored layer inputs and output cotangents (one per logit) for n points."""
    n_pad = -(-n // _core.ROW_QUANTUM) * _core.ROW_QUANTUM
    total = 0
    for p, w, b in zip(compiled.params, weights, biases):
        if w:
            total += p.input_size + p.positions * compiled.out * p.fan_out
        if b:
            total += compiled.out * p.fan_out
    return n_pad * total * itemsize


def check_tangent_network(compiled: Compiled) -> None:
    if not compiled.params:
        raise ValueError("get='ntk' differentiates Dense and Conv layers' parameters; this network has none")


def network_tangent_sums(a1, a2, compiled: Compiled, *, seed, start, stop, nngp, weights, biases, per_layer,
                         per_logit, n_threads, progress=None, initial=None, tile_rows=_DEFAULT_TILE_ROWS,
                         gram_tile=_DEFAULT_NTK_TILE, panel_cols=_DEFAULT_PANEL_COLS,
                         in_place=False) -> List[np.ndarray]:
    """Float64 sums over networks [start, stop): [nngp], then the tangent outputs (as tangent_sums)."""
    n1 = a1.shape[0]
    n2 = n1 if a2 is None else a2.shape[0]
    n_out = nngp + (sum(weights) + sum(biases) if per_layer else 1)
    features = network_feature_bytes(compiled, n1 + (0 if a2 is None else n2), weights, biases, a1.itemsize)
    check_tangent_memory(n1, n2, n_out, compiled.out, per_logit, features)
    return _core.sequential_tangent_sums(a1, a2, compiled.spec, seed, start, stop, weights, biases, nngp, per_layer,
                                         per_logit, n_threads, tile_rows, gram_tile, panel_cols, progress, initial,
                                         in_place)


def network_params(network: Network, input_shape, seed: int, index: int) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """Network `index`'s stored parameters, one (W, b) per Dense or Conv layer (see sample_params)."""
    compiled = network.compile(input_shape)
    params = []
    for k, p in enumerate(compiled.params):
        eps, beta = _core.sequential_draw(compiled.spec, seed, index, k)
        if network.parameterization == "standard":
            eps *= p.layer.W_std / math.sqrt(p.fan_in)
            if beta is not None:
                beta *= p.layer.b_std
        params.append((eps.reshape(p.weight_shape), beta))
    return params


def check_network_params(params, compiled: Compiled, dtype) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """User parameters in the layout of sample_params, as the engine's (fan_in, fan_out) matrices of `dtype`."""
    if not isinstance(params, (list, tuple)):
        raise TypeError(f"params must be a list of (W, b) pairs, one per Dense or Conv layer, got {type(params).__name__}")
    if len(params) != len(compiled.params):
        raise ValueError(f"params has {len(params)} layers; the network has {len(compiled.params)} Dense or Conv layers")
    out = []
    for k, (pair, p) in enumerate(zip(params, compiled.params)):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError(f"params[{k}] must be a (W, b) pair")
        where = f"layer {p.label} ({p.layer.describe()})"
        W, b = np.asarray(pair[0]), pair[1]
        if W.shape != p.weight_shape:
            raise ValueError(f"params[{k}] W has shape {W.shape}; {where} expects {p.weight_shape} on points of shape "
                             f"{compiled.input_shape}")
        if (p.layer.b_std is None) != (b is None):
            has = "has no bias" if b is None else "has a bias"
            raise ValueError(f"params[{k}] {has} but {where} has b_std={p.layer.b_std}")
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


def network_outputs(x, network: Network, seed: int, index: int) -> np.ndarray:
    """The logits (n, C) of network `index` of `seed`, by the engine in float64."""
    compiled, a, _ = prepare_network_points(x, None, network, "float64")
    params = check_network_params(network_params(network, compiled.input_shape, seed, index), compiled, np.float64)
    return _core.sequential_outputs(a, compiled.spec, params, 1)
