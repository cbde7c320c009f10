"""Tangent kernels of nnpk.Network against an explicit numpy Jacobian of the logits with respect
to every parameter (tests/reference_networks.py: forward-mode, written from the layer definitions,
itself checked by finite differences here), and their promises: the MLP identity, determinism,
float32, errors."""

import numpy as np
import pytest

import nnpk
from nnpk import AvgPool, Conv, Dense, Flatten, GlobalAvgPool, MaxPool, Network, Residual
from nnpk.architectures._params import prepare_network_points
from nnpk.kernels._plans import tangent_sums as network_tangent_sums
from reference import ntk_from_jacobians
from reference_networks import forward, jacobian, parameter_slices


def conv1d(b):
    return [Conv(3, 3, stride=2, b_std=b), "tanh", Conv(4, 2, padding="valid", W_std=1.3, b_std=b), "relu",
            AvgPool(2, stride=1, padding="same"), MaxPool(3, stride=2, padding="same"), Flatten(), Dense(3, b_std=b)]


def conv2d(b):
    # the last Conv has two output positions: its weights take the position-pair form
    return [Conv(3, (3, 2), stride=(2, 1), b_std=b), "relu", Conv(4, (2, 3), padding="valid"),
            nnpk.Activation("gelu", normalize=True), MaxPool((2, 2), stride=1),
            AvgPool((3, 2), stride=(2, 1), padding="same"), Conv(6, (1, 2), padding="valid", b_std=b), "erf",
            GlobalAvgPool(), Dense(2, W_std=0.8, b_std=b)]


def residual(b):
    return [Conv(3, (3, 3), b_std=b), "relu",
            Residual([Conv(3, (3, 3), stride=1, b_std=b), "erf", Conv(3, (1, 1))], scale=0.7),
            Residual([Residual(["relu"], 0.3), AvgPool((2, 2), stride=1, padding="same")], scale=-0.5),
            MaxPool((2, 2)), Flatten(), Dense(4, b_std=b), "tanh", Dense(2)]


def residual1d(b):
    return [Conv(2, 3, stride=2, padding="valid", b_std=b),
            Residual([Conv(2, 3, b_std=b), "relu", Conv(2, 3)], scale=1.2), GlobalAvgPool(), Dense(3, b_std=b)]


CASES = {"conv1d": (conv1d, (9, 2)), "conv2d": (conv2d, (7, 6, 2)), "residual": (residual, (5, 5, 1)),
         "residual1d": (residual1d, (8, 1))}


def points(n, shape, seed=0):
    return np.random.default_rng(seed).standard_normal((n,) + shape)


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def jacobian_ntk(arch, params, x1, x2, select=None, per_logit=False):
    return ntk_from_jacobians(jacobian(arch, params, x1), jacobian(arch, params, x2), select, per_logit)


def test_reference_jacobian_against_finite_differences():
    net = Network(residual(0.3))
    shape = CASES["residual"][1]
    x = points(2, shape, 9)
    params = nnpk.sample_params(net, shape, 0, 0)
    J = jacobian(net, params, x)
    slices = parameter_slices(params)
    eps = 1e-6
    for (l, kind), sl in slices.items():
        for p in range(sl.start, sl.stop, 5):
            k = p - sl.start
            moved = []
            for sign in (1, -1):
                ps = [(W.copy(), None if b is None else b.copy()) for W, b in params]
                target = ps[l][0] if kind == "weights" else ps[l][1]
                target.reshape(-1)[k] += sign * eps
                moved.append(forward(net, ps, x)[-1])
            np.testing.assert_allclose((moved[0] - moved[1]) / (2 * eps), J[:, :, p], atol=1e-6)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("b_std", [None, 0.4])
