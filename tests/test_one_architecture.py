"""One architecture type: an MLP is a Network, and every function takes any Network where the mathematics
allows (the conditional estimator on a CNN, bias and readout learning on a CNN, a convolutional network in
the scikit-learn estimators), checked against numpy references written here and in reference_networks."""

import math
import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import nnpk
from nnpk import Activation, Conv, Dense, Flatten, GlobalAvgPool, Network
import reference_networks as ref

# ---------------------------------------------------------------- an MLP is a Network


def _by_hand(mlp):
    layers = []
    for width, w, b in zip(mlp.hidden, mlp.w_stds, mlp.b_stds):
        layers += [Dense(width, W_std=w, b_std=b), Activation(mlp.activation, normalize=mlp.normalize, slope=mlp.slope)]
    layers.append(Dense(mlp.out, W_std=mlp.w_stds[-1], b_std=mlp.b_stds[-1]))
    return Network(layers, parameterization=mlp.parameterization, init=mlp.init)


MLPS = [
    nnpk.MLP(hidden=[7, 5], out=3, activation="tanh", W_std=1.3, b_std=0.2),
    nnpk.MLP(hidden=[6], out=2, W_std=[1.4, 0.9], b_std=[0.1, None], parameterization="standard"),
    nnpk.MLP(hidden=[], out=4, b_std=0.5),
    nnpk.MLP(hidden=[8, 8], out=2, activation="relu", normalize=True, init="orthogonal"),
]


@pytest.mark.parametrize("mlp", MLPS, ids=repr)
def test_an_mlp_is_the_network_of_its_layers_and_draws_the_same_weights(mlp):
    network = _by_hand(mlp)
    assert isinstance(mlp, Network)
    assert mlp.layers == network.layers and mlp.to_network() == network
    for m in (0, 5):
        for (W1, b1), (W2, b2) in zip(nnpk.sample_params(mlp, 4, 3, m), nnpk.sample_params(network, 4, 3, m)):
            np.testing.assert_array_equal(W1, W2)
            assert (b1 is None) == (b2 is None)
            if b1 is not None:
                np.testing.assert_array_equal(b1, b2)
    x = np.random.default_rng(0).standard_normal((30, 4))
    for estimator in ("sampled", "readout"):
        np.testing.assert_array_equal(nnpk.monte_carlo(x, arch=mlp, n_networks=3, seed=1, estimator=estimator),
                                      nnpk.monte_carlo(x, arch=network, n_networks=3, seed=1, estimator=estimator))


def test_an_mlp_keeps_its_arguments_hashes_pickles_and_replaces():
    mlp = nnpk.MLP(hidden=[7, 5], out=3, activation="leaky_relu", slope=0.2, b_std=0.1, parameterization="standard")
    assert (mlp.hidden, mlp.out, mlp.activation, mlp.slope, mlp.b_std) == ((7, 5), 3, "leaky_relu", 0.2, 0.1)
    assert mlp == nnpk.MLP(hidden=(7, 5), out=3, activation="leaky_relu", slope=0.2, b_std=0.1,
                           parameterization="standard")
    assert hash(mlp) == hash(nnpk.MLP(hidden=[7, 5], out=3, activation="leaky_relu", slope=0.2, b_std=0.1,
                                      parameterization="standard"))
    assert pickle.loads(pickle.dumps(mlp)) == mlp
    assert eval(repr(mlp), {"MLP": nnpk.MLP}) == mlp
    shallower = mlp.replace(hidden=[7], W_std=[1.0, 1.0], b_std=[0.1, 0.1])
    assert shallower.hidden == (7,) and shallower.activation == "leaky_relu"
    # layers="all" of an MLP are its hidden layers' activations and the logits.
    assert mlp.kernel_layers() == (1, 3, 4)
    with pytest.raises(TypeError, match="MLP has no argument 'depth'"):
        mlp.replace(depth=3)


# ---------------------------------------------------------------- the conditional estimator on a CNN

