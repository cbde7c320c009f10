"""The activations beyond the relu family and the sigmoids: cos, gaussian, exp, rbf, sign, monomial,
rectified_monomial and polynomial (and sin's closed-form dual map).

References are written here from the definitions (docs/definitions.rst): each phi and phi' in numpy,
the dual maps E[phi(u) phi(v)] and E[phi'(u) phi'(v)] by nested adaptive quadrature (scipy), the
normalisation's moments by one-dimensional quadrature, and Monte Carlo over random networks."""

import math

import numpy as np
import pytest
from numpy.polynomial import hermite_e
from scipy import integrate

import nnpk
from conftest import assert_analytic_bits_invariant
from reference_networks import check_dense_activation_near_analytic

# A degree-8 Hermite series whose terms are of one size on unit-variance inputs (a_k^2 k! about 1).
HIGH = [(-1) ** k * 0.8 / math.sqrt(math.factorial(k)) for k in range(9)]

# name -> (Activation keywords, phi, phi')
CASES = {
    "cos": ({}, np.cos, lambda z: -np.sin(z)),
    "sin": ({}, np.sin, np.cos),
    "gaussian": ({}, lambda z: np.exp(-z * z), lambda z: -2 * z * np.exp(-z * z)),
    "gaussian_half": (dict(gamma=0.5), lambda z: np.exp(-0.5 * z * z), lambda z: -z * np.exp(-0.5 * z * z)),
    "exp": ({}, np.exp, np.exp),
    "rbf": (dict(gamma=0.7), lambda z: math.sqrt(2) * np.sin(math.sqrt(1.4) * z + math.pi / 4),
            lambda z: math.sqrt(2) * math.sqrt(1.4) * np.cos(math.sqrt(1.4) * z + math.pi / 4)),
    "sign": ({}, np.sign, np.zeros_like),
    "monomial_2": (dict(degree=2), lambda z: z**2, lambda z: 2 * z),
    "monomial_3": (dict(degree=3), lambda z: z**3, lambda z: 3 * z**2),
    "rectified_monomial_1": (dict(degree=1), lambda z: np.maximum(z, 0.0), lambda z: np.where(z > 0, 1.0, 0.0)),
    "rectified_monomial_2": (dict(degree=2), lambda z: np.maximum(z, 0.0) ** 2, lambda z: 2 * np.maximum(z, 0.0)),
    "rectified_monomial_3": (dict(degree=3), lambda z: np.maximum(z, 0.0) ** 3,
                             lambda z: 3 * np.maximum(z, 0.0) ** 2),
    # 0.3 + z + 0.5 (z^2 - 1) - 0.2 (z^3 - 3 z), the probabilists' Hermite polynomials written out
    "polynomial": (dict(coefficients=(0.3, 1.0, 0.5, -0.2)),
                   lambda z: 0.3 + z + 0.5 * (z * z - 1) - 0.2 * (z**3 - 3 * z),
                   lambda z: 1 + z - 0.2 * (3 * z * z - 3)),
    "polynomial_8": (dict(coefficients=tuple(HIGH)), lambda z: hermite_e.hermeval(z, HIGH),
                     lambda z: hermite_e.hermeval(z, hermite_e.hermeder(HIGH))),
    "monomial_7": (dict(degree=7), lambda z: z**7, lambda z: 7 * z**6),
    "rectified_monomial_6": (dict(degree=6), lambda z: np.maximum(z, 0.0) ** 6, lambda z: 6 * np.maximum(z, 0.0) ** 5),
}


def activation(case, normalize=False):
    name = case.rsplit("_", 1)[0] if case[-1].isdigit() or case.endswith("_half") else case
    return nnpk.Activation(name, normalize=normalize, **CASES[case][0])


