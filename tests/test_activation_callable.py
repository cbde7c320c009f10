"""Activation("elementwise", fn=f): a user's numpy function, tabulated once and interpolated by the engine.

References are written here: the network's forward pass and its Jacobian in numpy with f itself, the
empirical NTK against central finite differences of the engine's outputs, the analytic kernels against
the built-in closed forms (f = np.sin, np.cos, ...) and against a numpy Gauss-Hermite evaluation of the
one-hidden-layer recursion, and Monte Carlo against analytic."""

import functools
import math

import numpy as np
import pytest
from scipy import special

import nnpk
from conftest import assert_analytic_bits_invariant
from reference_networks import check_dense_activation_near_analytic


def rational(z):
    return z**3 / (1 + z**2)


def rational_derivative(z):
    return (3 * z**2 + z**4) / (1 + z**2) ** 2


def network(act, width=6, out=2, b_std=0.3):
    return nnpk.Network([nnpk.Dense(width, b_std=b_std), act, nnpk.Dense(width, b_std=b_std), act,
                         nnpk.Dense(out, b_std=b_std)])


def numpy_forward(net, params, x, phi):
    """Dense (NTK parameterisation: W_std / sqrt(fan_in), b_std) and phi in turn, from the layer list."""
    it = iter(params)
    h = np.asarray(x, dtype=np.float64)
    for layer in net.layers:
        if isinstance(layer, nnpk.Dense):
            W, b = next(it)
            h = layer.W_std / math.sqrt(W.shape[0]) * (h @ W) + (0.0 if b is None else layer.b_std * b)
        else:
            h = phi(h)
    return h


X = np.random.default_rng(0).normal(size=(5, 3))


# ------------------------------------------------------------------------ the function and its table

def test_table_interpolates_the_function_and_its_derivative():
    """Inside [-16, 16] the interpolant is f within 1e-10 (values) and 1e-8 (derivatives), with the
    derivative by five-point differences or given; beyond, the tangent line at the end."""
    z = np.concatenate([np.linspace(-15.9, 15.9, 1001), [0.0, 1 / 512, -1e-7]])
    for fn, dfn in ((np.sin, np.cos), (rational, rational_derivative), (np.tanh, lambda z: 1 - np.tanh(z) ** 2)):
        for given in (None, dfn):
            net = nnpk.Activation("elementwise", fn=fn, fn_derivative=given)
            assert np.all(np.abs(net.evaluate(z) - fn(z)) <= 1e-10 * (1 + np.abs(fn(z))))
            np.testing.assert_allclose(net.evaluate(z, derivative=True), dfn(z), rtol=0, atol=1e-8)
    net = nnpk.Activation("elementwise", fn=rational)
    far = np.array([-40.0, -16.5, 16.0, 17.0, 100.0])
    end = np.where(far < 0, -16.0, 16.0)
    tangent = rational(end) + rational_derivative(end) * (far - end)
    np.testing.assert_allclose(net.evaluate(far), tangent, rtol=1e-9)
    np.testing.assert_allclose(net.evaluate(far, derivative=True), rational_derivative(end), rtol=1e-9)


def test_derivative_is_the_interpolants_own():
    """phi' is the derivative of the interpolated phi itself (central differences of it), between and
    at nodes, so gradients are those of the function the engine evaluates."""
    net = nnpk.Activation("elementwise", fn=np.abs)
    z = np.linspace(-3, 3, 301) + 1e-3 / 7
    h = 1e-7
    difference = (net.evaluate(z + h) - net.evaluate(z - h)) / (2 * h)
    np.testing.assert_allclose(net.evaluate(z, derivative=True), difference, atol=1e-6)


# ------------------------------------------------------------------------ forward, backward, training

@pytest.mark.parametrize("fn, phi", [(np.sin, np.sin), (rational, rational)])
def test_forward_against_numpy(fn, phi):
    net = network(nnpk.Activation("elementwise", fn=fn))
    params = nnpk.sample_params(net, (3,), seed=1, index=0)
    outputs = nnpk.initial_outputs(X, net, seed=1, index=0)
    np.testing.assert_allclose(outputs, numpy_forward(net, params, X, phi), rtol=1e-9, atol=1e-9)


