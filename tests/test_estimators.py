"""The three NNGP estimators: same expectation, far less variance, exact where promised."""

import numpy as np
import pytest

import nnpk
from engine_sums import conditional_sums as _conditional_sums

RNG = np.random.default_rng(5)
X = RNG.standard_normal((30, 12))
X2 = RNG.standard_normal((17, 12))


def rel_frobenius(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("activation", ["relu", "erf", "tanh", "gelu", "leaky_relu", "relu_normalized"])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("b_std", [None, 0.3])
def test_conditional_one_hidden_layer_is_exact(activation, parameterization, b_std):
    arch = nnpk.MLP(hidden=[16], out=3, activation=activation, W_std=1.3, b_std=b_std,
                    parameterization=parameterization, slope=0.2)
    K = nnpk.monte_carlo(X, X2, arch=arch, n_networks=1, estimator="conditional")
    A = nnpk.analytic(X, X2, arch=arch)
    assert np.abs(K - A).max() <= 1e-12 * np.abs(A).max()


@pytest.mark.parametrize("with_x2", [False, True])
def test_readout_is_the_affine_last_conjugate_kernel(with_x2):
    arch = nnpk.MLP(hidden=[24, 18], out=4, W_std=[1.1, 1.3, 1.7], b_std=[0.1, 0.2, 0.5], activation="softplus")
    x2 = X2 if with_x2 else None
    ck = nnpk.monte_carlo(X, x2, arch=arch, n_networks=6, layers="all", estimator="sampled")[-2]
    readout = nnpk.monte_carlo(X, x2, arch=arch, n_networks=6, estimator="readout")
    assert np.abs(readout - (1.7**2 * ck + 0.5**2)).max() < 1e-12 * np.abs(readout).max()


def test_estimators_agree_in_expectation():
    arch = nnpk.MLP(hidden=[48, 48], out=2, W_std=1.4, b_std=0.2)
    est = {}
    for k, name in enumerate(("sampled", "readout", "conditional")):
        est[name] = nnpk.monte_carlo(X, arch=arch, n_networks=600, seed=100 * k, estimator=name,
                                     return_standard_error=True)
    norm = np.linalg.norm(est["conditional"][0])
    for a in ("sampled", "readout"):
        gap = np.linalg.norm(est[a][0] - est["conditional"][0]) / norm
        se = np.hypot(est[a][1]["standard_error"], est["conditional"][1]["standard_error"])
        assert gap < 4 * se, (a, gap, se)
    # the gap between estimators shrinks like 1/sqrt(M)
    gaps = [rel_frobenius(nnpk.monte_carlo(X, arch=arch, n_networks=m, seed=1, estimator="sampled"),
                          nnpk.monte_carlo(X, arch=arch, n_networks=m, seed=2, estimator="conditional"))
            for m in (16, 256)]
    assert 2.0 < gaps[0] / gaps[1] < 8.0, gaps


def test_variance_reduction_at_width_512():
    arch = nnpk.MLP(hidden=[512, 512], out=10, W_std=1.4, b_std=0.1)
    se = {name: nnpk.monte_carlo(X, arch=arch, n_networks=20, seed=3, estimator=name,
                                 return_standard_error=True)[1]["standard_error"]
          for name in ("sampled", "readout", "conditional")}
    assert (se["sampled"] / se["conditional"]) ** 2 >= 20, se
    assert (se["sampled"] / se["readout"]) ** 2 >= 4, se


def test_standard_error_predicts_the_error():
    arch = nnpk.MLP(hidden=[32, 32], out=2, activation="erf", b_std=0.3)
    reference = nnpk.monte_carlo(X, arch=arch, n_networks=4000, seed=999, estimator="conditional")
    ratios = []
    for seed in range(12):
        K, info = nnpk.monte_carlo(X, arch=arch, n_networks=40, seed=seed, estimator="sampled",
                                   return_standard_error=True)
        ratios.append((rel_frobenius(K, reference) / info["standard_error"]) ** 2)
    # E[error^2 / se^2] is about 1 (the reference's own error is ~10x smaller)
    assert 0.4 < np.mean(ratios) < 2.0, ratios


@pytest.mark.parametrize("estimator", ["sampled", "readout", "conditional"])
@pytest.mark.parametrize("layers", ["output", "all"])
def test_standard_error_leaves_the_estimate_unchanged(estimator, layers):
    arch = nnpk.MLP(hidden=[20, 20, 20], out=3, b_std=0.1)
    plain = nnpk.monte_carlo(X, X2, arch=arch, n_networks=7, estimator=estimator, layers=layers)
    batched, info = nnpk.monte_carlo(X, X2, arch=arch, n_networks=7, estimator=estimator, layers=layers,
                                     return_standard_error=True)
    for a, b in zip(np.atleast_3d(plain) if layers == "output" else plain,
                    np.atleast_3d(batched) if layers == "output" else batched):
        assert np.array_equal(a, b)
    assert info["n_networks"] == 7 and info["n_batches"] == 7
    errors = info["standard_error"] if layers == "all" else [info["standard_error"]]
    assert len(errors) == (4 if layers == "all" else 1) and all(e > 0 for e in errors)


def test_tol_adds_networks_until_reached():
    arch = nnpk.MLP(hidden=[32, 32], out=4)
    K, info = nnpk.monte_carlo(X, arch=arch, n_networks=8, tol=0.05, estimator="sampled", return_standard_error=True)
    assert info["standard_error"] <= 0.05 and info["n_networks"] > 8 and info["n_networks"] % 2 == 0
    # the result is the plain estimate with that many networks, bit for bit
    assert np.array_equal(K, nnpk.monte_carlo(X, arch=arch, n_networks=info["n_networks"], estimator="sampled"))
    with pytest.warns(RuntimeWarning, match="tol=1e-05 was not reached with max_networks=16"):
        nnpk.monte_carlo(X, arch=arch, n_networks=8, tol=1e-5, max_networks=16, estimator="sampled")


def test_default_estimator_is_the_best_per_second():
    relu, tanh = nnpk.MLP(hidden=[20, 20]), nnpk.MLP(hidden=[20, 20], activation="tanh")
    for arch, best in ((relu, "conditional"), (tanh, "readout")):
        assert np.array_equal(nnpk.monte_carlo(X, arch=arch, n_networks=2),
                              nnpk.monte_carlo(X, arch=arch, n_networks=2, estimator=best))


def test_exact_estimates_have_zero_standard_error():
    for arch in (nnpk.MLP(hidden=[10], out=2), nnpk.MLP(hidden=[], out=3, W_std=2.0, b_std=0.5)):
        K, info = nnpk.monte_carlo(X, arch=arch, n_networks=5, return_standard_error=True)
        assert info["standard_error"] == 0.0
        assert np.abs(K - nnpk.analytic(X, arch=arch)).max() < 1e-12 * np.abs(K).max()


def test_conditional_all_layers_first_layer_is_analytic():
    arch = nnpk.MLP(hidden=[30, 20], out=2, activation="erf", b_std=0.2)
    Ks = nnpk.monte_carlo(X, arch=arch, n_networks=3, layers="all")
    As = nnpk.analytic(X, arch=arch, layers="all")
    assert np.abs(Ks[0] - As[0]).max() < 1e-12 * np.abs(As[0]).max()
    assert len(Ks) == 3 and all(k.shape == (30, 30) for k in Ks)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("hidden", [[40, 30, 20], [700, 20]])  # 700: products deeper than one block of Eigen's
def test_conditional_bitwise_across_threads_tiles_and_resume(dtype, hidden):
    rng = np.random.default_rng(2)
    x1 = rng.standard_normal((230, 9)).astype(dtype)
    arch = nnpk.MLP(hidden=hidden, out=2, activation="erf", b_std=0.1)
    q = nnpk._core.ROW_QUANTUM
    kw = dict(seed=4, layers=list(range(len(hidden))))
    runs = [_conditional_sums(x1, None, arch, start=0, stop=4, n_threads=t, tile_rows=tr, gram_tile=gt,
                              networks_per_pass=per_pass, **kw)
            for t, tr, gt, per_pass in [(1, q, q, 1), (2, 2 * q, 4 * q, 3), (3, 3 * q, 2 * q, 4), (2, q, q, 2)]]
    first = _conditional_sums(x1, None, arch, start=0, stop=2, n_threads=2, **kw)
    runs.append(_conditional_sums(x1, None, arch, start=2, stop=4, n_threads=1, initial=first, **kw))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)
    assert all(np.array_equal(k, k.T) for k in runs[0])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(estimator="conditonal"), ValueError, "estimator must be one of sampled, readout, conditional"),
        (dict(estimator="readout", get="ntk"), ValueError, "estimator applies to the NNGP"),
        (dict(tol=0.0), ValueError, r"tol must be a relative error in \(0, 1\)"),
        (dict(tol=2.0), ValueError, "tol must be a relative error"),
        (dict(tol=0.1, max_networks=2), ValueError, "max_networks must be >= 4"),
        (dict(max_networks=10), ValueError, "max_networks applies with tol only"),
        (dict(get="ntk", per_layer=True, return_standard_error=True), ValueError,
         "standard errors are for whole kernels"),
    ],
)
def test_bad_estimator_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        nnpk.monte_carlo(X, arch=nnpk.MLP(hidden=[8, 8]), n_networks=4, **kwargs)
