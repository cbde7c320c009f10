"""Issues 9 and 15 benchmark: the Monte Carlo NNGP of a 4-layer random CNN against numpy's matrix product.

Config: Conv 3x3 (1-D: 3) with 64 channels, three times with relu, then GlobalAvgPool and a Dense
readout to 10 logits, in float32, on the first 512 and on all 1,797 8x8 digit images and on the
5,000 MNIST-1D signals of length 40 (skipped without the mnist1d package). The "sampled" estimator: every
layer, the readout included, is a matrix product. Effective FLOPs: each convolution as the
matrix product over patches (points x output positions x fan-in x channels), the readout
product, and one triangle of the Gram update of the logits. Target: effective rate >= 0.9 of
the reference, numpy's float32 matrix product measured in a child process in the same session
(bench/conftest.py; issue 15; issue 9 asked for 0.5).
"""

import math

import numpy as np
import pytest

import nnpk
from nnpk import Conv, Dense, GlobalAvgPool, Network

CHANNELS, OUT, CONV_LAYERS = 64, 10, 3
NETWORKS = {"digits512": 24, "digits": 24, "mnist1d": 24}


def cnn(dims: int) -> Network:
    kernel = (3, 3) if dims == 2 else 3
    layers = []
    for _ in range(CONV_LAYERS):
        layers += [Conv(CHANNELS, kernel), "relu"]
    return Network(layers + [GlobalAvgPool(), Dense(OUT)])


def flops(network: Network, point_shape, n: int, m: int) -> float:
    """Products of every parametrised layer (padding "same", stride 1: a conv keeps the positions)
    plus one triangle of the logits' Gram update, for m networks."""
    compiled = network.compile(point_shape)
    positions = math.prod(point_shape[:-1])
    forward = 0
    for p in compiled.params:
        per_point = positions if isinstance(p.layer, Conv) else 1
        forward += 2 * n * per_point * p.fan_in * p.fan_out
    return m * (forward + n * (n + 1) * OUT)


def numpy_cnn_logits(network: Network, params, x: np.ndarray) -> np.ndarray:
    """The CNN's logits in plain numpy float64: "same" convolutions as sums over kernel offsets."""
    h = x.astype(np.float64)
    layers = [layer for layer in network.layers if isinstance(layer, (Conv, Dense))]
    for layer, (W, _) in zip(layers, params):
        fan_in = int(np.prod(W.shape[:-1]))
        scale = layer.W_std / math.sqrt(fan_in)
        if isinstance(layer, Dense):
            return scale * h.mean(axis=tuple(range(1, h.ndim - 1))) @ W
        window = W.shape[:-2]
        pads = [((k - 1) // 2, k // 2) for k in window]  # XLA's "same": the odd one after
        padded = np.pad(h, [(0, 0)] + pads + [(0, 0)])
        out = 0
        for offset in np.ndindex(*window):
            view = padded[(slice(None),) + tuple(slice(o, o + s) for o, s in zip(offset, h.shape[1:-1]))]
            out = out + view @ W[offset]
        h = np.maximum(scale * out, 0)
    raise AssertionError("no readout")


def load(name: str) -> np.ndarray:
    if name.startswith("digits"):
        from sklearn.datasets import load_digits

        x = load_digits().data.reshape(-1, 8, 8, 1)
        x = x[:512] if name == "digits512" else x
    else:
        pytest.importorskip("mnist1d")
        from mnist1d.data import get_dataset_args, make_dataset

        data = make_dataset(get_dataset_args())
        x = np.concatenate([data["x"], data["x_test"]])[..., None]
    x = x - x.mean()
    return (x / x.std()).astype(np.float32)


@pytest.mark.parametrize("name", ["digits512", "digits", "mnist1d"])
def test_cnn_rate(benchmark, sgemm_reference, name):
    x = load(name)
    network = cnn(x.ndim - 2)
    m = NETWORKS[name]
    run = lambda: nnpk.monte_carlo(x, arch=network, n_networks=m, dtype="float32", n_threads=2, estimator="sampled")
    nnpk.monte_carlo(x[:256], arch=network, n_networks=2, dtype="float32", estimator="sampled")  # warm-up
    K = benchmark.pedantic(run, rounds=2, iterations=1)
    seconds = benchmark.stats.stats.min
    rate = flops(network, x.shape[1:], len(x), m) / seconds / 1e9
    sgemm = sgemm_reference.gflops
    ratio = rate / sgemm
    benchmark.extra_info.update(seconds=seconds, networks_per_second=m / seconds, gflops=rate,
                                numpy_sgemm_gflops=sgemm, numpy_sgemm_kernel=sgemm_reference.kernel, ratio=ratio)
    print(f"\n{name} CNN n={len(x)} M={m}: {seconds:.2f} s, {m / seconds:.2f} networks/s, {rate:.1f} GFLOP/s; "
          f"numpy sgemm {sgemm:.1f} GFLOP/s; ratio {ratio:.2f} (target >= 0.9)")
    n_check = 12
    ref = sum(f @ f.T / OUT for f in (numpy_cnn_logits(network, nnpk.sample_params(network, x.shape[1:], 0, i),
                                                       x[:n_check]) for i in range(m))) / m
    assert np.abs(K[:n_check, :n_check] - ref).max() < 1e-4 * np.abs(ref).max()
    assert ratio >= 0.9
