"""The fully connected network: a Network of Dense and Activation layers built from an MLP's arguments."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .. import _core
from ._activations import PARAMETERIZATIONS, activation_normalization, check_activation, check_activation_parameters
from ._layers import Activation, Dense
from ._network import INITS, Network

__all__ = ["MLP"]

Std = Union[float, Sequence[float]]
OptStd = Union[None, float, Sequence[Optional[float]]]

_ARGUMENTS = ("hidden", "out", "activation", "W_std", "b_std", "parameterization", "normalize", "slope", "init",
              "degree", "gamma", "coefficients")


def _std(value, name: str, n_layers: int, allow_none: bool) -> tuple:
    """One standard deviation per layer from a number, None (no bias) or a sequence of one per layer."""
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
        std = float(v)
        if not math.isfinite(std) or std < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {std}")
        out.append(std)
    return tuple(out)


def _widths(hidden) -> Tuple[int, ...]:
    if isinstance(hidden, (numbers.Integral, np.integer)) or not isinstance(hidden, (list, tuple, np.ndarray)):
        raise TypeError(f"hidden must be a sequence of layer widths, got {hidden!r}")
    widths = []
    for w in hidden:
        if isinstance(w, bool) or not isinstance(w, (numbers.Integral, np.integer)):
            raise TypeError(f"hidden widths must be integers, got {w!r}")
        if w < 1:
            raise ValueError(f"hidden widths must be positive, got {list(hidden)}")
        widths.append(int(w))
    return tuple(widths)


class MLP(Network):
    """A fully connected network with random weights: a ``Network`` of Dense and Activation layers.

    ``MLP(hidden=[n_1, ..., n_L], out=C)`` is the network ``Dense(n_1), Activation, ...,
    Dense(n_L), Activation, Dense(C)``; everything that takes a ``Network`` takes it, and network
    ``m`` of a seed has the same weights as the equivalent ``Network``.

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
    init : "gaussian", "uniform", "truncated_normal" or "orthogonal"
        How weights are drawn, as in ``nnpk.Network``.
    degree, gamma, coefficients : optional
        The parameters of ``monomial`` and ``rectified_monomial`` (degree), ``gaussian`` and ``rbf``
        (gamma) and ``polynomial`` (Hermite coefficients), as in ``nnpk.Activation``.
    """

    hidden: Tuple[int, ...]
    out: int
    activation: str
    W_std: Std
    b_std: OptStd
    normalize: bool
    slope: float
    degree: Optional[int]
    gamma: Optional[float]
    coefficients: Optional[Tuple[float, ...]]
    _w: Tuple[float, ...]
    _b: Tuple[Optional[float], ...]

    def __init__(self, hidden, out: int = 1, activation: str = "relu", W_std: Std = 1.0, b_std: OptStd = None,
                 parameterization: str = "ntk", normalize: bool = False, slope: float = 0.01,
                 init: str = "gaussian", degree: Optional[int] = None, gamma: Optional[float] = None,
                 coefficients: Optional[Sequence[float]] = None):
        widths = _widths(hidden)
        if isinstance(out, bool) or not isinstance(out, (numbers.Integral, np.integer)):
            raise TypeError(f"out must be an integer, got {out!r}")
        if out < 1:
            raise ValueError(f"out must be positive, got {out}")
        slope = check_activation(activation, normalize, slope)
        degree, gamma, coefficients = check_activation_parameters(activation, degree, gamma, coefficients)
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be 'ntk' or 'standard', got {parameterization!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        n = len(widths) + 1
        w = _std(W_std, "W_std", n, allow_none=False)
        b = _std(b_std, "b_std", n, allow_none=True)
        layers = []
        for width, w_l, b_l in zip(widths, w, b):
            layers += [Dense(width, W_std=w_l, b_std=b_l),
                       Activation(activation, normalize=normalize, slope=slope, degree=degree, gamma=gamma,
                                  coefficients=coefficients)]
        layers.append(Dense(int(out), W_std=w[-1], b_std=b[-1]))
        values = dict(hidden=widths, out=int(out), activation=activation,
                      W_std=w if isinstance(W_std, (list, tuple, np.ndarray)) else W_std,
                      b_std=b if isinstance(b_std, (list, tuple, np.ndarray)) else b_std,
                      normalize=bool(normalize), slope=slope, degree=degree, gamma=gamma, coefficients=coefficients,
                      _w=w, _b=b)
        for name, value in values.items():
            object.__setattr__(self, name, value)
        super().__init__(tuple(layers), parameterization=parameterization, init=init)

    def __setattr__(self, name: str, value) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}: an MLP is immutable (see replace)")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}: an MLP is immutable")

    def __repr__(self) -> str:
        init = "" if self.init == "gaussian" else f", init={self.init!r}"
        params = "".join(f", {name}={getattr(self, name)!r}" for name in ("degree", "gamma", "coefficients")
                         if getattr(self, name) is not None)
        return (f"MLP(hidden={self.hidden}, out={self.out}, activation={self.activation!r}, W_std={self.W_std!r}, "
                f"b_std={self.b_std!r}, parameterization={self.parameterization!r}, normalize={self.normalize}, "
                f"slope={self.slope}{init}{params})")

    def replace(self, **changes) -> "MLP":
        """A new MLP with some arguments changed."""
        unknown = set(changes) - set(_ARGUMENTS)
        if unknown:
            raise TypeError(f"MLP has no argument {sorted(unknown)[0]!r}")
        return MLP(**{**{name: getattr(self, name) for name in _ARGUMENTS}, **changes})

    def to_network(self) -> Network:
        """The same layers as a plain ``nnpk.Network`` (same weights, same kernels)."""
        return Network(self.layers, parameterization=self.parameterization, init=self.init)

    @property
    def n_layers(self) -> int:
        """Hidden layers plus the readout."""
        return len(self.hidden) + 1

    @property
    def w_stds(self) -> Tuple[float, ...]:
        """The weight standard deviation of every layer, the readout's last."""
        return self._w

    @property
    def b_stds(self) -> Tuple[Optional[float], ...]:
        """The bias standard deviation of every layer (None: no bias), the readout's last."""
        return self._b

    def widths(self, input_dim: int) -> Tuple[int, ...]:
        """Every layer's width, the input's first."""
        return (int(input_dim),) + self.hidden + (self.out,)

    @property
    def normalization(self) -> Tuple[float, float]:
        """The (shift, scale) applied after phi, which are (0, 1) unless normalize=True."""
        return activation_normalization(self.activation, self.slope, bool(self.normalize), self.degree, self.gamma,
                                        self.coefficients)

    def activation_fn(self, z: np.ndarray, derivative: bool = False) -> np.ndarray:
        """The (normalised) activation applied by the engine, in float64."""
        settings = Activation(self.activation, normalize=self.normalize, slope=self.slope, degree=self.degree,
                              gamma=self.gamma, coefficients=self.coefficients).engine_settings
        return _core.activation_value(settings["activation"], settings["slope"], settings["shift"],
                                      settings["activation_scale"], np.ascontiguousarray(z, dtype=np.float64),
                                      derivative, degree=settings["degree"], gamma=settings["gamma"],
                                      coefficients=settings["coefficients"])

    def kernel_layers(self):
        """The layers whose kernels ``layers="all"`` returns: each hidden layer's activation, then the logits."""
        return tuple(range(1, 2 * len(self.hidden), 2)) + (len(self.layers) - 1,)
