"""Tangent kernels against an explicit numpy Jacobian, and their promises."""

import math

import numpy as np
import pytest

import nnpk
from engine_sums import tangent_sums as _tangent_sums
from reference import forward, jacobian, ntk_from_jacobians, parameter_slices

RNG = np.random.default_rng(3)
X1 = RNG.standard_normal((9, 6))
X2 = RNG.standard_normal((7, 6)) * 1.3


def jacobian_ntk(arch, params, x1, x2, select=None, per_logit=False):
    return ntk_from_jacobians(jacobian(arch, params, x1), jacobian(arch, params, x2), select, per_logit)


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_reference_jacobian_against_finite_differences():
    arch = nnpk.MLP(hidden=[5, 4], out=2, activation="tanh", W_std=1.2, b_std=0.5)
    params = nnpk.sample_params(arch, 6, seed=0, index=0)
    J = jacobian(arch, params, X1[:2])
    flat = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in params])
    sizes = [(W.shape, b.size) for W, b in params]

    def f(theta):
        ps, pos = [], 0
        for (shape, nb) in sizes:
            W = theta[pos:pos + shape[0] * shape[1]].reshape(shape)
            pos += W.size
            ps.append((W, theta[pos:pos + nb]))
            pos += nb
        return forward(arch, ps, X1[:2])[-1]

    eps = 1e-6
    for p in range(0, flat.size, 7):
        up, down = flat.copy(), flat.copy()
        up[p] += eps
        down[p] -= eps
        np.testing.assert_allclose((f(up) - f(down)) / (2 * eps), J[:, :, p], atol=1e-7)


@pytest.mark.parametrize("activation", ["relu", "tanh", "erf", "gelu", "softplus", "leaky_relu", "sin"])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("b_std", [None, 0.3])
@pytest.mark.parametrize("with_x2", [False, True])
def test_empirical_equals_jacobian(activation, parameterization, b_std, with_x2):
    arch = nnpk.MLP(hidden=[8, 5], out=3, activation=activation, W_std=1.3, b_std=b_std,
                    parameterization=parameterization, slope=0.2)
    params = nnpk.sample_params(arch, 6, seed=1, index=2)
    x2 = X2 if with_x2 else None
    K = nnpk.empirical(X1, x2, arch=arch, params=params)
    assert K.shape == (9, 7 if with_x2 else 9)
    assert rel(K, jacobian_ntk(arch, params, X1, X1 if x2 is None else x2)) < 1e-9


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("wrt", ["all", "weights", "biases", "readout", [0], [1], [0, -1], [2]])
def test_wrt_and_per_layer_parts(parameterization, wrt):
    arch = nnpk.MLP(hidden=[7, 6], out=2, activation="tanh", W_std=[1.1, 1.4, 0.9], b_std=[0.2, None, 0.7],
                    parameterization=parameterization, normalize=True)
    params = nnpk.sample_params(arch, 6, seed=4, index=1)
    slices = parameter_slices(arch, params)
    n = arch.n_layers
    layers = {"all": range(n), "weights": range(n), "biases": range(n), "readout": [n - 1]}.get(
        wrt if isinstance(wrt, str) else None, [l % n for l in wrt] if not isinstance(wrt, str) else None)
    kinds = {"weights": ["weights"], "biases": ["biases"]}.get(wrt if isinstance(wrt, str) else "",
                                                               ["weights", "biases"])
    chosen = [(l, k) for l in layers for k in kinds if (l, k) in slices]
    result = nnpk.empirical(X1, X2, arch=arch, params=params, wrt=wrt, per_layer=True)
    total = nnpk.empirical(X1, X2, arch=arch, params=params, wrt=wrt)
    assert rel(result["total"], jacobian_ntk(arch, params, X1, X2, [slices[c] for c in chosen])) < 1e-9
    assert rel(total, result["total"]) < 1e-12
    for l in range(n):
        for kind in ("weights", "biases"):
            part = result[kind][l]
            if (l, kind) in chosen:
                assert rel(part, jacobian_ntk(arch, params, X1, X2, [slices[(l, kind)]])) < 1e-9
            else:
                assert part is None


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_per_logit_kernel(parameterization):
    arch = nnpk.MLP(hidden=[6, 5], out=3, activation="gelu", b_std=0.4, parameterization=parameterization)
    params = nnpk.sample_params(arch, 6, seed=2, index=0)
    full = nnpk.empirical(X1, arch=arch, params=params, per_logit=True)
    assert full.shape == (9, 9, 3, 3)
    assert rel(full, jacobian_ntk(arch, params, X1, X1, per_logit=True)) < 1e-9
    assert np.allclose(np.einsum("ijcc->ij", full) / 3, nnpk.empirical(X1, arch=arch, params=params), rtol=1e-12)
    cross = nnpk.empirical(X1, X2, arch=arch, params=params, per_logit=True, wrt=[1])
    sl = parameter_slices(arch, params)
    expected = jacobian_ntk(arch, params, X1, X2, [sl[(1, "weights")], sl[(1, "biases")]], per_logit=True)
    assert rel(cross, expected) < 1e-9


