"""Batch normalisation: the engine's forward passes (training and evaluation), running statistics and
gradients against numpy references written in torch's conventions (NCHW / NCL arrays, OIHW weights,
cross-correlation, BatchNorm1d / BatchNorm2d statistics over every axis but the channels), finite
differences, and the refusals of the kernels."""

import numpy as np
import pytest

import nnpk
from nnpk import _core
from nnpk.architectures._params import check_network_params, initial_buffers

EPS, MOMENTUM = 1e-5, 0.1

# Tiny networks, each with a Dense or Conv layer, a BatchNorm, an activation and a readout;
# "standard" so that the stored parameters are the weights themselves.
NETWORKS = {
    "dense": (nnpk.Network([nnpk.Dense(5, b_std=0.1), nnpk.BatchNorm(), "relu", nnpk.Dense(3, b_std=0.1)],
                           parameterization="standard"), (4,)),
    "conv2d": (nnpk.Network([nnpk.Conv(3, (3, 3), b_std=0.1), nnpk.BatchNorm(eps=1e-3, momentum=0.3), "tanh",
                             nnpk.GlobalAvgPool(), nnpk.Dense(2, b_std=0.1)], parameterization="standard"),
               (4, 3, 2)),
    "conv1d": (nnpk.Network([nnpk.Conv(3, 3, padding="valid", b_std=0.1), nnpk.BatchNorm(), "relu", nnpk.Flatten(),
                             nnpk.Dense(2)], parameterization="standard"), (6, 2)),
}


# ------------------------------------------------------------------ numpy in torch's conventions


def torch_conv(x, weight, bias, padding):
    """torch.nn.functional.conv1d / conv2d: x (N, C, *spatial), weight (O, C, *kernel), stride 1."""
    dims = x.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0)] + [(padding, padding)] * dims)
    kernel = weight.shape[2:]
    out_shape = tuple(x.shape[2 + a] - kernel[a] + 1 for a in range(dims))
    out = np.zeros((x.shape[0], weight.shape[0]) + out_shape)
    for n in range(x.shape[0]):
        for o in range(weight.shape[0]):
            for pos in np.ndindex(*out_shape):
                window = x[(n, slice(None)) + tuple(slice(p, p + k) for p, k in zip(pos, kernel))]
                out[(n, o) + pos] = np.sum(window * weight[o])
    if bias is not None:
        out += bias.reshape((1, -1) + (1,) * dims)
    return out


