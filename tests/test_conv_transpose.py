"""ConvTranspose (1-D and 2-D, strides, "same" and "valid") in every kernel, training, stores and the
scikit-learn estimators: against numpy forward passes written as scatters and forward-mode Jacobians
(reference_networks), a numpy recursion of the infinite-width NNGP and NTK written here, Conv (the same map at
stride 1 with an odd kernel and "same"), Monte Carlo, and determinism across thread counts."""

import numpy as np
import pytest

import nnpk
from nnpk import Conv, ConvTranspose, Dense, Flatten, GlobalAvgPool, Network
from nnpk.sklearn import NNPKRegressor
from reference_networks import (
    _transposed_padding,
    check_logits_and_tangent_kernel,
    check_monte_carlo_near_analytic,
    forward,
    points,
    rel,
)

CASES = {
    "1d_same_s2": ([ConvTranspose(3, 3, stride=2, b_std=0.1), "relu", Flatten(), Dense(2)], (4, 2)),
    "1d_valid_s2": ([ConvTranspose(3, 3, stride=2, padding="valid"), "tanh", GlobalAvgPool(), Dense(1, b_std=0.2)],
                    (4, 2)),
    "1d_valid_s3_k2": ([ConvTranspose(2, 2, stride=3, padding="valid", b_std=0.3), "erf", Conv(2, 3), "relu",
                        Flatten(), Dense(2)], (3, 1)),
    "2d_same": ([ConvTranspose(2, (3, 2), stride=(2, 1)), "relu", Conv(2, (2, 2), stride=2), Flatten(), Dense(2)],
                (3, 2, 2)),
    "2d_valid": ([Conv(2, (2, 2)), "tanh", ConvTranspose(3, (2, 2), stride=2, padding="valid", b_std=0.1), "relu",
                  GlobalAvgPool(), Dense(1)], (3, 3, 1)),
}



@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_logits_and_tangent_kernel_equal_numpy(case, parameterization):
    """The engine's forward pass and its empirical NTK (backward pass) against numpy's forward pass and
    forward-mode Jacobian of the same parameters."""
    layers, shape = CASES[case]
    check_logits_and_tangent_kernel(Network(layers, parameterization=parameterization), shape, 4)


def test_float32_forward_pass():
    """The float32 forward pass (the direct convolution's path for 16 output channels on AVX-512): the empirical
    NNGP f(x) . f(x') / C within float32 rounding of numpy's float64 one."""
    net = Network([ConvTranspose(16, (3, 3), stride=2), "relu", ConvTranspose(16, (2, 2), stride=(1, 2),
                                                                             padding="valid"), Flatten(), Dense(2)])
    x = points(5, (3, 2, 2), 1)
    params = nnpk.sample_params(net, (3, 2, 2), seed=0, index=0)
    f = forward(net, params, x)[-1]
    got = nnpk.empirical(x, arch=net, params=params, get="nngp", dtype="float32")
    assert rel(got, f @ f.T / 2) < 1e-5


@pytest.mark.parametrize("n,k,s", [(4, 3, 2), (5, 2, 3), (3, 1, 1), (2, 4, 1), (6, 3, 3), (3, 5, 2)])
def test_output_lengths(n, k, s):
    """n s positions with "same", n s + max(k - s, 0) with "valid" (a window longer than the input is fine)."""
    for padding, want in (("same", n * s), ("valid", n * s + max(k - s, 0))):
        shapes = Network([ConvTranspose(2, k, stride=s, padding=padding), Flatten(), Dense(1)]).shapes((n, 1))
        assert shapes[0] == (want, 2)


def test_stride_one_odd_kernel_same_is_conv():
    """At stride 1, an odd kernel and "same", the transposed convolution is the convolution itself (same
    padding on both sides, kernel not flipped): the same logits and kernels."""
    shape = (5, 4, 2)
    body = lambda conv: [conv(3, (3, 3), b_std=0.1), "relu", conv(2, (1, 3)), "erf", GlobalAvgPool(),  # noqa
                         Dense(1)]
    a, b = Network(body(ConvTranspose)), Network(body(Conv))
    x = points(4, shape, 3)
    np.testing.assert_array_equal(nnpk.initial_outputs(x, a, seed=5), nnpk.initial_outputs(x, b, seed=5))
    for get in ("nngp", "ntk"):
        np.testing.assert_allclose(nnpk.analytic(x, arch=a, get=get), nnpk.analytic(x, arch=b, get=get), rtol=1e-14)


def _relu_duals(q1, q2, c):
    y = np.sqrt(np.maximum(np.outer(q1, q2) - c * c, 0.0))
    theta = np.arctan2(y, c)
    return (y + (np.pi - theta) * c) / (2 * np.pi), (np.pi - theta) / (2 * np.pi)