def test_nngp_from_the_same_passes():
    arch = nnpk.MLP(hidden=[8], out=4, b_std=0.1)
    params = nnpk.sample_params(arch, 6, seed=0, index=5)
    both = nnpk.empirical(X1, X2, arch=arch, params=params, get=("nngp", "ntk"))
    f1, f2 = forward(arch, params, X1)[-1], forward(arch, params, X2)[-1]
    assert rel(both["nngp"], f1 @ f2.T / 4) < 1e-12
    # Monte Carlo: the nngp of a joint run is the nngp run's, bit for bit
    mc = nnpk.monte_carlo(X1, X2, arch=arch, n_networks=3, get=("nngp", "ntk"), estimator="sampled")
    assert np.array_equal(mc["nngp"], nnpk.monte_carlo(X1, X2, arch=arch, n_networks=3, estimator="sampled"))


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 2e-5)])
def test_monte_carlo_ntk_is_the_mean_of_empirical(dtype, tol):
    arch = nnpk.MLP(hidden=[30, 20], out=3, activation="erf", b_std=0.2, parameterization="standard")
    mc = nnpk.monte_carlo(X1, X2, arch=arch, n_networks=4, get="ntk", seed=7, dtype=dtype)
    ref = np.mean([jacobian_ntk(arch, nnpk.sample_params(arch, 6, 7, m), X1, X2) for m in range(4)], axis=0)
    assert rel(mc, ref) < tol


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_readout_ntk_is_the_last_conjugate_kernel(parameterization):
    arch = nnpk.MLP(hidden=[40, 30], out=2, W_std=[1.0, 1.2, 1.7], b_std=0.3, parameterization=parameterization)
    ck = nnpk.monte_carlo(X1, X2, arch=arch, n_networks=5, layers="all", estimator="sampled")[-2]
    readout = nnpk.monte_carlo(X1, X2, arch=arch, n_networks=5, get="ntk", wrt="readout")
    expected = 1.7**2 * ck + 0.3**2 if parameterization == "ntk" else 30 * ck + 1.0
    assert rel(readout, expected) < 1e-12


def test_weights_and_biases_shares_add_up():
    arch = nnpk.MLP(hidden=[20, 20], out=2, b_std=0.5, activation="softplus")
    res = nnpk.monte_carlo(X1, arch=arch, n_networks=3, get="ntk", per_layer=True)
    w = nnpk.monte_carlo(X1, arch=arch, n_networks=3, get="ntk", wrt="weights")
    b = nnpk.monte_carlo(X1, arch=arch, n_networks=3, get="ntk", wrt="biases")
    full = nnpk.monte_carlo(X1, arch=arch, n_networks=3, get="ntk")
    assert rel(sum(res["weights"]), w) < 1e-12 and rel(sum(res["biases"]), b) < 1e-12
    assert rel(w + b, full) < 1e-12 and rel(res["total"], full) < 1e-12


def relu_ntk_one_hidden(x1, x2, w0, w1):
    """Infinite-width NTK of one hidden ReLU layer, ntk parameterization, no biases (CONVENTIONS recursion)."""
    d = x1.shape[1]
    s12, s1, s2 = w0**2 * x1 @ x2.T / d, w0**2 * (x1 * x1).sum(1) / d, w0**2 * (x2 * x2).sum(1) / d
    p = np.sqrt(np.outer(s1, s2))
    theta = np.arccos(np.clip(s12 / p, -1, 1))
    sigma = p * (np.sin(theta) + (math.pi - theta) * np.cos(theta)) / (2 * math.pi)
    sigma_dot = (math.pi - theta) / (2 * math.pi)
    return w1**2 * sigma + w1**2 * s12 * sigma_dot


def test_monte_carlo_ntk_converges_to_the_infinite_width_limit():
    x = RNG.standard_normal((12, 5))
    exact = relu_ntk_one_hidden(x, x, 1.3, 1.1)
    arch = lambda width: nnpk.MLP(hidden=[width], out=2, W_std=[1.3, 1.1])
    errs = [np.linalg.norm(nnpk.monte_carlo(x, arch=arch(w), n_networks=m, get="ntk", seed=1) - exact)
            / np.linalg.norm(exact) for w, m in ((64, 16), (1024, 256))]
    assert errs[1] < errs[0] / 8 and errs[1] < 0.01, errs


@pytest.mark.parametrize("per_logit", [False, True])
def test_bitwise_identical_across_threads_and_tiles(per_logit):
    rng = np.random.default_rng(11)
    x1, x2 = rng.standard_normal((250, 7)), rng.standard_normal((130, 7))
    arch = nnpk.MLP(hidden=[33, 17], out=3, activation="tanh", b_std=0.2)
    q = nnpk._core.ROW_QUANTUM
    for xb in (None, x2):
        runs = [
            _tangent_sums(x1, xb, arch, seed=2, start=0, stop=3, names=("nngp", "ntk"), weights=[True] * 3,
                          biases=[True] * 3, per_layer=True, per_logit=per_logit, n_threads=t, tile_rows=tr,
                          gram_tile=gt, panel_cols=pc)
            for t, tr, gt, pc in [(1, q, q, 5), (2, 2 * q, 4 * q, 128), (3, 3 * q, 2 * q, 1000)]
        ]
        for other in runs[1:]:
            for a, b in zip(runs[0], other):
                assert np.array_equal(a, b)


