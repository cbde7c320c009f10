"""The elementwise activation of a user's function: tabulated once, interpolated by the engine.

The numpy-vectorised ``fn`` is evaluated once on ``GRID_NODES`` uniform nodes over
``[-GRID_REACH, GRID_REACH]`` (step 1/256), its derivative by the user's ``fn_derivative`` or by the
five-point central difference ``(-f(z+2h) + 8 f(z+h) - 8 f(z-h) + f(z-2h)) / (12 h)`` at the same step
(two extra nodes on each side). The engine interpolates the values and derivatives by cubic Hermite
splines between nodes, and continues the tangent line at each end beyond the grid.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np

__all__ = ["GRID_NODES", "GRID_REACH", "describe_function", "tabulate"]

GRID_REACH = 16.0
GRID_NODES = 8193


def _evaluate(f: Callable, z: np.ndarray, name: str) -> np.ndarray:
    """f(z) as float64 of z's shape and finite, or a ValueError naming `name`."""
    try:
        out = f(z)
    except Exception as e:  # the user's function failed on an array: say so and how it is called
        raise ValueError(f"{name} must be a numpy-vectorised function of a float64 array; {name}(z) on the grid "
                         f"of {z.size} nodes over [{z[0]:g}, {z[-1]:g}] raised {type(e).__name__}: {e}") from e
    try:
        values = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}(z) must return numbers, got {type(out).__name__}") from e
    if values.shape != z.shape:
        raise ValueError(f"{name}(z) must return an array of z's shape {z.shape} (elementwise), got shape "
                         f"{values.shape}")
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"{name}(z) must be finite on [{-GRID_REACH:g}, {GRID_REACH:g}], got {values[bad][0]} at "
                         f"z = {z[bad][0]:g}")
    return values


def tabulate(fn, fn_derivative=None) -> Tuple[float, ...]:
    """The engine's table of `fn`: (lo, hi, values at the nodes, derivatives at the nodes)."""
    if not callable(fn):
        raise TypeError(f"fn must be a callable (a numpy-vectorised function), got {fn!r}")
    if fn_derivative is not None and not callable(fn_derivative):
        raise TypeError(f"fn_derivative must be a callable or None, got {fn_derivative!r}")
    step = 2 * GRID_REACH / (GRID_NODES - 1)
    wide = -GRID_REACH + step * np.arange(-2, GRID_NODES + 2, dtype=np.float64)  # two extra nodes each side
    z = wide[2:-2]
    if fn_derivative is None:
        f = _evaluate(fn, wide, "fn")
        values = f[2:-2]
        derivatives = (-f[4:] + 8 * f[3:-1] - 8 * f[1:-3] + f[:-4]) / (12 * step)
    else:
        values = _evaluate(fn, z, "fn")
        derivatives = _evaluate(fn_derivative, z, "fn_derivative")
    if not np.isfinite(derivatives).all():
        raise ValueError("the finite-difference derivative of fn overflows on the grid: give fn_derivative")
    return (-GRID_REACH, GRID_REACH) + tuple(values.tolist()) + tuple(derivatives.tolist())


def describe_function(fn: Optional[Callable]) -> str:
    """A short name of a user's function (its qualified name)."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module and module not in ("builtins", "__main__") else str(name)


