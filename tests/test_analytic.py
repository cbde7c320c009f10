"""nnpk.analytic against independent references: the recursion of docs/definitions.rst and the
closed forms written out here in numpy, nested adaptive quadrature (scipy) for the other
activations, and Monte Carlo over random networks."""

import inspect
import math

import numpy as np
import pytest
from scipy import integrate, special

import nnpk
from nnpk.kernels._analytic import network_analytic_nodes
from reference import NEEDS_PARAMETER

# ---------------------------------------------------------------------------------------
# Independent references


def abrelu_dual(a, b, q1, q2, c):
    """(E[g(u) g(v)], E[g'(u) g'(v)]) for g = a min(z,0) + b max(z,0) (arc-cosine kernels)."""
    root_p = np.sqrt(q1 * q2)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(root_p > 0, np.clip(c / root_p, -1, 1), 0.0)
    theta = np.arccos(rho)
    dot = (a * a + b * b) / 2 - (a - b) ** 2 * theta / (2 * np.pi)
    return (a - b) ** 2 * root_p * np.sin(theta) / (2 * np.pi) + dot * rho * root_p, dot


def erf_dual(q1, q2, c):
    det = (1 + 2 * q1) * (1 + 2 * q2)
    return 2 / np.pi * np.arcsin(2 * c / np.sqrt(det)), 4 / np.pi / np.sqrt(det - 4 * c * c)


# (a, b) of the abrelu family, and the first moment E g(u) = (b - a) sqrt(q / 2 pi).
FAMILY = {"relu": (0.0, 1.0), "abs": (-1.0, 1.0), "relu_normalized": (0.0, 1.0)}
RELU_MEAN, RELU_STD = 1 / math.sqrt(2 * math.pi), math.sqrt(0.5 - 1 / (2 * math.pi))


def gaussian_moments(activation, slope):
    """E[phi(g)], E[phi(g)^2], g ~ N(0, 1), for the closed-form activations."""
    return {
        "relu": (RELU_MEAN, 0.5),
        "leaky_relu": ((1 - slope) / math.sqrt(2 * math.pi), (1 + slope**2) / 2),
        "abs": (math.sqrt(2 / math.pi), 1.0),
        "erf": (0.0, 2 / math.pi * math.asin(2 / 3)),
        "identity": (0.0, 1.0),
        "relu_normalized": (0.0, 1.0),
    }[activation]


def closed_form_dual(activation, slope=0.01, normalize=False):
    """dual(q1, q2, c) -> (Sigma_new, Sigma_dot) of phi = alpha g - beta, written from CONVENTIONS."""
    alpha, beta = 1.0, 0.0
    if activation == "relu_normalized":
        alpha, beta = 1 / RELU_STD, RELU_MEAN / RELU_STD
    if normalize:
        mean, second = gaussian_moments(activation, slope)
        scale = math.sqrt(second - mean * mean)
        alpha, beta = alpha / scale, (beta + mean) / scale

    def dual(q1, q2, c):
        if activation in ("relu", "abs", "relu_normalized", "leaky_relu"):
            a, b = (slope, 1.0) if activation == "leaky_relu" else FAMILY[activation]
            gg, gd = abrelu_dual(a, b, q1, q2, c)
            means = (b - a) * (np.sqrt(q1 / (2 * np.pi)) + np.sqrt(q2 / (2 * np.pi)))
        elif activation == "erf":
            gg, gd = erf_dual(q1, q2, c)
            means = 0.0
        else:
            gg, gd, means = np.clip(c, -np.sqrt(q1 * q2), np.sqrt(q1 * q2)), 1.0, 0.0
        return alpha**2 * gg - alpha * beta * means + beta**2, alpha**2 * gd

    return dual


