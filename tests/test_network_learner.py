"""NetworkLearner (training any parameters) and kernel_alignment, against numpy written here and in
reference_networks.py (an independent forward pass and exact forward-mode Jacobians)."""

import math

import numpy as np
import pytest
from sklearn.base import clone

import nnpk
from nnpk import AvgPool, BatchNorm, Conv, Dense, Flatten, GlobalAvgPool, MaxPool, Network, Residual
from reference import activation, activation_derivative
from reference_networks import forward, jacobian

# ---------------------------------------------------------------- references


def mean_loss(f, y, loss):
    """Mean softmax cross-entropy of logits f (n, k) with labels y, or mean 0.5 ||f - y||^2 on the first
    outputs (as many as y has columns)."""
    if loss == "squared":
        return 0.5 * np.mean(np.sum((f[:, : y.shape[1]] - y) ** 2, axis=1))
    f = f - f.max(axis=1, keepdims=True)
    return np.mean(np.log(np.exp(f).sum(axis=1)) - f[np.arange(len(y)), y])


def loss_gradient(f, y, loss):
    """d mean_loss / d f."""
    if loss == "squared":
        g = np.zeros_like(f)
        g[:, : y.shape[1]] = (f[:, : y.shape[1]] - y) / len(f)
        return g
    p = np.exp(f - f.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return p / len(f)


def conv_same(h, W):
    """Stride-1 'same' convolution (XLA's padding: the odd one after) as a sum over kernel offsets."""
    kh, kw = W.shape[:2]
    hp = np.pad(h, [(0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)])
    return sum(hp[:, a : a + h.shape[1], b : b + h.shape[2]] @ W[a, b] for a in range(kh) for b in range(kw))


def numpy_backprop(network, params, x, y, loss):
    """(mean loss, logits, [(dW, db)]) by a plain reverse pass through Dense, Conv (stride 1, 'same'),
    activations and Flatten."""
    ntk = network.parameterization == "ntk"
    h, tape, it = x, [], iter(params)
    for layer in network.layers:
        if isinstance(layer, (Dense, Conv)):
            W, b = next(it)
            s = layer.W_std / math.sqrt(np.prod(W.shape[:-1])) if ntk else 1.0
            bs = layer.b_std if ntk else 1.0
            tape.append((layer, h, W, s, bs))
            z = s * (h @ W if isinstance(layer, Dense) else conv_same(h, W))
            h = z if b is None else z + bs * b
        elif isinstance(layer, Flatten):
            tape.append((layer, h.shape))
            h = h.reshape(len(h), -1)
        else:
            tape.append((layer, h))
            h = activation(layer.name)(h)
    f = h
    g = loss_gradient(f, y, loss)
    grads = []
    for entry in reversed(tape):
        layer = entry[0]
        if isinstance(layer, Flatten):
            g = g.reshape(entry[1])
        elif isinstance(layer, (Dense, Conv)):
            _, h_in, W, s, bs = entry
            db = bs * g.sum(axis=tuple(range(g.ndim - 1)))
            if isinstance(layer, Dense):
                dW, g = s * h_in.T @ g, s * g @ W.T
            else:
                kh, kw = W.shape[:2]
                n, H, Wd = h_in.shape[:3]
                hp = np.pad(h_in, [(0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)])
                dW, dp = np.zeros_like(W), np.zeros_like(hp)
                for a in range(kh):
                    for b in range(kw):
                        dW[a, b] = s * np.einsum("nijc,nijo->co", hp[:, a : a + H, b : b + Wd], g)
                        dp[:, a : a + H, b : b + Wd] += s * g @ W[a, b].T
                g = dp[:, (kh - 1) // 2 : (kh - 1) // 2 + H, (kw - 1) // 2 : (kw - 1) // 2 + Wd]
            grads.append((dW, db))
        else:
            g = g * activation_derivative(layer.name)(entry[1])
    return mean_loss(f, y, loss), f, grads[::-1]


def trained_flags(train, params):
    """(W trained, b trained) per layer, from the documented meaning of train=."""
    n = len(params)
    out = []
    for l, (_, b) in enumerate(params):
        if isinstance(train, list):
            w = bias = l in train
        else:
            w = train in ("all", "weights") or (train == "readout" and l == n - 1)
            bias = train in ("all", "biases") or (train == "readout" and l == n - 1)
        out.append((w, bias and b is not None))
    return out


def numpy_training(network, params, x, y, loss, train, optimizer, lr, momentum, weight_decay, epochs):
    """Full-batch training as torch's SGD / Adam define it; (params, losses, accuracies) per epoch."""
    params = [[W.copy(), None if b is None else b.copy()] for W, b in params]
    flags = trained_flags(train, params)
    state = {}
    losses, accuracies = [], []
    for t in range(1, epochs + 1):
        value, f, grads = numpy_backprop(network, params, x, y, loss)
        losses.append(value)
        accuracies.append(np.mean(np.argmax(f, axis=1) == y) if loss == "cross_entropy" else math.nan)
        for l in range(len(params)):
            for part in (0, 1):
                if not flags[l][part]:
                    continue
                p, g = params[l][part], grads[l][part] + weight_decay * params[l][part]
                if optimizer == "sgd":
                    buf = state[(l, part)] = g if (l, part) not in state else momentum * state[(l, part)] + g
                    params[l][part] = p - lr * buf
                else:
                    m, v = state.get((l, part), (0.0, 0.0))
                    m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
                    state[(l, part)] = (m, v)
                    params[l][part] = p - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return params, losses, accuracies


MLP = nnpk.MLP(hidden=[5, 4], out=3, activation="tanh", W_std=1.3, b_std=0.4, parameterization="ntk")
CNN = Network([Conv(3, (3, 3), W_std=1.4, b_std=0.2), "relu", Flatten(), Dense(4, b_std=0.3), "tanh", Dense(3)],
              parameterization="standard")


def data(network, n=9, seed=0, loss="cross_entropy"):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4) if network is MLP else (n, 4, 4, 2))
    y = rng.integers(0, 3, n) if loss == "cross_entropy" else rng.standard_normal((n, 2))
    return x, y