def torch_batch_norm(x, gamma, beta, training, running_mean, running_var, eps, momentum):
    """torch.nn.functional.batch_norm on (N, C, *spatial): (output, new running mean, new running var)."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        count = x.size // x.shape[1]
        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var = (1 - momentum) * running_var + momentum * var * count / (count - 1)
    else:
        mean, var = running_mean, running_var
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)
    return y, running_mean, running_var


def torch_forward(name, x, params, training, buffers):
    """Logits and the new running statistics of NETWORKS[name] on channels-last points x, computed
    as torch would on the NCHW / NCL layout."""
    (W1, b1), (gamma, beta), (W2, b2) = params
    (mean, var), = buffers
    layer = NETWORKS[name][0].layers[1]
    if name == "dense":
        z = x @ W1 + b1
    else:  # channels-last (N, *spatial, C) -> (N, C, *spatial); HWIO -> OIHW
        dims = x.ndim - 2
        to_first = (0, x.ndim - 1) + tuple(range(1, x.ndim - 1))
        weight = np.transpose(W1, (dims + 1, dims) + tuple(range(dims)))
        z = torch_conv(np.transpose(x, to_first), weight, b1, padding=1 if name == "conv2d" else 0)
    y, mean, var = torch_batch_norm(z, gamma, beta, training, mean, var, layer.eps, layer.momentum)
    h = np.maximum(y, 0) if name != "conv2d" else np.tanh(y)
    if name == "conv2d":
        h = h.mean(axis=(2, 3))
    elif name == "conv1d":  # nnpk flattens channels-last: (length, channel) order
        h = np.transpose(h, (0, 2, 1)).reshape(len(x), -1)
    f = h @ W2 + (0 if b2 is None else b2)
    return f, [(mean, var)]


def numpy_dense_gradients(x, params, y):
    """The mean squared loss 0.5 |f - y|^2 of NETWORKS["dense"] in training mode and its gradients, by
    hand: the batch-norm step is torch's, through the batch's mean and variance."""
    (W1, b1), (gamma, beta), (W2, b2) = params
    n = len(x)
    z = x @ W1 + b1
    mu, var = z.mean(axis=0), z.var(axis=0)
    s = np.sqrt(var + EPS)
    xhat = (z - mu) / s
    u = gamma * xhat + beta
    h = np.maximum(u, 0)
    f = h @ W2 + b2
    loss = 0.5 * np.sum((f - y) ** 2) / n
    df = (f - y) / n
    du = (df @ W2.T) * (u > 0)
    dxhat = du * gamma
    dz = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / s
    return loss, [(x.T @ dz, dz.sum(axis=0)), ((du * xhat).sum(axis=0), du.sum(axis=0)), (h.T @ df, df.sum(axis=0))]


# ------------------------------------------------------------------ helpers


def make_params(name, seed=0):
    """sample_params with random gamma and beta (not the initial ones and zeros)."""
    network, shape = NETWORKS[name]
    params = nnpk.sample_params(network, shape, seed, 0)
    rng = np.random.default_rng(seed + 10)
    C = len(params[1][0])
    params[1] = (1 + 0.3 * rng.standard_normal(C), 0.2 * rng.standard_normal(C))
    return params


def engine_params(name, params, dtype=np.float64):
    network, shape = NETWORKS[name]
    return check_network_params(params, network.compile(shape), dtype)


def points(name, n, seed=1):
    return np.random.default_rng(seed).standard_normal((n,) + NETWORKS[name][1])


def case(name, n, seed):
    """Parameters, n points and squared-loss targets for NETWORKS[name]."""
    network, shape = NETWORKS[name]
    y = np.random.default_rng(seed).standard_normal((n, network.compile(shape).out))
    return make_params(name), points(name, n), y


def buffers_of(name):
    network, shape = NETWORKS[name]
    return initial_buffers(network.compile(shape))


def trainer(name, n_threads=1, dtype="float64"):
    network, shape = NETWORKS[name]
    has_bias = [b is not None for _, b in nnpk.sample_params(network, shape, 0, 0)]
    return _core.SequentialTrainer(network.compile(shape).spec, [True] * 3, has_bias, n_threads, dtype)


def outputs(name, x, params, training, buffers=None, n_threads=1):
    network, shape = NETWORKS[name]
    flat = np.ascontiguousarray(x.reshape(len(x), -1))
    return _core.sequential_outputs(flat, network.compile(shape).spec, engine_params(name, params, flat.dtype),
                                    n_threads, buffers, training)


# ------------------------------------------------------------------ forward passes and running statistics


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_forward_in_training_and_evaluation_is_torchs(name):
    params = make_params(name)
    x = points(name, 7)
    buffers = buffers_of(name)
    expected, expected_buffers = torch_forward(name, x, params, True, buffers_of(name))
    np.testing.assert_allclose(outputs(name, x, params, True, buffers), expected, rtol=1e-10, atol=1e-12)
    for got, want in zip(buffers[0], expected_buffers[0]):  # updated in place
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # Evaluation: the running statistics normalise, and are left alone.
    held = [(m.copy(), v.copy()) for m, v in buffers]
    expected_eval, _ = torch_forward(name, x[:3], params, False, held)
    np.testing.assert_allclose(outputs(name, x[:3], params, False, buffers), expected_eval, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(buffers[0][0], held[0][0])
    np.testing.assert_array_equal(buffers[0][1], held[0][1])


def test_running_statistics_follow_torch_over_several_steps():
    name = "conv2d"
    params = make_params(name)
    engine = trainer(name)
    buffers = buffers_of(name)
    reference = buffers_of(name)
    for step in range(3):
        x = points(name, 5 + step, seed=step)
        targets = np.random.default_rng(step).standard_normal((len(x), 2))
        engine.gradients(x.reshape(len(x), -1), engine_params(name, params), "squared", 2, targets, buffers, True)
        _, reference = torch_forward(name, x, params, True, reference)
        for got, want in zip(buffers[0], reference[0]):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert not np.allclose(buffers[0][1], 1)  # the variance moved


def test_float32_follows_float64():
    name = "conv1d"
    params, x, y = case(name, 9, 2)
    expected = outputs(name, x, params, True)
    got = outputs(name, x.astype(np.float32), params, True)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    _, weights, biases = trainer(name, dtype="float32").gradients(
        x.reshape(9, -1).astype(np.float32), engine_params(name, params, np.float32), "squared", 2, y)
    _, grads = engine_gradients(name, x, params, y)
    for (W, b), (W64, b64) in zip(zip(weights, biases), grads):
        np.testing.assert_allclose(W.reshape(W64.shape), W64, rtol=1e-3, atol=1e-5)
        if b64 is not None:
            np.testing.assert_allclose(b, b64, rtol=1e-3, atol=1e-5)


# ------------------------------------------------------------------ gradients


def numpy_loss(name, x, params, y):
    f, _ = torch_forward(name, x, params, True, buffers_of(name))
    return squared_loss(f, y)


def central_differences(loss, params, k, j, h=1e-6):
    """d loss / d params[k][j] by central differences."""
    a = params[k][j]
    g = np.zeros(a.shape)
    for index in np.ndindex(*a.shape):
        shifted = []
        for sign in (1, -1):
            b = a.copy()
            b[index] += sign * h
            p = list(params)
            p[k] = (b, params[k][1]) if j == 0 else (params[k][0], b)
            shifted.append(loss(p))
        g[index] = (shifted[0] - shifted[1]) / (2 * h)
    return g


def squared_loss(f, y):
    return 0.5 * np.sum((f - y) ** 2) / len(y)


def finite_differences(name, x, params, y):
    """Central differences of the engine's training-mode loss with respect to every parameter."""
    loss = lambda p: squared_loss(outputs(name, x, p, True), y)
    return [[None if a is None else central_differences(loss, params, k, j) for j, a in enumerate(pair)]
            for k, pair in enumerate(params)]


