"""
nnpk's C++ engine (private: use the nnpk package)
"""

from __future__ import annotations

import collections.abc
import typing

import numpy
import numpy.typing

__all__: list[str] = [
    "ActivationKind",
    "AnalyticNode",
    "AnalyticNodeKind",
    "Init",
    "NodeKind",
    "Parameterization",
    "ROW_QUANTUM",
    "SeqNode",
    "SequentialSpec",
    "SequentialTrainer",
    "activation_value",
    "analytic_conv_kernels",
    "analytic_conv_workspace_bytes",
    "analytic_network_kernels",
    "compiler",
    "eigen_version",
    "product_kernel",
    "gaussian_stream",
    "has_openmp",
    "isa_level",
    "philox4x32_10",
    "sequential_conditional_sums",
    "sequential_draw",
    "sequential_empirical_sums",
    "sequential_linearized_outputs",
    "sequential_outputs",
    "sequential_state_outputs",
    "sequential_sums",
    "sequential_tangent_sums",
    "simd_instruction_sets",
]

class ActivationKind:
    """
    Members:

      relu

      leaky_relu

      abs

      erf

      tanh

      sigmoid

      gelu

      softplus

      sin

      identity

      relu_normalized

      cos

      gaussian

      exp

      rbf

      sign

      monomial

      rectified_monomial

      polynomial

      elementwise
    """

    __members__: typing.ClassVar[dict[str, ActivationKind]]
    abs: typing.ClassVar[ActivationKind]
    cos: typing.ClassVar[ActivationKind]
    elementwise: typing.ClassVar[ActivationKind]
    erf: typing.ClassVar[ActivationKind]
    exp: typing.ClassVar[ActivationKind]
    gaussian: typing.ClassVar[ActivationKind]
    gelu: typing.ClassVar[ActivationKind]
    identity: typing.ClassVar[ActivationKind]
    leaky_relu: typing.ClassVar[ActivationKind]
    monomial: typing.ClassVar[ActivationKind]
    polynomial: typing.ClassVar[ActivationKind]
    rbf: typing.ClassVar[ActivationKind]
    rectified_monomial: typing.ClassVar[ActivationKind]
    relu: typing.ClassVar[ActivationKind]
    relu_normalized: typing.ClassVar[ActivationKind]
    sigmoid: typing.ClassVar[ActivationKind]
    sign: typing.ClassVar[ActivationKind]
    sin: typing.ClassVar[ActivationKind]
    softplus: typing.ClassVar[ActivationKind]
    tanh: typing.ClassVar[ActivationKind]
    @typing.overload
    def __eq__(self, other: ActivationKind) -> bool: ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool: ...
    def __getstate__(self) -> int: ...
    def __hash__(self) -> int: ...
    def __index__(self) -> int: ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None: ...
    def __int__(self) -> int: ...
    @typing.overload
    def __ne__(self, other: ActivationKind) -> bool: ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool: ...
    def __repr__(self) -> str: ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None: ...
    def __str__(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class Parameterization:
    """
    Members:

      ntk

      standard
    """

    __members__: typing.ClassVar[dict[str, Parameterization]]
    ntk: typing.ClassVar[Parameterization]
    standard: typing.ClassVar[Parameterization]
    @typing.overload
    def __eq__(self, other: Parameterization) -> bool: ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool: ...
    def __getstate__(self) -> int: ...
    def __hash__(self) -> int: ...
    def __index__(self) -> int: ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None: ...
    def __int__(self) -> int: ...
    @typing.overload
    def __ne__(self, other: Parameterization) -> bool: ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool: ...
    def __repr__(self) -> str: ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None: ...
    def __str__(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class NodeKind:
    """
    Members:

      dense

      conv

      avg_pool

      max_pool

      global_avg_pool

      flatten

      activation

      residual

      batch_norm

      recurrent

      attention
      layer_norm

      fan_in_prod

      fan_in_concat
    """

    __members__: typing.ClassVar[dict[str, NodeKind]]
    activation: typing.ClassVar[NodeKind]
    attention: typing.ClassVar[NodeKind]
    aggregate: typing.ClassVar[NodeKind]
    avg_pool: typing.ClassVar[NodeKind]
    batch_norm: typing.ClassVar[NodeKind]
    recurrent: typing.ClassVar[NodeKind]
    conv: typing.ClassVar[NodeKind]
    dense: typing.ClassVar[NodeKind]
    fan_in_concat: typing.ClassVar[NodeKind]
    fan_in_prod: typing.ClassVar[NodeKind]
    flatten: typing.ClassVar[NodeKind]
    global_avg_pool: typing.ClassVar[NodeKind]
    layer_norm: typing.ClassVar[NodeKind]
    max_pool: typing.ClassVar[NodeKind]
    residual: typing.ClassVar[NodeKind]
    @typing.overload
    def __eq__(self, other: NodeKind) -> bool: ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool: ...
    def __getstate__(self) -> int: ...
    def __hash__(self) -> int: ...
    def __index__(self) -> int: ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None: ...
    def __int__(self) -> int: ...
    @typing.overload
    def __ne__(self, other: NodeKind) -> bool: ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool: ...
    def __repr__(self) -> str: ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None: ...
    def __str__(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class Init:
    """
    Members:

      gaussian

      uniform

      truncated_normal

      orthogonal
    """

    __members__: typing.ClassVar[dict[str, Init]]
    gaussian: typing.ClassVar[Init]
    orthogonal: typing.ClassVar[Init]
    truncated_normal: typing.ClassVar[Init]
    uniform: typing.ClassVar[Init]
    @typing.overload
    def __eq__(self, other: Init) -> bool: ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool: ...
    def __getstate__(self) -> int: ...
    def __hash__(self) -> int: ...
    def __index__(self) -> int: ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None: ...
    def __int__(self) -> int: ...
    @typing.overload
    def __ne__(self, other: Init) -> bool: ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool: ...
    def __repr__(self) -> str: ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None: ...
    def __str__(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class SeqNode:
    """
    One node of a sequential network as the engine sees it (built by nnpk.Network)
    """
    def __init__(
        self,
        kind: NodeKind,
        input: typing.SupportsInt | typing.SupportsIndex,
        skip: typing.SupportsInt | typing.SupportsIndex = -1,
        width: typing.SupportsInt | typing.SupportsIndex = 0,
        window: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex] = (1, 1),
        stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex] = (1, 1),
        same: bool = False,
        w_std: typing.SupportsFloat | typing.SupportsIndex = 1.0,
        b_std: typing.SupportsFloat | typing.SupportsIndex | None = None,
        activation: ActivationKind = ...,
        slope: typing.SupportsFloat | typing.SupportsIndex = 0.01,
        shift: typing.SupportsFloat | typing.SupportsIndex = 0.0,
        activation_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0,
        scale: typing.SupportsFloat | typing.SupportsIndex = 1.0,
        eps: typing.SupportsFloat | typing.SupportsIndex = 1e-05,
        momentum: typing.SupportsFloat | typing.SupportsIndex = 0.1,
        u_std: typing.SupportsFloat | typing.SupportsIndex = 1.0,
        leak: typing.SupportsFloat | typing.SupportsIndex = 1.0,
        return_sequences: bool = False,
        init: typing.SupportsInt | typing.SupportsIndex = -1,
        degree: typing.SupportsInt | typing.SupportsIndex = 1,
        gamma: typing.SupportsFloat | typing.SupportsIndex = 1.0,
        coefficients: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex] = [],
        pool_sum: bool = False,
        norm_axes: tuple[bool, bool, bool] = (False, False, True),
        transposed: bool = False,
        pattern: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex] = [],
        concat_axis: typing.SupportsInt | typing.SupportsIndex = 2,
        per_point: bool = False,
        mean: bool = False,
    ) -> None: ...