def engine(case, z, derivative=False, normalize=False):
    """The engine's phi (or phi') through a one-hidden-layer MLP's activation_fn."""
    act = activation(case, normalize)
    arch = nnpk.MLP([3], activation=act.name, normalize=normalize, degree=act.degree, gamma=act.gamma,
                    coefficients=act.coefficients)
    return arch.activation_fn(z, derivative=derivative)


# ------------------------------------------------------------------------ phi and phi'

Z = np.concatenate([np.linspace(-3.3, 3.1, 47), [0.0, 1e-3, -1e-3]])


@pytest.mark.parametrize("case", sorted(CASES))
def test_values_and_derivatives_against_numpy(case):
    _, phi, dphi = CASES[case]
    np.testing.assert_allclose(engine(case, Z), phi(Z), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(engine(case, Z, derivative=True), dphi(Z), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("case", sorted(set(CASES) - {"sign"}))
def test_derivatives_are_finite_differences_of_the_values(case):
    z = Z[np.abs(Z) > 1e-2]  # away from the kinks of the rectified monomials
    h = 1e-6
    difference = (engine(case, z + h) - engine(case, z - h)) / (2 * h)
    np.testing.assert_allclose(engine(case, z, derivative=True), difference, rtol=1e-7, atol=1e-7)


def test_polynomial_is_the_hermite_series_numpy_evaluates():
    coefficients = np.random.default_rng(3).normal(size=17)  # the highest degree, 16
    act = nnpk.Activation("polynomial", coefficients=coefficients)
    z = np.linspace(-2.5, 2.5, 31)
    got = nnpk.MLP([2], activation="polynomial", coefficients=act.coefficients).activation_fn(z)
    np.testing.assert_allclose(got, hermite_e.hermeval(z, coefficients), rtol=1e-11, atol=1e-11)
    slope = nnpk.MLP([2], activation="polynomial", coefficients=act.coefficients).activation_fn(z, derivative=True)
    np.testing.assert_allclose(slope, hermite_e.hermeval(z, hermite_e.hermeder(coefficients)), rtol=1e-11, atol=1e-11)


# ------------------------------------------------------------------------ dual maps

def _density(z):
    return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def expectation(f, g, q1, q2, rho):
    """E[f(u) g(v)], (u, v) ~ N(0, [[q1, c], [c, q2]]), c = rho sqrt(q1 q2): nested adaptive quadrature
    split where u and v cross 0."""
    s = math.sqrt((1 - rho) * (1 + rho))
    opts = dict(epsabs=1e-13, epsrel=1e-11, limit=400)

    def inner(z1):
        split = -rho * z1 / s
        body = lambda z2: _density(z2) * g(math.sqrt(q2) * (rho * z1 + s * z2))  # noqa: E731
        return integrate.quad(body, -12, 12, points=[split] if abs(split) < 12 else None, **opts)[0]

    return integrate.quad(lambda z1: _density(z1) * f(math.sqrt(q1) * z1) * inner(z1), -12, 12, points=[0.0],
                          **opts)[0]


def moments(phi):
    """E[phi(g)] and Var[phi(g)], g ~ N(0, 1)."""
    mean = integrate.quad(lambda z: _density(z) * phi(z), -14, 14, points=[0.0], epsabs=1e-14, epsrel=1e-12)[0]
    second = integrate.quad(lambda z: _density(z) * phi(z) ** 2, -14, 14, points=[0.0], epsabs=1e-14,
                            epsrel=1e-12)[0]
    return mean, second - mean * mean


def pair_points(q1, q2, rho):
    """Two points of R^2 with x.x/2 = q1, x'.x'/2 = q2, x.x'/2 = rho sqrt(q1 q2)."""
    return np.array([[math.sqrt(2 * q1), 0.0],
                     [math.sqrt(2 * q2) * rho, math.sqrt(2 * q2) * math.sqrt(1 - rho * rho)]])


PAIRS = [(1.0, 1.0, 0.5), (0.7, 2.0, -0.8), (1.5, 0.4, 0.97)]


def analytic_duals(case, q1, q2, rho, normalize=False, ntk=True):
    """The off-diagonal (E[phi phi], E[phi' phi']) and the diagonal E[phi(u)^2], E[phi(v)^2] of nnpk.analytic
    for a one-hidden-layer network whose pre-activations have exactly the covariance (q1, q2, c): W_std = 1,
    no bias, so NNGP = E[phi phi] and NTK = NNGP + c E[phi' phi']."""
    act = activation(case, normalize)
    arch = nnpk.Network([nnpk.Dense(8), act, nnpk.Dense(1)])
    get = ("nngp", "ntk") if ntk else ("nngp",)
    out = nnpk.analytic(pair_points(q1, q2, rho), arch=arch, get=get)
    c = rho * math.sqrt(q1 * q2)
    dot = (out["ntk"][0, 1] - out["nngp"][0, 1]) / c if ntk else None
    return out["nngp"][0, 1], dot, np.diag(out["nngp"])


def _gauss_expectation(f):
    """E f(g), g ~ N(0, 1), split at 0 (each half by adaptive quadrature)."""
    return integrate.quad(lambda z: _density(z) * f(z), -14, 14, points=[0.0], epsabs=1e-14, epsrel=1e-12)[0]


@pytest.mark.parametrize("q1, q2, rho", PAIRS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_dual_maps_against_quadrature(case, q1, q2, rho):
    _, phi, dphi = CASES[case]
    nngp, dot, diagonal = analytic_duals(case, q1, q2, rho, ntk=case != "sign")
    squares = [_gauss_expectation(lambda z, q=q: phi(math.sqrt(q) * z) ** 2) for q in (q1, q2)]
    np.testing.assert_allclose(diagonal, squares, rtol=1e-9)
    assert nngp == pytest.approx(expectation(phi, phi, q1, q2, rho), abs=2e-9 * math.sqrt(squares[0] * squares[1]))
    if case != "sign":
        slopes = [_gauss_expectation(lambda z, q=q: dphi(math.sqrt(q) * z) ** 2) for q in (q1, q2)]
        assert dot == pytest.approx(expectation(dphi, dphi, q1, q2, rho), abs=2e-8 * math.sqrt(slopes[0] * slopes[1]))


@pytest.mark.parametrize("case", sorted(set(CASES) - {"sign", "rectified_monomial_1"}))
def test_normalized_duals_against_quadrature(case):
    """normalize=True: phi_n = (phi - mu) / s with mu, s^2 the Gaussian mean and variance of phi."""
    _, phi, dphi = CASES[case]
    mu, var = moments(phi)
    s = math.sqrt(var)
    q1, q2, rho = 0.8, 1.3, 0.6
    nngp, dot, diagonal = analytic_duals(case, q1, q2, rho, normalize=True)
    phi_n = lambda z: (phi(z) - mu) / s  # noqa: E731
    dphi_n = lambda z: dphi(z) / s  # noqa: E731
    assert nngp == pytest.approx(expectation(phi_n, phi_n, q1, q2, rho), abs=5e-9)
    assert dot == pytest.approx(expectation(dphi_n, dphi_n, q1, q2, rho), abs=5e-8 * max(1.0, abs(dot)))
    # At unit variance a normalised activation has unit second moment.
    unit = nnpk.analytic(pair_points(1.0, 1.0, 0.3), arch=nnpk.Network([nnpk.Dense(4), activation(case, True),
                                                                        nnpk.Dense(1)]))
    np.testing.assert_allclose(np.diag(unit), 1.0, rtol=1e-12)


@pytest.mark.parametrize("case", ["cos", "gaussian", "exp", "rbf", "monomial_3", "rectified_monomial_2",
                                  "polynomial", "sign"])
def test_quadrature_equals_the_closed_form(case):
    """closed_form=False integrates the same phi by the engine's own quadrature: the two agree."""
    x = np.random.default_rng(1).normal(size=(6, 3)) * 0.8
    arch = nnpk.Network([nnpk.Dense(8, b_std=0.3), activation(case), nnpk.Dense(8), "erf", nnpk.Dense(1)])
    get = ("nngp",) if case == "sign" else ("nngp", "ntk")
    closed = nnpk.analytic(x, arch=arch, get=get)
    quadrature = nnpk.analytic(x, arch=arch, get=get, closed_form=False, quadrature_order=64)
    for name in get:
        scale = np.sqrt(np.outer(np.diag(closed[name]), np.diag(closed[name])))
        assert np.max(np.abs(closed[name] - quadrature[name]) / scale) < 1e-7


def test_zero_inputs_are_finite():
    """A zero input (variance 0 before the activation, no bias): every dual map is finite, and the
    rectified monomials' kernels vanish there."""
    x = np.array([[0.0, 0.0], [1.0, -0.5], [0.3, 0.9]])
    for case in sorted(CASES):
        get = ("nngp",) if case == "sign" else ("nngp", "ntk")
        out = nnpk.analytic(x, arch=nnpk.Network([nnpk.Dense(4), activation(case), nnpk.Dense(1)]), get=get)
        for name in get:
            assert np.all(np.isfinite(out[name])), (case, name)
        if case.startswith("rectified") or case in ("sign", "monomial_3"):
            np.testing.assert_array_equal(out["nngp"][0], 0.0)


def test_rbf_is_the_squared_exponential_kernel_of_the_inputs():
    """After Dense(W_std=1, no bias) and rbf, the NNGP is exp(-gamma |x - x'|^2 / d)."""
    x = np.random.default_rng(2).normal(size=(5, 4))
    gamma = 0.35
    out = nnpk.analytic(x, arch=nnpk.MLP([4], activation="rbf", gamma=gamma))
    distances = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1) / 4
    np.testing.assert_allclose(out, np.exp(-gamma * distances), rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------ finite width

@pytest.mark.parametrize("case", ["cos", "gaussian", "rbf", "monomial_2", "rectified_monomial_2", "polynomial"])
def test_monte_carlo_converges_to_analytic(case):
    """The NNGP of the engine's hidden features (the readout integrated) and the Monte Carlo NTK of a wide
    network (engine forward and backward passes) are within a few standard errors plus O(1/width) of the
    infinite-width kernels (standard errors are relative, in Frobenius norm)."""
    x = np.random.default_rng(5).normal(size=(5, 3)) * 0.7
    check_dense_activation_near_analytic(x, activation(case), width=1024, n_networks=32)


def test_sign_nngp_by_monte_carlo():
    x = np.random.default_rng(6).normal(size=(4, 3))
    arch = lambda width: nnpk.Network([nnpk.Dense(width), "sign", nnpk.Dense(1)])  # noqa: E731
    exact = nnpk.analytic(x, arch=arch(1))
    estimate, info = nnpk.monte_carlo(x, arch=arch(512), n_networks=16, seed=1, estimator="readout",
                                      return_standard_error=True)
    error = np.linalg.norm(estimate - exact) / np.linalg.norm(exact)
    assert error < 5 * info["standard_error"] + 8 / 512 < 0.1


def test_training_with_a_new_activation_lowers_the_loss():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(32, 3))
    y = np.sin(x[:, 0])
    arch = nnpk.MLP([64], out=1, activation="rbf", gamma=0.5)
    learner = nnpk.NetworkLearner(arch, loss="squared", optimizer="adam", lr=1e-2, epochs=40, batch_size=32, seed=0)
    learner.fit(x, y)
    history = learner.history_["loss"]
    assert history[-1] < 0.5 * history[0]


# ------------------------------------------------------------------------ refusals and settings

@pytest.mark.parametrize("call", [
    lambda x, arch: nnpk.analytic(x, arch=arch, get="ntk"),
    lambda x, arch: nnpk.monte_carlo(x, arch=arch, n_networks=1, get="ntk"),
    lambda x, arch: nnpk.empirical(x, arch=arch, params=nnpk.sample_params(arch, x.shape[1:], 0, 0), get="ntk"),
    lambda x, arch: nnpk.NetworkLearner(arch, epochs=1).fit(x, np.zeros(len(x))),
], ids=["analytic", "monte_carlo", "empirical", "training"])
def test_sign_refuses_tangent_kernels_and_training_naming_the_layer(call):
    """Everything that needs phi' of sign refuses; the readout alone trains (its gradient is h, not phi')."""
    x = np.random.default_rng(0).normal(size=(4, 3))
    arch = nnpk.Network([nnpk.Dense(8), nnpk.Residual([nnpk.Dense(8), "sign", nnpk.Dense(8)]), nnpk.Dense(1)])
    with pytest.raises(ValueError, match=r"layer 1\.1 \(Activation sign\) is a step .* Dirac delta"):
        call(x, arch)


@pytest.mark.parametrize("kernel", ["ntk", "analytic_ntk"])
def test_stores_refuse_sign_tangent_kernels_before_they_exist(tmp_path, kernel):
    x = np.random.default_rng(0).normal(size=(4, 3))
    arch = nnpk.MLP([8], activation="sign")
    options = dict(n_networks=1) if kernel == "ntk" else {}
    with pytest.raises(ValueError, match=r"compute_to_store\(kernel='.*ntk'\) needs the derivative .* layer 1 "):
        nnpk.compute_to_store(tmp_path / "k", x, arch=arch, kernel=kernel, tile_size=96, **options)
    assert not (tmp_path / "k").exists()


def test_sign_networks_train_their_readout():
    x = np.random.default_rng(0).normal(size=(16, 3))
    arch = nnpk.Network([nnpk.Dense(32), "sign", nnpk.Dense(1)])
    learner = nnpk.NetworkLearner(arch, train="readout", loss="squared", epochs=20, batch_size=16, lr=1e-2)
    learner.fit(x, x[:, 0])
    assert learner.history_["loss"][-1] < learner.history_["loss"][0]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(name="monomial"), ValueError, r"monomial needs a degree \(an integer from 1 to 16\)"),
    (dict(name="rectified_monomial", degree=0), ValueError, r"degree of rectified_monomial must be from 1 to 16"),
    (dict(name="monomial", degree=17), ValueError, r"must be from 1 to 16, got 17"),
    (dict(name="monomial", degree=2.0), TypeError, r"degree must be an integer"),
    (dict(name="relu", degree=2), ValueError, r"degree applies to monomial and rectified_monomial, not to relu"),
    (dict(name="rbf", gamma=0.0), ValueError, r"gamma of rbf must be finite and > 0"),
    (dict(name="gaussian", gamma=-1), ValueError, r"gamma of gaussian must be finite and > 0"),
    (dict(name="cos", gamma=1.0), ValueError, r"gamma applies to gaussian and rbf, not to cos"),
    (dict(name="polynomial"), ValueError, r"polynomial needs its Hermite coefficients"),
    (dict(name="polynomial", coefficients=[0.0] * 18), ValueError, r"1 to 17 Hermite coefficients .* got 18"),
    (dict(name="polynomial", coefficients=[1.0, float("nan")]), ValueError, r"coefficients must be finite"),
    (dict(name="polynomial", coefficients="12"), TypeError, r"coefficients must be a sequence"),
    (dict(name="polynomial", coefficients=[2.0], normalize=True), ValueError,
     r"normalize=True needs a polynomial that is not constant"),
    (dict(name="sin", coefficients=[1.0]), ValueError, r"coefficients apply to polynomial, not to sin"),
])
def test_bad_parameters_are_refused_by_name(kwargs, error, match):
    with pytest.raises(error, match=match):
        nnpk.Activation(**kwargs)


