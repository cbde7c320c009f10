"""The engine's products of packed factors (layer products, recurrent steps, weight gradients) against
numpy on odd shapes: 1 x n, n x 1, primes, shapes off every blocking factor (4-row and 48-column panels,
8-row tiles, 256-deep slices, 256-row chunks), strided and transposed views, both dtypes; and the same
bits whatever the blocks and threads."""

import numpy as np
import pytest

from nnpk import _core

SHAPES = [(1, 1, 1), (1, 700, 1), (1, 5, 97), (97, 3, 1), (3, 5, 7), (8, 256, 48), (13, 513, 100),
          (257, 301, 97), (29, 37, 143), (100, 1, 50), (260, 257, 49), (64, 512, 96), (521, 769, 193)]


def product(dtype):
    return {"float32": _core._packed_product_float32, "float64": _core._packed_product_float64}[dtype]


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m,k,n", SHAPES + [(1024, 300, 48), (37, 1100, 5), (16, 16, 16), (19, 18, 3)])
def test_packed_products_match_numpy(dtype, m, k, n, transposed):
    # transposed: both factors packed from their transposes (the layout of weight gradients' factors,
    # packed in float32 by vector transposes of 16 steps by 16 rows, the edges by scalars).
    rng = np.random.default_rng(m * 1000 + k + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    got = product(dtype)(a, b, 0.5, 256, 480, 1, transposed)
    exact = 0.5 * (a.astype(np.float64) @ b.astype(np.float64))
    scale = 0.5 * np.sqrt(k) * (1 + 0 * exact)  # entries of a and b are unit Gaussians
    tol = {"float32": 1e-5, "float64": 1e-13}[dtype]
    assert got.dtype == np.dtype(dtype) and got.shape == (m, n)
    np.testing.assert_allclose(got, exact, atol=tol * scale.max() * 4, rtol=tol * 4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_packed_products_are_the_same_bits_for_any_blocks_and_threads(dtype):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((261, 530)).astype(dtype)
    b = rng.standard_normal((530, 203)).astype(dtype)
    panel = 48 if dtype == "float32" else 24
    reference = product(dtype)(a, b, 1.5, 4096, 4800, 1)
    for rows, cols, threads in [(4, panel, 2), (12, 2 * panel, 1), (8, 3 * panel, 3), (256, panel, 2), (36, 4800, 2)]:
        np.testing.assert_array_equal(product(dtype)(a, b, 1.5, rows, cols, threads), reference)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_packed_products_read_strided_and_transposed_views(dtype):
    rng = np.random.default_rng(3)
    big = rng.standard_normal((300, 410)).astype(dtype)
    a = big[::3, 1::2]           # strided rows and columns: (100, 205)
    b = big[:205, ::5].T.T       # every fifth column: (205, 82)
    c = big[10:92, :205].T       # a transposed view: (205, 82)
    for right in (b, c):
        got = product(dtype)(a, right, 1.0, 16, 96, 2)
        single = dtype == "float32"
        np.testing.assert_allclose(got, a.astype(np.float64) @ right.astype(np.float64),
                                   rtol=1e-4 if single else 1e-12, atol=1e-3 if single else 1e-11)


def test_packed_products_refuse_misaligned_blocks():
    a = np.ones((8, 8), np.float32)
    with pytest.raises(ValueError, match="multiples of the panels"):
        _core._packed_product_float32(a, a, 1.0, 6, 48, 1)
    with pytest.raises(ValueError, match="a's columns and b's rows differ"):
        _core._packed_product_float32(a, np.ones((7, 8), np.float32), 1.0, 8, 48, 1)


def test_the_product_kernel_is_named():
    assert _core.product_kernel("float32") and _core.product_kernel("float64") == "Eigen's GEBP kernel on packed panels"