def reference_kernels(x1, x2, arch, dual):
    """Every layer's (NNGP, NTK) by the recursion of docs/definitions.rst, in plain numpy."""
    d = x1.shape[1]
    widths = arch.widths(d)
    s12, s11, s22 = x1 @ x2.T / d, (x1 * x1).sum(1) / d, (x2 * x2).sum(1) / d
    # A point paired with itself has correlation exactly 1: take its entry from its variance,
    # not from a differently rounded product (theta has infinite slope at rho = 1).
    same = (x1[:, None, :] == x2[None, :, :]).all(-1)
    s12 = np.where(same, s11[:, None], s12)
    t12 = np.zeros_like(s12)
    nngp, ntk = [], []
    for layer, (w, b) in enumerate(zip(arch.w_stds, arch.b_stds)):
        shift = 0.0 if b is None else b * b
        p12, p11, p22 = w * w * s12 + shift, w * w * s11 + shift, w * w * s22 + shift
        if arch.parameterization == "ntk":
            t12 = p12 + w * w * t12
        else:
            t12 = widths[layer] * s12 + w * w * t12 + (0.0 if b is None else 1.0)
        if layer < arch.n_layers - 1:
            s12, dot = dual(p11[:, None], p22[None, :], p12)
            s11, s22 = dual(p11, p11, p11)[0], dual(p22, p22, p22)[0]
            t12 = t12 * dot
        else:
            s12 = p12
        nngp.append(s12)
        ntk.append(t12)
    return nngp, ntk


def quad_expectation(f, g, q1, q2, rho):
    """E[f(u) g(v)] for unit-free (u, v) ~ N(0, [[q1, c], [c, q2]]), c = rho sqrt(q1 q2), by
    nested adaptive Gauss-Kronrod (scipy.integrate.quad) split at the zeros of u and v."""
    s = math.sqrt(max(0.0, (1 - rho) * (1 + rho)))
    density = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
    opts = dict(epsabs=1e-14, epsrel=1e-11, limit=400)

    def inner(z1):
        if s == 0:
            return g(math.sqrt(q2) * rho * z1)
        split = -rho * z1 / s
        body = lambda z2: density(z2) * g(math.sqrt(q2) * (rho * z1 + s * z2))  # noqa: E731
        points = [split] if abs(split) < 12 else None
        return integrate.quad(body, -12, 12, points=points, **opts)[0]

    outer = lambda z1: density(z1) * f(math.sqrt(q1) * z1) * inner(z1)  # noqa: E731
    return integrate.quad(outer, -12, 12, points=[0.0], **opts)[0]


def pair_points(q1, q2, rho):
    """Two points of R^2 with x.x/2 = q1, x'.x'/2 = q2 and x.x'/2 = rho sqrt(q1 q2)."""
    return np.array([[math.sqrt(2 * q1), 0.0], [math.sqrt(2 * q2) * rho, math.sqrt(2 * q2) * math.sqrt(1 - rho * rho)]])


