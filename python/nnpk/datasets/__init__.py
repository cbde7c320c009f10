"""Data sets for studying random networks: trajectories of dynamical systems (sine waves, the Van der Pol
oscillator, the Lorenz system) with the helpers that turn them into training data for recurrent networks,
and classification data sets that need no download (scikit-learn's digits, MNIST-1D).

Importing this subpackage is quick: scipy.integrate, scikit-learn and mnist1d are loaded by the functions
that use them."""

from ._classification import load_digits, load_mnist1d
from ._sequences import autocorrelation_half_width, delay_targets, split_by_trajectory, windows
from ._systems import lorenz, sine_waves, van_der_pol

__all__ = ["autocorrelation_half_width", "delay_targets", "load_digits", "load_mnist1d", "lorenz", "sine_waves",
           "split_by_trajectory", "van_der_pol", "windows"]