class SequentialSpec:
    """
    A sequential network as the engine sees it (built by nnpk.Network)
    """
    def __init__(
        self,
        input_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex],
        nodes: collections.abc.Sequence[SeqNode],
        parameterization: Parameterization,
        init: Init,
        graph: bool = False,
    ) -> None: ...
    @property
    def param_shapes(self) -> list[tuple[int, int]]: ...

class AnalyticNodeKind:
    """
    Members:

      dense

      activation

      residual

      identity

      recurrent

      layer_norm

      fan_in_prod

      fan_in_concat
    """

    __members__: typing.ClassVar[dict[str, AnalyticNodeKind]]
    activation: typing.ClassVar[AnalyticNodeKind]
    dense: typing.ClassVar[AnalyticNodeKind]
    fan_in_concat: typing.ClassVar[AnalyticNodeKind]
    fan_in_prod: typing.ClassVar[AnalyticNodeKind]
    identity: typing.ClassVar[AnalyticNodeKind]
    layer_norm: typing.ClassVar[AnalyticNodeKind]
    recurrent: typing.ClassVar[AnalyticNodeKind]
    residual: typing.ClassVar[AnalyticNodeKind]
    @typing.overload
    def __eq__(self, other: AnalyticNodeKind) -> bool: ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool: ...
    def __getstate__(self) -> int: ...
    def __hash__(self) -> int: ...
    def __index__(self) -> int: ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None: ...
    def __int__(self) -> int: ...
    @typing.overload
    def __ne__(self, other: AnalyticNodeKind) -> bool: ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool: ...
    def __repr__(self) -> str: ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None: ...
    def __str__(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...

class AnalyticNode:
    """
    One node of a network's analytic recursion (built by nnpk.analytic)
    """
    def __init__(
        self,
        *,
        kind: AnalyticNodeKind,
        input: typing.SupportsInt | typing.SupportsIndex,
        skip: typing.SupportsInt | typing.SupportsIndex = -1,
        fan_in: typing.SupportsInt | typing.SupportsIndex = 1,
        w_std: typing.SupportsFloat | typing.SupportsIndex = 1.0,
        b_std: typing.SupportsFloat | typing.SupportsIndex | None = None,
        activation: ActivationKind = ...,
        slope: typing.SupportsFloat | typing.SupportsIndex = 0.0,
        shift: typing.SupportsFloat | typing.SupportsIndex = 0.0,
        activation_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0,
        unit_second_moment: bool = False,
        scale: typing.SupportsFloat | typing.SupportsIndex = 1.0,
        steps: typing.SupportsInt | typing.SupportsIndex = 1,
        width: typing.SupportsInt | typing.SupportsIndex = 1,
        u_std: typing.SupportsFloat | typing.SupportsIndex = 1.0,
        leak: typing.SupportsFloat | typing.SupportsIndex = 1.0,
        degree: typing.SupportsInt | typing.SupportsIndex = 1,
        gamma: typing.SupportsFloat | typing.SupportsIndex = 1.0,
        coefficients: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex] = [],
        eps: typing.SupportsFloat | typing.SupportsIndex = 1e-12,
    ) -> None: ...

