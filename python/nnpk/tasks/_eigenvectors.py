"""The leading eigenvectors of a network's empirical NTK at initialisation, in memory or from a kernel store, and
the binary tasks their signs define."""

from __future__ import annotations

import numbers
import os
from typing import Optional

import numpy as np

from .._threads import resolve_n_threads
from .._validate import check_int, check_memory
from ..architectures import check_arch, sample_params
from ..architectures._params import prepare_network_points
from ..kernels import empirical
from ..store import KernelStore, open_store
from ._eigensolver import default_block_size, sign_fixed, solver_bytes, top_eigenpairs

__all__ = ["ntk_eigenfunction", "ntk_eigenvectors", "ntk_eigenvectors_from_store"]

METHODS = ("auto", "dense", "krylov")
DEFAULT_TOL = 1e-6
DEFAULT_DEPTH = 4
DEFAULT_MAX_RESTARTS = 50

_STORE_ADVICE = ("compute the NTK into an on-disk store, nnpk.compute_to_store(path, x, arch=arch, kernel='ntk', "
                 "n_networks=1, seed=seed), and take its eigenvectors with nnpk.tasks.ntk_eigenvectors_from_store")


def _check_solver_options(method, tol, max_restarts, depth, block_size, n: int, k: int):
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(tol, bool) or not isinstance(tol, (numbers.Real, np.floating)) or not 0 < float(tol) < 1:
        raise ValueError(f"tol must be a number in (0, 1), got {tol!r}")
    max_restarts = check_int(max_restarts, "max_restarts", minimum=1)
    depth = check_int(depth, "depth", minimum=2)
    block_size = default_block_size(n, k) if block_size is None else check_int(block_size, "block_size", minimum=k)
    return float(tol), max_restarts, depth, min(block_size, n)


def _choose_method(method: str, n: int, block_size: int, depth: int) -> str:
    """"auto": the dense solver when a Krylov basis would span half the points or more (it then costs as much as
    the dense reduction, which is exact), else the block Krylov solver."""
    if method != "auto":
        return method
    return "dense" if block_size * depth >= n / 2 else "krylov"


def _blas_threads(n_threads):
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=resolve_n_threads(n_threads), user_api="blas")


def _dense_eigenpairs(kernel: np.ndarray, k: int, return_residuals: bool):
    """(values descending, sign-fixed vectors, residuals or None) of an in-memory kernel by LAPACK's MRRR
    (scipy.linalg.eigh with subset_by_index), exact to rounding; the kernel is overwritten unless residuals are
    asked for."""
    import scipy.linalg

    n = kernel.shape[0]
    values, vectors = scipy.linalg.eigh(kernel, subset_by_index=[n - k, n - 1], driver="evr",
                                        overwrite_a=not return_residuals)
    values, vectors = values[::-1].copy(), sign_fixed(vectors[:, ::-1])
    residuals = np.linalg.norm(kernel @ vectors - vectors * values, axis=0) if return_residuals else None
    return values, vectors, residuals


