"""scikit-learn estimators: kernel ridge regression and classification with random-network kernels.

>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> from nnpk.sklearn import NNPKClassifier
>>> model = make_pipeline(StandardScaler(), NNPKClassifier(hidden=(512,), n_networks=64))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import cast

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._kernel_checks import as_ridges, check_ridge
from .architectures import MLP, Network
from .kernels import analytic, monte_carlo
from .learn import CRITERIA, RELATIVE_RIDGES, RidgePath, ridge_coefficients

__all__ = ["NNPKClassifier", "NNPKRegressor"]

KERNELS = ("nngp", "ntk")
METHODS = ("monte_carlo", "analytic")


class _NNPKBase(BaseEstimator):
    """Shared parameters, kernel evaluation and ridge solution of the two estimators."""

    def __init__(self, *, kernel="nngp", method="monte_carlo", hidden=(512,), out=16, activation="relu",
                 W_std=1.0, b_std=None, parameterization="ntk", normalize=False, n_networks=256, seed=0,
                 dtype="float64", ridge="gcv", n_threads=None, arch=None, input_shape=None):
        self.arch = arch
        self.input_shape = input_shape
        self.kernel = kernel
        self.method = method
        self.hidden = hidden
        self.out = out
        self.activation = activation
        self.W_std = W_std
        self.b_std = b_std
        self.parameterization = parameterization
        self.normalize = normalize
        self.n_networks = n_networks
        self.seed = seed
        self.dtype = dtype
        self.ridge = ridge
        self.n_threads = n_threads

    def _arch(self) -> Network:
        if self.arch is not None:
            if not isinstance(self.arch, Network):
                raise TypeError(f"arch must be an nnpk.Network (or nnpk.MLP) or None, got {type(self.arch).__name__}")
            return self.arch
        return MLP(hidden=self.hidden, out=self.out, activation=self.activation, W_std=self.W_std, b_std=self.b_std,
                   parameterization=self.parameterization, normalize=self.normalize)

    def _point_shape(self, n_features: int) -> tuple:
        """The shape each row of X is given before it enters the network (input_shape, else flat), checked."""
        if self.input_shape is None:
            return (n_features,)
        shape = tuple(int(s) for s in np.atleast_1d(self.input_shape))
        if int(np.prod(shape)) != n_features:
            raise ValueError(f"input_shape {shape} holds {int(np.prod(shape))} values; X has {n_features} features")
        return shape

    def _kernel(self, x1, x2=None) -> np.ndarray:
        """Kernel of x1 against x2 (x1 with itself if None) under this estimator's parameters."""
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be 'nngp' or 'ntk', got {self.kernel!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be 'monte_carlo' or 'analytic', got {self.method!r}")
        shape = self._point_shape(x1.shape[1])
        x1 = x1.reshape((x1.shape[0],) + shape)
        x2 = None if x2 is None else x2.reshape((x2.shape[0],) + shape)
        if self.method == "analytic":
            # One kernel name and layers="output": one array.
            return cast(np.ndarray, analytic(x1, x2, arch=self._arch_, get=self.kernel, n_threads=self.n_threads))
        return monte_carlo(x1, x2, arch=self._arch_, n_networks=self.n_networks, seed=self.seed, get=self.kernel,
                           dtype=self.dtype, n_threads=self.n_threads)

    def _ridge_choice(self):
        """(fixed ridge, None, None) or (None, criterion, candidates) from the ridge parameter, validated.

        Candidates None mean the default grid, known only once the kernel is."""
        ridge = self.ridge
        if isinstance(ridge, str):
            if ridge not in CRITERIA:
                raise ValueError(f"ridge must be a number >= 0, 'gcv', 'loo' or an array of candidates, got {ridge!r}")
            return None, ridge, None
        if np.ndim(ridge) == 0:
            return check_ridge(ridge), None, None
        return None, "loo", as_ridges(ridge, "ridge")

    def _fit_kernel_ridge(self, X, targets: np.ndarray) -> None:
        """Compute the training kernel, choose the ridge and store the solution."""
        fixed_ridge, criterion, candidates = self._ridge_choice()
        self._arch_ = self._arch()
        k_train = self._kernel(X)
        if fixed_ridge is not None:
            self.ridge_ = fixed_ridge
            self.dual_coef_ = ridge_coefficients(k_train, targets, fixed_ridge)
            return
        if candidates is None:
            # An all-zero kernel (e.g. zero inputs without biases) has no scale; any ridge then predicts 0.
            scale = float(np.trace(k_train)) / k_train.shape[0] or 1.0
            candidates = scale * RELATIVE_RIDGES
        path = RidgePath(k_train, targets)
        self.ridge_, self.ridge_errors_ = path.select_ridge(candidates, criterion)
        self.ridge_candidates_ = candidates
        self.dual_coef_ = path.coefficients(self.ridge_)

    def _decision_scores(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._kernel(X, self.X_train_) @ self.dual_coef_


_PARAMETERS_DOC = """
    Parameters
    ----------
    kernel : "nngp" or "ntk"
        The prior (NNGP) kernel of the logits or the neural tangent kernel.
    method : "monte_carlo" or "analytic"
        Finite-width Monte Carlo estimate (``nnpk.monte_carlo``) or the
        infinite-width kernel (``nnpk.analytic``), looked up when fitting.
    hidden, out, activation, W_std, b_std, parameterization, normalize
        The architecture, as in ``nnpk.MLP`` (unused when `arch` is given; an
        activation with a required parameter, such as ``monomial``'s degree, is
        given through ``arch=nnpk.MLP(..., degree=...)``). For
        the Monte Carlo NNGP the kernel is averaged over the `out` logits of
        every network, so more logits are more samples of the prior at almost no
        cost.
    arch : nnpk.Network, optional
        Any network (a CNN, a residual network, an ``nnpk.MLP``) instead of the
        MLP arguments above.
    input_shape : tuple of int, optional
        The shape of one point, such as ``(8, 8, 1)`` for a 2-D convolutional
        `arch`: each row of X (flat, as scikit-learn passes it through a
        Pipeline) is reshaped to it. None: rows are flat points.
    n_networks : int
        Networks in the Monte Carlo estimate (unused by "analytic"). The
        estimate has rank at most ``n_networks * out``.
    seed : int
        Seed of the Monte Carlo networks; train and test kernels use the same.
    dtype : "float32" or "float64"
        Forward-pass precision of the Monte Carlo engine.
    ridge : float, "gcv", "loo" or array of floats
        Added to the training kernel's diagonal. A number is used as it is;
        "gcv" or "loo" choose by generalised cross-validation or exact
        leave-one-out error among ``mean(diag K) * logspace(-6, 1, 15)``; an array
        of candidates is chosen among by leave-one-out error. All come from one
        eigendecomposition of the training kernel (a number: one Cholesky).
    n_threads : int, optional
        Threads for the kernel (None: all physical cores).
"""

_ATTRIBUTES_DOC = """
    ridge_ : float
        The ridge used.
    ridge_candidates_, ridge_errors_ : (n_candidates,) arrays
        The candidates and their leave-one-out or GCV errors (only when the
        ridge was chosen).
    dual_coef_ : array
        ``(K_train + ridge_ I)^-1`` times the training targets.
    X_train_ : (n_samples, n_features) array
        The training inputs, against which predictions compute the cross-kernel.
    n_features_in_ : int
"""


class NNPKRegressor(RegressorMixin, _NNPKBase):
    __doc__ = (
        "Kernel ridge regression with a random network's kernel; multi-output targets are supported.\n"
        + _PARAMETERS_DOC
        + "\n    Attributes\n    ----------"
        + _ATTRIBUTES_DOC
    )

    def fit(self, X, y):
        """Fit on (n_samples, n_features) inputs and (n_samples,) or (n_samples, n_outputs) targets."""
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        self._fit_kernel_ridge(X, y)
        self.X_train_ = X
        return self

    def predict(self, X):
        """Predictions, shaped (n_samples,) or (n_samples, n_outputs) like the training targets."""
        return self._decision_scores(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class NNPKClassifier(ClassifierMixin, _NNPKBase):
    __doc__ = (
        "Kernel ridge classification with a random network's kernel: regression on class indicators, then argmax.\n"
        + _PARAMETERS_DOC
        + """    targets : "one_hot" or "centered"
        Regression targets per class: one-hot (1 for the class, 0 otherwise)
        or centred (one-hot minus 1 / n_classes, as in Lee et al. 2018). The
        predicted classes are the same (the shift is shared by all classes);
        the decision function and a chosen ridge can differ.
"""
        + "\n    Attributes\n    ----------"
        + _ATTRIBUTES_DOC
        + """    classes_ : (n_classes,) array
        The class labels, sorted.
"""
    )

    def __init__(self, *, kernel="nngp", method="monte_carlo", hidden=(512,), out=16, activation="relu",
                 W_std=1.0, b_std=None, parameterization="ntk", normalize=False, n_networks=256, seed=0,
                 dtype="float64", ridge="gcv", n_threads=None, arch=None, input_shape=None, targets="one_hot"):
        super().__init__(kernel=kernel, method=method, hidden=hidden, out=out, activation=activation, W_std=W_std,
                         b_std=b_std, parameterization=parameterization, normalize=normalize,
                         n_networks=n_networks, seed=seed, dtype=dtype, ridge=ridge, n_threads=n_threads, arch=arch,
                         input_shape=input_shape)
        self.targets = targets

    def fit(self, X, y):
        """Fit on (n_samples, n_features) inputs and (n_samples,) class labels."""
        if self.targets not in ("one_hot", "centered"):
            raise ValueError(f"targets must be 'one_hot' or 'centered', got {self.targets!r}")
        X, y = validate_data(self, X, y, dtype=np.float64)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        self.classes_, class_index = np.unique(y, return_inverse=True)
        indicators = np.zeros((len(y), len(self.classes_)))
        indicators[np.arange(len(y)), class_index] = 1.0
        if self.targets == "centered":
            indicators -= 1.0 / len(self.classes_)
        self._fit_kernel_ridge(X, indicators)
        self.X_train_ = X
        return self

    def decision_function(self, X):
        """Per-class scores (n_samples, n_classes); for two classes, score of classes_[1] minus classes_[0]."""
        scores = self._decision_scores(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict(self, X):
        """The class with the largest score."""
        scores = self._decision_scores(X)
        return self.classes_[np.argmax(scores, axis=1)]
