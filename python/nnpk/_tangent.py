"""What a tangent-kernel request asks for, and how its results are shaped."""

from __future__ import annotations

import numbers
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._arch import MLP
from ._validate import check_memory

__all__ = ["parse_get", "parse_wrt", "tangent_maps", "arrange_tangent", "check_params", "check_tangent_memory",
           "feature_bytes"]

KERNELS = ("nngp", "ntk")
WRT = ("all", "weights", "biases", "readout")


def parse_get(get) -> Tuple[Tuple[str, ...], bool]:
    """(kernel names, whether a dict is returned)."""
    if isinstance(get, str):
        names, as_dict = (get,), False
    elif isinstance(get, (tuple, list)) and get:
        names, as_dict = tuple(get), True
    else:
        raise ValueError(f"get must be 'nngp', 'ntk' or a tuple of them, got {get!r}")
    for name in names:
        if name not in KERNELS:
            raise ValueError(f"get must be 'nngp', 'ntk' or a tuple of them, got {get!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"get names a kernel twice: {get!r}")
    return names, as_dict


def parse_wrt(wrt, has_bias: Sequence[bool]) -> Tuple[List[bool], List[bool]]:
    """Per-layer flags (weights included, biases included) for `wrt`.

    wrt: "all", "weights", "biases", "readout", or a sequence of layer indices
    (0 .. n_layers - 1, negative counting from the readout) whose weights and
    biases are included; `has_bias` says which parametrised layers have biases."""
    n = len(has_bias)
    if isinstance(wrt, str):
        if wrt not in WRT:
            raise ValueError(f"wrt must be one of {', '.join(WRT)} or a list of layer indices, got {wrt!r}")
        if wrt == "biases" and not any(has_bias):
            raise ValueError("wrt='biases' but the architecture has no biases (b_std=None)")
        weights = [wrt in ("all", "weights") or (wrt == "readout" and l == n - 1) for l in range(n)]
        biases = [has_bias[l] and (wrt in ("all", "biases") or (wrt == "readout" and l == n - 1)) for l in range(n)]
        return weights, biases
    if not isinstance(wrt, (list, tuple, np.ndarray)) or len(wrt) == 0:
        raise ValueError(f"wrt must be one of {', '.join(WRT)} or a non-empty list of layer indices, got {wrt!r}")
    chosen = set()
    for l in wrt:
        if isinstance(l, bool) or not isinstance(l, (numbers.Integral, np.integer)):
            raise TypeError(f"wrt layer indices must be integers, got {l!r}")
        if not -n <= l < n:
            raise ValueError(f"wrt layer index {l} is out of range for {n} layers")
        chosen.add(int(l) % n)
    return [l in chosen for l in range(n)], [l in chosen and has_bias[l] for l in range(n)]


def feature_bytes(arch: MLP, d: int, n: int, weights: Sequence[bool], itemsize: int, per_logit: bool) -> int:
    """Bytes of one network's stored layer inputs and output gradients for n points."""
    widths = arch.widths(d)
    n_pad = -(-n // 96) * 96
    total = 0
    L = arch.n_layers - 1
    for l in range(arch.n_layers):
        if weights[l]:
            total += widths[l]
        if l < L:
            total += widths[l + 1] * (1 if (l == L - 1 and not per_logit) else arch.out)
    return n_pad * total * itemsize


def check_tangent_memory(n1: int, n2: int, n_out: int, out: int, per_logit: bool, features: int) -> None:
    """MemoryError before allocation if n_out tangent outputs of n1 x n2 (x C x C per logit) float64
    entries and `features` bytes of per-network features do not fit."""
    per_entry = out**2 if per_logit else 1
    check_memory(8 * n1 * n2 * per_entry * n_out + features,
                 f"the tangent kernel ({n_out} x {n1} x {n2}{' x C x C' if per_logit else ''} float64 "
                 f"and {features / 2**20:.0f} MiB of per-network features)")


def tangent_maps(first: int, n_outputs: int, out: int, per_logit: bool):
    """How raw tangent sums (from position `first`) become kernels: divide by C = `out` unless per logit."""
    from ._streaming import KernelMap

    return [KernelMap(first + k, 1.0 if per_logit else 1.0 / out) for k in range(n_outputs)]


def arrange_tangent(kernels: List[np.ndarray], weights: Sequence[bool], biases: Sequence[bool], per_layer: bool):
    """The NTK result: one kernel, or with per_layer a dict of the total and each layer's shares."""
    if not per_layer:
        return kernels[0]
    n_layers = len(weights)
    by_layer: Dict[str, List[Optional[np.ndarray]]] = {"weights": [None] * n_layers, "biases": [None] * n_layers}
    it = iter(kernels)
    for l in range(n_layers):
        if weights[l]:
            by_layer["weights"][l] = next(it)
        if biases[l]:
            by_layer["biases"][l] = next(it)
    total = np.zeros_like(kernels[0])
    for k in kernels:
        total += k
    return {"total": total, **by_layer}


def check_params(params, arch: MLP, d: int, dtype) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """User parameters in the layout of sample_params, converted to `dtype`."""
    if not isinstance(params, (list, tuple)):
        raise TypeError(f"params must be a list of (W, b) pairs, one per layer, got {type(params).__name__}")
    widths = arch.widths(d)
    if len(params) != arch.n_layers:
        raise ValueError(f"params has {len(params)} layers; arch has {arch.n_layers} (hidden layers and the readout)")
    out = []
    for l, pair in enumerate(params):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError(f"params[{l}] must be a (W, b) pair")
        W, b = pair
        want = (widths[l], widths[l + 1])
        W = np.asarray(W)
        if W.shape != want:
            raise ValueError(f"params[{l}] W has shape {W.shape}; arch expects {want} (layer {l}: {want[0]} -> {want[1]})")
        has_bias = arch.b_stds[l] is not None
        if has_bias and b is None:
            raise ValueError(f"params[{l}] has no bias but arch layer {l} has one (b_std={arch.b_stds[l]})")
        if not has_bias and b is not None:
            raise ValueError(f"params[{l}] has a bias but arch layer {l} has none (b_std=None)")
        if b is not None:
            b = np.asarray(b)
            if b.shape != (want[1],):
                raise ValueError(f"params[{l}] b has shape {b.shape}; arch expects ({want[1]},)")
        for name, a in (("W", W), ("b", b)):
            if a is not None and (a.dtype.kind not in "biuf" or not np.isfinite(a).all()):
                raise ValueError(f"params[{l}] {name} must hold finite real numbers")
        out.append((np.ascontiguousarray(W, dtype=dtype), None if b is None else np.ascontiguousarray(b, dtype=dtype)))
    return out
