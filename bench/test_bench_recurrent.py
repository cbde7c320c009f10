"""Issue 23 benchmark: recurrent networks against numpy's matrix product in the same run.

1. A training step by backpropagation through time: Recurrent(1024, return_sequences=True) on sequences of 50
   steps of 32 features, a Dense readout of 32 at every step, minibatches of 256 sequences, float32, every
   parameter trained by SGD with momentum, the squared loss of every step. Effective FLOPs: the forward products
   (inputs, 49 recurrent steps -- h_0 = 0 needs none --, the readout), the backward ones (the readout's gradient
   and error, 49 steps of errors through W^T, the gradients of U and W). Target: >= 0.7 of numpy's sgemm.
2. The Monte Carlo NNGP of Recurrent(1024) -> Dense(10) over 2,048 sequences of 20 steps (the default
   estimator, which integrates the readout): per network the input products, 19 recurrent steps and the Gram of
   h_T (one triangle). Target: >= 0.85 of numpy's sgemm.

Both for relu and tanh; the sizes swept beside the issue's (fewer sequences, a narrower network) are printed
for the record. numpy's sgemm is the reference of bench/conftest.py: numpy's float32 product in a child process.
The machine is shared: the reference is measured before and after the engine's timings, each keeping its best.
"""

import math
import time

import numpy as np
import pytest

import nnpk
from conftest import best_time_around_references

D = 32


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best_rates(fn, flops: float, rounds: int = 4):
    """(best seconds of fn, its GFLOP/s, the reference's best float32 GFLOP/s, measured before and after)."""
    seconds, reference = best_time_around_references(fn, rounds)
    return seconds, flops / seconds / 1e9, reference.gflops


def bptt_flops(batch: int, steps: int, m: int) -> float:
    forward = 2 * batch * (steps * D * m + (steps - 1) * m * m + steps * m * D)
    backward = 2 * batch * (2 * steps * m * D + 2 * (steps - 1) * m * m + steps * D * m)
    return forward + backward


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("batch,steps,width,target", [(256, 50, 1024, 0.7), (96, 20, 256, None)])
def test_bptt_training_step_rate(activation, batch, steps, width, target):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, steps + 1, D)).astype(np.float32)
    net = nnpk.Network([nnpk.Recurrent(width, activation, W_std=1.0, b_std=0.1, return_sequences=True),
                        nnpk.Dense(D)], parameterization="standard")
    learner = nnpk.NetworkLearner(net, optimizer="sgd", lr=1e-3, momentum=0.9, batch_size=batch, dtype="float32",
                                  epochs=1)
    learner.partial_fit(x[:, :-1], x[:, 1:])
    step = learner._stepper(x[:, :-1], x[:, 1:])
    seconds, rate, sgemm = best_rates(step, bptt_flops(batch, steps, width))
    print(f"\n| BPTT step | {activation} | batch {batch}, {steps} steps, width {width} | {seconds * 1e3:.0f} ms | "
          f"{rate:.0f} GFLOP/s | numpy sgemm {sgemm:.0f} | ratio {rate / sgemm:.2f} |")
    assert np.isfinite(learner.history_["loss"]).all()
    if target is not None:
        assert rate / sgemm >= target


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("n,steps,width,target", [(2048, 20, 1024, 0.85), (512, 20, 1024, None),
                                                  (2048, 20, 256, None)])
def test_monte_carlo_nngp_rate(activation, n, steps, width, target):
    x = np.random.default_rng(1).standard_normal((n, steps, D)).astype(np.float32)
    net = nnpk.Network([nnpk.Recurrent(width, activation, W_std=1.0, b_std=0.1), nnpk.Dense(10)])
    networks = 4
    flops = networks * (2 * n * (steps * D * width + (steps - 1) * width * width) + n * n * width)
    K = None

    def run():
        nonlocal K
        K = nnpk.monte_carlo(x, arch=net, n_networks=networks, dtype="float32")

    seconds, rate, sgemm = best_rates(run, flops, rounds=3)
    print(f"\n| Monte Carlo NNGP | {activation} | n {n}, {steps} steps, width {width}, {networks} networks | "
          f"{seconds:.2f} s | {rate:.0f} GFLOP/s | numpy sgemm {sgemm:.0f} | ratio {rate / sgemm:.2f} |")
    # The answer: the readout estimator is the mean over the networks of h_T . h_T' / width (W_std 1, no bias),
    # checked on a corner against a numpy forward pass of the sampled parameters.
    phi = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh}[activation]
    corner = np.zeros((6, 6))
    for m in range(networks):
        (U, b), (W, _), _ = nnpk.sample_params(net, (steps, D), 0, m)
        h = np.zeros((6, width))
        for t in range(steps):
            h = phi(h @ W / math.sqrt(width) + x[:6, t] @ U / math.sqrt(D) + 0.1 * b)
        corner += h @ h.T / width / networks
    np.testing.assert_allclose(K[:6, :6], corner, rtol=2e-3)
    if target is not None:
        assert rate / sgemm >= target
