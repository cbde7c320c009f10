"""Regression with precomputed kernels: kernel ridge, ridge selection by LOO or GCV, the GP posterior.

Every function takes kernel matrices (from ``nnpk.monte_carlo``, ``nnpk.analytic``
or anywhere else): ``k_train`` is the (n, n) kernel of the training points with
themselves, ``k_test_train`` the (n_test, n) kernel of test points against them.
Targets ``y`` are (n,) or (n, k); the results keep that shape. The ridge is
added to the diagonal as it is: ``(k_train + ridge * I)^-1 y``.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import scipy.linalg

from .._kernel_checks import as_kernel, as_ridges, as_targets, check_ridge

__all__ = ["CRITERIA", "RELATIVE_RIDGES", "RidgePath", "gp_posterior", "kernel_ridge", "ridge_coefficients"]

CRITERIA = ("loo", "gcv")
# ridge="gcv"/"loo" in the scikit-learn estimators and the demos chooses among these multiples of the mean
# diagonal of the training kernel, so that the grid follows the kernel's scale.
RELATIVE_RIDGES = np.logspace(-6, 1, 15)


def _train_kernel(k_train, y, kernel_name: str = "k_train") -> Tuple[np.ndarray, np.ndarray, bool]:
    k = as_kernel(k_train, kernel_name, symmetric=True)
    targets, was_1d = as_targets(y, "y", k.shape[0], f"{kernel_name} has {k.shape[0]} training points")
    return k, targets, was_1d


def _test_kernel(k_test_train, name: str, n_train: int, train_name: str) -> np.ndarray:
    return as_kernel(k_test_train, name, n_cols=n_train, why=f"{train_name} has {n_train} training points")


def _not_positive_definite(what: str, ridge: float) -> np.linalg.LinAlgError:
    return np.linalg.LinAlgError(
        f"{what} + {ridge:g} * I is not positive definite; use a larger ridge (or noise)"
    )


def _cholesky(k: np.ndarray, ridge: float, name: str) -> Tuple[np.ndarray, bool]:
    """Lower Cholesky factor of k + ridge I, as scipy.linalg.cho_factor returns it."""
    regularised = k.copy()
    regularised.flat[:: k.shape[0] + 1] += ridge
    try:
        return scipy.linalg.cho_factor(regularised, lower=True, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError:
        raise _not_positive_definite(name, ridge) from None


def _shaped(values: np.ndarray, was_1d: bool) -> np.ndarray:
    return values[..., 0] if was_1d else values


class RidgePath:
    """One eigendecomposition of a training kernel, reused for every ridge.

    With ``k_train = Q diag(s) Q^T`` and ``G = k_train + ridge I``, everything below
    costs O(n^2 k) per ridge once the O(n^3) decomposition is done:

    - coefficients ``alpha = G^-1 y = Q diag(1/(s + ridge)) Q^T y``;
    - leave-one-out residuals ``y_i - f_{-i}(x_i) = alpha_i / (G^-1)_ii``, where
      ``f_{-i}`` is refitted without point i with the same ridge;
    - generalised cross-validation
      ``GCV = (1/(n k)) ||(I - H) y||_F^2 / (tr(I - H) / n)^2`` with the hat
      matrix ``H = k_train G^-1``, so ``I - H = ridge G^-1``.

    Parameters
    ----------
    k_train : (n, n) array
        Symmetric training kernel.
    y : (n,) or (n, k) array
        Targets.

    Attributes
    ----------
    eigenvalues : (n,) array
        ``s``, ascending.
    eigenvectors : (n, n) array
        ``Q``, one eigenvector per column.
    """

    def __init__(self, k_train, y):
        k, targets, self._was_1d = _train_kernel(k_train, y)
        self.eigenvalues, self.eigenvectors = scipy.linalg.eigh(k, check_finite=False)
        self._projected_targets = self.eigenvectors.T @ targets  # (n, k)

    def _inverse_eigenvalues(self, ridge: float) -> np.ndarray:
        shifted = self.eigenvalues + ridge
        if shifted[0] <= 0:
            raise _not_positive_definite("k_train", ridge)
        return 1.0 / shifted

    def _coefficients(self, ridge: float) -> np.ndarray:
        return self.eigenvectors @ (self._projected_targets * self._inverse_eigenvalues(ridge)[:, None])

    def coefficients(self, ridge: float) -> np.ndarray:
        """``(k_train + ridge I)^-1 y``, shaped like y."""
        return _shaped(self._coefficients(check_ridge(ridge)), self._was_1d)

    def loo_residuals(self, ridge: float) -> np.ndarray:
        """Leave-one-out residuals ``y_i - f_{-i}(x_i)``, shaped like y."""
        ridge = check_ridge(ridge)
        # diag(G^-1)_i = sum_j Q_ij^2 / (s_j + ridge), in one pass without an n x n temporary.
        q = self.eigenvectors
        inverse_diagonal = np.einsum("ij,j,ij->i", q, self._inverse_eigenvalues(ridge), q)
        return _shaped(self._coefficients(ridge) / inverse_diagonal[:, None], self._was_1d)

    def loo_error(self, ridges) -> np.ndarray:
        """Mean squared leave-one-out residual (over points and outputs) for each ridge."""
        return np.array([np.mean(self.loo_residuals(r) ** 2) for r in as_ridges(ridges)])

    def gcv_error(self, ridges) -> np.ndarray:
        """Generalised cross-validation score for each ridge (ridges must be > 0: at 0 it is 0/0)."""
        scores = []
        for ridge in as_ridges(ridges, positive=True):
            shrinkage = ridge * self._inverse_eigenvalues(ridge)  # eigenvalues of I - H
            residual = self._projected_targets * shrinkage[:, None]  # Q^T (I - H) y
            scores.append(np.mean(residual**2) / np.mean(shrinkage) ** 2)
        return np.array(scores)

    def select_ridge(self, candidates, criterion: str = "loo") -> Tuple[float, np.ndarray]:
        """The candidate with the smallest leave-one-out ("loo") or GCV ("gcv") error, and every error.

        Ties go to the largest ridge (the best-conditioned solution)."""
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be 'loo' or 'gcv', got {criterion!r}")
        ridges = as_ridges(candidates, "candidates", positive=criterion == "gcv")
        errors = self.loo_error(ridges) if criterion == "loo" else self.gcv_error(ridges)
        best = np.flatnonzero(errors == errors.min())
        return float(ridges[best[np.argmax(ridges[best])]]), errors


def _solve(k: np.ndarray, targets: np.ndarray, ridge, name: str = "k_train") -> np.ndarray:
    """(k + ridge I)^-1 targets for validated arrays; one Cholesky, or one eigendecomposition for many ridges."""
    if np.ndim(ridge) == 0:
        factor = _cholesky(k, check_ridge(ridge), name)
        return scipy.linalg.cho_solve(factor, targets, check_finite=False)
    ridges = as_ridges(ridge, "ridge")
    path = RidgePath(k, targets)
    return np.stack([path.coefficients(r) for r in ridges])


def ridge_coefficients(k_train, y, ridge) -> np.ndarray:
    """Kernel ridge coefficients ``alpha = (k_train + ridge I)^-1 y``.

    Parameters
    ----------
    k_train : (n, n) array
        Symmetric training kernel.
    y : (n,) or (n, k) array
        Targets.
    ridge : float or 1-D array
        One ridge >= 0 (one Cholesky factorisation), or several (one
        eigendecomposition serves them all).

    Returns
    -------
    array shaped like y, or (n_ridges,) + y.shape for several ridges.

    Raises
    ------
    numpy.linalg.LinAlgError
        If ``k_train + ridge I`` is not positive definite.
    """
    k, targets, was_1d = _train_kernel(k_train, y)
    return _shaped(_solve(k, targets, ridge), was_1d)


def kernel_ridge(k_train, y, k_test_train, ridge) -> np.ndarray:
    """Kernel ridge predictions ``k_test_train (k_train + ridge I)^-1 y`` for test points.

    Parameters
    ----------
    k_train : (n, n) array
    y : (n,) or (n, k) array
    k_test_train : (n_test, n) array
        Kernel of the test points against the training points.
    ridge : float or 1-D array
        As in :func:`nnpk.ridge_coefficients`.

    Returns
    -------
    (n_test,) or (n_test, k) array, or (n_ridges, n_test[, k]) for several ridges.
    """
    k, targets, was_1d = _train_kernel(k_train, y)
    k_test = _test_kernel(k_test_train, "k_test_train", k.shape[0], "k_train")
    return _shaped(np.matmul(k_test, _solve(k, targets, ridge)), was_1d)


def gp_posterior(k_train, k_test_train, y, k_test, *, noise: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
    """Posterior of a Gaussian process (e.g. the NNGP prior) given noisy training targets.

    With ``G = k_train + noise I`` (one Cholesky factorisation):
    mean ``k_test_train G^-1 y``, covariance ``k_test - k_test_train G^-1 k_test_train^T``
    of the latent function (the noise is not added back).

    Parameters
    ----------
    k_train : (n, n) array
        Prior covariance of the training points.
    k_test_train : (n_test, n) array
        Prior covariance of the test points with the training points.
    y : (n,) or (n, k) array
        Training targets, each column an independent output with the same prior.
    k_test : (n_test,) or (n_test, n_test) array
        The test points' prior variances (diagonal) or their full prior covariance.
    noise : float
        Observation noise variance >= 0; also serves as jitter.

    Returns
    -------
    mean : numpy.ndarray
        Shaped like y with n_test rows.
    variance : numpy.ndarray
        (n_test,) posterior variances if k_test is 1-D, clipped at 0 (rounding
        can take them slightly below where the posterior is nearly certain);
        (n_test, n_test) posterior covariance if k_test is 2-D.
    """
    k, targets, was_1d = _train_kernel(k_train, y)
    k_cross = _test_kernel(k_test_train, "k_test_train", k.shape[0], "k_train")
    n_test = k_cross.shape[0]
    why = f"k_test_train has {n_test} test points"
    if np.ndim(k_test) == 1:
        prior_variance = as_targets(k_test, "k_test", n_test, why)[0][:, 0]
    else:
        prior_variance = as_kernel(k_test, "k_test", symmetric=True, n_rows=n_test, why=why)
    lower, _ = _cholesky(k, check_ridge(noise, "noise"), "k_train")
    alpha = scipy.linalg.cho_solve((lower, True), targets, check_finite=False)
    mean = _shaped(k_cross @ alpha, was_1d)
    whitened = scipy.linalg.solve_triangular(lower, k_cross.T, lower=True, check_finite=False)  # L^-1 k_train_test
    if prior_variance.ndim == 1:
        return mean, np.maximum(prior_variance - np.einsum("ij,ij->j", whitened, whitened), 0.0)
    return mean, prior_variance - whitened.T @ whitened
