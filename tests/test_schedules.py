"""Learning-rate schedules and the logistic loss of NetworkLearner, against their formulas and numpy."""

import math

import numpy as np
import pytest

import nnpk
from nnpk.learn._network_learning import scheduled_lr


def _linear_net(d, out=1):
    return nnpk.Network([nnpk.Dense(out, W_std=1.0)], parameterization="standard")


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
@pytest.mark.parametrize("warmup", [0, 2])
def test_schedule_formulas(schedule, warmup):
    total = 10
    got = [scheduled_lr(schedule, 0.5, warmup, k, total) for k in range(12)]
    for k, lr in enumerate(got):
        if k < warmup:
            assert lr == pytest.approx(0.5 * (k + 1) / warmup)
            continue
        j, J = k - warmup, total - warmup
        expected = {"constant": 0.5, "linear": 0.5 * max(0.0, 1 - j / J),
                    "cosine": 0.5 * (1 + math.cos(math.pi * j / J)) / 2 if j < J else 0.0}[schedule]
        assert lr == pytest.approx(expected, abs=1e-15)
    if schedule != "constant":
        assert got[-1] == 0.0 and got[warmup] == 0.5


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_sgd_follows_the_schedule(schedule):
    """Full-batch gradient descent on a linear model: each step is -lr_k times numpy's gradient."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 4)), rng.standard_normal(50)
    learner = nnpk.NetworkLearner(_linear_net(4), optimizer="sgd", lr=0.3, epochs=5, batch_size=None,
                                  lr_schedule=schedule, warmup=1, dtype="float64", loss="squared").fit(x, y)
    W = nnpk.sample_params(_linear_net(4), 4, 0, 0)[0][0].copy()
    for k in range(5):
        grad = x.T @ (x @ W - y[:, None]) / len(x)
        W -= scheduled_lr(schedule, 0.3, 1, k, 5) * grad
    np.testing.assert_allclose(learner.params_[0][0], W, rtol=1e-12, atol=1e-14)
    # partial_fit, one epoch a call, continues the same schedule
    stepwise = nnpk.NetworkLearner(_linear_net(4), optimizer="sgd", lr=0.3, epochs=5, batch_size=None,
                                   lr_schedule=schedule, warmup=1, dtype="float64", loss="squared")
    for _ in range(5):
        stepwise.partial_fit(x, y)
    np.testing.assert_array_equal(stepwise.params_[0][0], learner.params_[0][0])


def test_logistic_loss_and_its_gradient():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 3))
    labels = np.where(rng.standard_normal(40) > 0, "b", "a")
    learner = nnpk.NetworkLearner(_linear_net(3), optimizer="sgd", lr=0.2, epochs=1, batch_size=None,
                                  loss="logistic", dtype="float64").fit(x, labels)
    W0 = nnpk.sample_params(_linear_net(3), 3, 0, 0)[0][0]
    f = (x @ W0)[:, 0]
    y = (labels == "b").astype(float)
    loss = np.mean(np.log1p(np.exp(-(2 * y - 1) * f)))
    assert learner.history_["loss"][0] == pytest.approx(loss, rel=1e-12)
    assert learner.history_["accuracy"][0] == pytest.approx(np.mean((f > 0) == (y == 1)))
    grad = x.T @ (1 / (1 + np.exp(-f)) - y) / len(x)
    np.testing.assert_allclose(learner.params_[0][0][:, 0], W0[:, 0] - 0.2 * grad, rtol=1e-12)
    fitted = (x @ learner.params_[0][0])[:, 0]
    np.testing.assert_array_equal(learner.predict(x), np.where(fitted > 0, "b", "a"))
    np.testing.assert_allclose(learner.predict_proba(x)[:, 1], 1 / (1 + np.exp(-fitted)), rtol=1e-12)


def test_refusals():
    x, y = np.zeros((6, 3)), np.array([0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match="loss='logistic' takes two classes on one logit; y has 3"):
        nnpk.NetworkLearner(_linear_net(3), loss="logistic").fit(x, y)
    with pytest.raises(ValueError, match="lr_schedule must be one of 'constant', 'linear', 'cosine', got 'step'"):
        nnpk.NetworkLearner(_linear_net(3), lr_schedule="step").fit(x, y % 2)
    with pytest.raises(ValueError, match="warmup must be"):
        nnpk.NetworkLearner(_linear_net(3), warmup=-1).fit(x, y % 2)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_bias_learner_follows_the_schedule(schedule):
    """BiasLearner takes the schedule too: full-batch gradient descent on the bias of a linear model, each step
    -lr_k times numpy's gradient (the mean residual), the weights untouched."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((40, 3)), rng.standard_normal(40)
    arch = nnpk.Network([nnpk.Dense(1, W_std=1.0, b_std=0.5)], parameterization="standard")
    learner = nnpk.BiasLearner(arch, optimizer="sgd", lr=0.4, epochs=6, batch_size=None, lr_schedule=schedule,
                               warmup=2, dtype="float64", loss="squared").fit(x, y)
    (W, b), = nnpk.sample_params(arch, 3, 0, 0)
    b = b.copy()
    for k in range(6):
        b -= scheduled_lr(schedule, 0.4, 2, k, 6) * np.mean(x @ W[:, 0] + b[0] - y)
    np.testing.assert_array_equal(learner.params_[0][0], W)
    np.testing.assert_allclose(learner.params_[0][1], b, rtol=1e-12, atol=1e-14)
