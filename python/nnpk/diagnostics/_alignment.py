"""Kernel-target alignment: how well a kernel matrix matches the targets' own kernel."""

from __future__ import annotations

import math

import numpy as np

from .._kernel_checks import as_kernel, as_targets

__all__ = ["eigen_alignment", "kernel_alignment", "kernel_target_alignment"]


def kernel_target_alignment(kernel, targets, *, centered: bool = False) -> float:
    """Kernel-target alignment of a kernel matrix with targets.

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


def kernel_alignment(K1, K2, *, centered: bool = True) -> float:
    """Alignment of two kernel matrices of the same points (centred: CKA).

    Centred: ``<H K1 H, H K2 H>_F / (||H K1 H||_F ||H K2 H||_F)`` with ``H = I - 11^T / n``,
    the centred kernel alignment (CKA), invariant to scaling either kernel and to adding a
    constant to it; uncentred: ``<K1, K2>_F / (||K1||_F ||K2||_F)``. 1 when one kernel is a
    positive multiple of the other.

    Parameters
    ----------
    K1, K2 : (n, n) arrays
        Symmetric kernel matrices of the same n points.
    centered : bool

    Returns
    -------
    float in [-1, 1]; nan if a (centred) kernel is all zero.
    """
    k1 = as_kernel(K1, "K1", symmetric=True)
    n = k1.shape[0]
    k2 = as_kernel(K2, "K2", symmetric=True, n_rows=n, n_cols=n, why=f"K1 is a kernel of {n} points")
    if centered:
        k1, k2 = _centred(k1), _centred(k2)
    denominator = float(np.linalg.norm(k1)) * float(np.linalg.norm(k2))
    return float(np.vdot(k1, k2)) / denominator if denominator > 0 else math.nan


def eigen_alignment(K, vectors):
    """How much of a kernel's quadratic form each vector carries: ``alpha_i = phi_i^T K phi_i / ||phi_i||^2``.

    For an eigenvector of K, ``alpha_i`` is its eigenvalue; for a target vector, the kernel's
    energy along it (large: the kernel learns it fast). Computed in ``O(n^2 k)`` from ``K Phi``,
    without an eigendecomposition.

    Parameters
    ----------
    K : (n, n) array
        Symmetric kernel matrix.
    vectors : (n,) or (n, k) array
        One vector, or k vectors as columns; nonzero.

    Returns
    -------
    float for one vector, (k,) array for columns.
    """
    k = as_kernel(K, "K", symmetric=True)
    n = k.shape[0]
    phi, one = as_targets(vectors, "vectors", n, f"K is a kernel of {n} points")
    norms = np.sum(phi * phi, axis=0)
    if np.any(norms == 0):
        raise ValueError(f"vectors has zero columns ({int(np.argmin(norms))} is one): alignment along them is "
                         "undefined")
    alpha = np.sum(phi * (k @ phi), axis=0) / norms
    return float(alpha[0]) if one else alpha


def _centred(k: np.ndarray) -> np.ndarray:
    """H K H, H = I - 11^T / n: K minus its row and column means plus its overall mean."""
    rows = k.mean(axis=1)
    return k - rows[:, None] - k.mean(axis=0)[None, :] + rows.mean()
