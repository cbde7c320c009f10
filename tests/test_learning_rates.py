"""Learning rates: divergence as an error, lr="ntk" against the numpy curvature, the defaults on digits, sweep."""

import math
import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits

import nnpk
from nnpk.learn import DivergenceError, ntk_learning_rate, sweep
from reference_networks import forward, jacobian, parameter_slices

SQRT2 = math.sqrt(2)


def digits(n, seed=0):
    """n digits (a fixed random subset), each feature standardized."""
    x, y = load_digits(return_X_y=True)
    rows = np.random.default_rng(seed).permutation(len(y))[:n]
    x, y = x[rows], y[rows]
    return (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12), y


def regression(n=40, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * np.linspace(0.5, 2.0, d)
    return x, x @ rng.standard_normal(d)


LINEAR = nnpk.MLP(hidden=[], out=1, W_std=1.0, b_std=None, parameterization="standard")


def linear_curvature(x):
    """The largest eigenvalue of the Hessian X^T X / n of the mean squared loss 0.5 (x w - y)^2."""
    return float(np.linalg.eigvalsh(x.T @ x / x.shape[0])[-1])


def numpy_gradient_descent(x, y, w, lr, momentum, steps):
    """Full-batch heavy-ball gradient descent (torch's SGD) on the mean of 0.5 (x w - y)^2."""
    buf = np.zeros_like(w)
    for _ in range(steps):
        buf = momentum * buf + x.T @ (x @ w - y) / x.shape[0]
        w = w - lr * buf
    return w


# ---------------------------------------------------------------- divergence


def test_divergence_raises_and_keeps_the_finite_epochs_and_their_parameters():
    x, y = regression()
    lr = 20 / linear_curvature(x)  # far above 2 / lambda_max: the error grows 19-fold a step
    learner = nnpk.NetworkLearner(LINEAR, optimizer="sgd", lr=lr, epochs=1000, batch_size=None, n_threads=1)
    with pytest.raises(DivergenceError, match=r"task 0 diverged at step 1 of epoch \d+: the training loss was "
                                              r"(inf|nan).*smaller learning rate.*lr='ntk'") as info:
        learner.fit(x, y)
    error = info.value
    assert isinstance(error, FloatingPointError) and error.task == 0 and error.step == 1
    fit = learner.tasks_[0]
    finite = error.finite_epochs
    # One step an epoch: the parameters after epoch E - 1 gave the infinite loss; those after E - 2 a finite one.
    assert 100 < finite == error.epoch - 2 == fit.epochs == len(fit.history["loss"]) == len(learner.history_["loss"])
    assert np.isfinite(fit.history["loss"]).all() and fit.history["loss"][-1] > 1e100
    # The parameters are those after the last finite epoch: numpy's gradient descent after as many steps.
    w0 = nnpk.sample_params(LINEAR, (5,), 0, 0)[0][0][:, 0]
    expected = numpy_gradient_descent(x, y, w0, lr, 0.0, finite)
    np.testing.assert_allclose(learner.params_[0][0][:, 0], expected, rtol=1e-8)
    assert learner.lr_ == lr and pickle.loads(pickle.dumps(error)).args == error.args


def test_partial_fit_continues_a_diverged_task_from_its_last_finite_epoch():
    x, y = regression()
    learner = nnpk.NetworkLearner(LINEAR, optimizer="sgd", lr=20 / linear_curvature(x), epochs=1000,
                                  batch_size=None, n_threads=1)
    with pytest.raises(DivergenceError):
        learner.fit(x, y)
    epochs = learner.tasks_[0].epochs
    learner.set_params(lr=0.5 / linear_curvature(x)).partial_fit(x, y).partial_fit(x, y)
    assert learner.tasks_[0].epochs == epochs + 2 and learner.history_["loss"][-1] < learner.history_["loss"][-2]


def test_adam_divergence_names_the_learning_rate():
    x, y = regression()
    learner = nnpk.NetworkLearner(nnpk.MLP(hidden=[16], out=1, activation="relu", W_std=SQRT2, b_std=0.1,
                                           parameterization="standard"),
                                  lr=1e300, epochs=5, batch_size=10, n_threads=1)
    with pytest.raises(DivergenceError, match=r"optimizer='adam', lr=1e\+300.*a smaller learning rate"):
        learner.fit(x, y)


# ---------------------------------------------------------------- lr="ntk"


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_ntk_learning_rate_of_a_linear_model_is_the_edge_of_stability(momentum):
    """The squared loss of a linear model is its quadratic model: fraction 1 is exactly 2 (1 + beta) / lambda_max."""
    x, y = regression()
    bound = 2 * (1 + momentum) / linear_curvature(x)
    lr = ntk_learning_rate(LINEAR, x, loss="squared", batch_size=None, momentum=momentum, fraction=1.0)
    assert lr == pytest.approx(bound, rel=1e-10)
    below = nnpk.NetworkLearner(LINEAR, optimizer="sgd", momentum=momentum, lr=0.98 * bound, epochs=3000,
                                batch_size=None, n_threads=1).fit(x, y)
    assert below.history_["loss"][-1] < 1e-3 * below.history_["loss"][0]
    with pytest.raises(DivergenceError):
        nnpk.NetworkLearner(LINEAR, optimizer="sgd", momentum=momentum, lr=1.02 * bound, epochs=20000,
                            batch_size=None, n_threads=1).fit(x, y)


def numpy_hessian_roots(logits, loss):
    """(n, C, C): the square root of each row's Hessian of the loss in its logits."""
    n, C = logits.shape
    if loss == "squared":
        return np.broadcast_to(np.eye(C), (n, C, C))
    if loss == "logistic":
        s = 1 / (1 + np.exp(-logits))
        return np.array([np.diag(np.sqrt(v * (1 - v))) for v in s])
    roots = []
    for z in logits:
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        w, V = np.linalg.eigh(np.diag(p) - np.outer(p, p))
        roots.append(V @ np.diag(np.sqrt(np.clip(w, 0, None))) @ V.T)
    return np.array(roots)


@pytest.mark.parametrize("train", ["all", "weights", "biases", "readout", "biases+readout", [0]])
@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_ntk_learning_rate_follows_the_numpy_jacobian(train, loss):
    """fraction 2 (1 + beta) / (lambda_max(H^1/2 J_B J_B^T H^1/2) / b + weight decay), the largest over the
    minibatches, J_B the numpy Jacobian of the first 3 logits in the trained parameters and H the loss's Hessian
    in those logits at the starting network (the identity for the squared loss; the softmax's diag(p) - p p^T)."""
    arch = nnpk.MLP(hidden=[12, 9], out=4, activation="tanh", W_std=1.4, b_std=0.6, parameterization="ntk")
    x = np.random.default_rng(1).standard_normal((30, 5))
    params = nnpk.sample_params(arch, (5,), 3, 1)
    J = jacobian(arch, params, x)[:, :3]  # (n, 3, P)
    R = numpy_hessian_roots(forward(arch, params, x)[-1][:, :3], loss)
    slices = parameter_slices(params)
    chosen = {"all": slices, "weights": [k for k in slices if k[1] == "weights"],
              "biases": [k for k in slices if k[1] == "biases"], "readout": [k for k in slices if k[0] == 2],
              "biases+readout": [k for k in slices if k[1] == "biases" or k[0] == 2],
              }.get(train if isinstance(train, str) else "", [k for k in slices if k[0] == 0])
    J = np.concatenate([J[..., slices[k]] for k in chosen], axis=-1)
    J = np.einsum("icd,idp->icp", R, J)  # H^1/2 J, row by row
    curvature = max(np.linalg.eigvalsh(np.einsum("icp,jdp->icjd", J[s:s + 8], J[s:s + 8]).reshape(24, 24))[-1] / 8
                    for s in (0, 8, 16))
    expected = 0.7 * 2 * 1.5 / (curvature + 0.01)
    lr = ntk_learning_rate(arch, x, train=train, loss=loss, n_outputs=3, batch_size=8, momentum=0.5,
                           weight_decay=0.01, params=params, fraction=0.7)
    assert lr == pytest.approx(expected, rel=1e-9)
    if train == "biases+readout":
        return  # BiasLearner's SGD has no momentum or weight decay
    learner = nnpk.NetworkLearner(arch, seed=3, index=1, train=train, optimizer="sgd", lr="ntk", momentum=0.5,
                                  weight_decay=0.01, batch_size=8, epochs=1, loss=loss, n_threads=1)
    y = np.arange(30) % 3 if loss == "cross_entropy" else np.random.default_rng(2).standard_normal((30, 3))
    learner.fit(x, y)
    assert learner.lr_ == pytest.approx(expected / 0.7 * 0.5, rel=1e-9)


def test_ntk_learning_rate_of_the_logistic_loss_takes_its_curvature_at_the_start():
    """One logit, sigma(f) (1 - sigma(f)) at the starting network's logits: at most the bound 1/4."""
    arch = nnpk.MLP(hidden=[10], out=1, activation="relu", W_std=SQRT2, b_std=0.5, parameterization="standard")
    x = np.random.default_rng(4).standard_normal((24, 3))
    params = nnpk.sample_params(arch, (3,), 0, 0)
    J = jacobian(arch, params, x)[:, 0]  # (n, P)
    R = numpy_hessian_roots(forward(arch, params, x)[-1], "logistic")[:, 0, 0]
    curvature = max(np.linalg.eigvalsh((R[s:s + 12, None] * J[s:s + 12]) @ (R[s:s + 12, None] * J[s:s + 12]).T)[-1]
                    / 12 for s in (0, 12))
    lr = ntk_learning_rate(arch, x, loss="logistic", batch_size=12, params=params)
    assert lr == pytest.approx(0.5 * 2 / curvature, rel=1e-9)
    bound = max(np.linalg.eigvalsh(J[s:s + 12] @ J[s:s + 12].T)[-1] / 12 for s in (0, 12)) / 4
    assert curvature <= bound * (1 + 1e-12)


def test_deep_normalized_relu_trains_with_the_ntk_rate_where_a_fixed_rate_diverges():
    """relu_normalized has W_std^2 E[phi'(z)^2] = 1.47: the gradients of a deep network grow as 1.47^depth."""
    x, y = digits(300)
    arch = nnpk.MLP(hidden=[128] * 16, out=10, activation="relu_normalized", W_std=1.0, b_std=0.1,
                    parameterization="standard")
    settings = dict(optimizer="sgd", momentum=0.9, epochs=8, random_state=0)
    with pytest.raises(DivergenceError):
        nnpk.NetworkLearner(arch, lr=0.1, **settings).fit(x, y)
    learner = nnpk.NetworkLearner(arch, lr="ntk", **settings).fit(x, y)
    loss = learner.history_["loss"]
    assert np.isfinite(loss).all() and loss[-1] < 0.75 * loss[0] and learner.score(x, y) > 0.3


# ---------------------------------------------------------------- defaults


def bias_arch(width):
    return nnpk.MLP(hidden=[width], out=10, activation="relu", W_std=SQRT2, b_std=1.0, parameterization="standard")


# Every (learner, train) of DEFAULT_LEARNING_RATES: NetworkLearner's defaults (10 epochs, batches of 96) on all of
# digits; BiasLearner's (100 epochs) on 300 of them, as many steps in as little time.
DEFAULT_CASES = [("network", "all"), ("network", "weights"), ("network", "biases"), ("network", "readout"),
                 ("network", [0]), ("network", "masks"),
                 ("bias", "biases"), ("bias", "biases+readout"), ("bias", "readout"), ("bias", "masks")]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("learner, train", DEFAULT_CASES, ids=lambda v: str(v))
def test_every_default_learns_digits(learner, train, optimizer):
    """Default settings (the default learning rate, epochs and batch size) end well above chance (0.1) on digits,
    with a network of 1,024 ReLU units (the how-to's table)."""
    cls = nnpk.NetworkLearner if learner == "network" else nnpk.BiasLearner
    x, y = digits(1797 if learner == "network" else 300)
    fitted = cls(bias_arch(1024), train=train, optimizer=optimizer, random_state=0).fit(x, y)
    default = nnpk.learn.DEFAULT_LEARNING_RATES[optimizer][train if isinstance(train, str) else "list"]
    if default != "ntk":
        assert fitted.lr_ == default
    assert fitted.score(x, y) > 0.7


def test_every_default_is_tested():
    trains = {train if isinstance(train, str) else "list" for _, train in DEFAULT_CASES}
    for optimizer, table in nnpk.learn.DEFAULT_LEARNING_RATES.items():
        assert set(table) == trains, optimizer


# ---------------------------------------------------------------- sweep


def test_sweep_runs_are_the_learners_fitted_by_hand():
    x, y = digits(200)
    x_val, y_val = digits(100, seed=1)
    learner = nnpk.NetworkLearner(bias_arch(64), optimizer="sgd", batch_size=50, epochs=3)
    lrs = [1e-3, 0.1, 1e30]
    result = sweep(learner, x, y, lrs=lrs, seeds=[0, 1], X_val=x_val, y_val=y_val)
    assert result.scores.shape == (3, 2) and [r["lr"] for r in result.runs] == [1e-3] * 2 + [0.1] * 2 + [1e30] * 2
    for run in result.runs:
        by_hand = nnpk.NetworkLearner(bias_arch(64), optimizer="sgd", batch_size=50, epochs=3, lr=run["lr"],
                                      seed=run["seed"], random_state=run["seed"])
        if run["diverged"]:
            with pytest.raises(DivergenceError) as info:
                by_hand.fit(x, y)
            assert run["error"] == str(info.value) and math.isnan(run["val_score"])
        else:
            by_hand.fit(x, y)
            assert run["val_score"] == by_hand.score(x_val, y_val) and run["train_score"] == by_hand.score(x, y)
        assert run["history"] == by_hand.history_
    assert result.diverged[2].all() and not result.diverged[:2].any()
    assert result.best_lr == 0.1 and result.best_score == result.scores[1].mean()
    assert result.best_learner.get_params()["lr"] == 0.1 and result.best_learner.seed == 0


def test_sweep_takes_any_scorer_and_any_learner():
    from sklearn.metrics import get_scorer

    x, y = digits(150)
    result = sweep(nnpk.BiasLearner(bias_arch(32), epochs=2), x, y, lrs=np.logspace(-3, -1, 3),
                   score=get_scorer("neg_log_loss"))
    assert result.best_lr in result.lrs and (result.scores < 0).all() and result.runs[0]["val_score"] is None


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(lrs=[]), ValueError, "lrs must be a non-empty sequence"),
    (dict(lrs=[0.1, -1]), ValueError, "lrs must be a non-empty sequence of finite learning rates > 0"),
    (dict(seeds=3), TypeError, "seeds must be a sequence"),
    (dict(seeds=[]), ValueError, "seeds must hold at least one seed"),
    (dict(seeds=[-1]), ValueError, r"seeds\[0\] must be >= 0"),
    (dict(X_val=np.zeros((2, 64))), ValueError, "X_val and y_val go together"),
])
def test_bad_sweeps_are_named(kwargs, error, match):
    x, y = digits(20)
    with pytest.raises(error, match=match):
        sweep(nnpk.BiasLearner(bias_arch(8), epochs=1), x, y, **kwargs)


