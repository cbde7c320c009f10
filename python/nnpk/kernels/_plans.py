"""How each kernel of a network becomes sums over networks on the engine: the NNGP by its three
estimators and the tangent kernels, as plans of engine calls and the maps from sums to kernels."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .. import _core
from .._validate import check_memory
from ..architectures import CLOSED_FORM_DUALS, Activation, Compiled, Dense, Network, Recurrent
from ..architectures._activations import CONTROL_DUALS
from ._streaming import KernelMap, Plan
from ._tangent import check_tangent_memory, tangent_maps

__all__ = ["CONDITIONAL_SCHEME", "ESTIMATORS", "PREVIOUS_CONDITIONAL_SCHEME", "check_estimator",
           "check_tangent_network", "conditional_sums", "default_estimator", "network_feature_bytes", "nngp_plan",
           "node_sums", "readout_layer", "tangent_plan", "tangent_sums"]

ESTIMATORS = ("sampled", "readout", "conditional")
# What a conditional estimate sums per network, recorded in every store of it: a store summed by another scheme
# cannot be continued (its partial sums would mix two estimators).
CONDITIONAL_SCHEME = ("conditional_v2: the dual map given the layer below, with the control variate where that "
                      "layer is the first hidden layer (nnpk 0.4)")
PREVIOUS_CONDITIONAL_SCHEME = "conditional_v1 (nnpk 0.1 to 0.3: without the control variate)"
# Row tiles of one quantum: more tiles than threads keeps every core busy at small n (n = 512 on 2 threads:
# 0.73 s against 0.94 s with tiles of 192 rows), and it is no slower at large n.
_DEFAULT_TILE_ROWS = _core.ROW_QUANTUM
_DEFAULT_GRAM_TILE = 256
_DEFAULT_PANEL_COLS = 128
_DEFAULT_NTK_TILE = 4 * _core.ROW_QUANTUM
# The conditional estimator's output tiles: on a symmetric kernel's diagonal tiles the inner-product Gram is
# computed whole though only its upper triangle is used; tiles of two quanta waste a third less of it than
# tiles of four (n = 2048: 66 tiles of 192 rows against 21 of 384), and still keep both threads busy.
_DEFAULT_CONDITIONAL_TILE = 2 * _core.ROW_QUANTUM
# Networks the conditional estimator adds in one pass over the output: each entry of the sums is read and
# written once per pass instead of once per network, and a control variate's mean covariance (an input product
# and a dual map per entry) is computed once per pass, while the networks' features, held at once, stay within
# _CONDITIONAL_FEATURE_BYTES (n = 2048, width 512: 8 networks, 32 MiB).
_CONDITIONAL_NETWORKS_PER_PASS = 8
_CONDITIONAL_FEATURE_BYTES = 256 * 2**20


def _panel_cols(n1: int, n2: int, symmetric: bool) -> int:
    """Feature columns gathered before each pass over the (n1, n2) output: 128, or more where the output is
    so large that each pass is a memory sweep of note, the panels staying within 1/32 of the output's bytes
    (n = 8192: 256 columns, two passes over the 512 MiB output for 32 networks of 10 logits, not three)."""
    rows = n1 if symmetric else n1 + n2
    return max(_DEFAULT_PANEL_COLS, min(1024, n1 * n2 // (32 * rows)))


def _recurrent_tile_rows(compiled: Compiled, rows: int, n_threads: int, bytes_per_row: int) -> int:
    """Row tiles for a network with recurrent layers. Each step multiplies a tile's states by the recurrent
    weights, packed once per network, so a tile needs only be large enough to amortise its own per-step work:
    tiles of 2 to 4 quanta keep a step's states and products in the core's cache (at width 1024 they ran
    8-15% faster than tiles of 1 or 11 quanta). Of those, the size that splits the rows most evenly over the
    threads (which take the tiles in turn), with `bytes_per_row` within 256 MiB a tile."""
    if not any(p.recurrent_weights for p in compiled.params):
        return _DEFAULT_TILE_ROWS
    quantum, threads = _core.ROW_QUANTUM, max(1, n_threads)
    by_memory = max(1, (256 * 2**20) // max(1, bytes_per_row * quantum))

    def balance(quanta: int) -> float:
        tile, loads = quanta * quantum, [0] * threads
        for start in range(0, rows, tile):
            loads[loads.index(min(loads))] += min(tile, rows - start)
        return rows / (threads * max(loads))

    # Relative speed of a tile's rows by its size in quanta (measured, see above).
    speed = {1: 0.92, 2: 0.98, 3: 1.0, 4: 0.98}
    candidates = [q for q in speed if q <= by_memory] or [1]
    return quantum * max(candidates, key=lambda q: (balance(q) * speed[q], -q))


def _state_values(compiled: Compiled, blocks: Optional[int], logits: int = 0) -> int:
    """Values a tile keeps per row for its recurrent layers: `blocks` states (None: every step's) and, with
    `logits`, every step's error per logit."""
    total = 0
    for p in compiled.params:
        if p.recurrent_weights:
            steps = p.positions
            total += p.fan_out * ((steps + 1 if blocks is None else blocks) + steps * logits + steps)
    return total


def _padded(n: int) -> int:
    """Rows the engine holds for n points: a whole number of row quanta."""
    return -(-n // _core.ROW_QUANTUM) * _core.ROW_QUANTUM


def readout_layer(network: Network) -> Optional[Dense]:
    """The final layer when it is a Dense readout of flat features (the "readout" estimator integrates it; a
    Dense layer acting on every step of a sequence is not one)."""
    last = network.layers[-1]
    return last if isinstance(last, Dense) and not network.returns_sequences else None


def _conditional_layers(network: Network) -> List[int]:
    """The layers (indices into network.layers) whose kernels the conditional estimator integrates: each
    Activation read from a Dense layer just before it."""
    layers = network.layers
    return [i for i in range(1, len(layers))
            if isinstance(layers[i], Activation) and isinstance(layers[i - 1], Dense)]


def _control(network: Network, compiled: Compiled, layer: int) -> Optional[bool]:
    """For the conditional kernel of Activation `layer`: whether its Dense layer reads the first hidden layer
    (Dense on the flat input, then an activation) of Gaussian weights, both activations with closed-form dual
    maps, so that the mean of that Dense layer's pre-activation covariance is known and serves as a control
    variate. Returns the first activation's unit_second_moment flag if so, else None."""
    layers = network.layers
    if layer != 3 or network.init != "gaussian" or len(compiled.input_shape) != 1:
        return None
    first, act0, act1 = layers[0], layers[1], layers[3]
    if not (isinstance(first, Dense) and isinstance(act0, Activation) and isinstance(layers[2], Dense)):
        return None
    if act0.name not in CONTROL_DUALS or act1.name not in CONTROL_DUALS:
        return None
    return act0.unit_second_moment


def _conditional_failure(network: Network) -> Optional[str]:
    """Why the conditional estimator cannot integrate this network's last hidden layer, or None."""
    layers = network.layers
    if any(isinstance(layer, Recurrent) and layer.return_sequences for layer in layers):
        return ("estimator='conditional' integrates a Dense layer on flat features; this network's Dense layers "
                "after a Recurrent layer returning sequences act on every step: use estimator='sampled'")
    if len(layers) < 3 or readout_layer(network) is None or not isinstance(layers[-2], Activation) \
            or not isinstance(layers[-3], Dense):
        tail = " -> ".join(layer.describe() for layer in layers[-3:])
        return (f"estimator='conditional' integrates a network ending Dense -> activation -> Dense; this one ends "
                f"{tail}: use estimator='readout' or 'sampled'")
    return None


def default_estimator(network: Network) -> str:
    """The NNGP estimator monte_carlo uses when none is given, the best estimate per second: the conditional
    one where the network ends Dense -> activation with a closed-form dual map -> Dense, else the readout
    one where it ends with Dense, else the sampled one."""
    if _conditional_failure(network) is None and network.layers[-2].name in CLOSED_FORM_DUALS:
        return "conditional"
    return "readout" if readout_layer(network) is not None else "sampled"


def check_estimator(network: Network, estimator: str) -> None:
    """Refuses an unknown NNGP estimator, or one the network cannot take, naming the layer."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    if estimator == "conditional":
        why = _conditional_failure(network)
        if why:
            raise ValueError(why)
    if estimator == "readout" and readout_layer(network) is None:
        per_step = " acting on every step of a sequence" if network.returns_sequences else ""
        raise ValueError(f"estimator='readout' integrates a final Dense layer; this network ends with "
                         f"{network.layers[-1].describe()}{per_step}: use estimator='sampled'")


def node_sums(a1, a2, compiled: Compiled, nodes: Sequence[int], *, seed, start, stop, n_threads, progress=None,
              initial=None, tile_rows=_DEFAULT_TILE_ROWS, gram_tile=_DEFAULT_GRAM_TILE,
              panel_cols=None, in_place=False) -> List[np.ndarray]:
    """Float64 sums over networks [start, stop) of each node's un-normalised feature Gram (a
    spatial node's features averaged over positions), continued from `initial` (in place: in
    its arrays themselves)."""
    n1 = a1.shape[0]
    n2 = n1 if a2 is None else a2.shape[0]
    check_memory(8 * n1 * n2 * len(nodes), f"the output ({len(nodes)} x {n1} x {n2} float64)")
    if panel_cols is None:
        panel_cols = _panel_cols(n1, n2, a2 is None)
    return _core.sequential_sums(a1, a2, compiled.spec, seed, start, stop, list(nodes), n_threads, tile_rows,
                                 gram_tile, panel_cols, progress, initial, in_place)


def conditional_sums(a1, a2, compiled: Compiled, network: Network, layers: Sequence[int], *, seed, start, stop,
                     n_threads, progress=None, initial=None, tile_rows=_DEFAULT_TILE_ROWS,
                     gram_tile=_DEFAULT_CONDITIONAL_TILE, in_place=False, networks_per_pass=None,
                     control=True) -> List[np.ndarray]:
    """Float64 sums over networks [start, stop) of the conditional kernels of the Activation layers
    `layers` (each read from the Dense layer before it), as node_sums for the rest. A layer whose Dense
    layer reads the first hidden layer takes the control variate (unless control=False). Each pass over
    the output adds `networks_per_pass` networks (default: up to 8, their features within 256 MiB); the
    sums are bitwise the same whatever it is."""
    n1 = a1.shape[0]
    n2 = n1 if a2 is None else a2.shape[0]
    inputs = [math.prod(compiled.features_shape if l == 1 else compiled.shapes[l - 2]) for l in layers]
    features = sum(inputs) * (_padded(n1) + (0 if a2 is None else _padded(n2))) * a1.itemsize
    if networks_per_pass is None:
        networks_per_pass = max(1, min(_CONDITIONAL_NETWORKS_PER_PASS, stop - start,
                                       _CONDITIONAL_FEATURE_BYTES // max(1, features)))
    controls = [_control(network, compiled, l) if control else None for l in layers]
    # Each control variate keeps a copy of the points (rows padded).
    points = sum(c is not None for c in controls) * a1.itemsize * compiled.input_shape[0] * (
        _padded(n1) + (0 if a2 is None else _padded(n2)))
    check_memory(8 * n1 * n2 * len(layers) + features * networks_per_pass + points,
                 f"the output ({len(layers)} x {n1} x {n2} float64) and the features of {networks_per_pass} "
                 f"network(s)")
    pairs = [(compiled.layer_nodes[l - 1], compiled.layer_nodes[l]) for l in layers]
    unit = [network.layers[l].unit_second_moment for l in layers]
    return _core.sequential_conditional_sums(a1, a2, compiled.spec, pairs, unit, seed, start, stop, n_threads,
                                             tile_rows, gram_tile, progress, initial, in_place, networks_per_pass,
                                             controls)


def _joined(first, n_first: int, second):
    """A plan's run made of two engine runs whose sums follow one another."""
    def run(start, stop, initial, progress=None, in_place=False):
        head = None if initial is None else initial[:n_first]
        tail = None if initial is None else initial[n_first:]
        return first(start, stop, head, progress, in_place) + second(start, stop, tail, None, in_place)
    return run


def nngp_plan(a1, a2, network: Network, compiled: Compiled, *, seed, layers, estimator, n_threads) -> Plan:
    """The NNGP of the logits (and with layers="all" of each of ``network.kernel_layers()``: a spatial
    layer's features pooled over positions) by `estimator`: "sampled" averages the sampled features'
    kernels; "readout" integrates the final Dense layer exactly; "conditional" also integrates each
    Activation read from a Dense layer, given that layer's input, by the activation's dual map."""
    widths = [shape[-1] for shape in compiled.shapes]
    widths[-1] = compiled.out  # a sequence's logits: every step's outputs
    last = len(network.layers) - 1
    kernel_layers = list(network.kernel_layers()) if layers == "all" else [last]
    rows = a1.shape[0] + (0 if a2 is None else a2.shape[0])
    kw = dict(seed=seed, n_threads=n_threads,
              tile_rows=_recurrent_tile_rows(compiled, rows, n_threads, a1.itemsize * _state_values(compiled, 2)))
    integrated = _conditional_layers(network) if estimator == "conditional" else []
    sampled = [l for l in kernel_layers if l != last and l not in integrated]
    if estimator == "sampled":
        sampled.append(last)
    # Each returned kernel: (sampled?, layer, scale, offset) on the sums of that layer's features.
    wanted: List[Tuple[bool, int, float, float]] = [
        (l not in integrated, l, 1.0 if l in integrated else 1.0 / widths[l], 0.0)
        for l in kernel_layers if l != last or estimator == "sampled"]
    if estimator != "sampled":
        # E[f . f' / C | h] = W_std^2 h . h' / n_in + b_std^2 for the readout's input h, whatever the
        # weights' scheme (each has unit variance and no mean; an orthogonal one has E[W W^T] = C I).
        readout = readout_layer(network)
        assert readout is not None  # check_estimator: "readout" and "conditional" need a Dense readout
        w2, b2 = readout.W_std**2, (readout.b_std or 0.0) ** 2
        if last == 0:
            # The readout reads the input itself: the kernel is exact.
            n_in = compiled.params[-1].fan_in
            x1 = a1.astype(np.float64, copy=False)
            x2 = x1 if a2 is None else a2.astype(np.float64, copy=False)
            return Plan(lambda *args, **kwargs: [x1 @ x2.T], [KernelMap(0, w2 * (1.0 / n_in), b2)], exact=True)
        source = last - 1
        if source in integrated:
            wanted.append((False, source, w2, b2))
        else:
            if source not in sampled:
                sampled.append(source)
            wanted.append((True, source, w2 * (1.0 / widths[source]), b2))
    conditional = [l for l in integrated if any(not s and l == layer for s, layer, _, _ in wanted)]
    maps = [KernelMap(sampled.index(l) if s else len(sampled) + conditional.index(l), scale, offset)
            for s, l, scale, offset in wanted]
    nodes = [compiled.layer_nodes[l] for l in sampled]
    sample = lambda start, stop, initial, progress=None, in_place=False: node_sums(
        a1, a2, compiled, nodes, start=start, stop=stop, initial=initial, progress=progress, in_place=in_place, **kw)
    integrate = lambda start, stop, initial, progress=None, in_place=False: conditional_sums(
        a1, a2, compiled, network, conditional, start=start, stop=stop, initial=initial, progress=progress,
        in_place=in_place, **kw)
    if not conditional:
        return Plan(sample, maps)
    # A conditional kernel read from the input (Dense, activation, Dense) depends on x alone: exact.
    exact = not sampled and conditional == [1]
    return Plan(_joined(sample, len(sampled), integrate) if sampled else integrate, maps, exact=exact)


def network_feature_bytes(compiled: Compiled, n: int, weights, biases, itemsize: int) -> int:
    """Bytes of one network's stored layer inputs and output cotangents (one per logit) for n points."""
    total = 0
    for p, w, b in zip(compiled.params, weights, biases):
        if w:
            total += p.input_size + p.positions * compiled.out * p.fan_out
        if b:
            total += compiled.out * p.fan_out
    return _padded(n) * total * itemsize


def check_tangent_network(compiled: Compiled) -> None:
    if not compiled.params:
        raise ValueError("get='ntk' differentiates Dense and Conv layers' parameters; this network has none")


def tangent_sums(a1, a2, compiled: Compiled, *, seed, start, stop, nngp, weights, biases, per_layer,
                 per_logit, n_threads, progress=None, initial=None, tile_rows=_DEFAULT_TILE_ROWS,
                 gram_tile=_DEFAULT_NTK_TILE, panel_cols=_DEFAULT_PANEL_COLS,
                 in_place=False) -> List[np.ndarray]:
    """Float64 sums over networks [start, stop): [the NNGP's, if nngp], then the tangent kernels' (the
    total, or with per_layer each chosen layer's weight and bias shares)."""
    n1 = a1.shape[0]
    n2 = n1 if a2 is None else a2.shape[0]
    n_out = nngp + (sum(weights) + sum(biases) if per_layer else 1)
    features = network_feature_bytes(compiled, n1 + (0 if a2 is None else n2), weights, biases, a1.itemsize)
    check_tangent_memory(n1, n2, n_out, compiled.out, per_logit, features)
    return _core.sequential_tangent_sums(a1, a2, compiled.spec, seed, start, stop, weights, biases, nngp, per_layer,
                                         per_logit, n_threads, tile_rows, gram_tile, panel_cols, progress, initial,
                                         in_place)


def tangent_plan(a1, a2, compiled: Compiled, *, seed, with_nngp, weights, biases, per_layer, per_logit,
                 n_threads) -> Plan:
    """The NTK (and with_nngp the sampled NNGP from the same passes)."""
    n_out = sum(weights) + sum(biases) if per_layer else 1
    rows = a1.shape[0] + (0 if a2 is None else a2.shape[0])
    # Each tile keeps every state and, per logit, every step's error of each recurrent layer.
    tile_rows = _recurrent_tile_rows(compiled, rows, n_threads,
                                     a1.itemsize * _state_values(compiled, None, compiled.out))
    run = lambda start, stop, initial, progress=None, in_place=False: tangent_sums(
        a1, a2, compiled, seed=seed, start=start, stop=stop, nngp=with_nngp, weights=weights, biases=biases,
        per_layer=per_layer, per_logit=per_logit, n_threads=n_threads, initial=initial, progress=progress,
        in_place=in_place, tile_rows=tile_rows)
    maps = [KernelMap(0, 1.0 / compiled.out)] if with_nngp else []
    return Plan(run, maps + tangent_maps(int(with_nngp), n_out, compiled.out, per_logit))
