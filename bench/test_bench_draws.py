"""Draw scheme benchmark (nnpk_v3): the vectorised Philox4x32-10 + float32 Box-Muller generator.

Target: at most 1 ns per float32 normal per core for the generator alone (one thread). Also
drawing the parameters of an MLP [512, 512] -> 10 on 784 features (669k normals), against the
previous scheme nnpk_v1 (scalar Philox4x64-10 and float64 libm Box-Muller: about 15 ns per
normal, 10 ms for this MLP on the same machine at commit 441d27b) and against numpy's own
float32 normals measured in the same run. Each benchmark checks the draws' moments.
"""

import math

import numpy as np

import nnpk
from nnpk import _core
from conftest import best_time

N_NORMALS = 4 << 20
ARCH = nnpk.MLP(hidden=[512, 512], out=10)
D = 784
TARGET_NS = 1.0
V1_NS_PER_NORMAL = 15.0


def check_standard_normal(z):
    """Mean, variance, skewness and excess kurtosis within 5 standard errors of N(0, 1)'s."""
    z = np.asarray(z, dtype=np.float64)
    n = z.size
    c = z - z.mean()
    var = np.mean(c**2)
    assert abs(z.mean()) < 5 * math.sqrt(1 / n)
    assert abs(var - 1) < 5 * math.sqrt(2 / n)
    assert abs(np.mean(c**3) / var**1.5) < 5 * math.sqrt(6 / n)
    assert abs(np.mean(c**4) / var**2 - 3) < 5 * math.sqrt(24 / n)


def numpy_ns_per_normal(n=N_NORMALS):
    rng = np.random.default_rng(0)
    return best_time(lambda: rng.standard_normal(n, dtype=np.float32), repeats=5) / n * 1e9


def test_generator_ns_per_normal(benchmark):
    # One thread, GIL released, into a buffer written before (as the engine's draws are): a fresh array's
    # first touch (page faults, 16 MiB zeroed by the kernel) would be timed with the generator otherwise.
    buffer = np.zeros(N_NORMALS, dtype=np.float32)
    draw = lambda: _core.gaussian_stream(2024, 0, 0, 0, 0, N_NORMALS, buffer)
    draw()
    z = benchmark.pedantic(draw, rounds=5, iterations=1)
    ns = benchmark.stats.stats.min / N_NORMALS * 1e9
    fresh_ns = best_time(lambda: _core.gaussian_stream(2024, 0, 0, 0, 0, N_NORMALS), repeats=5) / N_NORMALS * 1e9
    numpy_ns = numpy_ns_per_normal()
    benchmark.extra_info.update(ns_per_normal=ns, numpy_ns_per_normal=numpy_ns, target_ns=TARGET_NS)
    print(f"\nnnpk_v3 generator, one thread: {ns:.3f} ns per float32 normal (target <= {TARGET_NS:.1f} ns: "
          f"{'met' if ns <= TARGET_NS else 'missed'}); nnpk_v1 about {V1_NS_PER_NORMAL:.0f} ns; "
          f"numpy default_rng float32 {numpy_ns:.2f} ns ({numpy_ns / ns:.1f}x ours); into a fresh array "
          f"{fresh_ns:.3f} ns")
    assert z.dtype == np.float32 and z.shape == (N_NORMALS,)
    check_standard_normal(z)


def test_draw_mlp(benchmark):
    shapes = [(D, 512), (512, 512), (512, 10)]
    n = sum(a * b for a, b in shapes)
    streams = lambda: [_core.gaussian_stream(0, 0, l, 0, 0, a * b) for l, (a, b) in enumerate(shapes)]
    streams()
    stream_s = best_time(streams, repeats=5)
    params = benchmark.pedantic(lambda: nnpk.sample_params(ARCH, D, 0, 0), rounds=5, iterations=1)
    seconds = benchmark.stats.stats.min
    v1_s = V1_NS_PER_NORMAL * n * 1e-9
    benchmark.extra_info.update(normals=n, stream_seconds=stream_s, sample_params_seconds=seconds)
    print(f"\nMLP [512, 512] on {D} features, {n} normals: streams {stream_s * 1e3:.2f} ms "
          f"({stream_s / n * 1e9:.2f} ns per normal), sample_params (float64 arrays) {seconds * 1e3:.2f} ms; "
          f"nnpk_v1 about {v1_s * 1e3:.1f} ms ({v1_s / stream_s:.0f}x)")
    assert [W.shape for W, _ in params] == shapes
    check_standard_normal(np.concatenate([W.ravel() for W, _ in params]))
