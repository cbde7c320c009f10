"""The linearised network along training: closed forms against explicit gradient descent on its parameters."""

import numpy as np
import pytest
import scipy.linalg

import nnpk


def linear_model(n, n_test, n_params, outputs, seed, per_logit=False):
    """Jacobians of a linear model f(x) = f0(x) + J(x) w, its NTKs, initial outputs and targets.

    Traced: one (n, p) Jacobian shared by every logit (w is (p, C)): the NTK is exactly Theta ⊗ I.
    Per logit: a (n, C, p) Jacobian (w is (p,)), the NTK (n, n, C, C) couples the logits."""
    rng = np.random.default_rng(seed)
    shape = (n + n_test, outputs, n_params) if per_logit else (n + n_test, n_params)
    jac = rng.standard_normal(shape) / np.sqrt(n_params)
    if per_logit:
        theta = np.einsum("icp,jdp->ijcd", jac, jac[:n])
    else:
        theta = jac @ jac[:n].T
    f0 = 0.3 * rng.standard_normal((n + n_test, outputs))
    labels = rng.integers(0, outputs, n)
    y = np.eye(outputs)[labels]
    return jac, theta[:n], theta[n:], f0[:n], f0[n:], y


def gradient_descent(jac, f0, y, n, ridge, lr, steps, loss, per_logit):
    """Outputs on every point after each step of gradient descent on the parameters (written out)."""
    n_params = jac.shape[-1]
    w = np.zeros(n_params) if per_logit else np.zeros((n_params, y.shape[1]))
    forward = lambda w: f0 + jac @ w  # noqa: E731
    outputs = [forward(w)]
    for _ in range(steps):
        f = forward(w)[:n]
        if loss == "squared":
            residual = f - y
        else:
            p = np.exp(f - f.max(axis=1, keepdims=True))
            residual = p / p.sum(axis=1, keepdims=True) - y
        grad = (np.einsum("icp,ic->p", jac[:n], residual) if per_logit else jac[:n].T @ residual) / n
        w = w - lr * (grad + ridge / n * w)
        outputs.append(forward(w))
    return np.array(outputs)


def flow_in_parameters(jac, f0, y, n, ridge, lr, t, per_logit):
    """Outputs on every point of the squared-loss gradient flow on the parameters at time lr t, in closed form.

    dw/ds = -(A w - b), A = (J^T J + ridge I) / n, b = J^T (y - f0) / n: w(s) = A^-1 (I - expm(-s A)) b
    (A invertible: more points than parameters, or a ridge)."""
    flat = jac[:n].reshape(-1, jac.shape[-1])
    residual = (y - f0[:n]).reshape(-1) if per_logit else y - f0[:n]
    a = (flat.T @ flat + ridge * np.eye(flat.shape[1])) / n
    b = flat.T @ residual / n
    w = np.linalg.solve(a, (np.eye(a.shape[0]) - scipy.linalg.expm(-lr * t * a)) @ b)
    return f0 + jac @ w