# ---------------------------------------------------------------- optimizer steps


@pytest.mark.parametrize("train", ["all", "weights", "biases", "readout", [0], [0, 2]])
@pytest.mark.parametrize("optimizer, settings", [("sgd", dict(lr=0.3, momentum=0.9, weight_decay=0.05)),
                                                 ("sgd", dict(lr=0.5)), ("adam", dict(lr=0.05, weight_decay=0.1))])
@pytest.mark.parametrize("network", [MLP, CNN], ids=["mlp", "cnn"])
def test_full_batch_training_follows_numpy(network, optimizer, settings, train):
    x, y = data(network)
    loss = "cross_entropy"
    if train == [0, 2] and network is MLP:
        loss = "squared"  # the squared loss too, on two of the three outputs
        y = np.random.default_rng(1).standard_normal((len(x), 2))
    learner = nnpk.NetworkLearner(network, seed=2, index=1, train=train, optimizer=optimizer, epochs=3,
                                  batch_size=None, loss=loss, **settings).fit(x, y)
    initial = nnpk.sample_params(network, x.shape[1:], 2, 1)
    expected, losses, accuracies = numpy_training(network, initial, x, y, loss, train, optimizer,
                                                  settings["lr"], settings.get("momentum", 0.0),
                                                  settings.get("weight_decay", 0.0), 3)
    for (W, b), (W_ref, b_ref), (W0, b0), (w_trained, b_trained) in zip(
            learner.params_, expected, initial, trained_flags(train, initial)):
        np.testing.assert_allclose(W, W_ref, rtol=1e-9, atol=1e-12)
        assert w_trained or np.array_equal(W, W0)  # untrained parameters keep their sampled values
        if b is not None:
            np.testing.assert_allclose(b, b_ref, rtol=1e-9, atol=1e-12)
            assert b_trained or np.array_equal(b, b0)
    np.testing.assert_allclose(learner.history_["loss"], losses, rtol=1e-12)
    np.testing.assert_array_equal(learner.history_["accuracy"], accuracies)


