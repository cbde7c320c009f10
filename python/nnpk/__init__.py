"""nnpk: kernels of randomly initialised neural networks on a streaming C++ engine."""

from importlib.metadata import PackageNotFoundError, version

from ._analytic import analytic
from ._arch import ACTIVATIONS, MLP
from ._conditioning import conditioning
from ._monte_carlo import monte_carlo
from ._params import sample_params
from ._threads import physical_cores
from ._core import has_openmp

try:
    __version__ = version("nnpk")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "__version__",
    "analytic",
    "conditioning",
    "has_openmp",
    "monte_carlo",
    "physical_cores",
    "sample_params",
]
