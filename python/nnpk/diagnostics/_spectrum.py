"""The spectrum of a kernel matrix and what follows from it: conditioning and effective ranks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from .._kernel_checks import as_kernel
from .._validate import check_int

__all__ = ["KernelSpectrum", "spectrum"]


@dataclass(frozen=True)
class KernelSpectrum:
    """Eigenvalues of a symmetric kernel matrix, largest first, and what follows from them.

    Eigenvalues are as LAPACK returns them: a positive semi-definite kernel can
    show tiny negative ones from rounding. The effective ranks use the clipped
    values ``max(lambda, 0)``.
    """

    eigenvalues: np.ndarray

    def top(self, k: int) -> np.ndarray:
        """The k largest eigenvalues."""
        return self.eigenvalues[: check_int(k, "k", minimum=1)]

    @property
    def largest(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def smallest(self) -> float:
        return float(self.eigenvalues[-1])

    @property
    def condition_number(self) -> float:
        """largest / smallest eigenvalue; inf when the smallest is <= 0 (numerically singular)."""
        return self.largest / self.smallest if self.smallest > 0 else math.inf

    @property
    def effective_rank(self) -> float:
        """Participation ratio ``(sum lambda)^2 / sum lambda^2`` = ``tr(K)^2 / ||K||_F^2``.

        Between 1 (one direction carries everything) and n (a multiple of the
        identity); it counts the directions that carry most of the trace."""
        clipped = np.maximum(self.eigenvalues, 0.0)
        total = clipped.sum()
        return float(total**2 / np.sum(clipped**2)) if total > 0 else 0.0

    @property
    def entropy_effective_rank(self) -> float:
        """``exp(-sum p log p)`` with ``p = lambda / sum lambda`` (Roy and Vetterli, 2007).

        Also between 1 and n; more sensitive than the participation ratio to the
        many small eigenvalues of the spectrum's tail."""
        clipped = np.maximum(self.eigenvalues, 0.0)
        total = clipped.sum()
        if total == 0:
            return 0.0
        p = clipped[clipped > 0] / total
        return float(np.exp(-np.sum(p * np.log(p))))


def spectrum(kernel) -> KernelSpectrum:
    """All eigenvalues of a symmetric kernel matrix (one O(n^3) LAPACK call), largest first.

    ``spectrum(K).top(10)``, ``.smallest``, ``.condition_number``,
    ``.effective_rank`` and ``.entropy_effective_rank`` all come from them.

    Parameters
    ----------
    kernel : (n, n) array
    """
    k = as_kernel(kernel, "kernel", symmetric=True)
    return KernelSpectrum(scipy.linalg.eigvalsh(k, check_finite=False)[::-1].copy())
