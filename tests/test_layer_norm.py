"""LayerNorm: each point normalised over chosen axes, in every kernel, training, stores and the scikit-learn
estimators, against a numpy forward pass written here, parameter derivatives by central differences of it, a
numpy recursion of the infinite-width kernels, and Monte Carlo at growing width."""

import math

import numpy as np
import pytest

import nnpk
from nnpk import AvgPool, Conv, Dense, Flatten, GlobalAvgPool, LayerNorm, Network, Residual, _core
from nnpk.architectures._params import check_network_params
from nnpk.sklearn import NNPKRegressor
from reference import ntk_from_jacobians
from reference_networks import apply

EPS = 1e-3  # large enough to matter in every comparison below

CASES = {
    # flat features: one group per point
    "flat": ([Dense(5, b_std=0.3), LayerNorm(eps=EPS), "tanh", Dense(4), LayerNorm(), Dense(2, b_std=0.1)], (3,)),
    # 1-D points: each position over its channels, then all of a point's values together
    "1d": ([Conv(4, 2, b_std=0.2), LayerNorm(eps=EPS), "relu", Conv(3, 3, padding="valid"),
            LayerNorm(axis=(-2, -1)), Flatten(), Dense(2)], (6, 2)),
    # 2-D points: over the positions only (per channel), and over height and channels (per column)
    "2d": ([Conv(3, (2, 2), b_std=0.2), LayerNorm(axis=(0, 1), eps=EPS), "erf", Conv(3, (2, 2)),
            LayerNorm(axis=(0, 2)), GlobalAvgPool(), Dense(2)], (4, 3, 2)),
    # after activations: the engine keeps their outputs, which the backward step reads
    "after_activation": ([Dense(6, b_std=0.3), "relu", LayerNorm(), Dense(4), "tanh", LayerNorm(eps=EPS), Dense(2)],
                         (3,)),
    # the features of a flattened 2-D point, and a residual block with a LayerNorm inside
    "flatten_residual": ([Conv(2, (2, 2)), Flatten(), LayerNorm(eps=EPS),
                          Residual([Dense(24), LayerNorm(), "tanh", Dense(24)], scale=0.5), Dense(1)], (3, 4, 2)),
}


def points(n, shape, seed=0):
    return np.random.default_rng(seed).standard_normal((n,) + shape)


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def layer_norm(h, layer):
    """The definition: (h - mean) / sqrt(var + eps) over the layer's axes of each point (biased variance)."""
    axes = tuple(1 + a for a in layer.normalized_axes(h.ndim - 1))
    centred = h - h.mean(axis=axes, keepdims=True)
    return centred / np.sqrt((centred**2).mean(axis=axes, keepdims=True) + layer.eps)


def apply_layer(item, h, params, parameterization):
    """One layer's output, LayerNorm here, the others by reference_networks (residual blocks recursively)."""
    if isinstance(item, LayerNorm):
        return layer_norm(h, item)
    if isinstance(item, Residual):
        block = h
        for inner in item.block:
            block = apply_layer(inner, block, params, parameterization)
        return h + item.scale * block
    return apply(item, h, params, parameterization)


def forward(net, params, x):
    it = iter(params)
    h = np.asarray(x, dtype=np.float64)
    for item in net.layers:
        h = apply_layer(item, h, it, net.parameterization)
    return h


def jacobian(net, params, x, step=1e-6):
    """d f_c(x) / d theta_p (n, C, P) by central differences of the numpy forward pass, parameters in
    sample_params order (W row-major, then b, layer by layer)."""
    columns = []
    for l, (W, b) in enumerate(params):
        for part, array in ((0, W), (1, b)):
            if array is None:
                continue
            for index in np.ndindex(*array.shape):
                shifted = []
                for sign in (1, -1):
                    moved = [(w.copy(), None if c is None else c.copy()) for w, c in params]
                    moved[l][part][index] += sign * step
                    shifted.append(forward(net, moved, x))
                columns.append((shifted[0] - shifted[1]) / (2 * step))
    return np.stack(columns, axis=-1)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_logits_and_tangent_kernel_equal_numpy(case, parameterization):
    """The engine's float64 forward pass against the numpy one, and its empirical NTK (the backward pass
    through every LayerNorm) against the Jacobian by central differences."""
    layers, shape = CASES[case]
    net = Network(layers, parameterization=parameterization)
    x = points(5, shape)
    params = nnpk.sample_params(net, shape, seed=2, index=1)
    assert rel(nnpk.initial_outputs(x, net, seed=2, index=1), forward(net, params, x)) < 1e-12
    j = jacobian(net, params, x)
    ntk = nnpk.empirical(x, arch=net, params=params, get="ntk")
    assert rel(ntk, ntk_from_jacobians(j, j)) < 1e-7
    nngp = nnpk.empirical(x, arch=net, params=params, get="nngp")
    f = forward(net, params, x)
    assert rel(nngp, f @ f.T / f.shape[1]) < 1e-12


