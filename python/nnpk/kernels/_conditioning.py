"""How depth changes the conditioning of a network's kernel matrix."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from .._threads import resolve_n_threads
from .._validate import as_points, check_int, compute_dtype
from ..architectures import MLP
from ._analytic import DEFAULT_QUADRATURE_ORDER, analytic_kernels
from ._monte_carlo import monte_carlo

__all__ = ["conditioning"]

_METHODS = ("analytic", "monte_carlo")


def _check_depths(depths, n_hidden: int) -> List[int]:
    if isinstance(depths, (str, bytes)) or not isinstance(depths, (Sequence, np.ndarray)):
        raise TypeError(f"depths must be a sequence of positive integers, got {depths!r}")
    out = [check_int(d, "depths entries", minimum=1) for d in depths]
    if not out:
        raise ValueError("depths is empty")
    if len(set(out)) != len(out):
        raise ValueError(f"depths has repeated entries: {list(out)}")
    if max(out) > n_hidden:
        raise ValueError(f"depths go up to {max(out)} but arch has {n_hidden} hidden layers")
    return out


def _spectrum(K: np.ndarray):
    """(smallest eigenvalue, condition number, mean |off-diagonal|) of K scaled to a unit diagonal."""
    diag = np.diag(K)
    bad = np.flatnonzero(~(diag > 0))
    if bad.size:
        raise ValueError(f"the kernel's diagonal is {diag[bad[0]]} at point {bad[0]}: it cannot be normalised "
                         "(a zero input in a network without biases?)")
    scale = 1 / np.sqrt(diag)
    C = K * scale[:, None] * scale[None, :]
    np.fill_diagonal(C, 1.0)
    eig = np.linalg.eigvalsh(C)
    n = C.shape[0]
    off = (np.abs(C).sum() - n) / (n * (n - 1))
    return eig[0], (eig[-1] / eig[0] if eig[0] > 0 else np.inf), off


def conditioning(x, *, arch, depths: Sequence[int], method: str = "analytic", n_networks: Optional[int] = None,
                 seed: int = 0, dtype="float64", n_threads=None,
                 quadrature_order: int = DEFAULT_QUADRATURE_ORDER) -> Dict[str, np.ndarray]:
    """The conditioning of the NNGP kernel matrix of x at several depths.

    The kernel at depth L is the NNGP of the first L hidden layers of ``arch``: the conjugate
    kernel ``h^L . h^L' / n_L`` of hidden layer L's post-activation features (the NNGP of a
    readout with W_std=1 and no bias on top of them). It is scaled to a unit diagonal,
    ``C = D^-1/2 K D^-1/2``, so that depths and activations of different scale compare.
    One recursion (analytic) or one set of forward passes (Monte Carlo) serves all depths.

    With a normalised activation (``relu_normalized`` or ``normalize=True``, W_std=1, no
    bias) the off-diagonal correlations of distinct inputs go to 0 with depth and C to the
    identity; with an uncentred one (relu) they go to a non-zero constant and C becomes
    ill-conditioned.

    Parameters
    ----------
    x : (n, d) array, n >= 2
    arch : nnpk.MLP
        Must have at least ``max(depths)`` hidden layers; later layers are not used.
    depths : sequence of int
        Distinct depths >= 1, in any order (results follow it).
    method : "analytic" or "monte_carlo"
        "analytic" uses the infinite-width kernel (``nnpk.analytic``); "monte_carlo" the
        estimate ``nnpk.monte_carlo(layers="all")`` over ``n_networks`` networks of arch's
        finite widths (it holds every layer's kernel up to ``max(depths)`` at once:
        ``8 n^2 (max(depths) + 1)`` bytes).
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
    dict of numpy arrays, one entry per depth:
        "depth" (int), "min_eigenvalue" (smallest eigenvalue of C), "condition_number"
        (largest over smallest eigenvalue; inf if the smallest is <= 0) and
        "mean_abs_offdiag" (mean of ``|C_ij|`` over i != j).
    """
    if method not in _METHODS:
        raise ValueError(f"method must be 'analytic' or 'monte_carlo', got {method!r}")
    if not isinstance(arch, MLP):
        raise TypeError(f"arch must be an nnpk.MLP (its depths are numbers of hidden layers), got "
                        f"{type(arch).__name__}")
    a = as_points(x, "x", np.float64 if method == "analytic" else compute_dtype(dtype))
    if a.shape[0] < 2:
        raise ValueError(f"x needs at least 2 points to have off-diagonal entries, got {a.shape[0]}")
    depths = _check_depths(depths, len(arch.hidden))
    deepest = max(depths)
    # The first `deepest` hidden layers (and some readout, which is not used).
    sub = arch.replace(hidden=arch.hidden[:deepest], W_std=arch.w_stds[: deepest + 1],
                       b_std=arch.b_stds[: deepest + 1])
    if method == "analytic":
        if n_networks is not None:
            raise ValueError("n_networks is for method='monte_carlo'; the analytic kernel needs none")
        quadrature_order = check_int(quadrature_order, "quadrature_order", minimum=1, maximum=4096)
        ordered = sorted(depths)
        kernels = analytic_kernels(a, None, sub, layers=[sub.kernel_layers()[d - 1] for d in ordered],
                                   kernels=("nngp",), n_threads=resolve_n_threads(n_threads),
                                   quadrature_order=quadrature_order, closed_form=True)["nngp"]
        by_depth = dict(zip(ordered, kernels))
    else:
        if n_networks is None:
            raise ValueError("method='monte_carlo' needs n_networks")
        layers = monte_carlo(a, arch=sub, n_networks=n_networks, seed=seed, layers="all", dtype=dtype,
                             n_threads=n_threads)
        by_depth = {d: layers[d - 1] for d in depths}
    stats = np.array([_spectrum(by_depth[d]) for d in depths], dtype=np.float64).reshape(len(depths), 3)
    return {
        "depth": np.array(depths, dtype=np.int64),
        "min_eigenvalue": stats[:, 0],
        "condition_number": stats[:, 1],
        "mean_abs_offdiag": stats[:, 2],
    }
