"""BiasLearner and the engine's bias/readout gradients, against a plain numpy network written here."""

import math
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError

import nnpk
from nnpk import _core
from reference import activation

SQRT2 = math.sqrt(2)


# ---------------------------------------------------------------- references


def numpy_outputs(arch, params, x):
    """f(x) of docs/definitions.rst's network in float64 numpy."""
    phi = activation(arch.activation, arch.slope)
    ntk = arch.parameterization == "ntk"
    h = x
    for l, (W, b) in enumerate(params):
        z = (arch.w_stds[l] / math.sqrt(h.shape[1]) if ntk else 1.0) * (h @ W)
        if b is not None:
            z = z + (arch.b_stds[l] if ntk else 1.0) * b
        h = phi(z) if l < len(params) - 1 else z
    return h


def numpy_loss(arch, params, x, y, loss, k):
    """Mean softmax cross-entropy over the first k logits, or mean 0.5 * ||f[:, :k] - y||^2."""
    f = numpy_outputs(arch, params, x)[:, :k]
    if loss == "squared":
        return 0.5 * np.mean(np.sum((f - y) ** 2, axis=1))
    f = f - f.max(axis=1, keepdims=True)
    return np.mean(np.log(np.exp(f).sum(axis=1)) - f[np.arange(len(y)), y])


def finite_difference(arch, params, x, y, loss, k, layer, part, step=1e-6):
    """Central differences of numpy_loss with respect to params[layer][part], entry by entry."""
    grad = np.zeros_like(params[layer][part])
    for i in np.ndindex(grad.shape):
        values = []
        for sign in (1, -1):
            shifted = [[W.copy(), None if b is None else b.copy()] for W, b in params]
            shifted[layer][part][i] += sign * step
            values.append(numpy_loss(arch, shifted, x, y, loss, k))
        grad[i] = (values[0] - values[1]) / (2 * step)
    return grad


def digits(n):
    x, y = load_digits(return_X_y=True)
    x, y = x[:n], y[:n]
    x = x - x.mean(axis=0)
    return x / math.sqrt(np.mean(np.sum(x * x, axis=1)) / x.shape[1]), y


def he_relu(width, out=10):
    return nnpk.MLP(hidden=[width], out=out, activation="relu", W_std=SQRT2, b_std=1.0, parameterization="standard")


ARCHS = {
    "tanh-ntk-2": nnpk.MLP(hidden=[7, 5], out=4, activation="tanh", W_std=1.3, b_std=0.7, parameterization="ntk"),
    "relu-standard-1": he_relu(6, out=3),
    "linear-ntk-0": nnpk.MLP(hidden=[], out=3, b_std=0.5, parameterization="ntk"),
    "gelu-standard-2-one-layer-without-bias": nnpk.MLP(hidden=[5, 4], out=3, activation="gelu",
                                                       b_std=[0.5, None, 0.3], parameterization="standard"),
}


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
@pytest.mark.parametrize("train", ["biases", "readout", "biases+readout"])
@pytest.mark.parametrize("name", list(ARCHS))
def test_one_gradient_step_matches_finite_differences(name, train, loss):
    """One full-batch SGD step with lr 1 moves every trained parameter by minus its numpy gradient."""
    arch = ARCHS[name]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((23, 4))
    # Fewer classes / targets than logits: the task uses the first ones.
    y = rng.integers(0, 2, 23) if loss == "cross_entropy" else rng.standard_normal((23, 2))
    learner = nnpk.BiasLearner(arch, seed=3, index=2, train=train, optimizer="sgd", lr=1.0, epochs=1,
                               batch_size=None, loss=loss, dtype="float64")
    fit = learner.fit(x, y).tasks_[0]
    params = nnpk.sample_params(arch, 4, seed=3, index=2)
    readout = arch.n_layers - 1
    for l, (_, b) in enumerate(params):
        trained = b is not None and (train != "readout" or l == readout)
        if b is None:
            assert fit.biases[l] is None
        elif trained:
            np.testing.assert_allclose(b - fit.biases[l], finite_difference(arch, params, x, y, loss, 2, l, 1),
                                       rtol=1e-6, atol=1e-9)
        else:
            np.testing.assert_array_equal(fit.biases[l], b)
    W = params[readout][0]
    if train == "biases":
        np.testing.assert_array_equal(fit.readout, W)
    else:
        np.testing.assert_allclose(W - fit.readout, finite_difference(arch, params, x, y, loss, 2, readout, 0),
                                   rtol=1e-6, atol=1e-9)
    assert fit.loss_curve[0] == pytest.approx(numpy_loss(arch, params, x, y, loss, 2), rel=1e-12)


