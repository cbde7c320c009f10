"""nnpk.sklearn: scikit-learn's estimator checks, wiring against nnpk.learn, Pipeline and GridSearchCV on digits."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import nnpk
from nnpk.learn import RELATIVE_RIDGES, RidgePath
from nnpk.sklearn import NNPKClassifier, NNPKRegressor

SMALL = dict(hidden=(32,), out=8, n_networks=16)


@parametrize_with_checks([NNPKRegressor(**SMALL), NNPKClassifier(**SMALL)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_nnpk_sklearn_is_reachable_as_an_attribute():
    assert nnpk.sklearn.NNPKRegressor is NNPKRegressor


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 5))
    y = np.stack([np.sin(x[:, 0]) + x[:, 1], x[:, 2] * x[:, 3]], axis=1)
    return x[:30], x[30:], y[:30], y[30:]


def kernels(x_train, x_test, **params):
    arch = nnpk.MLP(hidden=params["hidden"], out=params["out"])
    k_train = nnpk.monte_carlo(x_train, arch=arch, n_networks=params["n_networks"], seed=3)
    k_test_train = nnpk.monte_carlo(x_test, x_train, arch=arch, n_networks=params["n_networks"], seed=3)
    return k_train, k_test_train


@pytest.mark.parametrize("columns", [slice(0, 1), slice(None)])
def test_regressor_is_kernel_ridge_on_the_monte_carlo_kernels(data, columns):
    x_train, x_test, y_train, _ = data
    targets = y_train[:, columns].squeeze()
    model = NNPKRegressor(**SMALL, seed=3, ridge=0.01).fit(x_train, targets)
    k_train, k_test_train = kernels(x_train, x_test, **SMALL)
    expected = nnpk.kernel_ridge(k_train, targets, k_test_train, 0.01)
    assert expected.shape == (len(x_test),) + targets.shape[1:]
    np.testing.assert_allclose(model.predict(x_test), expected, rtol=1e-9, atol=1e-12)
    assert model.ridge_ == 0.01


@pytest.mark.parametrize("ridge", ["gcv", "loo", [1e-3, 1e-1, 10.0]])
def test_regressor_chooses_the_ridge_like_ridge_path(data, ridge):
    x_train, _, y_train, _ = data
    model = NNPKRegressor(**SMALL, seed=3, ridge=ridge).fit(x_train, y_train)
    k_train, _ = kernels(x_train, x_train, **SMALL)
    path = RidgePath(k_train, y_train)
    if isinstance(ridge, str):
        candidates, criterion = np.trace(k_train) / len(k_train) * RELATIVE_RIDGES, ridge
    else:
        candidates, criterion = np.asarray(ridge), "loo"
    best, errors = path.select_ridge(candidates, criterion)
    assert model.ridge_ == best
    np.testing.assert_allclose(model.ridge_candidates_, candidates)
    np.testing.assert_allclose(model.ridge_errors_, errors)
    np.testing.assert_allclose(model.dual_coef_, path.coefficients(best), rtol=1e-10, atol=1e-12)


def test_classifier_targets_and_decision_function(data):
    x_train, x_test, y_train, _ = data
    labels = np.array(["low", "mid", "high"])[np.digitize(y_train[:, 0], [-0.5, 0.5])]
    one_hot = NNPKClassifier(**SMALL, seed=3, ridge=0.1).fit(x_train, labels)
    centered = NNPKClassifier(**SMALL, seed=3, ridge=0.1, targets="centered").fit(x_train, labels)
    assert list(one_hot.classes_) == ["high", "low", "mid"]
    np.testing.assert_array_equal(one_hot.predict(x_test), centered.predict(x_test))
    scores = one_hot.decision_function(x_test)
    shift = scores - centered.decision_function(x_test)  # the same for every class: K* (K + ridge I)^-1 1 / 3
    np.testing.assert_allclose(shift, np.repeat(shift[:, :1], 3, axis=1), rtol=1e-9)
    k_train, k_test_train = kernels(x_train, x_test, **SMALL)
    indicators = (labels[:, None] == one_hot.classes_).astype(float)
    np.testing.assert_allclose(scores, nnpk.kernel_ridge(k_train, indicators, k_test_train, 0.1), rtol=1e-9)
    np.testing.assert_array_equal(one_hot.predict(x_test), one_hot.classes_[np.argmax(scores, axis=1)])


def test_kernel_and_method_reach_the_kernel_functions(data, monkeypatch):
    """kernel="ntk" and method="analytic" reach nnpk's monte_carlo / analytic with the right arguments."""
    x_train, x_test, y_train, _ = data
    calls = []

    def linear_kernel(x1, x2=None, **kwargs):
        calls.append(kwargs)
        return x1 @ (x1 if x2 is None else x2).T / x1.shape[1]

    monkeypatch.setattr(nnpk.sklearn, "analytic", linear_kernel)
    model = NNPKRegressor(**SMALL, kernel="ntk", method="analytic", ridge=0.5, n_threads=1).fit(x_train, y_train)
    prediction = model.predict(x_test)
    assert [set(c) for c in calls] == [{"arch", "get", "n_threads"}] * 2
    assert calls[0]["get"] == "ntk" and calls[0]["n_threads"] == 1
    assert calls[0]["arch"] == nnpk.MLP(hidden=SMALL["hidden"], out=SMALL["out"])
    expected = nnpk.kernel_ridge(x_train @ x_train.T / 5, y_train, x_test @ x_train.T / 5, 0.5)
    np.testing.assert_allclose(prediction, expected, rtol=1e-10)

    calls.clear()
    monkeypatch.setattr(nnpk.sklearn, "monte_carlo", linear_kernel)
    NNPKClassifier(**SMALL, kernel="ntk", dtype="float32", seed=7).fit(x_train, y_train[:, 0] > 0)
    assert calls == [dict(arch=calls[0]["arch"], n_networks=16, seed=7, get="ntk", dtype="float32", n_threads=None)]


