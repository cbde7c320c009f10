"""Thread counts, in scikit-learn's convention."""

from __future__ import annotations

import operator
import os

from . import _core

__all__ = ["physical_cores", "resolve_n_threads"]


def physical_cores() -> int:
    """Physical cores this process may run on (logical CPUs where that is unknown)."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    cores = set()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = phys = None
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "processor":
                    cpu = int(value)
                elif key == "physical id":
                    phys = value.strip()
                elif key == "core id" and cpu in allowed:
                    cores.add((phys, value.strip()))
    except OSError:
        pass
    return max(1, min(len(allowed), len(cores) or len(allowed)))


def resolve_n_threads(n_threads) -> int:
    """None: all physical cores; k > 0: k threads; -1: all, -2: all but one, ...; 0 is an error."""
    available = physical_cores() if _core.has_openmp() else 1
    if n_threads is None:
        return available
    if isinstance(n_threads, bool):
        raise TypeError("n_threads must be an integer or None, got a bool")
    try:
        n = operator.index(n_threads)
    except TypeError:
        raise TypeError(f"n_threads must be an integer or None, got {type(n_threads).__name__}") from None
    if n == 0:
        raise ValueError("n_threads must not be 0: use None for all cores, a positive count, or -1, -2, ...")
    if n < 0:
        n = available + 1 + n
        if n < 1:
            raise ValueError(f"n_threads={n_threads} leaves no thread on {available} cores")
    if not _core.has_openmp():
        return 1
    return n