def test_engine_gradient_is_mean_over_rows_in_float32_too():
    """float32 forward/backward agrees with the float64 numpy gradient to float32 accuracy."""
    arch = ARCHS["tanh-ntk-2"]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 4))
    y = rng.integers(0, 4, 200)
    params = nnpk.sample_params(arch, 4, 0, 0)
    trainer = _core.SequentialTrainer(arch.compile((4,)).spec, [False, False, True], [True, True, True], 2, "float32")
    params32 = [(W.astype(np.float32), b.astype(np.float32)) for W, b in params]
    value, weights, biases = trainer.gradients(x.astype(np.float32), params32, "cross_entropy", 4, y.astype(np.int64))
    readout = weights[2]
    assert value == pytest.approx(numpy_loss(arch, params, x, y, "cross_entropy", 4), rel=1e-5)
    for l in range(3):
        expected = finite_difference(arch, params, x, y, "cross_entropy", 4, l, 1)
        np.testing.assert_allclose(biases[l], expected, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(readout, finite_difference(arch, params, x, y, "cross_entropy", 4, 2, 0),
                               rtol=1e-3, atol=1e-5)


def test_predictions_are_the_numpy_forward_pass():
    arch = ARCHS["gelu-standard-2-one-layer-without-bias"]
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((250, 4)), rng.standard_normal((250, 3))
    learner = nnpk.BiasLearner(arch, seed=1, train="biases+readout", epochs=2, batch_size=64,
                               random_state=0).fit(x, y)
    fit = learner.tasks_[0]
    sampled = nnpk.sample_params(arch, 4, 1, 0)
    params = [(W, b) for (W, _), b in zip(sampled, fit.biases)]
    params[-1] = (fit.readout, fit.biases[-1])
    predicted = numpy_outputs(arch, params, x)
    np.testing.assert_allclose(learner.predict(x), predicted, rtol=1e-12, atol=1e-12)
    r2 = np.mean(1 - np.sum((y - predicted) ** 2, axis=0) / np.sum((y - y.mean(axis=0)) ** 2, axis=0))
    assert learner.score(x, y) == pytest.approx(r2, rel=1e-10)


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("train", ["biases", "readout", "biases+readout"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_loss_goes_down(train, optimizer):
    x, y = digits(300)
    lr = {"adam": 0.03, "sgd": 0.1}[optimizer]
    learner = nnpk.BiasLearner(he_relu(256), train=train, optimizer=optimizer, lr=lr, epochs=15,
                               random_state=0).fit(x, y)
    curve = learner.tasks_[0].loss_curve
    assert len(curve) == 15
    assert curve[-1] < 0.95 * curve[0]
    assert np.mean(np.diff(curve) < 0) >= 0.8


def test_regression_loss_goes_down_and_predicts_like_the_targets():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 5))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1]
    learner = nnpk.BiasLearner(he_relu(512, out=2), epochs=30, lr=0.03, random_state=0).fit(x, y)
    curve = learner.tasks_[0].loss_curve
    assert curve[-1] < 0.3 * curve[0]
    assert learner.predict(x).shape == (300,)
    assert learner.score(x, y) > 0.8


def test_digits_biases_only_reaches_the_accuracy_of_the_issue():
    """400 digits, one hidden layer of 4096 ReLU units, He weights, biases of std 1: biases only."""
    x, y = digits(400)
    learner = nnpk.BiasLearner(he_relu(4096), seed=0, random_state=0).fit(x, y)
    assert learner.score(x, y) >= 0.93
    assert nnpk.BiasLearner(he_relu(1024), seed=0, random_state=0).fit(x, y).score(x, y) >= 0.70


