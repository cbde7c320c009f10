"""Learning with kernels and random networks: kernel ridge and its ridge path, the GP posterior, the linearised
network, learnability and trainability against depth, and networks trained by gradient descent
(``NetworkLearner``, any parameters; ``BiasLearner``, the biases or readout of a random network; loaded on first
use: they import scikit-learn), ``sweep`` over learning rates, their learning rates (``DEFAULT_LEARNING_RATES``,
``ntk_learning_rate``) and ``DivergenceError``."""

from ._depth_study import depth_study
from ._divergence import DivergenceError
from ._kernel_regression import CRITERIA, RELATIVE_RIDGES, RidgePath, gp_posterior, kernel_ridge, ridge_coefficients
from ._learning_rates import DEFAULT_LEARNING_RATES, ntk_learning_rate
from ._linearized import initial_outputs, linearized_prediction
from ._sweep import SweepResult, sweep

__all__ = ["BiasLearner", "CRITERIA", "DEFAULT_LEARNING_RATES", "DivergenceError", "RELATIVE_RIDGES", "RidgePath",
           "SweepResult", "depth_study", "gp_posterior", "initial_outputs", "kernel_ridge", "linearized_prediction",
           "NetworkLearner", "ntk_learning_rate", "ridge_coefficients", "sweep", "task_variance", "unit_clusters"]


def __getattr__(name):
    if name == "BiasLearner":
        from ._bias_learning import BiasLearner

        return BiasLearner
    if name == "NetworkLearner":
        from ._network_learning import NetworkLearner

        return NetworkLearner
    if name in ("task_variance", "unit_clusters"):
        from . import _task_variance

        return getattr(_task_variance, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