@pytest.mark.parametrize("case", ["1d", "flatten_residual"])
def test_linearized_outputs_use_the_tangent(case):
    """The forward-mode tangent (training a linearisation): f(theta_0) + J (theta - theta_0) against the
    numpy Jacobian times the same direction."""
    layers, shape = CASES[case]
    net = Network(layers)
    x = points(4, shape, 1)
    params = nnpk.sample_params(net, shape, seed=3, index=0)
    rng = np.random.default_rng(4)
    direction = [(rng.standard_normal(W.shape), None if b is None else rng.standard_normal(b.shape)) for W, b in params]
    flat = np.concatenate([np.concatenate([W.ravel()] + ([] if b is None else [b.ravel()])) for W, b in direction])
    want = forward(net, params, x) + jacobian(net, params, x) @ flat
    compiled = net.compile(shape)
    got = _core.sequential_linearized_outputs(x.reshape(len(x), -1), compiled.spec,
                                              check_network_params(params, compiled, np.float64),
                                              check_network_params(direction, compiled, np.float64), True, 1)
    assert rel(np.asarray(got), want) < 1e-7


@pytest.mark.parametrize("case", ["flat", "2d"])
def test_training_gradients_equal_central_differences(case):
    """d loss / d W and d loss / d b of the squared loss, back-propagated through the LayerNorms, against central
    differences of the numpy loss."""
    layers, shape = CASES[case]
    net = Network(layers, parameterization="standard")
    compiled = net.compile(shape)
    x = points(6, shape, 5)
    params = nnpk.sample_params(net, shape, seed=0, index=0)
    y = np.random.default_rng(6).standard_normal((len(x), compiled.out))

    def loss(p):
        return 0.5 * ((forward(net, p, x) - y) ** 2).sum() / len(x)

    n = len(params)
    has_bias = [b is not None for _, b in params]
    trainer = _core.SequentialTrainer(compiled.spec, [True] * n, has_bias, 1, "float64")
    value, gw, gb = trainer.gradients(x.reshape(len(x), -1), check_network_params(params, compiled, np.float64),
                                      "squared", compiled.out, y)
    assert value == pytest.approx(loss(params), rel=1e-12)
    step = 1e-6
    for l, (W, b) in enumerate(params):
        for part, grad in ((0, gw[l]), (1, gb[l])):
            array = (W, b)[part]
            if array is None:
                continue
            numeric = np.empty(array.size)
            for k, index in enumerate(np.ndindex(*array.shape)):
                values = []
                for sign in (1, -1):
                    moved = [(w.copy(), None if c is None else c.copy()) for w, c in params]
                    moved[l][part][index] += sign * step
                    values.append(loss(moved))
                numeric[k] = (values[0] - values[1]) / (2 * step)
            np.testing.assert_allclose(np.ravel(grad), numeric, rtol=1e-6, atol=1e-9)


def test_network_learner_trains_through_layer_norm():
    x = points(32, (6, 2), 7)
    y = np.sin(x[:, :, 0].sum(axis=1))
    arch = Network([Conv(8, 3), LayerNorm(), "relu", Conv(8, 3), LayerNorm(axis=(-2, -1)), GlobalAvgPool(), Dense(1)],
                   parameterization="standard")
    learner = nnpk.NetworkLearner(arch, loss="squared", optimizer="adam", lr=1e-2, epochs=40, batch_size=16)
    learner.fit(x, y)
    loss = learner.history_["loss"]
    assert loss[-1] < 0.5 * loss[0]


# The infinite-width kernels, by a numpy recursion written from the definitions.

