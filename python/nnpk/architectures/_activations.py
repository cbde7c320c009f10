"""Elementwise activations: their names, which have closed-form dual maps, and their normalisation."""

from __future__ import annotations

import math
import numbers
from functools import lru_cache
from typing import Optional, Tuple

import numpy as np

from .. import _core

__all__ = ["ACTIVATIONS", "CLOSED_FORM_DUALS", "CONTROL_DUALS", "DELTA_DERIVATIVES", "MAX_DEGREE", "PARAMETERIZATIONS",
           "activation_normalization", "check_activation", "check_activation_parameters"]

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
    "cos",
    "gaussian",
    "exp",
    "rbf",
    "sign",
    "monomial",
    "rectified_monomial",
    "polynomial",
)
PARAMETERIZATIONS = ("ntk", "standard")
# Activations whose dual map (the two Gaussian expectations of the infinite-width recursion)
# has a closed form; the others need a bivariate quadrature per kernel entry.
CLOSED_FORM_DUALS = ("relu", "leaky_relu", "abs", "erf", "identity", "relu_normalized", "sin", "cos", "gaussian", "exp",
                     "rbf", "sign", "monomial", "rectified_monomial", "polynomial")
# The closed forms whose derivatives in the variances are known too (the control variate of the conditional
# Monte Carlo estimator needs them).
CONTROL_DUALS = ("relu", "leaky_relu", "abs", "erf", "identity", "relu_normalized")
# Activations whose derivative is a Dirac delta at 0 (a step): no tangent kernel, no gradient training.
DELTA_DERIVATIVES = ("sign",)
# The highest degree of monomial, rectified_monomial and polynomial (the engine's kMaxActivationDegree).
MAX_DEGREE = 16
# Which activations take which parameter.
_GAMMA = ("gaussian", "rbf")
_DEGREE = ("monomial", "rectified_monomial")

def _gaussian_moments(phi) -> Tuple[float, float]:
    """E[phi(g)] and E[phi(g)^2], g ~ N(0,1), for a smooth (analytic) phi.

    The trapezoidal rule converges exponentially for analytic integrands on the
    line; at step 1/64 over [-40, 40] it is exact to rounding for these activations."""
    z = np.linspace(-40.0, 40.0, 5121)
    w = np.exp(-0.5 * z * z) * (z[1] - z[0]) / math.sqrt(2 * math.pi)
    v = phi(z)
    return float(np.dot(w, v)), float(np.dot(w, v * v))


def _double_factorial(n: int) -> float:
    """n!! (1 for n <= 0)."""
    return float(math.prod(range(n, 0, -2))) if n > 0 else 1.0


def _rectified_moment(n: int) -> float:
    """E max(g, 0)^n, g ~ N(0, 1)."""
    return 2 ** (n / 2) * math.gamma((n + 1) / 2) / (2 * math.sqrt(math.pi))


@lru_cache(maxsize=None)
def activation_normalization(activation: str, slope: float, normalize: bool, degree: Optional[int] = None,
                             gamma: Optional[float] = None,
                             coefficients: Optional[Tuple[float, ...]] = None) -> Tuple[float, float]:
    """(shift, scale) applied after phi: (0, 1) unless normalize, then E[phi(g)] and std(phi(g)), g ~ N(0, 1)."""
    if not normalize:
        return 0.0, 1.0
    a = activation
    if a == "cos":
        mean, second = math.exp(-0.5), (1 + math.exp(-2)) / 2
    elif a == "gaussian":
        assert gamma is not None
        mean, second = 1 / math.sqrt(1 + 2 * gamma), 1 / math.sqrt(1 + 4 * gamma)
    elif a == "exp":
        mean, second = math.exp(0.5), math.exp(2.0)
    elif a == "rbf":
        assert gamma is not None
        mean, second = math.exp(-gamma), 1.0
    elif a == "sign":
        mean, second = 0.0, 1.0
    elif a == "monomial":
        assert degree is not None
        mean, second = (_double_factorial(degree - 1) if degree % 2 == 0 else 0.0), _double_factorial(2 * degree - 1)
    elif a == "rectified_monomial":
        assert degree is not None
        mean, second = _rectified_moment(degree), _rectified_moment(2 * degree)
    elif a == "polynomial":
        assert coefficients is not None
        mean = coefficients[0]
        second = sum(c * c * math.factorial(k) for k, c in enumerate(coefficients))
        if second - mean * mean <= 0:
            raise ValueError("normalize=True needs a polynomial that is not constant: every Hermite coefficient "
                             f"after a_0 is 0 in {coefficients}")
    elif a == "relu":
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


