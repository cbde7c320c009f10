"""Architecture descriptions."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from . import _core

__all__ = ["MLP", "ACTIVATIONS"]

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
# Activations whose dual map (the Gaussian expectations of CONVENTIONS.md) has a
# closed form; the others need a bivariate quadrature per kernel entry.
CLOSED_FORM_DUALS = ("relu", "leaky_relu", "abs", "erf", "identity", "relu_normalized")

Std = Union[float, Sequence[float]]
OptStd = Union[None, float, Sequence[Optional[float]]]


def _std(value, name: str, n_layers: int, allow_none: bool) -> tuple:
    if value is None and allow_none:
        return (None,) * n_layers
    if isinstance(value, (numbers.Real, np.floating, np.integer)) and not isinstance(value, bool):
        values = (value,) * n_layers
    elif isinstance(value, (list, tuple, np.ndarray)):
        values = tuple(value)
        if len(values) != n_layers:
            raise ValueError(f"{name} has {len(values)} entries; the architecture has {n_layers} layers")
    else:
        raise TypeError(f"{name} must be a number{', None' if allow_none else ''} or a sequence of one per layer")
    out = []
    for v in values:
        if v is None and allow_none:
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, (numbers.Real, np.floating, np.integer)):
            raise TypeError(f"{name} entries must be numbers, got {v!r}")
        v = float(v)
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {v}")
        out.append(v)
    return tuple(out)


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


@dataclass(frozen=True)
class MLP:
    """A fully connected network with random Gaussian weights (CONVENTIONS.md).

    Parameters
    ----------
    hidden : sequence of int
        Widths of the hidden layers (may be empty: a linear model).
    out : int
        Number of logits C.
    activation : str
        One of ``nnpk.ACTIVATIONS``.
    W_std, b_std : float or sequence
        Weight and bias standard deviations, one value or one per layer (hidden
        layers, then the readout). ``b_std=None`` (or a None entry) means no bias
        parameter at all.
    parameterization : "ntk" or "standard"
    normalize : bool
        Replace phi by (phi - E[phi(g)]) / std(phi(g)), g ~ N(0, 1).
    slope : float
        Negative-side slope of ``leaky_relu``.
    """

    hidden: Tuple[int, ...]
    out: int = 1
    activation: str = "relu"
    W_std: Std = 1.0
    b_std: OptStd = None
    parameterization: str = "ntk"
    normalize: bool = False
    slope: float = 0.01
    _w: tuple = field(init=False, repr=False, compare=False)
    _b: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        hidden = self.hidden
        if isinstance(hidden, (numbers.Integral, np.integer)) or not isinstance(hidden, (list, tuple, np.ndarray)):
            raise TypeError(f"hidden must be a sequence of layer widths, got {hidden!r}")
        widths = []
        for w in hidden:
            if isinstance(w, bool) or not isinstance(w, (numbers.Integral, np.integer)):
                raise TypeError(f"hidden widths must be integers, got {w!r}")
            if w < 1:
                raise ValueError(f"hidden widths must be positive, got {list(hidden)}")
            widths.append(int(w))
        object.__setattr__(self, "hidden", tuple(widths))
        if isinstance(self.out, bool) or not isinstance(self.out, (numbers.Integral, np.integer)):
            raise TypeError(f"out must be an integer, got {self.out!r}")
        if self.out < 1:
            raise ValueError(f"out must be positive, got {self.out}")
        object.__setattr__(self, "out", int(self.out))
        slope = check_activation(self.activation, self.normalize, self.slope)
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be 'ntk' or 'standard', got {self.parameterization!r}")
        object.__setattr__(self, "slope", slope)
        n = len(widths) + 1
        w = _std(self.W_std, "W_std", n, allow_none=False)
        b = _std(self.b_std, "b_std", n, allow_none=True)
        object.__setattr__(self, "_w", w)
        object.__setattr__(self, "_b", b)
        if isinstance(self.W_std, (list, np.ndarray)):
            object.__setattr__(self, "W_std", w)
        if isinstance(self.b_std, (list, np.ndarray)):
            object.__setattr__(self, "b_std", b)

    def to_network(self) -> "Network":
        """The same network as an ``nnpk.Network`` of Dense and Activation layers: network m of a
        seed has the same weights, and the same kernels up to rounding."""
        from ._architecture import mlp_network

        return mlp_network(self)

    @property
    def has_bias(self) -> Tuple[bool, ...]:
        return tuple(b is not None for b in self._b)

    @property
    def n_layers(self) -> int:
        """Hidden layers plus the readout."""
        return len(self.hidden) + 1

    @property
    def w_stds(self) -> Tuple[float, ...]:
        return self._w

    @property
    def b_stds(self) -> Tuple[Optional[float], ...]:
        return self._b

    def widths(self, input_dim: int) -> Tuple[int, ...]:
        return (int(input_dim),) + self.hidden + (self.out,)

    @property
    def normalization(self) -> Tuple[float, float]:
        """(shift, scale) applied after phi: (0, 1) unless normalize=True."""
        return activation_normalization(self.activation, self.slope, bool(self.normalize))

    @property
    def _unit_second_moment(self) -> bool:
        """Whether phi has E[phi(g)^2] = 1 for g ~ N(0, 1) by construction."""
        return bool(self.normalize) or self.activation == "relu_normalized"

    def activation_fn(self, z: np.ndarray, derivative: bool = False) -> np.ndarray:
        """The (normalised) activation applied by the engine, in float64."""
        shift, scale = self.normalization
        kind = getattr(_core.ActivationKind, self.activation)
        return _core.activation_value(kind, self.slope, shift, scale, np.ascontiguousarray(z, dtype=np.float64), derivative)

    def _spec(self, input_dim: int) -> "_core.MLPSpec":
        shift, scale = self.normalization
        return _core.MLPSpec(
            list(self.widths(input_dim)),
            list(self._w),
            list(self._b),
            int(getattr(_core.ActivationKind, self.activation)),
            self.slope,
            shift,
            scale,
            self.parameterization,
        )