def _relu(q1, q2, c):
    """E[relu(u) relu(v)] and E[relu'(u) relu'(v)] for variances q1 (rows), q2 (columns), covariance c."""
    p = np.outer(q1, q2)
    theta = np.arccos(np.clip(c / np.sqrt(p), -1, 1))
    return (np.sqrt(np.maximum(p - c * c, 0)) + (np.pi - theta) * c) / (2 * np.pi), (np.pi - theta) / (2 * np.pi)


def _flat_recursion(x, w, b, widths, eps, parameterization):
    """Dense(w, b), LayerNorm(eps), relu, Dense(w), LayerNorm(eps), Dense(1, w, b) on flat points."""
    sigma, theta = x @ x.T / x.shape[1], np.zeros((len(x), len(x)))
    fan_ins = [x.shape[1]] + list(widths)

    def dense(sigma, theta, w, b, fan_in):
        new = w * w * sigma + (0.0 if b is None else b * b)
        if parameterization == "ntk":
            return new, new + w * w * theta
        return new, fan_in * sigma + w * w * theta + (0.0 if b is None else 1.0)

    def norm(sigma, theta):
        q = eps + np.diag(sigma)
        scale = 1 / np.sqrt(np.outer(q, q))
        return sigma * scale, theta * scale

    sigma, theta = norm(*dense(sigma, theta, w, b, fan_ins[0]))
    d = np.diag(sigma)
    sigma, dot = _relu(d, d, sigma)
    theta = theta * dot
    sigma, theta = norm(*dense(sigma, theta, w, None, fan_ins[1]))
    return dense(sigma, theta, w, b, fan_ins[2])


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_flat_analytic_kernels_equal_a_numpy_recursion(parameterization):
    x = points(6, (4,), 8)
    w, b, eps = 1.3, 0.4, 0.05
    arch = Network([Dense(7, W_std=w, b_std=b), LayerNorm(eps=eps), "relu", Dense(5, W_std=w), LayerNorm(eps=eps),
                    Dense(1, W_std=w, b_std=b)], parameterization=parameterization)
    got = nnpk.analytic(x, arch=arch, get=("nngp", "ntk"))
    want = _flat_recursion(x, w, b, (7, 5), eps, parameterization)
    np.testing.assert_allclose(got["nngp"], want[0], rtol=1e-12)
    np.testing.assert_allclose(got["ntk"], want[1], rtol=1e-12)
    # x2 given: the same entries
    cross = nnpk.analytic(x[:2], x, arch=arch, get=("nngp", "ntk"))
    np.testing.assert_allclose(cross["nngp"], want[0][:2], rtol=1e-12)
    np.testing.assert_allclose(cross["ntk"], want[1][:2], rtol=1e-12)


def _conv_recursion(x, w, b, eps, axes):
    """Conv(kernel 1, w, b) (each pair of positions: w^2 x_p . x'_q / c + b^2), LayerNorm over the channels
    (axes "channels") or the positions and channels (axes "all"), relu entry by entry, GlobalAvgPool (the mean
    over all pairs of positions), Dense(1, w): the NNGP and the "ntk" NTK of 1-D points."""
    n, length, c = x.shape
    sigma = {(i, j): w * w * x[i] @ x[j].T / c + b * b for i in range(n) for j in range(n)}
    theta = dict(sigma)  # Theta^0 = 0: the first layer's NTK is its NNGP

    def variances(i):
        v = np.diag(sigma[i, i])
        return v if axes == "channels" else np.full(length, v.mean())

    v = {i: eps + variances(i) for i in range(n)}
    for key in sigma:
        scale = 1 / np.sqrt(np.outer(v[key[0]], v[key[1]]))
        sigma[key], theta[key] = sigma[key] * scale, theta[key] * scale
    diag = {i: np.diag(sigma[i, i]) for i in range(n)}
    # The LayerNorm layer's own kernels: its features averaged over positions.
    K_norm = np.array([[sigma[i, j].mean() for j in range(n)] for i in range(n)])
    T_norm = np.array([[theta[i, j].mean() for j in range(n)] for i in range(n)])
    K, T = np.empty((n, n)), np.empty((n, n))
    for (i, j), s in sigma.items():
        s2, dot = _relu(diag[i], diag[j], s)
        K[i, j] = w * w * s2.mean()
        T[i, j] = K[i, j] + w * w * (theta[i, j] * dot).mean()
    return K, T, K_norm, T_norm