def test_full_batch_adam_follows_a_plain_numpy_adam():
    """Full-batch Adam on the engine's gradients takes the steps of a numpy Adam on numpy gradients."""
    x, y = digits(400)
    arch = he_relu(4096)
    epochs, lr = 60, 0.03
    (W1, b1), (W2, b2) = nnpk.sample_params(arch, 64, 0, 0)
    params, m, v = [b1.copy(), b2.copy()], [0.0, 0.0], [0.0, 0.0]
    onehot = np.eye(10)[y]
    pre = x @ W1  # the weights never change, so the first product is computed once
    for t in range(1, epochs + 1):
        z = pre + params[0]
        f = np.maximum(z, 0) @ W2 + params[1]
        p = np.exp(f - f.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / len(y)
        grads = [((g @ W2.T) * (z > 0)).sum(axis=0), g.sum(axis=0)]
        for i in range(2):
            m[i] = 0.9 * m[i] + 0.1 * grads[i]
            v[i] = 0.999 * v[i] + 0.001 * grads[i] ** 2
            params[i] = params[i] - lr * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
    numpy_accuracy = np.mean(np.argmax(np.maximum(pre + params[0], 0) @ W2 + params[1], axis=1) == y)
    learner = nnpk.BiasLearner(arch, lr=lr, epochs=epochs, batch_size=None).fit(x, y)
    np.testing.assert_allclose(learner.tasks_[0].biases[0], params[0], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(learner.tasks_[0].biases[1], params[1], rtol=1e-7, atol=1e-9)
    # 60 full-batch steps reach 0.95-0.97 on the training set depending on the network drawn: it learned.
    assert learner.score(x, y) == numpy_accuracy >= 0.93


# ---------------------------------------------------------------- tasks


def test_tasks_on_one_network_do_not_disturb_each_other():
    x, y = digits(300)
    learner = nnpk.BiasLearner(he_relu(128), epochs=3, random_state=0)
    learner.fit(x, y, task="digit")
    before = pickle.loads(pickle.dumps(learner.tasks_["digit"]))
    logits = learner.decision_function(x, task="digit")
    learner.fit(x, y % 2, task="parity")
    learner.fit(x, x[:, :2] @ np.ones(2), task="regression")
    after = learner.tasks_["digit"]
    for b0, b1 in zip(before.biases, after.biases):
        np.testing.assert_array_equal(b0, b1)
    np.testing.assert_array_equal(before.readout, after.readout)
    assert before.loss_curve == after.loss_curve
    np.testing.assert_array_equal(logits, learner.decision_function(x, task="digit"))
    # A two-class task uses the first two logits; its biases are its own.
    assert learner.decision_function(x, task="parity").shape == (300, 2)
    assert list(learner.tasks_["parity"].classes) == [0, 1]
    assert not np.array_equal(learner.tasks_["parity"].biases[0], after.biases[0])
    assert learner.predict(x, task="regression").shape == (300,)
    proba = learner.predict_proba(x, task="parity")
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    np.testing.assert_array_equal(np.argmax(proba, axis=1), learner.predict(x, task="parity"))
    # Every task starts from the sampled biases: refitting reproduces a task bitwise.
    learner.fit(x, y, task="again")
    np.testing.assert_array_equal(learner.tasks_["again"].biases[0], after.biases[0])


def test_class_labels_map_to_logits_in_sorted_order():
    x, y = digits(200)
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    learner = nnpk.BiasLearner(he_relu(64), epochs=2, random_state=0)
    by_name = learner.fit(x, names[y], task="names").predict(x, task="names")
    by_index = learner.fit(x, np.argsort(np.argsort(names))[y], task="index").predict(x, task="index")
    np.testing.assert_array_equal(by_name, np.sort(names)[by_index])


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("train", ["biases", "biases+readout"])
def test_fit_is_bitwise_the_same_for_any_thread_count(dtype, train):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((250, 6))  # chunks of 96, 96 and 58 rows
    y = rng.integers(0, 5, 250)
    arch = nnpk.MLP(hidden=[64, 48], out=5, activation="tanh", W_std=1.5, b_std=0.3)
    fits = [nnpk.BiasLearner(arch, train=train, epochs=3, batch_size=200, dtype=dtype, n_threads=n,
                             random_state=7).fit(x, y) for n in (1, 2, 3)]
    for other in fits[1:]:
        for b0, b1 in zip(fits[0].tasks_[0].biases, other.tasks_[0].biases):
            np.testing.assert_array_equal(b0, b1)
        np.testing.assert_array_equal(fits[0].tasks_[0].readout, other.tasks_[0].readout)
        assert fits[0].tasks_[0].loss_curve == other.tasks_[0].loss_curve
        np.testing.assert_array_equal(fits[0].decision_function(x), other.decision_function(x))


def test_random_state_only_orders_the_minibatches():
    x, y = digits(200)
    arch = he_relu(64)
    full = [nnpk.BiasLearner(arch, epochs=2, batch_size=None, random_state=r).fit(x, y).tasks_[0] for r in (0, 1)]
    np.testing.assert_array_equal(full[0].biases[0], full[1].biases[0])
    same = [nnpk.BiasLearner(arch, epochs=2, random_state=3).fit(x, y).tasks_[0] for _ in range(2)]
    np.testing.assert_array_equal(same[0].biases[0], same[1].biases[0])
    other = nnpk.BiasLearner(arch, epochs=2, random_state=4).fit(x, y).tasks_[0]
    assert not np.array_equal(same[0].biases[0], other.biases[0])


def test_scikit_learn_conventions():
    learner = nnpk.BiasLearner(he_relu(32), lr=0.05, epochs=2)
    assert learner.get_params()["lr"] == 0.05
    copy = clone(learner).set_params(train="readout")
    assert copy.train == "readout" and not hasattr(copy, "tasks_")
    x, y = digits(100)
    assert learner.fit(x, y) is learner
    assert learner.n_features_in_ == 64
    from nnpk import BiasLearner
    from nnpk.learn._bias_learning import BiasLearner as defined

    assert "BiasLearner" in nnpk.__all__ and BiasLearner is defined


# ---------------------------------------------------------------- errors

X = np.random.default_rng(0).standard_normal((20, 3))
Y = np.arange(20) % 3
ARCH = nnpk.MLP(hidden=[8], out=4, b_std=0.5)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(arch="mlp"), TypeError, "arch must be an nnpk.MLP"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
        (dict(index=1.5), TypeError, "index must be an integer"),
        (dict(train="weights"), ValueError, "train must be one of 'biases', 'biases\\+readout', 'readout'"),
        (dict(arch=nnpk.MLP(hidden=[8], out=4)), ValueError, "train='biases' but arch has no biases"),
        (dict(arch=nnpk.MLP(hidden=[8], out=4), train="biases+readout"), ValueError, "arch has no biases"),
        (dict(optimizer="rmsprop"), ValueError, "optimizer must be 'adam' or 'sgd'"),
        (dict(lr=0.0), ValueError, "lr must be a finite number > 0"),
        (dict(lr=float("nan")), ValueError, "lr must be a finite number > 0"),
        (dict(lr="fast"), ValueError, "lr must be a finite number > 0"),
        (dict(epochs=0), ValueError, "epochs must be >= 1"),
        (dict(epochs=2.5), TypeError, "epochs must be an integer"),
        (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        (dict(loss="hinge"), ValueError, "loss must be one of"),
        (dict(dtype="float16"), ValueError, "dtype must be 'float32' or 'float64'"),
        (dict(n_threads=0), ValueError, "n_threads must not be 0"),
    ],
)
def test_bad_parameters_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        nnpk.BiasLearner(**{"arch": ARCH, **kwargs}).fit(X, Y)


@pytest.mark.parametrize(
    "x, y, kwargs, error, match",
    [
        (X[:, 0], Y, {}, ValueError, "X must be a 2-D array"),
        (np.where(np.eye(20, 3) > 0, np.nan, X), Y, {}, ValueError, "X contains NaN or infinite values"),
        (X.astype(str), Y, {}, TypeError, "X must hold real numbers"),
        (X, Y[:-1], {}, ValueError, r"y has shape \(19,\); X has 20 rows"),
        (X, None, {}, TypeError, "y must be an array of targets"),
        (X, np.arange(20) % 5, {}, ValueError, "y has 5 classes but the network has only 4 logits"),
        (X, np.zeros(20, dtype=int), {}, ValueError, "y has a single class"),
        (X, np.ones((20, 5)), {"loss": "squared"}, ValueError, "y has 5 targets but the network has only 4"),
        (X, np.full(20, np.nan), {"loss": "squared"}, ValueError, "y contains NaN"),
        (X, np.array(["a"] * 20), {"loss": "squared"}, ValueError, "y must hold real numbers"),
        (X, np.eye(20, 3, dtype=int), {}, ValueError, "y looks multilabel-indicator; pass loss="),
        (X, np.linspace(0, 1, 20), {"loss": "cross_entropy"}, ValueError, "Unknown label type"),
    ],
)
def test_bad_data_is_named(x, y, kwargs, error, match):
    with pytest.raises(error, match=match):
        nnpk.BiasLearner(ARCH, epochs=1, **kwargs).fit(x, y)


def test_bad_use_after_fit():
    learner = nnpk.BiasLearner(ARCH, epochs=1)
    with pytest.raises(NotFittedError):
        learner.predict(X)
    learner.fit(X, Y)
    with pytest.raises(ValueError, match=r"task 'other' has not been fitted; fitted tasks: \[0\]"):
        learner.predict(X, task="other")
    with pytest.raises(ValueError, match="X has 4 features, the network the fitted tasks share has 3"):
        learner.predict(np.ones((2, 4)))
    with pytest.raises(ValueError, match="X has 4 features, the network the fitted tasks share has 3"):
        learner.fit(np.ones((20, 4)), Y, task=1)
    with pytest.raises(TypeError, match="task must be hashable"):
        learner.fit(X, Y, task=[1])
    learner.fit(X, X[:, 0], task="values")
    with pytest.raises(ValueError, match="task 'values' is a regression task; predict_proba needs class labels"):
        learner.predict_proba(X, task="values")
    learner.set_params(seed=1)
    with pytest.raises(ValueError, match="arch, seed or index changed after tasks"):
        learner.predict(X)


def test_engine_rejects_labels_outside_the_task():
    trainer = _core.SequentialTrainer(ARCH.compile((3,)).spec, [False, False], [True, True], 1, "float64")
    params = nnpk.sample_params(ARCH, 3, 0, 0)
    with pytest.raises(ValueError, match=r"label 3 at row 0 is outside \[0, 3\)"):
        trainer.gradients(X, params, "cross_entropy", 3, np.full(20, 3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"n_outputs must be in \[1, 4\]"):
        trainer.gradients(X, params, "squared", 5, np.zeros((20, 5)))
