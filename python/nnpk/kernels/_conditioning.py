"""How depth changes the conditioning of a network's kernel matrices (NNGP and NTK)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .._threads import resolve_n_threads
from .._validate import as_points, check_int, compute_dtype
from ..architectures import MLP, Activation, Dense, GlobalAvgPool, Network, check_arch
from ..architectures._params import check_points
from ._analytic import DEFAULT_QUADRATURE_ORDER, analytic_kernels
from ._monte_carlo import monte_carlo

__all__ = ["DepthTruncation", "conditioning", "depth_kernels", "depth_truncation", "unit_diagonal"]

_METHODS = ("analytic", "monte_carlo")
_KERNELS = ("nngp", "ntk")
_STATISTICS = ("min_eigenvalue", "condition_number", "mean_abs_offdiag")


def _check_depths(depths, n_blocks: int, what: str) -> List[int]:
    if isinstance(depths, (str, bytes)) or not isinstance(depths, (Sequence, np.ndarray)):
        raise TypeError(f"depths must be a sequence of positive integers, got {depths!r}")
    out = [check_int(d, "depths entries", minimum=1) for d in depths]
    if not out:
        raise ValueError("depths is empty")
    if len(set(out)) != len(out):
        raise ValueError(f"depths has repeated entries: {list(out)}")
    if max(out) > n_blocks:
        raise ValueError(f"depths go up to {max(out)} but arch has {n_blocks} {what}")
    return out


def check_get(get) -> Tuple[str, ...]:
    """The kernel names of `get` ("nngp", "ntk" or a tuple of them)."""
    names = (get,) if isinstance(get, str) else get
    if not isinstance(names, (tuple, list)) or not names or len(set(names)) != len(names) or any(
        not isinstance(n, str) or n not in _KERNELS for n in names
    ):
        raise ValueError(f"get must be 'nngp', 'ntk' or a tuple of both, got {get!r}")
    return tuple(names)


@dataclass(frozen=True)
class DepthTruncation:
    """What "depth L" means for a network: its first L blocks, then a readout.

    ``body`` holds the layers of the blocks, ``block_ends[L - 1]`` the index in ``body`` of the
    activation closing block L, ``readout`` the layers put after block L. ``fixed_readout`` says
    whether the readout is the fixed ``Dense(out, W_std=1, b_std=None)`` of an MLP (so that the
    depth-L NNGP is hidden layer L's conjugate kernel) rather than the network's own layers.
    """

    body: tuple
    block_ends: Tuple[int, ...]
    readout: tuple
    parameterization: str
    init: str
    fixed_readout: bool

    def network(self, depth: int) -> Network:
        """The network of the first `depth` blocks and the readout."""
        return Network(self.body[: self.block_ends[depth - 1] + 1] + self.readout,
                       parameterization=self.parameterization, init=self.init)


def depth_truncation(arch) -> DepthTruncation:
    """The blocks and readout of `arch` (TypeError if it is not a network; ValueError if it has no block).

    An MLP's blocks are its hidden layers (Dense, activation) and its readout is
    ``Dense(out, W_std=1, b_std=None)``: the depth-L NNGP is then hidden layer L's conjugate
    kernel and the depth-L NTK that of the first L hidden layers plus that readout, whatever the
    MLP's own readout. Another Network's blocks end at each of its top-level ``Activation``
    layers (a block is everything after the previous one: Conv, Dense, pooling, a residual block,
    then the activation), and its readout is every layer after the last activation (such as
    ``GlobalAvgPool(), Dense(C)`` or ``Flatten(), Dense(C)``), kept as it is.
    """
    check_arch(arch, "nnpk.conditioning")
    if not isinstance(arch, Network):
        raise TypeError(f"arch must be an nnpk.MLP or nnpk.Network, got {type(arch).__name__}")
    if isinstance(arch, MLP):
        body = tuple(arch.layers[:-1])
        readout: tuple = (Dense(arch.out, W_std=1.0, b_std=None),)
        fixed = True
    else:
        activations = [i for i, layer in enumerate(arch.layers) if isinstance(layer, Activation)]
        if not activations:
            raise ValueError("arch has no top-level Activation layer: its depth is counted in blocks ending with one")
        last = activations[-1]
        body, readout, fixed = tuple(arch.layers[: last + 1]), tuple(arch.layers[last + 1:]), False
        if not readout:
            raise ValueError("arch ends with an activation: it needs a readout after its last block (such as "
                             "GlobalAvgPool() or Flatten(), then Dense)")
    ends = tuple(i for i, layer in enumerate(body) if isinstance(layer, Activation))
    if not ends:
        raise ValueError("arch has no hidden layer: depth 1 needs at least one")
    return DepthTruncation(body, ends, readout, arch.parameterization, arch.init, fixed)


def _readout_map(truncation: DepthTruncation, deepest: int, shapes) -> Optional[Tuple[Dense, Tuple]]:
    """The readout's Dense layer, if the readout's kernels follow from the layer kernels that
    ``nnpk.analytic(layers=...)`` gives for the blocks' activations (one recursion for every depth):
    a Dense readout on flat features, or GlobalAvgPool then Dense (the layer kernel of spatial
    features is their mean over pairs of positions). None otherwise (one call per depth)."""
    readout, ends = truncation.readout, truncation.block_ends[:deepest]
    flat = all(len(shapes[i]) == 1 for i in ends)
    if len(readout) == 1 and isinstance(readout[0], Dense) and flat:
        return readout[0], tuple(shapes[i][0] for i in ends)
    if len(readout) == 2 and isinstance(readout[0], GlobalAvgPool) and isinstance(readout[1], Dense) and not flat:
        return readout[1], tuple(shapes[i][-1] for i in ends)
    return None


def _apply_readout(dense: Dense, fan_in: int, parameterization: str, nngp, ntk):
    """The kernels after a Dense readout (docs: "Infinite-width kernels", the affine step)."""
    w2, bias = dense.W_std**2, dense.b_std
    sigma = w2 * nngp + (0.0 if bias is None else bias**2)
    if ntk is None:
        return sigma, None
    if parameterization == "ntk":
        return sigma, sigma + w2 * ntk
    return sigma, fan_in * nngp + w2 * ntk + (0.0 if bias is None else 1.0)


def _analytic_by_depth(points, truncation: DepthTruncation, depths: List[int], names, n_threads: int,
                       quadrature_order: int) -> Dict[str, Dict[int, np.ndarray]]:
    deepest = truncation.network(max(depths))
    shapes = deepest.compile(points.shape[1:]).shapes
    ordered = sorted(depths)
    readout = _readout_map(truncation, max(depths), shapes)
    out: Dict[str, Dict[int, np.ndarray]] = {name: {} for name in names}
    if readout is None:
        for depth in ordered:
            kernels = analytic_kernels(points, None, truncation.network(depth), kernels=names, layers="output",
                                       n_threads=n_threads, quadrature_order=quadrature_order, closed_form=True)
            for name in names:
                out[name][depth] = kernels[name][0]
        return out
    dense, fan_ins = readout
    # The NTK needs the layer NNGP too (the readout's weights' share).
    wanted = ("nngp",) if names == ("nngp",) else ("nngp", "ntk")
    layers = analytic_kernels(points, None, deepest, kernels=wanted,
                              layers=[truncation.block_ends[d - 1] for d in ordered], n_threads=n_threads,
                              quadrature_order=quadrature_order, closed_form=True)
    for i, depth in enumerate(ordered):
        nngp = layers["nngp"][i]
        if truncation.fixed_readout and names == ("nngp",):
            out["nngp"][depth] = nngp  # the conjugate kernel itself (W_std=1, no bias)
            continue
        sigma, theta = _apply_readout(dense, fan_ins[depth - 1], truncation.parameterization, nngp,
                                      layers["ntk"][i] if "ntk" in wanted else None)
        for name, kernel in (("nngp", sigma), ("ntk", theta)):
            if name in names:
                out[name][depth] = kernel
    return out


def _monte_carlo_by_depth(points, arch, truncation: DepthTruncation, depths: List[int], names, n_networks: int,
                          seed: int, dtype, n_threads) -> Dict[str, Dict[int, np.ndarray]]:
    out: Dict[str, Dict[int, np.ndarray]] = {name: {} for name in names}
    per_depth = names
    if isinstance(arch, MLP) and "nngp" in names:
        # Every hidden layer's conjugate kernel from one set of forward passes.
        deepest = max(depths)
        sub = arch.replace(hidden=arch.hidden[:deepest], W_std=arch.w_stds[: deepest + 1],
                           b_std=arch.b_stds[: deepest + 1])
        layers = monte_carlo(points, arch=sub, n_networks=n_networks, seed=seed, layers="all", dtype=dtype,
                             n_threads=n_threads)
        out["nngp"] = {d: layers[d - 1] for d in depths}
        per_depth = tuple(name for name in names if name != "nngp")
    if per_depth:
        # monte_carlo has no layers="all" for the NTK: one truncated network per depth. Network m
        # of the seed has the same weights in the blocks every depth shares.
        for depth in sorted(depths):
            kernels = monte_carlo(points, arch=truncation.network(depth), n_networks=n_networks, seed=seed,
                                  get=per_depth, dtype=dtype, n_threads=n_threads)
            for name in per_depth:
                out[name][depth] = kernels[name]
    return out


def depth_kernels(x, *, arch, depths: Sequence[int], get=("nngp", "ntk"), method: str = "analytic",
                  n_networks: Optional[int] = None, seed: int = 0, dtype="float64", n_threads=None,
                  quadrature_order: int = DEFAULT_QUADRATURE_ORDER, min_points: int = 1,
                  ) -> Tuple[List[int], Dict[str, Dict[int, np.ndarray]]]:
    """(depths, {name: {depth: kernel of x}}): the depth-L kernels of ``nnpk.conditioning``, every
    argument checked before any kernel is computed."""
    if method not in _METHODS:
        raise ValueError(f"method must be 'analytic' or 'monte_carlo', got {method!r}")
    names = check_get(get)
    if not isinstance(arch, Network):
        raise TypeError(f"arch must be an nnpk.MLP or nnpk.Network (its depths are numbers of blocks), got "
                        f"{type(arch).__name__}")
    truncation = depth_truncation(arch)
    dt = np.float64 if method == "analytic" else compute_dtype(dtype)
    points = as_points(x, "x", dt) if isinstance(arch, MLP) else check_points(x, "x", arch, dt)
    if points.shape[0] < min_points:
        raise ValueError(f"x needs at least {min_points} points to have off-diagonal entries, got {points.shape[0]}")
    what = "hidden layers" if isinstance(arch, MLP) else "blocks (top-level activations)"
    depths = _check_depths(depths, len(truncation.block_ends), what)
    try:
        truncation.network(max(depths)).compile(points.shape[1:])
    except ValueError as error:
        raise ValueError(f"x has points of shape {points.shape[1:]}, which arch does not take: {error}") from None
    if method == "analytic":
        if n_networks is not None:
            raise ValueError("n_networks is for method='monte_carlo'; the analytic kernel needs none")
        quadrature_order = check_int(quadrature_order, "quadrature_order", minimum=1, maximum=4096)
        by_depth = _analytic_by_depth(points, truncation, depths, names, resolve_n_threads(n_threads),
                                      quadrature_order)
    else:
        if n_networks is None:
            raise ValueError("method='monte_carlo' needs n_networks")
        resolve_n_threads(n_threads)
        n_networks = check_int(n_networks, "n_networks", minimum=1)
        by_depth = _monte_carlo_by_depth(points, arch, truncation, depths, names, n_networks, seed, dtype,
                                         n_threads)
    return depths, by_depth


def unit_diagonal(K: np.ndarray) -> np.ndarray:
    """``D^-1/2 K D^-1/2`` (D = diag K) with an exact unit diagonal; ValueError if a diagonal entry is not > 0."""
    diag = np.diag(K)
    bad = np.flatnonzero(~(diag > 0))
    if bad.size:
        raise ValueError(f"the kernel's diagonal is {diag[bad[0]]} at point {bad[0]}: it cannot be normalised "
                         "(a zero input in a network without biases?)")
    scale = 1 / np.sqrt(diag)
    C = K * scale[:, None] * scale[None, :]
    np.fill_diagonal(C, 1.0)
    return C


def spectrum_statistics(C: np.ndarray) -> Tuple[float, float, float]:
    """(smallest eigenvalue, condition number, mean |off-diagonal|) of a unit-diagonal matrix C."""
    eig = np.linalg.eigvalsh(C)
    n = C.shape[0]
    off = (np.abs(C).sum() - n) / (n * (n - 1))
    return eig[0], (eig[-1] / eig[0] if eig[0] > 0 else np.inf), off


def statistics_table(depths: List[int], kernels: Dict[int, np.ndarray]) -> Dict[str, np.ndarray]:
    stats = np.array([spectrum_statistics(unit_diagonal(kernels[d])) for d in depths],
                     dtype=np.float64).reshape(len(depths), 3)
    return {"depth": np.array(depths, dtype=np.int64), **{key: stats[:, i] for i, key in enumerate(_STATISTICS)}}


def conditioning(x, *, arch, depths: Sequence[int], get: Union[str, Sequence[str]] = "nngp",
                 method: str = "analytic", n_networks: Optional[int] = None, seed: int = 0, dtype="float64",
                 n_threads=None, quadrature_order: int = DEFAULT_QUADRATURE_ORDER):
    """The conditioning of the NNGP and NTK kernel matrices of x at several depths.

    The kernel matrix at depth L is scaled to a unit diagonal, ``C = D^-1/2 K D^-1/2``, so
    that depths and activations of different scale compare.

    **Depth L** is the network made of the first L blocks of ``arch`` followed by a readout
    (docs: "Kernels at depth L"):

    - an ``nnpk.MLP``'s blocks are its hidden layers, and its readout is
      ``Dense(out, W_std=1, b_std=None)`` (the MLP's own readout is not used). The depth-L
      NNGP is then the conjugate kernel ``h^L . h^L' / n_L`` of hidden layer L, and the depth-L
      NTK the tangent kernel of all L + 1 layers: ``Sigma^L + Theta^L`` under "ntk"
      (``n_L Sigma^L + Theta^L`` under "standard"), ``Theta^L`` being hidden layer L's NTK
      (``nnpk.analytic(layers="all")``).
    - another ``nnpk.Network``'s blocks end at each of its top-level ``Activation`` layers
      (a block is everything since the previous one: e.g. ``Conv``, then the activation) and
      its readout is the layers after its last activation (e.g. ``GlobalAvgPool(), Dense(C)``
      or ``Flatten(), Dense(C)``), kept as they are. The depth-L kernels are the output
      kernels of ``Network(blocks 1..L + readout)``, what ``nnpk.analytic`` or
      ``nnpk.monte_carlo`` give for that truncated network.

    With a normalised activation (``relu_normalized`` or ``normalize=True``, W_std=1, no
    bias) the off-diagonal correlations of distinct inputs go to 0 with depth and C to the
    identity, for the NNGP and for the NTK; with an uncentred one (relu) the NNGP's go to 1
    and the NTK's settle slowly near a constant (about 1/4 for relu): C stays ill-conditioned.

    One recursion serves all depths (``method="analytic"``) for an MLP, a Network of Dense
    blocks with a Dense readout, and a Network whose readout is ``GlobalAvgPool(), Dense``;
    other readouts (Flatten) take one recursion per depth. With ``method="monte_carlo"`` an
    MLP's NNGP comes from one set of forward passes (``monte_carlo(layers="all")``); the NTK,
    and a Network's kernels, from one truncated network per depth (network m of the seed has
    the same weights in the blocks the depths share).

    Parameters
    ----------
    x : (n, d) array, n >= 2, or (n, ...) points of the shape a Network takes
    arch : nnpk.MLP or nnpk.Network
        Must have at least ``max(depths)`` blocks; later blocks are not used.
    depths : sequence of int
        Distinct depths >= 1, in any order (results follow it).
    get : "nngp", "ntk" or a tuple of both
        With a tuple a dict keyed by kernel name is returned; one recursion gives both.
    method : "analytic" or "monte_carlo"
        "analytic" uses the infinite-width kernels (``nnpk.analytic``); "monte_carlo" the
        estimates of ``nnpk.monte_carlo`` over ``n_networks`` networks of arch's finite
        widths (an MLP's NNGP holds every hidden layer's kernel up to ``max(depths)`` at
        once: ``8 n^2 (max(depths) + 1)`` bytes).
    n_networks : int
        Networks for "monte_carlo" (required there, not accepted for "analytic").
    seed : int
        Seed for "monte_carlo".
    dtype : "float32" or "float64"
        Forward-pass precision for "monte_carlo" (the analytic kernel is float64).
    n_threads : int, optional
        None: all physical cores; -1 all, -2 all but one; 0 is an error.
    quadrature_order : int
        As in ``nnpk.analytic`` (only used there).

    Returns
    -------
    dict of numpy arrays, one entry per depth (a dict of them per kernel for a tuple ``get``):
        "depth" (int), "min_eigenvalue" (smallest eigenvalue of C), "condition_number"
        (largest over smallest eigenvalue; inf if the smallest is <= 0) and
        "mean_abs_offdiag" (mean of ``|C_ij|`` over i != j).
    """
    depths, by_depth = depth_kernels(x, arch=arch, depths=depths, get=get, method=method, n_networks=n_networks,
                                     seed=seed, dtype=dtype, n_threads=n_threads,
                                     quadrature_order=quadrature_order, min_points=2)
    tables = {name: statistics_table(depths, kernels) for name, kernels in by_depth.items()}
    return tables[get] if isinstance(get, str) else {name: tables[name] for name in check_get(get)}
