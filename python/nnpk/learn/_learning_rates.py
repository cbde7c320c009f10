"""Learning rates: the defaults per optimizer and trained parameters, and SGD's step from the tangent kernel.

Gradient descent on a loss whose curvature is at most lambda along every direction
is stable for ``lr < 2 / lambda``; with heavy-ball momentum beta (``buf = beta buf + g``,
``p -= lr buf``, as torch's SGD) the two-step recursion
``e_{k+1} = (1 + beta - lr lambda) e_k - beta e_{k-1}`` is stable for
``lr lambda < 2 (1 + beta)``. Near the starting network theta_0 the Hessian of the
minibatch loss ``L_B = (1/b) sum_{i in B} l(f(x_i; theta), y_i)`` is, to first order in
the network's own curvature (the Gauss-Newton part), ``(1/b) J_B^T H J_B`` with J_B the
Jacobian of the task's logits on the minibatch and H the Hessian of l in the logits:
the identity for the squared loss ``0.5 sum_c (f_c - y_c)^2``, ``diag(p) - p p^T`` for
softmax cross-entropy (p the softmax of the row's logits), ``sigma (1 - sigma)`` for the
logistic loss, all taken at the starting network's logits. Its largest eigenvalue is
``lambda_max(H_B^1/2 K_B H_B^1/2) / b + weight_decay`` with ``K_B = J_B J_B^T`` the (b C, b C)
tangent kernel of the minibatch's rows and the task's C logits (``nnpk.empirical(...,
per_logit=True)`` with respect to the trained parameters, untraced: ``empirical``'s
default divides the trace over logits by C) and H_B the block-diagonal (b C, b C) matrix of
the rows' H. ``lr="ntk"`` is ``fraction * 2 (1 + beta) / (lambda_max(H_B^1/2 K_B H_B^1/2) / b
+ weight_decay)``, the curvature the largest over disjoint minibatches of a fixed sample of
the training rows (small minibatches have larger curvature than the full batch: their
kernel's diagonal weighs more).

H at the start, not its bound over all logits (1 for the squared loss, 1/2 for
cross-entropy, 1/4 for the logistic loss): the softmax's curvature at a random network's
logits is a fifth to a half of 1/2 (and 0 along the shift of every logit alike), and SGD's
default (``lr=None``) is this rule: with the bound it took 2.5 to 23 times smaller steps, and
biases alone reached a train accuracy of 0.54 on digits after the default 10 epochs (0.75 now).
"""

from __future__ import annotations

import math
import numbers
from typing import Dict, Optional, Union

import numpy as np

from .._validate import check_int

__all__ = ["DEFAULT_LEARNING_RATES", "ntk_learning_rate"]

#: The learning rate of ``lr=None``: ``DEFAULT_LEARNING_RATES[optimizer][train]`` ("list": a list of layers).
#: Adam's step is about lr per parameter whatever the gradient's scale, so one value per kind of parameter
#: serves every width and parameterization; SGD's step scales with the gradient, so its default is "ntk".
DEFAULT_LEARNING_RATES: Dict[str, Dict[str, Union[float, str]]] = {
    "adam": {"all": 1e-3, "weights": 1e-3, "biases": 1e-1, "readout": 1e-2, "biases+readout": 1e-2,
             "list": 1e-3, "masks": 1e-1},
    "sgd": {"all": "ntk", "weights": "ntk", "biases": "ntk", "readout": "ntk", "biases+readout": "ntk",
            "list": "ntk", "masks": 100.0},
}
LOSSES = ("squared", "cross_entropy", "logistic")
SAFETY_FRACTION = 0.5
MAX_ROWS = 256
TRAINS = ("all", "weights", "biases", "readout", "biases+readout")


