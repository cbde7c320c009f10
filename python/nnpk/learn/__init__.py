"""Learning with kernels and random networks: kernel ridge and its ridge path, the GP posterior, the linearised
network, learnability and trainability against depth, and networks trained by gradient descent
(``NetworkLearner``, any parameters; ``BiasLearner``, the biases or readout of a random network; loaded on first
use: they import scikit-learn)."""

from ._depth_study import depth_study
from ._kernel_regression import CRITERIA, RELATIVE_RIDGES, RidgePath, gp_posterior, kernel_ridge, ridge_coefficients
from ._linearized import initial_outputs, linearized_prediction

__all__ = ["BiasLearner", "CRITERIA", "RELATIVE_RIDGES", "RidgePath", "depth_study", "gp_posterior", "initial_outputs",
           "kernel_ridge", "linearized_prediction", "NetworkLearner", "ridge_coefficients"]


def __getattr__(name):
    if name == "BiasLearner":
        from ._bias_learning import BiasLearner

        return BiasLearner
    if name == "NetworkLearner":
        from ._network_learning import NetworkLearner

        return NetworkLearner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
