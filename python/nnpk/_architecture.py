"""Sequential network descriptions: dense and convolutional layers, pooling, residual blocks.

A ``Network`` is a sequence of layers applied in order. Inputs are ``(n, features)``,
``(n, length, channels)`` or ``(n, height, width, channels)`` arrays (channels last, as in
neural-tangents); a layer's shape rules are checked against the input's shape before anything
is computed, and an error names the layer (``layer 3.1`` is layer 1 of the residual block at
position 3).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import lru_cache
from typing import List, Optional, Tuple, Union

import numpy as np

from . import _core
from ._arch import MLP, PARAMETERIZATIONS, activation_normalization, check_activation

__all__ = ["Activation", "AvgPool", "Conv", "Dense", "Flatten", "GlobalAvgPool", "INITS", "MaxPool", "Network",
           "Residual"]

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
    """A fully connected layer on flat features: ``z = h W + b``, W of shape (fan_in, width).

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


class MaxPool(_Pool):
    """Maximum over windows, per channel; as AvgPool otherwise (padding never wins)."""


@dataclass(frozen=True)
class GlobalAvgPool:
    """The average over all positions, per channel: spatial points become flat."""

    def describe(self) -> str:
        return "GlobalAvgPool"


@dataclass(frozen=True)
class Flatten:
    """Spatial points become flat, in (height, width, channel) order."""

    def describe(self) -> str:
        return "Flatten"


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity: one of ``nnpk.ACTIVATIONS``, normalised or not, as in ``nnpk.MLP``.

    A bare name in a layer list (``"relu"``) means ``Activation("relu")``."""

    name: str
    normalize: bool = False
    slope: float = 0.01

    def __post_init__(self):
        object.__setattr__(self, "slope", check_activation(self.name, self.normalize, self.slope))
        object.__setattr__(self, "normalize", bool(self.normalize))

    @property
    def normalization(self) -> Tuple[float, float]:
        """(shift, scale) applied after phi: (0, 1) unless normalize=True."""
        return activation_normalization(self.name, self.slope, self.normalize)

    def describe(self) -> str:
        return f"Activation {self.name}"


def _layers(layers, name: str) -> tuple:
    if isinstance(layers, (str, bytes)) or not isinstance(layers, (list, tuple)):
        raise TypeError(f"{name} must be a sequence of layers, got {layers!r}")
    if not layers:
        raise ValueError(f"{name} is empty")
    out = []
    for i, layer in enumerate(layers):
        if isinstance(layer, str):
            layer = Activation(layer)
        if not isinstance(layer, LAYER_TYPES):
            raise TypeError(f"{name}[{i}] must be a layer (Dense, Conv, AvgPool, MaxPool, GlobalAvgPool, Flatten, "
                            f"Activation, Residual) or an activation name, got {layer!r}")
        out.append(layer)
    return tuple(out)


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


LAYER_TYPES = (Dense, Conv, AvgPool, MaxPool, GlobalAvgPool, Flatten, Activation, Residual)
Layer = Union[Dense, Conv, AvgPool, MaxPool, GlobalAvgPool, Flatten, Activation, Residual]


@dataclass(frozen=True)
class ParamLayer:
    """A parametrised layer as sample_params lays it out: weights of shape `weight_shape`
    (a (fan_in, fan_out) matrix in memory), bias (fan_out,) or None; `input_size` values per
    point go in, `positions` output positions (1 for Dense) come out."""

    label: str
    layer: Union[Dense, Conv]
    weight_shape: Tuple[int, ...]
    fan_in: int
    fan_out: int
    input_size: int
    positions: int


@dataclass(frozen=True)
class Compiled:
    """A network applied to points of one shape: the engine's spec and what the Python side needs."""

    spec: "_core.SequentialSpec"
    input_shape: Shape
    shapes: Tuple[Shape, ...]         # each top-level layer's output shape per point
    layer_nodes: Tuple[int, ...]      # each top-level layer's output node
    params: Tuple[ParamLayer, ...]
    out: int                          # logits C


def _describe_shape(shape: Shape) -> str:
    return f"flat points of {shape[0]} features" if len(shape) == 1 else f"points of shape {shape}"


