"""The largest eigenpairs of a symmetric positive semi-definite matrix known only through its products with blocks
of vectors: a kernel in memory, or a kernel store's tiles streamed from disk.

Restarted block Krylov iteration with Rayleigh-Ritz (a block Lanczos method with full reorthogonalisation and
thick restarts): each restart builds the basis ``[X, K X, ..., K^(depth-1) X]`` of the current Ritz block X,
orthonormal block by block, projects K onto it, and keeps the leading Ritz vectors as the next X. Every product
with K is one pass over the matrix with a block of ``block_size`` columns, so a store is read ``depth - 1`` times
per restart and memory is ``O(n * block_size * depth)``, never ``O(n^2)``.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, NamedTuple

import numpy as np

__all__ = ["EigenResult", "solver_bytes", "sign_fixed", "top_eigenpairs"]

MatMul = Callable[[np.ndarray], np.ndarray]

# Columns of a new Krylov block whose norm after orthogonalisation falls below this fraction of the block's
# largest are dropped: the block has (numerically) left the span of the matrix.
_DROP_RTOL = 1e-10


class EigenResult(NamedTuple):
    values: np.ndarray     # (k,) descending
    vectors: np.ndarray    # (n, k) orthonormal columns
    residuals: np.ndarray  # (k,) ||K v_i - lambda_i v_i||, from a fresh product with K
    restarts: int
    converged: bool


def default_block_size(n: int, k: int) -> int:
    """k plus an oversampling of 10% (at least 8), at most n."""
    return min(n, k + max(8, math.ceil(k / 10)))


def solver_bytes(n: int, block_size: int, depth: int) -> int:
    """Float64 bytes the solver holds at its peak: the basis and its image under K (depth blocks each), the Ritz
    block and its image, and one block of work space."""
    return 8 * n * block_size * (2 * depth + 3)


def sign_fixed(vectors: np.ndarray) -> np.ndarray:
    """Each column multiplied by -1 where needed so that its entry of largest magnitude (the first of them) is
    positive: eigenvectors are defined up to sign, and this makes the choice deterministic."""
    rows = np.argmax(np.abs(vectors), axis=0)
    signs = np.where(vectors[rows, np.arange(vectors.shape[1])] < 0, -1.0, 1.0)
    return vectors * signs


def _orthonormal(z: np.ndarray, against) -> np.ndarray:
    """An orthonormal basis of the part of span(z) orthogonal to the orthonormal blocks `against`: classical
    Gram-Schmidt applied twice (enough for orthogonality to rounding), then a pivoted QR that drops the
    directions z no longer has."""
    import scipy.linalg

    for _ in range(2):
        for q in against:
            z -= q @ (q.T @ z)
    if z.shape[1] == 0:
        return z
    q, r, _ = scipy.linalg.qr(z, mode="economic", pivoting=True)
    diagonal = np.abs(np.diag(r))
    keep = int(np.count_nonzero(diagonal > _DROP_RTOL * diagonal[0])) if diagonal[0] > 0 else 0
    q = q[:, :keep]
    for _ in range(2):  # QR's basis is orthogonal to `against` only as far as z was
        for p in against:
            q -= p @ (p.T @ q)
        q, _ = np.linalg.qr(q)
    return q


def top_eigenpairs(matmul: MatMul, n: int, k: int, *, tol: float, max_restarts: int, block_size: int, depth: int,
                   seed: int, what: str) -> EigenResult:
    """The k largest eigenpairs of the symmetric PSD n x n matrix K that `matmul` multiplies (n, b) blocks by.

    Converged when every pair's residual ``||K v_i - theta_i v_i||`` is at most ``tol * theta_i`` (plus a floor at
    rounding level, ``64 eps sqrt(n) theta_1``). The residuals reported are recomputed from one more product with
    K, not carried through the iteration. `what` names the matrix in the warning issued without convergence."""
    import scipy.linalg

    b = max(k, min(block_size, n))
    rng = np.random.default_rng(seed)
    x = _orthonormal(rng.standard_normal((n, b)), [])
    kx = matmul(x)
    theta = np.zeros(0)
    floor = 64 * np.finfo(np.float64).eps * math.sqrt(n)
    converged = False
    restarts = 0
    while restarts < max_restarts:
        restarts += 1
        basis, images = [x], [kx]
        while len(basis) < depth and sum(q.shape[1] for q in basis) < n:
            block = _orthonormal(images[-1].copy(), basis)
            if block.shape[1] == 0:
                break
            basis.append(block)
            images.append(matmul(block))
        q, kq = np.hstack(basis), np.hstack(images)
        del basis, images
        h = q.T @ kq
        h = (h + h.T) / 2
        m = h.shape[0]
        keep = min(b, m)
        theta, s = scipy.linalg.eigh(h, subset_by_index=[m - keep, m - 1])
        theta, s = theta[::-1], s[:, ::-1]
        x, kx = q @ s, kq @ s
        del q, kq
        residuals = np.linalg.norm(kx[:, :k] - x[:, :k] * theta[:k], axis=0)
        if np.all(residuals <= tol * np.abs(theta[:k]) + floor * abs(theta[0])):
            converged = True
            break
    vectors = sign_fixed(x[:, :k])
    values = theta[:k].copy()
    del x, kx
    residuals = np.linalg.norm(matmul(vectors) - vectors * values, axis=0)
    if not converged:
        worst = int(np.argmax(residuals / np.maximum(np.abs(values), floor * abs(values[0]))))
        warnings.warn(f"the eigensolver of {what} did not converge in {max_restarts} restarts: the largest relative "
                      f"residual is {residuals[worst] / abs(values[worst]):.3g} (eigenpair {worst + 1}, tol {tol:g});"
                      " raise max_restarts or tol, or ask for fewer vectors", RuntimeWarning, stacklevel=3)
    return EigenResult(values, vectors, residuals, restarts, converged)
