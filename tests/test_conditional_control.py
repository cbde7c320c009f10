"""The conditional estimator's control variate: where the integrated layer reads the first hidden layer, each
network's conditional kernel minus the linear part of its fluctuation about the first layer's known mean
covariance. Checked against a numpy reference written here (forward pass from sample_params, closed-form dual
maps, derivatives by finite differences), for unbiasedness of the correction, and for the variance it removes."""

import numpy as np
import pytest
from scipy.special import erf

import nnpk
from nnpk.architectures._params import prepare_network_points
from engine_sums import conditional_sums

RNG = np.random.default_rng(11)
X = RNG.standard_normal((37, 9))
X2 = RNG.standard_normal((23, 9))


def dual(act, q1, q2, c):
    """E[phi(u) phi(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]]) (arrays broadcast)."""
    if act == "relu":
        p = np.sqrt(q1 * q2)
        rho = np.clip(c / p, -1.0, 1.0)
        theta = np.arccos(rho)
        return p * (np.sin(theta) + (np.pi - theta) * rho) / (2 * np.pi)
    return 2 / np.pi * np.arcsin(2 * c / np.sqrt((1 + 2 * q1) * (1 + 2 * q2)))


def phi(act, z):
    return np.maximum(z, 0.0) if act == "relu" else erf(z)


def pre_activations(arch, x, W, b, std, fan_in):
    """One dense layer's pre-activations from sample_params' parameters."""
    if arch.parameterization == "ntk":
        z = x @ W * (std[0] / np.sqrt(fan_in))
        return z if b is None else z + std[1] * b
    return x @ W if b is None else x @ W + b


def reference_sums(arch, act, x1, x2, seed, n_networks, w, bs):
    """Sum over networks of the second hidden layer's conditional kernel with the control variate, by numpy."""
    d = x1.shape[1]
    width = arch.hidden[0]
    b2 = [0.0 if s is None else s**2 for s in bs]

    def first_layer_mean(a, b):  # E Sigma of the second dense layer's pre-activations
        s0 = w[0] ** 2 * (a @ b.T) / d + b2[0]
        q0a = w[0] ** 2 * np.sum(a * a, 1) / d + b2[0]
        q0b = w[0] ** 2 * np.sum(b * b, 1) / d + b2[0]
        return w[1] ** 2 * dual(act, q0a[:, None], q0b[None, :], s0) + b2[1]

    S = first_layer_mean(x1, x2)
    q1 = np.diag(first_layer_mean(x1, x1))
    q2 = np.diag(first_layer_mean(x2, x2))
    Q1, Q2 = q1[:, None], q2[None, :]
    # dual's derivatives at the mean by central differences; a diagonal entry (x = x', where c = q1 = q2 and a
    # step in one of them alone leaves the correlations' range) moves along the diagonal, c = q1 = q2 = q.
    h = 1e-6
    sigma_dot = (dual(act, Q1, Q2, S * (1 + h)) - dual(act, Q1, Q2, S * (1 - h))) / (2 * h * S)
    d_q1 = (dual(act, Q1 * (1 + h), Q2, S) - dual(act, Q1 * (1 - h), Q2, S)) / (2 * h * Q1)
    d_q2 = (dual(act, Q1, Q2 * (1 + h), S) - dual(act, Q1, Q2 * (1 - h), S)) / (2 * h * Q2)
    diagonal = x1 is x2
    if diagonal:
        along = (dual(act, q1 * (1 + h), q1 * (1 + h), q1 * (1 + h)) - dual(act, q1 * (1 - h), q1 * (1 - h),
                                                                           q1 * (1 - h))) / (2 * h * q1)
        for a in (sigma_dot, d_q1, d_q2):
            np.fill_diagonal(a, along / 3)
    total = np.zeros((len(x1), len(x2)))
    for m in range(n_networks):
        (W0, B0), _, _ = nnpk.sample_params(arch, d, seed, m)
        h1 = phi(act, pre_activations(arch, x1, W0, B0, (w[0], bs[0]), d))
        h2 = phi(act, pre_activations(arch, x2, W0, B0, (w[0], bs[0]), d))
        c = w[1] ** 2 * (h1 @ h2.T) / width + b2[1]
        p1 = w[1] ** 2 * np.sum(h1 * h1, 1) / width + b2[1]
        p2 = w[1] ** 2 * np.sum(h2 * h2, 1) / width + b2[1]
        P1, P2 = p1[:, None], p2[None, :]
        total += dual(act, P1, P2, c) - (sigma_dot * (c - S) + d_q1 * (P1 - Q1) + d_q2 * (P2 - Q2))
    return total


