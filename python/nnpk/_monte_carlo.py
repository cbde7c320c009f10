"""Monte Carlo kernels of random networks."""

from __future__ import annotations

from typing import List, Union

import numpy as np

from . import _core
from ._params import SEED_MAX, _check_arch
from ._threads import resolve_n_threads
from ._validate import as_points, check_int, check_memory, compute_dtype

__all__ = ["monte_carlo"]

_DEFAULT_TILE_ROWS = 2 * _core.ROW_QUANTUM
_DEFAULT_GRAM_TILE = 256
_DEFAULT_PANEL_COLS = 128


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


def monte_carlo(x1, x2=None, *, arch, n_networks: int, seed: int = 0, get: str = "nngp", layers: str = "output",
                dtype="float64", n_threads=None, progress: bool = False) -> Union[np.ndarray, List[np.ndarray]]:
    """Monte Carlo estimate of a random network's kernel over `n_networks` networks.

    ``K = (1/M) sum_m f_m(x1) . f_m(x2) / C`` (the NNGP, per logit; CONVENTIONS.md),
    network m drawn by ``nnpk.sample_params(arch, d, seed, m)``. The estimate for
    M networks is a prefix of the one for 2M, and it is bitwise the same for any
    thread count.

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
    get : "nngp"
    layers : "output" or "all"
        "all" returns a list: the conjugate kernel ``h^l . h^l' / n_l`` of every
        hidden layer, then the output kernel, all from the same forward passes.
    dtype : "float32" or "float64"
        Precision of the forward passes; accumulation is always float64.
    n_threads : int, optional
        None: all physical cores; -1 all, -2 all but one; 0 is an error.
    progress : bool
        Show a progress bar.

    Returns
    -------
    (n1, n2) float64 array, or a list of them for ``layers="all"``.
    """
    arch, a1, a2 = _prepare(x1, x2, arch, dtype)
    n_networks = check_int(n_networks, "n_networks", minimum=1)
    seed = check_int(seed, "seed", minimum=0, maximum=SEED_MAX)
    if get != "nngp":
        raise ValueError(f"get must be 'nngp', got {get!r}")
    if layers not in ("output", "all"):
        raise ValueError(f"layers must be 'output' or 'all', got {layers!r}")
    threads = resolve_n_threads(n_threads)
    bar = _Progress(n_networks) if progress else None
    try:
        sums = _kernel_sums(a1, a2, arch, seed=seed, start=0, stop=n_networks, all_layers=layers == "all",
                            n_threads=threads, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    widths = (arch.hidden + (arch.out,)) if layers == "all" else (arch.out,)
    for k, width in zip(sums, widths):
        k /= n_networks * width
    return list(sums) if layers == "all" else sums[0]
