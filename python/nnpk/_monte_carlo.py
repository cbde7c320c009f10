"""Monte Carlo kernels of random networks."""

from __future__ import annotations

from typing import List, Union

import numpy as np

from . import _core
from ._params import SEED_MAX, _check_arch
from ._threads import resolve_n_threads
from ._tangent import feature_bytes, parse_get, parse_wrt, shape_results
from ._validate import as_points, check_int, check_memory, compute_dtype

__all__ = ["monte_carlo"]

_DEFAULT_TILE_ROWS = 2 * _core.ROW_QUANTUM
_DEFAULT_GRAM_TILE = 256
_DEFAULT_PANEL_COLS = 128
_DEFAULT_NTK_TILE = 4 * _core.ROW_QUANTUM


class _Progress:
    """Networks finished, shown with tqdm."""

    def __init__(self, total: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="network", desc="nnpk")
        self.done = 0

    def __call__(self, done: int) -> None:
        if done > self.done:
            self.bar.update(done - self.done)
            self.done = done

    def close(self) -> None:
        self.bar.close()


def _prepare(x1, x2, arch, dtype):
    arch = _check_arch(arch)
    dt = compute_dtype(dtype)
    a1 = as_points(x1, "x1", dt)
    a2 = None if x2 is None else as_points(x2, "x2", dt, n_features=a1.shape[1], other="x1")
    return arch, a1, a2


def _kernel_sums(a1, a2, arch, *, seed, start, stop, all_layers, n_threads, progress=None, initial=None,
                 tile_rows=_DEFAULT_TILE_ROWS, gram_tile=_DEFAULT_GRAM_TILE, panel_cols=_DEFAULT_PANEL_COLS):
    """Float64 sums over networks [start, stop) of each kernel's un-normalised Gram.

    `initial` (the sums over networks [0, start)) continues a run: the result is
    bitwise the sums over [0, stop)."""
    n_kernels = arch.n_layers if all_layers else 1
    n2 = a1.shape[0] if a2 is None else a2.shape[0]
    check_memory(8 * a1.shape[0] * n2 * n_kernels, f"the output ({n_kernels} x {a1.shape[0]} x {n2} float64)")
    spec = arch._spec(a1.shape[1])
    return _core.monte_carlo_sums(a1, a2, spec, seed, start, stop, all_layers, n_threads,
                                  tile_rows, gram_tile, panel_cols, progress, initial)


def _tangent_sums(a1, a2, arch, *, seed, start, stop, names, weights, biases, per_layer, per_logit, n_threads,
                  progress=None, initial=None, tile_rows=_DEFAULT_TILE_ROWS, gram_tile=_DEFAULT_NTK_TILE,
                  panel_cols=_DEFAULT_PANEL_COLS):
    """Float64 sums over networks [start, stop): [nngp], then the tangent outputs."""
    n1, d = a1.shape
    n2 = n1 if a2 is None else a2.shape[0]
    n_out = ("nngp" in names) + (sum(weights) + sum(biases) if per_layer else 1)
    per_entry = arch.out**2 if per_logit else 1
    features = feature_bytes(arch, d, n1, weights, a1.itemsize, per_logit)
    if a2 is not None:
        features += feature_bytes(arch, d, n2, weights, a1.itemsize, per_logit)
    check_memory(8 * n1 * n2 * per_entry * n_out + features,
                 f"the tangent kernel ({n_out} x {n1} x {n2}{' x C x C' if per_logit else ''} float64 "
                 f"and {features / 2**20:.0f} MiB of per-network features)")
    spec = arch._spec(d)
    return _core.tangent_sums(a1, a2, spec, seed, start, stop, weights, biases, "nngp" in names, per_layer,
                              per_logit, n_threads, tile_rows, gram_tile, panel_cols, progress, initial)