def check_lr(lr, optimizer: str) -> None:
    """ValueError unless lr is a finite number > 0, "ntk" (with SGD) or None."""
    if lr is None:
        return
    if isinstance(lr, str):
        if lr != "ntk":
            raise ValueError(f"lr must be a finite number > 0, 'ntk' or None (the default), got {lr!r}")
        if optimizer == "adam":
            raise ValueError("lr='ntk' is gradient descent's step from the tangent kernel's curvature; Adam divides "
                             "each step by the gradient's running RMS, so its step does not follow the curvature: use "
                             "optimizer='sgd' with lr='ntk', or a number (lr=None: Adam's default)")
        return
    number = float(lr) if not isinstance(lr, bool) and isinstance(lr, (numbers.Real, np.floating, np.integer)) \
        else math.nan
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"lr must be a finite number > 0, 'ntk' or None (the default), got {lr!r}")


def default_lr(optimizer: str, train) -> Union[float, str]:
    """lr=None's learning rate: a number, or "ntk"."""
    return DEFAULT_LEARNING_RATES[optimizer][train if isinstance(train, str) else "list"]


def _check_fraction(fraction) -> float:
    value = float(fraction) if isinstance(fraction, (numbers.Real, np.floating)) and not isinstance(
        fraction, bool) else math.nan
    if not 0 < value <= 1:
        raise ValueError(f"fraction must be a number in (0, 1] (of the stability bound), got {fraction!r}")
    return value


def sample_rows(n: int, max_rows: int) -> np.ndarray:
    """A fixed sample of min(n, max_rows) row indices (sorted), the same for every call."""
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, max_rows, replace=False))


def tangent_kernel(x: np.ndarray, arch, params, train, n_outputs: int, n_threads) -> np.ndarray:
    """The untraced tangent kernel of the first n_outputs logits w.r.t. the trained parameters, as an
    (m n_outputs, m n_outputs) matrix (row i, logit c at i * n_outputs + c)."""
    from ..kernels import empirical

    def kernel(wrt, per_layer=False):
        return empirical(x, arch=arch, params=params, get="ntk", wrt=wrt, per_layer=per_layer, per_logit=True,
                         n_threads=n_threads)

    if isinstance(train, str) and train == "biases+readout":
        K = kernel("biases") + kernel([-1], per_layer=True)["weights"][-1]
    else:
        K = kernel(train if isinstance(train, str) else list(train))
    m = x.shape[0]
    K = K[:, :, :n_outputs, :n_outputs]
    return np.ascontiguousarray(K.transpose(0, 2, 1, 3).reshape(m * n_outputs, m * n_outputs))


def logit_hessian_roots(logits: np.ndarray, loss: str) -> Optional[np.ndarray]:
    """The square roots (m, C, C) of the loss's Hessian in each row's C logits (None for the squared loss, whose
    Hessian is the identity): diag(p) - p p^T for cross-entropy, diag(sigma (1 - sigma)) for the logistic loss."""
    if loss == "squared":
        return None
    z = np.asarray(logits, dtype=np.float64)
    if loss == "logistic":
        s = 1.0 / (1.0 + np.exp(-z))
        return np.sqrt(s * (1.0 - s))[:, :, None] * np.eye(z.shape[1])
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    w, V = np.linalg.eigh(p[:, :, None] * np.eye(z.shape[1]) - p[:, :, None] * p[:, None, :])
    return np.einsum("mij,mj,mkj->mik", V, np.sqrt(np.maximum(w, 0.0)), V)


def batch_curvature(K: np.ndarray, n_outputs: int, batch_size: Optional[int],
                    roots: Optional[np.ndarray] = None) -> float:
    """The largest ``lambda_max(H_B^1/2 K_B H_B^1/2) / b`` over the disjoint minibatches B of b = batch_size rows
    of the kernel's rows (all of them when batch_size is None or at least their number); `roots` the rows'
    H^1/2 (logit_hessian_roots; None: the identity)."""
    m = K.shape[0] // n_outputs
    b = m if batch_size is None else min(int(batch_size), m)
    largest = 0.0
    for start in range(0, m - b + 1, b):
        block = K[start * n_outputs:(start + b) * n_outputs, start * n_outputs:(start + b) * n_outputs]
        if roots is not None:
            r = roots[start:start + b]
            block = block.reshape(b, n_outputs, b, n_outputs)
            block = np.einsum("icd,idje,jfe->icjf", r, block, r, optimize=True).reshape(b * n_outputs, -1)
        largest = max(largest, largest_eigenvalue(block) / b)
    return largest