def _taps(n, k, s, padding):
    """Per kernel offset t the (outputs x n) 0/1 matrix: output o reads input i at offset t (the scatter
    o = s i + pad - t of the reference's forward pass)."""
    out = n * s if padding == "same" else n * s + max(k - s, 0)
    pad = _transposed_padding(k, s, padding)
    mats = np.zeros((k, out, n))
    for t in range(k):
        for i in range(n):
            o = s * i + pad - t
            if 0 <= o < out:
                mats[t, o, i] = 1.0
    return mats


def _numpy_kernels(x, k, s, padding, w1, b1, w2, b2, readout, standard, hidden):
    """NNGP and NTK of ConvTranspose(k, s, padding; w1, b1) -> relu -> readout (Flatten or GlobalAvgPool) ->
    Dense(w2, b2) on 1-D points: position covariances Sigma' = (w1^2 / k) sum_t S_t Sigma S_t^T + b1^2 (equal
    offsets pair up), the relu duals entry by entry, then the diagonal's mean (Flatten) or all entries' mean
    (GlobalAvgPool) through the readout."""
    n_pts, n, c = x.shape
    S = _taps(n, k, s, padding)
    P = S.shape[1]
    raw = lambda i, j: sum(St @ (x[i] @ x[j].T / c) @ St.T for St in S)  # noqa: E731  the taps' sum
    pre = lambda i, j: w1**2 / k * raw(i, j) + b1**2  # noqa: E731
    nngp, ntk = np.empty((n_pts, n_pts)), np.empty((n_pts, n_pts))
    for i in range(n_pts):
        for j in range(n_pts):
            sig, dot = _relu_duals(np.diag(pre(i, i)), np.diag(pre(j, j)), pre(i, j))
            t1 = c * raw(i, j) + 1.0 if standard else pre(i, j)
            the = t1 * dot
            if readout == "flatten":
                ms, mt, fan_in = np.mean(np.diag(sig)), np.mean(np.diag(the)), P * hidden
            else:
                ms, mt, fan_in = sig.mean(), the.mean(), hidden
            nngp[i, j] = w2**2 * ms + b2**2
            ntk[i, j] = fan_in * ms + w2**2 * mt + 1.0 if standard else nngp[i, j] + w2**2 * mt
    return nngp, ntk


@pytest.mark.parametrize("readout", ["flatten", "global"])
@pytest.mark.parametrize("k,s,padding,parameterization", [(3, 2, "same", "ntk"), (3, 2, "valid", "standard"),
                                                          (2, 3, "valid", "ntk"), (4, 2, "same", "standard")])
def test_analytic_against_a_numpy_recursion(readout, k, s, padding, parameterization):
    n, c, hidden = 4, 2, 3
    x = points(4, (n, c), 4)
    w1, b1, w2, b2 = 1.2, 0.3, 0.8, 0.1
    arch = Network([ConvTranspose(hidden, k, stride=s, padding=padding, W_std=w1, b_std=b1), "relu",
                    Flatten() if readout == "flatten" else GlobalAvgPool(), Dense(1, W_std=w2, b_std=b2)],
                   parameterization=parameterization)
    kernels = nnpk.analytic(x, arch=arch, get=("nngp", "ntk"))
    nngp, ntk = kernels["nngp"], kernels["ntk"]
    want_nngp, want_ntk = _numpy_kernels(x, k, s, padding, w1, b1, w2, b2, readout, parameterization == "standard",
                                         hidden)
    np.testing.assert_allclose(nngp, want_nngp, rtol=1e-11)
    np.testing.assert_allclose(ntk, want_ntk, rtol=1e-11)


def test_analytic_2d_is_the_product_of_its_axes():
    """A 2-D transposed convolution of a (n, 1)-shaped 2-D point is the 1-D one along the height (a kernel
    (k, 1), stride (s, 1)): the same kernels."""
    x = points(3, (4, 2), 5)
    one = Network([ConvTranspose(2, 3, stride=2, padding="valid"), "relu", GlobalAvgPool(), Dense(1)])
    two = Network([ConvTranspose(2, (3, 1), stride=(2, 1), padding="valid"), "relu", GlobalAvgPool(), Dense(1)])
    for get in ("nngp", "ntk"):
        np.testing.assert_allclose(nnpk.analytic(x[:, :, None, :], arch=two, get=get),
                                   nnpk.analytic(x, arch=one, get=get), rtol=1e-13)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_monte_carlo_converges_to_the_analytic_kernel(get):
    x = points(5, (3, 2, 1), 6)
    arch = lambda ch: Network([ConvTranspose(ch, (2, 3), stride=2, b_std=0.2), "relu",  # noqa: E731
                               ConvTranspose(ch, (1, 3), stride=(1, 2), padding="valid"), "erf", GlobalAvgPool(),
                               Dense(1, b_std=0.1)])
    check_monte_carlo_near_analytic(x, arch, get, n_networks=16)