def test_sin_is_the_builtin_sin():
    net = network(nnpk.Activation("elementwise", fn=np.sin))
    builtin = network("sin")
    params = nnpk.sample_params(net, (3,), seed=4, index=2)
    np.testing.assert_allclose(nnpk.initial_outputs(X, net, seed=4, index=2),
                               nnpk.initial_outputs(X, builtin, seed=4, index=2), rtol=1e-10, atol=1e-10)
    mine = nnpk.empirical(X, arch=net, params=params, get=("nngp", "ntk"))
    theirs = nnpk.empirical(X, arch=builtin, params=params, get=("nngp", "ntk"))
    for name in ("nngp", "ntk"):
        np.testing.assert_allclose(mine[name], theirs[name], rtol=1e-9, atol=1e-9)


def test_empirical_ntk_against_finite_differences():
    """Theta(x, x') = J(x) J(x')^T / n_outputs with J by central differences of the engine's logits in each
    parameter (the interpolant is C^1, the differences of order h^2)."""
    net = network(nnpk.Activation("elementwise", fn=rational), width=4)
    params = nnpk.sample_params(net, (3,), seed=2, index=0)
    x = X[:3]
    flat = [a for pair in params for a in pair if a is not None]
    columns = [(array, i) for array in flat for i in np.ndindex(array.shape)]
    h = 1e-5
    # the logits through numpy_forward with the engine's own phi (the interpolant)
    phi = net.layers[1].evaluate
    jac = []
    for array, i in columns:
        keep = array[i]
        array[i] = keep + h
        up = numpy_forward(net, params, x, phi)
        array[i] = keep - h
        down = numpy_forward(net, params, x, phi)
        array[i] = keep
        jac.append((up - down) / (2 * h))
    jac = np.stack(jac, axis=-1)  # (n, C, P)
    expected = np.einsum("icp,jcp->ij", jac, jac) / jac.shape[1]
    ntk = nnpk.empirical(x, arch=net, params=params, get="ntk")
    np.testing.assert_allclose(ntk, expected, rtol=1e-6, atol=1e-7)


def test_training_lowers_the_loss():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(32, 3))
    y = np.sin(x[:, 0])
    arch = nnpk.Network([nnpk.Dense(32), nnpk.Activation("elementwise", fn=rational), nnpk.Dense(1)])
    learner = nnpk.NetworkLearner(arch, loss="squared", optimizer="adam", lr=1e-2, epochs=30, batch_size=32, seed=0)
    learner.fit(x, y)
    history = learner.history_["loss"]
    assert history[-1] < 0.5 * history[0]


# ------------------------------------------------------------------------ analytic kernels

@pytest.mark.parametrize("fn, name", [(np.sin, "sin"), (np.tanh, "tanh"), (np.cos, "cos"), (special.erf, "erf")])
@pytest.mark.parametrize("normalize", [False, True])
def test_analytic_against_the_builtin_activation(fn, name, normalize):
    """The quadrature of the tabulated f against the built-in activation's dual map (closed forms for sin,
    cos and erf; the same quadrature of the exact tanh)."""
    x = np.random.default_rng(3).normal(size=(5, 3)) * 0.7
    mine = network(nnpk.Activation("elementwise", fn=fn, normalize=normalize), out=1)
    builtin = network(nnpk.Activation(name, normalize=normalize), out=1)
    a = nnpk.analytic(x, arch=mine, get=("nngp", "ntk"))
    b = nnpk.analytic(x, arch=builtin, get=("nngp", "ntk"))
    for kernel in ("nngp", "ntk"):
        np.testing.assert_allclose(a[kernel], b[kernel], rtol=1e-7, atol=1e-9 * np.abs(b[kernel]).max())