def ntk_eigenvectors(x, arch, n_vectors: int, seed: int = 0, index: int = 0, params=None, *, method: str = "auto",
                     tol: float = DEFAULT_TOL, max_restarts: int = DEFAULT_MAX_RESTARTS, depth: int = DEFAULT_DEPTH,
                     block_size: Optional[int] = None, float32_products: bool = True, return_residuals: bool = False,
                     n_threads=None):
    """The leading eigenpairs of a scalar network's empirical NTK at initialisation.

    The kernel is ``nnpk.empirical(x, arch=arch, params=params, get="ntk")`` of network
    `index` of `seed` (``params = nnpk.sample_params(arch, point_shape, seed, index)``), or of
    the given `params`; it is formed in memory in float64 (``8 n^2`` bytes, 3.2 GB at 20,000
    points) and its ``n_vectors`` largest eigenpairs are computed there. Eigenvectors are defined
    up to sign: each is returned with its entry of largest magnitude positive. For more points
    than memory holds, compute the kernel into a store and use
    :func:`ntk_eigenvectors_from_store`.

    Accuracy: the dense solver is exact to rounding. The Krylov solver stops when every residual
    ``r_i = ||K v_i - lambda_i v_i||`` is at most ``tol * lambda_i`` plus a floor at rounding
    level, ``64 eps sqrt(n) lambda_1`` (each eigenvalue's own tolerance, not one relative to the
    largest: at ``tol=1e-6`` the 1,000th eigenvalue of LeNet's NTK on 20,000 MNIST-1D points,
    about ``1.6e-5 lambda_1``, gets a residual below ``1.8e-11 lambda_1``, floor included). The
    residuals returned are recomputed at the end from a fresh float64 product with the float64
    kernel, whatever precision the iteration used; see :func:`ntk_eigenvectors_from_store` for
    what they bound.

    Parameters
    ----------
    x : (n, ...) array
        Points of the shape the network takes.
    arch : nnpk.Network
        A network with one output (``out=1``), without batch normalisation.
    n_vectors : int
        How many eigenpairs, 1 to n.
    seed, index : int
        Which random network (ignored when `params` is given).
    params : list of (W, b), optional
        The network's parameters in the layout of ``nnpk.sample_params``.
    method : "auto", "dense" or "krylov"
        "dense": LAPACK's symmetric eigensolver for a subset of eigenpairs
        (``scipy.linalg.eigh(..., subset_by_index=...)``), exact to rounding, ``O(n^3)`` time
        whatever ``n_vectors``. "krylov": the block Krylov solver of
        :func:`ntk_eigenvectors_from_store` (restarts, locking) on the in-memory kernel,
        ``O(n^2 block_size)`` per product; its first restarts multiply by a float32 copy of the
        kernel (see `float32_products`). "auto": "dense" when the Krylov basis
        (``block_size * depth`` columns) would have at least ``n / 2`` columns, else "krylov":
        for 1,000 eigenvectors, "krylov" from about 9,000 points. The top 1,000 eigenpairs of
        LeNet-1D's NTK on 20,000 MNIST-1D points took 167 s on 2 cores little used by other work
        and 5 minutes on 2 busy ones (kernel about 22 s; 280 to 300 CPU-seconds; 7 GB).
    tol, max_restarts, depth, block_size
        The Krylov solver's settings (see :func:`ntk_eigenvectors_from_store`).
    float32_products : bool
        Krylov solver only: multiply by a float32 copy of the kernel (``4 n^2`` bytes more)
        until the residuals come within ``1e-6 lambda_1`` (ten times the rounding of float32
        products) or stop falling, then by the float64 kernel. A float32 product costs about
        0.45 of a float64 one; the 20,000-point solve above is 10% faster with them. The
        answer's accuracy is that of the float64 kernel either way. False: float64 products
        throughout, without the copy.
    return_residuals : bool
        Also return the residual norms ``||K v_i - lambda_i v_i||`` (one more product with K).
    n_threads : int, optional
        Threads of the kernel computation and of the linear algebra (BLAS); None: all physical cores.

    Returns
    -------
    eigenvalues : (n_vectors,) array
        Descending.
    eigenvectors : (n, n_vectors) array
        Orthonormal columns, column ``i`` belonging to ``eigenvalues[i]``.
    residuals : (n_vectors,) array
        Only with ``return_residuals=True``.

    Raises
    ------
    MemoryError
        Before anything is computed, when the kernel and the solver's work space do not fit in
        the memory available (the message gives the sizes and points to the store).
    """
    return _ntk_eigenpairs(x, arch, n_vectors, seed, index, params, method=method, tol=tol,
                           max_restarts=max_restarts, depth=depth, block_size=block_size,
                           float32_products=float32_products, return_residuals=return_residuals, n_threads=n_threads)


def _ntk_eigenpairs(x, arch, n_vectors, seed, index, params, *, method="auto", tol=DEFAULT_TOL,
                    max_restarts=DEFAULT_MAX_RESTARTS, depth=DEFAULT_DEPTH, block_size=None, float32_products=True,
                    return_residuals=False, n_threads=None, count_name="n_vectors", caller="ntk_eigenvectors"):
    network = check_arch(arch, f"nnpk.tasks.{caller}")
    compiled, flat, _ = prepare_network_points(x, None, network, "float64", names=("x", None))
    if compiled.out != 1:
        raise ValueError(f"arch has {compiled.out} outputs; the NTK eigenvectors are those of a scalar network: "
                         "give it one output (out=1)")
    n = flat.shape[0]
    k = check_int(n_vectors, count_name, minimum=1, maximum=n)
    tol, max_restarts, depth, block = _check_solver_options(method, tol, max_restarts, depth, block_size, n, k)
    if not isinstance(float32_products, (bool, np.bool_)):
        raise TypeError(f"float32_products must be True or False, got {float32_products!r}")
    chosen = _choose_method(method, n, block, depth)
    threads = resolve_n_threads(n_threads)
    if params is None:
        params = sample_params(network, compiled.input_shape, seed, index)
    # The kernel, plus LAPACK's copy and work space (dense) or the Krylov basis and the float32 copy (krylov).
    if chosen == "dense":
        work = 8 * n * (n if return_residuals else 0) + 8 * n * (k + 26)
    else:
        work = solver_bytes(n, block, depth) + (4 * n * n if float32_products else 0)
    check_memory(8 * n * n + work, f"the NTK of {n} points ({n} x {n} float64) and its eigensolver", _STORE_ADVICE)
    kernel = empirical(flat.reshape((n,) + compiled.input_shape), arch=network, params=params, get="ntk",
                       n_threads=threads)
    with _blas_threads(threads):
        if chosen == "dense":
            values, vectors, residuals = _dense_eigenpairs(kernel, k, return_residuals)
        else:
            fast = None
            if float32_products:
                kernel32 = kernel.astype(np.float32)

                def fast(v):
                    return (kernel32 @ v.astype(np.float32)).astype(np.float64)

            result = top_eigenpairs(lambda v: kernel @ v, n, k, tol=tol, max_restarts=max_restarts,
                                    block_size=block, depth=depth, seed=0, what=f"the NTK of {n} points",
                                    fast_matmul=fast)
            values, vectors, residuals = result.values, result.vectors, result.residuals
    return (values, vectors, residuals) if return_residuals else (values, vectors)


