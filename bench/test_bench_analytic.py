"""Infinite-width NNGP and NTK of a depth-10 ReLU MLP on 10,000 points in R^64 (issue 3).

Run with ``pytest bench/test_bench_analytic.py``; the figures are in the table and in
``--benchmark-json`` under extra_info. The rate counts the n x n output entries times the
L + 1 = 11 affine steps of the recursion (nnpk computes one triangle and mirrors it). Each
benchmark checks entries against a scalar recursion written out here, and measures in the
same run the same recursion vectorised in numpy, and records the reference float64 product
(numpy's, in a child process: bench/conftest.py) for the machine's speed.
"""

import math
import time

import numpy as np
import pytest

import nnpk

N, D, DEPTH = 10_000, 64, 10
ARCH = nnpk.MLP(hidden=[512] * DEPTH, activation="relu", W_std=math.sqrt(2), b_std=0.1)
ENTRY_LAYERS = N * N * (DEPTH + 1)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal((N, D))


def numpy_recursion(x):
    """(NNGP, NTK) of the output between the rows of x, by the recursion of docs/definitions.rst on
    whole matrices in numpy: the reference for a few entries and the comparison in the same run."""
    c, ntk = x @ x.T / D, np.zeros((len(x), len(x)))
    np.fill_diagonal(c, (x * x).sum(1) / D)
    for layer, (w, b) in enumerate(zip(ARCH.w_stds, ARCH.b_stds)):
        c = w * w * c + b * b
        ntk = c + w * w * ntk
        if layer == DEPTH:
            return c, ntk
        # The variances are the diagonal itself: a point with itself has correlation exactly 1.
        q = np.diag(c)
        root = np.sqrt(np.outer(q, q))
        angle = np.arccos(np.clip(c / root, -1, 1))
        ntk *= (np.pi - angle) / (2 * np.pi)
        c = root * (np.sin(angle) + (np.pi - angle) * np.cos(angle)) / (2 * np.pi)


def numpy_recursion_rate(x):
    """numpy's recursion on 2000 points, in entry-layers/s."""
    sub = x[:2000]
    start = time.perf_counter()
    numpy_recursion(sub)
    return len(sub) ** 2 * (DEPTH + 1) / (time.perf_counter() - start)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_relu_depth10_nngp_and_ntk(benchmark, x, n_threads, dgemm_reference):
    result = benchmark.pedantic(nnpk.analytic, args=(x,),
                                kwargs=dict(arch=ARCH, get=("nngp", "ntk"), n_threads=n_threads),
                                rounds=3, warmup_rounds=1, iterations=1)
    rows = [0, 1, 2, 17, 4_321, 5_000, 7_777, 9_999]
    nngp, ntk = numpy_recursion(x[rows])
    np.testing.assert_allclose(result["nngp"][np.ix_(rows, rows)], nngp, rtol=1e-11)
    np.testing.assert_allclose(result["ntk"][np.ix_(rows, rows)], ntk, rtol=1e-11)
    assert np.array_equal(result["nngp"], result["nngp"].T)

    seconds = benchmark.stats["min"]
    recursion_rate = numpy_recursion_rate(x)
    benchmark.extra_info.update(
        seconds=round(seconds, 3),
        entry_layers_per_second=f"{ENTRY_LAYERS / seconds:.3g}",
        numpy_recursion_entry_layers_per_second=f"{recursion_rate:.3g}",
        ratio_to_numpy_recursion=round(ENTRY_LAYERS / seconds / recursion_rate, 1),
        numpy_float64_matmul_gflops=round(dgemm_reference.gflops, 1),
        numpy_float64_matmul_kernel=dgemm_reference.kernel,
    )
    if n_threads == 2:
        assert seconds < 10
