"""Issue 27 benchmark: the Monte Carlo NNGP of a two-block attention network against numpy's matrix product.

Config: points of 64 positions with 16 channels; a 1 x 1 convolution to width 256, then two blocks, each a
residual self-attention (4 heads, key and value widths 64, linear scaling, softmax) and a residual
position-wise relu MLP (256 -> 256 -> 256), then GlobalAvgPool and a Dense readout to 10 logits, in float32,
on 1,024 points. Effective FLOPs: every projection and convolution as its matrix product over the points'
positions, each head's logits Q K^T and weighted values A V (2 P^2 key_width and 2 P^2 value_width per point
and head), the readout, and one triangle of the Gram update of the logits. Target: effective rate >= 0.7 of
the reference, numpy's float32 matrix product measured in a child process in the same session
(bench/conftest.py).
"""

import math

import numpy as np

import nnpk
from nnpk import Conv, Dense, GlobalAvgPool, Network, Residual, SelfAttention

P, C_IN, WIDTH, HEADS, KEY, VALUE, OUT, N, M = 64, 16, 256, 4, 64, 64, 10, 1024, 8


def network() -> Network:
    block = [Residual([SelfAttention(HEADS, KEY, VALUE)]),
             Residual([Conv(WIDTH, 1), "relu", Conv(WIDTH, 1)], scale=0.5)]
    return Network([Conv(WIDTH, 1)] + block + block + [GlobalAvgPool(), Dense(OUT)])


def flops(net: Network, n: int, m: int) -> float:
    compiled = net.compile((P, C_IN))
    forward = 0
    for p in compiled.params:
        forward += 2 * n * p.positions * p.fan_in * p.fan_out
    attention = sum(1 for p in compiled.params if p.role == "out")
    forward += attention * n * HEADS * 2 * P * P * (KEY + VALUE)
    return m * (forward + n * (n + 1) * OUT)


def test_attention_rate(benchmark, sgemm_reference):
    x = np.random.default_rng(0).standard_normal((N, P, C_IN)).astype(np.float32)
    net = network()
    run = lambda: nnpk.monte_carlo(x, arch=net, n_networks=M, dtype="float32", n_threads=2)  # noqa: E731
    nnpk.monte_carlo(x[:128], arch=net, n_networks=1, dtype="float32")  # warm-up
    K = benchmark.pedantic(run, rounds=2, iterations=1)
    seconds = benchmark.stats.stats.min
    rate = flops(net, N, M) / seconds / 1e9
    sgemm = sgemm_reference.gflops
    ratio = rate / sgemm
    benchmark.extra_info.update(seconds=seconds, networks_per_second=M / seconds, gflops=rate,
                                numpy_sgemm_gflops=sgemm, numpy_sgemm_kernel=sgemm_reference.kernel, ratio=ratio)
    print(f"\nattention n={N} P={P} width={WIDTH} M={M}: {seconds:.2f} s, {M / seconds:.2f} networks/s, "
          f"{rate:.1f} GFLOP/s; numpy sgemm {sgemm:.1f} GFLOP/s; ratio {ratio:.2f} (target >= 0.7)")
    # The answer: the first points' kernel against the float64 engine on the same networks.
    n_check = 8
    ref = nnpk.monte_carlo(x[:n_check].astype(np.float64), arch=net, n_networks=M)
    assert np.abs(K[:n_check, :n_check] - ref).max() < 1e-3 * np.abs(ref).max()
    assert math.isfinite(ratio)
    assert ratio >= 0.7