class SequentialTrainer:
    """
    Loss and gradients w.r.t. the trainable stored parameters of one sequential network
    """
    def __init__(
        self,
        spec: SequentialSpec,
        train_weights: collections.abc.Sequence[bool],
        train_biases: collections.abc.Sequence[bool],
        n_threads: typing.SupportsInt | typing.SupportsIndex,
        dtype: str,
    ) -> None: ...
    def gradients(
        self,
        x: numpy.ndarray,
        params: list,
        loss: str,
        n_outputs: typing.SupportsInt | typing.SupportsIndex,
        targets: typing.Any,
        buffers: typing.Any = None,
        training: bool = True,
        accuracy: bool = False,
    ) -> tuple:
        """
        (mean loss, [d loss / d W (fan_in, fan_out) or None per parametrised layer], [d loss / d b or None per
        parametrised layer]) over the rows of x, in float64; targets are int64 labels (cross_entropy) or
        (rows, n_outputs) float64 values (squared); params are the current stored (W, b) of every
        parametrised layer in network order, in the trainer's dtype, a batch normalisation's (gamma, beta)
        (whose gradients take its place in the weight and bias lists). With training=True batch
        normalisations normalise by the statistics of the rows of x, the gradients go through those
        statistics, and the running statistics in buffers (one (running_mean, running_var) float64 pair per
        batch normalisation, or None) are updated in place as torch does; with training=False buffers are
        needed and normalise. With accuracy=True a fourth entry: the fraction of rows whose largest logit is
        their label (cross-entropy; by sign for the logistic loss; 0 for the squared loss).
        """
    def step(
        self,
        x: numpy.ndarray,
        params: list,
        loss: str,
        n_outputs: typing.SupportsInt | typing.SupportsIndex,
        targets: typing.Any,
        values: list,
        firsts: list,
        seconds: list,
        optimizer: str,
        lr: typing.SupportsFloat | typing.SupportsIndex,
        momentum: typing.SupportsFloat | typing.SupportsIndex,
        weight_decay: typing.SupportsFloat | typing.SupportsIndex,
        t: typing.SupportsInt | typing.SupportsIndex,
        buffers: typing.Any = None,
        clip_norm: typing.SupportsFloat | typing.SupportsIndex = 0.0,
        origins: typing.Any = None,
    ) -> tuple:
        """
        One optimizer step in place on the rows of x; returns (mean loss, fraction of rows whose largest
        logit is their label, 0 for the squared loss). values: the float64 trainable arrays (per
        parametrised layer its W (fan_in, fan_out) or gamma, then its b or beta, where trained); firsts:
        SGD's momentum buffers or Adam's m (needed with momentum or Adam), seconds: Adam's v, one per
        value. Where params (in the trainer's dtype) are not the values themselves, the trained ones are
        refreshed in place from them. t: Adam's step count, from 1. Batch normalisations normalise by the
        rows' statistics and update the running ones in buffers in place. clip_norm > 0 scales the
        gradient (all trained arrays, before weight decay) to that norm where it is larger. A linearisation's
        steps (see linearize) need origins: theta_0 of each value, float64; its direction is refreshed
        to value - origin
        """
    def linearize(self, direction: typing.Any, offset: bool = True) -> None:
        """
        Train the linearisation f(x; theta_0) (if offset) + J(x; theta_0) (theta - theta_0) around the calls'
        params (theta_0): direction holds theta - theta_0, per parametrised layer a (dW or None, db or None)
        pair of writable arrays of the trainer's dtype (None where zero and untrained). None: the network
        """