def test_empirical_equals_jacobian(case, parameterization, b_std):
    layers, shape = CASES[case]
    net = Network(layers(b_std), parameterization=parameterization)
    x1, x2 = points(7, shape, 1), points(5, shape, 2) * 1.3
    params = nnpk.sample_params(net, shape, seed=1, index=2)
    slices = parameter_slices(params)
    K = nnpk.empirical(x1, arch=net, params=params)
    assert K.shape == (7, 7) and np.array_equal(K, K.T)
    assert rel(K, jacobian_ntk(net, params, x1, x1)) < 1e-12
    cross = nnpk.empirical(x1, x2, arch=net, params=params, get=("nngp", "ntk"), per_layer=True)
    assert rel(cross["ntk"]["total"], jacobian_ntk(net, params, x1, x2)) < 1e-12
    f1, f2 = forward(net, params, x1)[-1], forward(net, params, x2)[-1]
    assert rel(cross["nngp"], f1 @ f2.T / f1.shape[1]) < 1e-12
    for (l, kind), sl in slices.items():
        assert rel(cross["ntk"][kind][l], jacobian_ntk(net, params, x1, x2, [sl])) < 1e-12
    per_logit = nnpk.empirical(x1, x2, arch=net, params=params, per_logit=True)
    assert rel(per_logit, jacobian_ntk(net, params, x1, x2, per_logit=True)) < 1e-12


@pytest.mark.parametrize("case", ["conv2d", "residual"])
@pytest.mark.parametrize("wrt", ["weights", "biases", "readout", [0], [1, -1]])
def test_wrt_selects_parameters(case, wrt):
    layers, shape = CASES[case]
    net = Network(layers(0.2))
    x1, x2 = points(6, shape, 3), points(4, shape, 4)
    params = nnpk.sample_params(net, shape, seed=2, index=0)
    slices = parameter_slices(params)
    n = len(params)
    if isinstance(wrt, str):
        chosen = [key for key in slices if wrt in ("weights", "biases") and key[1] == wrt
                  or wrt == "readout" and key[0] == n - 1]
    else:
        chosen = [key for key in slices if key[0] in [l % n for l in wrt]]
    ref = jacobian_ntk(net, params, x1, x2, [slices[key] for key in chosen], per_logit=True)
    assert rel(nnpk.empirical(x1, x2, arch=net, params=params, wrt=wrt, per_logit=True), ref) < 1e-12


@pytest.mark.parametrize("case", ["conv1d", "residual"])
def test_monte_carlo_ntk_is_the_mean_over_networks(case):
    layers, shape = CASES[case]
    net = Network(layers(0.3), init="orthogonal" if case == "residual" else "gaussian")
    x1, x2 = points(8, shape, 5), points(6, shape, 6)
    all_params = [nnpk.sample_params(net, shape, seed=4, index=m) for m in range(3)]
    ref = sum(jacobian_ntk(net, p, x1, x2) for p in all_params) / 3
    nngp = 0
    for p in all_params:
        f1, f2 = forward(net, p, x1)[-1], forward(net, p, x2)[-1]
        nngp = nngp + f1 @ f2.T / f1.shape[1] / 3
    both = nnpk.monte_carlo(x1, x2, arch=net, n_networks=3, seed=4, get=("nngp", "ntk"), estimator="sampled")
    assert rel(both["ntk"], ref) < 1e-12 and rel(both["nngp"], nngp) < 1e-12
    alone = nnpk.monte_carlo(x1, x2, arch=net, n_networks=3, seed=4, get="ntk")
    assert np.array_equal(alone, both["ntk"])
    assert np.array_equal(both["nngp"], nnpk.monte_carlo(x1, x2, arch=net, n_networks=3, seed=4, estimator="sampled"))
    k32 = nnpk.monte_carlo(x1, x2, arch=net, n_networks=3, seed=4, get="ntk", dtype="float32")
    assert rel(k32, ref) < 1e-5
    per_layer = nnpk.monte_carlo(x1, x2, arch=net, n_networks=3, seed=4, get="ntk", per_layer=True)
    assert rel(per_layer["total"], ref) < 1e-12


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_a_dense_network_has_the_ntk_of_its_mlp(parameterization):
    mlp = nnpk.MLP(hidden=[13, 9], out=3, activation="gelu", normalize=True, W_std=[1.2, 1.4, 0.9],
                   b_std=[0.1, None, 0.3], parameterization=parameterization)
    net = mlp.to_network()
    x1, x2 = points(20, (6,), 7), points(11, (6,), 8)
    for kw in (dict(), dict(per_logit=True), dict(per_layer=True, wrt=[0, 2])):
        a = nnpk.monte_carlo(x1, x2, arch=mlp, n_networks=3, seed=1, get="ntk", **kw)
        b = nnpk.monte_carlo(x1, x2, arch=net, n_networks=3, seed=1, get="ntk", **kw)
        if "per_layer" in kw:
            assert rel(a["total"], b["total"]) < 1e-13
            for kind in ("weights", "biases"):
                for u, v in zip(a[kind], b[kind]):
                    assert (u is None) == (v is None) and (u is None or rel(u, v) < 1e-13)
        else:
            assert rel(a, b) < 1e-13
    params = nnpk.sample_params(mlp, 6, 0, 5)
    assert rel(nnpk.empirical(x1, arch=mlp, params=params), nnpk.empirical(x1, arch=net, params=params)) < 1e-13