@pytest.mark.parametrize("axes", ["channels", "all"])
def test_conv_analytic_kernels_equal_a_numpy_recursion(axes):
    x = points(4, (5, 3), 9)
    w, b, eps = 1.2, 0.5, 0.1
    axis = -1 if axes == "channels" else (-2, -1)
    arch = Network([Conv(6, 1, W_std=w, b_std=b), LayerNorm(axis=axis, eps=eps), "relu", GlobalAvgPool(),
                    Dense(1, W_std=w)])
    got = nnpk.analytic(x, arch=arch, get=("nngp", "ntk"), layers="all")
    K, T, K_norm, T_norm = _conv_recursion(x, w, b, eps, axes)
    np.testing.assert_allclose(got["nngp"][-1], K, rtol=1e-12)
    np.testing.assert_allclose(got["ntk"][-1], T, rtol=1e-12)
    np.testing.assert_allclose(got["nngp"][1], K_norm, rtol=1e-12)
    np.testing.assert_allclose(got["ntk"][1], T_norm, rtol=1e-12)


def test_analytic_layer_norm_of_flattened_features_uses_the_mean_variance():
    """After Flatten, normalising a point's features divides each position's covariances by the variance
    averaged over positions: the same as LayerNorm over the positions and channels before Flatten."""
    x = points(5, (3, 4, 2), 10)
    body = [Conv(3, (2, 2), b_std=0.3)]
    tail = [Dense(2, W_std=1.1, b_std=0.2)]
    before = Network(body + [LayerNorm(axis=(-3, -2, -1), eps=0.01), Flatten()] + tail)
    after = Network(body + [Flatten(), LayerNorm(eps=0.01)] + tail)
    for get in ("nngp", "ntk"):
        np.testing.assert_allclose(nnpk.analytic(x, arch=after, get=get), nnpk.analytic(x, arch=before, get=get),
                                   rtol=1e-13)


def test_analytic_layer_norm_keeps_the_kernel_a_correlation():
    """Without eps (here 1e-12) and bias, a LayerNorm'd layer's NNGP is the input correlation: unit diagonal."""
    x = points(6, (5,), 11) * np.arange(1, 7)[:, None]
    arch = Network([Dense(4, W_std=2.0), LayerNorm()])
    k = nnpk.analytic(x, arch=arch)
    g = x @ x.T
    np.testing.assert_allclose(k, g / np.sqrt(np.outer(np.diag(g), np.diag(g))), rtol=1e-10)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
@pytest.mark.parametrize("spatial", [False, True])
def test_monte_carlo_converges_to_the_analytic_kernel(get, spatial):
    """Finite width: the mean over channels is O(1/width) of the kernel, the standard error shrinks with the
    networks; both within a few standard errors and a 1/width term of the infinite-width kernel."""
    if spatial:
        x = points(5, (4, 4, 1), 12)
        arch = lambda ch: Network([Conv(ch, (2, 2), b_std=0.2), LayerNorm(axis=(0, 1, 2)), "relu",  # noqa: E731
                                   AvgPool((2, 2), stride=1), Conv(ch, (2, 2)), LayerNorm(axis=(0, 2)), "erf",
                                   GlobalAvgPool(), Dense(1, b_std=0.1)])
        width = 128
    else:
        x = points(6, (3,), 12)
        arch = lambda ch: Network([Dense(ch, b_std=0.3), LayerNorm(eps=0.01), "relu", Dense(ch),  # noqa: E731
                                   LayerNorm(), "tanh", Dense(1)], parameterization="standard")
        width = 256
    exact = nnpk.analytic(x, arch=arch(width), get=get)
    estimate, info = nnpk.monte_carlo(x, arch=arch(width), n_networks=48, seed=4, get=get,
                                      return_standard_error=True)
    error = np.linalg.norm(estimate - exact) / np.linalg.norm(exact)
    tolerance = 3 * info["standard_error"] + 2 / width  # the standard error is relative
    assert error < tolerance < 0.1


