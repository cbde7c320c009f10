"""Infinite-width (analytic) NNGP and NTK of random networks."""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple, Union, cast

import numpy as np

from .. import _core
from .._threads import resolve_n_threads
from .._validate import check_int, check_memory
from ..architectures import (
    Activation,
    Aggregate,
    AvgPool,
    Conv,
    Dense,
    FanInConcat,
    FanInProd,
    FanInSum,
    Flatten,
    GlobalAvgPool,
    GlobalSumPool,
    LayerNorm,
    MaxPool,
    Network,
    Parallel,
    Recurrent,
    Residual,
    SelfAttention,
    SumPool,
    check_arch,
    check_differentiable,
)
from ..architectures._params import prepare_network_points

__all__ = ["DEFAULT_QUADRATURE_ORDER", "analytic", "analytic_kernels", "check_analytic_network",
           "network_analytic_nodes"]

DEFAULT_QUADRATURE_ORDER = 40
_KERNELS = ("nngp", "ntk")
_TILE = 64

Kernels = Union[np.ndarray, List[np.ndarray]]


def _check_get(get) -> Tuple[str, ...]:
    names = (get,) if isinstance(get, str) else get
    if not isinstance(names, (tuple, list)) or not names or len(set(names)) != len(names) or any(
        not isinstance(n, str) or n not in _KERNELS for n in names
    ):
        raise ValueError(f"get must be 'nngp', 'ntk' or a tuple of both, got {get!r}")
    return tuple(names)


