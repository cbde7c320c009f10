"""The linearised network: its prediction after training, from its tangent kernel and initial outputs."""

from __future__ import annotations

import numpy as np

from .._kernel_checks import as_targets, check_ridge
from .._validate import check_int
from ..architectures import SEED_MAX, check_arch
from ..architectures._params import network_outputs
from ._kernel_regression import _shaped, _solve, _test_kernel, _train_kernel

__all__ = ["initial_outputs", "linearized_prediction"]


def linearized_prediction(theta_train, theta_test_train, f0_train, f0_test, y, ridge: float = 0.0) -> np.ndarray:
    """Prediction of the linearised network trained to convergence by gradient flow on the squared loss.

    ``f0(x) + Theta(x, X) (Theta(X, X) + ridge I)^-1 (y - f0(X))``

    Theta is the NTK with logits traced, the same for every
    output: exact at infinite width, where the NTK is ``Theta ⊗ I_C``; for an
    empirical NTK it ignores the coupling between different logits. ``ridge=0``
    is gradient flow itself; a positive ridge is its weight-decay-like
    regularisation (and a jitter where Theta is ill-conditioned).

    Parameters
    ----------
    theta_train : (n, n) array
        NTK of the training points.
    theta_test_train : (n_test, n) array
        NTK of the test points against the training points.
    f0_train : (n,) or (n, C) array
        The network's initial outputs on the training points (:func:`nnpk.initial_outputs`).
    f0_test : (n_test,) or (n_test, C) array
        Its initial outputs on the test points.
    y : (n,) or (n, C) array
        Training targets; 1-D arrays count as one output.
    ridge : float
        >= 0.

    Returns
    -------
    (n_test,) if y is 1-D, else (n_test, C).

    Raises
    ------
    numpy.linalg.LinAlgError
        If ``theta_train + ridge I`` is not positive definite.
    """
    theta, targets, was_1d = _train_kernel(theta_train, y, "theta_train")
    n = theta.shape[0]
    theta_test = _test_kernel(theta_test_train, "theta_test_train", n, "theta_train")
    n_test = theta_test.shape[0]
    f0_tr, _ = as_targets(f0_train, "f0_train", n, f"theta_train has {n} training points")
    f0_te, _ = as_targets(f0_test, "f0_test", n_test, f"theta_test_train has {n_test} test points")
    for name, outputs in (("f0_train", f0_tr), ("f0_test", f0_te)):
        if outputs.shape[1] != targets.shape[1]:
            raise ValueError(f"{name} has {outputs.shape[1]} outputs, y has {targets.shape[1]}")
    correction = theta_test @ _solve(theta, targets - f0_tr, check_ridge(ridge), "theta_train")
    return _shaped(f0_te + correction, was_1d)


def initial_outputs(x, arch, *, seed: int = 0, index: int = 0) -> np.ndarray:
    """Outputs f0(x) of random network `index` at initialisation, by the engine's float64 forward pass.

    The network is the one ``nnpk.sample_params(arch, input_shape, seed, index)`` draws,
    which is network `index` of ``nnpk.monte_carlo(..., seed=seed)``.

    Parameters
    ----------
    x : (n, d) array, or (n, ...) points of the shape the network takes
    arch : nnpk.Network (an nnpk.MLP is one)
    seed, index : int

    Returns
    -------
    (n, C) float64 array, C the number of logits.
    """
    seed = check_int(seed, "seed", minimum=0, maximum=SEED_MAX)
    index = check_int(index, "index", minimum=0, maximum=SEED_MAX)
    return network_outputs(x, check_arch(arch, "nnpk.initial_outputs"), seed, index)