def test_prefix_property_and_resume():
    arch = nnpk.MLP(hidden=[16], out=2, b_std=0.1)
    kw = dict(names=("ntk",), weights=[True, True], biases=[True, True], per_layer=False, per_logit=False)
    first = _tangent_sums(X1, X2, arch, seed=5, start=0, stop=3, n_threads=2, **kw)
    whole = _tangent_sums(X1, X2, arch, seed=5, start=0, stop=6, n_threads=1, **kw)
    resumed = _tangent_sums(X1, X2, arch, seed=5, start=3, stop=6, n_threads=2, initial=first, **kw)
    assert np.array_equal(whole[0], resumed[0])


def test_symmetric_kernel_is_exactly_symmetric():
    arch = nnpk.MLP(hidden=[30], out=3, b_std=0.2)
    K = nnpk.monte_carlo(X1, arch=arch, n_networks=2, get="ntk")
    assert np.array_equal(K, K.T) and np.linalg.eigvalsh(K).min() > -1e-12
    full = nnpk.monte_carlo(X1, arch=arch, n_networks=2, get="ntk", per_logit=True)
    assert np.array_equal(full, full.transpose(1, 0, 3, 2))


@pytest.mark.parametrize(
    "params_fn, error, match",
    [
        (lambda p: p[:-1], ValueError, r"params has 2 layers; the network has 3 Dense or Conv layers"),
        (lambda p: [p[0], (p[1][0][:, :3], p[1][1]), p[2]], ValueError,
         r"params\[1\] W has shape \(5, 3\); layer 2 \(Dense 4\) expects \(5, 4\)"),
        (lambda p: [p[0], (p[1][0], None), p[2]], ValueError,
         r"params\[1\] has no bias but layer 2 \(Dense 4\) has b_std=0.1"),
        (lambda p: [p[0], (p[1][0], p[1][1][:2]), p[2]], ValueError,
         r"params\[1\] b has shape \(2,\); layer 2 \(Dense 4\) expects \(4,\)"),
        (lambda p: [p[0], (p[1][0] * np.nan, p[1][1]), p[2]], ValueError,
         r"params\[1\] W must hold finite real numbers"),
        (lambda p: "weights", TypeError, "params must be a list of"),
        (lambda p: [p[0], p[1][0], p[2]], TypeError, r"params\[1\] must be a \(W, b\) pair"),
    ],
)
def test_bad_params(params_fn, error, match):
    arch = nnpk.MLP(hidden=[5, 4], out=2, b_std=0.1)
    params = nnpk.sample_params(arch, 6, 0, 0)
    with pytest.raises(error, match=match):
        nnpk.empirical(X1, arch=arch, params=params_fn(params))


def test_bias_given_where_arch_has_none():
    arch = nnpk.MLP(hidden=[5], out=2)
    params = nnpk.sample_params(arch, 6, 0, 0)
    with pytest.raises(ValueError, match=r"params\[0\] has a bias but layer 0 \(Dense 5\) has b_std=None"):
        nnpk.empirical(X1, arch=arch, params=[(params[0][0], np.zeros(5)), params[1]])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(wrt="bias"), ValueError, "wrt must be one of all, weights, biases, readout"),
        (dict(wrt=[3]), ValueError, "wrt layer index 3 is out of range for 2 layers"),
        (dict(wrt=[0.5]), TypeError, "wrt layer indices must be integers"),
        (dict(wrt=[]), ValueError, "non-empty list"),
        (dict(get=("ntk", "ntk")), ValueError, "get names a kernel twice"),
        (dict(get=("ntk", "cnn")), ValueError, "get must be 'nngp', 'ntk' or a tuple"),
        (dict(layers="all"), ValueError, "layers='all' is available for get='nngp' only"),
    ],
)
def test_bad_tangent_arguments(kwargs, error, match):
    kwargs.setdefault("get", "ntk")
    with pytest.raises(error, match=match):
        nnpk.monte_carlo(X1, arch=nnpk.MLP(hidden=[4]), n_networks=1, **kwargs)


def test_biases_requested_without_biases():
    with pytest.raises(ValueError, match="wrt='biases' but the architecture has no biases"):
        nnpk.monte_carlo(X1, arch=nnpk.MLP(hidden=[4]), n_networks=1, get="ntk", wrt="biases")


def test_tangent_output_that_cannot_fit(monkeypatch):
    monkeypatch.setenv("NNPK_MEMORY_LIMIT", str(2**20))
    x = np.zeros((400, 6))
    with pytest.raises(MemoryError, match=r"the tangent kernel \(1 x 400 x 400 x C x C float64"):
        nnpk.monte_carlo(x, arch=nnpk.MLP(hidden=[4], out=3), n_networks=1, get="ntk", per_logit=True)