class _NetworkRecursion:
    """A Network as the analytic engines' nodes, refusing the layers without an exact recursion.

    Exact here: dense, convolutional and transposed convolutional layers; elementwise activations of Gaussian
    pre-activations (the output of a Dense or Conv layer, average or sum pooling or graph aggregation of such
    outputs, or a residual sum of them); average, sum and global pooling; graph aggregation; Flatten; Parallel
    branches (see ``parallel``); layer normalisation over the channels of such Gaussian features (their mean over
    the channels vanishes, their variance is the kernel's diagonal, and the output is Gaussian again); residual
    blocks ending with a Dense or Conv layer. That last layer's weights and bias have zero mean and are independent
    of everything before, so the block's output is uncorrelated with the skip path (E[x . f(x')] = 0) and the NNGP
    of x + s f(x) is K_x + s^2 K_f. For the NTK the skip parameters' share adds s times the average diagonal of the
    block's Jacobian df/dx times Theta_x, which is linear in the same zero-mean weights and vanishes at infinite
    width: Theta = Theta_x + s^2 Theta_f (Theta_f the block's recursion started from (K_x, Theta_x)). A block ending
    with an activation is refused: its output has a non-zero mean, so with a non-centred skip path (after a relu,
    say) the cross covariance does not vanish.

    ``nodes`` are the dense engine's (one per engine node of the compiled network; a convolution or
    pooling layer holds an identity node there and sets ``spatial``: such networks go to the
    convolutional engine, which reads the compiled network itself); ``units`` says per engine node
    whether it is an activation with a unit second moment.
    """

    def __init__(self) -> None:
        self.nodes: List["_core.AnalyticNode"] = []
        self.units: List[bool] = []
        self.spatial = False
        self.steps = 0  # a recurrent layer's steps (0: none)

    def add(self, **kwargs) -> int:
        self.nodes.append(_core.AnalyticNode(**kwargs))
        self.units.append(bool(kwargs.get("unit_second_moment", False)))
        return len(self.nodes) - 1

    @staticmethod
    def refuse(label: str, layer, why: str) -> ValueError:
        return ValueError(f"nnpk.analytic cannot compute this network exactly: layer {label} ({layer.describe()}) "
                          f"{why}; nnpk.monte_carlo estimates its kernels")

    def sequence(self, layers, shape, node: int, law: str, prefix: str):
        """(shape, node, law) after each layer; law: "input" (the network's input, maybe flattened
        or pooled), "gaussian" (jointly Gaussian pre-activations) or "other". A Parallel's entry is its
        merge's."""
        out = []
        for i, layer in enumerate(layers):
            if isinstance(layer, Parallel):
                shape, node, law = self.parallel(layer, layers[i + 1], shape, node, law, f"{prefix}{i}",
                                                 f"{prefix}{i + 1}")
            elif not isinstance(layer, (FanInSum, FanInProd, FanInConcat)):  # a merge: done with its Parallel
                shape, node, law = self.layer(layer, shape, node, law, f"{prefix}{i}")
            out.append((shape, node, law))
        return out

    def parallel(self, layer: Parallel, merge, shape, node: int, law: str, label: str, merge_label: str):
        """Branches merged as the compiled network's chain of two-input nodes. A sum or product of branches
        is exact when their outputs are independent at infinite width: each branch but at most one must be
        fresh (its last parametrised layer a Dense or Conv layer, followed by pooling or flattening only, or
        a sum or concatenation of fresh branches), whose zero-mean weights are independent of every other
        branch. Sum: NNGP and NTK add. Product: the NNGPs multiply, and the NTK is sum_i Theta_i prod_{j != i}
        K_j. A concatenation of channels needs no independence: its kernels are the branches' kernels averaged
        with weights their channel counts; its output is not Gaussian (an activation may not follow it). A
        concatenation of positions keeps each branch's covariances between its own positions and has none
        across branches, so it needs independent branches as the sum does."""
        outs = []
        for b, branch in enumerate(layer.branches):
            if branch:
                last = self.sequence(branch, shape, node, law, f"{label}.{b}.")[-1]
                outs.append(last + (_fresh(branch),))
            else:
                outs.append((shape, node, law, False))
        channels = isinstance(merge, FanInConcat) and merge.axis in (-1, len(shape) - 1)
        if not channels:
            stale = [b for b, out in enumerate(outs) if not out[3]]
            what = ("sum" if isinstance(merge, FanInSum) else "product" if isinstance(merge, FanInProd) else
                    "concatenation of positions (whose covariances across the branches must vanish)")
            if len(stale) > 1:
                raise self.refuse(merge_label, merge, f"merges branches {stale[0]} and {stale[1]}, neither of which "
                                  "ends with a Dense or Conv layer (then pooling or flattening only): their outputs "
                                  f"may be correlated, and the kernel of their {what} is not a function of the "
                                  "branches' kernels")
        acc_shape, acc, acc_law, _ = outs[0]
        for out_shape, out_node, out_law, _ in outs[1:]:
            if isinstance(merge, FanInSum):
                acc = self.add(kind=_core.AnalyticNodeKind.residual, input=out_node, skip=acc, scale=1.0)
                acc_law = "gaussian" if acc_law == out_law == "gaussian" else "other"
            elif isinstance(merge, FanInProd):
                acc = self.add(kind=_core.AnalyticNodeKind.fan_in_prod, input=acc, skip=out_node)
                acc_law = "other"
            elif channels:
                width = acc_shape[-1] + out_shape[-1]
                acc = self.add(kind=_core.AnalyticNodeKind.fan_in_concat, input=acc, skip=out_node,
                               scale=acc_shape[-1] / width)
                acc_shape = acc_shape[:-1] + (width,)
                acc_law = "other"
            else:  # positions: the convolutional engine's
                axis = merge.axis % len(shape)
                acc = self.spatial_layer(acc)
                acc_shape = acc_shape[:axis] + (acc_shape[axis] + out_shape[axis],) + acc_shape[axis + 1:]
                acc_law = "gaussian" if acc_law == out_law == "gaussian" else "other"
        return acc_shape, acc, acc_law

    def spatial_layer(self, node: int) -> int:
        self.spatial = True
        return self.add(kind=_core.AnalyticNodeKind.identity, input=node)

    def layer(self, layer, shape, node: int, law: str, label: str):
        if isinstance(layer, Recurrent):
            return self.recurrent(layer, shape, node, label)
        if isinstance(layer, SelfAttention):
            return self.attention(layer, shape, node, law, label)
        if isinstance(layer, Dense):
            return (layer.width,), self.add(kind=_core.AnalyticNodeKind.dense, input=node, fan_in=math.prod(shape),
                                            w_std=layer.W_std, b_std=layer.b_std), "gaussian"
        if isinstance(layer, Conv):
            return shape, self.spatial_layer(node), "gaussian"
        if isinstance(layer, MaxPool):
            raise self.refuse(label, layer, "takes maxima, which have no closed-form kernel: the covariance "
                              "E[max_a u_a max_b v_b] of two windows' maxima is an integral over the joint Gaussian "
                              "law of all 2m pooled values (m = window size), depending on every covariance among "
                              "them, not a function of one 2 x 2 covariance as an activation's dual map is; use "
                              "AvgPool")
        if isinstance(layer, (AvgPool, SumPool, GlobalAvgPool, GlobalSumPool, Aggregate)):
            # A mean (or sum, or a graph's weighted sums) of jointly Gaussian pre-activations is Gaussian; of
            # anything else it is not.
            return shape, self.spatial_layer(node), law
        if isinstance(layer, Flatten):
            # Spatial features keep their positions (an activation after Flatten acts on each); the
            # Dense layer reading them averages the same-position covariances.
            return (math.prod(shape),), self.add(kind=_core.AnalyticNodeKind.identity, input=node), law
        if isinstance(layer, LayerNorm):
            return shape, self.layer_norm(layer, shape, node, law, label), law
        if isinstance(layer, Residual):
            last = layer.block[-1]
            if not isinstance(last, (Dense, Conv, SelfAttention)):
                raise self.refuse(label, layer, f"has a block ending with {last.describe()}, not with a Dense or "
                                  "Conv layer: its output is then correlated with the skip path (E[x . f(x')] != 0), "
                                  "and the kernel is not the sum of the two paths' kernels")
            self.sequence(layer.block, shape, node, law, f"{label}.")
            node = self.add(kind=_core.AnalyticNodeKind.residual, input=len(self.nodes) - 1, skip=node,
                            scale=layer.scale)
            return shape, node, "gaussian" if law == "gaussian" else "other"
        if law != "gaussian":
            what = "the network's input" if law == "input" else "features that are not Gaussian pre-activations"
            raise self.refuse(label, layer, f"reads {what}: the dual map of an activation needs the Gaussian output "
                              "of a Dense or Conv layer (or an average pooling or residual sum of them)")
        return shape, self.add(kind=_core.AnalyticNodeKind.activation, input=node, **layer.engine_settings,
                               unit_second_moment=layer.unit_second_moment), "other"


    def attention(self, layer: SelfAttention, shape, node: int, law: str, label: str):
        if not layer.linear_scaling and layer.attention_mechanism != "identity":
            raise self.refuse(label, layer, "has linear_scaling=False: its logits Q K^T / sqrt(key_width) stay "
                              "random (Gaussian) at infinite width, and the kernel through a "
                              f"{layer.attention_mechanism} of them is an integral with no known closed form "
                              "(neural-tangents refuses it too); linear_scaling=True has one, as does "
                              "attention_mechanism='identity'")
        # Its output is a zero-mean linear map (Wo) of the heads: jointly Gaussian at infinite width.
        return shape, self.spatial_layer(node), "gaussian"

    def layer_norm(self, layer: LayerNorm, shape, node: int, law: str, label: str) -> int:
        """A layer normalisation's node: over the channels (and maybe positions) of Gaussian features, whose
        mean over the channels vanishes at infinite width and whose variance is the kernel's diagonal."""
        if len(shape) - 1 not in layer.normalized_axes(len(shape)):  # the compiled network checked the axes
            raise self.refuse(label, layer, "normalises over positions only, not over the channels: the channels "
                              "become infinitely many, but each channel's mean and variance over the finitely many "
                              "positions stay random, so the kernel has no infinite-width limit; include the "
                              "channels (axis -1)")
        if law == "input":
            raise self.refuse(label, layer, "reads the network's input, whose finitely many features have a mean "
                              "that does not vanish: the infinite-width rule (the covariance rescaled by the "
                              "variances) holds for Gaussian features only; normalise the points themselves instead, "
                              "or put the LayerNorm after a Dense or Conv layer")
        if law != "gaussian":
            raise self.refuse(label, layer, "reads features that are not Gaussian pre-activations (the output of an "
                              "activation, say): their mean over the channels (relu's is E[max(z, 0)] > 0) does not "
                              "vanish at infinite width, so the kernel is not the covariance rescaled by the "
                              "variances; put the LayerNorm after a Dense or Conv layer (or an average pooling or "
                              "residual sum of them)")
        return self.add(kind=_core.AnalyticNodeKind.layer_norm, input=node, eps=layer.eps)

    def recurrent(self, layer: Recurrent, shape, node: int, label: str):
        # The compiled network has checked that the points are (steps, features) sequences.
        if node != -1 or label != "0":
            raise self.refuse(label, layer, "is not the network's first layer: the recurrent recursion reads the "
                              "input sequences themselves (their per-step products x_t . x'_t)")
        if layer.return_sequences:
            raise self.refuse(label, layer, "has return_sequences=True: the analytic recursion gives the kernels of "
                              "the last state h_T only (return_sequences=False), not of every step's state")
        steps, features = shape
        self.steps = steps
        act = cast(Activation, layer.activation)  # Recurrent made a name an Activation
        # h_T is phi of a Gaussian pre-activation, not Gaussian itself (law "other").
        return (layer.width,), self.add(kind=_core.AnalyticNodeKind.recurrent, input=node, fan_in=features,
                                        steps=steps, width=layer.width, w_std=layer.W_std, u_std=layer.U_std,
                                        b_std=layer.b_std, leak=layer.leak, **act.engine_settings,
                                        unit_second_moment=act.unit_second_moment), "other"


