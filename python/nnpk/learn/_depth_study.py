"""Learnability and trainability of the depth-L kernels of a random network, against depth."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import numpy as np

from .._kernel_checks import check_ridge
from ..kernels._analytic import DEFAULT_QUADRATURE_ORDER
from ..kernels._conditioning import check_get, depth_kernels, spectrum_statistics, unit_diagonal
from ._kernel_regression import kernel_ridge
from ._linearized import _check_lr, _check_times, linearized_prediction

__all__ = ["depth_study"]


def _labels(y, name: str, n: int, x_name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class labels, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} labels, {x_name} has {n} points")
    return arr


def _points(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise ValueError(f"{name} must hold one point per row (at least 2-D), got shape {arr.shape}")
    return arr


def _half_squared_error(predictions: np.ndarray, targets: np.ndarray) -> float:
    """(1/2n) sum_i ||f(x_i) - y_i||^2: the squared loss of nnpk.linearized_prediction."""
    return float(0.5 * np.mean(np.sum((predictions - targets) ** 2, axis=1)))


def depth_study(x_train, y_train, x_test, y_test, *, arch, depths: Sequence[int],
                get: Union[str, Sequence[str]] = ("nngp", "ntk"), method: str = "analytic", ridge: float = 1e-3,
                time: Optional[float] = None, lr: float = 1.0, n_networks: Optional[int] = None, seed: int = 0,
                dtype="float64", n_threads=None, quadrature_order: int = DEFAULT_QUADRATURE_ORDER,
                ) -> Dict[str, Union[np.ndarray, Dict[str, np.ndarray]]]:
    """Conditioning, learnability and trainability of the depth-L kernels of ``arch``, for several depths.

    For each depth L (docs: "Kernels at depth L", as in :func:`nnpk.conditioning`) and each
    kernel (``"nngp"``: training the readout alone; ``"ntk"``: training every layer), the
    kernel of the training and test points together is scaled to a unit diagonal,
    ``C = D^-1/2 K D^-1/2``, the matrix ``nnpk.conditioning`` reports on, and then:

    - **conditioning**: the smallest eigenvalue, condition number and mean absolute
      off-diagonal entry of the training block ``C(X, X)``;
    - **learnability**: kernel ridge regression
      ``nnpk.kernel_ridge(C(X, X), Y, C(X*, X), ridge)`` of the targets
      ``Y = onehot(y) - 1/k`` (k classes), its test accuracy (argmax) and test loss;
    - **trainability**: the linearised network trained by gradient flow on the squared loss
      for ``time`` (``nnpk.linearized_prediction(C(X, X), C(X*, X), 0, 0, Y, time=time,
      lr=lr, return_train=True)``, from zero initial outputs: the mean over initialisations),
      its training loss and test accuracy at that time; and its training loss when the
      learning rate is also divided by the largest eigenvalue ``lambda_max`` of
      ``C(X, X)``, as gradient descent must (its steps diverge above ``2 n / lambda_max``):
      then the slowest direction decays as ``exp(-lr time / (n kappa))``, ``kappa`` the
      condition number.

    Losses are ``(1/2n) sum_i ||f(x_i) - Y_i||^2``; predicting 0 scores ``(k - 1) / (2k)``
    (0.45 for 10 classes). Because C has a unit diagonal (mean eigenvalue 1), ``ridge`` is
    relative to the kernel's scale and ``time`` is comparable across depths and kernels: an
    eigenvalue ``lambda`` of C decays as ``exp(-lambda lr time / n)`` in the training residual.

    Parameters
    ----------
    x_train : (n, ...) array
        Training points, of the shape ``arch`` takes.
    y_train : (n,) int array
        Their class labels; the classes are those present here (at least 2).
    x_test : (n_test, ...) array
    y_test : (n_test,) int array
        Labels among y_train's.
    arch : nnpk.MLP or nnpk.Network
        As in :func:`nnpk.conditioning`.
    depths : sequence of int
        Distinct depths >= 1.
    get : "nngp", "ntk" or a tuple of both
    method : "analytic" or "monte_carlo"
        As in :func:`nnpk.conditioning` (``n_networks``, ``seed``, ``dtype`` for "monte_carlo").
    ridge : float
        Ridge >= 0 of the kernel regression, relative to the unit diagonal.
    time : float, optional
        Gradient-flow time (in steps of size ``lr``, as in ``nnpk.linearized_prediction``);
        None: n, the training set's size (then ``exp(-lambda lr)`` per eigenvalue).
    lr : float
        Learning rate > 0.
    n_networks, seed, dtype, n_threads, quadrature_order
        As in :func:`nnpk.conditioning`.

    Returns
    -------
    dict
        ``"depth"`` (int array, in the order given) and, per kernel name, a dict of arrays
        over depths: ``"min_eigenvalue"``, ``"condition_number"``, ``"mean_abs_offdiag"``,
        ``"test_accuracy"``, ``"test_loss"`` (kernel ridge), ``"train_loss"`` and
        ``"trained_test_accuracy"`` (the linearised network at ``time``), and
        ``"train_loss_lr_max"`` (the same with the learning rate divided by ``lambda_max``).
    """
    names = check_get(get)
    a_train, a_test = _points(x_train, "x_train"), _points(x_test, "x_test")
    if a_train.shape[1:] != a_test.shape[1:]:
        raise ValueError(f"x_test has points of shape {a_test.shape[1:]}, x_train of shape {a_train.shape[1:]}")
    n = a_train.shape[0]
    if n < 2:
        raise ValueError(f"x_train needs at least 2 points, got {n}")
    if a_test.shape[0] < 1:
        raise ValueError("x_test has no points")
    labels_train = _labels(y_train, "y_train", n, "x_train")
    labels_test = _labels(y_test, "y_test", a_test.shape[0], "x_test")
    classes = np.unique(labels_train)
    if classes.size < 2:
        raise ValueError(f"y_train needs at least 2 classes, got {classes.size}")
    unknown = np.setdiff1d(labels_test, classes)
    if unknown.size:
        raise ValueError(f"y_test has label {unknown[0]}, which is not in y_train")
    ridge = check_ridge(ridge)
    lr = _check_lr(lr)
    if time is None:
        time = float(n)
    times, one_time = _check_times(time, "squared")
    if not one_time:
        raise ValueError(f"time must be one number, got {time!r}")

    k = classes.size
    targets = (labels_train[:, None] == classes[None, :]) - 1.0 / k
    test_targets = (labels_test[:, None] == classes[None, :]) - 1.0 / k
    test_classes = np.searchsorted(classes, labels_test)
    depths, by_depth = depth_kernels(np.concatenate([a_train, a_test]), arch=arch, depths=depths, get=names,
                                     method=method, n_networks=n_networks, seed=seed, dtype=dtype,
                                     n_threads=n_threads, quadrature_order=quadrature_order, min_points=2)
    zeros_train, zeros_test = np.zeros_like(targets), np.zeros_like(test_targets)
    result: Dict[str, Union[np.ndarray, Dict[str, np.ndarray]]] = {"depth": np.array(depths, dtype=np.int64)}
    for name in names:
        rows = []
        for depth in depths:
            C = unit_diagonal(by_depth[name][depth])
            train, test_train = C[:n, :n], C[n:, :n]
            predicted = kernel_ridge(train, targets, test_train, ridge)
            flow_test, flow_train = linearized_prediction(train, test_train, zeros_train, zeros_test, targets,
                                                          time=time, lr=lr, return_train=True)
            statistics = spectrum_statistics(train)
            largest = statistics[0] * statistics[1]  # min eigenvalue x condition number
            _, limited_train = linearized_prediction(train / largest, test_train, zeros_train, zeros_test, targets,
                                                     time=time, lr=lr, return_train=True)
            rows.append(statistics + (
                np.mean(np.argmax(predicted, axis=1) == test_classes),
                _half_squared_error(predicted, test_targets),
                _half_squared_error(flow_train, targets),
                np.mean(np.argmax(flow_test, axis=1) == test_classes),
                _half_squared_error(limited_train, targets),
            ))
        table = np.array(rows, dtype=np.float64)
        keys = ("min_eigenvalue", "condition_number", "mean_abs_offdiag", "test_accuracy", "test_loss",
                "train_loss", "trained_test_accuracy", "train_loss_lr_max")
        result[name] = {key: table[:, i] for i, key in enumerate(keys)}
    return result
