"""nnpk: kernels of randomly initialised neural networks on a streaming C++ engine."""

from ._build import build_info  # first: loads the engine built for this CPU as nnpk._core
from ._core import has_openmp
from ._threads import physical_cores
from ._version import __version__
from .architectures import (
    ACTIVATIONS,
    INITS,
    MAX_DEGREE,
    MLP,
    Activation,
    Aggregate,
    AvgPool,
    BatchNorm,
    Conv,
    ConvTranspose,
    Dense,
    FanInConcat,
    FanInProd,
    FanInSum,
    Flatten,
    GlobalAvgPool,
    GlobalSumPool,
    LayerNorm,
    MaxPool,
    Network,
    Parallel,
    Recurrent,
    Residual,
    SelfAttention,
    SumPool,
    graph_points,
    lenet,
    mlp_100,
    params_from_state_dict,
    resnet18,
    sample_params,
)
from .diagnostics import (
    KernelSpectrum,
    eigen_alignment,
    kernel_alignment,
    kernel_target_alignment,
    monte_carlo_standard_error,
    spectrum,
)
from .kernels import analytic, conditioning, empirical, monte_carlo
from .learn import (
    RidgePath,
    depth_study,
    gp_posterior,
    initial_outputs,
    kernel_ridge,
    linearized_prediction,
    ridge_coefficients,
)
from .store import KernelStore, compute_to_store, open_store

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Aggregate",
    "AvgPool",
    "BatchNorm",
    "BiasLearner",
    "Conv",
    "ConvTranspose",
    "Dense",
    "FanInConcat",
    "FanInProd",
    "FanInSum",
    "Flatten",
    "GlobalAvgPool",
    "GlobalSumPool",
    "INITS",
    "KernelSpectrum",
    "KernelStore",
    "LayerNorm",
    "MAX_DEGREE",
    "MLP",
    "MaxPool",
    "Network",
    "NetworkLearner",
    "Parallel",
    "Recurrent",
    "Residual",
    "SelfAttention",
    "RidgePath",
    "SumPool",
    "__version__",
    "build_info",
    "compute_to_store",
    "eigen_alignment",
    "empirical",
    "gp_posterior",
    "graph_points",
    "analytic",
    "conditioning",
    "depth_study",
    "has_openmp",
    "initial_outputs",
    "kernel_alignment",
    "kernel_ridge",
    "kernel_target_alignment",
    "lenet",
    "linearized_prediction",
    "mlp_100",
    "monte_carlo",
    "monte_carlo_standard_error",
    "open_store",
    "params_from_state_dict",
    "physical_cores",
    "resnet18",
    "ridge_coefficients",
    "sample_params",
    "spectrum",
    "task_variance",
    "tasks",
    "unit_clusters",
]


def __getattr__(name):
    # Loaded on first use: nnpk.sklearn and the learners import scikit-learn, which takes a while; nnpk.datasets
    # serves the studies and demos, not the kernels; nnpk.tasks needs scipy's eigensolvers.
    import importlib

    if name in ("datasets", "sklearn", "tasks"):
        return importlib.import_module(f".{name}", __name__)
    if name == "BiasLearner":
        return importlib.import_module(".learn._bias_learning", __name__).BiasLearner
    if name == "NetworkLearner":
        return importlib.import_module(".learn._network_learning", __name__).NetworkLearner
    if name in ("task_variance", "unit_clusters"):
        return getattr(importlib.import_module(".learn._task_variance", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
