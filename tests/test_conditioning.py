"""nnpk.conditioning against the correlation maps of docs/definitions.rst iterated in numpy."""

import numpy as np
import pytest

import nnpk

DEPTHS = [1, 2, 5, 10, 20, 50]


def unit_rows(x):
    """Rows scaled to x.x/d = 1 (unit-variance inputs, where the normalised-ReLU dual holds)."""
    return x / np.sqrt((x * x).sum(1, keepdims=True) / x.shape[1])


def near_duplicates(seed=5):
    """30 random points and noisy copies (1e-2) of 10 of them: a badly conditioned input kernel."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((30, 10))
    return unit_rows(np.vstack([base, base[:10] + 1e-2 * rng.standard_normal((10, 10))]))


def relu_map(rho):
    """ReLU's correlation map (the kernel is homogeneous, so it acts on correlations alone)."""
    return (np.sqrt(1 - rho * rho) + (np.pi - np.arccos(rho)) * rho) / np.pi


def normalized_relu_map(rho):
    return (np.sqrt(1 - rho * rho) + (np.pi - np.arccos(rho)) * rho - 1) / (np.pi - 1)


def reference_statistics(x, correlation_map, depths):
    """Iterate the map on the input correlations; spectrum of each depth's correlation matrix."""
    C = x @ x.T
    d = np.sqrt(np.diag(C))
    C = np.clip(C / np.outer(d, d), -1, 1)
    np.fill_diagonal(C, 1.0)
    out = {"min_eigenvalue": [], "condition_number": [], "mean_abs_offdiag": []}
    n = len(x)
    for depth in range(1, max(depths) + 1):
        C = correlation_map(C)
        np.fill_diagonal(C, 1.0)
        if depth in depths:
            eig = np.linalg.eigvalsh(C)
            out["min_eigenvalue"].append(eig[0])
            out["condition_number"].append(eig[-1] / eig[0])
            out["mean_abs_offdiag"].append((np.abs(C).sum() - n) / (n * (n - 1)))
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("activation,correlation_map", [("relu", relu_map),
                                                        ("relu_normalized", normalized_relu_map)])
def test_analytic_statistics_follow_the_correlation_maps(activation, correlation_map):
    x = near_duplicates()
    arch = nnpk.MLP(hidden=[16] * 50, activation=activation)
    got = nnpk.conditioning(x, arch=arch, depths=DEPTHS)
    expected = reference_statistics(x, correlation_map, DEPTHS)
    assert got["depth"].tolist() == DEPTHS
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-7, err_msg=key)


def test_normalized_relu_smallest_eigenvalue_rises_toward_one():
    arch = nnpk.MLP(hidden=[16] * 50, activation="relu_normalized")
    got = nnpk.conditioning(near_duplicates(), arch=arch, depths=DEPTHS)
    lam = got["min_eigenvalue"]
    assert lam[0] < 1e-3
    assert np.all(np.diff(lam) > 0)
    assert lam[-1] > 0.9
    assert got["condition_number"][-1] < 1.3
    assert got["mean_abs_offdiag"][-1] < 1e-3


def test_relu_offdiagonal_correlation_tends_to_a_nonzero_constant():
    arch = nnpk.MLP(hidden=[16] * 50, activation="relu")
    got = nnpk.conditioning(near_duplicates(), arch=arch, depths=DEPTHS)
    off = got["mean_abs_offdiag"]
    assert np.all(np.diff(off) > 0)
    per_layer = np.diff(off) / np.diff(DEPTHS)
    assert np.all(np.diff(per_layer[1:]) < 0)  # converging
    assert off[-1] > 0.95
    assert got["condition_number"][-1] > 1e3 * nnpk.conditioning(
        near_duplicates(), arch=nnpk.MLP(hidden=[16] * 50, activation="relu_normalized"), depths=[50]
    )["condition_number"][0]


