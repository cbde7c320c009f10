"""Learned unit masks (train="masks"): the masked forward pass and the scores' gradients against numpy and
finite differences, the hard masks of evaluation, one set of masks per task."""

import numpy as np
import pytest

import nnpk
from nnpk.learn._masks import mask_sites


def _net():
    return nnpk.Network([nnpk.Dense(12, W_std=1.4, b_std=0.5), "relu", nnpk.Dense(9, W_std=1.4, b_std=0.5), "tanh",
                         nnpk.Dense(3, b_std=0.1)], parameterization="standard")


def _numpy_forward(params, x, masks):
    (W1, b1), (W2, b2), (W3, b3) = params
    h1 = np.maximum(x @ W1 + b1, 0) * masks[0]
    h2 = np.tanh(h1 @ W2 + b2) * masks[1]
    return h2 @ W3 + b3


def _loss(params, x, labels, masks):
    f = _numpy_forward(params, x, masks)
    f = f - f.max(1, keepdims=True)
    return np.mean(np.log(np.exp(f).sum(1)) - f[np.arange(len(x)), labels])


def test_one_step_moves_the_scores_by_their_gradient():
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    learner = nnpk.NetworkLearner(_net(), train="masks", optimizer="sgd", lr=0.7, epochs=1, batch_size=None,
                                  mask_slope=(2.0, 8.0), dtype="float64").fit(x, labels)
    params = nnpk.sample_params(_net(), 5, 0, 0)
    k, s0 = 2.0, [np.ones(12), np.ones(9)]

    def loss_of(scores):
        return _loss(params, x, labels, [1 / (1 + np.exp(-k * s)) for s in scores])

    eps = 1e-6
    for layer, size in enumerate((12, 9)):
        grad = np.zeros(size)
        for i in range(size):
            plus = [s.copy() for s in s0]
            minus = [s.copy() for s in s0]
            plus[layer][i] += eps
            minus[layer][i] -= eps
            grad[i] = (loss_of(plus) - loss_of(minus)) / (2 * eps)
        np.testing.assert_allclose(learner.tasks_[0].masks[layer], s0[layer] - 0.7 * grad, rtol=1e-7, atol=1e-9)
    assert learner.history_["loss"][0] == pytest.approx(loss_of(s0), rel=1e-10)


def test_evaluation_uses_hard_masks_and_tasks_keep_their_own():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 5))
    y1, y2 = (x[:, 0] > 0).astype(int), (x[:, 1] > 0).astype(int)
    learner = nnpk.BiasLearner(_net(), train="masks", lr=0.05, epochs=30, batch_size=100, random_state=0)
    learner.fit(x, y1, task="a").fit(x, y2, task="b")
    params = nnpk.sample_params(_net(), 5, 0, 0)
    for task, y in (("a", y1), ("b", y2)):
        masks = [(s > 0).astype(float) for s in learner.tasks_[task].masks]
        expected = _numpy_forward(params, x, masks)[:, :2]
        np.testing.assert_allclose(learner.decision_function(x, task=task), expected, rtol=1e-10, atol=1e-12)
        assert learner.score(x, y, task=task) > 0.7
        # weights and biases stay as drawn but for the rows of switched-off units
        (W2, b2), (W2_0, b2_0) = learner.tasks_[task].params[1], params[1]
        np.testing.assert_array_equal(W2, W2_0 * masks[0][:, None])
        np.testing.assert_array_equal(b2, b2_0)
    assert not all(np.array_equal(a > 0, b > 0) for a, b in zip(learner.tasks_["a"].masks, learner.tasks_["b"].masks))