@functools.lru_cache(maxsize=None)
def _hermite_rule(order):
    """Nodes and weights of E f(g), g ~ N(0, 1)."""
    z, w = np.polynomial.hermite_e.hermegauss(order)
    return z, w / math.sqrt(2 * math.pi)


def numpy_duals(phi, dphi, q1, q2, c, order=300):
    """E[phi(u) phi(v)] and E[phi'(u) phi'(v)], (u, v) ~ N(0, [[q1, c], [c, q2]]), by a tensor
    Gauss-Hermite rule in the Cholesky coordinates (order 300: the rational test function has poles at
    +-i, which slow Gauss-Hermite down)."""
    z, w = _hermite_rule(order)
    a = math.sqrt(q1)
    b = c / a
    s = math.sqrt(max(q2 - b * b, 0.0))
    u = a * z[:, None] + 0 * z[None, :]
    v = b * z[:, None] + s * z[None, :]
    weights = np.outer(w, w)
    return float((weights * phi(u) * phi(v)).sum()), float((weights * dphi(u) * dphi(v)).sum())


def test_analytic_against_numpy_gauss_hermite():
    """One hidden layer, W_std = 1, no bias, inputs with x.x/d = q: NNGP = E[phi phi], NTK = NNGP +
    c E[phi' phi'] (the readout's and the hidden layer's parameters)."""
    x = np.array([[1.2, -0.3], [0.4, 0.9], [-0.8, 0.5]])
    net = nnpk.Network([nnpk.Dense(4), nnpk.Activation("elementwise", fn=rational), nnpk.Dense(1)])
    out = nnpk.analytic(x, arch=net, get=("nngp", "ntk"))
    gram = x @ x.T / x.shape[1]
    for i in range(3):
        for j in range(3):
            sigma, sigma_dot = numpy_duals(rational, rational_derivative, gram[i, i], gram[j, j], gram[i, j])
            assert out["nngp"][i, j] == pytest.approx(sigma, rel=1e-8, abs=1e-10)
            assert out["ntk"][i, j] == pytest.approx(sigma + gram[i, j] * sigma_dot, rel=1e-8, abs=1e-10)


def test_normalize_gives_unit_second_moment():
    x = np.array([[1.0, 1.0], [1.0, -1.0]])  # x.x/d = 1
    net = nnpk.Network([nnpk.Dense(4), nnpk.Activation("elementwise", fn=rational, normalize=True), nnpk.Dense(1)])
    np.testing.assert_allclose(np.diag(nnpk.analytic(x, arch=net)), 1.0, rtol=1e-10)


def test_monte_carlo_converges_to_analytic():
    x = np.random.default_rng(5).normal(size=(4, 3)) * 0.7
    check_dense_activation_near_analytic(x, nnpk.Activation("elementwise", fn=rational), width=512, n_networks=16)


def test_same_bits_on_any_thread_count():
    x = np.random.default_rng(9).normal(size=(13, 4)) * 0.8
    net = network(nnpk.Activation("elementwise", fn=rational))
    assert_analytic_bits_invariant(net, x, 5)
    one = nnpk.monte_carlo(x, arch=net, n_networks=3, get=("nngp", "ntk"), n_threads=1)
    two = nnpk.monte_carlo(x, arch=net, n_networks=3, get=("nngp", "ntk"), n_threads=2)
    for name in ("nngp", "ntk"):
        np.testing.assert_array_equal(one[name], two[name])