def engine_gradients(name, x, params, y, n_threads=1, buffers=None, training=True):
    value, weights, biases = trainer(name, n_threads).gradients(
        np.ascontiguousarray(x.reshape(len(x), -1)), engine_params(name, params), "squared", y.shape[1], y, buffers,
        training)
    shapes = [np.shape(W) for W, _ in params]
    return value, [(None if W is None else W.reshape(s), b) for W, b, s in zip(weights, biases, shapes)]


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_gradients_are_finite_differences(name):
    params, x, y = case(name, 6, 5)
    value, grads = engine_gradients(name, x, params, y)
    assert value == pytest.approx(numpy_loss(name, x, params, y), rel=1e-12)
    for got, want in zip(grads, finite_differences(name, x, params, y)):
        for g, w in zip(got, want):
            if w is None:
                assert g is None
            else:
                np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-8)


def test_dense_gradients_are_the_numpy_backward_pass():
    name = "dense"
    params, x, y = case(name, 11, 7)
    value, grads = engine_gradients(name, x, params, y)
    loss, expected = numpy_dense_gradients(x, params, y)
    assert value == pytest.approx(loss, rel=1e-12)
    for got, want in zip(grads, expected):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_evaluation_gradients_hold_the_running_statistics_fixed():
    name = "dense"
    params, x, y = case(name, 8, 8)
    rng = np.random.default_rng(9)
    buffers = [(rng.standard_normal(5), 0.5 + rng.random(5))]
    _, grads = engine_gradients(name, x, params, y, buffers=buffers, training=False)
    # d loss / d W1 and d loss / d gamma by central differences of the evaluation-mode loss.
    loss = lambda p: squared_loss(outputs(name, x, p, False, buffers), y)
    for k in (0, 1):
        np.testing.assert_allclose(grads[k][0], central_differences(loss, params, k, 0), rtol=1e-6, atol=1e-8)


def test_training_only_the_readout_gives_the_same_readout_gradient():
    name = "conv2d"
    params, x, y = case(name, 5, 3)
    network, shape = NETWORKS[name]
    _, full = engine_gradients(name, x, params, y)
    readout_only = _core.SequentialTrainer(network.compile(shape).spec, [False, False, True], [False, True, True], 1,
                                           "float64")
    _, weights, biases = readout_only.gradients(x.reshape(5, -1), engine_params(name, params), "squared", 2, y)
    assert weights[:2] == [None, None] and biases[0] is None
    np.testing.assert_array_equal(weights[2], full[2][0])
    np.testing.assert_array_equal(biases[2], full[2][1])
    np.testing.assert_array_equal(biases[1], full[1][1])


@pytest.mark.parametrize("name", ["dense", "conv2d"])
def test_bitwise_the_same_for_any_thread_count(name):
    params, x, y = case(name, 230, 4)  # three chunks of rows
    results = []
    for threads in (1, 2, 3):
        buffers = buffers_of(name)
        value, grads = engine_gradients(name, x, params, y, n_threads=threads, buffers=buffers)
        logits = outputs(name, x, params, True, n_threads=threads)
        results.append((value, grads, buffers, logits))
    for value, grads, buffers, logits in results[1:]:
        assert value == results[0][0]
        for got, want in zip(grads, results[0][1]):
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)
        for got, want in zip(buffers[0], results[0][2][0]):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(logits, results[0][3])


