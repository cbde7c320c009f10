"""The largest eigenpairs of a symmetric positive semi-definite matrix known only through its products with blocks
of vectors: a kernel in memory, or a kernel store's tiles streamed from disk.

Restarted block Krylov iteration with Rayleigh-Ritz (a block Lanczos method with full reorthogonalisation, thick
restarts and locking): each restart builds the basis ``[X, K X, ..., K^(depth-1) X]`` of the current Ritz block X,
orthonormal block by block and to the locked vectors, projects K onto it, and keeps the leading Ritz vectors as
the next X. Ritz pairs converged far below the tolerance are locked: they leave the block, which shrinks, and every
later basis is kept orthogonal to them. Every product with K is one pass over the matrix with a block of at most
``block_size`` columns, so a store is read ``depth - 1`` times per restart and memory is
``O(n * block_size * depth)``, never ``O(n^2)``.

Only level-3 BLAS touches the ``n``-long vectors: a new block is projected against the basis with the coefficients
that are also the projected matrix's blocks, orthonormalised through its Gram matrix (SVQB), projected once more and
finished by a Cholesky QR. The small projected eigenproblems run on one thread: LAPACK's tridiagonal reduction is
bound by memory bandwidth, and on cores shared with other work its threaded form was measured 25 times slower than
one thread (a 2,400 x 2,400 matrix, 2 threads on 2 busy cores).

A product may be given in two precisions: a fast one (a float32 copy of the kernel) drives the first restarts while
the residuals are far above its rounding, the exact one the rest; the convergence and locking decisions and the
residuals reported come from the exact one.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, List, NamedTuple, Optional

import numpy as np

__all__ = ["EigenResult", "solver_bytes", "sign_fixed", "top_eigenpairs"]

MatMul = Callable[[np.ndarray], np.ndarray]

# A column of a new Krylov block whose norm after orthogonalisation against the basis falls below this fraction of
# its norm before is dropped: it adds no direction (its Ritz vector has converged, or the block has numerically
# left the span of the matrix).
_DROP_RTOL = 1e-10
# Directions of a block whose squared singular value (after scaling its columns to norm 1) falls below this fraction
# of the largest are dropped: the Gram matrix resolves nothing below it.
_GRAM_DROP = 1e-13
# Pairs are locked once their residual is below this fraction of the tolerance of the smallest wanted eigenvalue,
# so that what the locked vectors leave in the later ones' residuals is small against those residuals' tolerance.
_LOCK_FRACTION = 0.1
# The fast products (float32) are used while some residual exceeds this fraction of the largest eigenvalue, ten
# times their rounding (about 1e-7 of it for a kernel), and left for the exact ones after the first restart where
# every wanted residual is within max(its tolerance, this) or where the largest relative residual stops falling.
FAST_RESIDUAL = 1e-6


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


def _one_thread():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _small_eigh(h: np.ndarray, keep: int):
    """The `keep` largest eigenpairs of the small symmetric h, descending, on one thread (LAPACK's MRRR)."""
    import scipy.linalg

    m = h.shape[0]
    with _one_thread():
        values, vectors = scipy.linalg.eigh(h, subset_by_index=[m - keep, m - 1], driver="evr", check_finite=False)
    return values[::-1], vectors[:, ::-1]


def _project_out(z: np.ndarray, against: List[np.ndarray]) -> None:
    """z -= Q Q^T z for each orthonormal block Q, in place (one pass of block classical Gram-Schmidt)."""
    for q in against:
        if q.shape[1]:
            z -= q @ (q.T @ z)


def _gram_orthonormal(z: np.ndarray) -> np.ndarray:
    """An orthonormal basis of span(z) from its Gram matrix (SVQB: columns scaled to norm 1, then rotated onto the
    eigenvectors of the Gram matrix and scaled by their singular values), dropping the directions it resolves
    only at rounding level."""
    norms = np.linalg.norm(z, axis=0)
    z = z / np.where(norms > 0, norms, 1.0)
    with _one_thread():
        mu, u = np.linalg.eigh(z.T @ z)
    keep = mu > _GRAM_DROP * max(mu[-1], np.finfo(float).tiny)
    return z @ (u[:, keep] / np.sqrt(mu[keep]))


def _finish_orthonormal(z: np.ndarray, against: List[np.ndarray]) -> np.ndarray:
    """An orthonormal basis of span(z) orthogonal to the orthonormal blocks `against`, for z already projected
    once against them: an orthonormalisation through the Gram matrix, then Gram-Schmidt once more and a Cholesky
    QR (the first projection leaves z orthogonal to `against` only to about eps times the block's condition)."""
    import scipy.linalg

    if z.shape[1] == 0:
        return z
    q = _gram_orthonormal(z)
    _project_out(q, against)
    try:
        r = scipy.linalg.cholesky(q.T @ q, lower=False, check_finite=False)
        return scipy.linalg.solve_triangular(r, q.T, trans="T", lower=False, check_finite=False).T
    except np.linalg.LinAlgError:  # q lost its rank to the projection: go round once more
        return _gram_orthonormal(q)


def _orthonormal(z: np.ndarray, against: List[np.ndarray]) -> np.ndarray:
    """An orthonormal basis of the part of span(z) orthogonal to the orthonormal blocks `against` (z is
    overwritten), the columns that lose all but `_DROP_RTOL` of their norm to the projection dropped."""
    before = np.linalg.norm(z, axis=0)
    _project_out(z, against)
    return _finish_orthonormal(z[:, np.linalg.norm(z, axis=0) > _DROP_RTOL * before], against)


def _krylov_ritz(x: np.ndarray, kx: np.ndarray, locked: np.ndarray, depth: int, n: int, product: MatMul):
    """One restart: the block Krylov basis [X, K X, ..., K^(depth-1) X], orthonormal and orthogonal to the locked
    vectors, and Rayleigh-Ritz on it: the Ritz values (descending), vectors and their images, as many as X has
    columns. The coefficients of the first Gram-Schmidt pass of each new block are blocks of the projected
    matrix, computed once for both."""
    basis, images = [x], [kx]
    h = {}
    while True:
        w = images[-1]
        j = len(basis) - 1
        for i, q in enumerate(basis):
            h[i, j] = q.T @ w
        if len(basis) == depth or locked.shape[1] + sum(q.shape[1] for q in basis) >= n:
            break
        z = w - basis[0] @ h[0, j]
        for i in range(1, j + 1):
            z -= basis[i] @ h[i, j]
        _project_out(z, [locked])
        z = z[:, np.linalg.norm(z, axis=0) > _DROP_RTOL * np.linalg.norm(w, axis=0)]
        block = _finish_orthonormal(z, [locked] + basis)
        del z
        if block.shape[1] == 0:
            break
        basis.append(block)
        images.append(product(block))
    offsets = np.concatenate([[0], np.cumsum([q.shape[1] for q in basis])])
    m = int(offsets[-1])
    projected = np.empty((m, m))
    for (i, j), block in h.items():
        projected[offsets[i]:offsets[i + 1], offsets[j]:offsets[j + 1]] = block
        projected[offsets[j]:offsets[j + 1], offsets[i]:offsets[i + 1]] = block.T
    del h
    theta, s = _small_eigh((projected + projected.T) / 2, min(x.shape[1], m))
    del projected
    x = sum(q @ s[offsets[i]:offsets[i + 1]] for i, q in enumerate(basis))
    kx = sum(w @ s[offsets[i]:offsets[i + 1]] for i, w in enumerate(images))
    return theta, x, kx


def top_eigenpairs(matmul: MatMul, n: int, k: int, *, tol: float, max_restarts: int, block_size: int, depth: int,
                   seed: int, what: str, fast_matmul: Optional[MatMul] = None,
                   log: Optional[Callable[[str], None]] = None) -> EigenResult:
    """The k largest eigenpairs of the symmetric PSD n x n matrix K that `matmul` multiplies (n, b) float64 blocks by.

    Converged when every pair's residual ``||K v_i - theta_i v_i||`` is at most ``tol * theta_i`` plus a floor at
    rounding level, ``64 eps sqrt(n) theta_1``. The residuals reported are recomputed from one more product with
    K (by `matmul`), not carried through the iteration.

    `fast_matmul`, when given, is a cheaper and less accurate product with K (a float32 copy of it), used by the
    first restarts, until the residuals come within ``FAST_RESIDUAL * theta_1`` (or stop falling); the iteration
    then goes on with `matmul`. The basis, its orthogonalisation and the Rayleigh-Ritz steps are float64
    throughout (the Gram-matrix orthogonalisation would lose the Krylov blocks' small directions in float32), and
    every convergence and locking decision is taken on residuals of `matmul`.

    `what` names the matrix in the warning issued without convergence; `log`, when given, is called with a line
    per restart."""
    b = max(k, min(block_size, n))
    rng = np.random.default_rng(seed)
    floor = 64 * np.finfo(np.float64).eps * math.sqrt(n)
    fast = fast_matmul is not None
    product = fast_matmul if fast_matmul is not None else matmul
    x = _orthonormal(rng.standard_normal((n, b)), [])
    kx = product(x)
    locked = np.zeros((n, 0))
    locked_values = np.zeros(0)
    theta = np.zeros(0)
    converged = False
    restarts = 0
    worst_before = np.inf
    while restarts < max_restarts:
        restarts += 1
        theta, x, kx = _krylov_ritz(x, kx, locked, depth, n, product)
        wanted = k - locked.shape[1]
        top = max(float(theta[0]), float(locked_values[0]) if locked_values.size else 0.0)
        residuals = np.linalg.norm(kx[:, :wanted] - x[:, :wanted] * theta[:wanted], axis=0)
        target = tol * np.abs(theta[:wanted]) + floor * top
        worst = float(np.max(residuals / target))
        if log is not None:
            log(f"restart {restarts} ({'fast' if fast else 'exact'} products): {locked.shape[1]} locked, block "
                f"{x.shape[1]}, largest residual / tolerance {worst:.3g}")
        if fast:
            if np.all(residuals <= np.maximum(target, FAST_RESIDUAL * top)) or worst > 0.5 * worst_before:
                fast, product = False, matmul
                kx = product(x)  # the Ritz block's image again, exactly
            worst_before = worst
            continue
        if worst <= 1:
            converged = True
            break
        lock = np.flatnonzero(residuals <= _LOCK_FRACTION * target[-1])
        if lock.size:
            locked = np.hstack([locked, x[:, lock]])
            locked_values = np.concatenate([locked_values, theta[lock]])
            rest = np.setdiff1d(np.arange(x.shape[1]), lock)
            x, kx, theta = x[:, rest], kx[:, rest], theta[rest]
    wanted = k - locked.shape[1]
    values = np.concatenate([locked_values, theta[:wanted]])
    order = np.argsort(-values, kind="stable")
    values = values[order]
    vectors = sign_fixed(np.hstack([locked, x[:, :wanted]])[:, order])
    del x, kx, locked
    residuals = np.linalg.norm(matmul(vectors) - vectors * values, axis=0)
    # Stopped by max_restarts right after the fast products: the fresh residuals may still meet the tolerance.
    converged = converged or bool(np.all(residuals <= tol * np.abs(values) + floor * abs(values[0])))
    if not converged:
        worst = int(np.argmax(residuals / np.maximum(np.abs(values), floor * abs(values[0]))))
        warnings.warn(f"the eigensolver of {what} did not converge in {max_restarts} restarts: the largest relative "
                      f"residual is {residuals[worst] / abs(values[worst]):.3g} (eigenpair {worst + 1}, tol {tol:g});"
                      " raise max_restarts or tol, or ask for fewer vectors", RuntimeWarning, stacklevel=3)
    return EigenResult(values, vectors, residuals, restarts, converged)