class _StoreProduct:
    """K @ V for a store's kernel, streaming its tiles: each stored tile (I, J) is read once per product and,
    for a symmetric kernel, used for block (J, I) too."""

    def __init__(self, store: KernelStore):
        self.store = store
        self.passes = 0

    def __call__(self, v: np.ndarray) -> np.ndarray:
        store = self.store
        out = np.zeros_like(v)
        for i, j in store.tiles:
            rows, cols = store.bounds(i, j)
            tile = store.tile(i, j)
            out[rows] += tile @ v[cols]
            if store.symmetric and i != j:
                out[cols] += tile.T @ v[rows]
        self.passes += 1
        return out


def ntk_eigenvectors_from_store(store, n_vectors: int, *, tol: float = DEFAULT_TOL,
                                max_restarts: int = DEFAULT_MAX_RESTARTS, depth: int = DEFAULT_DEPTH,
                                block_size: Optional[int] = None, seed: int = 0, return_residuals: bool = False,
                                n_threads=None):
    """The leading eigenpairs of a kernel in an on-disk store, in memory ``O(n * n_vectors)``.

    For the NTK of one network, make the store with ``nnpk.compute_to_store(path, x,
    arch=arch, kernel="ntk", n_networks=1, seed=seed)``: its kernel is the empirical NTK of
    network 0 of `seed`, the same as :func:`ntk_eigenvectors` with ``seed=seed, index=0``. Any
    complete symmetric store works (an NNGP, an analytic kernel): its kernel must be positive
    semi-definite.

    The solver is a restarted block Krylov iteration with Rayleigh-Ritz projection (block
    Lanczos with full reorthogonalisation, thick restarts and locking): each restart extends the
    current ``block_size`` Ritz vectors X to the basis ``[X, K X, ..., K^(depth-1) X]``,
    projects the kernel onto it and keeps its leading Ritz vectors. A Ritz pair whose residual
    is below a tenth of the smallest wanted eigenvalue's tolerance is locked: it leaves the
    block, which shrinks, and later bases are kept orthogonal to it. Each product with the
    kernel reads every stored tile once (a symmetric store's tiles serve both triangles), so a
    restart reads the store at most ``depth - 1`` times; memory is about
    ``8 n block_size (2 depth + 3)`` bytes plus a tile. The start is a Gaussian block drawn
    from `seed`. The vectors are orthogonalised with level-3 BLAS only (block Gram-Schmidt,
    Gram-matrix and Cholesky orthonormalisation), and the projected eigenproblems are solved on
    one thread (LAPACK's tridiagonal reduction is bound by memory bandwidth, and its threaded
    form slows down badly on cores shared with other work).

    Accuracy: the iteration stops when every residual ``r_i = ||K v_i - lambda_i v_i||`` is at
    most ``tol * lambda_i`` (plus a floor at rounding level, ``64 eps sqrt(n) lambda_1``): each
    eigenvalue's own tolerance, far stricter for the small ones than a tolerance relative to
    the largest eigenvalue (``||K||``) as some eigensolvers define it. Then
    ``lambda_i`` is within ``r_i`` of an eigenvalue (within ``r_i^2 / gap_i``, the gap to the
    rest of the spectrum), and the angle between ``v_i`` and its eigenvector is at most
    ``r_i / gap_i`` (Davis-Kahan): eigenvectors of nearly equal eigenvalues are determined
    only as a subspace. The residuals are recomputed at the end from one more pass over the
    store; without convergence in ``max_restarts`` restarts a ``RuntimeWarning`` gives the
    largest relative residual.

    Parameters
    ----------
    store : nnpk.KernelStore, str or path
        A complete store of a symmetric kernel (``x2`` not given), or its directory.
    n_vectors : int
        How many eigenpairs, 1 to n.
    tol : float
        Relative residual at which an eigenpair has converged, in (0, 1).
    max_restarts : int
        The most restarts.
    depth : int
        Blocks in a restart's Krylov basis, >= 2. Deeper bases converge in fewer passes over
        the store but cost more memory and a larger projected eigenproblem (``block_size *
        depth`` square).
    block_size : int, optional
        Vectors per block, >= n_vectors; default ``n_vectors`` plus 10% (at least 8). The
        extra vectors speed up the convergence of the last wanted ones.
    seed : int
        Seed of the starting block.
    return_residuals : bool
        Also return the residual norms.
    n_threads : int, optional
        Threads of the linear algebra (BLAS); None: all physical cores.

    Returns
    -------
    eigenvalues : (n_vectors,) array
        Descending.
    eigenvectors : (n, n_vectors) array
        Orthonormal columns, each with its entry of largest magnitude positive.
    residuals : (n_vectors,) array
        Only with ``return_residuals=True``.
    """
    if isinstance(store, (str, os.PathLike)):
        store = open_store(store)
    if not isinstance(store, KernelStore):
        raise TypeError(f"store must be an nnpk.KernelStore or the path of one, got {type(store).__name__}")
    if not store.symmetric:
        raise ValueError(f"store {store.path} holds a kernel between two sets of points {tuple(store.shape)}; "
                         "eigenvectors need the kernel of the points with themselves (computed without x2)")
    n = store.shape[0]
    k = check_int(n_vectors, "n_vectors", minimum=1, maximum=n)
    tol, max_restarts, depth, block = _check_solver_options("krylov", tol, max_restarts, depth, block_size, n, k)
    seed = check_int(seed, "seed", minimum=0)
    store._require_complete("take the eigenvectors of its kernel")
    t = store.tile_size
    check_memory(solver_bytes(n, block, depth) + 8 * t * (t + 2 * block),
                 f"the eigensolver of {n} points with blocks of {block} vectors",
                 "ask for fewer vectors (n_vectors, block_size) or a shallower basis (depth)")
    with _blas_threads(n_threads):
        result = top_eigenpairs(_StoreProduct(store), n, k, tol=tol, max_restarts=max_restarts, block_size=block,
                                depth=depth, seed=seed, what=f"the kernel of {store.path}")
    if return_residuals:
        return result.values, result.vectors, result.residuals
    return result.values, result.vectors