# ------------------------------------------------------------------------ refusals

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(fn=3.0), TypeError, "fn must be a callable"),
    (dict(), ValueError, "elementwise needs its function"),
    (dict(fn=np.sin, fn_derivative="cos"), TypeError, "fn_derivative must be a callable"),
    (dict(fn=lambda z: np.sum(z)), ValueError, r"fn\(z\) must return an array of z's shape"),
    (dict(fn=lambda z: z[:-1]), ValueError, r"fn\(z\) must return an array of z's shape"),
    (dict(fn=np.log), ValueError, r"fn\(z\) must be finite"),
    (dict(fn=lambda z: 1.0 / z), ValueError, r"fn\(z\) must be finite"),
    (dict(fn=math.sin), ValueError, "fn must be a numpy-vectorised function"),
    (dict(fn=np.sin, fn_derivative=lambda z: np.exp(z**3)), ValueError, r"fn_derivative\(z\) must be finite"),
    (dict(fn=lambda z: 0 * z + 1.0, normalize=True), ValueError, "not constant"),
    (dict(fn=np.sin, degree=2), ValueError, "degree does not apply"),
])
def test_bad_functions_are_refused_by_name(kwargs, error, match):
    with np.errstate(all="ignore"), pytest.raises(error, match=match):
        nnpk.Activation("elementwise", **kwargs)


def test_fn_only_with_elementwise_and_mlp_points_to_network():
    with pytest.raises(ValueError, match="fn and fn_derivative apply to"):
        nnpk.Activation("tanh", fn=np.tanh)
    with pytest.raises(ValueError, match="takes a function"):
        nnpk.MLP([4], activation="elementwise")


def test_stores_refuse_it(tmp_path):
    net = network(nnpk.Activation("elementwise", fn=np.sin))
    with pytest.raises(ValueError, match="cannot record Activation\\('elementwise'"):
        nnpk.compute_to_store(tmp_path / "k", X, arch=net, kernel="analytic_nngp")
    assert not (tmp_path / "k").exists()


def test_job_files_refuse_it(tmp_path):
    from nnpk.store._jobs import JobError, load_job

    np.save(tmp_path / "x.npy", X)
    (tmp_path / "job.toml").write_text('store = "s"\nx1 = "x.npy"\n[arch]\ntype = "Network"\n'
                                       'layers = [{type = "Dense", width = 4}, {type = "Activation", '
                                       'name = "elementwise", fn = "numpy.sin"}, {type = "Dense", width = 1}]\n')
    with pytest.raises(JobError, match="cannot describe Activation\\('elementwise'"):
        load_job(str(tmp_path / "job.toml"))


def test_convolutional_and_recurrent_networks_and_estimators_take_it():
    """Spatial and recurrent analytic recursions: np.sin / np.tanh tabulated against the built-ins; a
    scikit-learn estimator (cloned) fits with it."""
    images = np.random.default_rng(0).normal(size=(4, 4, 4, 1))
    conv = lambda a: nnpk.Network([nnpk.Conv(4, (2, 2), b_std=0.1), a, nnpk.GlobalAvgPool(),  # noqa: E731
                                   nnpk.Dense(1)])
    sequences = np.random.default_rng(1).normal(size=(4, 3, 2))
    recurrent = lambda a: nnpk.Network([nnpk.Recurrent(4, activation=a), nnpk.Dense(1)])  # noqa: E731
    for arch, fn, name, points in ((conv, np.sin, "sin", images), (recurrent, np.tanh, "tanh", sequences)):
        mine = nnpk.analytic(points, arch=arch(nnpk.Activation("elementwise", fn=fn)), get=("nngp", "ntk"))
        theirs = nnpk.analytic(points, arch=arch(name), get=("nngp", "ntk"))
        for kernel in ("nngp", "ntk"):
            np.testing.assert_allclose(mine[kernel], theirs[kernel], rtol=1e-7, atol=1e-9)
    from sklearn.base import clone

    x = np.random.default_rng(2).normal(size=(20, 3))
    net = nnpk.Network([nnpk.Dense(8), nnpk.Activation("elementwise", fn=np.sin), nnpk.Dense(1)])
    estimator = clone(nnpk.sklearn.NNPKRegressor(arch=net, kernel="ntk", method="analytic"))
    assert estimator.fit(x, np.sin(x[:, 0])).score(x, np.sin(x[:, 0])) > 0.99


def test_describe_names_the_function():
    assert "rational" in nnpk.Activation("elementwise", fn=rational).describe()
    assert nnpk.Activation("elementwise", fn=np.sin) == nnpk.Activation("elementwise", fn=np.sin)
