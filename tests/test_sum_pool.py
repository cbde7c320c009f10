"""SumPool and GlobalSumPool: sums over windows and over all positions, in every kernel, training, stores and
the scikit-learn estimators, against numpy forward passes and Jacobians (reference_networks), a numpy
recursion of the infinite-width kernel written here, closed identities with the average pools, and Monte
Carlo."""

import math

import numpy as np
import pytest

import nnpk
from nnpk import AvgPool, Conv, Dense, Flatten, GlobalAvgPool, GlobalSumPool, Network, SumPool
from nnpk.sklearn import NNPKRegressor
from reference_networks import check_logits_and_tangent_kernel, check_monte_carlo_near_analytic, points

CASES = {
    "2d_same": ([Conv(3, (2, 2), b_std=0.1), "relu", SumPool((3, 3), stride=1, padding="same"), Flatten(),
                 Dense(2)], (5, 4, 2)),
    "2d_valid_strided": ([Conv(3, (3, 3), padding="valid"), "tanh", SumPool((2, 2)), "erf", GlobalSumPool(),
                          Dense(2, b_std=0.2)], (7, 6, 1)),
    "1d_same_strided": ([Conv(4, 3), "relu", SumPool(3, stride=2, padding="same"), GlobalAvgPool(), Dense(1)],
                        (9, 2)),
}



@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_logits_and_tangent_kernel_equal_numpy(case, parameterization):
    """The engine's forward pass and its empirical NTK (the backward pass) against numpy's forward pass and
    forward-mode Jacobian of the same parameters."""
    layers, shape = CASES[case]
    check_logits_and_tangent_kernel(Network(layers, parameterization=parameterization), shape, 6)


def test_global_sum_pool_is_the_positions_times_global_avg_pool():
    shape = (4, 5, 2)
    P = 20
    body = [Conv(3, (2, 2), b_std=0.3), "relu"]
    summed, averaged = Network(body + [GlobalSumPool(), Dense(2)]), Network(body + [GlobalAvgPool(), Dense(2)])
    x = points(5, shape, 1)
    np.testing.assert_allclose(nnpk.initial_outputs(x, summed, seed=1), P * nnpk.initial_outputs(x, averaged, seed=1),
                               rtol=1e-13)
    # The readout has no bias: both kernels scale by P^2.
    for get in ("nngp", "ntk"):
        np.testing.assert_allclose(nnpk.analytic(x, arch=summed, get=get), P**2 * nnpk.analytic(x, arch=averaged,
                                                                                               get=get), rtol=1e-12)
        np.testing.assert_allclose(nnpk.monte_carlo(x, arch=summed, n_networks=2, get=get),
                                   P**2 * nnpk.monte_carlo(x, arch=averaged, n_networks=2, get=get), rtol=1e-11)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_analytic_sum_pool_is_the_scaled_avg_pool_away_from_edges(get):
    """Non-overlapping "valid" windows of k positions: the pooled covariance is k^2 times AvgPool's; a linear
    readout (no bias) keeps the factor."""
    x = points(5, (6, 4, 2), 3)
    body = [Conv(3, (3, 3), b_std=0.2), "relu"]
    summed = nnpk.analytic(x, arch=Network(body + [SumPool((2, 2)), Flatten(), Dense(1)]), get=get)
    averaged = nnpk.analytic(x, arch=Network(body + [AvgPool((2, 2)), Flatten(), Dense(1)]), get=get)
    np.testing.assert_allclose(summed, 16 * averaged, rtol=1e-12)


def _relu_dual(q1, q2, c):
    """E[relu(u) relu(v)] = (sqrt(q1 q2 - c^2) + (pi - theta) c) / 2 pi, theta the angle of the pair."""
    y = np.sqrt(np.maximum(np.outer(q1, q2) - c * c, 0.0))
    return (y + (np.pi - np.arctan2(y, c)) * c) / (2 * np.pi)


