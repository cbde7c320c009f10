"""Parallel branches merged by FanInSum, FanInProd and FanInConcat, in every kernel, training, stores and the
scikit-learn estimators: against a numpy forward pass written here, Jacobians by finite differences of it, a
numpy recursion of the infinite-width kernels written here, and Monte Carlo at growing width."""

import numpy as np
import pytest

import nnpk
from nnpk import (
    AvgPool,
    Conv,
    Dense,
    FanInConcat,
    FanInProd,
    FanInSum,
    Flatten,
    GlobalAvgPool,
    Network,
    Parallel,
    Residual,
    _core,
)
from nnpk.architectures._params import check_network_params
from nnpk.sklearn import NNPKRegressor
from reference_networks import apply


def merged(merge, outs):
    """The numpy merge of the branches' outputs (n, ...): sum, product or concatenation (the axis of a point's
    shape, so one more for the batch)."""
    if isinstance(merge, FanInSum):
        return sum(outs[1:], outs[0])
    if isinstance(merge, FanInProd):
        return np.prod(np.stack(outs), axis=0)
    return np.concatenate(outs, axis=merge.axis if merge.axis < 0 else merge.axis + 1)


CASES = {
    # a sum with an identity branch and a branch of three layers
    "sum": ([Dense(5, b_std=0.2), "tanh", Parallel([[Dense(5, b_std=0.1), "erf", Dense(5)], Dense(5), []]), FanInSum(),
             "tanh", Dense(2, b_std=0.1)], (3,)),
    "prod": ([Dense(6, b_std=0.1), "erf", Parallel([[Dense(4), "tanh"], Dense(4, b_std=0.2)]), FanInProd(),
              Dense(2)], (3,)),
    "concat": ([Dense(6), "relu", Parallel([Dense(3, b_std=0.1), ["erf"], [Dense(2), "relu"]]), FanInConcat(),
                Dense(2)], (4,)),
    "nested": ([Dense(4), Parallel([[Dense(4), "tanh", Parallel([Dense(4), []]), FanInProd()], []]), FanInSum(),
                "relu", Dense(1, b_std=0.3)], (3,)),
    "conv": ([Conv(3, 3, b_std=0.1), "relu", Parallel([[Conv(3, 3), "erf"], [AvgPool(3, stride=1, padding="same")],
                                                       Conv(2, 1)]), FanInConcat(-1), Flatten(), Dense(2)], (5, 2)),
    "conv2d_prod": ([Conv(3, (2, 2)), Parallel([Conv(3, (2, 2), b_std=0.2), ["tanh", Conv(3, (1, 1))]]), FanInProd(),
                     GlobalAvgPool(), Dense(2)], (3, 4, 2)),
    # positions concatenated: a 1-D signal's length (unequal lengths), a 2-D point's width
    "length": ([Conv(3, 2, b_std=0.1), Parallel([[Conv(3, 3), "erf"], [AvgPool(2)], Conv(3, 2, padding="valid")]),
                FanInConcat(0), "tanh", Conv(2, 3, stride=2), Flatten(), Dense(2)], (6, 2)),
    "width": ([Conv(2, (2, 2)), Parallel([[Conv(2, (1, 2), padding="valid"), "relu"], Conv(2, (2, 2))]),
               FanInConcat(-2), AvgPool((2, 3), stride=1), Flatten(), Dense(2)], (3, 4, 1)),
}


def points(n, shape, seed=0):
    return np.random.default_rng(seed).standard_normal((n,) + shape)


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def run(layers, h, params, parameterization):
    """The numpy forward pass of `layers` (branches included), parameters taken from the iterator in order."""
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Parallel):
            outs = [run(branch, h, params, parameterization) for branch in layer.branches]
            h = merged(layers[i + 1], outs)
            i += 2
        else:
            h = apply(layer, h, params, parameterization)
            i += 1
    return h


def numpy_logits(net, params, x):
    return run(net.layers, np.asarray(x, np.float64), iter(params), net.parameterization)


