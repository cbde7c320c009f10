"""Every promised error, raised before any large allocation, naming the argument."""

import numpy as np
import pytest

import nnpk

X = np.random.default_rng(0).standard_normal((10, 4))
ARCH = nnpk.MLP(hidden=[8])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(hidden=[0]), ValueError, "hidden widths must be positive"),
        (dict(hidden=[5, -2]), ValueError, "hidden widths must be positive"),
        (dict(hidden=5), TypeError, "hidden must be a sequence"),
        (dict(hidden=[2.5]), TypeError, "hidden widths must be integers"),
        (dict(hidden=[4], out=0), ValueError, "out must be positive"),
        (dict(hidden=[4], activation="reLU"), ValueError, "activation must be one of"),
        (dict(hidden=[4], W_std=-1.0), ValueError, "W_std must be finite and >= 0"),
        (dict(hidden=[4], W_std=float("nan")), ValueError, "W_std must be finite"),
        (dict(hidden=[4], b_std=-0.1), ValueError, "b_std must be finite and >= 0"),
        (dict(hidden=[4], W_std=[1.0, 1.0, 1.0]), ValueError, "W_std has 3 entries; the architecture has 2 layers"),
        (dict(hidden=[4], W_std="1"), TypeError, "W_std must be a number"),
        (dict(hidden=[4], parameterization="NTK"), ValueError, "parameterization must be 'ntk' or 'standard'"),
        (dict(hidden=[4], parameterization="standrd"), ValueError, "parameterization must be"),
        (dict(hidden=[4], normalize="yes"), TypeError, "normalize must be a bool"),
    ],
)
def test_mlp_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        nnpk.MLP(**kwargs)


def test_mlp_is_immutable_and_hashable():
    arch = nnpk.MLP(hidden=[3, 4], W_std=[1.0, 2.0, 3.0])
    with pytest.raises(AttributeError):
        arch.out = 3
    assert arch.W_std == (1.0, 2.0, 3.0)
    assert hash(arch) == hash(nnpk.MLP(hidden=(3, 4), W_std=(1.0, 2.0, 3.0)))


@pytest.mark.parametrize(
    "x1, x2, match",
    [
        (np.ones(5), None, r"x1 must be a 2-D array \(n_points, n_features\), got shape \(5,\)"),
        (np.ones((2, 3, 4)), None, r"x1 must be a 2-D array .* got shape \(2, 3, 4\)"),
        (np.ones((0, 4)), None, r"x1 is empty: shape \(0, 4\)"),
        (np.ones((3, 0)), None, r"x1 is empty"),
        (X, np.ones((4, 5)), "x2 has 5 features, x1 has 4"),
        (X, np.ones(4), "x2 must be a 2-D array"),
        (np.where(np.eye(10, 4) > 0, np.nan, 1.0), None,
         r"x1 contains NaN or infinite values \(first at row 0, column 0"),
        (X, np.full((3, 4), np.inf), "x2 contains NaN or infinite values"),
    ],
)
def test_bad_points(x1, x2, match):
    with pytest.raises(ValueError, match=match):
        nnpk.monte_carlo(x1, x2, arch=ARCH, n_networks=1)


def test_value_overflowing_float32_is_reported():
    x = X.copy()
    x[3, 1] = 1e300
    with pytest.raises(ValueError, match=r"x1 contains NaN or infinite values \(first at row 3, column 1"):
        nnpk.monte_carlo(x, arch=ARCH, n_networks=1, dtype="float32")