def _fresh(layers) -> bool:
    """Whether the output of `layers` is a fresh Gaussian: that of a Dense or Conv layer, then only pooling or
    flattening (or a sum or concatenation of fresh branches); its zero-mean weights are independent of any
    other branch."""
    fresh = False
    for i, layer in enumerate(layers):
        if isinstance(layer, (Dense, Conv)):
            fresh = True
        elif isinstance(layer, Parallel):
            merge = layers[i + 1]
            fresh = not isinstance(merge, FanInProd) and all(branch and _fresh(branch) for branch in layer.branches)
        elif isinstance(layer, (FanInSum, FanInProd, FanInConcat)):
            continue  # decided with its Parallel
        elif not isinstance(layer, (AvgPool, SumPool, GlobalAvgPool, GlobalSumPool, Flatten)):
            fresh = False
    return fresh


def _check_sequence_lengths(x1, x2, network: Network) -> None:
    """ValueError if `network` starts with a Recurrent layer and x1, x2 hold sequences of different lengths."""
    if x2 is None or not isinstance(network.layers[0], Recurrent):
        return
    shape1, shape2 = np.shape(x1), np.shape(x2)
    if len(shape1) == 3 and len(shape2) == 3 and shape1[1] != shape2[1]:
        raise ValueError(f"x2 has sequences of {shape2[1]} steps, x1 of {shape1[1]}: the analytic recurrent kernel "
                         "needs equal lengths")