def finite_difference_jacobian(net, params, x, eps=1e-6):
    """d f_c(x) / d theta_p (n, C, P) by central differences of the numpy forward pass."""
    flat = [a for W, b in params for a in ((W,) if b is None else (W, b))]
    columns = []
    for a in flat:
        for index in np.ndindex(*a.shape):
            keep = a[index]
            a[index] = keep + eps
            up = numpy_logits(net, params, x)
            a[index] = keep - eps
            down = numpy_logits(net, params, x)
            a[index] = keep
            columns.append((up - down) / (2 * eps))
    return np.stack(columns, axis=-1)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_forward_and_tangent_kernel_against_numpy(case, parameterization):
    """Logits against the numpy forward pass; the engine's empirical NTK (its backward pass: a fork sums its
    readers' cotangents, a product multiplies by the other branch) against Jacobians by finite differences."""
    layers, shape = CASES[case]
    net = Network(layers, parameterization=parameterization)
    x = points(5, shape, 1)
    params = [(np.array(W, np.float64), None if b is None else np.array(b, np.float64))
              for W, b in nnpk.sample_params(net, shape, seed=3, index=2)]
    assert rel(nnpk.initial_outputs(x, net, seed=3, index=2), numpy_logits(net, params, x)) < 1e-12
    j = finite_difference_jacobian(net, params, x)
    want = np.einsum("icp,jcp->ij", j, j) / j.shape[1]
    ntk = nnpk.empirical(x, arch=net, params=params, get="ntk")
    assert rel(ntk, want) < 1e-6
    nngp = nnpk.empirical(x, arch=net, params=params, get="nngp")
    f = numpy_logits(net, params, x)
    assert rel(nngp, f @ f.T / f.shape[1]) < 1e-12


@pytest.mark.parametrize("case", ["nested", "length"])
def test_each_branch_layers_tangent_kernel_against_finite_differences(case):
    """Per layer (weights and biases apart): every branch's parameters get their own cotangents."""
    layers, shape = CASES[case]
    net = Network(layers)
    x = points(4, shape, 16)
    params = [(np.array(W, np.float64), None if b is None else np.array(b, np.float64))
              for W, b in nnpk.sample_params(net, shape, seed=5, index=0)]
    j = finite_difference_jacobian(net, params, x)
    parts = nnpk.empirical(x, arch=net, params=params, get="ntk", per_layer=True)
    start = 0
    for layer, (W, b) in enumerate(params):
        for name, size in (("weights", W.size), ("biases", 0 if b is None else b.size)):
            if not size:
                continue
            cols = j[..., start:start + size]
            start += size
            want = np.einsum("icp,jcp->ij", cols, cols) / j.shape[1]
            assert rel(parts[name][layer], want) < 1e-6, (layer, name)


@pytest.mark.parametrize("case", ["sum", "prod", "concat", "conv", "length", "width"])
def test_tangent_pass_matches_finite_differences(case):
    """The forward-mode tangent (the linearised network) through merges, against differences of the logits."""
    layers, shape = CASES[case]
    net = Network(layers)
    compiled = net.compile(shape)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7,) + shape).reshape(7, -1)
    theta = check_network_params(nnpk.sample_params(net, shape, 0, 0), compiled, np.float64)
    direction = [(rng.standard_normal(W.shape), None if b is None else rng.standard_normal(b.shape)) for W, b in theta]
    jvp = _core.sequential_linearized_outputs(x, compiled.spec, theta, direction, False, 2, None)
    eps = 1e-6

    def moved(sign):
        params = [(W + sign * eps * dW, None if b is None else b + sign * eps * db)
                  for (W, b), (dW, db) in zip(theta, direction)]
        return _core.sequential_outputs(x, compiled.spec, params, 1, None, False)

    numeric = (moved(1) - moved(-1)) / (2 * eps)
    np.testing.assert_allclose(jvp, numeric, rtol=1e-6, atol=1e-7 * np.abs(numeric).max())


# ---------------------------------------------------------------- the infinite-width recursion, in numpy


def _dual(name, K):
    """(E[phi(u) phi(v)], E[phi'(u) phi'(v)]) over the pairs of a symmetric kernel matrix K."""
    q = np.diag(K)
    if name == "relu":
        y = np.sqrt(np.maximum(np.outer(q, q) - K * K, 0.0))
        theta = np.arctan2(y, K)
        return (y + (np.pi - theta) * K) / (2 * np.pi), (np.pi - theta) / (2 * np.pi)
    if name == "erf":
        d = np.outer(1 + 2 * q, 1 + 2 * q)
        return 2 / np.pi * np.arcsin(2 * K / np.sqrt(d)), 4 / np.pi / np.sqrt(d - 4 * K * K)
    raise AssertionError(name)