def largest_eigenvalue(K: np.ndarray) -> float:
    """The largest eigenvalue of a symmetric positive semi-definite matrix, by Lanczos iteration (products
    with K only: the full eigendecomposition costs a thousand times more at the sizes of a kernel here)."""
    from scipy.sparse.linalg import eigsh

    if K.shape[0] <= 64:
        return float(np.linalg.eigvalsh(K)[-1])
    return float(eigsh(K, k=1, which="LA", v0=np.ones(K.shape[0]), tol=0, return_eigenvectors=False)[0])


def stable_lr(curvature: float, momentum: float, weight_decay: float, fraction: float) -> float:
    """fraction * 2 (1 + momentum) / (curvature + weight_decay)."""
    hessian = curvature + weight_decay
    if not hessian > 0:
        raise ValueError("the loss's curvature in the trained parameters (tangent kernel and logit Hessian) is zero "
                         "on these rows: no learning rate follows from it")
    return fraction * 2.0 * (1.0 + momentum) / hessian


def starting_curvature(points: np.ndarray, arch, params, train, loss: str, n_outputs: int,
                       batch_size: Optional[int], n_threads) -> float:
    """The largest curvature of a minibatch's loss (its Gauss-Newton part) at the starting network `params`, over
    the disjoint minibatches of `points`."""
    from ..architectures._params import network_outputs

    K = tangent_kernel(points, arch, params, train, n_outputs, n_threads)
    roots = None
    if loss != "squared":
        logits = network_outputs(points, arch, 0, 0, params=params)[:, :n_outputs]
        roots = logit_hessian_roots(logits, loss)
    return batch_curvature(K, n_outputs, batch_size, roots)