def gaussian_points(n, d, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


def awkward_points(n=9, d=5):
    """Random points with the awkward cases: a zero vector, an exact duplicate, a negated point,
    a positive multiple (correlation exactly 1 in exact arithmetic)."""
    x = gaussian_points(n, d)
    x[1] = 0.0
    x[3] = x[2]
    x[4] = -x[2]
    x[5] = 2.5 * x[6]
    return x


def assert_close_scaled(actual, expected, rtol, diag1=None, diag2=None):
    """|actual - expected| <= rtol * sqrt(K(x,x) K(x',x')) entrywise (the kernel's own scale)."""
    d1 = np.abs(np.diag(expected)) if diag1 is None else diag1
    d2 = d1 if diag2 is None else diag2
    scale = np.sqrt(np.outer(d1, d2)) + 1e-300
    err = np.abs(actual - expected) / scale
    assert err.max() <= rtol, f"max scaled error {err.max():.3g} at {np.unravel_index(err.argmax(), err.shape)}"


CLOSED_FORMS = ["relu", "leaky_relu", "abs", "erf", "identity", "relu_normalized"]


# ---------------------------------------------------------------------------------------
# The recursion and the closed forms


@pytest.mark.parametrize("activation", CLOSED_FORMS)
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_closed_forms_follow_the_conventions(activation, normalize, parameterization):
    arch = nnpk.MLP(hidden=[7, 11, 5], out=3, activation=activation, W_std=[1.3, 0.8, 1.1, 0.9],
                    b_std=[0.2, None, 0.5, 0.1], parameterization=parameterization, normalize=normalize, slope=0.2)
    x1, x2 = awkward_points(), gaussian_points(4, 5, seed=1)
    x2[0] = x1[2]
    got = nnpk.analytic(x1, x2, arch=arch, get=("nngp", "ntk"), layers="all")
    nngp, ntk = reference_kernels(x1, x2, arch, closed_form_dual(activation, 0.2, normalize))
    assert len(got["nngp"]) == len(got["ntk"]) == arch.n_layers
    for layer in range(arch.n_layers):
        np.testing.assert_allclose(got["nngp"][layer], nngp[layer], rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(got["ntk"][layer], ntk[layer], rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("slope", [0.0, -1.0, 0.3])
def test_leaky_relu_and_abs_are_the_ab_family(slope):
    x = awkward_points(12, 6)
    arch = nnpk.MLP(hidden=[9, 9], activation="leaky_relu", slope=slope, W_std=1.2, b_std=0.3)
    got = nnpk.analytic(x, arch=arch, get=("nngp", "ntk"))
    nngp, ntk = reference_kernels(x, x, arch, closed_form_dual("leaky_relu", slope))
    np.testing.assert_allclose(got["nngp"], nngp[-1], rtol=1e-12)
    np.testing.assert_allclose(got["ntk"], ntk[-1], rtol=1e-12)
    # The family members the engine knows by name are the same map, bit for bit.
    twin = {0.0: "relu", -1.0: "abs"}.get(slope)
    if twin is not None:
        same = nnpk.analytic(x, arch=nnpk.MLP(hidden=[9, 9], activation=twin, W_std=1.2, b_std=0.3),
                             get=("nngp", "ntk"))
        assert np.array_equal(same["nngp"], got["nngp"]) and np.array_equal(same["ntk"], got["ntk"])


@pytest.mark.parametrize("activation,slope", [("relu", 0.01), ("erf", 0.01), ("abs", 0.01), ("leaky_relu", 0.2),
                                              ("relu_normalized", 0.01)])
def test_quadrature_equals_the_closed_form(activation, slope):
    x = gaussian_points(12, 4, seed=2)
    arch = nnpk.MLP(hidden=[5, 5], activation=activation, slope=slope, W_std=1.4, b_std=0.2)
    got = nnpk.analytic(x, arch=arch, get=("nngp", "ntk"), layers="all", closed_form=False)
    nngp, ntk = reference_kernels(x, x, arch, closed_form_dual(activation, slope))
    for layer in range(arch.n_layers):
        assert_close_scaled(got["nngp"][layer], nngp[layer], 1e-7)
        assert_close_scaled(got["ntk"][layer], ntk[layer], 1e-7)


SMOOTH = {
    "tanh": (np.tanh, lambda z: 1 - math.tanh(z) ** 2),
    "sigmoid": (special.expit, lambda z: special.expit(z) * (1 - special.expit(z))),
    "gelu": (lambda z: 0.5 * z * (1 + math.erf(z / math.sqrt(2))),
             lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2))) + z * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)),
    "softplus": (lambda z: np.logaddexp(0.0, z), special.expit),
    "sin": (math.sin, math.cos),
}