CNN = Network([Conv(4, 3, W_std=1.4, b_std=0.1), "relu", Flatten(), Dense(16, W_std=1.2, b_std=0.2), "relu",
               Dense(3, W_std=0.9, b_std=0.3)])


def _relu_dual(s11, s22, s12):
    """E[relu(u) relu(v)] for (u, v) with variances s11, s22 and covariance s12 (arc-cosine kernel)."""
    p = np.sqrt(np.outer(s11, s22))
    c = np.clip(s12 / p, -1.0, 1.0)
    theta = np.arccos(c)
    return p * (np.sin(theta) + (math.pi - theta) * c) / (2 * math.pi)


def _conditional_reference(x, params):
    """One network's conditional NNGP of CNN, in numpy: the features entering the hidden Dense layer, their
    pre-activation covariance integrated through relu, then the readout's affine step."""
    h = ref.forward(CNN, params, x)[2]  # after Flatten
    hidden, readout = CNN.layers[3], CNN.layers[5]
    sigma = hidden.W_std**2 * (h @ h.T) / h.shape[1] + hidden.b_std**2
    diag = np.diag(sigma)
    return readout.W_std**2 * _relu_dual(diag, diag, sigma) + readout.b_std**2


def test_the_conditional_estimator_of_a_cnn_is_the_numpy_conditional_kernel():
    x = np.random.default_rng(2).standard_normal((9, 6, 2))
    assert nnpk.kernels.default_estimator(CNN) == "conditional"
    for m in (0, 1):
        got = nnpk.monte_carlo(x, arch=CNN, n_networks=1, seed=4 + m, estimator="conditional")
        np.testing.assert_allclose(got, _conditional_reference(x, nnpk.sample_params(CNN, (6, 2), 4 + m, 0)),
                                   rtol=1e-10, atol=1e-12)


def test_the_conditional_estimator_of_a_cnn_has_the_sampled_mean_and_less_variance():
    x = np.random.default_rng(3).standard_normal((6, 6, 2))
    est = {name: nnpk.monte_carlo(x, arch=CNN, n_networks=400, seed=7, estimator=name, return_standard_error=True)
           for name in ("sampled", "conditional")}
    (k_s, info_s), (k_c, info_c) = est["sampled"], est["conditional"]
    gap = np.linalg.norm(k_s - k_c) / np.linalg.norm(k_c)
    se = math.hypot(info_s["standard_error"], info_c["standard_error"])
    assert gap < 4 * se, (gap, se)
    assert info_c["standard_error"] ** 2 * 4 < info_s["standard_error"] ** 2


def test_networks_the_conditional_estimator_cannot_integrate_are_named():
    pooled = Network([Conv(4, 3), "relu", GlobalAvgPool(), Dense(3)])
    with pytest.raises(ValueError, match=r"ending Dense -> activation -> Dense; this one ends Activation relu -> "
                                         r"GlobalAvgPool -> Dense 3: use estimator='readout' or 'sampled'"):
        nnpk.monte_carlo(np.ones((3, 6, 2)), arch=pooled, n_networks=1, estimator="conditional")
    assert nnpk.kernels.default_estimator(pooled) == "readout"
    quadrature = Network([Dense(5), "tanh", Dense(2)])
    assert nnpk.kernels.default_estimator(quadrature) == "readout"


# ---------------------------------------------------------------- biases and readout of a CNN

BIAS_CNN = Network([Conv(3, 3, b_std=0.5), "tanh", Flatten(), Dense(5, b_std=0.4), "relu", Dense(3, b_std=0.3)],
                   parameterization="standard")


def _loss(params, x, y):
    f = ref.forward(BIAS_CNN, params, x)[-1]
    f = f - f.max(axis=1, keepdims=True)
    return np.mean(np.log(np.exp(f).sum(axis=1)) - f[np.arange(len(y)), y])