def test_float32_training_follows_float64():
    x, y = data(CNN)
    fits = [nnpk.NetworkLearner(CNN, optimizer="sgd", lr=0.3, momentum=0.5, epochs=3, batch_size=4, dtype=dtype,
                                random_state=0).fit(x, y) for dtype in ("float32", "float64")]
    for (W32, b32), (W64, b64) in zip(fits[0].params_, fits[1].params_):
        assert W32.dtype == np.float64  # parameters are float64 whatever the compute precision
        np.testing.assert_allclose(W32, W64, rtol=1e-4, atol=1e-5)
        if b64 is not None:
            np.testing.assert_allclose(b32, b64, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- gradients of every layer type

GRADIENT_NETWORKS = {
    "conv-avgpool-maxpool-flatten-dense": Network(
        [Conv(3, (3, 3), b_std=0.3), "gelu", AvgPool((2, 2)), Conv(4, (2, 2), b_std=0.2), "tanh",
         MaxPool((2, 2), stride=1), Flatten(), Dense(5, b_std=0.1), "softplus", Dense(3)]),
    "conv-residual-globalavgpool": Network(
        [Conv(4, (3, 3), b_std=0.2), Residual(["relu", Conv(4, (3, 3), W_std=1.2, b_std=0.1)], scale=0.7), "erf",
         GlobalAvgPool(), Dense(3, b_std=0.3)], parameterization="standard"),
    "dense-residual-strided-conv": Network(
        [Conv(3, 2, stride=2, padding="valid", b_std=0.4), "sigmoid", Flatten(), Dense(6, b_std=0.2),
         Residual([Dense(6), "leaky_relu", Dense(6, b_std=0.1)], scale=0.5), "sin", Dense(3, b_std=0.5)]),
}
POINTS = {"conv-avgpool-maxpool-flatten-dense": (6, 6, 2), "conv-residual-globalavgpool": (4, 4, 2),
          "dense-residual-strided-conv": (8, 2)}


@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
@pytest.mark.parametrize("name", list(GRADIENT_NETWORKS))
def test_gradients_of_every_layer_type_match_finite_differences(name, loss):
    """One full-batch SGD step with lr 1 moves every parameter by minus its gradient: central differences of
    the loss of the numpy forward pass (reference_networks.forward), and its exact Jacobian."""
    network, shape = GRADIENT_NETWORKS[name], POINTS[name]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5,) + shape)
    y = rng.integers(0, 3, 5) if loss == "cross_entropy" else rng.standard_normal((5, 3))
    params = nnpk.sample_params(network, shape, 4, 0)
    learner = nnpk.NetworkLearner(network, seed=4, optimizer="sgd", lr=1.0, epochs=1, batch_size=None,
                                  loss=loss).fit(x, y)

    def value(ps):
        return mean_loss(forward(network, ps, x)[-1], y, loss)

    f = forward(network, params, x)[-1]
    exact = np.einsum("nc,ncp->p", loss_gradient(f, y, loss), jacobian(network, params, x))
    position, step = 0, 1e-6
    for l, (W, b) in enumerate(params):
        for part, array in enumerate((W, b)):
            if array is None:
                continue
            engine = array - learner.params_[l][part]
            differences = np.zeros(array.size)
            for i in range(array.size):
                shifted = [[w.copy(), None if c is None else c.copy()] for w, c in params]
                shifted[l][part].flat[i] += step
                up = value(shifted)
                shifted[l][part].flat[i] -= 2 * step
                differences[i] = (up - value(shifted)) / (2 * step)
            np.testing.assert_allclose(engine.ravel(), differences, rtol=1e-5, atol=1e-8)
            np.testing.assert_allclose(engine.ravel(), exact[position : position + array.size], rtol=1e-9,
                                       atol=1e-12)
            position += array.size


# ---------------------------------------------------------------- BatchNorm


