"""The counter-based generator against numpy's Philox and the Gaussian transform."""

import math

import numpy as np
import pytest

import nnpk
from nnpk import _core


def numpy_philox_block(counter, key):
    """numpy's Philox output for one block at `counter` (numpy increments before a block)."""
    value = sum(int(w) << (64 * i) for i, w in enumerate(counter)) - 1
    before = np.array([(value >> (64 * i)) & (2**64 - 1) for i in range(4)], dtype=np.uint64)
    return np.random.Philox(key=np.array(key, dtype=np.uint64), counter=before).random_raw(4)


@pytest.mark.parametrize("key", [(0, 0), (12345, 0x6E6E706B5F763101), (2**64 - 1, 2**63 + 7)])
@pytest.mark.parametrize("counter", [(1, 0, 0, 0), (17, 3, 2**40 + 5, 9), (0, 1, 0, 0), (2**64 - 1, 5, 6, 7)])
def test_philox_block_equals_numpy(key, counter):
    expected = numpy_philox_block(counter, key)
    assert list(_core.philox4x64_10(list(counter), list(key))) == [int(v) for v in expected]


def test_philox_published_vector():
    # Random123 known-answer test kat_vectors: philox4x64_10, zero counter and key.
    out = _core.philox4x64_10([0, 0, 0, 0], [0, 0])
    assert [f"{v:016x}" for v in out] == ["16554d9eca36314c", "db20fe9d672d0fdc", "d7e772cee186176b",
                                          "7e68b68aec7ba23b"]


def test_normals_are_box_muller_of_numpy_philox():
    arch = nnpk.MLP(hidden=[3], out=2)
    eps, _ = _core.sequential_draw(arch.compile((5,)).spec, 42, 7, 1)  # layer 1: (3, 2), 6 draws = 2 blocks
    flat = eps.ravel()
    for block in range(2):
        raw = numpy_philox_block([block, (1 << 8) | 0, 7, 0], [42, 0x6E6E706B5F763101])
        u = ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
        r = np.sqrt(-2 * np.log(u[[0, 2]]))
        t = 2 * math.pi * u[[1, 3]]
        z = np.array([r[0] * np.cos(t[0]), r[0] * np.sin(t[0]), r[1] * np.cos(t[1]), r[1] * np.sin(t[1])])
        got = flat[4 * block : 4 * block + 4]  # the last block is cut at the layer's 6 elements
        np.testing.assert_allclose(got, z[: got.size], rtol=1e-14, atol=1e-15)


def test_draws_are_standard_normal_and_independent():
    arch = nnpk.MLP(hidden=[400], out=300, b_std=1.0)
    params = nnpk.sample_params(arch, 500, seed=3, index=0)
    w = params[0][0].ravel()
    assert abs(w.mean()) < 5 / math.sqrt(w.size)
    assert abs(w.var() - 1) < 5 * math.sqrt(2 / w.size)
    # Kolmogorov-Smirnov distance to N(0,1) for 200k draws: 1.6/sqrt(n) is the 1% level.
    from scipy import stats

    assert stats.kstest(w, "norm").statistic < 1.63 / math.sqrt(w.size)
    # layers, networks and seeds use different numbers
    other_net = nnpk.sample_params(arch, 500, seed=3, index=1)[0][0].ravel()
    other_seed = nnpk.sample_params(arch, 500, seed=4, index=0)[0][0].ravel()
    for other in (other_net, other_seed):
        assert abs(np.corrcoef(w, other)[0, 1]) < 5 / math.sqrt(w.size)
    b = params[0][1]
    assert b.shape == (400,) and not np.array_equal(b, w[:400])
