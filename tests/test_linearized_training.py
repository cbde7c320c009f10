"""Training the linearised network in parameter space (NetworkLearner(linearize=True)): the tangent pass against
finite differences for every layer type, and training against the function-space iteration of the NTK."""

import numpy as np
import pytest

import nnpk
from nnpk import _core
from nnpk.architectures._params import check_network_params

NETWORKS = {
    "mlp": (lambda: nnpk.Network([nnpk.Dense(20, b_std=0.1), "tanh", nnpk.Dense(15, b_std=0.2), "relu",
                                  nnpk.Dense(3)]), (6,)),
    "cnn": (lambda: nnpk.Network([nnpk.Conv(8, (3, 3), b_std=0.1), "tanh", nnpk.AvgPool((2, 2)), nnpk.Conv(8, (3, 3)),
                                  "gelu", nnpk.MaxPool((2, 2), padding="same"), nnpk.Flatten(), nnpk.Dense(4)]),
            (8, 8, 2)),
    "residual": (lambda: nnpk.Network([nnpk.Conv(6, 3, b_std=0.1), nnpk.Residual(["relu", nnpk.Conv(6, 3)], scale=0.5),
                                       nnpk.GlobalAvgPool(), nnpk.Dense(2)]), (10, 3)),
    "batchnorm": (lambda: nnpk.Network([nnpk.Dense(12, b_std=0.1), nnpk.BatchNorm(), "tanh", nnpk.Dense(2)]), (5,)),
    "recurrent": (lambda: nnpk.Network([nnpk.Recurrent(10, "tanh", W_std=1.2, b_std=0.3, leak=0.6,
                                                       return_sequences=True),
                                        nnpk.Dense(7, b_std=0.1), "tanh", nnpk.Recurrent(9, "sigmoid"),
                                        nnpk.Dense(2)]), (5, 3)),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_tangent_pass_matches_finite_differences(name):
    make, shape = NETWORKS[name]
    net = make()
    compiled = net.compile(shape)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((13,) + shape).reshape(13, -1)
    theta = check_network_params(nnpk.sample_params(net, shape, 0, 0), compiled, np.float64)
    direction = [(rng.standard_normal(W.shape), None if b is None else rng.standard_normal(b.shape)) for W, b in theta]
    buffers = [(rng.standard_normal(n.channels) * 0.1, rng.uniform(0.5, 2, n.channels)) for n in compiled.norms] or None
    jvp = _core.sequential_linearized_outputs(x, compiled.spec, theta, direction, False, 2, buffers)
    eps = 1e-6

    def moved(sign):
        params = [(W + sign * eps * dW, None if b is None else b + sign * eps * db)
                  for (W, b), (dW, db) in zip(theta, direction)]
        return _core.sequential_outputs(x, compiled.spec, params, 1, buffers, False)

    numeric = (moved(1) - moved(-1)) / (2 * eps)
    np.testing.assert_allclose(jvp, numeric, rtol=1e-6, atol=1e-7 * np.abs(numeric).max())
    with_offset = _core.sequential_linearized_outputs(x, compiled.spec, theta, direction, True, 1, buffers)
    plain = _core.sequential_outputs(x, compiled.spec, theta, 1, buffers, False)
    np.testing.assert_allclose(with_offset, plain + jvp, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("train", ["all", "biases", [1]])
def test_full_batch_sgd_equals_the_function_space_iteration(train):
    """Gradient descent on f_lin with the squared loss moves f by f_{k+1} = f_k - (lr / n) Theta (f_k - y), Theta
    the empirical NTK at theta_0 of the trained parameters."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((40, 5)), rng.standard_normal(40)
    arch = nnpk.MLP(hidden=[32, 32], out=1, W_std=1.3, b_std=0.2)
    learner = nnpk.NetworkLearner(arch, linearize=True, train=train, optimizer="sgd", lr=0.5, epochs=10,
                                  batch_size=None, dtype="float64", loss="squared").fit(x, y)
    theta0 = nnpk.sample_params(arch, 5, 0, 0)
    theta = nnpk.empirical(x, arch=arch, params=theta0, get="ntk", wrt=train)  # the same parameters as trained
    f = nnpk.initial_outputs(x, arch=arch, params=theta0)[:, 0]
    for _ in range(10):
        f = f - 0.5 / 40 * theta @ (f - y)
    np.testing.assert_allclose(learner.predict(x), f, rtol=1e-8, atol=1e-10)


def test_small_steps_approach_gradient_flow():
    """lr t fixed, lr small: gradient descent on f_lin approaches linearized_prediction(time=) of the flow."""
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((30, 4)), rng.standard_normal(30)
    x_test = rng.standard_normal((10, 4))
    arch = nnpk.MLP(hidden=[24], out=1, W_std=1.4, b_std=0.1)
    theta0 = nnpk.sample_params(arch, 4, 0, 0)
    ntk = nnpk.empirical(np.vstack([x, x_test]), arch=arch, params=theta0, get="ntk")
    f0 = nnpk.initial_outputs(np.vstack([x, x_test]), arch=arch, params=theta0)
    flow = nnpk.linearized_prediction(ntk[:30, :30], ntk[30:, :30], f0[:30], f0[30:], y[:, None], time=200, lr=0.02)
    gaps = []
    for lr, steps in ((0.2, 20), (0.02, 200)):
        learner = nnpk.NetworkLearner(arch, linearize=True, optimizer="sgd", lr=lr, epochs=steps, batch_size=None,
                                      dtype="float64", loss="squared").fit(x, y)
        gaps.append(np.abs(learner.predict(x_test) - flow[:, 0]).max())
    assert gaps[1] < 1e-3 * np.abs(flow).max() and gaps[1] < gaps[0] / 5


def test_offset_given_params_and_threads():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((250, 6)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(int)
    arch = nnpk.MLP(hidden=[16], out=1, W_std=1.4, b_std=0.1)
    start = [(W * 0.5, b) for W, b in nnpk.sample_params(arch, 6, 0, 4)]
    fits = [nnpk.NetworkLearner(arch, params=start, linearize=True, offset=False, loss="logistic", optimizer="sgd",
                                lr=0.1, momentum=0.9, epochs=3, batch_size=96, random_state=0, dtype="float32",
                                n_threads=threads, lr_schedule="cosine").fit(x, labels) for threads in (1, 2)]
    for (W1, b1), (W2, b2) in zip(fits[0].params_, fits[1].params_):
        assert np.array_equal(W1, W2) and np.array_equal(b1, b2)
    # Without the offset, f_lin is J (theta - theta_0): zero before any step, and what it is after.
    untrained = nnpk.NetworkLearner(arch, params=start, linearize=True, offset=False, loss="logistic", lr=1e-12,
                                    epochs=1, batch_size=None, optimizer="sgd").fit(x, labels)
    assert np.abs(untrained.decision_function(x)).max() < 1e-9
    fitted = fits[0]
    direction = [(W - W0, b - b0) for (W, b), (W0, b0) in zip(fitted.params_, start)]
    compiled = arch.compile((6,))
    expected = _core.sequential_linearized_outputs(x.astype(np.float64), compiled.spec,
                                                   check_network_params(start, compiled, np.float64),
                                                   check_network_params(direction, compiled, np.float64), False, 1)
    np.testing.assert_allclose(fitted.decision_function(x)[:, 0], expected[:, 0], rtol=1e-4, atol=1e-5)
    assert fitted.score(x, labels) > 0.8


def test_linearised_refusals():
    x, y = np.zeros((8, 3, 2)), np.zeros((8, 3, 2))
    net = nnpk.Network([nnpk.Recurrent(4, "tanh", return_sequences=True), nnpk.Dense(2)])
    learner = nnpk.NetworkLearner(net, linearize=True, epochs=1).fit(x, y)
    with pytest.raises(ValueError, match="generate runs the network itself; this task trained a linearisation"):
        learner.generate(x[:, :2], 2)
    with pytest.raises(ValueError, match="record= stores the kernels of the trained network"):
        nnpk.NetworkLearner(net, linearize=True, record=[0], record_points=x).fit(x, y)
    with pytest.raises(TypeError, match="linearize must be True or False"):
        nnpk.NetworkLearner(net, linearize="yes").fit(x, y)
    with pytest.raises(ValueError, match="task 0 was trained with linearize=True"):
        learner.set_params(linearize=False).partial_fit(x, y)