def activation_value(
    kind: ActivationKind,
    slope: typing.SupportsFloat | typing.SupportsIndex,
    shift: typing.SupportsFloat | typing.SupportsIndex,
    scale: typing.SupportsFloat | typing.SupportsIndex,
    z: typing.Annotated[numpy.typing.ArrayLike, numpy.float64],
    derivative: bool,
    degree: typing.SupportsInt | typing.SupportsIndex = 1,
    gamma: typing.SupportsFloat | typing.SupportsIndex = 1.0,
    coefficients: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex] = [],
) -> numpy.typing.NDArray[numpy.float64]:
    """
    The engine's activation (or its derivative) elementwise, in float64
    """

def analytic_conv_kernels(
    x1: numpy.ndarray,
    x2: typing.Any,
    spec: SequentialSpec,
    unit_second_moment: collections.abc.Sequence[bool],
    nngp: bool,
    ntk: bool,
    layers: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex],
    closed_form: bool,
    quadrature_order: typing.SupportsInt | typing.SupportsIndex,
    n_threads: typing.SupportsInt | typing.SupportsIndex,
    tile: typing.SupportsInt | typing.SupportsIndex,
) -> tuple:
    """
    Infinite-width kernels (float64) of a network with convolutions or pooling: a list of NNGP and a list of
    NTK matrices, one per requested spec node (`layers`: ascending node indices)
    """

def analytic_conv_workspace_bytes(
    spec: SequentialSpec, layers: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], ntk: bool
) -> int:
    """
    Bytes of scratch analytic_conv_kernels holds per thread
    """

def analytic_network_kernels(
    x1: numpy.ndarray,
    x2: typing.Any,
    nodes: collections.abc.Sequence[AnalyticNode],
    parameterization: Parameterization,
    nngp: bool,
    ntk: bool,
    layers: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex],
    closed_form: bool,
    quadrature_order: typing.SupportsInt | typing.SupportsIndex,
    n_threads: typing.SupportsInt | typing.SupportsIndex,
    tile: typing.SupportsInt | typing.SupportsIndex,
) -> tuple:
    """
    Infinite-width kernels (float64) of a network of dense, activation, residual and recurrent nodes: a list
    of NNGP and a list of NTK matrices, one per requested node (`layers`: ascending node indices)
    """

def compiler() -> str:
    """
    The C++ compiler that built the extension
    """

def eigen_version() -> str: ...
def product_kernel(dtype: str = "float32") -> str: ...
def _packed_product_float32(a: numpy.typing.NDArray[numpy.float32], b: numpy.typing.NDArray[numpy.float32],
                            alpha: float, row_block: int, col_block: int,
                            threads: int, transposed: bool = False) -> numpy.typing.NDArray[numpy.float32]: ...
def _packed_product_float64(a: numpy.typing.NDArray[numpy.float64], b: numpy.typing.NDArray[numpy.float64],
                            alpha: float, row_block: int, col_block: int,
                            threads: int, transposed: bool = False) -> numpy.typing.NDArray[numpy.float64]: ...