def test_mlp_takes_the_parameters_and_checks_them():
    arch = nnpk.MLP([4], activation="monomial", degree=2)
    assert arch.layers[1] == nnpk.Activation("monomial", degree=2)
    assert "degree=2" in repr(arch)
    assert arch.replace(degree=3).layers[1].degree == 3
    with pytest.raises(ValueError, match="rectified_monomial needs a degree"):
        nnpk.MLP([4], activation="rectified_monomial")
    with pytest.raises(ValueError, match="gamma applies to gaussian and rbf, not to relu"):
        nnpk.MLP([4], gamma=2.0)


def test_engine_refuses_too_many_coefficients_before_allocating():
    from nnpk import _core

    with pytest.raises(ValueError, match=r"at most 17 Hermite coefficients \(degree 16\), got 18"):
        _core.activation_value(_core.ActivationKind.polynomial, 0.0, 0.0, 1.0, np.zeros(3), False,
                               coefficients=[1.0] * 18)
    with pytest.raises(ValueError, match=r"degree must be in \[1, 16\], got 40"):
        _core.SeqNode(kind=_core.NodeKind.activation, input=-1, activation=_core.ActivationKind.monomial, degree=40)


def test_store_round_trip_keeps_the_parameters(tmp_path):
    x = np.random.default_rng(8).normal(size=(6, 3))
    arch = nnpk.Network([nnpk.Dense(8), nnpk.Activation("polynomial", coefficients=(0.0, 1.0, 0.25)),
                         nnpk.Dense(8), nnpk.Activation("rbf", gamma=0.5), nnpk.Dense(1)])
    store = nnpk.compute_to_store(tmp_path / "k", x, arch=arch, kernel="analytic_nngp", tile_size=96)
    assert store.arch == arch
    np.testing.assert_allclose(store.to_numpy(), nnpk.analytic(x, arch=arch), rtol=1e-15)
    mlp = nnpk.MLP([8], activation="rectified_monomial", degree=2)
    store = nnpk.compute_to_store(tmp_path / "m", x, arch=mlp, n_networks=2, tile_size=96)
    assert store.arch == mlp
    # A parameter-free activation's spec holds no parameter keys (older stores stay comparable).
    assert "degree" not in nnpk.compute_to_store(tmp_path / "r", x, arch=nnpk.MLP([8]), n_networks=1,
                                                 tile_size=96).spec["arch"]