def test_a_large_layer_in_chunks():
    # 32 channels after a 3 x 3 x 8 kernel and 10 logits: per-example gradients in chunks of 48
    # points; the reference checks points on both sides of chunk and tile edges
    net = Network([Conv(8, (3, 3), b_std=0.1), "relu", Conv(32, (3, 3)), "relu", GlobalAvgPool(), Dense(10)])
    x1, x2 = points(131, (5, 5, 1), 9), points(101, (5, 5, 1), 10)
    params = nnpk.sample_params(net, (5, 5, 1), 0, 0)
    K = nnpk.empirical(x1, x2, arch=net, params=params)
    rows, cols = [0, 47, 48, 130], [0, 50, 100]
    assert rel(K[np.ix_(rows, cols)], jacobian_ntk(net, params, x1[rows], x2[cols])) < 1e-12


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("per_logit", [False, True])
def test_bitwise_identical_across_threads_and_tiles(dtype, per_logit):
    net = Network([Conv(16, (3, 3), b_std=0.1), "relu", Conv(24, (3, 3)), "tanh",
                   Residual([Conv(24, (1, 1)), "relu"], 0.5), MaxPool((2, 2)), Conv(8, (3, 3), padding="valid"),
                   Flatten(), Dense(5, b_std=0.2)])
    compiled, x1, x2 = prepare_network_points(points(131, (6, 6, 1), 11), points(101, (6, 6, 1), 12), net, dtype)
    n = len(compiled.params)
    q = nnpk._core.ROW_QUANTUM
    for xb in (None, x2):
        runs = [network_tangent_sums(x1, xb, compiled, seed=2, start=0, stop=2, nngp=True, weights=[True] * n,
                                     biases=[True] * n, per_layer=True, per_logit=per_logit, n_threads=t,
                                     tile_rows=tr, gram_tile=gt, panel_cols=pc)
                for t, tr, gt, pc in [(1, q, q, 5), (2, 2 * q, 4 * q, 128), (3, 3 * q, 2 * q, 1000)]]
        for other in runs[1:]:
            for a, b in zip(runs[0], other):
                assert np.array_equal(a, b)
        first = network_tangent_sums(x1, xb, compiled, seed=2, start=0, stop=1, nngp=False, weights=[True] * n,
                                     biases=[True] * n, per_layer=False, per_logit=per_logit, n_threads=2)
        whole = network_tangent_sums(x1, xb, compiled, seed=2, start=0, stop=2, nngp=False, weights=[True] * n,
                                     biases=[True] * n, per_layer=False, per_logit=per_logit, n_threads=1)
        resumed = network_tangent_sums(x1, xb, compiled, seed=2, start=1, stop=2, nngp=False, weights=[True] * n,
                                       biases=[True] * n, per_layer=False, per_logit=per_logit, n_threads=2,
                                       initial=first)
        assert np.array_equal(whole[0], resumed[0])
        total = sum(runs[0][1:])
        assert rel(total, whole[0]) < 1e-12