def gaussian_stream(
    seed: typing.SupportsInt | typing.SupportsIndex,
    network: typing.SupportsInt | typing.SupportsIndex,
    layer: typing.SupportsInt | typing.SupportsIndex,
    stream: typing.SupportsInt | typing.SupportsIndex,
    begin: typing.SupportsInt | typing.SupportsIndex,
    end: typing.SupportsInt | typing.SupportsIndex,
    out: typing.Any = None,
) -> numpy.typing.NDArray[numpy.float32]:
    """
    Elements [begin, end) of the Gaussian stream (seed, network, layer, stream) as float32, on one thread
    (into `out`, a float32 array of end - begin values, if given)
    """

def has_openmp() -> bool:
    """
    Whether the engine was built with OpenMP
    """

def isa_level() -> str:
    """
    The instruction-set level this extension was compiled for ("native": the building machine's)
    """

def philox4x32_10(
    counter: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(4)"],
    key: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"],
) -> typing.Annotated[list[int], "FixedSize(4)"]:
    """
    One Philox4x32-10 block (for checking against the Random123 known answers)
    """

def sequential_conditional_sums(
    x1: numpy.ndarray,
    x2: typing.Any,
    spec: SequentialSpec,
    pairs: collections.abc.Sequence[
        tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex]
    ],
    unit_second_moment: collections.abc.Sequence[bool],
    seed: typing.SupportsInt | typing.SupportsIndex,
    start: typing.SupportsInt | typing.SupportsIndex,
    stop: typing.SupportsInt | typing.SupportsIndex,
    n_threads: typing.SupportsInt | typing.SupportsIndex,
    tile_rows: typing.SupportsInt | typing.SupportsIndex,
    gram_tile: typing.SupportsInt | typing.SupportsIndex,
    progress: typing.Any,
    initial: typing.Any,
    in_place: bool = False,
    networks_per_pass: typing.SupportsInt | typing.SupportsIndex = 1,
    controls: collections.abc.Sequence[bool | None] = [],
) -> list:
    """
    Sums over networks [start, stop) of the conditional kernel of each (dense node, activation node) pair:
    the activation's output kernel integrated over the dense layer's weights given its input (float64),
    continued from `initial` (copied, or with in_place accumulated into those very arrays); each pass over
    the output adds up to networks_per_pass networks (their features held at once); the sums do not
    depend on it. controls: per pair None, or the unit_second_moment flag of the first hidden layer's
    activation, which the pair's dense node reads: its sums then take the control variate
    """

def attention_node(
    input: typing.SupportsInt | typing.SupportsIndex,
    width: typing.SupportsInt | typing.SupportsIndex,
    heads: typing.SupportsInt | typing.SupportsIndex,
    key_width: typing.SupportsInt | typing.SupportsIndex,
    value_width: typing.SupportsInt | typing.SupportsIndex,
    tied: bool,
    mechanism: typing.SupportsInt | typing.SupportsIndex,
    k_std: typing.SupportsFloat | typing.SupportsIndex,
    q_std: typing.SupportsFloat | typing.SupportsIndex,
    v_std: typing.SupportsFloat | typing.SupportsIndex,
    w_std: typing.SupportsFloat | typing.SupportsIndex,
    b_std: typing.SupportsFloat | typing.SupportsIndex | None = None,
    init: typing.SupportsInt | typing.SupportsIndex = -1,
    pos_emb: typing.SupportsInt | typing.SupportsIndex = 0,
    pos_channels: typing.SupportsInt | typing.SupportsIndex = 0,
    val_pos_emb: bool = False,
    pe_std: typing.SupportsFloat | typing.SupportsIndex = 1.0,
    pos_basis: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex] = ...,
) -> SeqNode:
    """
    A self-attention node (nnpk.SelfAttention): parameters K, Q (untied only), V, O with O's bias; mechanism
    0 softmax, 1 identity, 2 abs, 3 relu
    """

def sequential_draw(
    spec: SequentialSpec,
    seed: typing.SupportsInt | typing.SupportsIndex,
    network: typing.SupportsInt | typing.SupportsIndex,
    param: typing.SupportsInt | typing.SupportsIndex,
) -> tuple[numpy.typing.NDArray[numpy.float64], typing.Any]:
    """
    Unit-variance (eps as a (fan_in, fan_out) matrix, beta) of one parametrised layer: the engine's draws
    """