def test_same_bits_on_any_thread_count():
    """Closed forms of every new activation (dense and convolutional recursions), and Monte Carlo estimates
    through them: the same bits on 1 and 2 threads, symmetric, and columns of a cross kernel equal."""
    x = np.random.default_rng(9).normal(size=(13, 4)) * 0.8
    dense = nnpk.Network([nnpk.Dense(8, b_std=0.2), "cos", nnpk.Dense(8), activation("polynomial"), nnpk.Dense(8),
                          activation("rectified_monomial_3"), nnpk.Dense(8), activation("gaussian_half"),
                          nnpk.Dense(8), activation("rbf"), nnpk.Dense(8), activation("monomial_2", normalize=True),
                          nnpk.Dense(2)])
    assert_analytic_bits_invariant(dense, x, 5)
    images = np.random.default_rng(10).normal(size=(11, 4, 4, 1))
    conv = nnpk.Network([nnpk.Conv(4, (2, 2), b_std=0.1), "exp", nnpk.SumPool((2, 2), stride=1, padding="same"),
                         nnpk.Conv(4, (2, 2)), activation("rectified_monomial_2"), nnpk.GlobalSumPool(),
                         nnpk.Dense(1)])
    assert_analytic_bits_invariant(conv, images, 4)
    for arch, points in ((dense, x), (conv, images)):
        one = nnpk.monte_carlo(points, arch=arch, n_networks=3, get=("nngp", "ntk"), n_threads=1)
        two = nnpk.monte_carlo(points, arch=arch, n_networks=3, get=("nngp", "ntk"), n_threads=2)
        for name in ("nngp", "ntk"):
            np.testing.assert_array_equal(one[name], two[name])
