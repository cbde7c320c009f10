"""A Monte Carlo kernel's standard error, from independent batches of networks."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from .._validate import ROW_BLOCK_ADVICE, check_int, check_memory, compute_dtype
from ..architectures import SEED_MAX, check_arch
from ..architectures._params import check_points
from ..kernels import monte_carlo

__all__ = ["monte_carlo_standard_error"]

# Above this size a Monte Carlo error estimate works in row blocks of at most an
# eighth of the kernel, so that its peak memory stays near the two returned arrays.
_WHOLE_KERNEL_BYTES = 64 * 2**20
_ROW_BLOCKS = 8


def monte_carlo_standard_error(x1, x2=None, *, arch, n_networks: int, n_batches: int = 2, seed: int = 0,
                               get: str = "nngp", estimator=None, dtype="float64", n_threads=None,
                               block_rows=None) -> Tuple[np.ndarray, np.ndarray]:
    """A Monte Carlo kernel estimate and its standard error, from independent batches of networks.

    Batch ``b`` is ``nnpk.monte_carlo(..., n_networks=n_networks // n_batches,
    seed=seed + b)``: the batches use distinct seeds, so they are independent
    draws (network m of seed s is a pure function of (s, m)), and batch 0 is
    the estimate ``nnpk.monte_carlo`` gives with `seed` and that many networks.
    The estimate is the mean of the batch kernels; its standard error is
    ``sqrt(sum_b (K_b - K)^2 / (B (B - 1)))`` entrywise, accumulated in one pass
    (Welford's update), not by storing the batches. Both need all B batches to
    be equally large, hence ``n_networks % n_batches == 0``.

    Memory: the two returned arrays, plus one batch kernel while it is added
    (updated in place, no other temporary). Above 64 MiB per kernel each batch
    is computed in row blocks of x1 (at most an eighth of the kernel), so the
    peak stays within 2.125 kernels; a block of a symmetric kernel (x2 None)
    then costs the whole rectangle, not a triangle.

    Parameters
    ----------
    x1 : (n1, d) array, or (n1, ...) points of the shape the network takes
    x2 : (n2, ...) array, optional
        Defaults to x1.
    arch : nnpk.Network (an nnpk.MLP is one)
    n_networks : int
        Total networks M, split into `n_batches` batches of M / B.
    n_batches : int
        B >= 2.
    seed : int
        Batch b uses seed + b.
    get, estimator, dtype, n_threads
        As in ``nnpk.monte_carlo`` (an exact estimator, such as "conditional"
        for one hidden layer, has standard error 0).
    block_rows : int, optional
        Rows of x1 per block; None chooses as described above.

    Returns
    -------
    estimate : (n1, n2) float64
    standard_error : (n1, n2) float64
    """
    check_arch(arch, "nnpk.monte_carlo_standard_error")
    compute_dtype(dtype)
    a1 = check_points(x1, "x1", arch, np.float64)
    a2 = None if x2 is None else check_points(x2, "x2", arch, np.float64, point_shape=a1.shape[1:])
    n_batches = check_int(n_batches, "n_batches", minimum=2)
    n_networks = check_int(n_networks, "n_networks", minimum=n_batches)
    if n_networks % n_batches:
        raise ValueError(f"n_networks={n_networks} must be a multiple of n_batches={n_batches}")
    seed = check_int(seed, "seed", minimum=0, maximum=SEED_MAX - (n_batches - 1))
    n1 = a1.shape[0]
    n2 = n1 if a2 is None else a2.shape[0]
    kernel_bytes = 8 * n1 * n2
    if block_rows is None:
        block_rows = n1 if kernel_bytes <= _WHOLE_KERNEL_BYTES else -(-n1 // _ROW_BLOCKS)
    block_rows = check_int(block_rows, "block_rows", minimum=1)
    check_memory(2 * kernel_bytes, f"the estimate and its standard error (2 x {n1} x {n2} float64)",
                 ROW_BLOCK_ADVICE)
    # A symmetric kernel computed whole needs only one triangle.
    other_points = None if a2 is None and block_rows >= n1 else (a1 if a2 is None else a2)
    estimate = np.zeros((n1, n2))
    sum_sq_deviation = np.zeros((n1, n2))
    for batch in range(n_batches):
        for start in range(0, n1, block_rows):
            rows = slice(start, start + block_rows)
            step = monte_carlo(a1[rows], other_points, arch=arch, n_networks=n_networks // n_batches,
                               seed=seed + batch, get=get, estimator=estimator, dtype=dtype, n_threads=n_threads)
            # Welford's update in place: with d = K_b - mean, the mean moves by d / (b + 1) and the
            # sum of squared deviations grows by d^2 b / (b + 1) = (d / (b + 1))^2 b (b + 1).
            step -= estimate[rows]
            step /= batch + 1
            estimate[rows] += step
            step *= step
            step *= batch * (batch + 1)
            sum_sq_deviation[rows] += step
    sum_sq_deviation /= n_batches * (n_batches - 1)
    return estimate, np.sqrt(sum_sq_deviation, out=sum_sq_deviation)