def monte_carlo(x1, x2=None, *, arch, n_networks: int, seed: int = 0, get="nngp", layers: str = "output",
                wrt="all", per_layer: bool = False, per_logit: bool = False, dtype="float64", n_threads=None,
                progress: bool = False):
    """Monte Carlo estimate of a random network's kernels over `n_networks` networks.

    NNGP (the prior kernel, per logit; CONVENTIONS.md):
    ``K = (1/M) sum_m f_m(x1) . f_m(x2) / C``. NTK at initialisation:
    ``Theta = (1/M) sum_m sum_p df_m(x1)/dtheta_p . df_m(x2)/dtheta_p / C``, the
    derivative with respect to the stored parameters of the parameterization,
    computed layer by layer (never a Jacobian). Network m is drawn by
    ``nnpk.sample_params(arch, d, seed, m)``. The estimate for M networks is a
    prefix of the one for 2M, and it is bitwise the same for any thread count.

    Parameters
    ----------
    x1 : (n1, d) array
    x2 : (n2, d) array, optional
        Defaults to x1 (then only one triangle is computed).
    arch : nnpk.MLP
    n_networks : int
        Number of random networks M.
    seed : int
        0 <= seed < 2**64.
    get : "nngp", "ntk", or a tuple of them
        A tuple returns a dict keyed by name, all from the same forward passes.
    layers : "output" or "all"
        For get="nngp": "all" returns a list: the conjugate kernel
        ``h^l . h^l' / n_l`` of every hidden layer, then the output kernel.
    wrt : "all", "weights", "biases", "readout" or a list of layer indices
        Which parameters the NTK differentiates: layer indices are positions in
        ``sample_params`` (0 .. n_layers - 1; -1 is the readout), each with its
        weights and biases.
    per_layer : bool
        The NTK becomes a dict ``{"total": K, "weights": [K_l or None, ...],
        "biases": [K_l or None, ...]}``: each included layer's weight and bias
        shares, which sum to the total.
    per_logit : bool
        The NTK is returned per pair of logits, shape (n1, n2, C, C), not traced
        (the traced kernel is the mean of its diagonal over c).
    dtype : "float32" or "float64"
        Precision of the forward and backward passes; accumulation is always float64.
    n_threads : int, optional
        None: all physical cores; -1 all, -2 all but one; 0 is an error.
    progress : bool
        Show a progress bar.

    Returns
    -------
    (n1, n2) float64 array; a list of them for ``layers="all"``; a dict for a
    tuple ``get``.
    """
    arch, a1, a2 = _prepare(x1, x2, arch, dtype)
    n_networks = check_int(n_networks, "n_networks", minimum=1)
    seed = check_int(seed, "seed", minimum=0, maximum=SEED_MAX)
    names, as_dict = parse_get(get)
    if layers not in ("output", "all"):
        raise ValueError(f"layers must be 'output' or 'all', got {layers!r}")
    if layers == "all" and names != ("nngp",):
        raise ValueError("layers='all' is available for get='nngp' only; for the NTK use per_layer=True")
    weights, biases = parse_wrt(wrt, arch)
    threads = resolve_n_threads(n_threads)
    bar = _Progress(n_networks) if progress else None
    try:
        if names == ("nngp",):
            sums = _kernel_sums(a1, a2, arch, seed=seed, start=0, stop=n_networks, all_layers=layers == "all",
                                n_threads=threads, progress=bar)
        else:
            sums = _tangent_sums(a1, a2, arch, seed=seed, start=0, stop=n_networks, names=names, weights=weights,
                                 biases=biases, per_layer=per_layer, per_logit=per_logit, n_threads=threads,
                                 progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if names == ("nngp",):
        widths = (arch.hidden + (arch.out,)) if layers == "all" else (arch.out,)
        for k, width in zip(sums, widths):
            k /= n_networks * width
        result = list(sums) if layers == "all" else sums[0]
        return {"nngp": result} if as_dict else result
    return shape_results(sums, names, as_dict, n_networks=n_networks, arch=arch, weights=weights, biases=biases,
                         per_layer=per_layer, per_logit=per_logit)
