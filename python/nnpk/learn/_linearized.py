"""The linearised network: its predictions along and after training, from its tangent kernel and initial outputs."""

from __future__ import annotations

import math
import numbers
from typing import Optional, Tuple

import numpy as np
import scipy.linalg

from .._kernel_checks import as_kernel, as_targets, check_ridge
from .._validate import check_int
from ..architectures import SEED_MAX, check_arch
from ..architectures._params import network_outputs
from ._kernel_regression import _shaped, _solve, _test_kernel, _train_kernel

__all__ = ["LINEARIZED_LOSSES", "initial_outputs", "linearized_prediction"]

LINEARIZED_LOSSES = ("squared", "cross_entropy")
# Eigenvalues of theta_train + ridge I down to -this x the largest count as rounding of a
# positive semi-definite kernel (and as 0); below it, gradient flow would diverge.
_NEGATIVE_EIGENVALUE_RTOL = 1e-8
# Rows of a cross-entropy target must sum to 1 within this.
_PROBABILITY_ATOL = 1e-6


def linearized_prediction(theta_train, theta_test_train, f0_train, f0_test, y, ridge: float = 0.0, *,
                          time=None, lr: float = 1.0, loss: str = "squared", return_train: bool = False):
    """Predictions of the linearised network trained by gradient descent, at the end of training or along it.

    The linearised network ``f(x) = f0(x) + J(x) w`` (``J`` the Jacobian of the logits at
    initialisation, ``w`` the parameters' change) trained on n points with the loss
    ``L = (1/n) sum_i loss(f(x_i), y_i) + (ridge / 2n) ||w||^2`` moves in function space
    by its tangent kernel ``Theta = J J^T`` alone.

    Squared loss (``(1/2) ||f(x_i) - y_i||^2``), gradient flow at learning rate ``lr``
    for time ``t``, with ``Theta_r = Theta(X, X) + ridge I``::

        f_t(x) = f0(x) + Theta(x, X) Theta_r^-1 (I - exp(-lr t Theta_r / n)) (y - f0(X))

    computed from one eigendecomposition of ``Theta_r`` for every time; a zero eigenvalue
    contributes its limit ``lr t / n`` (the kernel may be singular). ``time=None`` is the end
    of training, ``f0(x) + Theta(x, X) Theta_r^-1 (y - f0(X))`` (one Cholesky
    factorisation; Theta_r must be positive definite). ``time`` counts steps of size ``lr``:
    t steps of gradient descent approach the flow at time t as lr t stays fixed and lr -> 0.

    Softmax cross-entropy (``loss="cross_entropy"``, ``-sum_c y_ic log softmax(f(x_i))_c``):
    gradient descent in function space, ``time`` whole steps of size ``lr``::

        f_{k+1}(x) = f0(x) + (1 - lr ridge / n) (f_k(x) - f0(x)) - (lr / n) Theta(x, X) (softmax(f_k(X)) - y)

    which is exactly gradient descent on ``w`` (training points and test points alike).

    Theta is either the NTK with logits traced, the same for every output (exact at
    infinite width, where the NTK is ``Theta ⊗ I_C``; for an empirical NTK it ignores the
    coupling between logits), or the kernel of every pair of logits (``per_logit=True`` in
    :func:`nnpk.empirical` and :func:`nnpk.monte_carlo`), which keeps that coupling.

    Parameters
    ----------
    theta_train : (n, n) or (n, n, C, C) array
        NTK of the training points, traced or per pair of logits.
    theta_test_train : (n_test, n) or (n_test, n, C, C) array
        NTK of the test points against the training points, in the same form.
    f0_train : (n,) or (n, C) array
        The network's initial outputs on the training points (:func:`nnpk.initial_outputs`).
    f0_test : (n_test,) or (n_test, C) array
        Its initial outputs on the test points.
    y : (n,) or (n, C) array
        Training targets; 1-D arrays count as one output. For cross-entropy, one-hot rows
        or class probabilities (n, C), C >= 2.
    ridge : float
        >= 0: the weight decay of the linearised network's parameters (see L above); at
        the end of training with the squared loss, a ridge on Theta (and a jitter where
        Theta is ill-conditioned).
    time : float or 1-D array, optional
        Training time(s) >= 0, in steps of size ``lr`` (whole numbers for cross-entropy);
        None (squared loss only): the end of training.
    lr : float
        Learning rate > 0.
    loss : "squared" or "cross_entropy"
    return_train : bool
        Also return the predictions on the training points.

    Returns
    -------
    numpy.ndarray, or (test, train) with return_train
        (n_test,) if y is 1-D, else (n_test, C), for ``time=None`` or one time; for an
        array of times, (n_times, n_test[, C]), row i at ``time[i]``. The training
        predictions have n rows in place of n_test.

    Raises
    ------
    numpy.linalg.LinAlgError
        If ``time=None`` and ``Theta(X, X) + ridge I`` is not positive definite, or if it
        has a clearly negative eigenvalue (the squared-loss flow would diverge).
    """
    loss = _check_loss(loss)
    lr = _check_lr(lr)
    times, one_time = _check_times(time, loss)
    ridge = check_ridge(ridge)
    if np.ndim(theta_train) == 4:
        theta, theta_test, targets, was_1d = _per_logit_kernels(theta_train, theta_test_train, y)
        n_test = np.shape(theta_test_train)[0]
    else:
        theta, targets, was_1d = _train_kernel(theta_train, y, "theta_train")
        theta_test = _test_kernel(theta_test_train, "theta_test_train", theta.shape[0], "theta_train")
        n_test = theta_test.shape[0]
    n, n_outputs = targets.shape
    f0_tr, _ = as_targets(f0_train, "f0_train", n, f"theta_train has {n} training points")
    f0_te, _ = as_targets(f0_test, "f0_test", n_test, f"theta_test_train has {n_test} test points")
    for name, outputs in (("f0_train", f0_tr), ("f0_test", f0_te)):
        if outputs.shape[1] != n_outputs:
            raise ValueError(f"{name} has {outputs.shape[1]} outputs, y has {n_outputs}")
    if loss == "cross_entropy":
        assert times is not None  # _check_times asks for times with this loss
        _check_probabilities(targets, was_1d)
        test, train = _cross_entropy_descent(theta, theta_test, f0_tr, f0_te, targets, ridge, lr, times)
    elif times is None:
        correction = _solve(theta, (targets - f0_tr).reshape(theta.shape[0], -1), ridge, "theta_train")
        test = f0_te + (theta_test @ correction).reshape(f0_te.shape)
        train = f0_tr + (theta @ correction).reshape(f0_tr.shape) if return_train else None
    else:
        test, train = _squared_flow(theta, theta_test, f0_tr, f0_te, targets, ridge, lr * times / n)
    if one_time and times is not None:
        test, train = test[0], train[0]
    test = _shaped(test, was_1d)
    return (test, _shaped(train, was_1d)) if return_train else test