def _recursion(network: Network, input_shape) -> _NetworkRecursion:
    compiled = network.compile(input_shape)  # shape errors first, with the builder's messages
    recursion = _NetworkRecursion()
    recursion.sequence(network.layers, compiled.features_shape, -1, "input", "")
    return recursion


def check_analytic_network(network: Network, input_shape) -> None:
    """ValueError naming the first layer of `network` (on points of `input_shape`) without an exact recursion."""
    _recursion(network, input_shape)


def network_analytic_nodes(network: Network, input_shape) -> Tuple[List["_core.AnalyticNode"], List[int]]:
    """The dense engine's nodes of `network` (without convolutions or pooling) on points of
    `input_shape` and each top-level layer's node.

    ValueError names the first layer without an exact recursion."""
    recursion = _recursion(network, input_shape)
    if recursion.spatial:
        raise ValueError("the network has convolutions or pooling: the convolutional engine computes its kernels")
    return recursion.nodes, list(network.compile(input_shape).layer_nodes)


def analytic_kernels(x1, x2, network: Network, *, kernels: Sequence[str], layers, n_threads: int,
                     quadrature_order: int, closed_form: bool) -> Dict[str, List[np.ndarray]]:
    """The requested kernels of `layers` ("output", "all": ``network.kernel_layers()``, or a list of
    top-level layer indices, ascending), as lists keyed by kernel name."""
    _check_sequence_lengths(x1, x2, network)
    compiled, a1, a2 = prepare_network_points(x1, x2, network, "float64")
    recursion = _recursion(network, compiled.input_shape)
    if layers == "output":
        layers = [len(network.layers) - 1]
    elif layers == "all":
        layers = network.kernel_layers()
    wanted = [compiled.layer_nodes[l] for l in layers]
    n2 = a1.shape[0] if a2 is None else a2.shape[0]
    n_out = len(wanted) * len(kernels)
    output = 8 * a1.shape[0] * n2 * n_out
    what = f"the output ({n_out} x {a1.shape[0]} x {n2} float64)"
    nngp, ntk = "nngp" in kernels, "ntk" in kernels
    if ntk and network.parameterization == "standard":
        for i, layer in enumerate(network.layers):
            inner = layer.block if isinstance(layer, Residual) else (layer,)
            if any(isinstance(a, SelfAttention) for a in inner):
                raise ValueError(f"nnpk.analytic cannot compute this network's NTK: layer {i} ({layer.describe()}) "
                                 "has self-attention, whose infinite-width NTK is defined (as in neural-tangents) "
                                 "in the 'ntk' parameterization only; its NNGP is the same in both, and "
                                 "nnpk.monte_carlo estimates the 'standard' NTK")
    if not recursion.spatial:
        # A recurrent layer's per-point step variances.
        variances = 8 * recursion.steps * (a1.shape[0] + (0 if a2 is None else a2.shape[0]))
        check_memory(output + variances, what if not recursion.steps else f"{what} and the per-step variances "
                     f"({variances / 2**20:.1f} MiB)")
        return dict(zip(_KERNELS, _core.analytic_network_kernels(
            a1, a2, recursion.nodes, getattr(_core.Parameterization, network.parameterization), nngp, ntk, wanted,
            closed_form, quadrature_order, n_threads, _TILE)))
    # Per thread: the recursion's states for kLanes pairs; per point: the variances.
    scratch = n_threads * _core.analytic_conv_workspace_bytes(compiled.spec, wanted, ntk)
    positions = sum(math.prod(shape[:-1]) for shape in compiled.shapes) + math.prod(compiled.input_shape[:-1])
    variances = 8 * positions * (a1.shape[0] + (0 if a2 is None else a2.shape[0]))
    check_memory(output + scratch + variances,
                 f"{what}, the per-point variances ({variances / 2**20:.1f} MiB) and the convolutional recursion's "
                 f"buffers ({n_threads} threads x {scratch // n_threads / 2**20:.1f} MiB)")
    return dict(zip(_KERNELS, _core.analytic_conv_kernels(
        a1, a2, compiled.spec, recursion.units, nngp, ntk, wanted, closed_form, quadrature_order, n_threads,
        _TILE)))