def test_conditional_estimator_reads_layer_norm_features():
    """The default NNGP estimator of a network ending Dense -> relu -> Dense integrates the last layers given the
    features below, LayerNorm's here: within a few standard errors of the infinite-width kernel."""
    x = points(6, (3,), 19)
    arch = Network([Dense(256, b_std=0.2), LayerNorm(), "relu", Dense(256), "relu", Dense(1)])
    assert nnpk.kernels.default_estimator(arch) == "conditional"
    exact = nnpk.analytic(x, arch=arch)
    estimate, info = nnpk.monte_carlo(x, arch=arch, n_networks=16, seed=1, return_standard_error=True)
    assert np.linalg.norm(estimate - exact) / np.linalg.norm(exact) < 3 * info["standard_error"] + 2 / 256


@pytest.mark.parametrize("kernel", ["mc", "empirical", "analytic"])
def test_two_threads_equal_one(kernel):
    layers, shape = CASES["2d"] if kernel != "analytic" else (
        [Conv(3, (2, 2), b_std=0.2), LayerNorm(axis=(0, 2)), "relu", Conv(3, (2, 2)), AvgPool((2, 2), stride=1),
         Flatten(), LayerNorm(), Dense(2)], (4, 3, 2))
    net = Network(layers)
    x = points(200, shape, 13)
    if kernel == "mc":
        run = lambda t: nnpk.monte_carlo(x, arch=net, n_networks=3, get=("nngp", "ntk"), n_threads=t,  # noqa
                                         dtype="float32")
    elif kernel == "empirical":
        params = nnpk.sample_params(net, shape, seed=0, index=0)
        run = lambda t: nnpk.empirical(x, arch=net, params=params, get=("nngp", "ntk"), n_threads=t)  # noqa
    else:
        run = lambda t: nnpk.analytic(x[:40], arch=net, get=("nngp", "ntk"), n_threads=t)  # noqa
    one, two = run(1), run(2)
    for name in ("nngp", "ntk"):
        assert np.array_equal(one[name], two[name])


def test_layer_norm_on_sequences():
    """A Recurrent layer returning sequences, then LayerNorm of each step's units: the Monte Carlo kernels run, and
    each step's normalised units have mean 0 and mean square 1 (eps aside) in the readout's input."""
    x = points(4, (5, 3), 14)
    net = Network([nnpk.Recurrent(16, "tanh", return_sequences=True), LayerNorm(eps=1e-12)])
    f = nnpk.initial_outputs(x, net, seed=1).reshape(4, 5, 16)
    np.testing.assert_allclose(f.mean(axis=-1), 0, atol=1e-12)
    np.testing.assert_allclose((f**2).mean(axis=-1), 1, rtol=1e-9)
    k = nnpk.monte_carlo(x, arch=Network(net.layers + (Dense(2),)), n_networks=2, get="ntk")
    assert np.all(np.isfinite(k))


def test_store_and_job_spec_round_trip(tmp_path):
    x = points(6, (4, 3, 2), 15)
    arch = Network([Conv(3, (2, 2), b_std=0.1), LayerNorm(axis=(0, 2), eps=0.01), "relu", Flatten(), Dense(1)])
    store = nnpk.compute_to_store(tmp_path / "a", x, arch=Network([Conv(3, (2, 2)), LayerNorm(), "relu", Flatten(),
                                                                   Dense(1)]),
                                  kernel="analytic_ntk", tile_size=96)
    np.testing.assert_allclose(store.to_numpy(), nnpk.analytic(x, arch=store.arch, get="ntk"), rtol=1e-15)
    store = nnpk.compute_to_store(tmp_path / "m", x, arch=arch, kernel="nngp", n_networks=2, tile_size=96)
    assert store.arch == arch
    assert store.spec["arch"]["layers"][1] == {"type": "LayerNorm", "axis": [0, 2], "eps": 0.01}
    np.testing.assert_allclose(store.to_numpy(), nnpk.monte_carlo(x, arch=arch, n_networks=2), rtol=1e-6)