@pytest.mark.parametrize("act", ["relu", "erf"])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("b_std", [None, 0.4])
@pytest.mark.parametrize("with_x2", [False, True])
def test_control_variate_matches_numpy(act, parameterization, b_std, with_x2):
    w = [1.3, 1.1, 0.9]
    arch = nnpk.MLP(hidden=[40, 30], out=2, activation=act, W_std=w, b_std=b_std, parameterization=parameterization)
    x2 = X2 if with_x2 else None
    (engine,) = conditional_sums(X, x2, arch, layers=[1], seed=3, start=0, stop=3, n_threads=2)
    bs = [b_std] * 3
    expected = reference_sums(arch, act, X, X if x2 is None else X2, 3, 3, w, bs)
    assert np.abs(engine - expected).max() <= 1e-7 * np.abs(expected).max()
    # The correction is a mean-zero term: without it, the plain conditional sums.
    (plain,) = conditional_sums(X, x2, arch, layers=[1], seed=3, start=0, stop=3, n_threads=2, control=False)
    assert not np.array_equal(engine, plain)


def test_the_correction_has_mean_zero():
    """E Sigma is the mean of the sampled covariance: over many networks the corrected and the plain sums meet
    (their difference is the correction's average, which shrinks as 1/sqrt(networks))."""
    arch = nnpk.MLP(hidden=[6, 5], out=1, W_std=1.2, b_std=0.3)
    x = X[:12]
    diffs = []
    for n in (16, 1024):
        (cv,) = conditional_sums(x, None, arch, layers=[1], seed=0, start=0, stop=n, n_threads=2)
        (plain,) = conditional_sums(x, None, arch, layers=[1], seed=0, start=0, stop=n, n_threads=2, control=False)
        diffs.append(np.linalg.norm(cv - plain) / np.linalg.norm(plain))
    assert diffs[1] < diffs[0] / 3  # expected 8x smaller


def test_control_variate_removes_most_of_the_variance():
    """Two networks of width 64 on 60 points: the corrected estimate is within a fraction of the plain
    conditional estimate's error of the infinite-width kernel (left: the finite-width bias, O(1/width))."""
    arch = nnpk.MLP(hidden=[256, 256], out=3, b_std=0.1)
    x = RNG.standard_normal((60, 20))
    exact = nnpk.analytic(x, arch=arch)
    compiled, a1, _ = prepare_network_points(x, None, arch, "float64")
    errors = {}
    for control in (True, False):
        (sums,) = conditional_sums(x, None, arch, layers=[1], seed=1, start=0, stop=2, n_threads=2, control=control)
        estimate = sums / 2 + 0.1**2  # the readout: W_std = 1, b_std = 0.1
        errors[control] = np.linalg.norm(estimate - exact) / np.linalg.norm(exact)
    assert errors[True] < 0.25 * errors[False]
    # and monte_carlo's default uses it
    K = nnpk.monte_carlo(x, arch=arch, n_networks=2, seed=1)
    assert np.linalg.norm(K - exact) / np.linalg.norm(exact) == pytest.approx(errors[True], rel=1e-9)


@pytest.mark.parametrize("arch", [
    nnpk.MLP(hidden=[8, 8, 8], out=1),             # the last layer reads the second hidden layer
    nnpk.MLP(hidden=[8, 8], out=1, init="uniform"),  # the first layer's pre-activations are not Gaussian
    nnpk.MLP(hidden=[8, 8], out=1, activation="tanh"),  # no closed-form dual map
])
def test_no_control_variate_where_the_mean_is_unknown(arch):
    (sums,) = conditional_sums(X, None, arch, layers=[arch.n_layers - 2], seed=0, start=0, stop=2, n_threads=1)
    (plain,) = conditional_sums(X, None, arch, layers=[arch.n_layers - 2], seed=0, start=0, stop=2, n_threads=1,
                                control=False)
    assert np.array_equal(sums, plain)


def test_engine_refuses_a_control_it_cannot_take():
    arch = nnpk.MLP(hidden=[8, 8, 8], out=1)
    compiled, a1, _ = prepare_network_points(X, None, arch, "float64")
    nodes = compiled.layer_nodes
    pair = [(nodes[4], nodes[5])]  # the third hidden layer reads the second
    with pytest.raises(ValueError, match="pair 0: no control variate: the activation does not read a dense node "
                                         "reading the input"):
        nnpk._core.sequential_conditional_sums(a1, None, compiled.spec, pair, [False], 0, 0, 1, 1, 96, 96, None, None,
                                               False, 1, [False])
    with pytest.raises(ValueError, match=r"controls needs one entry per pair \(1\), got 2"):
        nnpk._core.sequential_conditional_sums(a1, None, compiled.spec, pair, [False], 0, 0, 1, 1, 96, 96, None, None,
                                               False, 1, [None, None])
