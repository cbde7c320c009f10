"""The layers of a network: dense, convolutional and transposed convolutional layers, pooling, graph
aggregation, flattening, activations, residual blocks, batch and layer normalisation, recurrent layers,
self-attention, parallel branches and their merges.

Each layer checks its own settings when it is made; the rules that depend on the points' shape are
checked when a ``Network`` is compiled for them (``_network.py``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple, Union

import numpy as np

from .. import _core
from ._activations import _gaussian_moments, activation_normalization, check_activation, check_activation_parameters
from ._elementwise import describe_function, tabulate

__all__ = ["Activation", "Aggregate", "AvgPool", "BatchNorm", "Conv", "ConvTranspose", "Dense", "FanInConcat",
           "FanInProd", "FanInSum", "Flatten", "GlobalAvgPool", "GlobalSumPool", "LAYER_TYPES", "Layer", "LayerNorm",
           "MERGE_TYPES", "MaxPool", "Parallel", "Recurrent", "Residual", "SelfAttention", "SumPool"]

ATTENTION_MECHANISMS = ("softmax", "identity", "abs", "relu")
POS_EMB_TYPES = ("none", "sum", "concat")

REDUCTIONS = ("sum", "mean")

INITS = ("gaussian", "uniform", "truncated_normal", "orthogonal")

PADDINGS = ("same", "valid")

Size = Union[int, Tuple[int, int]]
Shape = Tuple[int, ...]


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def _size(value, name: str) -> Tuple[int, ...]:
    """An int (1-D) or a pair of ints (2-D) as a tuple."""
    if isinstance(value, (tuple, list)):
        if len(value) not in (1, 2):
            raise ValueError(f"{name} must be an int (1-D) or a pair of ints (2-D), got {value!r}")
        return tuple(_positive_int(v, name) for v in value)
    return (_positive_int(value, name),)


def _std(value, name: str, allow_none: bool) -> Optional[float]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number{' or None' if allow_none else ''}, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return value


def _padding(value) -> str:
    if value not in PADDINGS:
        raise ValueError(f"padding must be 'same' or 'valid', got {value!r}")
    return value


def _text(size: Tuple[int, ...]) -> str:
    return " x ".join(map(str, size))


@dataclass(frozen=True)
class Dense:
    """A fully connected layer: ``z = h W + b``, W of shape (fan_in, width), on flat features, or on
    every step of a sequence that a ``Recurrent(return_sequences=True)`` returns (the same W at every
    step, like a convolution of kernel size 1).

    W_std, b_std as in ``nnpk.MLP`` (``b_std=None``: no bias parameter)."""

    width: int
    W_std: float = 1.0
    b_std: Optional[float] = None

    def __post_init__(self):
        object.__setattr__(self, "width", _positive_int(self.width, "width"))
        object.__setattr__(self, "W_std", _std(self.W_std, "W_std", False))
        object.__setattr__(self, "b_std", _std(self.b_std, "b_std", True))

    def describe(self) -> str:
        return f"Dense {self.width}"


@dataclass(frozen=True)
class Conv:
    """A convolution with ``channels`` output channels, 1-D (``kernel_size`` an int, on
    (length, channels) points) or 2-D (a pair, on (height, width, channels) points).

    Its weights have shape ``kernel_size + (in_channels, channels)`` (neural-tangents' and
    JAX's HWIO); its fan-in is kernel size x input channels, which is what ``W_std`` is divided
    by under either parameterization. padding "same" keeps ``ceil(n / stride)`` positions
    (zeros added, the odd one after, as in XLA); "valid" keeps the windows inside the input."""

    channels: int
    kernel_size: Size
    stride: Size = 1
    padding: str = "same"
    W_std: float = 1.0
    b_std: Optional[float] = None

    def __post_init__(self):
        object.__setattr__(self, "channels", _positive_int(self.channels, "channels"))
        kernel = _size(self.kernel_size, "kernel_size")
        stride = _size(self.stride, "stride")
        if len(stride) == 1 and len(kernel) == 2:
            stride = stride * 2
        if len(stride) != len(kernel):
            raise ValueError(f"stride {self.stride!r} has another dimension than kernel_size {self.kernel_size!r}")
        object.__setattr__(self, "kernel_size", kernel if len(kernel) == 2 else kernel[0])
        object.__setattr__(self, "stride", stride if len(stride) == 2 else stride[0])
        object.__setattr__(self, "padding", _padding(self.padding))
        object.__setattr__(self, "W_std", _std(self.W_std, "W_std", False))
        object.__setattr__(self, "b_std", _std(self.b_std, "b_std", True))

    @property
    def window(self) -> Tuple[int, ...]:
        return _size(self.kernel_size, "kernel_size")

    @property
    def strides(self) -> Tuple[int, ...]:
        return _size(self.stride, "stride")

    def describe(self) -> str:
        stride = "" if set(self.strides) == {1} else f", stride {_text(self.strides)}"
        return f"Conv kernel {_text(self.window)}{stride}, padding '{self.padding}'"


@dataclass(frozen=True)
class ConvTranspose(Conv):
    """A transposed convolution with ``channels`` output channels, 1-D (``kernel_size`` an int, on
    (length, channels) points) or 2-D (a pair, on (height, width, channels) points): the input is
    spread out by the stride (``stride - 1`` zeros between consecutive positions) and then convolved
    with stride 1, so each input position adds its window's worth of outputs (neural-tangents'
    ``ConvTranspose``, XLA's ``conv_transpose`` with the kernel not flipped).

    Output length along an axis of n positions: ``n * stride`` with padding "same", ``n * stride +
    max(kernel_size - stride, 0)`` with "valid" (the full transposed convolution). Weights, fan-in
    (kernel size x input channels) and both parameterizations are as for ``Conv``; it is a ``Conv``
    for everything that counts parametrised layers."""

    def describe(self) -> str:
        stride = "" if set(self.strides) == {1} else f", stride {_text(self.strides)}"
        return f"ConvTranspose kernel {_text(self.window)}{stride}, padding '{self.padding}'"


def _pattern(value) -> Tuple[Tuple[float, ...], ...]:
    """A square matrix of finite numbers as a tuple of tuples of floats (hashable)."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"pattern must be a square (nodes, nodes) array of numbers, got {value!r}") from err
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise ValueError(f"pattern must be a square (nodes, nodes) array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("pattern must be finite")
    return tuple(tuple(float(v) for v in row) for row in a)


@dataclass(frozen=True)
class Aggregate:
    """Graph aggregation: a point's positions are the nodes of a graph, ``pattern[u][v]`` the weight
    of the edge from node u to node v (0: no edge), and output node v is, per channel,

        reduction "sum":  out_v = sum_u pattern[u][v] x_u
        reduction "mean": out_v = sum_u pattern[u][v] x_u / sum_u pattern[u][v]   (0 without edges into v)

    (neural-tangents' ``Aggregate`` with a dense pattern; add self-loops, ``pattern + I``, for a node to keep
    its own features). Points are ``(nodes, channels)`` arrays, or ``(height, width, channels)`` with the
    nodes the positions in row-major order. "mean" needs non-negative weights. No parameters.

    ``pattern`` given: one graph shared by all points. ``pattern=None`` (the default): each point's own
    graph, carried by the point itself -- the network then takes graph points, ``(nodes, features + nodes)``
    arrays whose node u holds its features, then its row ``A[u, :]`` of the point's adjacency (build them with
    ``nnpk.graph_points(features, adjacency)``); the first layers read the features, and every
    ``Aggregate()`` the point's adjacency, so that points with different graphs (molecules, say) share one
    network and one kernel matrix. Such an aggregation must see the input's positions (no pooling or strided
    convolution before it)."""

    pattern: Optional[tuple] = None
    reduction: str = "sum"

    def __post_init__(self):
        if self.pattern is not None:
            object.__setattr__(self, "pattern", _pattern(self.pattern))
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be 'sum' or 'mean', got {self.reduction!r}")
        if self.pattern is not None and self.reduction == "mean" and min(min(row) for row in self.pattern) < 0:
            raise ValueError("reduction='mean' needs non-negative pattern weights (the mean over the edges into a "
                             "node is weighted by them)")

    @property
    def per_point(self) -> bool:
        """Whether each point brings its own graph (``pattern=None``)."""
        return self.pattern is None

    @property
    def nodes(self) -> Optional[int]:
        """The pattern's nodes (None: each point's graph)."""
        return None if self.pattern is None else len(self.pattern)

    @property
    def weights(self) -> np.ndarray:
        """The (nodes, nodes) weights the engine applies: the pattern, for "mean" each column divided by its sum."""
        if self.pattern is None:
            raise ValueError("Aggregate() aggregates over each point's own graph: its weights come with the points")
        return graph_weights(np.array(self.pattern, dtype=np.float64), self.reduction)

    def describe(self) -> str:
        if self.pattern is None:
            return f"Aggregate over each point's graph, reduction '{self.reduction}'"
        edges = sum(v != 0 for row in self.pattern for v in row)
        return f"Aggregate {self.nodes} nodes, {edges} edges, reduction '{self.reduction}'"


def graph_weights(a: np.ndarray, reduction: str) -> np.ndarray:
    """The weights an aggregation applies for the adjacency a (..., nodes, nodes): a itself for "sum", each
    column divided by its sum for "mean" (a column without edges stays 0)."""
    if reduction == "mean":
        totals = a.sum(axis=-2, keepdims=True)
        a = np.divide(a, totals, out=np.zeros_like(a), where=totals > 0)
    return a


@dataclass(frozen=True)
class _Pool:
    window: Size
    stride: Optional[Size] = None
    padding: str = "valid"

    def __post_init__(self):
        window = _size(self.window, "window")
        stride = window if self.stride is None else _size(self.stride, "stride")
        if len(stride) == 1 and len(window) == 2:
            stride = stride * 2
        if len(stride) != len(window):
            raise ValueError(f"stride {self.stride!r} has another dimension than window {self.window!r}")
        object.__setattr__(self, "window", window if len(window) == 2 else window[0])
        object.__setattr__(self, "stride", stride if len(stride) == 2 else stride[0])
        object.__setattr__(self, "padding", _padding(self.padding))

    @property
    def windows(self) -> Tuple[int, ...]:
        return _size(self.window, "window")

    @property
    def strides(self) -> Tuple[int, ...]:
        return _size(self.stride, "stride")

    def describe(self) -> str:
        stride = "" if self.strides == self.windows else f", stride {_text(self.strides)}"
        return f"{type(self).__name__} window {_text(self.windows)}{stride}, padding '{self.padding}'"


class AvgPool(_Pool):
    """Average over windows, per channel (1-D for an int window, 2-D for a pair). ``stride``
    defaults to the window (non-overlapping, as in Keras and PyTorch; neural-tangents defaults
    to 1). With padding "same" the average is over the window's positions inside the input."""


class SumPool(_Pool):
    """Sum over windows, per channel; as AvgPool otherwise. With padding "same" the sum is over the
    window's positions inside the input (the padding adds zeros), so away from the edges SumPool is
    the window size times AvgPool."""


class MaxPool(_Pool):
    """Maximum over windows, per channel; as AvgPool otherwise (padding never wins)."""


@dataclass(frozen=True)
class GlobalAvgPool:
    """The average over all positions, per channel: spatial points become flat."""

    def describe(self) -> str:
        return "GlobalAvgPool"


@dataclass(frozen=True)
class GlobalSumPool:
    """The sum over all positions, per channel: spatial points become flat (the number of positions
    times GlobalAvgPool)."""

    def describe(self) -> str:
        return "GlobalSumPool"


@dataclass(frozen=True)
class Flatten:
    """Spatial points become flat, in (height, width, channel) order."""

    def describe(self) -> str:
        return "Flatten"


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity: one of ``nnpk.ACTIVATIONS``, normalised or not, as in ``nnpk.MLP``.

    A bare name in a layer list (``"relu"``) means ``Activation("relu")``. Parameters, each taken only by
    the activations named (ValueError otherwise):

    - ``slope``: the negative-side slope of ``leaky_relu``;
    - ``gamma`` (> 0, default 1): ``gaussian`` is ``exp(-gamma z^2)``, ``rbf`` is
      ``sqrt(2) sin(sqrt(2 gamma) z + pi/4)``;
    - ``degree`` (1 to ``nnpk.MAX_DEGREE`` = 16, required): ``monomial`` is ``z^degree``,
      ``rectified_monomial`` is ``max(z, 0)^degree``;
    - ``coefficients`` (1 to 17 numbers, required): ``polynomial`` is ``sum_k a_k He_k(z)``, He_k the
      probabilists' Hermite polynomials (``He_0 = 1``, ``He_1 = z``, ``He_{k+1} = z He_k - k He_{k-1}``;
      ``numpy.polynomial.hermite_e`` uses the same).

    ``sign`` has no derivative (a Dirac delta at 0): the tangent kernels and training refuse it, the
    NNGP is defined.

    ``Activation("elementwise", fn=f)`` is a function of your own: ``f`` must be numpy-vectorised
    (``f(z)`` of a float64 array is the array of ``f`` at each entry). It is evaluated once, on 8193
    uniform nodes over ``[-16, 16]`` (step h = 1/256), with its derivative ``fn_derivative`` if given,
    else the five-point central difference of ``f`` at the same step; every kernel and training then
    use the cubic Hermite interpolant of these values and derivatives, continued by its tangent lines
    beyond ``[-16, 16]``. For a smooth ``f`` the interpolant is within ``h^4 / 384`` times the largest
    fourth derivative of ``f`` (about ``6e-13`` times it) on the grid; pre-activations beyond 16 (more
    than 5 standard deviations when their variance is below 10) see the tangent line instead of ``f``.
    Its analytic kernels integrate the interpolant by quadrature (``quadrature_order``);
    ``normalize=True`` takes its mean and standard deviation by a one-dimensional quadrature. A Python
    function is not data: stores and job files refuse it. See the definitions page for every
    activation's dual map."""

    name: str
    normalize: bool = False
    slope: float = 0.01
    degree: Optional[int] = None
    gamma: Optional[float] = None
    coefficients: Optional[Tuple[float, ...]] = None
    fn: Optional[Callable] = None
    fn_derivative: Optional[Callable] = None
    # elementwise: the engine's table (lo, hi, values, derivatives) and (shift, scale).
    _table: Optional[Tuple[float, ...]] = field(default=None, init=False, repr=False, compare=False)
    _elementwise_normalization: Tuple[float, float] = field(default=(0.0, 1.0), init=False, repr=False,
                                                            compare=False)

    def __post_init__(self):
        if self.name == "elementwise" or self.fn is not None or self.fn_derivative is not None:
            self._init_elementwise()
            return
        object.__setattr__(self, "slope", check_activation(self.name, self.normalize, self.slope))
        object.__setattr__(self, "normalize", bool(self.normalize))
        degree, gamma, coefficients = check_activation_parameters(self.name, self.degree, self.gamma,
                                                                  self.coefficients)
        object.__setattr__(self, "degree", degree)
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "coefficients", coefficients)
        # A constant polynomial cannot be normalised: refused now rather than when first used.
        activation_normalization(self.name, self.slope, self.normalize, degree, gamma, coefficients)

    def _init_elementwise(self):
        if self.name != "elementwise":
            raise ValueError(f"fn and fn_derivative apply to Activation('elementwise', fn=...), not to {self.name!r}")
        if self.fn is None:
            raise ValueError("elementwise needs its function: Activation('elementwise', fn=f), f numpy-vectorised")
        for name in ("degree", "gamma", "coefficients"):
            if getattr(self, name) is not None:
                raise ValueError(f"{name} does not apply to elementwise")
        if not isinstance(self.normalize, (bool, np.bool_)):
            raise TypeError(f"normalize must be a bool, got {self.normalize!r}")
        object.__setattr__(self, "normalize", bool(self.normalize))
        object.__setattr__(self, "slope", float(self.slope))
        table = tabulate(self.fn, self.fn_derivative)
        object.__setattr__(self, "_table", table)
        if self.normalize:
            kind = _core.ActivationKind.elementwise
            values = list(table)
            mean, second = _gaussian_moments(
                lambda z: _core.activation_value(kind, 0.0, 0.0, 1.0, z, False, coefficients=values))
            variance = second - mean * mean
            if not variance > 1e-12 * max(second, 1e-300):
                raise ValueError("normalize=True needs an fn that is not constant under N(0, 1): its variance "
                                 f"is {variance:g}")
            object.__setattr__(self, "_elementwise_normalization", (mean, math.sqrt(variance)))

    @property
    def unit_second_moment(self) -> bool:
        """Whether phi has E[phi(g)^2] = 1 for g ~ N(0, 1) by construction (normalised, or relu_normalized)."""
        return self.normalize or self.name == "relu_normalized"

    @property
    def normalization(self) -> Tuple[float, float]:
        """The (shift, scale) applied after phi, which are (0, 1) unless normalize=True."""
        if self.name == "elementwise":
            return self._elementwise_normalization
        return activation_normalization(self.name, self.slope, self.normalize, self.degree, self.gamma,
                                        self.coefficients)

    @property
    def engine_settings(self) -> dict:
        """The engine's settings of this activation (an engine node's activation keywords)."""
        shift, scale = self.normalization
        return dict(activation=getattr(_core.ActivationKind, self.name), slope=self.slope, shift=shift,
                    activation_scale=scale, degree=self.degree or 1, gamma=1.0 if self.gamma is None else self.gamma,
                    coefficients=list(self._table or self.coefficients or ()))

    def evaluate(self, z, derivative: bool = False) -> np.ndarray:
        """phi(z) (or phi'(z)) as the engine computes it, normalisation included, in float64."""
        settings = self.engine_settings
        return _core.activation_value(settings["activation"], settings["slope"], settings["shift"],
                                      settings["activation_scale"], np.ascontiguousarray(z, dtype=np.float64),
                                      bool(derivative), degree=settings["degree"], gamma=settings["gamma"],
                                      coefficients=settings["coefficients"])

    def describe(self) -> str:
        if self.name == "elementwise":
            derivative = "" if self.fn_derivative is None else f", derivative {describe_function(self.fn_derivative)}"
            return f"Activation elementwise ({describe_function(self.fn)}{derivative})"
        params = [f"degree {self.degree}" if self.degree is not None else "",
                  f"gamma {self.gamma:g}" if self.gamma is not None else "",
                  f"coefficients {list(self.coefficients)}" if self.coefficients is not None else ""]
        extra = ", ".join(p for p in params if p)
        return f"Activation {self.name}" + (f" ({extra})" if extra else "")


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalisation of each feature (flat points) or channel (spatial points), as
    ``torch.nn.BatchNorm1d`` / ``BatchNorm2d``: ``y = gamma (x - mean) / sqrt(var + eps) + beta``.

    The statistics are over every axis but the last: the points of the batch, and the positions of
    spatial points. In training (each gradient step) they are the batch's mean and biased
    variance, gradients go through them, and each step updates the running statistics
    ``running = (1 - momentum) running + momentum batch`` (with the batch's unbiased variance;
    they start at mean 0, variance 1). In evaluation (predictions) the running statistics are used.
    gamma (trained with the weights, initially 1) and beta (trained with the biases, initially 0)
    have one entry per channel; ``sample_params`` gives them as its ``(gamma, beta)`` entry. In
    training a point's output depends on the whole batch, so the kernels of random networks
    refuse networks with batch normalisation.

    Parameters
    ----------
    eps : float
        Added to the variance before its square root; positive.
    momentum : float
        Update rate of the running statistics, in (0, 1].
    """

    eps: float = 1e-5
    momentum: float = 0.1

    def __post_init__(self):
        for name in ("eps", "momentum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
                raise TypeError(f"{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"eps must be finite and > 0, got {self.eps}")
        if not 0 < self.momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1], got {self.momentum}")

    def describe(self) -> str:
        return f"BatchNorm eps {self.eps:g}, momentum {self.momentum:g}"


@dataclass(frozen=True)
class LayerNorm:
    """Layer normalisation: each point normalised on its own, ``y = (x - mean) / sqrt(var + eps)``, the mean
    and the (biased) variance taken over the axes ``axis`` of the point, separately for every index of its
    other axes. No parameters (no learned scale or shift).

    Axes count within one point, channels last: ``-1`` (the default) is the features of flat points and the
    channels of ``(length, channels)`` or ``(height, width, channels)`` points, each position normalised
    on its own; ``(-2, -1)`` on 1-D points (or ``(-3, -2, -1)`` on 2-D points) normalises all of a point's
    values together; the axis of the batch is not one of them. The axes are checked against the points'
    shape when the network is compiled.

    At infinite width (``nnpk.analytic``) the normalised axes must include the channels and the layer must
    read Gaussian features (the output of a Dense or Conv layer, or pooling or residual sums of them): the
    kernel is then the input's divided by the square roots of ``eps`` plus the two points' variances
    (averaged over the normalised positions); other settings are refused, saying why.

    Parameters
    ----------
    axis : int or tuple of ints
        The point's axes to normalise over (negative counts from the last).
    eps : float
        Added to the variance; positive. The default 1e-12 only guards against a zero variance.
    """

    axis: Union[int, Tuple[int, ...]] = -1
    eps: float = 1e-12

    def __post_init__(self):
        axes = self.axis if isinstance(self.axis, (tuple, list)) else (self.axis,)
        if not axes:
            raise ValueError("axis must name at least one axis, got ()")
        for a in axes:
            if isinstance(a, bool) or not isinstance(a, (numbers.Integral, np.integer)):
                raise TypeError(f"axis must be an int or a tuple of ints, got {self.axis!r}")
        axes = tuple(int(a) for a in axes)
        if len(set(axes)) != len(axes):
            raise ValueError(f"axis has repeated entries: {self.axis!r}")
        object.__setattr__(self, "axis", axes if isinstance(self.axis, (tuple, list)) else axes[0])
        eps = self.eps
        if isinstance(eps, bool) or not isinstance(eps, (numbers.Real, np.floating, np.integer)):
            raise TypeError(f"eps must be a number, got {eps!r}")
        if not (math.isfinite(float(eps)) and float(eps) > 0):
            raise ValueError(f"eps must be finite and > 0, got {eps}")
        object.__setattr__(self, "eps", float(eps))

    @property
    def axes(self) -> Tuple[int, ...]:
        """``axis`` as a tuple."""
        return self.axis if isinstance(self.axis, tuple) else (self.axis,)

    def normalized_axes(self, ndim: int) -> Tuple[int, ...]:
        """The axes as non-negative indices into a point of `ndim` axes, sorted; ValueError if one is out of
        range or two name the same axis."""
        out = []
        for a in self.axes:
            if not -ndim <= a < ndim:
                raise ValueError(f"axis {a} is out of range for points of {ndim} axis{'es' if ndim > 1 else ''}")
            out.append(a % ndim)
        if len(set(out)) != len(out):
            raise ValueError(f"axis {self.axis!r} names the same axis twice for points of {ndim} axes")
        return tuple(sorted(out))

    def describe(self) -> str:
        axis = self.axis if isinstance(self.axis, int) else tuple(self.axis)
        return f"LayerNorm axis {axis}, eps {self.eps:g}"


@dataclass(frozen=True)
class Recurrent:
    """A recurrent layer over sequences: points are ``(steps, features)`` arrays.

    With ``h_0 = 0`` and ``a = leak``, each step computes

        z_t = h_{t-1} W + x_t U + b,    h_t = (1 - a) h_{t-1} + a phi(z_t)

    (``a = 1``: the Elman network, torch's ``nn.RNN``; ``a < 1``: the Euler step of a
    continuous-time network with time constant ``1 / a``). U has shape (features, width), W
    (width, width), b (width,), the same at every step. Under the "ntk" parameterization the
    stored U, W, b are unit-variance draws and ``z_t = (W_std / sqrt(width)) h_{t-1} W +
    (U_std / sqrt(features)) x_t U + b_std b``; under "standard" they are drawn with those scales
    and used as they are. ``W_std`` is the recurrent gain g (the variance of W's entries is
    ``g^2 / width``). ``nnpk.sample_params`` lays a recurrent layer out as two entries, ``(U, b)``
    (b None without bias) then ``(W, None)``, and draws them keyed by their two indices among the
    parametrised layers.

    Parameters
    ----------
    width : int
        Units m.
    activation : str or Activation
        phi, one of ``nnpk.ACTIVATIONS`` (``"tanh"``, ``"relu"``, ...).
    W_std, U_std : float
        Scales of the recurrent and the input weights (>= 0).
    b_std : float or None
        Scale of the bias; None: no bias parameter. Under "ntk", ``b_std=0`` keeps a bias
        parameter that has no effect and no gradient: give it a positive b_std to learn biases
        (or use the "standard" parameterization, where b starts at 0 and learns).
    leak : float
        a in (0, 1].
    return_sequences : bool
        False: the next layer reads ``h_T`` (flat); True: it reads every step's ``h_t``
        (``(steps, width)``), and a Dense layer after it acts on every step.
    init : None or one of ``nnpk.INITS``
        How U and W are drawn; None: the network's ``init``. "uniform" draws entries uniform in
        ``[-R, R]`` with the Gaussian's variance, ``R = sqrt(3) W_std / sqrt(width)`` for W.

    """

    width: int
    activation: Union[str, "Activation"] = "relu"
    W_std: float = 1.0
    U_std: float = 1.0
    b_std: Optional[float] = 0.0
    leak: float = 1.0
    return_sequences: bool = False
    init: Optional[str] = None

    def __post_init__(self):
        object.__setattr__(self, "width", _positive_int(self.width, "width"))
        act = self.activation
        if isinstance(act, str):
            act = Activation(act)
        if not isinstance(act, Activation):
            raise TypeError(f"activation must be an activation name or an nnpk.Activation, got {act!r}")
        object.__setattr__(self, "activation", act)
        object.__setattr__(self, "W_std", _std(self.W_std, "W_std", False))
        object.__setattr__(self, "U_std", _std(self.U_std, "U_std", False))
        object.__setattr__(self, "b_std", _std(self.b_std, "b_std", True))
        leak = self.leak
        if isinstance(leak, bool) or not isinstance(leak, (numbers.Real, np.floating, np.integer)):
            raise TypeError(f"leak must be a number in (0, 1], got {leak!r}")
        if not 0 < float(leak) <= 1:
            raise ValueError(f"leak must be in (0, 1], got {leak}")
        object.__setattr__(self, "leak", float(leak))
        if not isinstance(self.return_sequences, (bool, np.bool_)):
            raise TypeError(f"return_sequences must be True or False, got {self.return_sequences!r}")
        object.__setattr__(self, "return_sequences", bool(self.return_sequences))
        if self.init is not None and self.init not in INITS:
            raise ValueError(f"init must be None or one of {', '.join(INITS)}, got {self.init!r}")

    @property
    def phi(self) -> "Activation":
        """The activation as an ``Activation``."""
        assert isinstance(self.activation, Activation)  # made one in __post_init__
        return self.activation

    def describe(self) -> str:
        leak = "" if self.leak == 1 else f", leak {self.leak:g}"
        seq = ", return_sequences" if self.return_sequences else ""
        return f"Recurrent {self.width} {self.phi.name}{leak}{seq}"


@dataclass(frozen=True)
class SelfAttention:
    """Global self-attention over the positions of ``(length, channels)`` or ``(height, width, channels)``
    points (a 2-D point's positions taken together, row by row): every position attends to every other.

    With a point's positions as the rows of X (P x c) and heads h = 1..H, under the "ntk"
    parameterization (stored weights unit-variance draws)::

        K_h = (W_key_std / sqrt(c)) X Wk_h,   Q_h = (W_query_std / sqrt(c)) X Wq_h,
        V_h = (W_value_std / sqrt(c)) X Wv_h,
        A_h = m(Q_h K_h^T / key_width)         (linear_scaling=True: Wq = Wk, tied)
        A_h = m(Q_h K_h^T / sqrt(key_width))   (linear_scaling=False: Wq, Wk independent)
        out = (W_out_std / sqrt(heads value_width)) [A_1 V_1, ..., A_H V_H] Wo + b_std b

    where m is the softmax over each row (the key positions) or, elementwise, the identity, abs or
    relu. The output keeps the positions, with ``width`` channels (None: the input's). Under the
    "standard" parameterization the same scales are in the stored weights. This is neural-tangents'
    ``GlobalSelfAttention`` with ``n_chan_out = width``, ``n_chan_key = key_width``,
    ``n_chan_val = value_width``, ``n_heads = heads`` and the positional embeddings below.

    Positional embeddings (``pos_emb_type`` "sum" or "concat") are a parameter: a table E of shape
    (positions, e) of unit-variance draws (trained like the weights), turned into the embedding
    ``Z = W_pos_emb_std B E`` with B the lower Cholesky factor of the positions' covariance R (the
    identity when ``pos_emb_decay_fn`` is None). The keys and queries then read ``U = X + Z``
    ("sum", e = c) or ``U = [X, Z]`` ("concat", c + e channels, the fan-in of Wk and Wq) instead of X;
    the values read U too if ``val_pos_emb``, else X. Different positions' embeddings are independent
    unless a decay function correlates them: ``R[p, q] = pos_emb_decay_fn(sum_a |p_a - q_a| **
    pos_emb_p_norm)`` over the position's coordinates a (row, column of a 2-D point).

    Its parameters (``nnpk.sample_params``) are, in order, ``Wk`` (c, heads key_width) (tied: the one
    matrix of keys and queries, with std ``sqrt(W_key_std W_query_std)``), ``Wq`` (untied only), ``Wv``
    (c, heads value_width), all without bias, ``(Wo, b)`` (heads value_width, width), head h's
    columns being block h of each, and with positional embeddings ``E`` (positions, e) without bias
    (always Gaussian draws, std ``W_pos_emb_std`` under "standard"). With "concat", Wk and Wq have
    ``c + e`` rows (and Wv if ``val_pos_emb``), the embedding's rows last.

    Parameters
    ----------
    heads, key_width, value_width : int
        Heads H and the widths of each head's keys (and queries) and values.
    width : int or None
        Output channels; None: the input's channel count (the shape is kept, for a residual block).
    linear_scaling : bool
        True: tied key and query weights, logits divided by key_width (their infinite-width limit is
        deterministic: nnpk.analytic has its kernels); False: independent key and query weights,
        logits divided by sqrt(key_width), the usual attention.
    W_key_std, W_query_std, W_value_std, W_out_std : float
        Scales (>= 0) of the four weight matrices.
    b_std : float or None
        Scale of the output bias; None: no bias parameter.
    attention_mechanism : "softmax", "identity", "abs" or "relu"
        m above.
    init : None or one of ``nnpk.INITS``
        How the weights are drawn; None: the network's ``init``.
    pos_emb_type : "none", "sum" or "concat"
        Positional embeddings: none, added to the inputs, or concatenated to them as more channels.
    pos_emb_p_norm : float
        p > 0 of the distances ``sum_a |p_a - q_a| ** p`` the decay function is evaluated on.
    pos_emb_decay_fn : None or callable
        A function of one distance (a float) giving the covariance of two positions' embeddings;
        the matrix R it makes must be positive definite (a positive-definite function of the
        distance, such as ``lambda d: math.exp(-d / 2)``). None: ``1`` at distance 0, else 0 (independent
        embeddings). A callable is not JSON data: networks with one are not kept in ``nnpk.store``.
    n_chan_pos_emb : int or None
        Embedding channels e; None: the input's channel count (the only choice with "sum").
    W_pos_emb_std : float
        Scale (>= 0) of the embeddings.
    val_pos_emb : bool
        Whether the values read the embeddings too (else only keys and queries do).

    ``nnpk.analytic`` has the kernels of positional embeddings wherever it has the layer's, that is with linear
    scaling, and with square-root scaling and the identity mechanism. The positions' covariance R is mixed
    into the keys' and queries' covariance, and into the values' if ``val_pos_emb``.
    """

    heads: int
    key_width: int
    value_width: int
    width: Optional[int] = None
    linear_scaling: bool = True
    W_key_std: float = 1.0
    W_query_std: float = 1.0
    W_value_std: float = 1.0
    W_out_std: float = 1.0
    b_std: Optional[float] = None
    attention_mechanism: str = "softmax"
    init: Optional[str] = None
    pos_emb_type: str = "none"
    pos_emb_p_norm: float = 2.0
    pos_emb_decay_fn: Optional[Callable[[float], float]] = None
    n_chan_pos_emb: Optional[int] = None
    W_pos_emb_std: float = 1.0
    val_pos_emb: bool = False

    def __post_init__(self):
        for name in ("heads", "key_width", "value_width"):
            object.__setattr__(self, name, _positive_int(getattr(self, name), name))
        if self.width is not None:
            object.__setattr__(self, "width", _positive_int(self.width, "width"))
        if not isinstance(self.linear_scaling, (bool, np.bool_)):
            raise TypeError(f"linear_scaling must be True or False, got {self.linear_scaling!r}")
        object.__setattr__(self, "linear_scaling", bool(self.linear_scaling))
        for name in ("W_key_std", "W_query_std", "W_value_std", "W_out_std"):
            object.__setattr__(self, name, _std(getattr(self, name), name, False))
        object.__setattr__(self, "b_std", _std(self.b_std, "b_std", True))
        mech = self.attention_mechanism
        if not isinstance(mech, str) or mech.lower() not in ATTENTION_MECHANISMS:
            raise ValueError(f"attention_mechanism must be one of {', '.join(ATTENTION_MECHANISMS)}, got {mech!r}")
        object.__setattr__(self, "attention_mechanism", mech.lower())
        if self.init is not None and self.init not in INITS:
            raise ValueError(f"init must be None or one of {', '.join(INITS)}, got {self.init!r}")
        pe = self.pos_emb_type
        if not isinstance(pe, str) or pe.lower() not in POS_EMB_TYPES:
            raise ValueError(f"pos_emb_type must be one of {', '.join(POS_EMB_TYPES)}, got {pe!r}")
        object.__setattr__(self, "pos_emb_type", pe.lower())
        p = self.pos_emb_p_norm
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not math.isfinite(p) or p <= 0:
            raise ValueError(f"pos_emb_p_norm must be a finite number > 0, got {p!r}")
        object.__setattr__(self, "pos_emb_p_norm", float(p))
        if self.pos_emb_decay_fn is not None and not callable(self.pos_emb_decay_fn):
            raise TypeError(f"pos_emb_decay_fn must be None or a function of a distance, got "
                            f"{self.pos_emb_decay_fn!r}")
        if self.n_chan_pos_emb is not None:
            object.__setattr__(self, "n_chan_pos_emb", _positive_int(self.n_chan_pos_emb, "n_chan_pos_emb"))
        object.__setattr__(self, "W_pos_emb_std", _std(self.W_pos_emb_std, "W_pos_emb_std", False))
        if not isinstance(self.val_pos_emb, (bool, np.bool_)):
            raise TypeError(f"val_pos_emb must be True or False, got {self.val_pos_emb!r}")
        object.__setattr__(self, "val_pos_emb", bool(self.val_pos_emb))

    @property
    def roles(self) -> Tuple[str, ...]:
        """Its parameter entries in order: "key" (tied: keys and queries), "query" (untied only), "value", "out",
        and "pos_emb" with positional embeddings."""
        roles = ("key", "value", "out") if self.linear_scaling else ("key", "query", "value", "out")
        return roles + (("pos_emb",) if self.pos_emb_type != "none" else ())

    def pos_emb_channels(self, channels: int) -> int:
        """The embedding channels e for inputs of `channels` channels (ValueError if "sum" and they differ)."""
        e = channels if self.n_chan_pos_emb is None else self.n_chan_pos_emb
        if self.pos_emb_type == "sum" and e != channels:
            raise ValueError(f"n_chan_pos_emb={e} differs from the input's {channels} channels: summed "
                             f"positional embeddings (pos_emb_type='sum') need as many channels as the input; "
                             f"use None or pos_emb_type='concat'")
        return e

    def positional_covariance(self, spatial_shape: Tuple[int, ...]) -> np.ndarray:
        """R (positions x positions, positions row by row) of points whose positions have `spatial_shape`:
        the decay function of the distances, or the identity."""
        coords = np.indices(spatial_shape).reshape(len(spatial_shape), -1).T.astype(np.float64)
        n = coords.shape[0]
        if self.pos_emb_decay_fn is None:
            return np.eye(n)
        dist = (np.abs(coords[:, None, :] - coords[None, :, :]) ** self.pos_emb_p_norm).sum(-1)
        R = np.empty((n, n))
        for i in range(n):
            for j in range(n):
                R[i, j] = float(self.pos_emb_decay_fn(float(dist[i, j])))
        if not np.all(np.isfinite(R)):
            raise ValueError("pos_emb_decay_fn returned a value that is not finite")
        return R

    def positional_basis(self, spatial_shape: Tuple[int, ...]) -> Optional[np.ndarray]:
        """B, the lower Cholesky factor of R (None for the identity); ValueError if R is not positive definite."""
        if self.pos_emb_decay_fn is None:
            return None
        R = self.positional_covariance(spatial_shape)
        try:
            return np.linalg.cholesky(R)
        except np.linalg.LinAlgError:
            raise ValueError(f"pos_emb_decay_fn makes a positions' covariance that is not positive definite (smallest "
                             f"eigenvalue {np.linalg.eigvalsh((R + R.T) / 2).min():.3g}); use a positive-definite "
                             f"function of the distance such as exp(-d / l)") from None

    def describe(self) -> str:
        scaling = "linear scaling" if self.linear_scaling else "sqrt scaling"
        pos = "" if self.pos_emb_type == "none" else f", {self.pos_emb_type} positional embeddings"
        return (f"SelfAttention {self.heads} heads, key_width {self.key_width}, value_width {self.value_width}, "
                f"{self.attention_mechanism}, {scaling}{pos}")


def _layers(layers, name: str, allow_empty: bool = False) -> tuple:
    if isinstance(layers, (str, bytes)) or not isinstance(layers, (list, tuple)):
        raise TypeError(f"{name} must be a sequence of layers, got {layers!r}")
    if not layers and not allow_empty:
        raise ValueError(f"{name} is empty")
    out = []
    for i, layer in enumerate(layers):
        if isinstance(layer, str):
            layer = Activation(layer)
        if not isinstance(layer, LAYER_TYPES):
            raise TypeError(f"{name}[{i}] must be a layer (Dense, Conv, ConvTranspose, AvgPool, SumPool, MaxPool, "
                            f"GlobalAvgPool, GlobalSumPool, Aggregate, Flatten, Activation, Residual, BatchNorm, "
                            f"LayerNorm, Recurrent, SelfAttention, Parallel, FanInSum, FanInProd, FanInConcat) or an "
                            f"activation name, got {layer!r}")
        out.append(layer)
    _check_merges(out, name)
    return tuple(out)


def _check_merges(layers, name: str) -> None:
    """ValueError unless every Parallel in `layers` is followed by a merge and every merge follows a Parallel."""
    for i, layer in enumerate(layers):
        merge = isinstance(layer, MERGE_TYPES)
        after_parallel = i > 0 and isinstance(layers[i - 1], Parallel)
        if isinstance(layer, Parallel) and (i + 1 == len(layers) or not isinstance(layers[i + 1], MERGE_TYPES)):
            raise ValueError(f"{name}[{i}] (Parallel) must be followed by a merge of its branches: FanInSum(), "
                             "FanInProd() or FanInConcat()")
        if merge and not after_parallel:
            raise ValueError(f"{name}[{i}] ({layer.describe()}) merges branches, so it must follow a Parallel")


@dataclass(frozen=True)
class Residual:
    """``x + scale * block(x)``: the block (a sequence of layers) must keep the shape of its input."""

    block: tuple
    scale: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "block", _layers(self.block, "block"))
        if isinstance(self.scale, bool) or not isinstance(self.scale, (numbers.Real, np.floating, np.integer)):
            raise TypeError(f"scale must be a number, got {self.scale!r}")
        if not math.isfinite(self.scale):
            raise ValueError(f"scale must be finite, got {self.scale}")
        object.__setattr__(self, "scale", float(self.scale))

    def describe(self) -> str:
        return f"Residual, scale {self.scale:g}"


@dataclass(frozen=True)
class Parallel:
    """Branches reading the same input, each a sequence of layers (a single layer is a branch of one layer, an
    empty list the identity); the next layer must merge their outputs (``FanInSum``, ``FanInProd`` or
    ``FanInConcat``). With branches and merges any directed acyclic graph of layers can be written: a residual
    block is ``Parallel([block, []])`` followed by ``FanInSum()``. The branches' parameters come in
    ``sample_params`` in branch order."""

    branches: tuple

    def __post_init__(self):
        branches = self.branches
        if isinstance(branches, (str, bytes)) or not isinstance(branches, (list, tuple)):
            raise TypeError(f"branches must be a list of branches (each a list of layers or one layer), got "
                            f"{branches!r}")
        if len(branches) < 2:
            raise ValueError(f"branches must hold at least two branches, got {len(branches)}")
        out = []
        for b, branch in enumerate(branches):
            if isinstance(branch, (list, tuple)):
                out.append(_layers(branch, f"branches[{b}]", allow_empty=True))
            else:
                out.append(_layers((branch,), f"branches[{b}]"))
        object.__setattr__(self, "branches", tuple(out))

    def describe(self) -> str:
        return f"Parallel of {len(self.branches)} branches"


@dataclass(frozen=True)
class FanInSum:
    """The sum of the branches of the Parallel before it, which must all give points of one shape."""

    def describe(self) -> str:
        return "FanInSum"


@dataclass(frozen=True)
class FanInProd:
    """The elementwise product of the branches of the Parallel before it, which must all give points of one
    shape."""

    def describe(self) -> str:
        return "FanInProd"


@dataclass(frozen=True)
class FanInConcat:
    """The branches of the Parallel before it concatenated along ``axis`` of a point's shape (negative: from
    the end): -1 (the default), the channels (the features of flat points), or a spatial axis (0 the length of
    1-D points or the height of 2-D points, 1 the width of 2-D points), which puts the positions of branch 0
    first. The branches must agree on every other axis."""

    axis: int = -1

    def __post_init__(self):
        if isinstance(self.axis, bool) or not isinstance(self.axis, (numbers.Integral, np.integer)):
            raise TypeError(f"axis must be an integer, got {self.axis!r}")
        object.__setattr__(self, "axis", int(self.axis))

    def describe(self) -> str:
        return f"FanInConcat axis {self.axis}"


MERGE_TYPES = (FanInSum, FanInProd, FanInConcat)
LAYER_TYPES = (Dense, Conv, AvgPool, SumPool, MaxPool, GlobalAvgPool, GlobalSumPool, Flatten, Activation, Residual,
               BatchNorm, LayerNorm, Recurrent, SelfAttention, Aggregate, ConvTranspose, Parallel, FanInSum, FanInProd,
               FanInConcat)
Layer = Union[Dense, Conv, AvgPool, SumPool, MaxPool, GlobalAvgPool, GlobalSumPool, Flatten, Activation, Residual,
              BatchNorm, LayerNorm, Recurrent, SelfAttention, Aggregate, ConvTranspose, Parallel, FanInSum, FanInProd,
              FanInConcat]
