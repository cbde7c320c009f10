"""A sequential network, and the same network compiled for points of one shape.

A ``Network`` is a sequence of layers applied in order. Inputs are ``(n, features)``,
``(n, length, channels)`` or ``(n, height, width, channels)`` arrays (channels last); a layer's
shape rules are checked against the input's shape before anything is computed, and an error
names the layer (``layer 3.1`` is layer 1 of the residual block at position 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import List, Tuple, Union

from .. import _core
from ._activations import PARAMETERIZATIONS
from ._layers import (
    Activation,
    AvgPool,
    BatchNorm,
    Conv,
    Dense,
    Flatten,
    GlobalAvgPool,
    Residual,
    _layers,
    _Pool,
    _text,
)

__all__ = ["Compiled", "INITS", "Network", "NormLayer", "ParamLayer"]

INITS = ("gaussian", "uniform", "truncated_normal", "orthogonal")

Shape = Tuple[int, ...]


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
class NormLayer:
    """A batch normalisation as sample_params lays it out: gamma and beta of shape (channels,)."""

    label: str
    layer: BatchNorm
    channels: int


@dataclass(frozen=True)
class Compiled:
    """A network applied to points of one shape: the engine's spec and what the Python side needs."""

    spec: "_core.SequentialSpec"
    input_shape: Shape
    shapes: Tuple[Shape, ...]         # each top-level layer's output shape per point
    layer_nodes: Tuple[int, ...]      # each top-level layer's output node
    params: Tuple[ParamLayer, ...]    # the Dense and Conv layers
    out: int                          # logits C
    # sample_params' layout: every parametrised layer in network order (params and norms interleaved)
    entries: Tuple[Union[ParamLayer, NormLayer], ...]
    norms: Tuple[NormLayer, ...]      # the batch normalisations


def _describe_shape(shape: Shape) -> str:
    return f"flat points of {shape[0]} features" if len(shape) == 1 else f"points of shape {shape}"


class _Builder:
    """Walks the layers over a point shape, checking each and emitting the engine's nodes."""

    def __init__(self) -> None:
        self.nodes: List["_core.SeqNode"] = []
        self.params: List[ParamLayer] = []
        self.entries: List[Union[ParamLayer, NormLayer]] = []

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
                                 "GlobalAvgPool() before it (a Conv with kernel size 1 is a dense map at every "
                                 "position)")
            out = (layer.width,)
            node = self.add(kind=_core.NodeKind.dense, input=node, width=layer.width, w_std=layer.W_std,
                            b_std=layer.b_std)
            self.params.append(ParamLayer(label, layer, (shape[0], layer.width), shape[0], layer.width, shape[0], 1))
            self.entries.append(self.params[-1])
            return out, node
        if isinstance(layer, Conv):
            spatial = self.window(label, layer, shape, layer.window, layer.strides, layer.padding, "kernel")
            fan_in = math.prod(layer.window) * shape[-1]
            node = self.add(kind=_core.NodeKind.conv, input=node, width=layer.channels, window=pad2(layer.window),
                            stride=pad2(layer.strides), same=layer.padding == "same", w_std=layer.W_std,
                            b_std=layer.b_std)
            self.params.append(ParamLayer(label, layer, layer.window + (shape[-1], layer.channels), fan_in,
                                          layer.channels, math.prod(shape), math.prod(spatial)))
            self.entries.append(self.params[-1])
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
        if isinstance(layer, BatchNorm):
            self.entries.append(NormLayer(label, layer, shape[-1]))
            return shape, self.add(kind=_core.NodeKind.batch_norm, input=node, eps=layer.eps, momentum=layer.momentum)
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


def _param_layers(layers, types=(Dense, Conv)) -> list:
    out = []
    for layer in layers:
        if isinstance(layer, types):
            out.append(layer)
        elif isinstance(layer, Residual):
            out += _param_layers(layer.block, types)
    return out


@dataclass(frozen=True)
class Network:
    """A sequential network with random weights: layers applied in order.

    Parameters
    ----------
    layers : sequence
        ``Dense``, ``Conv``, ``AvgPool``, ``MaxPool``, ``GlobalAvgPool``, ``Flatten``,
        ``Activation`` (or an activation name), ``Residual`` and ``BatchNorm`` layers. The last
        layer's output, the logits, must be flat.
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
        channels). Every draw is keyed by (seed, network, index among the Dense and Conv
        layers); batch normalisations draw nothing (gamma = 1, beta = 0), so adding one shifts
        no other layer's draws.
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
        """The Dense and Conv layers in order, residual blocks expanded (the layers of ``sample_params``
        but its BatchNorm entries)."""
        return tuple(_param_layers(self.layers))

    @property
    def has_batch_norm(self) -> bool:
        """Whether a ``BatchNorm`` layer is in the network (residual blocks included)."""
        return bool(_param_layers(self.layers, BatchNorm))

    @property
    def has_bias(self) -> Tuple[bool, ...]:
        """Whether each of ``param_layers`` has a bias parameter."""
        return tuple(layer.b_std is not None for layer in self.param_layers)

    def kernel_layers(self) -> Tuple[int, ...]:
        """The layers whose kernels ``layers="all"`` returns (indices into ``layers``): every layer."""
        return tuple(range(len(self.layers)))

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
    return Compiled(spec, input_shape, tuple(shapes), tuple(nodes), tuple(builder.params), shapes[-1][0],
                    tuple(builder.entries), tuple(e for e in builder.entries if isinstance(e, NormLayer)))