@pytest.mark.parametrize("activation", sorted(SMOOTH))
@pytest.mark.parametrize("q1,q2,rho", [(1.0, 0.6, 0.3), (9.0, 5.0, -0.9999), (4.0, 9.0, 1.0)])
def test_default_quadrature_is_accurate_on_smooth_activations(activation, q1, q2, rho):
    """One nonlinearity step, E[phi phi] and E[phi' phi'], to 1e-7 of sqrt(K(x,x) K(x',x'))."""
    f, fd = SMOOTH[activation]
    x = pair_points(q1, q2, rho)
    q1, q2 = (x * x).sum(1) / 2
    rho = float(x[0] @ x[1] / 2 / math.sqrt(q1 * q2))
    arch = nnpk.MLP(hidden=[3], activation=activation)
    got = nnpk.analytic(x, arch=arch, get=("nngp", "ntk"), layers="all")
    sigma, sigma_dot = got["nngp"][0], got["ntk"][0] / (x @ x.T / 2)
    phi_sq = [quad_expectation(f, f, q, q, 1.0) for q in (q1, q2)]
    dot_sq = [quad_expectation(fd, fd, q, q, 1.0) for q in (q1, q2)]
    scale, dot_scale = math.sqrt(phi_sq[0] * phi_sq[1]), math.sqrt(dot_sq[0] * dot_sq[1])
    assert abs(sigma[0, 1] - quad_expectation(f, f, q1, q2, rho)) <= 1e-7 * scale
    assert abs(sigma_dot[0, 1] - quad_expectation(fd, fd, q1, q2, rho)) <= 1e-7 * dot_scale
    assert abs(sigma[0, 0] - phi_sq[0]) <= 1e-7 * phi_sq[0]
    assert abs(sigma_dot[1, 1] - dot_sq[1]) <= 1e-7 * dot_sq[1]


def test_normalized_quadrature_activation_applies_shift_and_scale():
    x = pair_points(1.5, 0.7, 0.4)
    q1, q2 = (x * x).sum(1) / 2
    rho = float(x[0] @ x[1] / 2 / math.sqrt(q1 * q2))
    arch = nnpk.MLP(hidden=[3], activation="tanh", normalize=True)
    mean = integrate.quad(lambda z: math.tanh(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -12, 12)[0]
    second = integrate.quad(lambda z: math.tanh(z) ** 2 * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -12, 12)[0]
    scale = math.sqrt(second - mean * mean)
    phi = lambda z: (math.tanh(z) - mean) / scale  # noqa: E731
    got = nnpk.analytic(x, arch=arch, layers="all")[0]
    assert got[0, 1] == pytest.approx(quad_expectation(phi, phi, q1, q2, rho), abs=1e-8)


# ---------------------------------------------------------------------------------------
# Normalised activations and depth


def equicorrelated_points(n, a, b):
    """n points of R^d, d = a^2 + b^2: x_i = a e_0 + b e_(i+1), so x.x/d = 1 and x.x'/d = a^2/d,
    exactly in the engine's arithmetic (integer sums times 1/d) for the (a, b) used here."""
    d = a * a + b * b
    assert (a * a + b * b) * (1.0 / d) == 1.0
    x = np.zeros((n, d))
    x[:, 0] = a
    x[np.arange(n), np.arange(1, n + 1)] = b
    return x, a * a * (1.0 / d)


def normalized_relu_dual(rho):
    return (np.sqrt(1 - rho * rho) + (np.pi - np.arccos(rho)) * rho - 1) / (np.pi - 1)


@pytest.mark.parametrize("a,b", [(3, 4), (4, 3), (20, 1)])
def test_normalized_relu_iterates_the_dual_of_the_conventions(a, b):
    """Unit-variance inputs at correlation rho (0.36, 0.64, 400/401): L relu_normalized layers
    (W_std=1, no bias) map rho L times by the dual; the diagonal stays exactly 1."""
    depth = 12
    x, rho = equicorrelated_points(5, a, b)
    arch = nnpk.MLP(hidden=[4] * depth, activation="relu_normalized", W_std=1.0)
    kernels = nnpk.analytic(x, arch=arch, layers="all")
    expected = rho
    for layer in range(depth):
        expected = normalized_relu_dual(expected)
        K = kernels[layer]
        assert np.all(np.diag(K) == 1.0)
        np.testing.assert_allclose(K[~np.eye(5, dtype=bool)], expected, rtol=1e-10, atol=1e-13)
    assert np.array_equal(kernels[-1], kernels[-2])  # readout W_std=1, no bias


@pytest.mark.parametrize("activation,normalize", [("relu_normalized", False), ("relu", True), ("tanh", True),
                                                  ("erf", True), ("gelu", True)])
def test_normalized_diagonal_stays_exactly_one(activation, normalize):
    signs = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [-1, -1, 1, 1], [1, 1, 1, -1]], dtype=float)
    x = np.vstack([signs, 2 * np.eye(4)[:2]])  # x.x/4 == 1 exactly
    depth = 30 if activation in ("relu_normalized", "relu") else 8
    arch = nnpk.MLP(hidden=[4] * depth, activation=activation, normalize=normalize)
    for K in nnpk.analytic(x, arch=arch, layers="all")[:-1]:
        assert np.all(np.diag(K) == 1.0)


