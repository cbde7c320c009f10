"""Initialisation schemes: the promised distributions and variances, checked against scipy and
numpy's QR, and the engine drawing exactly what sample_params returns."""

import math

import numpy as np
import pytest
from scipy import stats

import nnpk
from nnpk import Conv, Dense, Flatten, Network
from reference_networks import forward

TRUNCATED = stats.truncnorm(-2.0, 2.0)
TRUNCATED_STD = math.sqrt(TRUNCATED.var())


def weights(init, fan_in, fan_out, index=0, seed=7):
    net = Network([Dense(fan_out, b_std=1.0)], init=init)
    return nnpk.sample_params(net, fan_in, seed, index)[0]


@pytest.mark.parametrize(
    "init, law",
    [
        ("gaussian", stats.norm()),
        ("uniform", stats.uniform(-math.sqrt(3), 2 * math.sqrt(3))),
        ("truncated_normal", stats.truncnorm(-2.0, 2.0, scale=1 / TRUNCATED_STD)),
    ],
)
def test_elementwise_schemes_draw_their_law_with_unit_variance(init, law):
    W, b = weights(init, 400, 500)
    w = W.ravel()
    assert abs(w.mean()) < 5 / math.sqrt(w.size)
    assert abs(w.var() - 1) < 6 * math.sqrt(2 / w.size) * math.sqrt(law.stats(moments="k") / 2 + 1)
    assert law.var() == pytest.approx(1.0, rel=1e-12)
    assert stats.kstest(w, law.cdf).pvalue > 1e-3
    # the same law's kurtosis: the draws are not Gaussian ones rescaled
    assert stats.kurtosis(w) == pytest.approx(float(law.stats(moments="k")), abs=0.03)
    assert np.abs(w).max() <= law.support()[1]
    # biases stay Gaussian under every scheme (their stream is the Gaussian reference's)
    assert np.array_equal(b, weights("gaussian", 400, 500)[1])


@pytest.mark.parametrize("fan_in, fan_out", [(50, 20), (20, 50), (30, 30)])
def test_orthogonal_is_the_sign_fixed_qr_of_the_gaussian_draws(fan_in, fan_out):
    W, _ = weights("orthogonal", fan_in, fan_out)
    G, _ = weights("gaussian", fan_in, fan_out)  # the same counters
    tall = max(fan_in, fan_out)
    q, r = np.linalg.qr(G if fan_in >= fan_out else G.T)
    q = q * np.sign(np.diag(r))
    expected = math.sqrt(tall) * (q if fan_in >= fan_out else q.T)
    assert np.abs(W - expected).max() < 1e-12
    gram = W.T @ W if fan_in >= fan_out else W @ W.T
    assert np.abs(gram - tall * np.eye(min(fan_in, fan_out))).max() < 1e-11
    assert np.mean(W * W) == pytest.approx(1.0, rel=1e-12)


def test_orthogonal_convolution_is_orthogonal_over_the_fan_in():
    net = Network([Conv(8, (3, 3), b_std=0.1), Flatten(), Dense(2)], init="orthogonal")
    W, _ = nnpk.sample_params(net, (5, 5, 4), 0, 3)[0]
    assert W.shape == (3, 3, 4, 8)
    m = W.reshape(36, 8)
    assert np.abs(m.T @ m - 36 * np.eye(8)).max() < 1e-11


def test_orthogonal_elements_are_centred_with_unit_variance_across_networks():
    first = np.array([weights("orthogonal", 6, 4, index=m)[0][0, 0] for m in range(3000)])
    assert abs(first.mean()) < 4 / math.sqrt(first.size)
    assert first.var() == pytest.approx(1.0, abs=0.08)


@pytest.mark.parametrize("init", nnpk.INITS)
def test_same_variance_gives_the_same_linear_kernel(init):
    """A linear layer's kernel is W_std^2 x . x' / d in expectation under every scheme; an
    orthogonal layer at least as wide as its input is an isometry, exact with one network."""
    x = np.random.default_rng(0).standard_normal((12, 16))
    net = Network([Dense(64, W_std=1.3), "identity", Dense(3)], init=init)
    exact = 1.69 * x @ x.T / 16
    n = 1 if init == "orthogonal" else 256
    K = nnpk.monte_carlo(x, arch=net, n_networks=n)
    error = np.linalg.norm(K - exact) / np.linalg.norm(exact)
    assert error < (1e-13 if init == "orthogonal" else 0.03), error


@pytest.mark.parametrize("init", nnpk.INITS)
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_engine_uses_the_sampled_parameters(init, parameterization):
    # 20,000 weights in the first layer: drawn in more than one chunk of the counter space
    net = Network([Dense(200, b_std=0.2), "tanh", Dense(30), "relu", Dense(4)], init=init,
                  parameterization=parameterization)
    x = np.random.default_rng(1).standard_normal((9, 100))
    for m in (0, 5):
        params = nnpk.sample_params(net, 100, 2, m)
        assert np.abs(nnpk.initial_outputs(x, net, seed=2, index=m) - forward(net, params, x)[-1]).max() < 1e-12
    ks = [nnpk.monte_carlo(x, arch=net, n_networks=3, seed=2, n_threads=t, estimator="sampled") for t in (1, 2, 3)]
    assert np.array_equal(ks[0], ks[1]) and np.array_equal(ks[0], ks[2])
    for a, b in zip(nnpk.sample_params(net, 100, 2, 5), nnpk.sample_params(net, 100, 2, 5)):
        assert np.array_equal(a[0], b[0])


def test_schemes_draw_different_weights_from_the_same_counters():
    draws = {init: weights(init, 30, 20)[0] for init in nnpk.INITS}
    for a in nnpk.INITS:
        for b in nnpk.INITS:
            if a < b:
                assert not np.allclose(draws[a], draws[b])