def _window_sums(sigma, n, window, stride, pad):
    """Sigma (n x n) -> (m x m): sum over the windows of both positions, positions outside [0, n) dropped."""
    m = -(-n // stride)
    groups = [[u for u in range(o * stride - pad, o * stride - pad + window) if 0 <= u < n] for o in range(m)]
    return np.array([[sigma[np.ix_(a, b)].sum() for b in groups] for a in groups])


def test_analytic_nngp_against_a_numpy_recursion():
    """1-D points: Conv of kernel size 1 (each position's covariance W^2 x_p.x'_q / c + b^2), relu entry by
    entry, SumPool(3, stride 1, "same") summing the covariances over both windows (edges have 2 positions),
    then Flatten and Dense (the mean of the same-position covariances)."""
    n, c = 7, 3
    x = points(4, (n, c), 4)
    w, b = 1.3, 0.4
    arch = Network([Conv(5, 1, W_std=w, b_std=b), "relu", SumPool(3, stride=1, padding="same"), Flatten(),
                    Dense(1, W_std=0.9)])
    got = nnpk.analytic(x, arch=arch)
    pre = [[w * w * xi @ xj.T / c + b * b for xj in x] for xi in x]  # n x n per pair of points
    want = np.empty((4, 4))
    for i in range(4):
        for j in range(4):
            q1, q2 = np.diag(pre[i][i]), np.diag(pre[j][j])
            pooled = _window_sums(_relu_dual(q1, q2, pre[i][j]), n, 3, 1, 1)
            want[i, j] = 0.81 * np.mean(np.diag(pooled))
    np.testing.assert_allclose(got, want, rtol=1e-11)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_monte_carlo_converges_to_the_analytic_kernel(get):
    x = points(5, (5, 5, 1), 5) * 0.5
    arch = lambda ch: Network([Conv(ch, (2, 2), b_std=0.2), "relu", SumPool((2, 2), stride=1, padding="same"),  # noqa
                               Conv(ch, (2, 2), stride=2), "erf", GlobalSumPool(), Dense(1, b_std=0.1)])
    check_monte_carlo_near_analytic(x, arch, get, n_networks=24)


def test_training_takes_sum_pooling():
    """A few Adam steps on a network with SumPool and GlobalSumPool lower the loss (gradients through both)."""
    x = points(24, (4, 4, 1), 6)
    y = x.sum(axis=(1, 2, 3)) / 8
    arch = Network([Conv(4, (2, 2)), "relu", SumPool((2, 2), stride=1, padding="same"), GlobalSumPool(), Dense(1)],
                   parameterization="standard")
    learner = nnpk.NetworkLearner(arch, loss="squared", optimizer="adam", lr=3e-3, epochs=30, batch_size=24)
    learner.fit(x, y)
    loss = learner.history_["loss"]
    assert loss[-1] < 0.5 * loss[0]


def test_store_round_trip(tmp_path):
    x = points(6, (4, 4, 1), 7)
    arch = Network([Conv(2, (2, 2)), "relu", SumPool((2, 2), padding="same"), GlobalSumPool(), Dense(1)])
    store = nnpk.compute_to_store(tmp_path / "k", x, arch=arch, kernel="analytic_nngp", tile_size=96)
    assert store.arch == arch
    np.testing.assert_allclose(store.to_numpy(), nnpk.analytic(x, arch=arch), rtol=1e-15)
    assert [layer["type"] for layer in store.spec["arch"]["layers"]][2:4] == ["SumPool", "GlobalSumPool"]


def test_sklearn_estimator_takes_sum_pooling():
    x = points(20, (4, 4, 1), 8).reshape(20, -1)
    y = x.sum(axis=1)
    arch = Network([Conv(2, (2, 2)), "relu", SumPool((2, 2)), Flatten(), Dense(1)])
    model = NNPKRegressor(arch=arch, input_shape=(4, 4, 1), method="analytic", ridge=1e-3).fit(x[:15], y[:15])
    k_train = nnpk.analytic(x[:15].reshape(15, 4, 4, 1), arch=arch)
    k_test = nnpk.analytic(x[15:].reshape(5, 4, 4, 1), x[:15].reshape(15, 4, 4, 1), arch=arch)
    np.testing.assert_allclose(model.predict(x[15:]), nnpk.kernel_ridge(k_train, y[:15], k_test, 1e-3), rtol=1e-8)


def test_shape_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"layer 1 \(GlobalSumPool\): needs \(length, channels\)"):
        Network([Dense(3), GlobalSumPool(), Dense(1)]).compile((4,))
    with pytest.raises(ValueError, match=r"layer 0 \(SumPool window 5, padding 'valid'\): input length 3 is shorter"):
        Network([SumPool(5), Flatten(), Dense(1)]).compile((3, 2))
    assert math.prod(Network([SumPool(2), Flatten(), Dense(1)]).shapes((6, 2))[0]) == 6
