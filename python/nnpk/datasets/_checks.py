"""Checks on the arguments of the data-set functions, made before anything large is allocated."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._validate import check_int, check_memory

__all__ = ["as_trajectories", "check_bool", "check_float", "check_int", "check_output_memory", "check_seed"]

# numpy's Generator and scikit-learn's random_state accept seeds up to this.
_MAX_SEED = 2**32 - 1


def check_float(value, name: str, *, minimum: float | None = None, above: float | None = None,
                below: float | None = None) -> float:
    """`value` as a finite float, >= `minimum`, > `above` and < `below` (each when given)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    if above is not None and v <= above:
        raise ValueError(f"{name} must be > {above}, got {v}")
    if below is not None and v >= below:
        raise ValueError(f"{name} must be < {below}, got {v}")
    return v


def check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_seed(seed) -> int:
    return check_int(seed, "seed", minimum=0, maximum=_MAX_SEED)


def check_output_memory(shape: tuple, what: str) -> None:
    """MemoryError, before allocating, when a float64 array of `shape` would not fit."""
    check_memory(8 * math.prod(shape), f"{what} ({' x '.join(map(str, shape))} float64)",
                 advice="ask for fewer trajectories or fewer steps")


def as_trajectories(x, name: str = "trajectories") -> np.ndarray:
    """x as a float64 (n_trajectories, n_steps, state_dim) array of finite values (not copied when it is one)."""
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a 3-D array (n_trajectories, n_steps, state_dim), got shape {arr.shape}")
    if min(arr.shape) == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        i, t, c = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or infinite values (first at trajectory {i}, step {t}, "
                         f"coordinate {c}: {arr[i, t, c]})")
    return arr