@pytest.mark.parametrize("per_logit", [False, True])
@pytest.mark.parametrize("ridge", [0.0, 0.7])
def test_squared_loss_flow_matches_the_flow_of_the_parameters(per_logit, ridge):
    # 5 parameters, 12 training points: Theta(X, X) has rank 5, singular; the parameters' flow is not.
    n, n_test = 12, 4
    jac, theta, theta_test, f0_tr, f0_te, y = linear_model(n, n_test, 5, 3, seed=1, per_logit=per_logit)
    times = np.array([0.0, 0.5, 3.0, 40.0])
    test, train = nnpk.linearized_prediction(theta, theta_test, f0_tr, f0_te, y, ridge=ridge, time=times, lr=0.3,
                                             return_train=True)
    assert test.shape == (4, n_test, 3) and train.shape == (4, n, 3)
    for i, t in enumerate(times):
        expected = flow_in_parameters(jac, np.vstack([f0_tr, f0_te]), y, n, ridge, 0.3, t, per_logit)
        np.testing.assert_allclose(train[i], expected[:n], rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(test[i], expected[n:], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("per_logit", [False, True])
def test_squared_loss_flow_is_the_limit_of_gradient_descent(per_logit):
    # t steps of size lr approach the flow at time t as the step shrinks: refine 400-fold.
    n, n_test, steps, lr, refine = 10, 3, 6, 0.8, 400
    jac, theta, theta_test, f0_tr, f0_te, y = linear_model(n, n_test, 20, 2, seed=2, per_logit=per_logit)
    flow = nnpk.linearized_prediction(theta, theta_test, f0_tr, f0_te, y, time=steps, lr=lr)
    descent = gradient_descent(jac, np.vstack([f0_tr, f0_te]), y, n, 0.0, lr / refine, steps * refine, "squared",
                               per_logit)
    gap = np.abs(flow - descent[-1][n:]).max()
    assert gap < 2e-3 * np.abs(descent[-1][n:] - f0_te).max()


def test_squared_loss_at_large_time_is_the_end_of_training():
    n = 8
    _, theta, theta_test, f0_tr, f0_te, y = linear_model(n, 5, 30, 2, seed=3)
    end = nnpk.linearized_prediction(theta, theta_test, f0_tr, f0_te, y)
    late, train = nnpk.linearized_prediction(theta, theta_test, f0_tr, f0_te, y, time=1e9, lr=1.0, return_train=True)
    np.testing.assert_allclose(late, end, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(train, y, atol=1e-9)  # Theta positive definite: the training targets are fitted


def test_scalar_time_and_one_output():
    n = 8
    _, theta, theta_test, f0_tr, f0_te, y = linear_model(n, 5, 30, 1, seed=4)
    stacked = nnpk.linearized_prediction(theta, theta_test, f0_tr[:, 0], f0_te[:, 0], y[:, 0] + 0.5, time=[2.0, 0.0])
    one = nnpk.linearized_prediction(theta, theta_test, f0_tr[:, 0], f0_te[:, 0], y[:, 0] + 0.5, time=2.0)
    assert stacked.shape == (2, 5) and one.shape == (5,)
    np.testing.assert_array_equal(stacked[0], one)
    np.testing.assert_array_equal(stacked[1], f0_te[:, 0])


def test_end_of_training_with_the_kernel_per_pair_of_logits():
    n = 6
    jac, theta, theta_test, f0_tr, f0_te, y = linear_model(n, 3, 25, 2, seed=5, per_logit=True)
    flat = theta.transpose(0, 2, 1, 3).reshape(2 * n, 2 * n)
    flat_test = theta_test.transpose(0, 2, 1, 3).reshape(6, 2 * n)
    expected = f0_te + (flat_test @ np.linalg.solve(flat + 0.1 * np.eye(2 * n), (y - f0_tr).reshape(-1))).reshape(3, 2)
    np.testing.assert_allclose(nnpk.linearized_prediction(theta, theta_test, f0_tr, f0_te, y, ridge=0.1), expected,
                               rtol=1e-10)


@pytest.mark.parametrize("per_logit", [False, True])
@pytest.mark.parametrize("ridge", [0.0, 0.5])
def test_cross_entropy_descent_matches_gradient_descent_on_the_parameters(per_logit, ridge):
    n, n_test, lr = 9, 4, 2.0
    jac, theta, theta_test, f0_tr, f0_te, y = linear_model(n, n_test, 7, 3, seed=6, per_logit=per_logit)
    steps = [5, 0, 30]
    test, train = nnpk.linearized_prediction(theta, theta_test, f0_tr, f0_te, y, ridge=ridge, time=steps, lr=lr,
                                             loss="cross_entropy", return_train=True)
    descent = gradient_descent(jac, np.vstack([f0_tr, f0_te]), y, n, ridge, lr, 30, "cross_entropy", per_logit)
    for i, k in enumerate(steps):
        np.testing.assert_allclose(test[i], descent[k][n:], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(train[i], descent[k][:n], rtol=1e-10, atol=1e-12)
    assert not np.allclose(test[2], f0_te)


def test_cross_entropy_with_a_network_kernel_learns_the_training_labels():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((16, 5))
    arch = nnpk.MLP(hidden=[64], out=2)
    params = nnpk.sample_params(arch, 5, seed=0, index=0)
    theta = nnpk.empirical(x, arch=arch, params=params)
    f0 = nnpk.initial_outputs(x, arch, seed=0)
    y = np.eye(2)[(x[:, 0] > 0).astype(int)]
    _, train = nnpk.linearized_prediction(theta, theta, f0, f0, y, time=[0, 400], lr=4.0, loss="cross_entropy",
                                          return_train=True)
    assert np.mean(train[1].argmax(1) == y.argmax(1)) == 1.0


K = np.array([[2.0, 0.5], [0.5, 1.0]])
KX = np.ones((3, 2))
F_TR, F_TE = np.zeros((2, 2)), np.zeros((3, 2))
Y = np.eye(2)
K4 = np.ones((2, 2, 2, 2))


@pytest.mark.parametrize(
    "kwargs, args, error, match",
    [
        (dict(time=-1.0), None, ValueError, "time must be finite and >= 0, got -1.0"),
        (dict(time=[1.0, np.nan]), None, ValueError, "time must be finite and >= 0, got nan"),
        (dict(time=[[1.0]]), None, ValueError, "time must be a number or a non-empty 1-D array"),
        (dict(time=[]), None, ValueError, "time must be a number or a non-empty 1-D array"),
        (dict(time="long"), None, TypeError, "time must be a number"),
        (dict(time=1.0, lr=0.0), None, ValueError, "lr must be finite and > 0, got 0.0"),
        (dict(lr=-1.0), None, ValueError, "lr must be finite and > 0"),
        (dict(time=1.0, lr=True), None, TypeError, "lr must be a real number"),
        (dict(loss="hinge"), None, ValueError, "loss must be 'squared' or 'cross_entropy', got 'hinge'"),
        (dict(loss="cross_entropy"), None, ValueError, "loss='cross_entropy' needs time"),
        (dict(loss="cross_entropy", time=2.5), None, ValueError, "must be whole, got 2.5"),
        (dict(loss="cross_entropy", time=2), (K, KX, F_TR, F_TE, 2 * Y), ValueError, "row 0 sums to 2"),
        (dict(loss="cross_entropy", time=2), (K, KX, F_TR[:, 0], F_TE[:, 0], Y[:, 0]), ValueError,
         "C >= 2, for loss='cross_entropy'"),
        (dict(time=1.0), (K4, np.ones((3, 2, 2, 1)), F_TR, F_TE, Y), ValueError,
         "theta_test_train must have shape \\(n_test, 2, 2, 2\\)"),
        (dict(time=1.0), (np.ones((2, 3, 2, 2)), K4, F_TR, F_TE, Y), ValueError, "must have shape \\(n, n, C, C\\)"),
        (dict(time=1.0), (K4, K4, F_TR, F_TE[:2], np.ones((2, 3))), ValueError, "y has 3 outputs, theta_train has 2"),
        (dict(time=1.0), (K4, K4, F_TR, F_TE, Y), ValueError, "f0_test has 3 rows, expected 2"),
        (dict(time=1.0), (np.array([[1.0, 2.0], [2.0, 1.0]]), KX, F_TR, F_TE, Y), np.linalg.LinAlgError,
         "negative eigenvalue -1"),
    ],
)
def test_errors(kwargs, args, error, match):
    with pytest.raises(error, match=match):
        nnpk.linearized_prediction(*(args or (K, KX, F_TR, F_TE, Y)), **kwargs)
