"""nnpk.learn against direct numpy linear algebra: ridge, leave-one-out, GCV, linearised network, GP."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnpk
from nnpk.learn import RidgePath

RIDGES = [1e-4, 1e-2, 1.0, 10.0]


def relu_nngp(n_train, n_test=0, seed=0):
    """A positive definite Monte Carlo NNGP of random points (rank n_networks * out > n), split train / test."""
    x = np.random.default_rng(seed).standard_normal((n_train + n_test, 5))
    arch = nnpk.MLP(hidden=[64], out=8, b_std=0.2)
    k = nnpk.monte_carlo(x, arch=arch, n_networks=16, seed=seed)
    return k[:n_train, :n_train], k[n_train:, :n_train], k[n_train:, n_train:]


@pytest.fixture(scope="module")
def problem():
    k_train, k_test_train, k_test = relu_nngp(24, 7)
    y = np.random.default_rng(1).standard_normal((24, 3))
    return k_train, k_test_train, k_test, y


@pytest.mark.parametrize("ridge", RIDGES)
@pytest.mark.parametrize("columns", [None, 3])
def test_ridge_coefficients_match_solve(problem, ridge, columns):
    k_train, _, _, y = problem
    targets = y[:, 0] if columns is None else y
    expected = np.linalg.solve(k_train + ridge * np.eye(len(k_train)), targets)
    alpha = nnpk.ridge_coefficients(k_train, targets, ridge)
    assert alpha.shape == targets.shape
    np.testing.assert_allclose(alpha, expected, rtol=1e-8, atol=1e-10)


def test_many_ridges_from_one_eigendecomposition(problem):
    k_train, k_test_train, _, y = problem
    alphas = nnpk.ridge_coefficients(k_train, y, RIDGES)
    predictions = nnpk.kernel_ridge(k_train, y, k_test_train, RIDGES)
    assert alphas.shape == (len(RIDGES),) + y.shape
    assert predictions.shape == (len(RIDGES), len(k_test_train), y.shape[1])
    for ridge, alpha, prediction in zip(RIDGES, alphas, predictions):
        expected = np.linalg.solve(k_train + ridge * np.eye(len(k_train)), y)
        np.testing.assert_allclose(alpha, expected, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(prediction, k_test_train @ expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("ridge", [0.05, [0.05]])
def test_kernel_ridge_predictions(problem, ridge):
    k_train, k_test_train, _, y = problem
    expected = k_test_train @ np.linalg.solve(k_train + 0.05 * np.eye(len(k_train)), y[:, 1])
    predictions = nnpk.kernel_ridge(k_train, y[:, 1], k_test_train, ridge)
    np.testing.assert_allclose(np.reshape(predictions, expected.shape), expected, rtol=1e-8)


def refit_loo_residuals(k_train, y, ridge):
    """Drop each point, refit on the rest, predict it."""
    n = len(k_train)
    residuals = np.empty_like(y)
    for i in range(n):
        keep = np.arange(n) != i
        alpha = np.linalg.solve(k_train[np.ix_(keep, keep)] + ridge * np.eye(n - 1), y[keep])
        residuals[i] = y[i] - k_train[i, keep] @ alpha
    return residuals


@pytest.mark.parametrize("ridge", RIDGES)
def test_loo_residuals_match_explicit_refits(problem, ridge):
    k_train, _, _, y = problem
    path = RidgePath(k_train, y)
    np.testing.assert_allclose(path.loo_residuals(ridge), refit_loo_residuals(k_train, y, ridge), rtol=1e-6, atol=1e-9)
    path_1d = RidgePath(k_train, y[:, 0])
    np.testing.assert_allclose(path_1d.loo_residuals(ridge), refit_loo_residuals(k_train, y[:, :1], ridge)[:, 0],
                               rtol=1e-6, atol=1e-9)


def test_loo_error_and_selection(problem):
    k_train, _, _, y = problem
    path = RidgePath(k_train, y)
    expected = [np.mean(refit_loo_residuals(k_train, y, r) ** 2) for r in RIDGES]
    np.testing.assert_allclose(path.loo_error(RIDGES), expected, rtol=1e-6)
    best, errors = path.select_ridge(RIDGES, "loo")
    np.testing.assert_allclose(errors, expected, rtol=1e-6)
    assert best == RIDGES[int(np.argmin(expected))]


def direct_gcv(k_train, y, ridge):
    n = len(k_train)
    hat = k_train @ np.linalg.inv(k_train + ridge * np.eye(n))
    residual = (np.eye(n) - hat) @ y
    return np.mean(residual**2) / (np.trace(np.eye(n) - hat) / n) ** 2


def test_gcv_matches_direct_formula(problem):
    k_train, _, _, y = problem
    path = RidgePath(k_train, y)
    expected = [direct_gcv(k_train, y, r) for r in RIDGES]
    np.testing.assert_allclose(path.gcv_error(RIDGES), expected, rtol=1e-6)
    best, _ = path.select_ridge(RIDGES, "gcv")
    assert best == RIDGES[int(np.argmin(expected))]
    np.testing.assert_allclose(RidgePath(k_train, y[:, 2]).gcv_error([0.3]), [direct_gcv(k_train, y[:, 2], 0.3)],
                               rtol=1e-6)


def test_select_ridge_breaks_ties_towards_the_larger_ridge(problem):
    # Zero targets fit exactly with zero coefficients whatever the ridge: every error is 0.
    best, errors = RidgePath(problem[0], np.zeros(24)).select_ridge([0.1, 1.0, 0.5], "loo")
    assert best == 1.0 and np.all(errors == 0)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), outputs=st.integers(1, 3), seed=st.integers(0, 2**31), ridge=st.floats(1e-3, 1e2))
def test_cholesky_and_eigendecomposition_agree(n, outputs, seed, ridge):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n, n + 2))
    k_train = features @ features.T
    y = rng.standard_normal((n, outputs))
    direct = np.linalg.solve(k_train + ridge * np.eye(n), y)
    np.testing.assert_allclose(nnpk.ridge_coefficients(k_train, y, ridge), direct, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(RidgePath(k_train, y).coefficients(ridge), direct, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("ridge", [0.0, 1e-3])
def test_linearized_prediction_matches_direct_solve(ridge):
    theta_train, theta_test_train, _ = relu_nngp(20, 6, seed=3)
    rng = np.random.default_rng(4)
    f0_train, f0_test, y = rng.standard_normal((20, 2)), rng.standard_normal((6, 2)), rng.standard_normal((20, 2))
    expected = f0_test + theta_test_train @ np.linalg.solve(theta_train + ridge * np.eye(20), y - f0_train)
    got = nnpk.linearized_prediction(theta_train, theta_test_train, f0_train, f0_test, y, ridge=ridge)
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)


def test_linearized_prediction_interpolates_training_targets():
    # Gradient flow on the squared loss drives the training residual to 0 (Theta positive definite).
    x = np.random.default_rng(5).standard_normal((15, 4))
    arch = nnpk.MLP(hidden=[32], out=1)
    theta = nnpk.monte_carlo(x, arch=arch, n_networks=64)
    f0 = nnpk.initial_outputs(x, arch, seed=9)
    y = np.sin(x[:, 0])
    prediction = nnpk.linearized_prediction(theta, theta, f0, f0, y)
    assert prediction.shape == y.shape
    np.testing.assert_allclose(prediction, y, atol=1e-8)


@pytest.mark.parametrize(
    "arch",
    [
        nnpk.MLP(hidden=[16, 8], out=3, activation="relu", W_std=1.3, b_std=0.4),
        nnpk.MLP(hidden=[12], out=2, activation="tanh", W_std=[1.1, 0.9], b_std=[None, 0.3],
                 parameterization="standard"),
        nnpk.MLP(hidden=[10], out=1, activation="erf", normalize=True),
        nnpk.MLP(hidden=[], out=2, b_std=1.0),
    ],
)
def test_initial_outputs_match_the_engine(arch):
    """f0 f0^T / C of network m is the engine's one-network NNGP; the mean over m is its M-network NNGP."""
    x = np.random.default_rng(6).standard_normal((9, 5))
    outputs = [nnpk.initial_outputs(x, arch, seed=11, index=m) for m in range(3)]
    assert outputs[0].shape == (9, arch.out)
    np.testing.assert_allclose(outputs[0] @ outputs[0].T / arch.out,
                               nnpk.monte_carlo(x, arch=arch, n_networks=1, seed=11, estimator="sampled"),
                               rtol=1e-10, atol=1e-12)
    mean_kernel = sum(f @ f.T for f in outputs) / (3 * arch.out)
    np.testing.assert_allclose(mean_kernel, nnpk.monte_carlo(x, arch=arch, n_networks=3, seed=11, estimator="sampled"),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("noise", [1e-3, 0.5])
def test_gp_posterior_matches_direct_computation(problem, noise):
    k_train, k_test_train, k_test, y = problem
    inverse = np.linalg.inv(k_train + noise * np.eye(len(k_train)))
    expected_mean = k_test_train @ inverse @ y
    expected_covariance = k_test - k_test_train @ inverse @ k_test_train.T
    mean, covariance = nnpk.gp_posterior(k_train, k_test_train, y, k_test, noise=noise)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(covariance, expected_covariance, rtol=1e-6, atol=1e-9)
    mean_1d, variance = nnpk.gp_posterior(k_train, k_test_train, y[:, 0], np.diag(k_test), noise=noise)
    np.testing.assert_allclose(mean_1d, expected_mean[:, 0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(variance, np.diag(expected_covariance), rtol=1e-6, atol=1e-9)
    assert np.all(variance > 0)


def test_gp_posterior_at_training_points_without_noise_is_certain(problem):
    k_train, _, _, y = problem
    mean, variance = nnpk.gp_posterior(k_train, k_train, y, np.diag(k_train))
    np.testing.assert_allclose(mean, y, atol=1e-7)
    np.testing.assert_allclose(variance, 0.0, atol=1e-7)


K = np.eye(3) + 0.1
K_NAN = K.copy()
K_NAN[1, 2] = K_NAN[2, 1] = np.nan
Y = np.ones(3)
KX = np.ones((2, 3))
NOT_PD = np.ones((3, 3))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: nnpk.ridge_coefficients(np.ones((3, 4)), Y, 1.0), ValueError, "k_train must be square"),
        (lambda: nnpk.ridge_coefficients(np.ones(3), Y, 1.0), ValueError, "k_train must be a 2-D"),
        (lambda: nnpk.ridge_coefficients(np.ones((0, 0)), Y, 1.0), ValueError, "k_train is empty"),
        (lambda: nnpk.ridge_coefficients(None, Y, 1.0), TypeError, "k_train must be an array"),
        (lambda: nnpk.ridge_coefficients(K.astype(complex), Y, 1.0), TypeError, "k_train must hold real"),
        (lambda: nnpk.ridge_coefficients(K_NAN, Y, 1.0), ValueError, "k_train contains NaN"),
        (lambda: nnpk.ridge_coefficients(np.triu(K), Y, 1.0), ValueError, "k_train is not symmetric"),
        (lambda: nnpk.ridge_coefficients(K, np.ones(4), 1.0), ValueError, "y has 4 rows, expected 3"),
        (lambda: nnpk.ridge_coefficients(K, np.ones((3, 1, 1)), 1.0), ValueError, "y must be 1-D"),
        (lambda: nnpk.ridge_coefficients(K, np.ones((3, 0)), 1.0), ValueError, "y has no columns"),
        (lambda: nnpk.ridge_coefficients(K, [1.0, np.inf, 0.0], 1.0), ValueError, "y contains NaN or inf"),
        (lambda: nnpk.ridge_coefficients(K, Y, -1.0), ValueError, "ridge must be finite and >= 0"),
        (lambda: nnpk.ridge_coefficients(K, Y, np.nan), ValueError, "ridge must be finite and >= 0"),
        (lambda: nnpk.ridge_coefficients(K, Y, "big"), TypeError, "ridge must be a real number"),
        (lambda: nnpk.ridge_coefficients(K, Y, True), TypeError, "ridge must be a real number"),
        (lambda: nnpk.ridge_coefficients(K, Y, [0.1, -1.0]), ValueError, "ridge must be finite and >= 0"),
        (lambda: nnpk.ridge_coefficients(K, Y, []), ValueError, "non-empty 1-D array"),
        (lambda: nnpk.ridge_coefficients(NOT_PD, Y, 0.0), np.linalg.LinAlgError, "not positive definite"),
        (lambda: nnpk.ridge_coefficients(NOT_PD, Y, [0.0]), np.linalg.LinAlgError, "not positive definite"),
        (lambda: nnpk.kernel_ridge(K, Y, np.ones((2, 4)), 1.0), ValueError, "k_test_train has 4 columns, expected 3"),
        (lambda: nnpk.kernel_ridge(K, Y, np.ones(3), 1.0), ValueError, "k_test_train must be a 2-D"),
        (lambda: RidgePath(K, Y).gcv_error([0.0, 1.0]), ValueError, "ridges must be finite and > 0"),
        (lambda: RidgePath(K, Y).select_ridge([1.0], "aic"), ValueError, "criterion must be 'loo' or 'gcv'"),
        (lambda: RidgePath(K, Y).select_ridge([[1.0]]), ValueError, "candidates must be a non-empty 1-D"),
        (lambda: RidgePath(K, Y).loo_residuals(-0.5), ValueError, "ridge must be finite"),
        (lambda: nnpk.linearized_prediction(K, np.ones((2, 4)), Y, np.ones(2), Y), ValueError,
         "theta_test_train has 4 columns, expected 3"),
        (lambda: nnpk.linearized_prediction(np.ones((3, 2)), KX, Y, np.ones(2), Y), ValueError,
         "theta_train must be square"),
        (lambda: nnpk.linearized_prediction(K, KX, np.ones(4), np.ones(2), Y), ValueError,
         "f0_train has 4 rows, expected 3"),
        (lambda: nnpk.linearized_prediction(K, KX, Y, np.ones(3), Y), ValueError, "f0_test has 3 rows, expected 2"),
        (lambda: nnpk.linearized_prediction(K, KX, np.ones((3, 2)), np.ones((2, 2)), Y), ValueError,
         "f0_train has 2 outputs, y has 1"),
        (lambda: nnpk.linearized_prediction(K, KX, Y, np.ones((2, 2)), Y), ValueError,
         "f0_test has 2 outputs, y has 1"),
        (lambda: nnpk.linearized_prediction(K, KX, Y, np.ones(2), Y, ridge=-1), ValueError, "ridge must be finite"),
        (lambda: nnpk.linearized_prediction(NOT_PD, KX, Y, np.ones(2), Y), np.linalg.LinAlgError,
         "theta_train \\+ 0 \\* I is not positive definite"),
        (lambda: nnpk.gp_posterior(K, KX, Y, np.ones(3)), ValueError, "k_test has 3 rows, expected 2"),
        (lambda: nnpk.gp_posterior(K, KX, Y, np.ones((2, 3))), ValueError, "k_test must be square"),
        (lambda: nnpk.gp_posterior(K, KX, Y, np.triu(np.ones((2, 2)))), ValueError, "k_test is not symmetric"),
        (lambda: nnpk.gp_posterior(K, KX, Y, np.ones(2), noise=-1e-3), ValueError, "noise must be finite and >= 0"),
        (lambda: nnpk.gp_posterior(NOT_PD, KX, Y, np.ones(2)), np.linalg.LinAlgError, "k_train \\+ 0 \\* I"),
        (lambda: nnpk.initial_outputs(np.ones((2, 3)), "mlp"), TypeError, "arch must be an nnpk.MLP"),
        (lambda: nnpk.initial_outputs(np.ones(3), nnpk.MLP(hidden=[4])), ValueError, "x must be a 2-D array"),
        (lambda: nnpk.initial_outputs(np.ones((2, 3)), nnpk.MLP(hidden=[4]), index=-1), ValueError,
         "index must be >= 0"),
        (lambda: nnpk.initial_outputs(np.ones((2, 3)), nnpk.MLP(hidden=[4]), seed=1.5), TypeError,
         "seed must be an integer"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
