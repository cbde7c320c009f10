"""Running the engine in batches of networks: standard errors and tolerance.

Batches continue one another's float64 sums (the engine resumes its chains), so
a batched run returns bitwise the estimate of an unbatched one; the batch means
only feed the standard error.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np

__all__ = ["Plan", "KernelMap", "run_plan"]

_CHUNK_BYTES = 1 << 23


@dataclass(frozen=True)
class KernelMap:
    """kernel = scale * (sums[source] / n_networks) + offset."""

    source: int
    scale: float
    offset: float = 0.0


@dataclass
class Plan:
    """How an estimate is computed: `run(start, stop, initial, progress)` returns
    the raw float64 sums over networks [start, stop) continued from `initial`
    (progress: None or a callable taking the networks done); plans that are
    not exact also take `in_place=True`, accumulating into the arrays of `initial` themselves
    (the store's reused tile buffers). `kernels` maps the sums to the returned
    kernels. `exact` plans need no networks at all."""

    run: Callable[..., List[np.ndarray]]
    kernels: Sequence[KernelMap]
    exact: bool = False


def _row_chunks(a: np.ndarray):
    rows = max(1, _CHUNK_BYTES // max(1, a[0].nbytes))
    for start in range(0, a.shape[0], rows):
        yield slice(start, start + rows)


def _batch_deviation(after: np.ndarray, before: np.ndarray, size: int, done: int) -> float:
    """|| batch mean - running mean ||_F^2 of per-network sums, in row chunks."""
    total = 0.0
    for rows in _row_chunks(after):
        delta = after[rows] / size
        delta -= before[rows] * (1.0 / size + 1.0 / done)
        total += float(np.vdot(delta, delta))
    return total


def _frobenius(a: np.ndarray) -> float:
    return math.sqrt(sum(float(np.vdot(a[rows], a[rows])) for rows in _row_chunks(a)))


def _finalize(plan: Plan, sums: List[np.ndarray], n_networks: int) -> List[np.ndarray]:
    uses = [sum(k.source == s for k in plan.kernels) for s in range(len(sums))]
    out = []
    for k in plan.kernels:
        uses[k.source] -= 1
        base = sums[k.source] if uses[k.source] == 0 else sums[k.source].copy()
        base *= k.scale / n_networks
        if k.offset:
            base += k.offset
        out.append(base)
    return out


def run_plan(plan: Plan, n_networks: int, *, standard_error: bool, tol: Optional[float],
             max_networks: Optional[int], progress=None):
    """Kernels (and, when asked, their relative Frobenius standard errors and the networks used)."""
    if plan.exact:
        kernels = _finalize(plan, plan.run(0, 1, None), 1)
        return kernels, [0.0] * len(kernels), 0, 0
    if not standard_error and tol is None:
        return _finalize(plan, plan.run(0, n_networks, None, progress), n_networks), None, n_networks, 1
    if tol is None:
        n_batches = min(n_networks, 10)
        sizes = [n_networks // n_batches + (b < n_networks % n_batches) for b in range(n_batches)]
        limit = n_networks
    else:
        batch = max(1, -(-n_networks // 4))
        sizes = None
        assert max_networks is not None  # monte_carlo always sets it with tol
        limit = max_networks
    sums: Optional[List[np.ndarray]] = None
    done, batches = 0, 0
    m2: List[float] = []
    while True:
        size = sizes[batches] if sizes is not None else min(batch, limit - done)
        offset = done
        report = None if progress is None else (lambda d, offset=offset: progress(offset + d))
        new = plan.run(done, done + size, sums, report)
        if sums is None:
            m2 = [0.0] * len(new)
        else:
            for k, (after, before) in enumerate(zip(new, sums)):
                m2[k] += _batch_deviation(after, before, size, done) * size * done / (done + size)
        sums, done, batches = new, done + size, batches + 1
        se_raw = [math.sqrt(v / ((batches - 1) * done)) if batches > 1 else math.nan for v in m2]
        if sizes is not None:
            if batches == len(sizes):
                break
            continue
        assert tol is not None  # without tol, sizes is set and the loop ends above
        if batches >= 4 and done >= n_networks:
            rel = _relative_errors(plan, sums, done, se_raw)
            if max(rel) <= tol:
                break
        if done >= limit:
            warnings.warn(f"tol={tol} was not reached with max_networks={limit} networks", RuntimeWarning,
                          stacklevel=3)
            break
    rel = _relative_errors(plan, sums, done, se_raw)
    return _finalize(plan, sums, done), rel, done, batches


def _relative_errors(plan: Plan, sums, n_networks: int, se_raw) -> List[float]:
    out = []
    for k in plan.kernels:
        norm = _frobenius(sums[k.source]) * abs(k.scale) / n_networks
        if k.offset:
            norm = math.sqrt(max(0.0, sum(
                float(np.sum((sums[k.source][rows] * (k.scale / n_networks) + k.offset) ** 2))
                for rows in _row_chunks(sums[k.source]))))
        out.append(abs(k.scale) * se_raw[k.source] / norm if norm > 0 else math.nan)
    return out