def recursion(layers, K, T, fan, parameterization):
    """(NNGP, NTK, features) after `layers`: dense layers, relu and erf, and branches (independent)."""
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Parallel):
            outs = [recursion(branch, K, T, fan, parameterization) for branch in layer.branches]
            merge = type(layers[i + 1]).__name__
            Ks, Ts, fans = zip(*outs)
            fan = fans[0]
            if merge == "FanInSum":
                K, T = sum(Ks), sum(Ts)
            elif merge == "FanInProd":
                K = np.prod(np.stack(Ks), axis=0)
                T = sum(Ts[a] * np.prod(np.stack([Ks[b] for b in range(len(Ks)) if b != a]), axis=0)
                        for a in range(len(Ks)))
            else:
                K = sum(f * k for f, k in zip(fans, Ks)) / sum(fans)
                T = sum(f * t for f, t in zip(fans, Ts)) / sum(fans)
                fan = sum(fans)
            i += 2
            continue
        name = type(layer).__name__
        if name in ("Dense", "Conv"):
            w2, b2 = layer.W_std**2, (layer.b_std or 0.0) ** 2
            new = w2 * K + b2
            if parameterization == "ntk":
                T = new + w2 * T
            else:
                T = fan * K + w2 * T + (1.0 if layer.b_std is not None else 0.0)
            K, fan = new, (layer.width if name == "Dense" else layer.channels)
        elif name == "Flatten":
            pass  # one position
        else:
            K, dot = _dual(layer.name, K)
            T = T * dot
        i += 1
    return K, T, fan


def numpy_analytic(net, x):
    x = x.reshape(x.shape[0], -1)
    K0 = x @ x.T / x.shape[1]
    K, T, _ = recursion(net.layers, K0, np.zeros_like(K0), x.shape[1], net.parameterization)
    return K, T


ANALYTIC = {
    "sum": [Dense(5, W_std=1.2, b_std=0.2), "relu", Parallel([[Dense(5, b_std=0.1), "erf", Dense(5)], Dense(5), []]),
            FanInSum(), Dense(2, b_std=0.1)],
    "prod": [Dense(6, b_std=0.1), "erf", Parallel([[Dense(4), "relu"], Dense(4, b_std=0.2), Dense(4, W_std=0.7)]),
             FanInProd(), Dense(2)],
    "concat": [Dense(6), "relu", Parallel([Dense(3, b_std=0.1), [], [Dense(2, W_std=1.5), "erf"]]), FanInConcat(),
               Dense(2, b_std=0.5)],
    "nested": [Dense(4, b_std=0.1), Parallel([[Dense(4), Parallel([Dense(4), [Dense(3), "relu", Dense(4)]]),
                                               FanInSum(), "erf"], Dense(4)]), FanInProd(), Dense(1, b_std=0.3)],
}