def test_sklearn_estimator_takes_layer_norm():
    x = points(20, (4, 3, 1), 16).reshape(20, -1)
    y = x.sum(axis=1)
    arch = Network([Conv(2, (2, 2)), LayerNorm(), "relu", Flatten(), Dense(1)])
    model = NNPKRegressor(arch=arch, input_shape=(4, 3, 1), method="analytic", ridge=1e-3).fit(x[:15], y[:15])
    k_train = nnpk.analytic(x[:15].reshape(15, 4, 3, 1), arch=arch)
    k_test = nnpk.analytic(x[15:].reshape(5, 4, 3, 1), x[:15].reshape(15, 4, 3, 1), arch=arch)
    np.testing.assert_allclose(model.predict(x[15:]), nnpk.kernel_ridge(k_train, y[:15], k_test, 1e-3), rtol=1e-8)
    mc = NNPKRegressor(arch=arch, input_shape=(4, 3, 1), method="monte_carlo", n_networks=2, ridge=1e-3)
    assert mc.fit(x[:15], y[:15]).predict(x[15:]).shape == (5,)


# Refusals, each naming what is wrong.

def test_layer_arguments_are_checked():
    with pytest.raises(ValueError, match="eps must be finite and > 0"):
        LayerNorm(eps=0)
    with pytest.raises(TypeError, match="eps must be a number"):
        LayerNorm(eps="small")
    with pytest.raises(TypeError, match="axis must be an int or a tuple of ints"):
        LayerNorm(axis=1.5)
    with pytest.raises(ValueError, match="axis has repeated entries"):
        LayerNorm(axis=(1, 1))
    with pytest.raises(ValueError, match="axis must name at least one axis"):
        LayerNorm(axis=())
    assert LayerNorm(axis=[0, -1]).axis == (0, -1)


def test_axes_are_checked_against_the_points():
    with pytest.raises(ValueError, match=r"layer 1 \(LayerNorm axis 1, eps 1e-12\): axis 1 is out of range for "
                                         r"points of 1 axis; points here have shape \(4,\)"):
        Network([Dense(4), LayerNorm(axis=1), Dense(1)]).compile((3,))
    with pytest.raises(ValueError, match=r"layer 1 .*: axis \(0, -2\) names the same axis twice"):
        Network([Conv(2, 2), LayerNorm(axis=(0, -2)), Flatten(), Dense(1)]).compile((5, 2))


def test_analytic_refusals_say_why():
    x = points(3, (4, 3), 17)
    with pytest.raises(ValueError, match=r"layer 1 \(LayerNorm axis 0.*\) normalises over positions only, not over "
                                         "the channels"):
        nnpk.analytic(x, arch=Network([Conv(2, 2), LayerNorm(axis=0), Flatten(), Dense(1)]))
    with pytest.raises(ValueError, match=r"layer 0 \(LayerNorm.*\) reads the network's input"):
        nnpk.analytic(x, arch=Network([LayerNorm(), Conv(2, 2), Flatten(), Dense(1)]))
    with pytest.raises(ValueError, match=r"layer 2 \(LayerNorm.*\) reads features that are not Gaussian"):
        nnpk.analytic(x[:, 0], arch=Network([Dense(3), "relu", LayerNorm(), Dense(1)]))
    # the Monte Carlo kernels take all of them
    for arch in (Network([Conv(2, 2), LayerNorm(axis=0), Flatten(), Dense(1)]),
                 Network([LayerNorm(), Conv(2, 2), Flatten(), Dense(1)])):
        assert np.all(np.isfinite(nnpk.monte_carlo(x, arch=arch, n_networks=1, get="ntk")))


def test_masks_refuse_a_layer_norm_after_the_masked_units():
    x = points(16, (3,), 18)
    arch = Network([Dense(8), "relu", LayerNorm(), Dense(1)])
    with pytest.raises(ValueError, match=r"layer 2 \(LayerNorm.*\) normalises the units of layer 1 together"):
        nnpk.NetworkLearner(arch, train="masks", loss="squared", epochs=1).fit(x, x[:, 0])


def test_constant_points_are_finite():
    """A point whose normalised values are all equal: eps keeps the output finite (zero)."""
    net = Network([LayerNorm(eps=1e-6), Dense(2)])
    x = np.ones((2, 5))
    assert np.array_equal(nnpk.initial_outputs(x, net), np.zeros((2, 2)))
    assert math.isfinite(nnpk.empirical(x, arch=net, params=nnpk.sample_params(net, 5, 0, 0), get="ntk")[0, 0])
