"""The draw scheme nnpk_v2 against an independent numpy Philox4x32-10 and Box-Muller: the
published Random123 answers, the stream layout, the laws of the draws, their determinism and
the limits of the (seed, network, layer, stream) -> (key, counter) mapping."""

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scipy import stats

import nnpk
from nnpk import _core

MASK = 0xFFFFFFFF
CHUNK_BLOCKS = 64  # a chunk's blocks; element 256 c + 64 w + i is word w of block 64 c + i


def numpy_philox4x32_10(counters, key):
    """Philox4x32-10 (Salmon et al. 2011) of counters (n, 4) under key (2,), in uint64 arithmetic."""
    x = [np.asarray(counters, dtype=np.uint64).reshape(-1, 4)[:, w] for w in range(4)]
    k0, k1 = int(key[0]), int(key[1])
    for _ in range(10):
        p0 = x[0] * np.uint64(0xD2511F53)  # 32 x 32 bits: exact in uint64
        p1 = x[2] * np.uint64(0xCD9E8D57)
        x = [(p1 >> np.uint64(32)) ^ x[1] ^ np.uint64(k0), p1 & np.uint64(MASK),
             (p0 >> np.uint64(32)) ^ x[3] ^ np.uint64(k1), p0 & np.uint64(MASK)]
        k0, k1 = (k0 + 0x9E3779B9) & MASK, (k1 + 0xBB67AE85) & MASK
    return np.stack(x, axis=-1).astype(np.uint32)


def numpy_stream_words(seed, network, layer, stream, n_chunks):
    """Words (chunk, word, block in chunk) of a stream, from the documented key and counter layout."""
    key = ((seed & MASK) ^ 0x6E6E706B, (seed >> 32) ^ 0x5F763032)
    blocks = np.arange(n_chunks * CHUNK_BLOCKS, dtype=np.uint64)
    fixed = [layer << 4 | stream, network & MASK, network >> 32]
    counters = np.stack([blocks] + [np.full_like(blocks, w) for w in fixed], axis=-1)
    return numpy_philox4x32_10(counters, key).reshape(n_chunks, CHUNK_BLOCKS, 4).transpose(0, 2, 1)