def test_batch_norm_in_a_residual_block():
    """x + BN(Dense(x)): the skip's error joins the batch-norm path's below the block."""
    network = nnpk.Network([nnpk.Dense(4, b_std=0.1), nnpk.Residual([nnpk.Dense(4), nnpk.BatchNorm(), "tanh"]),
                            nnpk.Dense(2)], parameterization="standard")
    params = nnpk.sample_params(network, (3,), 0, 0)
    assert [np.shape(W) for W, _ in params] == [(3, 4), (4, 4), (4,), (4, 2)]
    params[2] = (np.array([1.5, 0.5, 1.0, 2.0]), np.array([0.1, -0.2, 0.0, 0.3]))
    x = np.random.default_rng(0).standard_normal((9, 3))
    y = np.random.default_rng(1).standard_normal((9, 2))
    spec = network.compile((3,)).spec
    engine = check_network_params(params, network.compile((3,)), np.float64)

    def loss(p):
        compiled = network.compile((3,))
        return squared_loss(_core.sequential_outputs(x, spec, check_network_params(p, compiled, np.float64), 1, None,
                                                     True), y)

    _, weights, _ = _core.SequentialTrainer(spec, [True] * 4, [True, False, True, False], 1, "float64").gradients(
        x, engine, "squared", 2, y)
    for k in (0, 2):  # the first layer's weights (below the block) and gamma
        np.testing.assert_allclose(weights[k].reshape(params[k][0].shape), central_differences(loss, params, k, 0),
                                   rtol=1e-6, atol=1e-8)