def _check_loss(loss) -> str:
    if loss not in LINEARIZED_LOSSES:
        raise ValueError(f"loss must be 'squared' or 'cross_entropy', got {loss!r}")
    return loss


def _check_lr(lr) -> float:
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"lr must be a real number, got {type(lr).__name__}")
    value = float(lr)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"lr must be finite and > 0, got {value}")
    return value


def _check_times(time, loss: str) -> Tuple[Optional[np.ndarray], bool]:
    """(times as a 1-D float64 array, or None; whether one time was given as a scalar)."""
    if time is None:
        if loss == "cross_entropy":
            raise ValueError("loss='cross_entropy' needs time (the number of gradient steps): its training has no "
                             "end in closed form")
        return None, False
    arr = np.asarray(time)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"time must be a number or a 1-D array of numbers, got {type(time).__name__}")
    if arr.ndim > 1 or arr.size == 0:
        raise ValueError(f"time must be a number or a non-empty 1-D array, got shape {arr.shape}")
    times = arr.astype(np.float64).reshape(-1)
    bad = ~np.isfinite(times) | (times < 0)
    if bad.any():
        raise ValueError(f"time must be finite and >= 0, got {times[np.argmax(bad)]}")
    if loss == "cross_entropy" and np.any(times != np.round(times)):
        raise ValueError(f"time counts gradient steps for loss='cross_entropy' and must be whole, got "
                         f"{times[np.argmax(times != np.round(times))]}")
    return times, arr.ndim == 0


def _per_logit_kernels(theta_train, theta_test_train, y):
    """The (n, n, C, C) and (n_test, n, C, C) kernels as (nC, nC) and (n_test C, nC) matrices of (point, logit)
    pairs, and the targets (n, C)."""
    shape = np.shape(theta_train)
    if shape[0] != shape[1] or shape[2] != shape[3]:
        raise ValueError(f"theta_train per pair of logits must have shape (n, n, C, C), got {shape}")
    n, c = shape[0], shape[2]
    test_shape = np.shape(theta_test_train)
    if len(test_shape) != 4 or test_shape[1:] != (n, c, c):
        raise ValueError(f"theta_test_train must have shape (n_test, {n}, {c}, {c}) like theta_train {shape}, got "
                         f"{test_shape}")
    targets, was_1d = as_targets(y, "y", n, f"theta_train has {n} training points")
    if targets.shape[1] != c:
        raise ValueError(f"y has {targets.shape[1]} outputs, theta_train has {c} logits")
    pairs = lambda k, rows: np.asarray(k).transpose(0, 2, 1, 3).reshape(rows * c, n * c)
    theta = as_kernel(pairs(theta_train, n), "theta_train", symmetric=True)
    theta_test = as_kernel(pairs(theta_test_train, test_shape[0]), "theta_test_train")
    return theta, theta_test, targets, was_1d