@pytest.mark.parametrize("activation,w_std,b_std", [("relu", 1.0, None), ("relu", math.sqrt(2), None),
                                                    ("relu", 1.5, 0.3), ("erf", 2.0, 0.1), ("erf", 1.0, None)])
def test_two_hundred_layers_stay_finite(activation, w_std, b_std):
    x = awkward_points(8, 6)
    arch = nnpk.MLP(hidden=[3] * 200, activation=activation, W_std=w_std, b_std=b_std)
    got = nnpk.analytic(x, arch=arch, get=("nngp", "ntk"))
    assert np.all(np.isfinite(got["nngp"])) and np.all(np.isfinite(got["ntk"]))
    assert np.array_equal(got["nngp"], got["nngp"].T)


def test_zero_inputs_give_theta_half_pi_not_nan():
    x = np.zeros((3, 4))
    x[2] = [1.0, -2.0, 0.5, 0.0]
    arch = nnpk.MLP(hidden=[5, 5], activation="relu", W_std=1.0)
    got = nnpk.analytic(x, arch=arch, get=("nngp", "ntk"), layers="all")
    for K in got["nngp"] + got["ntk"]:
        assert np.all(np.isfinite(K))
        assert np.all(K[:2] == 0) and np.all(K[:, :2] == 0)
    # Under "standard" the NTK of a zero input still has its biases' share: p = 0, theta = pi/2,
    # so relu's Sigma_dot is 1/4 there (CONVENTIONS).
    arch = nnpk.MLP(hidden=[5], activation="relu", b_std=0.0, parameterization="standard")
    ntk = nnpk.analytic(x[:2], arch=arch, get="ntk", layers="all")[0]
    np.testing.assert_allclose(ntk, 0.25, rtol=1e-15)


# ---------------------------------------------------------------------------------------
# Monte Carlo converges to the limit


# Bare names only (tests/test_activations_more.py covers those needing a parameter); not exp, whose features
# after two layers are too heavy-tailed for a few hundred networks to average.
MC_ARCHS = [(a, False) for a in nnpk.ACTIVATIONS if a not in NEEDS_PARAMETER + ("exp",)] + [("tanh", True)]


# Averages over sampled networks only: where monte_carlo can also integrate layers by the dual
# maps under test (its estimator= option), the comparison asks for the plain one by name.
SAMPLED = {"estimator": "sampled"} if "estimator" in inspect.signature(nnpk.monte_carlo).parameters else {}


def monte_carlo_blocks(x, arch, n_networks, n_blocks, layers="output"):
    """Independent Monte Carlo estimates over n_networks networks each (seeds 0, 1, ...)."""
    return [nnpk.monte_carlo(x, arch=arch, n_networks=n_networks, seed=seed, layers=layers, n_threads=1, **SAMPLED)
            for seed in range(n_blocks)]