def numpy_normals(seed, network, layer, stream, n):
    """The stream's first n normals in float64: Box-Muller of words (2p, 2p + 1), radius uniform
    (k + 1) 2^-24, angle uniform k 2^-24 on the top 24 bits k, r cos t at word 2p, r sin t at 2p + 1."""
    k = numpy_stream_words(seed, network, layer, stream, -(-n // 256)).astype(np.float64) // 256
    r = np.sqrt(-2 * np.log((k[:, 0::2] + 1) * 2.0**-24))
    t = 2 * math.pi * k[:, 1::2] * 2.0**-24
    z = np.empty_like(k)
    z[:, 0::2], z[:, 1::2] = r * np.cos(t), r * np.sin(t)
    radius = np.repeat(r, 2, axis=1)
    return z.reshape(-1)[:n], radius.reshape(-1)[:n]


def numpy_uniforms(seed, network, layer, stream, n):
    """The stream's first n uniforms (k + 1/2) 2^-24 on (0, 1), in the same element order."""
    k = numpy_stream_words(seed, network, layer, stream, -(-n // 256)).astype(np.float64) // 256
    return ((k + 0.5) * 2.0**-24).reshape(-1)[:n]


# Random123 kat_vectors for philox4x32_10: (counter, key, answer).
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((MASK,) * 4, (MASK,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, answer", KNOWN_ANSWERS)
def test_philox_known_answers(counter, key, answer):
    assert tuple(_core.philox4x32_10(list(counter), list(key))) == answer
    assert tuple(int(v) for v in numpy_philox4x32_10([counter], key)[0]) == answer


def test_philox_block_equals_numpy():
    rng = np.random.default_rng(5)
    for counter, key in zip(rng.integers(0, 2**32, (20, 4)), rng.integers(0, 2**32, (20, 2))):
        expected = numpy_philox4x32_10([counter], key)[0]
        assert list(_core.philox4x32_10([int(c) for c in counter], [int(k) for k in key])) == [int(v) for v in expected]


@pytest.mark.parametrize("seed, network, layer, stream", [(42, 7, 1, 0), (2**64 - 1, 2**40 + 3, 2**28 - 1, 1)])
def test_normals_are_box_muller_of_numpy_philox(seed, network, layer, stream):
    n = 3 * 256 + 100
    got = _core.gaussian_stream(seed, network, layer, stream, 0, n).astype(np.float64)
    expected, radius = numpy_normals(seed, network, layer, stream, n)
    # float32 arithmetic: a few roundings of the radius and of the angle (up to 2 pi: ulp 2^-21)
    assert np.all(np.abs(got - expected) <= 2.0**-20 * radius + 2.0**-22 * np.abs(expected))


def test_engine_draws_are_the_streams_in_both_dtypes():
    """sample_params (float64) holds the float32 stream values exactly: weights stream 0, biases 1."""
    arch = nnpk.MLP(hidden=[30], out=20, b_std=1.0)
    params = nnpk.sample_params(arch, 40, seed=9, index=3)
    for layer, (W, b) in enumerate(params):
        expected = _core.gaussian_stream(9, 3, layer, 0, 0, W.size)
        assert W.dtype == np.float64 and np.array_equal(W.ravel(), expected.astype(np.float64))
        assert np.array_equal(b, _core.gaussian_stream(9, 3, layer, 1, 0, b.size))
    z, _ = numpy_normals(9, 3, 0, 0, params[0][0].size)
    np.testing.assert_allclose(params[0][0].ravel(), z, rtol=0, atol=1e-5)


def test_uniform_schemes_take_the_streams_uniforms():
    n_in, n_out = 37, 29
    u = numpy_uniforms(11, 2, 0, 0, n_in * n_out)
    W = nnpk.sample_params(nnpk.Network([nnpk.Dense(n_out)], init="uniform"), n_in, 11, 2)[0][0]
    assert np.array_equal(W.ravel(), (math.sqrt(3) * (2 * u - 1)).astype(np.float32))
    W = nnpk.sample_params(nnpk.Network([nnpk.Dense(n_out)], init="truncated_normal"), n_in, 11, 2)[0][0]
    law = stats.truncnorm(-2.0, 2.0)
    expected = law.ppf(u) / law.std()
    np.testing.assert_allclose(W.ravel(), expected, rtol=2e-7, atol=1e-7)
    assert np.array_equal(W, W.astype(np.float32))


def test_moments_and_kolmogorov_smirnov():
    n = 10**6
    z = _core.gaussian_stream(2024, 0, 0, 0, 0, n).astype(np.float64)
    # standard errors of the sample mean, variance, skewness and excess kurtosis of N(0, 1)
    assert abs(z.mean()) < 5 * math.sqrt(1 / n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / n)
    assert stats.kstest(z, stats.norm.cdf).pvalue > 1e-3
    # the radius grid's smallest uniform 2^-24 bounds |z| by sqrt(48 log 2)
    assert np.abs(z).max() <= math.sqrt(48 * math.log(2)) * (1 + 1e-6)


def test_any_chunking_offset_and_thread_gives_the_same_bits():
    full = _core.gaussian_stream(1, 2, 3, 0, 0, 5000)
    for begin, end in [(0, 1), (1, 2), (255, 257), (256, 512), (100, 4999), (4095, 5000), (777, 777)]:
        assert np.array_equal(_core.gaussian_stream(1, 2, 3, 0, begin, end), full[begin:end])
    pieces = [(b, min(5000, b + 333)) for b in range(0, 5000, 333)]
    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(lambda be: _core.gaussian_stream(1, 2, 3, 0, *be), pieces * 3))
    assert all(np.array_equal(p, full[b:e]) for p, (b, e) in zip(parts, pieces * 3))
    # the engine splits a layer's draws over threads in chunks: the same results on 1 and 2 threads
    x = np.random.default_rng(0).standard_normal((20, 200), dtype=np.float32)
    arch = nnpk.MLP(hidden=[400], out=3, b_std=0.5)  # an 80000-element layer: several chunks
    one, two = (nnpk.monte_carlo(x, arch=arch, n_networks=3, estimator="sampled", n_threads=t) for t in (1, 2))
    assert np.array_equal(one, two)


@pytest.mark.parametrize("change", [dict(seed=1), dict(seed=2**32), dict(network=1), dict(network=2**32),
                                    dict(layer=1), dict(layer=2**27), dict(stream=1)])
def test_distinct_streams_differ(change):
    base = dict(seed=0, network=0, layer=0, stream=0)
    first = _core.gaussian_stream(**base, begin=0, end=4096)
    other = _core.gaussian_stream(**{**base, **change}, begin=0, end=4096)
    assert np.mean(first == other) < 0.01
    assert abs(np.corrcoef(first, other)[0, 1]) < 5 / math.sqrt(first.size)


def test_limits_of_the_mapping_are_refused():
    last = _core.gaussian_stream(0, 0, 2**28 - 1, 0, 2**34 - 300, 2**34)  # the last layer's last blocks
    assert last.shape == (300,) and np.all(np.isfinite(last))
    with pytest.raises(ValueError, match="limit of 2\\^28 layers"):
        _core.gaussian_stream(0, 0, 2**28, 0, 0, 4)
    with pytest.raises(ValueError, match="limit of 2\\^34 per layer"):
        _core.gaussian_stream(0, 0, 0, 0, 2**34 - 4, 2**34 + 1)
    with pytest.raises(ValueError, match="stream must be"):
        _core.gaussian_stream(0, 0, 0, 2, 0, 4)


def test_gaussian_stream_into_a_given_buffer():
    """`out` receives exactly the values a fresh array would; a wrong buffer is refused, naming it."""
    out = np.full(1000, np.nan, dtype=np.float32)
    got = _core.gaussian_stream(4, 1, 2, 0, 100, 1100, out)
    assert got is out or np.shares_memory(got, out)
    assert np.array_equal(out, _core.gaussian_stream(4, 1, 2, 0, 100, 1100))
    frozen = np.zeros(1000, np.float32)
    frozen.flags.writeable = False
    for bad in (np.zeros(999, np.float32), np.zeros(1000, np.float64), np.zeros(2000, np.float32)[::2],
                np.zeros((10, 100), np.float32), frozen, [0.0] * 1000):
        with pytest.raises(ValueError, match="out must be a writeable contiguous float32 array of end - begin = 1000"):
            _core.gaussian_stream(4, 1, 2, 0, 100, 1100, bad)
