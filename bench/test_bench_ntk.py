"""Issue 4 benchmark: the empirical NTK at initialisation, layer by layer.

Config: n = 2048 Gaussian points, d = 784, hidden [512, 512], out 10, relu,
8 networks, float32, full NTK: seconds, peak memory and effective GFLOP/s
against the reference (numpy's float32 matrix product, measured in a child process in
the same session: bench/conftest.py; target ratio >= 0.6).
And n = 256 with 4 networks, the size at which a Jacobian-based JAX tool took
214 s and 24 GB (target: under 0.5 s and under 1 GB).
"""

import numpy as np

import nnpk
from conftest import peak_memory

D, HIDDEN, OUT = 784, [512, 512], 10
ARCH = nnpk.MLP(hidden=HIDDEN, out=OUT)


def flops(n, m):
    """Forward, backward to the first layer, and one triangle of each Gram the kernel needs."""
    widths = [D] + HIDDEN + [OUT]
    forward = 2 * n * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    backward = 2 * n * OUT * HIDDEN[0] * HIDDEN[1]
    # layer 0: delta (C * n_1) and input (d); layer 1: delta shortcut (n_2) and input (n_1); readout input (n_2)
    gram_width = OUT * HIDDEN[0] + D + HIDDEN[1] + HIDDEN[0] + HIDDEN[1]
    return m * (forward + backward + n * (n + 1) * gram_width)


def data(n):
    return np.random.default_rng(0).standard_normal((n, D), dtype=np.float32)


def check_against_jacobian_free_reference(x, K, networks, n_check=5):
    """A few entries against a float64 numpy backprop over the same sampled weights."""
    xs = x[:n_check].astype(np.float64)
    total = 0
    for m in range(networks):
        (W0, _), (W1, _), (W2, _) = nnpk.sample_params(ARCH, D, 0, m)
        s0, s1, s2 = 1 / np.sqrt(D), 1 / np.sqrt(HIDDEN[0]), 1 / np.sqrt(HIDDEN[1])
        z1 = s0 * xs @ W0
        h1 = np.maximum(z1, 0)
        z2 = s1 * h1 @ W1
        h2 = np.maximum(z2, 0)
        # d f_c / d z2 = s2 W2[:, c] * relu'(z2); d f_c / d z1 = (s1 W1 @ that) * relu'(z1)
        d2 = s2 * W2.T[None, :, :] * (z2 > 0)[:, None, :]          # (n, C, n2)
        d1 = np.einsum("ncj,ij->nci", d2, s1 * W1) * (z1 > 0)[:, None, :]
        theta = (np.einsum("ncj,mcj->nm", d1, d1) * (s0**2 * xs @ xs.T)
                 + np.einsum("ncj,mcj->nm", d2, d2) * (s1**2 * h1 @ h1.T)
                 + OUT * s2**2 * h2 @ h2.T)
        total = total + theta / OUT
    ref = total / networks
    assert np.abs(K[:n_check, :n_check] - ref).max() < 1e-4 * np.abs(ref).max()


def test_ntk_rate(benchmark, sgemm_reference):
    n, m = 2048, 8
    x = data(n)
    nnpk.monte_carlo(x[:200], arch=ARCH, n_networks=1, get="ntk", dtype="float32")
    K = benchmark.pedantic(lambda: nnpk.monte_carlo(x, arch=ARCH, n_networks=m, get="ntk", dtype="float32"),
                           rounds=2, iterations=1)
    seconds = benchmark.stats.stats.min
    rate = flops(n, m) / seconds / 1e9
    sgemm = sgemm_reference.gflops
    ratio = rate / sgemm
    mem = peak_memory(f"x = np.random.default_rng(0).standard_normal(({n}, {D}), dtype=np.float32)",
                      f"nnpk.monte_carlo(x, arch=nnpk.MLP(hidden={HIDDEN}, out={OUT}), n_networks=1, get='ntk', "
                      f"dtype='float32')")
    peak_mib = (mem["peak"] - mem["after_setup"]) / 2**20
    benchmark.extra_info.update(seconds=seconds, gflops=rate, numpy_sgemm_gflops=sgemm,
                                numpy_sgemm_kernel=sgemm_reference.kernel, ratio=ratio, peak_mib=peak_mib)
    print(f"\nNTK n={n} M={m}: {seconds:.2f} s, {rate:.0f} GFLOP/s, numpy sgemm {sgemm:.0f} GFLOP/s, "
          f"ratio {ratio:.2f} (target >= 0.6); peak {peak_mib:.0f} MiB above the input")
    check_against_jacobian_free_reference(x, K, m)
    assert ratio >= 0.6


def test_ntk_small(benchmark):
    n, m = 256, 4
    x = data(n)
    nnpk.monte_carlo(x[:100], arch=ARCH, n_networks=1, get="ntk", dtype="float32")
    K = benchmark.pedantic(lambda: nnpk.monte_carlo(x, arch=ARCH, n_networks=m, get="ntk", dtype="float32"),
                           rounds=3, iterations=1)
    seconds = benchmark.stats.stats.min
    mem = peak_memory(f"x = np.random.default_rng(0).standard_normal(({n}, {D}), dtype=np.float32)",
                      f"nnpk.monte_carlo(x, arch=nnpk.MLP(hidden={HIDDEN}, out={OUT}), n_networks={m}, get='ntk', "
                      f"dtype='float32')")
    peak_mib = (mem["peak"] - mem["baseline"]) / 2**20
    benchmark.extra_info.update(seconds=seconds, peak_mib=peak_mib)
    print(f"\nNTK n={n} M={m}: {seconds:.3f} s (target < 0.5 s), peak {peak_mib:.0f} MiB (target < 1024 MiB)")
    check_against_jacobian_free_reference(x, K, m)
    assert seconds < 0.5 and peak_mib < 1024