def test_mask_sites_of_a_cnn_and_refusals():
    cnn = nnpk.Network([nnpk.Conv(4, 3), "relu", nnpk.AvgPool(2), nnpk.Conv(5, 3), "relu", nnpk.Flatten(),
                        nnpk.Dense(2)])
    sites = mask_sites(cnn)
    assert [(s.layer, s.entry, s.channels) for s in sites] == [(1, 1, 4), (4, 2, 5)]
    x = np.random.default_rng(2).standard_normal((20, 8, 1))
    fitted = nnpk.NetworkLearner(cnn, train="masks", epochs=1, batch_size=None).fit(x, np.arange(20) % 2)
    W = fitted.params_[2][0]  # the Dense reading the flattened (positions, 5 channels) map: rows by channel
    W0 = nnpk.sample_params(cnn, (8, 1), 0, 0)[2][0]
    on = (fitted.tasks_[0].masks[1] > 0).astype(float)
    np.testing.assert_array_equal(W, W0 * np.tile(on, W0.shape[0] // 5)[:, None])
    with pytest.raises(ValueError, match="train='masks' found no hidden units to mask"):
        nnpk.NetworkLearner(nnpk.Network([nnpk.Dense(3)]), train="masks").fit(np.zeros((4, 2)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="mask_slope must be a pair of positive numbers"):
        nnpk.NetworkLearner(_net(), train="masks", mask_slope=(0, 5)).fit(np.zeros((4, 5)), [0, 1, 0, 1])
    res = nnpk.Network([nnpk.Dense(4), nnpk.Residual(["relu", nnpk.Dense(4)]), "relu", nnpk.Dense(2)])
    with pytest.raises(ValueError, match=r"masks the units of sequential layers; layer 1 \(Residual"):
        nnpk.NetworkLearner(res, train="masks").fit(np.zeros((4, 3)), [0, 1, 0, 1])
    bn = nnpk.Network([nnpk.Dense(4), "relu", nnpk.BatchNorm(), nnpk.Dense(2)])
    with pytest.raises(ValueError, match="normalises the units of layer 1 per channel"):
        nnpk.NetworkLearner(bn, train="masks").fit(np.zeros((4, 3)), [0, 1, 0, 1])


def test_task_variance_against_its_formula_and_clusters():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 5))
    learner = nnpk.BiasLearner(_net(), train="biases", lr=0.05, epochs=3, batch_size=100, random_state=0)
    learner.fit(x, (x[:, 0] > 0).astype(int), task="a").fit(x[:100], (x[:100, 1] > 0).astype(int), task="b")
    V = nnpk.task_variance(learner, None, inputs=[x, x[:100]])
    for column, (task, points) in enumerate((("a", x), ("b", x[:100]))):
        (W1, b1), (W2, b2), _ = learner.tasks_[task].params
        h2 = np.tanh(np.maximum(points @ W1 + b1, 0) @ W2 + b2)
        np.testing.assert_allclose(V[:, column], h2.var(axis=0), rtol=1e-10, atol=1e-14)
    first = nnpk.task_variance(learner, x, layer=1)
    (W1, b1), _, _ = learner.tasks_["a"].params
    np.testing.assert_allclose(first[:, 0], np.maximum(x @ W1 + b1, 0).var(axis=0), rtol=1e-10, atol=1e-14)
    labels = nnpk.unit_clusters(V, 2)
    assert labels.shape == (9,) and set(labels) <= {-1, 0, 1}
    profile = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.0, 0.0]])
    got = nnpk.unit_clusters(profile, 2)
    assert got[4] == -1 and got[0] == got[1] != got[2] == got[3]
    with pytest.raises(ValueError, match="layer must be the index of a hidden layer"):
        nnpk.task_variance(learner, x, layer=4)
    with pytest.raises(ValueError, match="task 'c' has not been fitted"):
        nnpk.task_variance(learner, x, tasks=["c"])
    with pytest.raises(ValueError, match="n_clusters=3 but only 2 units vary"):
        nnpk.unit_clusters(profile[2:], 3)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_default_learning_rates_of_masks_learn(optimizer):
    x, y = nnpk.datasets.load_digits()
    x = ((x - x.mean(0)) / (x.std(0) + 1e-9))[:400]
    arch = nnpk.MLP(hidden=[256], out=10, W_std=2**0.5, b_std=0.5, parameterization="standard")
    learner = nnpk.BiasLearner(arch, train="masks", optimizer=optimizer, epochs=20, random_state=0).fit(x, y[:400])
    assert learner.score(x, y[:400]) > 0.5
    with pytest.raises(ValueError, match="masks' scores have none there: give a number for lr"):
        nnpk.BiasLearner(arch, train="masks", optimizer="sgd", lr="ntk", epochs=1).fit(x, y[:400])
