"""Kernels of random networks: Monte Carlo estimates, one network's empirical kernels, the infinite-width
limits, and how depth changes their conditioning."""

from ._analytic import analytic
from ._conditioning import conditioning
from ._empirical import empirical
from ._monte_carlo import monte_carlo
from ._plans import ESTIMATORS, default_estimator

__all__ = ["ESTIMATORS", "analytic", "conditioning", "default_estimator", "empirical", "monte_carlo"]