def check_activation_parameters(activation: str, degree, gamma, coefficients):
    """(degree, gamma, coefficients) of `activation`, checked and converted: None for the parameters it does not
    take, gamma 1.0 by default; degree and coefficients are required where they apply."""
    if gamma is not None and activation not in _GAMMA:
        raise ValueError(f"gamma applies to {' and '.join(_GAMMA)}, not to {activation}")
    if degree is not None and activation not in _DEGREE:
        raise ValueError(f"degree applies to {' and '.join(_DEGREE)}, not to {activation}")
    if coefficients is not None and activation != "polynomial":
        raise ValueError(f"coefficients apply to polynomial, not to {activation}")
    if activation in _GAMMA:
        gamma = 1.0 if gamma is None else gamma
        if isinstance(gamma, bool) or not isinstance(gamma, (numbers.Real, np.floating, np.integer)):
            raise TypeError(f"gamma must be a number, got {gamma!r}")
        gamma = float(gamma)
        if not (math.isfinite(gamma) and gamma > 0):
            raise ValueError(f"gamma of {activation} must be finite and > 0, got {gamma}")
    if activation in _DEGREE:
        if degree is None:
            raise ValueError(f"{activation} needs a degree (an integer from 1 to {MAX_DEGREE}), e.g. "
                             f"Activation({activation!r}, degree=2)")
        if isinstance(degree, bool) or not isinstance(degree, (numbers.Integral, np.integer)):
            raise TypeError(f"degree must be an integer, got {degree!r}")
        degree = int(degree)
        if not 1 <= degree <= MAX_DEGREE:
            raise ValueError(f"degree of {activation} must be from 1 to {MAX_DEGREE}, got {degree}")
    if activation == "polynomial":
        if coefficients is None:
            raise ValueError("polynomial needs its Hermite coefficients (a_0, a_1, ...), e.g. "
                             "Activation('polynomial', coefficients=(0, 1, 0.5))")
        if isinstance(coefficients, (str, bytes)) or not isinstance(coefficients, (list, tuple, np.ndarray)):
            raise TypeError(f"coefficients must be a sequence of numbers, got {coefficients!r}")
        if not 1 <= len(coefficients) <= MAX_DEGREE + 1:
            raise ValueError(f"coefficients must hold 1 to {MAX_DEGREE + 1} Hermite coefficients (degree at most "
                             f"{MAX_DEGREE}), got {len(coefficients)}")
        values = []
        for c in coefficients:
            if isinstance(c, bool) or not isinstance(c, (numbers.Real, np.floating, np.integer)):
                raise TypeError(f"coefficients must be numbers, got {c!r}")
            if not math.isfinite(float(c)):
                raise ValueError(f"coefficients must be finite, got {c}")
            values.append(float(c))
        coefficients = tuple(values)
    return degree, gamma, coefficients


def check_activation(activation, normalize, slope) -> float:
    """Checks an activation's settings; returns the slope as a float."""
    if activation == "elementwise":
        raise ValueError("activation 'elementwise' takes a function: use nnpk.Activation('elementwise', fn=f) in a "
                         "nnpk.Network's layers")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be a bool, got {normalize!r}")
    slope = float(slope)
    if not math.isfinite(slope):
        raise ValueError(f"slope must be finite, got {slope}")
    return slope