def rms(a):
    return float(np.sqrt(np.mean(np.square(a))))


@pytest.mark.parametrize("activation,normalize", MC_ARCHS)
def test_monte_carlo_converges_to_analytic(activation, normalize):
    """The output NNGP estimated over M, 4M and 16M networks stays within a few standard errors
    of the limit, se(M) / sqrt(k) for kM networks, se(M) measured from 16 independent blocks of M.
    (Entries share much of their noise, so the RMS error behaves like one draw: 4 standard
    errors, about the 0.999 quantile of t with 15 degrees of freedom.)"""
    x = gaussian_points(20, 6, seed=3)
    arch = nnpk.MLP(hidden=[256, 256], out=8, activation=activation, normalize=normalize, W_std=1.2, b_std=0.2,
                    slope=0.1)
    exact = nnpk.analytic(x, arch=arch)
    blocks = np.stack(monte_carlo_blocks(x, arch, 32, 16))
    se_m = rms(blocks.std(axis=0, ddof=1))
    for k in (1, 4, 16):
        assert rms(blocks[:k].mean(axis=0) - exact) <= 4 * se_m / math.sqrt(k), f"{k} blocks"


@pytest.mark.parametrize("activation", ["relu", "tanh", "relu_normalized"])
def test_layers_all_matches_monte_carlo_layer_by_layer(activation):
    """The lists are aligned layer for layer with monte_carlo(layers="all"), hidden layers'
    conjugate kernels included, within a few standard errors of the estimate."""
    x = gaussian_points(10, 5, seed=4)
    arch = nnpk.MLP(hidden=[1024, 1024, 1024], out=16, activation=activation, W_std=1.3, b_std=0.1)
    exact = nnpk.analytic(x, arch=arch, layers="all")
    n_blocks = 4
    blocks = monte_carlo_blocks(x, arch, 8, n_blocks, layers="all")
    assert len(exact) == len(blocks[0]) == arch.n_layers
    for layer in range(arch.n_layers):
        estimates = np.stack([b[layer] for b in blocks])
        se_mean = rms(estimates.std(axis=0, ddof=1)) / math.sqrt(n_blocks)
        assert rms(estimates.mean(axis=0) - exact[layer]) <= 3 * se_mean


# ---------------------------------------------------------------------------------------
# Shapes, threads, exactness


def test_returns_and_shapes():
    x1, x2 = gaussian_points(5, 3), gaussian_points(4, 3, seed=1)
    arch = nnpk.MLP(hidden=[8, 8], out=2)
    K = nnpk.analytic(x1, x2, arch=arch)
    assert isinstance(K, np.ndarray) and K.shape == (5, 4) and K.dtype == np.float64
    both = nnpk.analytic(x1, x2, arch=arch, get=["ntk", "nngp"])
    assert list(both) == ["ntk", "nngp"] and np.array_equal(both["nngp"], K)
    layers = nnpk.analytic(x1, arch=arch, get="ntk", layers="all")
    assert isinstance(layers, list) and len(layers) == 3 and all(k.shape == (5, 5) for k in layers)
    assert np.array_equal(layers[-1], nnpk.analytic(x1, arch=arch, get="ntk"))


@pytest.mark.parametrize("activation,closed_form", [("relu", True), ("erf", True), ("tanh", True), ("abs", False)])
def test_bitwise_equal_across_threads_and_symmetric(activation, closed_form):
    x = awkward_points(150, 7)
    arch = nnpk.MLP(hidden=[6, 6], activation=activation, W_std=1.3, b_std=0.2, normalize=True)
    kw = dict(arch=arch, get=("nngp", "ntk"), quadrature_order=12, closed_form=closed_form)
    one = nnpk.analytic(x, n_threads=1, **kw)
    two = nnpk.analytic(x, n_threads=2, **kw)
    full = nnpk.analytic(x, x.copy(), n_threads=2, **kw)  # every tile, no mirror
    for name in one:
        assert np.array_equal(one[name], two[name])
        assert np.array_equal(one[name], one[name].T)
        assert np.array_equal(one[name], full[name])