def test_depths_in_any_order_and_biases():
    x = near_duplicates()
    arch = nnpk.MLP(hidden=[16] * 6, activation="erf", W_std=1.5, b_std=0.2)
    one = nnpk.conditioning(x, arch=arch, depths=[6, 1, 3])
    other = nnpk.conditioning(x, arch=arch, depths=[1, 3, 6])
    assert one["depth"].tolist() == [6, 1, 3]
    for key in ("min_eigenvalue", "condition_number", "mean_abs_offdiag"):
        np.testing.assert_array_equal(one[key][[1, 2, 0]], other[key])
    # Depth L is hidden layer L's kernel, as nnpk.analytic(layers="all") gives it.
    K = nnpk.analytic(x, arch=arch, layers="all")[2]
    C = K / np.sqrt(np.outer(np.diag(K), np.diag(K)))
    assert other["min_eigenvalue"][1] == pytest.approx(np.linalg.eigvalsh(C)[0], rel=1e-9)


def test_monte_carlo_method_estimates_the_same_statistics():
    """The estimate is near the limit, and depth L is hidden layer L of monte_carlo(layers="all").
    The smallest eigenvalue hinges on the near duplicates' 1 - rho, which moves by about 10%
    from seed to seed at width 256 with 32 networks; the mean correlation by about 1%."""
    x = near_duplicates()
    arch = nnpk.MLP(hidden=[256] * 3, activation="relu_normalized")
    exact = nnpk.conditioning(x, arch=arch, depths=[1, 3])
    estimate = nnpk.conditioning(x, arch=arch, depths=[1, 3], method="monte_carlo", n_networks=32, seed=3,
                                 n_threads=1)
    np.testing.assert_allclose(estimate["min_eigenvalue"], exact["min_eigenvalue"], rtol=0.3)
    np.testing.assert_allclose(estimate["mean_abs_offdiag"], exact["mean_abs_offdiag"], rtol=0.05)
    K = nnpk.monte_carlo(x, arch=arch, n_networks=32, seed=3, layers="all", n_threads=1)[2]
    C = K / np.sqrt(np.outer(np.diag(K), np.diag(K)))
    assert estimate["min_eigenvalue"][1] == pytest.approx(np.linalg.eigvalsh(C)[0], rel=1e-9)


X = near_duplicates()
ARCH = nnpk.MLP(hidden=[8, 8])


@pytest.mark.parametrize("call,error,match", [
    (lambda: nnpk.conditioning(X, arch=ARCH, depths=[]), ValueError, "depths is empty"),
    (lambda: nnpk.conditioning(X, arch=ARCH, depths=[1, 1]), ValueError, "repeated"),
    (lambda: nnpk.conditioning(X, arch=ARCH, depths=[0]), ValueError, "depths entries must be >= 1"),
    (lambda: nnpk.conditioning(X, arch=ARCH, depths=[1.5]), TypeError, "depths entries must be an integer"),
    (lambda: nnpk.conditioning(X, arch=ARCH, depths=3), TypeError, "depths must be a sequence"),
    (lambda: nnpk.conditioning(X, arch=ARCH, depths=[3]), ValueError, "up to 3 but arch has 2 hidden layers"),
    (lambda: nnpk.conditioning(X, arch=ARCH, depths=[1], method="exact"), ValueError, "method must be"),
    (lambda: nnpk.conditioning(X, arch=ARCH, depths=[1], method="monte_carlo"), ValueError, "needs n_networks"),
    (lambda: nnpk.conditioning(X, arch=ARCH, depths=[1], n_networks=4), ValueError, "n_networks is for"),
    (lambda: nnpk.conditioning(X[:1], arch=ARCH, depths=[1]), ValueError, "at least 2 points"),
    (lambda: nnpk.conditioning(np.vstack([X, np.zeros(10)]), arch=ARCH, depths=[1]), ValueError,
     "diagonal is 0.0 at point 40"),
    (lambda: nnpk.conditioning(np.ones(3), arch=ARCH, depths=[1]), ValueError, "x must be a 2-D array"),
    (lambda: nnpk.conditioning(X, arch="relu", depths=[1]), TypeError, "arch must be an nnpk.MLP"),
    (lambda: nnpk.conditioning(X, arch=ARCH, depths=[1], quadrature_order=0), ValueError,
     "quadrature_order must be >= 1"),
    (lambda: nnpk.conditioning(X, arch=ARCH, depths=[1], n_threads=0), ValueError, "n_threads must not be 0"),
])
def test_bad_input_is_refused_clearly(call, error, match):
    with pytest.raises(error, match=match):
        call()
