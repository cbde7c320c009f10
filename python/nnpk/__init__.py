"""nnpk: kernels of randomly initialised neural networks on a streaming C++ engine."""

from importlib.metadata import PackageNotFoundError, version

from ._analytic import analytic
from ._arch import ACTIVATIONS, MLP
from ._architecture import INITS, Activation, AvgPool, Conv, Dense, Flatten, GlobalAvgPool, MaxPool, Network, Residual
from ._empirical import empirical
from ._conditioning import conditioning
from ._monte_carlo import monte_carlo
from ._params import sample_params
from ._threads import physical_cores
from ._core import has_openmp
from .diagnostics import KernelSpectrum, kernel_target_alignment, monte_carlo_standard_error, spectrum
from .learn import RidgePath, gp_posterior, initial_outputs, kernel_ridge, linearized_prediction, ridge_coefficients
from .store import KernelStore, compute_to_store, open_store

try:
    __version__ = version("nnpk")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "AvgPool",
    "BiasLearner",
    "Conv",
    "Dense",
    "Flatten",
    "GlobalAvgPool",
    "INITS",
    "KernelSpectrum",
    "KernelStore",
    "MLP",
    "MaxPool",
    "Network",
    "Residual",
    "RidgePath",
    "__version__",
    "compute_to_store",
    "empirical",
    "gp_posterior",
    "analytic",
    "conditioning",
    "has_openmp",
    "initial_outputs",
    "kernel_ridge",
    "kernel_target_alignment",
    "linearized_prediction",
    "monte_carlo",
    "monte_carlo_standard_error",
    "open_store",
    "physical_cores",
    "ridge_coefficients",
    "sample_params",
    "spectrum",
]


def __getattr__(name):
    # nnpk.sklearn and nnpk.BiasLearner import scikit-learn, which takes a while: load them on first use.
    import importlib

    if name == "sklearn":
        return importlib.import_module(".sklearn", __name__)
    if name == "BiasLearner":
        return importlib.import_module(".bias_learning", __name__).BiasLearner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