def test_result_does_not_depend_on_the_tile():
    x = awkward_points(70, 4)
    arch = nnpk.MLP(hidden=[6, 6], activation="gelu", b_std=0.1)
    nodes, layer_nodes = network_analytic_nodes(arch, (4,))
    wanted = [layer_nodes[l] for l in (arch.kernel_layers()[0], arch.kernel_layers()[2])]
    param = nnpk._core.Parameterization.ntk
    tiles = [nnpk._core.analytic_network_kernels(x, None, nodes, param, True, True, wanted, True, 10, 2, t)
             for t in (1, 13, 64, 100)]
    for other in tiles[1:]:
        for a, b in zip(tiles[0][0] + tiles[0][1], other[0] + other[1]):
            assert np.array_equal(a, b)


# ---------------------------------------------------------------------------------------
# Errors: the same clear messages as monte_carlo


ARCH = nnpk.MLP(hidden=[4], out=1)


@pytest.mark.parametrize("call,error,match", [
    (lambda: nnpk.analytic(np.ones(3), arch=ARCH), ValueError, "x1 must be a 2-D array"),
    (lambda: nnpk.analytic(np.ones((0, 3)), arch=ARCH), ValueError, "x1 is empty"),
    (lambda: nnpk.analytic(np.array([[1.0, np.nan]]), arch=ARCH), ValueError, "x1 contains NaN"),
    (lambda: nnpk.analytic(np.array([["a"]]), arch=ARCH), TypeError, "x1 must hold real numbers"),
    (lambda: nnpk.analytic(None, arch=ARCH), TypeError, "x1 must be an array"),
    (lambda: nnpk.analytic(np.ones((2, 3)), np.ones((2, 4)), arch=ARCH), ValueError, "x2 has 4 features, x1 has 3"),
    (lambda: nnpk.analytic(np.ones((2, 3)), np.array([[np.inf, 0, 0]]), arch=ARCH), ValueError, "x2 contains NaN"),
    (lambda: nnpk.analytic(np.ones((2, 3)), arch="relu"), TypeError, "arch must be an nnpk.MLP"),
    (lambda: nnpk.analytic(np.ones((2, 3)), arch=ARCH, get="kernel"), ValueError, "get must be"),
    (lambda: nnpk.analytic(np.ones((2, 3)), arch=ARCH, get=()), ValueError, "get must be"),
    (lambda: nnpk.analytic(np.ones((2, 3)), arch=ARCH, get=("ntk", "ntk")), ValueError, "get must be"),
    (lambda: nnpk.analytic(np.ones((2, 3)), arch=ARCH, layers="hidden"), ValueError, "layers must be"),
    (lambda: nnpk.analytic(np.ones((2, 3)), arch=ARCH, n_threads=0), ValueError, "n_threads must not be 0"),
    (lambda: nnpk.analytic(np.ones((2, 3)), arch=ARCH, n_threads=1.5), TypeError, "n_threads must be an integer"),
    (lambda: nnpk.analytic(np.ones((2, 3)), arch=ARCH, quadrature_order=0), ValueError,
     "quadrature_order must be >= 1"),
    (lambda: nnpk.analytic(np.ones((2, 3)), arch=ARCH, quadrature_order=2.5), TypeError,
     "quadrature_order must be an integer"),
    (lambda: nnpk.analytic(np.ones((2, 3)), arch=ARCH, closed_form="yes"), TypeError, "closed_form must be a bool"),
])
def test_bad_input_is_refused_clearly(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_output_too_large_for_memory(monkeypatch):
    monkeypatch.setenv("NNPK_MEMORY_LIMIT", "1000")
    with pytest.raises(MemoryError, match="the output"):
        nnpk.analytic(np.ones((20, 3)), arch=ARCH, get=("nngp", "ntk"))