class _Builder:
    """Walks the layers over a point shape, checking each and emitting the engine's nodes."""

    def __init__(self):
        self.nodes: List["_core.SeqNode"] = []
        self.params: List[ParamLayer] = []

    def error(self, label: str, layer, what: str) -> ValueError:
        return ValueError(f"layer {label} ({layer.describe()}): {what}")

    def add(self, **kwargs) -> int:
        self.nodes.append(_core.SeqNode(**kwargs))
        return len(self.nodes) - 1

    def sequence(self, layers, shape: Shape, node: int, prefix: str):
        """(shapes, nodes) after each layer of `layers`, starting from `shape` at `node`."""
        shapes, nodes = [], []
        for i, layer in enumerate(layers):
            shape, node = self.layer(layer, shape, node, f"{prefix}{i}")
            shapes.append(shape)
            nodes.append(node)
        return shapes, nodes

    def window(self, label, layer, shape: Shape, window, strides, padding, what: str) -> Shape:
        dims = len(window)
        if len(shape) != dims + 1:
            need = "(length, channels)" if dims == 1 else "(height, width, channels)"
            hint = f" (a 2-D {what} is a pair, such as {(window[0],) * 2})" if dims == 1 and len(shape) == 3 else ""
            raise self.error(label, layer, f"a {dims}-D {what} needs {need} points, got {_describe_shape(shape)}{hint}")
        out = []
        for axis, (n, k, s) in enumerate(zip(shape[:-1], window, strides)):
            if padding == "valid" and n < k:
                name = "length" if dims == 1 else ("height", "width")[axis]
                raise self.error(label, layer, f"input {name} {n} is shorter than the {what} ({_text(window)})")
            out.append(-(-n // s) if padding == "same" else (n - k) // s + 1)
        return tuple(out)

    def layer(self, layer, shape: Shape, node: int, label: str):
        pad2 = lambda t: (t[0], t[1] if len(t) == 2 else 1)
        if isinstance(layer, Dense):
            if len(shape) != 1:
                raise self.error(label, layer, f"needs flat points, got {_describe_shape(shape)}: add Flatten() or "
                                 "GlobalAvgPool() before it (a Conv with kernel size 1 is a dense map at every position)")
            out = (layer.width,)
            node = self.add(kind=_core.NodeKind.dense, input=node, width=layer.width, w_std=layer.W_std,
                            b_std=layer.b_std)
            self.params.append(ParamLayer(label, layer, (shape[0], layer.width), shape[0], layer.width, shape[0], 1))
            return out, node
        if isinstance(layer, Conv):
            spatial = self.window(label, layer, shape, layer.window, layer.strides, layer.padding, "kernel")
            fan_in = math.prod(layer.window) * shape[-1]
            node = self.add(kind=_core.NodeKind.conv, input=node, width=layer.channels, window=pad2(layer.window),
                            stride=pad2(layer.strides), same=layer.padding == "same", w_std=layer.W_std,
                            b_std=layer.b_std)
            self.params.append(ParamLayer(label, layer, layer.window + (shape[-1], layer.channels), fan_in,
                                          layer.channels, math.prod(shape), math.prod(spatial)))
            return spatial + (layer.channels,), node
        if isinstance(layer, _Pool):
            spatial = self.window(label, layer, shape, layer.windows, layer.strides, layer.padding, "window")
            kind = _core.NodeKind.avg_pool if isinstance(layer, AvgPool) else _core.NodeKind.max_pool
            node = self.add(kind=kind, input=node, window=pad2(layer.windows), stride=pad2(layer.strides),
                            same=layer.padding == "same")
            return spatial + (shape[-1],), node
        if isinstance(layer, GlobalAvgPool):
            if len(shape) == 1:
                raise self.error(label, layer, f"needs (length, channels) or (height, width, channels) points, got "
                                 f"{_describe_shape(shape)}")
            return (shape[-1],), self.add(kind=_core.NodeKind.global_avg_pool, input=node)
        if isinstance(layer, Flatten):
            return (math.prod(shape),), self.add(kind=_core.NodeKind.flatten, input=node)
        if isinstance(layer, Activation):
            shift, scale = layer.normalization
            return shape, self.add(kind=_core.NodeKind.activation, input=node,
                                   activation=getattr(_core.ActivationKind, layer.name), slope=layer.slope,
                                   shift=shift, activation_scale=scale)
        shapes, nodes = self.sequence(layer.block, shape, node, f"{label}.")
        if shapes[-1] != shape:
            raise self.error(label, layer, f"its block maps points of shape {shape} to {shapes[-1]}; a residual block "
                             "must keep the shape")
        return shape, self.add(kind=_core.NodeKind.residual, input=nodes[-1], skip=node, scale=layer.scale)


def _param_layers(layers) -> list:
    out = []
    for layer in layers:
        if isinstance(layer, (Dense, Conv)):
            out.append(layer)
        elif isinstance(layer, Residual):
            out += _param_layers(layer.block)
    return out


@dataclass(frozen=True)
class Network:
    """A sequential network with random weights: layers applied in order (CONVENTIONS.md).

    Parameters
    ----------
    layers : sequence
        ``Dense``, ``Conv``, ``AvgPool``, ``MaxPool``, ``GlobalAvgPool``, ``Flatten``,
        ``Activation`` (or an activation name) and ``Residual`` layers. The last layer's
        output, the logits, must be flat.
    parameterization : "ntk" or "standard"
        As in ``nnpk.MLP``, with a convolution's fan-in = kernel size x input channels.
    init : "gaussian", "uniform", "truncated_normal" or "orthogonal"
        How weights are drawn; every scheme has the Gaussian reference's variance, and biases
        are Gaussian under every scheme. "uniform": ``sqrt(3) (2u - 1)``; "truncated_normal":
        a normal truncated at two standard deviations (by the inverse CDF of one uniform), then
        divided by its standard deviation 0.880; "orthogonal": the layer's Gaussian draws as a
        (fan_in, fan_out) matrix through a QR decomposition (signs fixed by R's diagonal, so
        Haar distributed), times ``sqrt(max(fan_in, fan_out))`` so that the elements' mean
        square is 1 -- for a convolution, orthogonal over the fan-in (kernel positions x input
        channels). Every draw is keyed by (seed, network, parametrised layer index).
    """

    layers: tuple
    parameterization: str = "ntk"
    init: str = "gaussian"

    def __post_init__(self):
        object.__setattr__(self, "layers", _layers(self.layers, "layers"))
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be 'ntk' or 'standard', got {self.parameterization!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")

    @property
    def param_layers(self) -> Tuple[Union[Dense, Conv], ...]:
        """The Dense and Conv layers in order (residual blocks expanded): the layers of ``sample_params``."""
        return tuple(_param_layers(self.layers))

    @property
    def has_bias(self) -> Tuple[bool, ...]:
        return tuple(layer.b_std is not None for layer in self.param_layers)

    def shapes(self, input_shape) -> Tuple[Shape, ...]:
        """Each layer's output shape for one point of shape `input_shape`, checking every layer."""
        return self.compile(input_shape).shapes

    def compile(self, input_shape) -> Compiled:
        """The network applied to points of shape `input_shape` (checked; ValueError names the layer)."""
        return _compile(self, tuple(int(s) for s in input_shape))


@lru_cache(maxsize=64)
def _compile(network: Network, input_shape: Shape) -> Compiled:
    if not 1 <= len(input_shape) <= 3 or min(input_shape) < 1:
        raise ValueError(f"points must have shape (features,), (length, channels) or (height, width, channels) "
                         f"with positive sizes, got {input_shape}")
    builder = _Builder()
    shapes, nodes = builder.sequence(network.layers, input_shape, -1, "")
    if len(shapes[-1]) != 1:
        raise ValueError(f"the network's output has shape {shapes[-1]} per point; logits must be flat: end with "
                         "Flatten() or GlobalAvgPool() and a Dense readout")
    spec = _core.SequentialSpec(list(input_shape), builder.nodes, getattr(_core.Parameterization,
                                network.parameterization), getattr(_core.Init, network.init))
    return Compiled(spec, input_shape, tuple(shapes), tuple(nodes), tuple(builder.params), shapes[-1][0])


def mlp_network(mlp: MLP) -> Network:
    """The Network an MLP describes: draws and kernels are the same."""
    layers = []
    for width, w, b in zip(mlp.hidden, mlp.w_stds, mlp.b_stds):
        layers += [Dense(width, W_std=w, b_std=b), Activation(mlp.activation, normalize=mlp.normalize, slope=mlp.slope)]
    layers.append(Dense(mlp.out, W_std=mlp.w_stds[-1], b_std=mlp.b_stds[-1]))
    return Network(layers, parameterization=mlp.parameterization)