def _check_probabilities(targets: np.ndarray, was_1d: bool) -> None:
    if was_1d or targets.shape[1] < 2:
        raise ValueError(f"y must be one-hot rows or class probabilities of shape (n, C), C >= 2, for "
                         f"loss='cross_entropy', got {targets.shape[1]} output")
    row_sums = targets.sum(axis=1)
    if targets.min() < 0 or np.abs(row_sums - 1).max() > _PROBABILITY_ATOL:
        raise ValueError("y must be one-hot rows or class probabilities for loss='cross_entropy': entries >= 0, "
                         f"each row summing to 1 (row {int(np.argmax(np.abs(row_sums - 1)))} sums to "
                         f"{row_sums[np.argmax(np.abs(row_sums - 1))]:g})")


def _flow_factor(scale: float, eigenvalues: np.ndarray) -> np.ndarray:
    """(1 - exp(-scale s)) / s for eigenvalues s >= 0, with its limit `scale` at s = 0."""
    safe = np.where(eigenvalues > 0, eigenvalues, 1.0)
    return np.where(eigenvalues > 0, -np.expm1(-scale * eigenvalues) / safe, scale)


def _squared_flow(theta, theta_test, f0_tr, f0_te, targets, ridge: float, scales: np.ndarray):
    """Test and training predictions (n_times, rows, C) of the squared-loss flow at each lr t / n in `scales`."""
    eigenvalues, vectors = scipy.linalg.eigh(theta, check_finite=False)
    shifted = eigenvalues + ridge
    if shifted[0] < -_NEGATIVE_EIGENVALUE_RTOL * max(abs(shifted[-1]), abs(shifted[0])):
        raise np.linalg.LinAlgError(
            f"theta_train + {ridge:g} * I has the negative eigenvalue {shifted[0]:.3g} (largest {shifted[-1]:.3g}): "
            "gradient flow on it diverges; pass a positive semi-definite kernel")
    shifted = np.maximum(shifted, 0.0)
    projected = vectors.T @ (targets - f0_tr).reshape(theta.shape[0], -1)  # Q^T (y - f0(X))
    test_basis = theta_test @ vectors
    test, train = [], []
    for scale in scales:
        factor = _flow_factor(scale, shifted)[:, None] * projected
        test.append(f0_te + (test_basis @ factor).reshape(f0_te.shape))
        train.append(f0_tr + (vectors @ (eigenvalues[:, None] * factor)).reshape(f0_tr.shape))
    return np.stack(test), np.stack(train)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _cross_entropy_descent(theta, theta_test, f0_tr, f0_te, targets, ridge: float, lr: float, times: np.ndarray):
    """Test and training predictions (n_times, rows, C) after each number of steps in `times`."""
    n = targets.shape[0]
    decay, rate = 1.0 - lr * ridge / n, lr / n
    # f_k(x) = f0(x) - rate Theta(x, X) G_k, with G_{k+1} = decay G_k + (softmax(f_k(X)) - y).
    direction = np.zeros((theta.shape[0], targets.size // theta.shape[0]))  # (n, C), or (nC, 1) per logit
    train = f0_tr.copy()
    recorded_test, recorded_train = {}, {}
    wanted = set(int(t) for t in times)
    for step in range(int(times.max()) + 1):
        if step in wanted:
            recorded_test[step] = f0_te - rate * (theta_test @ direction).reshape(f0_te.shape)
            recorded_train[step] = train
        if step == times.max():
            break
        direction = decay * direction + (_softmax(train) - targets).reshape(direction.shape)
        train = f0_tr - rate * (theta @ direction).reshape(f0_tr.shape)
    return np.stack([recorded_test[int(t)] for t in times]), np.stack([recorded_train[int(t)] for t in times])


def initial_outputs(x, arch, *, seed: int = 0, index: int = 0, params=None, buffers=None) -> np.ndarray:
    """Outputs f0(x) of random network `index` at initialisation, or of the network with `params`, by the
    engine's float64 forward pass.

    The network is the one ``nnpk.sample_params(arch, input_shape, seed, index)`` draws,
    which is network `index` of ``nnpk.monte_carlo(..., seed=seed)``.

    Parameters
    ----------
    x : (n, d) array, or (n, ...) points of the shape the network takes
    arch : nnpk.Network (an nnpk.MLP is one)
    seed, index : int
    params : list of pairs, optional
        Parameters in the layout of ``nnpk.sample_params`` (a trained network's, or
        converted by :func:`nnpk.params_from_state_dict`) in place of network `index`'s.
    buffers : list of (running_mean, running_var), optional
        With params, for a network with ``BatchNorm`` layers (and only then): each one's
        running statistics, which normalise in evaluation, as ``NetworkLearner.buffers_``
        and :func:`nnpk.params_from_state_dict` give them. A network with BatchNorm is
        refused without params.

    Returns
    -------
    (n, C) float64 array, C the number of logits.
    """
    seed = check_int(seed, "seed", minimum=0, maximum=SEED_MAX)
    index = check_int(index, "index", minimum=0, maximum=SEED_MAX)
    network = check_arch(arch, None if params is not None else "nnpk.initial_outputs")
    return network_outputs(x, network, seed, index, params, buffers)