@pytest.mark.parametrize("case", sorted(ANALYTIC))
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_analytic_against_a_numpy_recursion(case, parameterization):
    """The flat engine, and the convolutional engine on points of one position (Conv of kernel size 1 in place of
    Dense), against the numpy recursion of the same network."""
    layers = ANALYTIC[case]
    net = Network(layers, parameterization=parameterization)
    x = points(6, (3,), 2)
    K, T = numpy_analytic(net, x)
    got = nnpk.analytic(x, arch=net, get=("nngp", "ntk"))
    np.testing.assert_allclose(got["nngp"], K, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got["ntk"], T, rtol=1e-12, atol=1e-14)

    def as_conv(items):
        out = []
        for layer in items:
            if isinstance(layer, Dense):
                layer = Conv(layer.width, 1, W_std=layer.W_std, b_std=layer.b_std)
            elif isinstance(layer, Parallel):
                layer = Parallel([as_conv(list(branch)) if branch else [] for branch in layer.branches])
            out.append(layer)
        return out

    body = as_conv(layers[:-1])
    conv = Network(body + [Flatten(), layers[-1]], parameterization=parameterization)
    spatial = nnpk.analytic(x[:, None, :], arch=conv, get=("nngp", "ntk"))
    np.testing.assert_allclose(spatial["nngp"], K, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(spatial["ntk"], T, rtol=1e-12, atol=1e-14)


def test_residual_is_a_parallel_sum():
    """Residual(block) and Parallel([block, []]) + FanInSum() are one network: same logits, same kernels."""
    block = ["relu", Dense(5, b_std=0.1)]
    residual = Network([Dense(5), Residual(block), Dense(2)])
    parallel = Network([Dense(5), Parallel([block, []]), FanInSum(), Dense(2)])
    x = points(5, (3,), 3)
    np.testing.assert_array_equal(nnpk.initial_outputs(x, residual, seed=1), nnpk.initial_outputs(x, parallel, seed=1))
    for get in ("nngp", "ntk"):
        np.testing.assert_allclose(nnpk.analytic(x, arch=parallel, get=get), nnpk.analytic(x, arch=residual, get=get),
                                   rtol=1e-14)


MONTE_CARLO = {
    # sums with an identity branch and a branch of three layers, then a concatenation of unequal widths
    "sum_concat": (lambda m: [Dense(m, b_std=0.2), "relu",
                              Parallel([[Dense(m), "erf", Dense(m)], Dense(m, b_std=0.1), []]), FanInSum(),
                              Parallel([Dense(m), [Dense(m // 2), "relu"]]), FanInConcat(), Dense(4, b_std=0.1)],
                   32, 0.05),
    # a product of the identity and a Dense layer: fourth moments of Gaussians, a noisier estimate
    "prod": (lambda m: [Dense(m), "relu", Dense(m), Parallel([Dense(m, W_std=1.2), []]), FanInProd(),
                        Dense(4, b_std=0.1)], 64, 0.08),
}


@pytest.mark.parametrize("case", sorted(MONTE_CARLO))
@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_monte_carlo_converges_to_the_analytic_kernel(case, get):
    layers, n_networks, bound = MONTE_CARLO[case]
    x = points(5, (4,), 5)
    exact = nnpk.analytic(x, arch=Network(layers(2)), get=get)
    width = 256
    estimate, info = nnpk.monte_carlo(x, arch=Network(layers(width)), n_networks=n_networks, seed=4, get=get,
                                      return_standard_error=True)
    error = np.linalg.norm(estimate - exact) / np.linalg.norm(exact)
    assert info["standard_error"] < bound
    assert error < 4 * info["standard_error"] + 8 / width


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_monte_carlo_converges_to_the_spatial_analytic_kernel(get):
    x = points(4, (6, 2), 6)
    arch = lambda ch: Network([Conv(ch, 3, b_std=0.1), "relu",  # noqa: E731
                               Parallel([[Conv(ch, 3), "erf"], Conv(ch, 1, b_std=0.2)]), FanInProd(),
                               Parallel([Conv(ch, 2), [AvgPool(3, stride=1, padding="same")]]), FanInConcat(),
                               AvgPool(2), Flatten(), Dense(8)])
    exact = nnpk.analytic(x, arch=arch(1), get=get)
    channels = 128
    estimate, info = nnpk.monte_carlo(x, arch=arch(channels), n_networks=24 if get == "nngp" else 12, seed=2, get=get,
                                      return_standard_error=True)
    error = np.linalg.norm(estimate - exact) / np.linalg.norm(exact)
    assert info["standard_error"] < 0.06
    assert error < 4 * info["standard_error"] + 8 / channels


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_monte_carlo_converges_to_the_analytic_kernel_of_concatenated_positions(get):
    """Pooling and a convolution across the border of two branches' positions (unequal lengths), then an
    activation of the concatenated (Gaussian) positions."""
    x = points(4, (5, 2), 14)
    arch = lambda ch: Network([Conv(ch, 2, b_std=0.1), "relu",  # noqa: E731
                               Parallel([Conv(ch, 3, padding="valid"), [Conv(ch, 2), AvgPool(2, stride=1)], []]),
                               FanInConcat(0), AvgPool(3, stride=2, padding="same"), Conv(ch, 2), "erf",
                               GlobalAvgPool(), Dense(8)])
    exact = nnpk.analytic(x, arch=arch(1), get=get)
    channels = 128
    estimate, info = nnpk.monte_carlo(x, arch=arch(channels), n_networks=24 if get == "nngp" else 12, seed=3,
                                      get=get, return_standard_error=True)
    error = np.linalg.norm(estimate - exact) / np.linalg.norm(exact)
    assert info["standard_error"] < 0.06
    assert error < 4 * info["standard_error"] + 8 / channels


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_concatenated_positions_read_by_flatten_average_the_branches(get):
    """Flatten then Dense averages the same-position covariances: over concatenated positions, the branches'
    flattened kernels weighted by their numbers of positions."""
    x = points(5, (4, 3, 2), 15)
    head = [Conv(3, (2, 2), b_std=0.2), "relu"]
    a, b = [Conv(3, (3, 2), padding="valid"), "erf"], [Conv(3, (1, 1)), AvgPool((2, 2), stride=1)]
    both = nnpk.analytic(x, arch=Network(head + [Parallel([a, b]), FanInConcat(0), Flatten(), Dense(1)]), get=get)
    ka = nnpk.analytic(x, arch=Network(head + a + [Flatten(), Dense(1)]), get=get)
    kb = nnpk.analytic(x, arch=Network(head + b + [Flatten(), Dense(1)]), get=get)
    # branch a keeps 2 x 2 positions, branch b 3 x 2
    np.testing.assert_allclose(both, (4 * ka + 6 * kb) / 10, rtol=1e-12)


def test_layers_all_skips_the_parallel_and_matches_the_recursion():
    net = Network(ANALYTIC["concat"])
    assert net.kernel_layers() == (0, 1, 3, 4)
    x = points(5, (3,), 7)
    kernels = nnpk.analytic(x, arch=net, layers="all")
    assert len(kernels) == 4
    np.testing.assert_allclose(kernels[-1], numpy_analytic(net, x)[0], rtol=1e-12)
    # The merge's kernel: the concatenated features' h . h' / width.
    mc = nnpk.monte_carlo(x, arch=net, n_networks=3, layers="all")
    assert len(mc) == 4


def test_bitwise_the_same_on_one_and_two_threads():
    layers, shape = CASES["conv"]
    net = Network(layers)
    x = points(40, shape, 8)
    params = nnpk.sample_params(net, shape, seed=0, index=0)
    for kernel, kw in ((nnpk.monte_carlo, dict(n_networks=3)), (nnpk.empirical, dict(params=params))):
        one = kernel(x, arch=net, get=("nngp", "ntk"), n_threads=1, **kw)
        two = kernel(x, arch=net, get=("nngp", "ntk"), n_threads=2, **kw)
        for name in ("nngp", "ntk"):
            np.testing.assert_array_equal(one[name], two[name])
    analytic = Network(ANALYTIC["nested"])
    y = points(40, (3,), 9)
    np.testing.assert_array_equal(nnpk.analytic(y, arch=analytic, get="ntk", n_threads=1),
                                  nnpk.analytic(y, arch=analytic, get="ntk", n_threads=2))
    spatial = Network([Conv(2, 2), Parallel([Conv(2, 3), [AvgPool(2)]]), FanInConcat(0), AvgPool(3, stride=2),
                       Flatten(), Dense(1)])
    z = points(20, (5, 2), 10)
    np.testing.assert_array_equal(nnpk.analytic(z, arch=spatial, get="ntk", n_threads=1),
                                  nnpk.analytic(z, arch=spatial, get="ntk", n_threads=2))


def test_training_goes_through_branches():
    """A few Adam steps on a network with a product and a concatenation of branches lower the loss."""
    x = points(32, (4,), 10)
    y = x[:, 0] * x[:, 1] + x[:, 2]
    arch = Network([Dense(16, b_std=0.1), Parallel([[Dense(16), "tanh"], Dense(16)]), FanInProd(),
                    Parallel([[Dense(8), "relu"], []]), FanInConcat(), Dense(1)])
    learner = nnpk.NetworkLearner(arch, loss="squared", optimizer="adam", lr=1e-2, epochs=40, batch_size=32)
    learner.fit(x, y)
    loss = learner.history_["loss"]
    assert loss[-1] < 0.5 * loss[0]


def test_store_round_trip(tmp_path):
    x = points(6, (3,), 11)
    arch = Network(ANALYTIC["nested"])
    store = nnpk.compute_to_store(tmp_path / "k", x, arch=arch, kernel="analytic_ntk", tile_size=96)
    assert store.arch == arch
    np.testing.assert_allclose(store.to_numpy(), nnpk.analytic(x, arch=arch, get="ntk"), rtol=1e-15)
    assert [layer["type"] for layer in store.spec["arch"]["layers"]][1:3] == ["Parallel", "FanInProd"]


def test_sklearn_estimator_takes_branches():
    x = points(20, (3,), 12)
    y = x.sum(axis=1)
    arch = Network(ANALYTIC["sum"])
    model = NNPKRegressor(arch=arch, method="analytic", ridge=1e-3).fit(x[:15], y[:15])
    k_train = nnpk.analytic(x[:15], arch=arch)
    k_test = nnpk.analytic(x[15:], x[:15], arch=arch)
    np.testing.assert_allclose(model.predict(x[15:]), nnpk.kernel_ridge(k_train, y[:15], k_test, 1e-3), rtol=1e-8)


def test_bad_branches_are_refused_with_named_errors():
    with pytest.raises(ValueError, match=r"layers\[1\] \(Parallel\) must be followed by a merge"):
        Network([Dense(3), Parallel([Dense(2), Dense(2)]), Dense(1)])
    with pytest.raises(ValueError, match=r"layers\[1\] \(FanInSum\) merges branches, so it must follow a Parallel"):
        Network([Dense(3), FanInSum(), Dense(1)])
    with pytest.raises(ValueError, match="branches must hold at least two branches, got 1"):
        Parallel([Dense(2)])
    with pytest.raises(TypeError, match=r"branches\[1\]\[0\] must be a layer"):
        Parallel([Dense(2), [3]])
    with pytest.raises(TypeError, match="branches must be a list"):
        Parallel(Dense(2))
    with pytest.raises(TypeError, match="axis must be an integer"):
        FanInConcat(axis=1.5)
    with pytest.raises(ValueError, match=r"layer 2 \(FanInSum\): branch 1 gives flat points of 3 features and branch "
                       r"0 flat points of 2 features: FanInSum needs branches of one shape"):
        Network([Dense(3), Parallel([Dense(2), Dense(3)]), FanInSum(), Dense(1)]).compile((4,))
    with pytest.raises(ValueError, match=r"layer 1 \(FanInProd\): branch 1 gives .* needs branches of one shape"):
        Network([Parallel([Dense(2), []]), FanInProd(), Dense(1)]).compile((4,))
    with pytest.raises(ValueError, match=r"layer 2 \(FanInConcat axis -1\): branch 1 gives points of shape \(3, 2\) "
                       r"and branch 0 points of shape \(5, 2\): a concatenation along axis -1 needs branches that "
                       r"agree on every other axis"):
        Network([Conv(2, 3), Parallel([[], Conv(2, 3, padding="valid")]), FanInConcat(), Flatten(),
                 Dense(1)]).compile((5, 1))
    with pytest.raises(ValueError, match=r"layer 2 \(FanInConcat axis 0\): branch 1 gives points of shape \(5, 3\)"):
        Network([Conv(2, 3), Parallel([[], Conv(3, 3)]), FanInConcat(0), Flatten(), Dense(1)]).compile((5, 1))
    with pytest.raises(ValueError, match=r"layer 2 \(FanInConcat axis 2\): axis 2 is out of range"):
        Network([Conv(2, 3), Parallel([[], Conv(2, 3)]), FanInConcat(2), Flatten(), Dense(1)]).compile((5, 1))
    # Shape errors inside a branch name the branch's layer.
    with pytest.raises(ValueError, match=r"layer 1\.1\.0 \(Dense 2\): needs flat points"):
        Network([Conv(2, 3), Parallel([Flatten(), Dense(2)]), FanInConcat(), Dense(1)]).compile((5, 1))


def test_analytic_refuses_merges_without_an_exact_kernel():
    x = points(4, (3,), 13)
    with pytest.raises(ValueError, match=r"layer 2 \(FanInSum\) merges branches 0 and 1, neither of which ends with a "
                       r"Dense or Conv layer"):
        nnpk.analytic(x, arch=Network([Dense(4), Parallel([["relu"], ["erf"]]), FanInSum(), Dense(1)]))
    with pytest.raises(ValueError, match=r"layer 2 \(FanInProd\) merges branches 0 and 2"):
        nnpk.analytic(x, arch=Network([Dense(4), Parallel([[], Dense(4), ["erf"]]), FanInProd(), Dense(1)]))
    with pytest.raises(ValueError, match=r"layer 2 \(FanInConcat axis 0\) merges branches 0 and 1, .* their "
                       r"concatenation of positions"):
        nnpk.analytic(points(4, (5, 2), 13), arch=Network([Conv(2, 2), Parallel([["relu"], ["erf"]]),
                                                           FanInConcat(0), Flatten(), Dense(1)]))
    with pytest.raises(ValueError, match=r"layer 3 \(Activation relu\) reads features that are not Gaussian"):
        nnpk.analytic(x, arch=Network([Dense(4), Parallel([Dense(4), Dense(2)]), FanInConcat(), "relu", Dense(1)]))
    # Monte Carlo takes them.
    assert nnpk.monte_carlo(x, arch=Network([Dense(4), Parallel([["relu"], ["erf"]]), FanInSum(), Dense(1)]),
                            n_networks=2).shape == (4, 4)