def test_digits_pipeline_and_grid_search():
    x, y = load_digits(return_X_y=True)
    subset = np.random.default_rng(0).choice(len(x), 300, replace=False)
    x_train, x_test, y_train, y_test = train_test_split(x[subset], y[subset], test_size=100, random_state=0,
                                                        stratify=y[subset])
    pipeline = make_pipeline(StandardScaler(), NNPKClassifier(hidden=(256,), out=16, n_networks=32))
    search = GridSearchCV(pipeline, {"nnpkclassifier__ridge": [0.01, 1.0, "gcv"], "nnpkclassifier__b_std": [None, 0.5]},
                          cv=3)
    search.fit(x_train, y_train)
    accuracy = search.score(x_test, y_test)
    assert accuracy > 0.9, (accuracy, search.best_params_)


@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(kernel="rbf"), ValueError, "kernel must be 'nngp' or 'ntk'"),
        (dict(method="exact"), ValueError, "method must be 'monte_carlo' or 'analytic'"),
        (dict(ridge="aic"), ValueError, "ridge must be a number >= 0, 'gcv', 'loo' or an array"),
        (dict(ridge=-1.0), ValueError, "ridge must be finite and >= 0"),
        (dict(ridge=None), TypeError, "ridge must be a real number"),
        (dict(ridge=[0.1, -2.0]), ValueError, "ridge must be finite and >= 0"),
        (dict(hidden=8), TypeError, "hidden must be a sequence"),
        (dict(activation="swish"), ValueError, "activation must be one of"),
        (dict(n_networks=0), ValueError, "n_networks must be >= 1"),
        (dict(dtype="float16"), ValueError, "dtype must be 'float32' or 'float64'"),
    ],
)
@pytest.mark.parametrize("estimator", [NNPKRegressor, NNPKClassifier])
def test_parameter_errors(data, estimator, params, error, match):
    x_train, _, y_train, _ = data
    with pytest.raises(error, match=match):
        estimator(**{**SMALL, **params}).fit(x_train, y_train[:, 0] > 0)


def test_classifier_targets_error(data):
    with pytest.raises(ValueError, match="targets must be 'one_hot' or 'centered'"):
        NNPKClassifier(targets="pm1").fit(data[0], data[2][:, 0] > 0)