def sequential_empirical_sums(
    x1: numpy.ndarray,
    x2: typing.Any,
    spec: SequentialSpec,
    params: list,
    weights: collections.abc.Sequence[bool],
    biases: collections.abc.Sequence[bool],
    nngp: bool,
    per_layer: bool,
    per_logit: bool,
    n_threads: typing.SupportsInt | typing.SupportsIndex,
    tile_rows: typing.SupportsInt | typing.SupportsIndex,
    gram_tile: typing.SupportsInt | typing.SupportsIndex,
) -> list:
    """
    Tangent kernels (and the nngp) of one sequential network with the given stored parameters
    ((fan_in, fan_out) weight matrices)
    """

def sequential_outputs(
    x: numpy.ndarray,
    spec: SequentialSpec,
    params: list,
    n_threads: typing.SupportsInt | typing.SupportsIndex,
    buffers: typing.Any = None,
    training: bool = False,
) -> numpy.typing.NDArray[numpy.float64]:
    """
    The logits (rows, C) in float64 of a network with the given stored parameters: one pair per parametrised
    layer in network order, (W, b) with (fan_in, fan_out) W, or a batch normalisation's (gamma, beta).
    Batch normalisations use buffers, one (running_mean, running_var) float64 pair each, out of training
    (training=False); with training=True they normalise by the statistics of the rows of x, and the
    running statistics in buffers (if given) are updated in place as torch does: running = (1 - momentum)
    running + momentum batch, with the batch's unbiased variance.
    """

def sequential_linearized_outputs(
    x: numpy.ndarray,
    spec: SequentialSpec,
    params: list,
    direction: list,
    offset: bool,
    n_threads: typing.SupportsInt | typing.SupportsIndex,
    buffers: typing.Any = None,
) -> numpy.typing.NDArray[numpy.float64]:
    """
    The linearisation's logits (rows, C) in float64: f(x; theta_0) (if offset) + J(x; theta_0) direction, theta_0
    the stored params (batch normalisations by the running statistics in buffers), direction per parametrised
    layer a (dW or None, db or None) pair of writable arrays of x's dtype
    """

def sequential_state_outputs(
    x: numpy.ndarray,
    spec: SequentialSpec,
    params: list,
    n_threads: typing.SupportsInt | typing.SupportsIndex,
    initial_states: list,
) -> tuple:
    """
    (logits (rows, C) float64, [h_T (rows, width) per recurrent layer]) of a network with the given stored
    parameters, each recurrent layer starting from initial_states[i] (rows, width), or from zero where None
    """

def sequential_sums(
    x1: numpy.ndarray,
    x2: typing.Any,
    spec: SequentialSpec,
    seed: typing.SupportsInt | typing.SupportsIndex,
    start: typing.SupportsInt | typing.SupportsIndex,
    stop: typing.SupportsInt | typing.SupportsIndex,
    nodes: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex],
    n_threads: typing.SupportsInt | typing.SupportsIndex,
    tile_rows: typing.SupportsInt | typing.SupportsIndex,
    gram_tile: typing.SupportsInt | typing.SupportsIndex,
    panel_cols: typing.SupportsInt | typing.SupportsIndex,
    progress: typing.Any,
    initial: typing.Any,
    in_place: bool = False,
) -> list:
    """
    Sums over networks [start, stop) of the un-normalised Gram of each node's features in `nodes` (its
    output, averaged over positions when spatial; empty: the logits), in float64, continued from `initial`
    """

def sequential_tangent_sums(
    x1: numpy.ndarray,
    x2: typing.Any,
    spec: SequentialSpec,
    seed: typing.SupportsInt | typing.SupportsIndex,
    start: typing.SupportsInt | typing.SupportsIndex,
    stop: typing.SupportsInt | typing.SupportsIndex,
    weights: collections.abc.Sequence[bool],
    biases: collections.abc.Sequence[bool],
    nngp: bool,
    per_layer: bool,
    per_logit: bool,
    n_threads: typing.SupportsInt | typing.SupportsIndex,
    tile_rows: typing.SupportsInt | typing.SupportsIndex,
    gram_tile: typing.SupportsInt | typing.SupportsIndex,
    panel_cols: typing.SupportsInt | typing.SupportsIndex,
    progress: typing.Any,
    initial: typing.Any,
    in_place: bool = False,
) -> list:
    """
    Sums over networks [start, stop) of a sequential network's tangent kernels (and the nngp): [nngp],
    then one total or one sum per included (parametrised layer, part); traced sums are over logits
    (divide by C for the kernel)
    """

def simd_instruction_sets() -> str: ...

ROW_QUANTUM: int = 96
