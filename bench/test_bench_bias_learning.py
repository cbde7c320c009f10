"""Issue 8 benchmark: bias gradients of a fixed random network, and a biases-only fit.

Config: a minibatch of 960 rows, d = 64, one hidden ReLU layer of 8192 units,
10 logits, float32: loss and bias gradients per call, as GFLOP/s against the
reference (numpy's float32 matrix product, measured in a child process in the same
session: bench/conftest.py) and as a speed-up over the same step in plain numpy
(the two products and the elementwise work, float32). And the
issue's test problem: 400 digits, width 4096, biases only, default settings.
"""

import math

import numpy as np
from sklearn.datasets import load_digits

import nnpk
from nnpk import _core
from conftest import best_time

N, D, WIDTH, OUT = 960, 64, 8192, 10
ARCH = nnpk.MLP(hidden=[WIDTH], out=OUT, activation="relu", W_std=math.sqrt(2), b_std=1.0,
                parameterization="standard")


def numpy_step(x, W1, b1, W2, b2, y):
    """Mean cross-entropy and its bias gradients, in plain numpy."""
    z = x @ W1 + b1
    f = np.maximum(z, 0) @ W2 + b2
    p = np.exp(f - f.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    loss = np.mean(-np.log(p[np.arange(len(y)), y]))
    p[np.arange(len(y)), y] -= 1
    p /= len(y)
    return loss, ((p @ W2.T) * (z > 0)).sum(axis=0), p.sum(axis=0)


def test_bias_gradient_rate(benchmark, sgemm_reference):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D)).astype(np.float32)
    y = rng.integers(0, OUT, N)
    params = [(W.astype(np.float32), b.astype(np.float32)) for W, b in nnpk.sample_params(ARCH, D, 0, 0)]
    spec = ARCH.compile((D,)).spec
    trainer = _core.SequentialTrainer(spec, [False, False], [True, True], nnpk.physical_cores(), "float32")
    labels = y.astype(np.int64)
    trainer.gradients(x, params, "cross_entropy", OUT, labels)
    loss, _, (g1, g2) = benchmark.pedantic(lambda: trainer.gradients(x, params, "cross_entropy", OUT, labels),
                                           rounds=5, iterations=3)
    seconds = benchmark.stats.stats.min
    (W1, b1), (W2, b2) = params
    numpy_seconds = best_time(lambda: numpy_step(x, W1, b1, W2, b2, y), repeats=5)
    flops = 2 * N * WIDTH * (D + 2 * OUT)  # first layer, readout, output gradient back to the hidden layer
    rate = flops / seconds / 1e9
    sgemm = sgemm_reference.gflops
    ratio = rate / sgemm
    benchmark.extra_info.update(seconds=seconds, gflops=rate, numpy_sgemm_gflops=sgemm,
                                numpy_sgemm_kernel=sgemm_reference.kernel, ratio=ratio,
                                numpy_step_seconds=numpy_seconds)
    print(f"\nbias gradients n={N} width={WIDTH}: {seconds * 1e3:.2f} ms, {rate:.0f} GFLOP/s, numpy sgemm "
          f"{sgemm:.0f} GFLOP/s, ratio {ratio:.2f}; the numpy step {numpy_seconds * 1e3:.2f} ms "
          f"({numpy_seconds / seconds:.1f}x slower)")
    expected = numpy_step(x.astype(np.float64), W1.astype(np.float64), b1.astype(np.float64),
                          W2.astype(np.float64), b2.astype(np.float64), y)
    assert abs(loss - expected[0]) < 1e-5 * abs(expected[0])
    np.testing.assert_allclose(g1, expected[1], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(g2, expected[2], rtol=1e-3, atol=1e-6)
    assert numpy_seconds > seconds


def test_digits_biases_only_fit(benchmark):
    x, y = load_digits(return_X_y=True)
    x, y = x[:400] - x[:400].mean(axis=0), y[:400]
    x /= math.sqrt(np.mean(np.sum(x * x, axis=1)) / x.shape[1])
    arch = nnpk.MLP(hidden=[4096], out=10, activation="relu", W_std=math.sqrt(2), b_std=1.0,
                    parameterization="standard")
    learner = benchmark.pedantic(lambda: nnpk.BiasLearner(arch, random_state=0).fit(x, y), rounds=2, iterations=1)
    seconds = benchmark.stats.stats.min
    accuracy = learner.score(x, y)
    benchmark.extra_info.update(seconds=seconds, train_accuracy=accuracy)
    print(f"\n400 digits, width 4096, biases only, 100 epochs of batch 96: {seconds:.2f} s, "
          f"training accuracy {accuracy:.3f}")
    assert accuracy >= 0.93