@pytest.mark.parametrize(
    "x, error",
    [(np.array([["a", "b"]]), TypeError), (np.ones((2, 2), dtype=complex), TypeError), (None, TypeError)],
)
def test_non_numeric_points(x, error):
    with pytest.raises(error, match="x1"):
        nnpk.monte_carlo(x, arch=ARCH, n_networks=1)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n_networks=0), ValueError, "n_networks must be >= 1, got 0"),
        (dict(n_networks=-3), ValueError, "n_networks must be >= 1"),
        (dict(n_networks=2.0), TypeError, "n_networks must be an integer"),
        (dict(n_networks=True), TypeError, "n_networks must be an integer, got a bool"),
        (dict(n_networks=1, seed=-1), ValueError, "seed must be >= 0"),
        (dict(n_networks=1, seed=2**64), ValueError, "seed must be <= "),
        (dict(n_networks=1, get="ntkk"), ValueError, "get must be"),
        (dict(n_networks=1, layers="every"), ValueError, "layers must be 'output' or 'all'"),
        (dict(n_networks=1, dtype="float16"), ValueError, "dtype must be 'float32' or 'float64'"),
        (dict(n_networks=1, n_threads=0), ValueError, "n_threads must not be 0"),
        (dict(n_networks=1, n_threads=-100), ValueError, "n_threads=-100 leaves no thread"),
        (dict(n_networks=1, n_threads=1.5), TypeError, "n_threads must be an integer or None"),
        (dict(n_networks=1, arch="mlp"), TypeError, "arch must be an nnpk.MLP"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kwargs.setdefault("arch", ARCH)
    with pytest.raises(error, match=match):
        nnpk.monte_carlo(X, **kwargs)


def test_output_that_cannot_fit_in_memory():
    x = np.zeros((3_000_000, 1))  # a 72 TB output; the 24 MB input is all that is allocated
    with pytest.raises(MemoryError, match=r"the output \(1 x 3000000 x 3000000 float64\).* needs 670\d\d.\d\d GiB .*; "
                                          r"compute it tile by tile into an on-disk store instead: "
                                          r"nnpk.compute_to_store"):
        nnpk.monte_carlo(x, arch=nnpk.MLP(hidden=[2]), n_networks=1)


def test_memory_limit_from_environment(monkeypatch):
    # the plain estimator needs the output and a few small panels
    monkeypatch.setenv("NNPK_MEMORY_LIMIT", str(10 * 10 * 8 - 1))
    with pytest.raises(MemoryError, match="GiB is available"):
        nnpk.monte_carlo(X, arch=ARCH, n_networks=1, estimator="sampled")
    monkeypatch.setenv("NNPK_MEMORY_LIMIT", str(10 * 10 * 8))
    nnpk.monte_carlo(X, arch=ARCH, n_networks=1, estimator="sampled")


@pytest.mark.parametrize(
    "x",
    [
        np.asfortranarray(X),
        X[:, ::2].repeat(2, axis=1),
        X[::1, :][:, [0, 1, 2, 3]],
        (X * 10).astype(np.int32),
        X.astype(np.float16),
        X.T.copy().T,
        X.tolist(),
    ],
)
def test_convertible_inputs_are_accepted(x):
    expected = nnpk.monte_carlo(np.ascontiguousarray(np.asarray(x), dtype=np.float64), arch=ARCH, n_networks=2)
    assert np.array_equal(nnpk.monte_carlo(x, arch=ARCH, n_networks=2), expected)


def test_sample_params_errors():
    with pytest.raises(ValueError, match="input_dim must be >= 1"):
        nnpk.sample_params(ARCH, 0, 0, 0)
    with pytest.raises(ValueError, match="index must be >= 0"):
        nnpk.sample_params(ARCH, 3, 0, -1)
    with pytest.raises(TypeError, match="arch must be an nnpk.MLP"):
        nnpk.sample_params(None, 3, 0, 0)


def test_sample_params_layout():
    arch = nnpk.MLP(hidden=[5, 6], out=2, b_std=[0.5, None, 2.0], W_std=2.0, parameterization="standard")
    params = nnpk.sample_params(arch, 3, seed=1, index=4)
    assert [p[0].shape for p in params] == [(3, 5), (5, 6), (6, 2)]
    assert params[1][1] is None and params[0][1].shape == (5,)
    ntk = nnpk.sample_params(nnpk.MLP(hidden=[5, 6], out=2, b_std=[0.5, None, 2.0], W_std=2.0), 3, seed=1, index=4)
    np.testing.assert_allclose(params[2][0], ntk[2][0] * 2.0 / np.sqrt(6), rtol=1e-15)
    np.testing.assert_allclose(params[2][1], ntk[2][1] * 2.0, rtol=1e-15)
