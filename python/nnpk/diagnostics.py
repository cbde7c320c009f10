"""Diagnostics of kernel matrices: spectrum, conditioning, kernel-target alignment, Monte Carlo error."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import scipy.linalg

from ._kernel_checks import as_kernel, as_targets
from ._monte_carlo import monte_carlo
from ._params import SEED_MAX, _check_arch
from ._validate import ROW_BLOCK_ADVICE, as_points, check_int, check_memory, compute_dtype

__all__ = ["KernelSpectrum", "kernel_target_alignment", "monte_carlo_standard_error", "spectrum"]

# Above this size a Monte Carlo error estimate works in row blocks of at most an
# eighth of the kernel, so that its peak memory stays near the two returned arrays.
_WHOLE_KERNEL_BYTES = 64 * 2**20
_ROW_BLOCKS = 8


@dataclass(frozen=True)
class KernelSpectrum:
    """Eigenvalues of a symmetric kernel matrix, largest first, and what follows from them.

    Eigenvalues are as LAPACK returns them: a positive semi-definite kernel can
    show tiny negative ones from rounding. The effective ranks use the clipped
    values ``max(lambda, 0)``.
    """

    eigenvalues: np.ndarray

    def top(self, k: int) -> np.ndarray:
        """The k largest eigenvalues."""
        return self.eigenvalues[: check_int(k, "k", minimum=1)]

    @property
    def largest(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def smallest(self) -> float:
        return float(self.eigenvalues[-1])

    @property
    def condition_number(self) -> float:
        """largest / smallest eigenvalue; inf when the smallest is <= 0 (numerically singular)."""
        return self.largest / self.smallest if self.smallest > 0 else math.inf

    @property
    def effective_rank(self) -> float:
        """Participation ratio ``(sum lambda)^2 / sum lambda^2`` = ``tr(K)^2 / ||K||_F^2``.

        Between 1 (one direction carries everything) and n (a multiple of the
        identity); it counts the directions that carry most of the trace."""
        clipped = np.maximum(self.eigenvalues, 0.0)
        total = clipped.sum()
        return float(total**2 / np.sum(clipped**2)) if total > 0 else 0.0

    @property
    def entropy_effective_rank(self) -> float:
        """``exp(-sum p log p)`` with ``p = lambda / sum lambda`` (Roy and Vetterli, 2007).

        Also between 1 and n; more sensitive than the participation ratio to the
        many small eigenvalues of the spectrum's tail."""
        clipped = np.maximum(self.eigenvalues, 0.0)
        total = clipped.sum()
        if total == 0:
            return 0.0
        p = clipped[clipped > 0] / total
        return float(np.exp(-np.sum(p * np.log(p))))


def spectrum(kernel) -> KernelSpectrum:
    """All eigenvalues of a symmetric kernel matrix (one O(n^3) LAPACK call), largest first.

    ``spectrum(K).top(10)``, ``.smallest``, ``.condition_number``,
    ``.effective_rank`` and ``.entropy_effective_rank`` all come from them.

    Parameters
    ----------
    kernel : (n, n) array
    """
    k = as_kernel(kernel, "kernel", symmetric=True)
    return KernelSpectrum(scipy.linalg.eigvalsh(k, check_finite=False)[::-1].copy())


def kernel_target_alignment(kernel, targets, *, centered: bool = False) -> float:
    """Kernel-target alignment of a kernel matrix with targets (CONVENTIONS.md).

    Uncentred: ``A(K, Y) = <K, Y Y^T>_F / (||K||_F ||Y Y^T||_F)``; centred: the same
    with ``H K H`` and ``H Y Y^T H``, ``H = I - 11^T / n``. Computed in O(n^2 k)
    without forming ``Y Y^T`` or ``H K H``: ``<K, Y Y^T> = tr(Y^T K Y)``,
    ``||Y Y^T||_F = ||Y^T Y||_F``, ``||H K H||_F^2 = ||K||_F^2 - (2/n) ||K 1||^2 +
    (1^T K 1 / n)^2``.

    Parameters
    ----------
    kernel : (n, n) array
        Symmetric kernel matrix.
    targets : (n,) or (n, k) array
        Regression targets, or one-hot class labels.
    centered : bool

    Returns
    -------
    float in [-1, 1]; nan if the kernel or the (centred) targets are all zero.
    """
    k = as_kernel(kernel, "kernel", symmetric=True)
    n = k.shape[0]
    y, _ = as_targets(targets, "targets", n, f"kernel has {n} points")
    kernel_norm_sq = float(np.vdot(k, k))  # no n x n temporary
    if centered:
        y = y - y.mean(axis=0)
        row_sums = k.sum(axis=1)
        kernel_norm_sq += -2.0 / n * float(row_sums @ row_sums) + (float(row_sums.sum()) / n) ** 2
    inner = float(np.sum(y * (k @ y)))  # <K, H Y Y^T H> = tr((HY)^T K (HY)) as H is idempotent
    gram = y.T @ y
    denominator = math.sqrt(max(kernel_norm_sq, 0.0)) * float(np.linalg.norm(gram))
    return inner / denominator if denominator > 0 else math.nan


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
    x1 : (n1, d) array
    x2 : (n2, d) array, optional
        Defaults to x1.
    arch : nnpk.MLP
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
    arch = _check_arch(arch)
    compute_dtype(dtype)
    a1 = as_points(x1, "x1", np.float64)
    a2 = None if x2 is None else as_points(x2, "x2", np.float64, n_features=a1.shape[1], other="x1")
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