def test_batch_norm_of_the_input_points():
    """BatchNorm first: the points themselves are normalised; gamma's gradient reaches the bottom."""
    network = nnpk.Network([nnpk.BatchNorm(momentum=1.0), nnpk.Dense(2)], parameterization="standard")
    params = nnpk.sample_params(network, (3,), 0, 0)
    params[0] = (np.array([2.0, 0.5, 1.0]), np.array([0.0, 1.0, -1.0]))
    x = np.random.default_rng(0).standard_normal((6, 3)) * [1.0, 3.0, 0.2] + [5.0, -1.0, 0.0]
    y = np.random.default_rng(1).standard_normal((6, 2))
    compiled = network.compile((3,))
    buffers = initial_buffers(compiled)
    engine = check_network_params(params, compiled, np.float64)
    f = _core.sequential_outputs(x, compiled.spec, engine, 1, buffers, True)
    normed = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + EPS) * params[0][0] + params[0][1]
    np.testing.assert_allclose(f, normed @ params[1][0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(buffers[0][1], x.var(axis=0, ddof=1), rtol=1e-12)  # momentum 1: the batch's

    def loss(p):
        return squared_loss(_core.sequential_outputs(x, compiled.spec, check_network_params(p, compiled, np.float64),
                                                     1, None, True), y)

    _, weights, biases = _core.SequentialTrainer(compiled.spec, [True, False], [True, False], 1, "float64").gradients(
        x, engine, "squared", 2, y)
    np.testing.assert_allclose(weights[0], central_differences(loss, params, 0, 0), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(biases[0], central_differences(loss, params, 0, 1), rtol=1e-6, atol=1e-8)
    assert weights[1] is None and biases[1] is None


# ------------------------------------------------------------------ parameters


def test_sample_params_gives_ones_and_zeros_and_shifts_no_draw():
    plain = nnpk.Network([nnpk.Conv(3, 3, b_std=0.1), "relu", nnpk.Flatten(), nnpk.Dense(2, b_std=0.1)])
    normed = nnpk.Network([nnpk.Conv(3, 3, b_std=0.1), nnpk.BatchNorm(), "relu", nnpk.Flatten(),
                           nnpk.Dense(2, b_std=0.1)])
    a, b = nnpk.sample_params(plain, (5, 2), 3, 1), nnpk.sample_params(normed, (5, 2), 3, 1)
    assert len(b) == 3
    np.testing.assert_array_equal(b[1][0], np.ones(3))
    np.testing.assert_array_equal(b[1][1], np.zeros(3))
    for (Wa, ba), (Wb, bb) in zip(a, [b[0], b[2]]):
        np.testing.assert_array_equal(Wa, Wb)
        np.testing.assert_array_equal(ba, bb)


def test_describe_and_network_flags():
    layer = nnpk.BatchNorm(eps=1e-3, momentum=0.2)
    assert layer.describe() == "BatchNorm eps 0.001, momentum 0.2"
    assert NETWORKS["dense"][0].has_batch_norm
    assert not nnpk.MLP([4]).has_batch_norm
    compiled = NETWORKS["conv2d"][0].compile((4, 3, 2))
    assert [type(e).__name__ for e in compiled.entries] == ["ParamLayer", "NormLayer", "ParamLayer"]
    assert compiled.norms[0].channels == 3


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("kwargs, error, match", [
    ({"eps": 0}, ValueError, r"eps must be finite and > 0, got 0\.0"),
    ({"eps": -1e-5}, ValueError, "eps must be finite and > 0"),
    ({"eps": float("nan")}, ValueError, "eps must be finite and > 0"),
    ({"eps": "small"}, TypeError, "eps must be a number"),
    ({"momentum": 0}, ValueError, r"momentum must be in \(0, 1\], got 0\.0"),
    ({"momentum": 1.5}, ValueError, r"momentum must be in \(0, 1\]"),
    ({"momentum": True}, TypeError, "momentum must be a number"),
])
def test_bad_settings_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        nnpk.BatchNorm(**kwargs)


def test_bad_parameters_and_buffers_are_named():
    name = "dense"
    network, shape = NETWORKS[name]
    params = make_params(name)
    bad = list(params)
    bad[1] = (np.ones(4), np.zeros(5))
    with pytest.raises(ValueError, match=r"params\[1\] gamma has shape \(4,\); layer 1 \(BatchNorm .*\) expects "
                                         r"\(5,\)"):
        check_network_params(bad, network.compile(shape), np.float64)
    with pytest.raises(ValueError, match="the network has 2 Dense or Conv and 1 BatchNorm layers"):
        check_network_params(params[:2], network.compile(shape), np.float64)
    x = points(name, 4)
    with pytest.raises(ValueError, match="buffers .* are needed out of training"):
        outputs(name, x, params, False)
    with pytest.raises(ValueError, match=r"buffers\[0\] running_var must have shape \(5,\)"):
        outputs(name, x, params, False, [(np.zeros(5), np.ones(4))])
    with pytest.raises(ValueError, match=r"buffers\[0\] running_mean must be a C-contiguous float64 array"):
        outputs(name, x, params, False, [(np.zeros(5, dtype=np.float32), np.ones(5))])
    frozen = np.zeros(5)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="must be writeable"):
        outputs(name, x, params, True, [(frozen, np.ones(5))])
    with pytest.raises(ValueError, match="needs one .running_mean, running_var. per batch normalisation"):
        outputs(name, x, params, True, [])
    with pytest.raises(ValueError, match=r"more than one value per channel \(rows x positions\), got 1"):
        outputs(name, x[:1], params, True)


@pytest.mark.parametrize("call, what", [
    (lambda a, x: nnpk.monte_carlo(x, arch=a, n_networks=2), "nnpk.monte_carlo"),
    (lambda a, x: nnpk.monte_carlo(x, arch=a, n_networks=2, get="ntk"), "nnpk.monte_carlo"),
    (lambda a, x: nnpk.monte_carlo(x, arch=a, n_networks=2, estimator="readout"), "nnpk.monte_carlo"),
    (lambda a, x: nnpk.empirical(x, arch=a, params=nnpk.sample_params(a, 4, 0, 0)), "nnpk.empirical"),
    (lambda a, x: nnpk.analytic(x, arch=a), "nnpk.analytic"),
    (lambda a, x: nnpk.monte_carlo_standard_error(x, arch=a, n_networks=4), "nnpk.monte_carlo_standard_error"),
    (lambda a, x: nnpk.initial_outputs(x, a), "nnpk.initial_outputs"),
])
def test_kernels_refuse_batch_norm(call, what):
    x = np.random.default_rng(0).standard_normal((3, 4))
    with pytest.raises(ValueError, match=f"{what} cannot take a network with BatchNorm: batch normalisation makes a "
                                         "point's output depend on the whole batch"):
        call(NETWORKS["dense"][0], x)


def test_stores_refuse_batch_norm(tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 4))
    with pytest.raises(ValueError, match="nnpk.compute_to_store cannot take a network with BatchNorm"):
        nnpk.compute_to_store(tmp_path / "store", x, arch=NETWORKS["dense"][0], n_networks=2)
    assert not (tmp_path / "store").exists()