def ntk_learning_rate(arch, X, *, train="all", loss="cross_entropy", n_outputs: Optional[int] = None,
                      batch_size: Optional[int] = 96, momentum: float = 0.0, weight_decay: float = 0.0,
                      params=None, seed: int = 0, index: int = 0, fraction: float = SAFETY_FRACTION,
                      max_rows: int = MAX_ROWS, n_threads=None) -> float:
    """SGD's learning rate from the largest eigenvalue of the empirical NTK at initialisation.

    ``fraction * 2 (1 + momentum) / (lambda_max(H_B^1/2 K_B H_B^1/2) / b + weight_decay)``:
    `fraction` of the largest step at which SGD with heavy-ball momentum stays stable on
    the loss's quadratic (Gauss-Newton) model around the starting network. K_B is the
    tangent kernel of a minibatch's b rows and the task's logits with respect to the
    trained parameters (``nnpk.empirical(..., wrt=train, per_logit=True)``, b C by b C,
    not divided by C); H_B is block-diagonal, each row's Hessian of the loss in its
    logits at the starting network: the identity for the squared loss
    ``0.5 sum_c (f_c - y_c)^2``, ``diag(p) - p p^T`` for softmax cross-entropy (p the
    softmax of the row's logits), ``sigma (1 - sigma)`` for the logistic loss; the
    curvature is the largest over the disjoint minibatches of a fixed sample of up to
    `max_rows` rows of X. For the squared loss of a network linear in its trained
    parameters (a linear model, the readout, ``linearize=True``) with full batches,
    fraction 1 is exactly the edge of stability. See the how-to "Training networks"
    for the derivation.

    Parameters
    ----------
    arch : nnpk.Network
    X : array
        Training points (rows as ``NetworkLearner.fit`` takes them).
    train : "all", "weights", "biases", "readout", "biases+readout" or list of int
        The trained parameters, as ``NetworkLearner``'s train.
    loss : "cross_entropy", "squared" or "logistic"
    n_outputs : int, optional
        The task's logits (the first n_outputs); None: all of the network's.
    batch_size : int or None
        The fit's minibatch rows (None: full batch).
    momentum, weight_decay : float
        SGD's momentum and L2 penalty, as ``NetworkLearner``'s.
    params : list of (W, b), optional
        The starting network (the layout of ``nnpk.sample_params``); None: network
        `index` of `seed`.
    seed, index : int
    fraction : float in (0, 1]
        The share of the stability bound taken. The default 1/2 leaves room for the
        curvature's growth during training ("progressive sharpening").
    max_rows : int
        Rows of X the kernel is computed on (a fixed random sample when X has more).
    n_threads : int, optional

    Returns
    -------
    float
    """
    from ..architectures import check_arch, sample_params
    from ..architectures._params import check_points

    arch = check_arch(arch, "ntk_learning_rate")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
    if isinstance(train, str) and train not in TRAINS:
        raise ValueError(f"train must be one of {', '.join(map(repr, TRAINS))} or a list of layer indices, "
                         f"got {train!r}")
    if batch_size is not None:
        check_int(batch_size, "batch_size", minimum=1)
    max_rows = check_int(max_rows, "max_rows", minimum=1)
    if not (isinstance(momentum, (numbers.Real, np.floating)) and 0 <= momentum < 1):
        raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
    if not (isinstance(weight_decay, (numbers.Real, np.floating)) and 0 <= weight_decay < math.inf):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    fraction = _check_fraction(fraction)
    x = check_points(X, "X", arch, "float64")
    compiled = arch.compile(x.shape[1:])
    if compiled.norms:
        raise ValueError("ntk_learning_rate needs the network's tangent kernel, which is not defined with BatchNorm "
                         "(a point's output depends on its batch): give a number for lr")
    C = compiled.out
    n_outputs = C if n_outputs is None else check_int(n_outputs, "n_outputs", minimum=1, maximum=C)
    if params is None:
        params = sample_params(arch, x.shape[1:], seed, index)
    rows = sample_rows(x.shape[0], max_rows)
    curvature = starting_curvature(x[rows], arch, params, train, loss, n_outputs, batch_size, n_threads)
    return stable_lr(curvature, float(momentum), float(weight_decay), fraction)


def learner_lr(learner, fit, x: np.ndarray, loss: str, n_outputs: int) -> float:
    """The learning rate (the schedule's peak) of a learner's fit on rows x (flattened): its number, lr=None's
    default, or lr="ntk" from the starting network's tangent kernel (computed once per task and settings)."""
    setting = default_lr(learner.optimizer, learner.train) if learner.lr is None else learner.lr
    if setting != "ntk":
        return float(setting)
    if learner.train == "masks":
        raise ValueError("lr='ntk' comes from the tangent kernel of weights and biases; masks' scores have none "
                         "there: give a number for lr")
    train = learner.train if isinstance(learner.train, str) else tuple(learner.train)
    rule = (train, float(learner.momentum), float(learner.weight_decay), learner.batch_size, loss, n_outputs)
    if fit.ntk_lr and fit.ntk_lr[0] == rule:
        return fit.ntk_lr[1]
    if learner._compiled.norms:
        raise ValueError("lr='ntk' (SGD's default) needs the network's tangent kernel, which is not defined with "
                         "BatchNorm (a point's output depends on its batch): give a number for lr")
    start = learner._sampled_params() if fit.origin is None else fit.origin
    rows = sample_rows(x.shape[0], MAX_ROWS)
    points = np.asarray(x[rows], dtype=np.float64).reshape((len(rows),) + tuple(learner.input_shape_))
    curvature = starting_curvature(points, learner.arch, start, learner.train, loss, n_outputs,
                                   learner.batch_size, learner.n_threads)
    lr = stable_lr(curvature, float(learner.momentum), float(learner.weight_decay), SAFETY_FRACTION)
    fit.ntk_lr = (rule, lr)
    return lr
