"""Issue 24 benchmark: a training step of the linearised network against the network's own step.

LeNet (Conv 6 5x5, AvgPool 2, Conv 16 5x5, AvgPool 2, Dense 120, Dense 84, Dense 1; relu; "valid" convolutions)
on 28 x 28 images and, with 1-D convolutions, on MNIST-1D-shaped points (40 x 1); minibatches of 128, float32,
SGD with momentum 0.9 and the logistic loss, every parameter trained. The linearised step runs the forward
pass at theta_0, a forward-mode tangent pass (J (theta - theta_0)) and the backward pass at theta_0; the
network's own step a forward and a backward pass. Target: the linearised step within 2.5x the network's.
Both are timed in turns in the same process (the machine is shared), each keeping its best.
"""

import math
import time

import numpy as np
import pytest

import nnpk

BATCH = 128


def lenet(dims: int) -> nnpk.Network:
    kernel, pool = (5, 5)[:dims], (2, 2)[:dims]
    if dims == 1:
        kernel, pool = 5, 2
    gain = math.sqrt(2)
    return nnpk.Network([nnpk.Conv(6, kernel, padding="valid", W_std=gain, b_std=0.0), "relu", nnpk.AvgPool(pool),
                         nnpk.Conv(16, kernel, padding="valid", W_std=gain, b_std=0.0), "relu", nnpk.AvgPool(pool),
                         nnpk.Flatten(), nnpk.Dense(120, W_std=gain, b_std=0.0), "relu",
                         nnpk.Dense(84, W_std=gain, b_std=0.0), "relu", nnpk.Dense(1, b_std=0.0)],
                        parameterization="standard")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@pytest.mark.parametrize("shape", [(28, 28, 1), (40, 1)])
def test_linearised_step_against_the_network_step(shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH,) + shape).astype(np.float32)
    y = (x.reshape(BATCH, -1)[:, 0] > 0).astype(int)
    arch = lenet(len(shape) - 1)
    steps = {}
    for linear in (False, True):
        learner = nnpk.NetworkLearner(arch, linearize=linear, loss="logistic", optimizer="sgd", lr=0.05, momentum=0.9,
                                      batch_size=BATCH, dtype="float32", epochs=1)
        learner.partial_fit(x, y)
        steps[linear] = learner._stepper(x, y)
        steps[linear]()
    best = {False: math.inf, True: math.inf}
    for _ in range(15):
        for linear in (False, True):
            best[linear] = min(best[linear], timed(steps[linear]))
    ratio = best[True] / best[False]
    print(f"\n| LeNet {shape} | network step {best[False] * 1e3:.2f} ms | linearised step {best[True] * 1e3:.2f} ms "
          f"| ratio {ratio:.2f} |")
    assert ratio <= 2.5
