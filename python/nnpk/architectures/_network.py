"""A sequential network, and the same network compiled for points of one shape.

A ``Network`` is a sequence of layers applied in order. Inputs are ``(n, features)``,
``(n, length, channels)`` or ``(n, height, width, channels)`` arrays (channels last; a sequence is
``(n, steps, features)``); a layer's
shape rules are checked against the input's shape before anything is computed, and an error
names the layer (``layer 3.1`` is layer 1 of the residual block at position 3, ``layer 3.1.0`` layer 0 of
branch 1 of the Parallel at position 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import List, Set, Tuple, Union

from .. import _core
from ._activations import DELTA_DERIVATIVES, PARAMETERIZATIONS
from ._layers import (
    INITS,
    Activation,
    Aggregate,
    BatchNorm,
    Conv,
    ConvTranspose,
    Dense,
    FanInConcat,
    FanInProd,
    FanInSum,
    Flatten,
    GlobalAvgPool,
    GlobalSumPool,
    LayerNorm,
    MaxPool,
    Parallel,
    Recurrent,
    Residual,
    SelfAttention,
    SumPool,
    _layers,
    _Pool,
    _text,
)

__all__ = ["Compiled", "INITS", "Network", "NormLayer", "ParamLayer", "check_differentiable"]

Shape = Tuple[int, ...]


@dataclass(frozen=True)
class ParamLayer:
    """A parametrised layer as sample_params lays it out: weights of shape `weight_shape`
    (a (fan_in, fan_out) matrix in memory), bias (fan_out,) or None; `input_size` values per
    point go in, `positions` output positions (1 for Dense) come out."""

    label: str
    layer: Union[Dense, Conv, Recurrent, SelfAttention]
    weight_shape: Tuple[int, ...]
    fan_in: int
    fan_out: int
    input_size: int
    positions: int
    recurrent_weights: bool = False  # a Recurrent layer's W entry (its bias goes with U)
    role: str = ""  # a SelfAttention layer's entry: "key", "query", "value", "out", "pos_emb" (SelfAttention.roles)

    @property
    def has_bias(self) -> bool:
        return self.layer.b_std is not None and not self.recurrent_weights and self.role in ("", "out")

    @property
    def w_std(self) -> float:
        """The scale of these weights (a Recurrent layer's U entry: its U_std; a SelfAttention entry: its
        matrix's std, sqrt(W_key_std W_query_std) for tied keys and queries)."""
        layer = self.layer
        if isinstance(layer, SelfAttention):
            if self.role == "key":
                return math.sqrt(layer.W_key_std * layer.W_query_std) if layer.linear_scaling else layer.W_key_std
            if self.role == "pos_emb":  # its fan-in is the positions: this std over sqrt(fan_in) is W_pos_emb_std
                return layer.W_pos_emb_std * math.sqrt(self.fan_in)
            return {"query": layer.W_query_std, "value": layer.W_value_std, "out": layer.W_out_std}[self.role]
        if isinstance(layer, Recurrent) and not self.recurrent_weights:
            return layer.U_std
        return layer.W_std


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
    # The logits' shape per point: (C,), or (steps, C) for a network whose output is a sequence (a
    # Recurrent layer returning sequences, then layers acting on every step); the engine reads the
    # steps' outputs as steps x C flat logits.
    out_shape: Tuple[int, ...] = ()
    # Graph points (a network with Aggregate()): the nodes of each point's graph, whose adjacency follows each
    # node's features in its row of x (input_shape's last axis is features + nodes); 0 for other points.
    graph_nodes: int = 0

    @property
    def features_shape(self) -> Shape:
        """The shape the first layers read per point: input_shape without a graph point's adjacency."""
        if not self.graph_nodes:
            return self.input_shape
        return self.input_shape[:-1] + (self.input_shape[-1] - self.graph_nodes,)


def _describe_shape(shape: Shape) -> str:
    return f"flat points of {shape[0]} features" if len(shape) == 1 else f"points of shape {shape}"


class _Builder:
    """Walks the layers over a point shape, checking each and emitting the engine's nodes."""

    def __init__(self, graph_nodes: int = 0) -> None:
        self.graph_nodes = graph_nodes  # graph points: the nodes of each point's graph
        self.nodes: List["_core.SeqNode"] = []
        self.params: List[ParamLayer] = []
        self.entries: List[Union[ParamLayer, NormLayer]] = []
        self.sequences: Set[int] = set()  # nodes whose output is a sequence of steps (per-step layers follow)

    def error(self, label: str, layer, what: str) -> ValueError:
        return ValueError(f"layer {label} ({layer.describe()}): {what}")

    def add(self, **kwargs) -> int:
        self.nodes.append(_core.SeqNode(**kwargs))
        return len(self.nodes) - 1

    def sequence(self, layers, shape: Shape, node: int, prefix: str):
        """(shapes, nodes) after each layer of `layers`, starting from `shape` at `node` (a Parallel's entry
        is its merge's: the layer after it)."""
        shapes, nodes = [], []
        for i, layer in enumerate(layers):
            if isinstance(layer, Parallel):
                shape, node = self.parallel(layer, layers[i + 1], shape, node, f"{prefix}{i}", f"{prefix}{i + 1}")
            elif not isinstance(layer, (FanInSum, FanInProd, FanInConcat)):  # a merge: done with its Parallel
                shape, node = self.layer(layer, shape, node, f"{prefix}{i}")
            shapes.append(shape)
            nodes.append(node)
        return shapes, nodes

    def parallel(self, layer: Parallel, merge, shape: Shape, node: int, label: str, merge_label: str):
        """(shape, node) of the branches of `layer` merged by `merge`: a chain of two-input nodes (the
        running merge as input, the next branch as skip; a sum is the engine's residual node of scale 1)."""
        outs = []
        for b, branch in enumerate(layer.branches):
            if branch:
                shapes, nodes = self.sequence(branch, shape, node, f"{label}.{b}.")
                outs.append((shapes[-1], nodes[-1]))
            else:
                outs.append((shape, node))
        first = outs[0][0]
        axis = -1
        if isinstance(merge, FanInConcat):
            axis = merge.axis + len(first) if merge.axis < 0 else merge.axis
            if not 0 <= axis < len(first):
                raise self.error(merge_label, merge, f"axis {merge.axis} is out of range for the branches' "
                                 f"{_describe_shape(first)}")
        for b, (out, _) in enumerate(outs[1:], 1):
            if isinstance(merge, FanInConcat):
                if len(out) != len(first) or out[:axis] + out[axis + 1:] != first[:axis] + first[axis + 1:]:
                    raise self.error(merge_label, merge, f"branch {b} gives {_describe_shape(out)} and branch 0 "
                                     f"{_describe_shape(first)}: a concatenation along axis {merge.axis} needs "
                                     "branches that agree on every other axis")
            elif out != first:
                raise self.error(merge_label, merge, f"branch {b} gives {_describe_shape(out)} and branch 0 "
                                 f"{_describe_shape(first)}: {merge.describe()} needs branches of one shape")
        acc_shape, acc = outs[0]
        for out, branch_node in outs[1:]:
            if isinstance(merge, FanInSum):
                acc = self.add(kind=_core.NodeKind.residual, input=branch_node, skip=acc, scale=1.0)
            elif isinstance(merge, FanInProd):
                acc = self.add(kind=_core.NodeKind.fan_in_prod, input=acc, skip=branch_node)
            else:
                # The engine's axes: 0 the height (a 1-D signal's length), 1 the width, 2 the channels.
                engine_axis = 2 if axis == len(first) - 1 else axis
                acc = self.add(kind=_core.NodeKind.fan_in_concat, input=acc, skip=branch_node,
                               concat_axis=engine_axis)
                acc_shape = acc_shape[:axis] + (acc_shape[axis] + out[axis],) + acc_shape[axis + 1:]
        if all(n in self.sequences for _, n in outs):
            self.sequences.add(acc)
        return acc_shape, acc

    def window(self, label, layer, shape: Shape, window, strides, padding, what: str, transposed=False) -> Shape:
        """Output positions of a window over `shape`; a transposed convolution's are n stride ("same") or
        n stride + max(window - stride, 0) ("valid")."""
        dims = len(window)
        if len(shape) != dims + 1:
            need = "(length, channels)" if dims == 1 else "(height, width, channels)"
            hint = f" (a 2-D {what} is a pair, such as {(window[0],) * 2})" if dims == 1 and len(shape) == 3 else ""
            raise self.error(label, layer, f"a {dims}-D {what} needs {need} points, got {_describe_shape(shape)}{hint}")
        out = []
        for axis, (n, k, s) in enumerate(zip(shape[:-1], window, strides)):
            if transposed:
                out.append(n * s if padding == "same" else n * s + max(k - s, 0))
                continue
            if padding == "valid" and n < k:
                name = "length" if dims == 1 else ("height", "width")[axis]
                raise self.error(label, layer, f"input {name} {n} is shorter than the {what} ({_text(window)})")
            out.append(-(-n // s) if padding == "same" else (n - k) // s + 1)
        return tuple(out)

    def layer(self, layer, shape: Shape, node: int, label: str):
        pad2 = lambda t: (t[0], t[1] if len(t) == 2 else 1)
        if isinstance(layer, Recurrent):
            return self.recurrent(layer, shape, node, label)
        if isinstance(layer, SelfAttention):
            return self.attention(layer, shape, node, label)
        if isinstance(layer, Dense) and node in self.sequences:
            # The same dense map at every step: a convolution of kernel size 1 to the engine.
            node = self.add(kind=_core.NodeKind.conv, input=node, width=layer.width, w_std=layer.W_std,
                            b_std=layer.b_std)
            self.params.append(ParamLayer(label, layer, (shape[-1], layer.width), shape[-1], layer.width,
                                          math.prod(shape), shape[0]))
            self.entries.append(self.params[-1])
            self.sequences.add(node)
            return (shape[0], layer.width), node
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
        if isinstance(layer, ConvTranspose):
            spatial = self.window(label, layer, shape, layer.window, layer.strides, layer.padding, "kernel", True)
            fan_in = math.prod(layer.window) * shape[-1]
            node = self.add(kind=_core.NodeKind.conv, input=node, width=layer.channels, window=pad2(layer.window),
                            stride=pad2(layer.strides), same=layer.padding == "same", w_std=layer.W_std,
                            b_std=layer.b_std, transposed=True)
            self.params.append(ParamLayer(label, layer, layer.window + (shape[-1], layer.channels), fan_in,
                                          layer.channels, math.prod(shape), math.prod(spatial)))
            self.entries.append(self.params[-1])
            return spatial + (layer.channels,), node
        if isinstance(layer, Aggregate):
            if len(shape) == 1:
                raise self.error(label, layer, f"needs (nodes, channels) or (height, width, channels) points, got "
                                 f"{_describe_shape(shape)}")
            positions = math.prod(shape[:-1])
            if layer.per_point:
                if positions != self.graph_nodes:
                    raise self.error(label, layer, f"aggregates over each point's graph of {self.graph_nodes} nodes, "
                                     f"but its input has {positions} positions (shape {shape}): put it where the "
                                     "positions are still the graph's nodes (before any pooling or strided or "
                                     "'valid' convolution)")
                return shape, self.per_step(node, self.add(kind=_core.NodeKind.aggregate, input=node, per_point=True,
                                                           mean=layer.reduction == "mean"))
            if positions != layer.nodes:
                raise self.error(label, layer, f"its pattern has {layer.nodes} nodes, the points have {positions} "
                                 f"positions (shape {shape})")
            return shape, self.per_step(node, self.add(kind=_core.NodeKind.aggregate, input=node,
                                                       pattern=layer.weights.reshape(-1).tolist()))
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
            # SumPool is the engine's average pooling without the division by the window's size.
            kind = _core.NodeKind.max_pool if isinstance(layer, MaxPool) else _core.NodeKind.avg_pool
            node = self.add(kind=kind, input=node, window=pad2(layer.windows), stride=pad2(layer.strides),
                            same=layer.padding == "same", pool_sum=isinstance(layer, SumPool))
            return spatial + (shape[-1],), node
        if isinstance(layer, (GlobalAvgPool, GlobalSumPool)):
            if len(shape) == 1:
                raise self.error(label, layer, f"needs (length, channels) or (height, width, channels) points, got "
                                 f"{_describe_shape(shape)}")
            return (shape[-1],), self.add(kind=_core.NodeKind.global_avg_pool, input=node,
                                          pool_sum=isinstance(layer, GlobalSumPool))
        if isinstance(layer, Flatten):
            return (math.prod(shape),), self.add(kind=_core.NodeKind.flatten, input=node)
        if isinstance(layer, BatchNorm):
            self.entries.append(NormLayer(label, layer, shape[-1]))
            return shape, self.per_step(node, self.add(kind=_core.NodeKind.batch_norm, input=node, eps=layer.eps,
                                                       momentum=layer.momentum))
        if isinstance(layer, LayerNorm):
            return shape, self.per_step(node, self.add(kind=_core.NodeKind.layer_norm, input=node, eps=layer.eps,
                                                       norm_axes=self.norm_axes(label, layer, shape)))
        if isinstance(layer, Activation):
            return shape, self.per_step(node, self.add(kind=_core.NodeKind.activation, input=node,
                                                       **_activation_node(layer)))
        shapes, nodes = self.sequence(layer.block, shape, node, f"{label}.")
        if shapes[-1] != shape:
            raise self.error(label, layer, f"its block maps points of shape {shape} to {shapes[-1]}; a residual block "
                             "must keep the shape")
        residual = self.add(kind=_core.NodeKind.residual, input=nodes[-1], skip=node, scale=layer.scale)
        return shape, (self.per_step(nodes[-1], residual) if node in self.sequences else residual)

    def norm_axes(self, label: str, layer: LayerNorm, shape: Shape) -> Tuple[bool, bool, bool]:
        """The engine's (height, width, channels) flags of the axes a LayerNorm normalises points of `shape` over
        (a 1-D point's length is the engine's height)."""
        try:
            axes = layer.normalized_axes(len(shape))
        except ValueError as err:
            raise self.error(label, layer, f"{err}; points here have shape {shape}") from None
        ndim = len(shape)
        return (0 in axes and ndim > 1, 1 in axes and ndim == 3, ndim - 1 in axes)

    def per_step(self, read: int, node: int) -> int:
        """`node`, marked as a sequence of steps if the node it reads is one."""
        if read in self.sequences:
            self.sequences.add(node)
        return node

    def recurrent(self, layer: Recurrent, shape: Shape, node: int, label: str):
        if len(shape) != 2:
            raise self.error(label, layer, f"needs sequences, points of shape (steps, features), got "
                             f"{_describe_shape(shape)}: pass x as an (n, steps, features) array")
        steps, features = shape
        init = -1 if layer.init is None else int(getattr(_core.Init, layer.init))
        node = self.add(kind=_core.NodeKind.recurrent, input=node, width=layer.width, w_std=layer.W_std,
                        u_std=layer.U_std, b_std=layer.b_std, leak=layer.leak,
                        return_sequences=layer.return_sequences, init=init, **_activation_node(layer.phi))
        m = layer.width
        self.params.append(ParamLayer(f"{label} (U, b)", layer, (features, m), features, m, steps * features, steps))
        self.params.append(ParamLayer(f"{label} (W)", layer, (m, m), m, m, steps * m, steps, True))
        self.entries += self.params[-2:]
        if layer.return_sequences:
            self.sequences.add(node)
            return (steps, m), node
        return (m,), node


    def attention(self, layer: SelfAttention, shape: Shape, node: int, label: str):
        if len(shape) == 1:
            raise self.error(label, layer, f"needs (length, channels) or (height, width, channels) points, got "
                             f"{_describe_shape(shape)}: attention mixes positions")
        c, positions = shape[-1], math.prod(shape[:-1])
        width = c if layer.width is None else layer.width
        init = -1 if layer.init is None else int(getattr(_core.Init, layer.init))
        mechanism = ("softmax", "identity", "abs", "relu").index(layer.attention_mechanism)
        pos_emb = ("none", "sum", "concat").index(layer.pos_emb_type)
        e, basis = 0, None
        if pos_emb:
            try:
                e = layer.pos_emb_channels(c)
                basis = layer.positional_basis(tuple(shape[:-1]))
            except ValueError as err:
                raise self.error(label, layer, str(err)) from None
        self.nodes.append(_core.attention_node(
            input=node, width=width, heads=layer.heads, key_width=layer.key_width, value_width=layer.value_width,
            tied=layer.linear_scaling, mechanism=mechanism, k_std=layer.W_key_std, q_std=layer.W_query_std,
            v_std=layer.W_value_std, w_std=layer.W_out_std, b_std=layer.b_std, init=init, pos_emb=pos_emb,
            pos_channels=e, val_pos_emb=layer.val_pos_emb, pe_std=layer.W_pos_emb_std,
            pos_basis=[] if basis is None else basis.ravel().tolist()))
        new = self.per_step(node, len(self.nodes) - 1)
        hk, hv = layer.heads * layer.key_width, layer.heads * layer.value_width
        ck = c + (e if layer.pos_emb_type == "concat" else 0)
        cv = ck if layer.val_pos_emb else c
        names = {"key": "(K=Q)" if layer.linear_scaling else "(K)", "query": "(Q)", "value": "(V)", "out": "(O, b)",
                 "pos_emb": "(E)"}
        for role in layer.roles:
            fan_in, fan_out = {"out": (hv, width), "value": (cv, hv), "pos_emb": (positions, e)}.get(role, (ck, hk))
            self.params.append(ParamLayer(f"{label} {names[role]}", layer, (fan_in, fan_out), fan_in, fan_out,
                                          positions * fan_in, positions, role=role))
            self.entries.append(self.params[-1])
        return shape[:-1] + (width,), new


def _activation_node(layer: Activation) -> dict:
    """The engine node's settings of an activation."""
    return layer.engine_settings


def _activations(layers, prefix: str = ""):
    """(label, Activation) of every activation in `layers`: residual blocks' and recurrent layers' included."""
    for i, layer in enumerate(layers):
        if isinstance(layer, Activation):
            yield f"{prefix}{i}", layer
        elif isinstance(layer, Recurrent):
            yield f"{prefix}{i}", layer.phi
        elif isinstance(layer, Residual):
            yield from _activations(layer.block, f"{prefix}{i}.")
        elif isinstance(layer, Parallel):
            for b, branch in enumerate(layer.branches):
                yield from _activations(branch, f"{prefix}{i}.{b}.")


def check_differentiable(network: "Network", what: str) -> None:
    """ValueError naming the first activation whose derivative is a Dirac delta (sign): `what` (a tangent
    kernel, training) needs phi' and it has none."""
    for label, act in _activations(network.layers):
        if act.name in DELTA_DERIVATIVES:
            raise ValueError(f"{what} needs the derivative of every activation; layer {label} ({act.describe()}) is "
                             f"a step whose derivative is 0 except at 0, where it is a Dirac delta: the tangent kernel "
                             f"through it is undefined (E[phi'(u) phi'(v)] diverges) and gradients do not pass it. "
                             f"Its NNGP (get='nngp') is defined; for a tangent kernel use a smooth activation such as "
                             f"erf")


def _param_layers(layers, types=(Dense, Conv, Recurrent, SelfAttention)) -> list:
    out = []
    for layer in layers:
        if isinstance(layer, types):
            out.append(layer)
        elif isinstance(layer, Residual):
            out += _param_layers(layer.block, types)
        elif isinstance(layer, Parallel):
            for branch in layer.branches:
                out += _param_layers(branch, types)
    return out


def _biases(layer) -> Tuple[bool, ...]:
    """Whether each of a parametrised layer's entries in sample_params has a bias (a Recurrent layer has two
    entries, a SelfAttention layer one per matrix, the output's last)."""
    has = layer.b_std is not None
    if isinstance(layer, Recurrent):
        return (has, False)
    if isinstance(layer, SelfAttention):
        return tuple(has and role == "out" for role in layer.roles)
    return (has,)


@dataclass(frozen=True)
class Network:
    """A sequential network with random weights: layers applied in order.

    Parameters
    ----------
    layers : sequence
        ``Dense``, ``Conv``, ``ConvTranspose``, ``AvgPool``, ``SumPool``, ``MaxPool``, ``GlobalAvgPool``,
        ``GlobalSumPool``, ``Aggregate``, ``Flatten``, ``Activation`` (or an activation name), ``Residual``,
        ``BatchNorm``, ``LayerNorm``, ``Recurrent`` and ``SelfAttention`` layers, and ``Parallel`` branches, each
        followed by its merge (``FanInSum``, ``FanInProd`` or ``FanInConcat``).
        The last layer's output, the logits, must be flat, or a sequence of steps (a ``Recurrent``
        layer returning sequences and layers acting on every step): its ``steps x C`` values are
        then the logits, in step order.
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
    def param_layers(self) -> Tuple[Union[Dense, Conv, Recurrent, SelfAttention], ...]:
        """The Dense, Conv, Recurrent and SelfAttention layers in order, residual blocks expanded (a Recurrent
        layer has two entries in ``sample_params``, a SelfAttention layer one per weight matrix)."""
        return tuple(_param_layers(self.layers))

    @property
    def has_batch_norm(self) -> bool:
        """Whether a ``BatchNorm`` layer is in the network (residual blocks included)."""
        return bool(_param_layers(self.layers, BatchNorm))

    @property
    def has_bias(self) -> Tuple[bool, ...]:
        """Whether each of ``param_layers`` has a bias parameter."""
        return tuple(has for layer in self.param_layers for has in _biases(layer))

    @property
    def returns_sequences(self) -> bool:
        """Whether the logits are a sequence of steps (a Recurrent layer returning sequences, then layers acting
        on every step)."""
        sequence = False
        for layer in self.layers:
            if isinstance(layer, Recurrent):
                sequence = layer.return_sequences
            elif isinstance(layer, (Flatten, GlobalAvgPool, GlobalSumPool)):
                sequence = False
        return sequence

    @property
    def reads_graphs(self) -> bool:
        """Whether the network takes graph points: an ``Aggregate()`` over each point's own graph is in it
        (residual blocks and branches included)."""
        return any(layer.per_point for layer in _param_layers(self.layers, Aggregate))

    @property
    def has_recurrent(self) -> bool:
        """Whether a ``Recurrent`` layer is in the network (residual blocks included)."""
        return bool(_param_layers(self.layers, Recurrent))

    def kernel_layers(self) -> Tuple[int, ...]:
        """The layers whose kernels ``layers="all"`` returns (indices into ``layers``): every layer but a
        ``Parallel`` (whose branches' outputs are the next layer's, the merge's, input)."""
        return tuple(i for i, layer in enumerate(self.layers) if not isinstance(layer, Parallel))

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
    graph_nodes, features_shape = 0, input_shape
    if network.reads_graphs:
        graph_nodes = math.prod(input_shape[:-1])
        if len(input_shape) == 1 or input_shape[-1] <= graph_nodes:
            raise ValueError(f"the network aggregates over each point's own graph (Aggregate()), so its points are "
                             f"graph points, (nodes, features + nodes) arrays: each node's features, then its row "
                             f"of the point's adjacency (nnpk.graph_points(features, adjacency) builds them); got "
                             f"{_describe_shape(input_shape)}, which has no room for "
                             + ("an adjacency" if len(input_shape) == 1 else
                                f"a {graph_nodes} x {graph_nodes} adjacency and at least one feature"))
        features_shape = input_shape[:-1] + (input_shape[-1] - graph_nodes,)
    builder = _Builder(graph_nodes)
    shapes, nodes = builder.sequence(network.layers, features_shape, -1, "")
    out_shape = shapes[-1]
    if len(out_shape) == 2 and nodes[-1] in builder.sequences:
        # The logits are every step's outputs, flattened: the last layer's node is the flattening.
        nodes[-1] = builder.add(kind=_core.NodeKind.flatten, input=nodes[-1])
    elif len(shapes[-1]) != 1:
        raise ValueError(f"the network's output has shape {shapes[-1]} per point; logits must be flat: end with "
                         "Flatten() or GlobalAvgPool() and a Dense readout")
    spec = _core.SequentialSpec(list(input_shape), builder.nodes, getattr(_core.Parameterization,
                                network.parameterization), getattr(_core.Init, network.init),
                                graph=bool(graph_nodes))
    return Compiled(spec, input_shape, tuple(shapes), tuple(nodes), tuple(builder.params), math.prod(out_shape),
                    tuple(builder.entries), tuple(e for e in builder.entries if isinstance(e, NormLayer)), out_shape,
                    graph_nodes)
