"""Checks on precomputed kernels, targets and ridges, made before any factorisation."""

from __future__ import annotations

import math
import numbers
from typing import Optional, Tuple

import numpy as np

from ._validate import _check_finite

__all__ = ["as_kernel", "as_targets", "check_ridge", "as_ridges"]

# Kernels from nnpk are exactly symmetric; this admits rounding from user-side
# arithmetic (K = A B^T + B A^T, ...) but not a transposed cross-kernel.
_SYMMETRY_RTOL = 1e-8


def _real_array(x, name: str) -> np.ndarray:
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def as_kernel(k, name: str, *, symmetric: bool = False, n_rows: Optional[int] = None,
              n_cols: Optional[int] = None, why: str = "") -> np.ndarray:
    """k as a C-contiguous float64 (n1, n2) array with finite values.

    symmetric=True asks for a square matrix equal to its transpose (up to
    rounding); n_rows / n_cols ask for those sizes, and `why` says in the error
    message where they come from ("k_train has 4 training points")."""
    arr = _real_array(k, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D kernel matrix, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    if symmetric and arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be square (a kernel of the points with themselves), got shape {arr.shape}")
    for axis, (expected, what) in enumerate(((n_rows, "rows"), (n_cols, "columns"))):
        if expected is not None and arr.shape[axis] != expected:
            raise ValueError(f"{name} has {arr.shape[axis]} {what}, expected {expected}: {why}")
    out = np.ascontiguousarray(arr, dtype=np.float64)
    _check_finite(out, name)
    if symmetric:
        _check_symmetric(out, name)
    return out


def _check_symmetric(k: np.ndarray, name: str, rows_per_chunk: int = 512) -> None:
    tolerance = _SYMMETRY_RTOL * max(float(k.max()), -float(k.min()))  # max |K| without an n x n temporary
    for start in range(0, k.shape[0], rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        gap = np.abs(k[rows] - k[:, rows].T)
        worst = float(gap.max())
        if worst > tolerance:
            i, j = np.unravel_index(int(np.argmax(gap)), gap.shape)
            raise ValueError(
                f"{name} is not symmetric: |K[{start + i}, {j}] - K[{j}, {start + i}]| = {worst:.3g}; "
                "pass the kernel of the points with themselves"
            )


def as_targets(y, name: str, n: int, why: str) -> Tuple[np.ndarray, bool]:
    """y as a float64 (n, k) array with finite values, and whether it was 1-D.

    `why` says in the error message what fixes n ("k_train has 4 training points")."""
    arr = _real_array(y, name)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (n,) or 2-D (n, n_outputs), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows, expected {n}: {why}")
    if arr.ndim == 2 and arr.shape[1] == 0:
        raise ValueError(f"{name} has no columns: shape {arr.shape}")
    out = np.ascontiguousarray(arr.reshape(n, -1), dtype=np.float64)
    _check_finite(out, name)
    return out, arr.ndim == 1


def check_ridge(ridge, name: str = "ridge") -> float:
    """A single ridge: a finite real number >= 0."""
    if isinstance(ridge, (bool, np.bool_)) or not isinstance(ridge, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(ridge).__name__}")
    value = float(ridge)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return value


def as_ridges(ridges, name: str = "ridges", *, positive: bool = False) -> np.ndarray:
    """Candidate ridges: a non-empty 1-D float64 array of finite values >= 0 (> 0 if `positive`)."""
    arr = _real_array(ridges, name)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of candidate ridges, got shape {arr.shape}")
    out = arr.astype(np.float64)
    bad = ~np.isfinite(out) | (out <= 0 if positive else out < 0)
    if bad.any():
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be finite and {bound}, got {out[np.argmax(bad)]} at index {int(np.argmax(bad))}")
    return out