def test_public_api_is_deterministic_and_symmetric():
    net = Network(residual(0.2))
    x = points(30, (5, 5, 1), 13)
    ks = [nnpk.monte_carlo(x, arch=net, n_networks=2, get="ntk", n_threads=t) for t in (1, 2, None)]
    for k in ks[1:]:
        assert np.array_equal(ks[0], k)
    assert np.array_equal(ks[0], ks[0].T) and np.linalg.eigvalsh(ks[0]).min() > -1e-10
    full = nnpk.monte_carlo(x, arch=net, n_networks=2, get="ntk", per_logit=True)
    assert np.array_equal(full, full.transpose(1, 0, 3, 2))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda net, p, x: nnpk.empirical(x[:, :2], arch=net, params=p), ValueError,
         r"layer 2 \(Conv kernel 2, padding 'valid'\): input length 1 is shorter than the kernel"),
        (lambda net, p, x: nnpk.empirical(x, x[:, :, :1], arch=net, params=p), ValueError, "x2"),
        (lambda net, p, x: nnpk.empirical(x, arch=net, params=p[:-1]), ValueError,
         r"params has 2 layers; the network has 3 Dense or Conv layers"),
        (lambda net, p, x: nnpk.empirical(x, arch=net, params=[(p[0][0][:2], p[0][1])] + p[1:]), ValueError,
         r"params\[0\] W has shape \(2, 2, 3\); layer 0 \(Conv kernel 3, stride 2, padding 'same'\) expects "
         r"\(3, 2, 3\)"),
        (lambda net, p, x: nnpk.empirical(x, arch=net, params=p, wrt=[3]), ValueError,
         "wrt layer index 3 is out of range for 3 layers"),
        (lambda net, p, x: nnpk.monte_carlo(x, arch=net, n_networks=1, get="ntk", wrt="bias"), ValueError,
         "wrt must be one of"),
        (lambda net, p, x: nnpk.monte_carlo(x, arch=Network([Flatten()]), n_networks=1, get="ntk"), ValueError,
         "this network has none"),
        (lambda net, p, x: nnpk.monte_carlo(x, arch=net, n_networks=1, get="ntk", layers="all"), ValueError,
         "layers='all' is available for get='nngp' only"),
    ],
)
def test_bad_input(call, error, match):
    net = Network(conv1d(0.1))
    x = points(5, (9, 2))
    params = nnpk.sample_params(net, (9, 2), 0, 0)
    with pytest.raises(error, match=match):
        call(net, params, x)


def test_output_that_cannot_fit(monkeypatch):
    monkeypatch.setenv("NNPK_MEMORY_LIMIT", str(2**20))
    net = Network([Conv(4, 3), Flatten(), Dense(3)])
    with pytest.raises(MemoryError, match=r"the tangent kernel \(1 x 400 x 400 x C x C float64"):
        nnpk.monte_carlo(np.zeros((400, 5, 1)), arch=net, n_networks=1, get="ntk", per_logit=True)


def test_standard_errors_and_tol_stream_networks_as_for_mlps():
    net = Network([Conv(4, (3, 3), b_std=0.1), "relu", GlobalAvgPool(), Dense(3)])
    x = points(10, (6, 6, 1), 14)
    K, info = nnpk.monte_carlo(x, arch=net, n_networks=4, get="ntk", tol=0.05, return_standard_error=True)
    assert info["standard_error"] <= 0.05 or info["n_networks"] == 400
    assert np.array_equal(K, nnpk.monte_carlo(x, arch=net, n_networks=info["n_networks"], get="ntk"))
