"""monte_carlo against an independent numpy forward pass, and its promises."""

import math

import numpy as np
import pytest

import nnpk
from engine_sums import kernel_sums as _kernel_sums
from reference import NEEDS_PARAMETER, arccos1, mc_kernels

RNG = np.random.default_rng(1)


def sampled(*args, **kwargs):
    """The plain estimator: the average of f . f' / C over sampled networks."""
    return nnpk.monte_carlo(*args, estimator="sampled", **kwargs)

X1 = RNG.standard_normal((37, 11))
X2 = RNG.standard_normal((23, 11)) * 1.7


def reference(arch, n_networks, x1, x2=None, seed=0):
    params = [nnpk.sample_params(arch, x1.shape[1], seed, m) for m in range(n_networks)]
    return mc_kernels(arch, params, x1, x2)


def rel_err(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


# Not exp: exp of exp overflows in two hidden layers of W_std 1.3 (tests/test_activations_more.py covers it).
@pytest.mark.parametrize("activation", [a for a in nnpk.ACTIVATIONS if a not in NEEDS_PARAMETER + ("exp",)])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("b_std", [None, 0.4])
@pytest.mark.parametrize("with_x2", [False, True])
def test_equals_numpy_forward_pass(activation, parameterization, b_std, with_x2):
    arch = nnpk.MLP(hidden=[29, 17], out=3, activation=activation, W_std=1.3, b_std=b_std,
                    parameterization=parameterization, slope=0.2)
    x2 = X2 if with_x2 else None
    for m in (1, 4):
        K = sampled(X1, x2, arch=arch, n_networks=m, seed=5)
        assert K.shape == (37, 23 if with_x2 else 37) and K.dtype == np.float64
        assert rel_err(K, reference(arch, m, X1, x2, seed=5)[-1]) < 1e-10


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "sigmoid", "leaky_relu"])
def test_normalized_activation_equals_numpy(activation):
    arch = nnpk.MLP(hidden=[31], out=2, activation=activation, normalize=True, b_std=0.2, slope=0.1)
    K = sampled(X1, X2, arch=arch, n_networks=2)
    assert rel_err(K, reference(arch, 2, X1, X2)[-1]) < 1e-10


def test_normalization_constants_against_quadrature():
    from reference import activation, gaussian_moments

    for name in (a for a in nnpk.ACTIVATIONS if a not in NEEDS_PARAMETER):
        arch = nnpk.MLP(hidden=[4], activation=name, normalize=True, slope=0.2)
        mu, var = gaussian_moments(activation(name, 0.2))
        shift, scale = arch.normalization
        assert shift == pytest.approx(mu, abs=1e-12)
        assert scale == pytest.approx(math.sqrt(var), rel=1e-11)


@pytest.mark.parametrize("with_x2", [False, True])
def test_float32_forward_pass(with_x2):
    arch = nnpk.MLP(hidden=[64, 48], out=5, activation="erf", b_std=0.3)
    x2 = X2 if with_x2 else None
    K = sampled(X1, x2, arch=arch, n_networks=3, dtype="float32")
    assert K.dtype == np.float64
    assert rel_err(K, reference(arch, 3, X1, x2)[-1]) < 1e-5


def test_all_layers_and_per_layer_stds():
    arch = nnpk.MLP(hidden=[19, 23, 13], out=4, activation="softplus", W_std=[1.0, 1.5, 0.8, 2.0],
                    b_std=[0.1, None, 0.5, None])
    Ks = sampled(X1, X2, arch=arch, n_networks=3, layers="all")
    refs = reference(arch, 3, X1, X2)
    assert len(Ks) == 4
    for K, R in zip(Ks, refs):
        assert rel_err(K, R) < 1e-10
    # the output kernel is the one layers="output" gives, bit for bit
    assert np.array_equal(Ks[-1], sampled(X1, X2, arch=arch, n_networks=3))


