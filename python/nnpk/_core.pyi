"""
nnpk's C++ engine (private: use the nnpk package)
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
__all__: list[str] = ['ActivationKind', 'AnalyticNode', 'AnalyticNodeKind', 'BiasTrainer', 'Init', 'MLPSpec', 'NodeKind', 'Parameterization', 'ROW_QUANTUM', 'SeqNode', 'SequentialSpec', 'activation_value', 'analytic_kernels', 'analytic_network_kernels', 'conditional_sums', 'draw_layer', 'eigen_version', 'empirical_sums', 'has_openmp', 'monte_carlo_sums', 'network_outputs', 'philox4x64_10', 'sequential_draw', 'sequential_empirical_sums', 'sequential_outputs', 'sequential_sums', 'sequential_tangent_sums', 'simd_instruction_sets', 'tangent_sums']
class MLPSpec:
    """
    An MLP as the engine sees it (built by nnpk.MLP)
    """
    def __init__(self, widths: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], w_std: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], b_std: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex | None], activation: typing.SupportsInt | typing.SupportsIndex, slope: typing.SupportsFloat | typing.SupportsIndex, shift: typing.SupportsFloat | typing.SupportsIndex, scale: typing.SupportsFloat | typing.SupportsIndex, parameterization: str) -> None:
        ...
    @property
    def n_layers(self) -> int:
        ...
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
    """
    __members__: typing.ClassVar[dict[str, ActivationKind]]
    abs: typing.ClassVar[ActivationKind]
    erf: typing.ClassVar[ActivationKind]
    gelu: typing.ClassVar[ActivationKind]
    identity: typing.ClassVar[ActivationKind]
    leaky_relu: typing.ClassVar[ActivationKind]
    relu: typing.ClassVar[ActivationKind]
    relu_normalized: typing.ClassVar[ActivationKind]
    sigmoid: typing.ClassVar[ActivationKind]
    sin: typing.ClassVar[ActivationKind]
    softplus: typing.ClassVar[ActivationKind]
    tanh: typing.ClassVar[ActivationKind]
    @typing.overload
    def __eq__(self, other: ActivationKind) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: ActivationKind) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
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
    def __eq__(self, other: Parameterization) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: Parameterization) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class AnalyticNodeKind:
    """
    Members:
    
      dense
    
      activation
    
      residual
    
      identity
    """
    __members__: typing.ClassVar[dict[str, AnalyticNodeKind]]
    activation: typing.ClassVar[AnalyticNodeKind]
    dense: typing.ClassVar[AnalyticNodeKind]
    identity: typing.ClassVar[AnalyticNodeKind]
    residual: typing.ClassVar[AnalyticNodeKind]
    @typing.overload
    def __eq__(self, other: AnalyticNodeKind) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: AnalyticNodeKind) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class AnalyticNode:
    """
    One node of a network's analytic recursion (built by nnpk.analytic)
    """
    def __init__(self, *, kind: AnalyticNodeKind, input: typing.SupportsInt | typing.SupportsIndex, skip: typing.SupportsInt | typing.SupportsIndex = -1, fan_in: typing.SupportsInt | typing.SupportsIndex = 1, w_std: typing.SupportsFloat | typing.SupportsIndex = 1.0, b_std: typing.SupportsFloat | typing.SupportsIndex | None = None, activation: ActivationKind = ..., slope: typing.SupportsFloat | typing.SupportsIndex = 0.0, shift: typing.SupportsFloat | typing.SupportsIndex = 0.0, activation_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, unit_second_moment: bool = False, scale: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> None:
        ...
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
    """
    __members__: typing.ClassVar[dict[str, NodeKind]]
    activation: typing.ClassVar[NodeKind]
    avg_pool: typing.ClassVar[NodeKind]
    conv: typing.ClassVar[NodeKind]
    dense: typing.ClassVar[NodeKind]
    flatten: typing.ClassVar[NodeKind]
    global_avg_pool: typing.ClassVar[NodeKind]
    max_pool: typing.ClassVar[NodeKind]
    residual: typing.ClassVar[NodeKind]
    @typing.overload
    def __eq__(self, other: NodeKind) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: NodeKind) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
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
    def __eq__(self, other: Init) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: Init) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class SeqNode:
    """
    One node of a sequential network as the engine sees it (built by nnpk.Network)
    """
    def __init__(self, kind: NodeKind, input: typing.SupportsInt | typing.SupportsIndex, skip: typing.SupportsInt | typing.SupportsIndex = -1, width: typing.SupportsInt | typing.SupportsIndex = 0, window: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex] = (1, 1), stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex] = (1, 1), same: bool = False, w_std: typing.SupportsFloat | typing.SupportsIndex = 1.0, b_std: typing.SupportsFloat | typing.SupportsIndex | None = None, activation: ActivationKind = ..., slope: typing.SupportsFloat | typing.SupportsIndex = 0.01, shift: typing.SupportsFloat | typing.SupportsIndex = 0.0, activation_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, scale: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> None:
        ...
class SequentialSpec:
    """
    A sequential network as the engine sees it (built by nnpk.Network)
    """
    def __init__(self, input_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], nodes: collections.abc.Sequence[SeqNode], parameterization: Parameterization, init: Init) -> None:
        ...
    @property
    def param_shapes(self) -> list[tuple[int, int]]:
        ...
class BiasTrainer:
    """
    Loss and gradients w.r.t. the trainable stored parameters of one network's minibatches
    """
    def __init__(self, spec: MLPSpec, train_biases: collections.abc.Sequence[bool], train_readout: bool, n_threads: typing.SupportsInt | typing.SupportsIndex, dtype: str) -> None:
        ...
    def gradients(self, x: numpy.ndarray, params: list, loss: str, n_outputs: typing.SupportsInt | typing.SupportsIndex, targets: typing.Any) -> tuple:
        """
        (mean loss, [d loss / d b_l or None per layer], d loss / d W_readout or None) over the rows of x;
        targets are int64 labels (cross_entropy) or (rows, n_outputs) float64 values (squared); params are
        the current (W, b) of every layer, in the trainer's dtype
        """
def activation_value(kind: ActivationKind, slope: typing.SupportsFloat | typing.SupportsIndex, shift: typing.SupportsFloat | typing.SupportsIndex, scale: typing.SupportsFloat | typing.SupportsIndex, z: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], derivative: bool) -> numpy.typing.NDArray[numpy.float64]:
    """
    The engine's activation (or its derivative) elementwise, in float64
    """
def analytic_kernels(x1: numpy.ndarray, x2: typing.Any, spec: MLPSpec, parameterization: Parameterization, nngp: bool, ntk: bool, layers: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], closed_form: bool, quadrature_order: typing.SupportsInt | typing.SupportsIndex, unit_second_moment: bool, n_threads: typing.SupportsInt | typing.SupportsIndex, tile: typing.SupportsInt | typing.SupportsIndex) -> tuple:
    """
    Infinite-width kernels (float64): a list of NNGP and a list of NTK matrices, one per requested layer
    """
def analytic_network_kernels(x1: numpy.ndarray, x2: typing.Any, nodes: collections.abc.Sequence[AnalyticNode], parameterization: Parameterization, nngp: bool, ntk: bool, layers: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], closed_form: bool, quadrature_order: typing.SupportsInt | typing.SupportsIndex, n_threads: typing.SupportsInt | typing.SupportsIndex, tile: typing.SupportsInt | typing.SupportsIndex) -> tuple:
    """
    Infinite-width kernels of a network of dense, activation and residual nodes, as analytic_kernels
    """
def conditional_sums(x1: numpy.ndarray, x2: typing.Any, spec: MLPSpec, unit_second_moment: bool, seed: typing.SupportsInt | typing.SupportsIndex, start: typing.SupportsInt | typing.SupportsIndex, stop: typing.SupportsInt | typing.SupportsIndex, layers: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], n_threads: typing.SupportsInt | typing.SupportsIndex, tile_rows: typing.SupportsInt | typing.SupportsIndex, gram_tile: typing.SupportsInt | typing.SupportsIndex, progress: typing.Any, initial: typing.Any, in_place: bool = False) -> list:
    """
    Sums over networks [start, stop) of the conditional kernels of the hidden `layers`: each layer's
    conjugate kernel integrated over its own weights given the layer below (float64)
    """
def draw_layer(spec: MLPSpec, seed: typing.SupportsInt | typing.SupportsIndex, network: typing.SupportsInt | typing.SupportsIndex, layer: typing.SupportsInt | typing.SupportsIndex) -> tuple[numpy.typing.NDArray[numpy.float64], typing.Any]:
    """
    Standard-normal (eps, beta) of one layer: the engine's draws in float64
    """
def eigen_version() -> str:
    ...
def empirical_sums(x1: numpy.ndarray, x2: typing.Any, spec: MLPSpec, params: list, weights: collections.abc.Sequence[bool], biases: collections.abc.Sequence[bool], nngp: bool, per_layer: bool, per_logit: bool, n_threads: typing.SupportsInt | typing.SupportsIndex, tile_rows: typing.SupportsInt | typing.SupportsIndex, gram_tile: typing.SupportsInt | typing.SupportsIndex) -> list:
    """
    Tangent kernels (and the nngp) of one network with the given stored parameters
    """
def has_openmp() -> bool:
    """
    Whether the engine was built with OpenMP
    """
def monte_carlo_sums(x1: numpy.ndarray, x2: typing.Any, spec: MLPSpec, seed: typing.SupportsInt | typing.SupportsIndex, start: typing.SupportsInt | typing.SupportsIndex, stop: typing.SupportsInt | typing.SupportsIndex, layers: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], n_threads: typing.SupportsInt | typing.SupportsIndex, tile_rows: typing.SupportsInt | typing.SupportsIndex, gram_tile: typing.SupportsInt | typing.SupportsIndex, panel_cols: typing.SupportsInt | typing.SupportsIndex, progress: typing.Any, initial: typing.Any, in_place: bool = False) -> list:
    """
    Sums over networks [start, stop) of the un-normalised Gram h(x1) h(x2)^T of each layer in
    `layers` (0-based, the readout last; empty: the output only), in float64,
    continued from `initial` (partial sums of earlier networks: copied, or with in_place
    accumulated into those very arrays) when it is given
    """
def network_outputs(x: numpy.ndarray, spec: MLPSpec, params: list, n_threads: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float64]:
    """
    The logits (rows, C) in float64 of a network with the given stored parameters
    """
def philox4x64_10(counter: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(4)"], key: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"]) -> typing.Annotated[list[int], "FixedSize(4)"]:
    """
    One Philox4x64-10 block (for checking against numpy)
    """
def sequential_draw(spec: SequentialSpec, seed: typing.SupportsInt | typing.SupportsIndex, network: typing.SupportsInt | typing.SupportsIndex, param: typing.SupportsInt | typing.SupportsIndex) -> tuple[numpy.typing.NDArray[numpy.float64], typing.Any]:
    """
    Unit-variance (eps as a (fan_in, fan_out) matrix, beta) of one parametrised layer: the engine's draws
    """
def sequential_empirical_sums(x1: numpy.ndarray, x2: typing.Any, spec: SequentialSpec, params: list, weights: collections.abc.Sequence[bool], biases: collections.abc.Sequence[bool], nngp: bool, per_layer: bool, per_logit: bool, n_threads: typing.SupportsInt | typing.SupportsIndex, tile_rows: typing.SupportsInt | typing.SupportsIndex, gram_tile: typing.SupportsInt | typing.SupportsIndex) -> list:
    """
    Tangent kernels (and the nngp) of one sequential network with the given stored parameters
    ((fan_in, fan_out) weight matrices)
    """
def sequential_outputs(x: numpy.ndarray, spec: SequentialSpec, params: list, n_threads: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float64]:
    """
    The logits (rows, C) in float64 of a network with the given stored parameters ((fan_in, fan_out) weights)
    """
def sequential_sums(x1: numpy.ndarray, x2: typing.Any, spec: SequentialSpec, seed: typing.SupportsInt | typing.SupportsIndex, start: typing.SupportsInt | typing.SupportsIndex, stop: typing.SupportsInt | typing.SupportsIndex, nodes: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], n_threads: typing.SupportsInt | typing.SupportsIndex, tile_rows: typing.SupportsInt | typing.SupportsIndex, gram_tile: typing.SupportsInt | typing.SupportsIndex, panel_cols: typing.SupportsInt | typing.SupportsIndex, progress: typing.Any, initial: typing.Any, in_place: bool = False) -> list:
    """
    Sums over networks [start, stop) of the un-normalised Gram of each node's features in `nodes` (its
    output, averaged over positions when spatial; empty: the logits), in float64, continued from `initial`
    """
def sequential_tangent_sums(x1: numpy.ndarray, x2: typing.Any, spec: SequentialSpec, seed: typing.SupportsInt | typing.SupportsIndex, start: typing.SupportsInt | typing.SupportsIndex, stop: typing.SupportsInt | typing.SupportsIndex, weights: collections.abc.Sequence[bool], biases: collections.abc.Sequence[bool], nngp: bool, per_layer: bool, per_logit: bool, n_threads: typing.SupportsInt | typing.SupportsIndex, tile_rows: typing.SupportsInt | typing.SupportsIndex, gram_tile: typing.SupportsInt | typing.SupportsIndex, panel_cols: typing.SupportsInt | typing.SupportsIndex, progress: typing.Any, initial: typing.Any, in_place: bool = False) -> list:
    """
    Sums over networks [start, stop) of a sequential network's tangent kernels (and the nngp), as
    tangent_sums: [nngp], then one total or one sum per included (parametrised layer, part)
    """
def simd_instruction_sets() -> str:
    ...
def tangent_sums(x1: numpy.ndarray, x2: typing.Any, spec: MLPSpec, seed: typing.SupportsInt | typing.SupportsIndex, start: typing.SupportsInt | typing.SupportsIndex, stop: typing.SupportsInt | typing.SupportsIndex, weights: collections.abc.Sequence[bool], biases: collections.abc.Sequence[bool], nngp: bool, per_layer: bool, per_logit: bool, n_threads: typing.SupportsInt | typing.SupportsIndex, tile_rows: typing.SupportsInt | typing.SupportsIndex, gram_tile: typing.SupportsInt | typing.SupportsIndex, panel_cols: typing.SupportsInt | typing.SupportsIndex, progress: typing.Any, initial: typing.Any, in_place: bool = False) -> list:
    """
    Sums over networks [start, stop) of tangent kernels (and the nngp): [nngp], then one total or one
    sum per included (layer, part); traced sums are over logits (divide by C for the kernel)
    """
ROW_QUANTUM: int = 96
