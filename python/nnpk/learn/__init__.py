"""Learning with kernels and random networks: kernel ridge and its ridge path, the GP posterior, the linearised
network, and random networks whose biases (or readout) are trained (``BiasLearner``, loaded on first use: it
imports scikit-learn)."""

from ._kernel_regression import CRITERIA, RELATIVE_RIDGES, RidgePath, gp_posterior, kernel_ridge, ridge_coefficients
from ._linearized import initial_outputs, linearized_prediction

__all__ = ["BiasLearner", "CRITERIA", "RELATIVE_RIDGES", "RidgePath", "gp_posterior", "initial_outputs", "kernel_ridge",
           "linearized_prediction", "ridge_coefficients"]


def __getattr__(name):
    if name == "BiasLearner":
        from ._bias_learning import BiasLearner

        return BiasLearner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
