"""Diagnostics of kernel matrices: spectrum, conditioning, kernel-target alignment, Monte Carlo error."""

from ._alignment import eigen_alignment, kernel_alignment, kernel_target_alignment
from ._spectrum import KernelSpectrum, spectrum
from ._standard_error import monte_carlo_standard_error

__all__ = ["KernelSpectrum", "eigen_alignment", "kernel_alignment", "kernel_target_alignment",
           "monte_carlo_standard_error", "spectrum"]