def numpy_norm_forward(network, params, x, buffers=None):
    """(logits, [(batch mean, biased var, count) per BatchNorm]) of a network of Dense, Conv (stride 1,
    'same'), BatchNorm, activations and GlobalAvgPool: with buffers None, BatchNorm normalises by the
    batch's statistics over every axis but the last (training); else by the running (mean, var)."""
    ntk = network.parameterization == "ntk"
    h, stats, norms, it = x, [], iter([] if buffers is None else buffers), iter(params)
    for layer in network.layers:
        if isinstance(layer, BatchNorm):
            gamma, beta = next(it)
            axes = tuple(range(h.ndim - 1))
            if buffers is None:
                mean, var = h.mean(axis=axes), h.var(axis=axes)
                stats.append((mean, var, h.size // h.shape[-1]))
            else:
                mean, var = next(norms)
            h = gamma * (h - mean) / np.sqrt(var + layer.eps) + beta
        elif isinstance(layer, (Dense, Conv)):
            W, b = next(it)
            s = layer.W_std / math.sqrt(np.prod(W.shape[:-1])) if ntk else 1.0
            h = s * (h @ W if isinstance(layer, Dense) else conv_same(h, W))
            if b is not None:
                h = h + (layer.b_std if ntk else 1.0) * b
        elif isinstance(layer, GlobalAvgPool):
            h = h.mean(axis=tuple(range(1, h.ndim - 1)))
        else:
            h = activation(layer.name)(h)
    return h, stats


NORM_NETWORKS = {
    "dense": (Network([Dense(6, b_std=0.2), BatchNorm(), "relu", Dense(3, b_std=0.1)]), (4,)),
    "conv": (Network([Conv(3, (3, 3), W_std=1.3), BatchNorm(eps=1e-3, momentum=0.3), "tanh", GlobalAvgPool(),
                      Dense(3, b_std=0.1)], parameterization="standard"), (4, 3, 2)),
}


@pytest.mark.parametrize("name", list(NORM_NETWORKS))
def test_batchnorm_gradients_match_finite_differences(name):
    """With BatchNorm the gradients go through the batch's statistics; gamma and beta train too."""
    network, shape = NORM_NETWORKS[name]
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((6,) + shape), rng.permutation(6) % 3  # every class present
    params = nnpk.sample_params(network, shape, 1, 0)  # gamma 1 and beta 0
    learner = nnpk.NetworkLearner(network, seed=1, optimizer="sgd", lr=1.0, epochs=1, batch_size=None).fit(x, y)
    step = 1e-6
    for l, pair in enumerate(params):
        for part, array in enumerate(pair):
            if array is None:
                continue
            differences = np.zeros(array.size)
            for i in range(array.size):
                values = []
                for sign in (1, -1):
                    shifted = [[w.copy(), None if c is None else c.copy()] for w, c in params]
                    shifted[l][part].flat[i] += sign * step
                    values.append(mean_loss(numpy_norm_forward(network, shifted, x)[0], y, "cross_entropy"))
                differences[i] = (values[0] - values[1]) / (2 * step)
            np.testing.assert_allclose((array - learner.params_[l][part]).ravel(), differences, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", list(NORM_NETWORKS))
def test_batchnorm_running_statistics_follow_each_step_and_serve_predictions(name):
    network, shape = NORM_NETWORKS[name]
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((8,) + shape), rng.permutation(8) % 3
    settings = dict(optimizer="sgd", lr=0.3, batch_size=None)
    two = nnpk.NetworkLearner(network, epochs=2, **settings).fit(x, y)
    one = nnpk.NetworkLearner(network, epochs=1, **settings).fit(x, y)
    momentum = network.layers[1].momentum
    mean, var = np.zeros(3 if name == "conv" else 6), np.ones(3 if name == "conv" else 6)
    for params in (nnpk.sample_params(network, shape, 0, 0), one.params_):  # the network at each step
        (m, v, count), = numpy_norm_forward(network, params, x)[1]
        mean = (1 - momentum) * mean + momentum * m
        var = (1 - momentum) * var + momentum * v * count / (count - 1)
    (running_mean, running_var), = two.buffers_
    np.testing.assert_allclose(running_mean, mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(running_var, var, rtol=1e-10, atol=1e-12)
    expected = numpy_norm_forward(network, two.params_, x, buffers=two.buffers_)[0]
    np.testing.assert_allclose(two.decision_function(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("train, gamma, beta", [("weights", True, False), ("biases", False, True), ([1], True, True),
                                                ([0, 2], False, False), ("readout", False, False)])
def test_batchnorm_gamma_trains_with_the_weights_and_beta_with_the_biases(train, gamma, beta):
    network, shape = NORM_NETWORKS["dense"]
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((10,) + shape), rng.integers(0, 3, 10)
    learner = nnpk.NetworkLearner(network, train=train, optimizer="sgd", lr=0.5, epochs=1).fit(x, y)
    g, b = learner.params_[1]
    assert (not np.array_equal(g, np.ones(6))) == gamma
    assert (not np.array_equal(b, np.zeros(6))) == beta


# ---------------------------------------------------------------- determinism, history, tasks


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer, settings", [("sgd", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
                                                 ("adam", dict(lr=0.01))])
def test_fit_is_bitwise_the_same_for_any_thread_count(dtype, optimizer, settings):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((250, 4, 4, 2))  # chunks of 96, 96 and 58 rows in a batch of 250
    y = rng.integers(0, 3, 250)
    network = Network([Conv(8, (3, 3), b_std=0.1), "relu", AvgPool((2, 2)), Flatten(), Dense(16, b_std=0.1), "tanh",
                       Dense(3)])
    fits = [nnpk.NetworkLearner(network, optimizer=optimizer, epochs=2, batch_size=200, dtype=dtype, n_threads=n,
                                random_state=7, **settings).fit(x, y) for n in (1, 2, 3)]
    for other in fits[1:]:
        for (W0, b0), (W1, b1) in zip(fits[0].params_, other.params_):
            np.testing.assert_array_equal(W0, W1)
            np.testing.assert_array_equal(b0, b1)
        assert fits[0].history_ == other.history_


def test_history_is_the_loss_and_accuracy_of_each_minibatch_before_its_step():
    x, y = data(MLP, n=30)
    learner = nnpk.NetworkLearner(MLP, optimizer="sgd", lr=0.5, epochs=2, batch_size=12, random_state=3)
    learner.fit(x, y)
    assert len(learner.history_["loss"]) == len(learner.history_["accuracy"]) == 2
    # Replay: the same minibatch order, each minibatch's loss and accuracy before its plain SGD step.
    rng = np.random.RandomState(3)
    params = [[W.copy(), b.copy()] for W, b in nnpk.sample_params(MLP, 4, 0, 0)]
    for epoch in range(2):
        order = rng.permutation(30)
        total = correct = 0.0
        for start in range(0, 30, 12):
            rows = order[start : start + 12]
            value, f, grads = numpy_backprop(MLP, params, x[rows], y[rows], "cross_entropy")
            total += value * len(rows)
            correct += np.sum(np.argmax(f, axis=1) == y[rows])
            params = [[W - 0.5 * dW, b - 0.5 * db] for (W, b), (dW, db) in zip(params, grads)]
        assert learner.history_["loss"][epoch] == pytest.approx(total / 30, rel=1e-12)
        assert learner.history_["accuracy"][epoch] == correct / 30
    regression = nnpk.NetworkLearner(MLP, epochs=2).fit(x, x[:, 0])
    assert np.isnan(regression.history_["accuracy"]).all() and len(regression.history_["loss"]) == 2


@pytest.mark.parametrize("optimizer, settings", [("sgd", dict(lr=0.2, momentum=0.9)), ("adam", dict(lr=0.02))])
def test_partial_fit_continues_the_parameters_and_the_optimizer_state(optimizer, settings):
    x, y = data(CNN, n=20)
    whole = nnpk.NetworkLearner(CNN, optimizer=optimizer, epochs=3, batch_size=8, random_state=4,
                                **settings).fit(x, y)
    parts = nnpk.NetworkLearner(CNN, optimizer=optimizer, epochs=1, batch_size=8, random_state=4, **settings)
    for _ in range(3):
        parts.partial_fit(x, y)
    for (W0, b0), (W1, b1) in zip(whole.params_, parts.params_):
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)
    assert whole.history_ == parts.history_ and parts.tasks_[0].epochs == 3


def test_tasks_keep_their_own_parameters_and_predictions_are_the_numpy_forward_pass():
    x, y = data(CNN, n=20)
    learner = nnpk.NetworkLearner(CNN, optimizer="sgd", lr=0.1, epochs=2, random_state=0)
    learner.fit(x, y, task="three")
    before = [W.copy() for W, _ in learner.tasks_["three"].params]
    learner.fit(x, y % 2, task="two")
    for W0, (W1, _) in zip(before, learner.tasks_["three"].params):
        np.testing.assert_array_equal(W0, W1)
    assert learner.params_ is learner.tasks_["two"].params  # the last fitted task
    logits = forward(CNN, learner.tasks_["three"].params, x)[-1]
    np.testing.assert_allclose(learner.decision_function(x, task="three"), logits, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(learner.predict(x, task="three"), np.argmax(logits, axis=1))
    proba = learner.predict_proba(x, task="two")
    assert proba.shape == (20, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    assert learner.score(x, y, task="three") == np.mean(np.argmax(logits, axis=1) == y)


def test_bias_learner_is_the_network_learner_training_biases():
    x, y = data(MLP, n=40)
    biases = nnpk.BiasLearner(MLP, epochs=3, random_state=0).fit(x, y)
    network = nnpk.NetworkLearner(MLP, train="biases", epochs=3, random_state=0).fit(x, y)
    assert isinstance(biases, nnpk.NetworkLearner)
    for (W0, b0), (W1, b1) in zip(biases.params_, network.params_):
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)
    assert biases.tasks_[0].loss_curve == network.history_["loss"]
    assert clone(nnpk.NetworkLearner(MLP, train=[1], momentum=0.5)).get_params()["train"] == [1]


# ---------------------------------------------------------------- kernels along training


def test_recorded_kernels_are_the_empirical_kernels_at_those_epochs():
    x, y = data(CNN, n=12)
    points, targets = x[:6], y[:6]
    settings = dict(optimizer="sgd", lr=0.5, batch_size=None)
    learner = nnpk.NetworkLearner(CNN, epochs=2, record=[0, 1, 2], record_points=points, record_targets=targets,
                                  **settings).fit(x, y)
    history = learner.kernels_history_
    assert [entry["epoch"] for entry in history] == [0, 1, 2]
    one_epoch = nnpk.NetworkLearner(CNN, epochs=1, **settings).fit(x, y).params_
    at = [nnpk.sample_params(CNN, (4, 4, 2), 0, 0), one_epoch, learner.params_]
    onehot = np.eye(3)[targets]
    for entry, params in zip(history, at):
        for name in ("ntk", "nngp"):
            K = nnpk.empirical(points, arch=CNN, params=params, get=name)
            np.testing.assert_allclose(entry[name], K, rtol=1e-12, atol=1e-14)
            assert entry[f"{name}_alignment"] == pytest.approx(
                nnpk.kernel_target_alignment(K, onehot, centered=True), rel=1e-12)
            K0 = history[0][name]
            assert entry[f"{name}_distance"] == pytest.approx(np.linalg.norm(K - K0) / np.linalg.norm(K0), rel=1e-9)
    assert history[0]["ntk_distance"] == 0 and history[2]["ntk_distance"] > 0
    # Without epoch 0 recorded, distances still start from the sampled network's kernels.
    later = nnpk.NetworkLearner(CNN, epochs=2, record=[2], record_points=points, **settings).fit(x, y)
    assert [entry["epoch"] for entry in later.kernels_history_] == [2]
    assert later.kernels_history_[0]["ntk_distance"] == pytest.approx(history[2]["ntk_distance"], rel=1e-12)
    assert math.isnan(later.kernels_history_[0]["ntk_alignment"])  # no record_targets


# ---------------------------------------------------------------- kernel_alignment


def numpy_cka(K1, K2, centered):
    n = len(K1)
    H = np.eye(n) - np.ones((n, n)) / n if centered else np.eye(n)
    A, B = H @ K1 @ H, H @ K2 @ H
    return np.sum(A * B) / (np.linalg.norm(A) * np.linalg.norm(B))


def test_kernel_alignment_is_the_formula_and_has_its_invariances():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 3)), rng.standard_normal((7, 5))
    K1, K2 = a @ a.T, b @ b.T + 0.5
    for centered in (True, False):
        assert nnpk.kernel_alignment(K1, K2, centered=centered) == pytest.approx(numpy_cka(K1, K2, centered),
                                                                                  rel=1e-12)
        assert nnpk.kernel_alignment(K1, 3.5 * K1, centered=centered) == pytest.approx(1.0, rel=1e-14)
        assert nnpk.kernel_alignment(K1, K2, centered=centered) == pytest.approx(
            nnpk.kernel_alignment(K2, 0.2 * K1, centered=centered), rel=1e-12)
    # Centred alignment ignores a constant added to a kernel; uncentred does not.
    assert nnpk.kernel_alignment(K1, K2 + 4.0) == pytest.approx(nnpk.kernel_alignment(K1, K2), rel=1e-10)
    assert nnpk.kernel_alignment(K1, K2 + 4.0, centered=False) != pytest.approx(
        nnpk.kernel_alignment(K1, K2, centered=False), rel=1e-3)
    assert math.isnan(nnpk.kernel_alignment(K1, np.ones((7, 7))))  # a constant kernel centres to zero


@pytest.mark.parametrize("K1, K2, match", [
    (np.eye(3), np.eye(4), "K2 has 4 rows, expected 3: K1 is a kernel of 3 points"),
    (np.ones((3, 2)), np.eye(3), "K1 must be square"),
    (np.eye(3), np.ones(3), "K2 must be a 2-D kernel matrix"),
    (np.eye(3), np.where(np.eye(3) > 0, np.nan, 0), "K2 contains NaN or infinite values"),
])
def test_kernel_alignment_bad_input_is_named(K1, K2, match):
    with pytest.raises(ValueError, match=match):
        nnpk.kernel_alignment(K1, K2)


# ---------------------------------------------------------------- errors

X, Y = data(MLP, n=10)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(train="everything"), ValueError,
     "train must be one of 'all', 'weights', 'biases', 'readout', 'masks' or a list"),
    (dict(train=[]), ValueError, "train must be one of .* or a non-empty list of parametrised-layer indices"),
    (dict(train=[0, 3]), ValueError, r"train\[1\] = 3 is out of range: the network has 3 parametrised layers"),
    (dict(train=[1, 1]), ValueError, r"train names a layer twice: \[1, 1\]"),
    (dict(train=[0.5]), TypeError, r"train\[0\] must be an integer"),
    (dict(arch=nnpk.MLP(hidden=[3], out=3), train="biases"), ValueError, "train='biases' but arch has no biases"),
    (dict(arch=Network([Conv(2, 3), GlobalAvgPool()]), train="readout"), ValueError,
     "train='readout' trains the final Dense layer"),
    (dict(optimizer="rmsprop"), ValueError, "optimizer must be 'adam' or 'sgd'"),
    (dict(lr=0.0), ValueError, "lr must be a finite number > 0"),
    (dict(lr=-1.0, optimizer="sgd"), ValueError, "lr must be a finite number > 0"),
    (dict(momentum=1.0, optimizer="sgd"), ValueError, "momentum must be a finite number >= 0 and < 1"),
    (dict(momentum=-0.1, optimizer="sgd"), ValueError, "momentum must be a finite number >= 0 and < 1"),
    (dict(momentum=0.9, optimizer="adam"), ValueError, "momentum=0.9 applies to optimizer='sgd'"),
    (dict(weight_decay=-1e-4), ValueError, "weight_decay must be a finite number >= 0"),
    (dict(epochs=0), ValueError, "epochs must be >= 1"),
    (dict(loss="hinge"), ValueError, "loss must be one of"),
    (dict(record=[0, 3], record_points=X), ValueError, r"record\[1\] = 3 is beyond epochs=2"),
    (dict(record=[-1], record_points=X), ValueError, r"record\[0\] must be >= 0"),
    (dict(record=2, record_points=X), TypeError, "record must be a list of epochs"),
    (dict(arch=NORM_NETWORKS["dense"][0], record=[1], record_points=X), ValueError,
     "record= stores the empirical kernels of the network, which are not defined with BatchNorm"),
    (dict(record=[1]), ValueError, "record needs record_points"),
    (dict(record_points=X), ValueError, "record_points and record_targets are used with record="),
    (dict(record=[1], record_points=X[:, :2]), ValueError, "record_points has 2 features"),
    (dict(record=[1], record_points=X, record_targets=Y[:4]), ValueError,
     r"record_targets has shape \(4,\); record_points has 10 points"),
    (dict(record=[1], record_points=X, record_targets=Y + 5), ValueError,
     "record_targets has labels not among the task's classes"),
])
def test_bad_parameters_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        nnpk.NetworkLearner(**{"arch": MLP, "epochs": 2, **kwargs}).fit(X, Y)


def test_bad_use_of_partial_fit_is_named():
    learner = nnpk.NetworkLearner(MLP, optimizer="sgd", lr=0.1)
    learner.partial_fit(X, Y, classes=[0, 1, 2, 3][:3])
    with pytest.raises(ValueError, match="classes is given only on the first partial_fit of a task"):
        learner.partial_fit(X, Y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match=r"y has labels not among the task's classes \[0, 1, 2\]: \[7\]"):
        learner.partial_fit(X, np.where(Y == 0, 7, Y))
    learner.set_params(optimizer="adam")
    with pytest.raises(ValueError, match="task 0 was trained with other train, optimizer or momentum settings"):
        learner.partial_fit(X, Y)
    with pytest.raises(ValueError, match="task 0 was fitted with loss 'cross_entropy'; y now calls for 'squared'"):
        learner.set_params(optimizer="sgd").partial_fit(X, X[:, 0])
