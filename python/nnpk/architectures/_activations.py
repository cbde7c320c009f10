"""Elementwise activations: their names, which have closed-form dual maps, and their normalisation."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Tuple

import numpy as np

from .. import _core

__all__ = ["ACTIVATIONS", "CLOSED_FORM_DUALS", "PARAMETERIZATIONS", "activation_normalization", "check_activation"]

ACTIVATIONS = (
    "relu",
    "leaky_relu",
    "abs",
    "erf",
    "tanh",
    "sigmoid",
    "gelu",
    "softplus",
    "sin",
    "identity",
    "relu_normalized",
)
PARAMETERIZATIONS = ("ntk", "standard")
# Activations whose dual map (the two Gaussian expectations of the infinite-width recursion)
# has a closed form; the others need a bivariate quadrature per kernel entry.
CLOSED_FORM_DUALS = ("relu", "leaky_relu", "abs", "erf", "identity", "relu_normalized")

def _gaussian_moments(phi) -> Tuple[float, float]:
    """E[phi(g)] and E[phi(g)^2], g ~ N(0,1), for a smooth (analytic) phi.

    The trapezoidal rule converges exponentially for analytic integrands on the
    line; at step 1/64 over [-40, 40] it is exact to rounding for these activations."""
    z = np.linspace(-40.0, 40.0, 5121)
    w = np.exp(-0.5 * z * z) * (z[1] - z[0]) / math.sqrt(2 * math.pi)
    v = phi(z)
    return float(np.dot(w, v)), float(np.dot(w, v * v))


@lru_cache(maxsize=None)
def activation_normalization(activation: str, slope: float, normalize: bool) -> Tuple[float, float]:
    """(shift, scale) applied after phi: (0, 1) unless normalize, then E[phi(g)] and std(phi(g)), g ~ N(0, 1)."""
    if not normalize:
        return 0.0, 1.0
    a = activation
    if a == "relu":
        mean, second = 1 / math.sqrt(2 * math.pi), 0.5
    elif a == "leaky_relu":
        mean, second = (1 - slope) / math.sqrt(2 * math.pi), (1 + slope**2) / 2
    elif a == "abs":
        mean, second = math.sqrt(2 / math.pi), 1.0
    elif a in ("identity", "relu_normalized"):
        mean, second = 0.0, 1.0
    elif a == "erf":
        mean, second = 0.0, 2 / math.pi * math.asin(2 / 3)
    elif a == "sin":
        mean, second = 0.0, (1 - math.exp(-2)) / 2
    else:
        kind = getattr(_core.ActivationKind, a)
        mean, second = _gaussian_moments(lambda z: _core.activation_value(kind, slope, 0.0, 1.0, z, False))
    return mean, math.sqrt(second - mean * mean)


def check_activation(activation, normalize, slope) -> float:
    """Checks an activation's settings; returns the slope as a float."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be a bool, got {normalize!r}")
    slope = float(slope)
    if not math.isfinite(slope):
        raise ValueError(f"slope must be finite, got {slope}")
    return slope
