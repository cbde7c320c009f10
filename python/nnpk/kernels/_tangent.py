"""What a tangent-kernel request asks for, and how its results are shaped."""

from __future__ import annotations

import numbers
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._validate import check_memory
from ._streaming import KernelMap

__all__ = ["arrange_tangent", "check_tangent_memory", "parse_get", "parse_wrt", "tangent_maps"]

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
        index = int(l)
        if not -n <= index < n:
            raise ValueError(f"wrt layer index {l} is out of range for {n} layers")
        chosen.add(index % n)
    return [l in chosen for l in range(n)], [l in chosen and has_bias[l] for l in range(n)]


def check_tangent_memory(n1: int, n2: int, n_out: int, out: int, per_logit: bool, features: int) -> None:
    """MemoryError before allocation if n_out tangent outputs of n1 x n2 (x C x C per logit) float64
    entries and `features` bytes of per-network features do not fit."""
    per_entry = out**2 if per_logit else 1
    check_memory(8 * n1 * n2 * per_entry * n_out + features,
                 f"the tangent kernel ({n_out} x {n1} x {n2}{' x C x C' if per_logit else ''} float64 "
                 f"and {features / 2**20:.0f} MiB of per-network features)")


def tangent_maps(first: int, n_outputs: int, out: int, per_logit: bool):
    """How raw tangent sums (from position `first`) become kernels: divide by C = `out` unless per logit."""
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