def test_no_hidden_layer_is_a_linear_model():
    arch = nnpk.MLP(hidden=[], out=7, W_std=2.0)
    K = sampled(X1, arch=arch, n_networks=2)
    assert rel_err(K, reference(arch, 2, X1)[-1]) < 1e-10


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("with_x2", [False, True])
def test_bitwise_identical_across_threads_tiles_and_panels(dtype, with_x2):
    rng = np.random.default_rng(7)
    x1 = rng.standard_normal((301, 13)).astype(dtype)
    x2 = rng.standard_normal((157, 13)).astype(dtype) if with_x2 else None
    arch = nnpk.MLP(hidden=[70, 33], out=3, activation="tanh", b_std=0.2)
    q = nnpk._core.ROW_QUANTUM
    runs = []
    for n_threads, tile_rows, gram_tile, panel_cols in [
        (1, q, 16, 3), (2, 4 * q, 256, 128), (3, 2 * q, 48, 1000), (2, 7 * q, 1024, 7), (1, 100 * q, 64, 64)
    ]:
        sums = _kernel_sums(x1 if x2 is None else x1, x2, arch, seed=3, start=0, stop=6, all_layers=True,
                            n_threads=n_threads, tile_rows=tile_rows, gram_tile=gram_tile, panel_cols=panel_cols)
        runs.append(sums)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)


def test_public_api_is_deterministic_across_n_threads():
    arch = nnpk.MLP(hidden=[40], out=2)
    ks = [sampled(X1, arch=arch, n_networks=5, n_threads=t) for t in (1, 2, 3, None, -1)]
    for k in ks[1:]:
        assert np.array_equal(ks[0], k)


@pytest.mark.parametrize("with_x2", [False, True])
def test_prefix_property_and_resume(with_x2):
    arch = nnpk.MLP(hidden=[30, 30], out=2, b_std=0.1)
    x2 = X2 if with_x2 else None
    m = 4
    first = _kernel_sums(X1, x2, arch, seed=9, start=0, stop=m, all_layers=False, n_threads=2)
    whole = _kernel_sums(X1, x2, arch, seed=9, start=0, stop=2 * m, all_layers=False, n_threads=2)
    resumed = _kernel_sums(X1, x2, arch, seed=9, start=m, stop=2 * m, all_layers=False, n_threads=1, initial=first)
    assert np.array_equal(whole[0], resumed[0])
    # the M-network estimate is the mean over networks 0..M-1 of the 2M run
    K_m = sampled(X1, x2, arch=arch, n_networks=m, seed=9)
    assert np.array_equal(K_m, first[0] / (m * arch.out))


def test_symmetric_and_positive_semidefinite():
    arch = nnpk.MLP(hidden=[50], out=3, activation="gelu", b_std=0.5)
    K = sampled(X1, arch=arch, n_networks=3)
    assert np.array_equal(K, K.T)
    assert np.linalg.eigvalsh(K).min() > -1e-12 * np.abs(K).max()
    # with x2 = x1 given explicitly the full matrix is computed, to the same values
    K_full = sampled(X1, X1, arch=arch, n_networks=3)
    assert rel_err(K_full, K) < 1e-13


def test_converges_to_arccos_kernel_as_one_over_sqrt_m():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 10))
    arch = nnpk.MLP(hidden=[64], out=4, W_std=1.4)
    exact = arccos1(x, x, w_std=1.4)
    errs = {}
    for m in (64, 1024):
        errs[m] = np.mean([
            np.linalg.norm(sampled(x, arch=arch, n_networks=m, seed=s) - exact) / np.linalg.norm(exact)
            for s in range(4)
        ])
    # 16x the networks: the error shrinks by about 4 (1/sqrt(M)); allow 2.5..6.5
    ratio = errs[64] / errs[1024]
    assert 2.5 < ratio < 6.5, errs
    assert errs[1024] < 0.05


def test_progress_bar(capsys):
    arch = nnpk.MLP(hidden=[10])
    sampled(X1, arch=arch, n_networks=3, progress=True)
    assert "3/3" in capsys.readouterr().err


def test_progress_callback_error_propagates():
    from nnpk import _core

    arch = nnpk.MLP(hidden=[10])
    x = np.ascontiguousarray(X1)

    def boom(done):
        raise RuntimeError(f"stop at {done}")

    with pytest.raises(RuntimeError, match="stop at 1"):
        _core.sequential_sums(x, None, arch.compile((11,)).spec, 0, 0, 5, [], 1, 96, 64, 64, boom, None)