def _finite_difference(params, x, y, layer, part, step=1e-6):
    grad = np.zeros_like(params[layer][part])
    for i in np.ndindex(grad.shape):
        values = []
        for sign in (1, -1):
            shifted = [[W.copy(), None if b is None else b.copy()] for W, b in params]
            shifted[layer][part][i] += sign * step
            values.append(_loss(shifted, x, y))
        grad[i] = (values[0] - values[1]) / (2 * step)
    return grad


@pytest.mark.parametrize("train", ["biases", "readout", "biases+readout"])
def test_bias_and_readout_learning_of_a_cnn_follow_the_numpy_gradient(train):
    """One full-batch SGD step with lr 1 moves each trained parameter by minus its numpy gradient."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((17, 6, 2))
    y = rng.integers(0, 3, 17)
    fit = nnpk.BiasLearner(BIAS_CNN, seed=2, train=train, optimizer="sgd", lr=1.0, epochs=1, batch_size=None,
                           loss="cross_entropy").fit(x, y).tasks_[0]
    params = nnpk.sample_params(BIAS_CNN, (6, 2), 2, 0)
    for l, (_, b) in enumerate(params):
        if train == "readout" and l < len(params) - 1:
            np.testing.assert_array_equal(fit.biases[l], b)
        else:
            np.testing.assert_allclose(b - fit.biases[l], _finite_difference(params, x, y, l, 1), rtol=1e-6,
                                       atol=1e-9)
    readout = params[-1][0]
    if train == "biases":
        np.testing.assert_array_equal(fit.readout, readout)
    else:
        np.testing.assert_allclose(readout - fit.readout, _finite_difference(params, x, y, len(params) - 1, 0),
                                   rtol=1e-6, atol=1e-9)
    learner = nnpk.BiasLearner(BIAS_CNN, seed=2, train=train, lr=0.05, epochs=30, batch_size=None).fit(x, y)
    assert learner.tasks_[0].loss_curve[-1] < learner.tasks_[0].loss_curve[0]


def test_a_network_without_a_dense_readout_trains_biases_only():
    pooled = Network([Conv(3, 3, b_std=0.5), "relu", GlobalAvgPool()])
    with pytest.raises(ValueError, match=r"trains the final Dense layer; this network ends with layer 2 "
                                         r"\(GlobalAvgPool\): use train='biases'"):
        nnpk.BiasLearner(pooled, train="readout").fit(np.ones((4, 6, 2)), [0, 1, 0, 1])


# ---------------------------------------------------------------- a CNN in a scikit-learn Pipeline


def test_a_convolutional_arch_in_a_pipeline_is_kernel_ridge_on_its_kernel():
    x, y = load_digits(return_X_y=True)
    x, y = x[:300], y[:300]
    cnn = Network([Conv(8, (3, 3), W_std=1.4, b_std=0.1), "relu", Flatten(), Dense(10, b_std=0.1)])
    model = make_pipeline(StandardScaler(), nnpk.sklearn.NNPKClassifier(arch=cnn, input_shape=(8, 8, 1),
                                                                        n_networks=8, ridge=1e-3))
    model.fit(x[:200], y[:200])
    assert model.score(x[200:], y[200:]) > 0.85
    # The same prediction from the kernel itself.
    z = StandardScaler().fit(x[:200]).transform(x).reshape(-1, 8, 8, 1)
    k_train = nnpk.monte_carlo(z[:200], arch=cnn, n_networks=8)
    k_test = nnpk.monte_carlo(z[200:], z[:200], arch=cnn, n_networks=8)
    coef = nnpk.ridge_coefficients(k_train, np.eye(10)[y[:200]], 1e-3)
    np.testing.assert_array_equal(model.predict(x[200:]), np.argmax(k_test @ coef, axis=1))
    with pytest.raises(ValueError, match=r"input_shape \(8, 8\) holds 64 values; X has 63 features"):
        nnpk.sklearn.NNPKRegressor(arch=cnn, input_shape=(8, 8)).fit(x[:20, :63], y[:20])