def test_sweep_needs_a_learning_rate():
    from sklearn.linear_model import Ridge

    with pytest.raises(ValueError, match="Ridge has no lr parameter"):
        sweep(Ridge(), np.zeros((4, 2)), np.zeros(4))


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr="ntk"), "lr='ntk' is gradient descent's step.*optimizer='sgd'"),
    (dict(lr="auto"), "lr must be a finite number > 0, 'ntk' or None"),
    (dict(lr=-0.1, optimizer="sgd"), "lr must be a finite number > 0"),
    (dict(lr="ntk", optimizer="sgd", arch=nnpk.Network([nnpk.Dense(8), nnpk.BatchNorm(), nnpk.Dense(3)])),
     "lr='ntk'.*BatchNorm"),
])
def test_bad_learning_rates_are_named(kwargs, match):
    x, y = digits(20)
    with pytest.raises(ValueError, match=match):
        nnpk.NetworkLearner(**{"arch": bias_arch(8), "epochs": 1, **kwargs}).fit(x, y % 3)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(loss="hinge"), ValueError, "loss must be one of"),
    (dict(train="gamma"), ValueError, "train must be one of"),
    (dict(fraction=1.5), ValueError, r"fraction must be a number in \(0, 1\]"),
    (dict(fraction=0), ValueError, r"fraction must be a number in \(0, 1\]"),
    (dict(momentum=1.0), ValueError, r"momentum must be a number in \[0, 1\)"),
    (dict(weight_decay=-1.0), ValueError, "weight_decay must be a finite number >= 0"),
    (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    (dict(max_rows=0), ValueError, "max_rows must be >= 1"),
    (dict(n_outputs=11), ValueError, "n_outputs must be <= 10"),
    (dict(arch=nnpk.Network([nnpk.Dense(8), nnpk.BatchNorm(), nnpk.Dense(10)])), ValueError, "BatchNorm"),
])
def test_bad_ntk_learning_rate_arguments_are_named(kwargs, error, match):
    x, _ = digits(20)
    with pytest.raises(error, match=match):
        ntk_learning_rate(**{"arch": bias_arch(8), "X": x, **kwargs})