def ntk_eigenfunction(x, arch, k: int, seed: int = 0, index: int = 0, params=None, **options) -> np.ndarray:
    """Binary labels from the sign of the k-th eigenvector of a scalar network's NTK.

    ``labels = (sign(phi_k) + 1) / 2`` with ``phi_k`` the eigenvector of the k-th largest
    eigenvalue (k counted from 1: ``k=1`` is the leading eigenvector), signed as
    :func:`ntk_eigenvectors` returns it (its entry of largest magnitude positive, so that the
    labels do not depend on the solver's arbitrary sign); entries exactly 0 get label 1.

    Parameters
    ----------
    x, arch, seed, index, params
        As in :func:`ntk_eigenvectors`.
    k : int
        Which eigenvector, 1 to n.
    **options
        ``method``, ``tol``, ``max_restarts``, ``depth``, ``block_size``, ``n_threads`` of
        :func:`ntk_eigenvectors`.

    Returns
    -------
    (n,) int64 array of 0 and 1.
    """
    if isinstance(k, bool) or not isinstance(k, (numbers.Integral, np.integer)):
        raise TypeError(f"k must be an integer (1 for the leading eigenvector), got {k!r}")
    if k < 1:
        raise ValueError(f"k counts eigenvectors from 1 (the leading one), got {k}")
    if "return_residuals" in options:
        raise TypeError("ntk_eigenfunction returns labels only: call ntk_eigenvectors for the residuals")
    _, vectors = _ntk_eigenpairs(x, arch, int(k), seed, index, params, count_name="k", caller="ntk_eigenfunction",
                                 **options)
    return sign_labels(vectors[:, -1])


def sign_labels(phi) -> np.ndarray:
    """``(sign(phi) + 1) / 2`` with 0 mapped to 1, as int64."""
    return (np.asarray(phi) >= 0).astype(np.int64)