def test_threads_do_not_change_any_bit():
    x = points(40, (4, 2), 7)
    arch = Network([ConvTranspose(8, 3, stride=2, b_std=0.1), "relu", Flatten(), Dense(2)])
    params = nnpk.sample_params(arch, (4, 2), seed=1, index=0)
    for kernel in (lambda t: nnpk.monte_carlo(x, arch=arch, n_networks=3, get="ntk", n_threads=t),
                   lambda t: nnpk.empirical(x, arch=arch, params=params, get="ntk", n_threads=t),
                   lambda t: nnpk.analytic(x, arch=arch, get="ntk", n_threads=t),
                   lambda t: nnpk.analytic(x, arch=arch, n_threads=t)):
        np.testing.assert_array_equal(kernel(1), kernel(2))


def test_training_takes_transposed_convolutions():
    x = points(24, (4, 1), 8)
    y = x.sum(axis=(1, 2)) / 2
    arch = Network([ConvTranspose(4, 3, stride=2), "relu", Flatten(), Dense(1)], parameterization="standard")
    learner = nnpk.NetworkLearner(arch, loss="squared", optimizer="adam", lr=3e-3, epochs=30, batch_size=24)
    learner.fit(x, y)
    loss = learner.history_["loss"]
    assert loss[-1] < 0.5 * loss[0]


def test_store_round_trip(tmp_path):
    x = points(6, (3, 3, 1), 9)
    arch = Network([ConvTranspose(2, (2, 2), stride=2, padding="valid"), "relu", GlobalAvgPool(), Dense(1)])
    store = nnpk.compute_to_store(tmp_path / "k", x, arch=arch, kernel="analytic_nngp", tile_size=96)
    assert store.arch == arch
    np.testing.assert_allclose(store.to_numpy(), nnpk.analytic(x, arch=arch), rtol=1e-15)
    assert store.spec["arch"]["layers"][0]["type"] == "ConvTranspose"


def test_sklearn_estimator_takes_transposed_convolutions():
    x = points(20, (4, 1), 10).reshape(20, -1)
    y = x.sum(axis=1)
    arch = Network([ConvTranspose(2, 3, stride=2), "relu", Flatten(), Dense(1)])
    model = NNPKRegressor(arch=arch, input_shape=(4, 1), method="analytic", ridge=1e-3).fit(x[:15], y[:15])
    k_train = nnpk.analytic(x[:15].reshape(15, 4, 1), arch=arch)
    k_test = nnpk.analytic(x[15:].reshape(5, 4, 1), x[:15].reshape(15, 4, 1), arch=arch)
    np.testing.assert_allclose(model.predict(x[15:]), nnpk.kernel_ridge(k_train, y[:15], k_test, 1e-3), rtol=1e-8)


def test_refusals_name_the_argument():
    with pytest.raises(ValueError, match=r"layer 0 \(ConvTranspose kernel 3, stride 2, padding 'same'\): a 1-D "
                                         r"kernel needs \(length, channels\) points, got points of shape \(4, 4, 1\)"):
        Network([ConvTranspose(2, 3, stride=2), Flatten(), Dense(1)]).compile((4, 4, 1))
    with pytest.raises(ValueError, match=r"a 2-D kernel needs \(height, width, channels\) points, got flat points"):
        Network([ConvTranspose(2, (2, 2)), Flatten(), Dense(1)]).compile((4,))
    with pytest.raises(ValueError, match="padding must be 'same' or 'valid', got 'full'"):
        ConvTranspose(2, 3, padding="full")
    with pytest.raises(ValueError, match="kernel_size must be positive, got 0"):
        ConvTranspose(2, 0)
    with pytest.raises(ValueError, match="stride .* has another dimension than kernel_size"):
        ConvTranspose(2, 3, stride=(1, 2))
    with pytest.raises(ValueError, match=r"layer 0 \(ConvTranspose.*\): transposed convolutions are not converted"):
        nnpk.params_from_state_dict(Network([ConvTranspose(1, 2), Flatten(), Dense(1)]), {}, input_shape=(3, 1))


def test_every_layers_monte_carlo_nngp_near_the_analytic_one():
    """layers="all": each layer's kernel (spatial layers' features averaged over positions) near the analytic one
    at 256 channels (seeded: deterministic)."""
    x = points(4, (3, 2), 11)
    arch = lambda ch: Network([ConvTranspose(ch, 3, stride=2, b_std=0.2), "relu",  # noqa: E731
                               ConvTranspose(ch, 2, stride=3, padding="valid"), "erf", Flatten(), Dense(1)])
    exact = nnpk.analytic(x, arch=arch(1), layers="all")
    estimate = nnpk.monte_carlo(x, arch=arch(256), n_networks=12, seed=1, layers="all")
    assert len(exact) == len(estimate) == 6
    for a, b in zip(exact, estimate):
        assert np.linalg.norm(a - b) / np.linalg.norm(a) < 0.06