def analytic(x1, x2=None, *, arch, get: Union[str, Sequence[str]] = "nngp", layers: str = "output",
             n_threads=None, quadrature_order: int = DEFAULT_QUADRATURE_ORDER,
             closed_form: bool = True) -> Union[Kernels, Dict[str, Kernels]]:
    """The infinite-width NNGP and/or NTK of ``arch`` between the rows of x1 and x2.

    The exact layer recursion of the infinite-width kernels, in float64: ``Sigma^0 = x . x' / d``;
    each layer's affine step (per-layer ``W_std``, ``b_std``, either parameterization; under
    "standard" the NTK uses the finite widths ``n_{l-1}`` as neural-tangents does), then the
    activation's dual map. It is the limit of ``nnpk.monte_carlo`` as the hidden widths and the
    number of networks grow.

    The dual maps are closed forms for relu, leaky_relu, abs (``a min(z,0) + b max(z,0)``),
    erf, identity, relu_normalized, sin, cos, gaussian, exp, rbf, sign, monomial,
    rectified_monomial and polynomial (docs: "Dual maps"), and for ``normalize=True`` versions
    of them (through the first moments: ``E[phi_n(u) phi_n(v)] = (E[phi(u) phi(v)] - mu E[phi(u)]
    - mu E[phi(v)] + mu^2) / s^2`` for ``phi_n = (phi - mu) / s``). ``sign`` has no tangent
    kernel (its derivative is a Dirac delta): ``get="ntk"`` refuses it, naming the layer.
    Every other activation (tanh, sigmoid, gelu, softplus and their normalised versions)
    is integrated over the bivariate normal by Gauss-Legendre panels split where each
    argument crosses 0 (see ``quadrature_order``).

    Correlations are clamped to [-1, 1]; a zero input gives ``theta = pi/2`` rather than NaN;
    the diagonal of a normalised activation's kernel stays exactly 1 on inputs with
    ``x . x / d = 1`` (W_std=1, no bias) at any depth. The work is tiled over the output on
    ``n_threads`` threads (one triangle when x2 is None) and every entry is computed by the
    same operations whatever the thread count, so the result is bitwise reproducible.

    Parameters
    ----------
    x1 : (n1, d) array, or (n1, ...) points of the shape the network takes
    x2 : (n2, ...) array, optional
        Defaults to x1 (then only one triangle is computed and mirrored). For a network starting
        with a Recurrent layer, (n, steps, features) sequences, x2's of x1's length.
    arch : nnpk.Network (an nnpk.MLP is one)
        Only the depth, activation, stds and parameterization matter, and the hidden widths only for the "standard"
        NTK. A Network may hold Dense, Conv and ConvTranspose layers (1-D or 2-D, any stride, "same" or "valid"),
        AvgPool, SumPool, GlobalAvgPool, GlobalSumPool, Aggregate (a fixed pattern, or each point's own graph:
        graph points, ``nnpk.graph_points``), Flatten, elementwise activations of Gaussian
        pre-activations (a Dense or Conv output, an average or sum pooling, a graph aggregation or a residual sum of
        them), LayerNorm layers over the channels (and any positions) of such Gaussian features (the kernels divided
        by ``sqrt((eps + q) (eps + q'))``, q and q' the two points' variances averaged over the normalised
        positions; docs: "Layer normalisation"), residual blocks ending with a Dense or Conv layer (NNGP ``K_x +
        scale^2 K_f``, NTK ``Theta_x + scale^2 Theta_f``, ``f`` the block's recursion from ``(K_x, Theta_x)``; a
        block may also end with SelfAttention), SelfAttention with ``linear_scaling=True`` or the identity mechanism
        (docs: "Self-attention at infinite width"; its NTK in the "ntk" parameterization), Parallel branches merged
        by FanInSum (kernels add), FanInProd (NNGPs multiply, NTK ``sum_i Theta_i prod_{j != i} K_j``), both with
        every branch but one ending with a Dense or Conv layer (then pooling or flattening only), or FanInConcat
        (channels: the branches' kernels averaged with their channel counts as weights; positions, for branches as
        independent as a sum's: their covariances as diagonal blocks; docs: "Parallel branches"), and a Recurrent
        layer as the first layer, returning its last state (any leak; docs: "Recurrent networks": T dual maps per
        pair of sequences of T steps at leak 1, T^2 below); anything else (MaxPool, an activation of non-Gaussian
        features, a residual block ending otherwise, a Recurrent layer after others or with return_sequences=True, a
        LayerNorm of other features or not over the channels) raises ValueError naming the layer. The kernels are
        those of every ``init`` scheme (all have zero-mean, unit-variance weights; the limit is the same). With
        ``layers="all"`` the list holds the kernels of each layer of ``arch.kernel_layers()`` (an MLP's hidden
        layers, then the output; every top-level layer of another Network, a spatial layer's features averaged over
        positions).

        For points with positions the recursion carries, per pair of points, the covariances
        between their positions (docs: "Convolutional networks"). Without pooling, a Flatten
        readout needs only the same-position covariances (P numbers per pair, for P
        positions); a pooling layer needs the P x P matrix of every pair for the layers below
        it, computed a few pairs at a time per thread, P^2 times the work. The per-thread
        buffers are checked against the available memory first (MemoryError says how much
        is needed).
    get : "nngp", "ntk" or a tuple of both
        With a tuple a dict keyed by kernel name is returned; both come from one recursion.
    layers : "output" or "all"
        "all" returns a list of every hidden layer's kernel, then the output kernel, from one
        recursion. Hidden layer l's NNGP is the conjugate kernel ``h^l . h^l' / n_l`` of its
        post-activation features (what ``monte_carlo(layers="all")`` estimates); its NTK is
        the tangent kernel of ``h^l`` with respect to the parameters of layers 1..l, per unit
        (``Theta * Sigma_dot`` after its nonlinearity). The output kernels are after the
        readout's affine step.
    n_threads : int, optional
        None: all physical cores; -1 all, -2 all but one; 0 is an error.
    quadrature_order : int
        Gauss-Legendre nodes per panel (each integral has 2 to 4 panels over +-9 standard
        deviations). Relative to ``sqrt(K(x,x) K(x',x'))``, the default 40 is accurate to 4e-9
        on the smooth activations for pre-activation variances up to 9 and any correlation
        (erf and tanh are the hardest); at variance 25 the error grows to 2e-6, and 48 brings
        it back to 3e-8. Plain Gauss-Hermite is not used: it converges only algebraically
        across relu's kink and slowly where phi' is peaked (tanh at variance 9: 5e-3 at order
        96). A quadrature entry costs 4 to 8 times ``quadrature_order**2`` evaluations of
        phi and phi' per layer, so these activations are far slower than the closed forms.
    closed_form : bool
        False integrates every activation by quadrature, closed forms included (for checking
        the quadrature against them).

    Returns
    -------
    numpy.ndarray, list or dict
        The (n1, n2) float64 kernel, a list of them for ``layers="all"``, or a dict of
        either keyed "nngp"/"ntk" when ``get`` is a tuple.
    """
    check_arch(arch, "nnpk.analytic")
    kernels = _check_get(get)
    if layers not in ("output", "all"):
        raise ValueError(f"layers must be 'output' or 'all', got {layers!r}")
    quadrature_order = check_int(quadrature_order, "quadrature_order", minimum=1, maximum=4096)
    if not isinstance(closed_form, (bool, np.bool_)):
        raise TypeError(f"closed_form must be a bool, got {closed_form!r}")
    if "ntk" in kernels:
        check_differentiable(check_arch(arch), "nnpk.analytic(get='ntk')")
    threads = resolve_n_threads(n_threads)
    out = analytic_kernels(x1, x2, check_arch(arch), kernels=kernels, layers=layers, n_threads=threads,
                           quadrature_order=quadrature_order, closed_form=bool(closed_form))
    result = {name: (out[name] if layers == "all" else out[name][0]) for name in kernels}
    return result[get] if isinstance(get, str) else result
