"""Issue 2 benchmark: the Monte Carlo NNGP engine against numpy's matrix product.

Config: n = 4096 Gaussian points, d = 784, hidden [512, 512], out 10, relu,
128 networks, float32 forward passes. Targets: effective rate >= 0.7 of the reference
(numpy's float32 matrix product, measured in a child process in the same session:
bench/conftest.py); 1 -> 2 threads speed-up >= 1.8; peak memory within 10% of the output
array plus the input.
"""

import numpy as np

import nnpk
from conftest import best_time, peak_memory

N, D, HIDDEN, OUT, M = 4096, 784, [512, 512], 10, 128
ARCH = nnpk.MLP(hidden=HIDDEN, out=OUT)


def flops(n, m):
    """Forward-pass products plus one triangle of the Gram update, per the issue."""
    widths = [D] + HIDDEN + [OUT]
    forward = 2 * n * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    gram = n * (n + 1) * OUT
    return m * (forward + gram)


def data(n=N):
    return np.random.default_rng(0).standard_normal((n, D), dtype=np.float32)


def check_against_numpy(x, K, n_check=12, networks=M):
    """The top-left block equals a plain numpy float64 forward pass on sample_params."""
    xs = x[:n_check].astype(np.float64)
    ref = 0
    for m in range(networks):
        h = xs
        params = nnpk.sample_params(ARCH, D, 0, m)
        for l, (W, _) in enumerate(params):
            z = (h @ W) / np.sqrt(h.shape[1])
            h = np.maximum(z, 0) if l < len(params) - 1 else z
        ref = ref + h @ h.T / OUT
    ref /= networks
    assert np.abs(K[:n_check, :n_check] - ref).max() < 1e-4 * np.abs(ref).max()


def test_monte_carlo_rate(benchmark, sgemm_reference):
    x = data()
    nnpk.monte_carlo(x[:512], arch=ARCH, n_networks=2, dtype="float32", estimator="sampled")  # warm-up
    K = benchmark.pedantic(lambda: nnpk.monte_carlo(x, arch=ARCH, n_networks=M, dtype="float32", n_threads=2,
                                                    estimator="sampled"),
                           rounds=2, iterations=1)
    seconds = benchmark.stats.stats.min
    rate = flops(N, M) / seconds / 1e9
    sgemm = sgemm_reference.gflops
    ratio = rate / sgemm
    benchmark.extra_info.update(seconds=seconds, gflops=rate, numpy_sgemm_gflops=sgemm,
                                numpy_sgemm_kernel=sgemm_reference.kernel, ratio=ratio)
    print(f"\nmonte_carlo n={N} M={M}: {seconds:.2f} s, {rate:.0f} GFLOP/s; numpy sgemm {sgemm:.0f} GFLOP/s; "
          f"ratio {ratio:.2f} (target >= 0.7)")
    check_against_numpy(x, K)
    assert ratio >= 0.7


def test_thread_speedup(benchmark):
    x = data()
    m = 32
    run = lambda t: nnpk.monte_carlo(x, arch=ARCH, n_networks=m, dtype="float32", n_threads=t, estimator="sampled")
    run(2)
    one = best_time(lambda: run(1))
    two = benchmark.pedantic(lambda: run(2), rounds=2, iterations=1)
    two_s = benchmark.stats.stats.min
    speedup = one / two_s
    benchmark.extra_info.update(one_thread_s=one, two_threads_s=two_s, speedup=speedup)
    print(f"\n1 thread {one:.2f} s, 2 threads {two_s:.2f} s: speed-up {speedup:.2f} (target >= 1.8)")
    assert np.array_equal(two, run(1))
    assert speedup >= 1.8


def test_peak_memory(benchmark):
    setup = f"x = np.random.default_rng(0).standard_normal(({N}, {D}), dtype=np.float32)"
    call = (f"K = nnpk.monte_carlo(x, arch=nnpk.MLP(hidden={HIDDEN}, out={OUT}), n_networks=16, estimator='sampled', "
            f"dtype='float32', n_threads=2)")
    mem = benchmark.pedantic(lambda: peak_memory(setup, call), rounds=1, iterations=1)
    output, inputs = N * N * 8, N * D * 4
    # The call's own peak above the process after its input exists, plus the input.
    used = mem["peak"] - mem["after_setup"] + inputs
    ratio = used / (output + inputs)
    benchmark.extra_info.update(peak_mb=used / 2**20, output_plus_input_mb=(output + inputs) / 2**20, ratio=ratio)
    print(f"\npeak {used / 2**20:.1f} MiB (call + input) for output + input {(output + inputs) / 2**20:.1f} MiB: "
          f"ratio {ratio:.3f} (target <= 1.10)")
    assert ratio <= 1.10
