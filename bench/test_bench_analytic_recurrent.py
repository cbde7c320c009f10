"""Infinite-width NNGP and NTK of a relu recurrent network (Recurrent 512 -> Dense 1) on sequences of 20
steps of 16 features: leak 1 on 3,000 sequences (20 dual maps per pair), leak 0.9 on 600 (400 dual maps
per pair: every pair of steps).

Run with ``pytest bench/test_bench_analytic_recurrent.py``. The rate counts the dual-map evaluations
(pairs of one triangle times the maps per pair). Each benchmark checks entries against the recursion
written out here in numpy, and the leak-1 one measures in the same run that recursion vectorised over
whole matrices in numpy, and a depth-20 relu MLP's analytic kernels (20 dual maps per pair too).
"""

import time

import numpy as np
import pytest

import nnpk

STEPS, FEATURES, W_STD, B_STD = 20, 16, 1.2, 0.1


def arch(leak):
    return nnpk.Network([nnpk.Recurrent(512, "relu", W_std=W_STD, b_std=B_STD, leak=leak), nnpk.Dense(1)])


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal((3000, STEPS, FEATURES))


def relu_dual(q1, q2, c):
    root = np.sqrt(q1 * q2)
    angle = np.arccos(np.clip(c / root, -1, 1))
    return root * (np.sin(angle) + (np.pi - angle) * np.cos(angle)) / (2 * np.pi), (np.pi - angle) / (2 * np.pi)


def numpy_recursion(x, leak):
    """(NNGP, NTK) of the output between the rows of x, "ntk" parameterization, on whole matrices: at leak 1
    the same-step recursion; below, the cross-step tables (docs/definitions.rst), by shells of pairs of steps
    (max(s, t) = 1, 2, ...) so that each point's variance Sigma_{t,t}(x, x) is known when needed."""
    n, a, b2 = len(x), leak, B_STD**2
    zero = np.zeros((n, n))
    c, e, f, th, te, tf, q = ({} for _ in range(7))
    get = lambda table, s, t: table.get((s, t), zero)
    pre = lambda s, t: W_STD**2 * get(c, s - 1, t - 1) + x[:, s - 1] @ x[:, t - 1].T / FEATURES + b2
    for shell in range(1, STEPS + 1):
        # The variances are the diagonal itself: a point with itself has correlation exactly 1.
        q[shell] = np.diag(pre(shell, shell))
        pairs = [(s, shell) for s in range(1, shell)] + [(shell, t) for t in range(1, shell)] + [(shell, shell)]
        for s, t in pairs if leak < 1 else [(shell, shell)]:
            sigma = pre(s, t)
            theta_z = sigma + W_STD**2 * get(th, s - 1, t - 1)
            g, g_dot = relu_dual(q[s][:, None], q[t][None, :], sigma)
            for (cc, ee, ff), value in (((c, e, f), g), ((th, te, tf), g_dot * theta_z)):
                ee[s, t] = (1 - a) * get(ee, s, t - 1) + a * value
                ff[s, t] = (1 - a) * get(ff, s - 1, t) + a * value
                cc[s, t] = ((1 - a) ** 2 * get(cc, s - 1, t - 1) + a * (1 - a) * (get(ee, s, t - 1) + get(ff, s - 1, t))
                            + a * a * value)
    nngp = c[STEPS, STEPS]
    return nngp, nngp + th[STEPS, STEPS]


@pytest.mark.parametrize("leak,n", [(1.0, 3000), (0.9, 600)])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_relu_recurrent_nngp_and_ntk(benchmark, x, leak, n, n_threads):
    points = x[:n]
    result = benchmark.pedantic(nnpk.analytic, args=(points,),
                                kwargs=dict(arch=arch(leak), get=("nngp", "ntk"), n_threads=n_threads),
                                rounds=3, warmup_rounds=1, iterations=1)
    rows = [0, 1, 2, 17, n // 2, n - 1]
    nngp, ntk = numpy_recursion(points[rows], leak)
    np.testing.assert_allclose(result["nngp"][np.ix_(rows, rows)], nngp, rtol=1e-11)
    np.testing.assert_allclose(result["ntk"][np.ix_(rows, rows)], ntk, rtol=1e-11)
    assert np.array_equal(result["nngp"], result["nngp"].T)

    seconds = benchmark.stats["min"]
    duals = n * (n + 1) / 2 * (STEPS if leak == 1 else STEPS**2)
    benchmark.extra_info.update(seconds=round(seconds, 3), dual_maps_per_second=f"{duals / seconds:.3g}")
    if leak == 1:
        sub = points[:1000]
        start = time.perf_counter()
        numpy_recursion(sub, leak)
        numpy_rate = len(sub) ** 2 * STEPS / (time.perf_counter() - start)
        mlp = nnpk.MLP(hidden=[512] * STEPS, activation="relu")
        start = time.perf_counter()
        nnpk.analytic(points.reshape(n, -1), arch=mlp, get=("nngp", "ntk"), n_threads=n_threads)
        mlp_rate = n * (n + 1) / 2 * STEPS / (time.perf_counter() - start)
        benchmark.extra_info.update(numpy_recursion_dual_maps_per_second=f"{numpy_rate:.3g}",
                                    ratio_to_numpy_recursion=round(duals / seconds / numpy_rate, 1),
                                    ratio_to_depth20_mlp=round(duals / seconds / mlp_rate, 2))
