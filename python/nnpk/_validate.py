"""Checks on user input, made before any large allocation."""

from __future__ import annotations

import operator
import os

import numpy as np

__all__ = ["as_points", "as_shaped_points", "check_int", "check_memory", "compute_dtype", "available_memory",
           "STORE_ADVICE", "ROW_BLOCK_ADVICE"]

_DTYPES = {"float32": np.float32, "float64": np.float64}


def compute_dtype(dtype) -> type:
    """The forward-pass precision: "float32" or "float64" (numpy dtypes accepted)."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in _DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return _DTYPES[name]


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got a bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {v}")
    return v


def _real_array(x, name: str) -> np.ndarray:
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def _converted(arr: np.ndarray, name: str, dtype) -> np.ndarray:
    if min(arr.shape) == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    with np.errstate(over="ignore"):  # values that overflow the dtype are reported just below
        out = np.ascontiguousarray(arr, dtype=dtype)
    _check_finite(out.reshape(out.shape[0], -1), name)
    return out


def as_points(x, name: str, dtype, *, n_features: int | None = None, other: str = "the architecture") -> np.ndarray:
    """x as a C-contiguous (n, d) array of `dtype` with finite values.

    Integer, float16, non-contiguous and Fortran-ordered inputs are converted."""
    arr = _real_array(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_points, n_features), got shape {arr.shape}")
    if n_features is not None and min(arr.shape) > 0 and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, {other} has {n_features}")
    return _converted(arr, name, dtype)


def as_shaped_points(x, name: str, dtype, *, point_shape: tuple | None = None, other: str = "x1") -> np.ndarray:
    """x as a C-contiguous (n, features), (n, length, channels) or (n, height, width, channels)
    array of `dtype` with finite values; with `point_shape`, each point must have that shape."""
    arr = _real_array(x, name)
    if not 2 <= arr.ndim <= 4:
        raise ValueError(f"{name} must be a 2-D (n, features), 3-D (n, length, channels) or 4-D "
                         f"(n, height, width, channels) array, got shape {arr.shape}")
    if point_shape is not None and min(arr.shape) > 0 and arr.shape[1:] != tuple(point_shape):
        raise ValueError(f"{name} has points of shape {arr.shape[1:]}, {other} has {tuple(point_shape)}")
    return _converted(arr, name, dtype)


def _check_finite(x: np.ndarray, name: str, rows_per_chunk: int = 1 << 14) -> None:
    for start in range(0, x.shape[0], rows_per_chunk):
        chunk = x[start : start + rows_per_chunk]
        ok = np.isfinite(chunk)
        if not ok.all():
            i, j = np.argwhere(~ok)[0]
            raise ValueError(f"{name} contains NaN or infinite values (first at row {start + i}, column {j}: "
                             f"{chunk[i, j]})")


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int | None:
    """Bytes this process can still allocate: MemAvailable, capped by the cgroup limit
    and by the environment variable NNPK_MEMORY_LIMIT (bytes) when it is set."""
    candidates = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for limit_path, usage_path in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit, usage = _read_int(limit_path), _read_int(usage_path)
        if limit is not None and usage is not None and limit < 1 << 60:
            candidates.append(max(0, limit - usage))
    env = os.environ.get("NNPK_MEMORY_LIMIT")
    if env:
        candidates.append(int(env))
    return min(candidates) if candidates else None


STORE_ADVICE = ("compute it tile by tile into an on-disk store instead: nnpk.compute_to_store(path, x1, x2, ...) "
                "or the batch command `nnpk compute JOB.toml`")
ROW_BLOCK_ADVICE = "compute it in row blocks of x1 against x2, or on fewer points"


def check_memory(n_bytes: int, what: str, advice: str = STORE_ADVICE) -> None:
    """MemoryError (saying what to do instead) when `n_bytes` exceed the available memory."""
    available = available_memory()
    if available is not None and n_bytes > available:
        raise MemoryError(
            f"{what} needs {n_bytes / 2**30:.2f} GiB but only {available / 2**30:.2f} GiB is available; {advice}"
        )
