"""nnpk.analytic for nnpk.Network: against nnpk.MLP, an independent numpy recursion, Monte
Carlo estimates at large width (the NTK from a numpy backward pass), the residual identity, and
the refusals."""

import math

import numpy as np
import pytest

import nnpk
from nnpk import Activation, Conv, Dense, Flatten, MaxPool, Network, Residual
from conftest import assert_analytic_bits_invariant
from reference import activation, activation_derivative

RNG = np.random.default_rng(5)
X = RNG.normal(size=(9, 6))


# ---------------------------------------------------------------- numpy references

def _dual(name, q1, q2, c):
    """E[phi(u) phi(v)], E[phi'(u) phi'(v)] in closed form (docs/definitions.rst) for relu, erf, identity."""
    if name == "identity":
        return c, np.ones_like(c)
    if name == "relu":
        p = np.sqrt(np.outer(q1, q2))
        theta = np.arccos(np.clip(c / p, -1, 1))
        return p * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi), (np.pi - theta) / (2 * np.pi)
    assert name == "erf"
    det = np.outer(1 + 2 * q1, 1 + 2 * q2)
    return 2 / np.pi * np.arcsin(2 * c / np.sqrt(det)), 4 / np.pi / np.sqrt(det - 4 * c * c)


def reference_kernels(network, x1, x2):
    """(NNGP, NTK) of the network's output by the layer recursion written out in numpy: the full
    matrices for (x1, x2) and the two diagonals carried alongside."""
    standard = network.parameterization == "standard"

    def run(layers, state, fan_in):
        for layer in layers:
            state, fan_in = step(layer, state, fan_in)
        return state, fan_in

    def step(layer, state, fan_in):
        (s, t), (q1, r1), (q2, r2) = state
        if isinstance(layer, Dense):
            w2, b2 = layer.W_std**2, (layer.b_std or 0.0) ** 2
            bias = 0.0 if layer.b_std is None else 1.0

            def affine(k, th):
                return w2 * k + b2, (fan_in * k + w2 * th + bias) if standard else (w2 * k + b2 + w2 * th)
            return (affine(s, t), affine(q1, r1), affine(q2, r2)), layer.width
        if isinstance(layer, Activation):
            new, dot = _dual(layer.name, q1, q2, s)
            diagonal = lambda q, r: tuple(np.diag(m) * f for m, f in zip(_dual(layer.name, q, q, np.diag(q)), (1, r)))
            return ((new, t * dot), diagonal(q1, r1), diagonal(q2, r2)), fan_in
        if isinstance(layer, Residual):
            (bs, bt), (bq1, br1), (bq2, br2) = run(layer.block, state, fan_in)[0]
            a = layer.scale**2
            return ((s + a * bs, t + a * bt), (q1 + a * bq1, r1 + a * br1), (q2 + a * bq2, r2 + a * br2)), fan_in
        assert isinstance(layer, Flatten)
        return state, fan_in

    x1 = x1.reshape(len(x1), -1)
    x2 = x2.reshape(len(x2), -1)
    d = x1.shape[1]
    zero = lambda k: (k, np.zeros_like(k))
    state = (zero(x1 @ x2.T / d), zero((x1 * x1).sum(1) / d), zero((x2 * x2).sum(1) / d))
    (s, t), _, _ = run(network.layers, state, d)[0]
    return s, t


def empirical_ntk(network, params, x):
    """One network's NTK of its single logit by a numpy backward pass: the sum over Dense layers
    of (delta . delta') (a . a' + beta^2), a the layer's scaled input (docs/definitions.rst)."""
    standard = network.parameterization == "standard"
    it = iter(params)

    def forward(layers, h):
        backs = []
        for layer in layers:
            h, back = step(layer, h)
            backs.append(back)

        def back_all(g, shares):
            for back in reversed(backs):
                g = back(g, shares)
            return g
        return h, back_all

    def step(layer, h):
        if isinstance(layer, Dense):
            W, b = next(it)
            scale = 1.0 if standard else layer.W_std / math.sqrt(h.shape[1])
            beta2 = 0.0 if b is None else (1.0 if standard else layer.b_std**2)
            a = scale * h
            z = a @ W + (0.0 if b is None else (1.0 if standard else layer.b_std) * b)

            def back(g, shares):
                shares.append((g @ g.T) * (a @ a.T + beta2))
                return scale * g @ W.T
            return z, back
        if isinstance(layer, Activation):
            phi, dphi = activation(layer.name, layer.slope), activation_derivative(layer.name, layer.slope)
            return phi(h), lambda g, shares: g * dphi(h)
        assert isinstance(layer, Residual)
        out, back_block = forward(layer.block, h)
        return h + layer.scale * out, lambda g, shares: g + back_block(layer.scale * g, shares)

    out, back = forward(network.layers, np.asarray(x, dtype=np.float64))
    assert out.shape[1] == 1
    shares = []
    back(np.ones_like(out), shares)
    return sum(shares)


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("activation_kw", [dict(activation="relu"), dict(activation="tanh", normalize=True),
                                           dict(activation="erf")])
def test_dense_network_equals_mlp(parameterization, activation_kw):
    mlp = nnpk.MLP(hidden=[17, 11], out=3, W_std=[1.4, 0.9, 1.1], b_std=[0.2, None, 0.3],
                   parameterization=parameterization, **activation_kw)
    network = mlp.to_network()
    x2 = RNG.normal(size=(4, 6))
    for pair in ((X, None), (X, x2)):
        want = nnpk.analytic(*pair, arch=mlp, get=("nngp", "ntk"), layers="all")
        got = nnpk.analytic(*pair, arch=network, get=("nngp", "ntk"), layers="all")
        for name in ("nngp", "ntk"):
            # The MLP's hidden kernels are the Network's activation layers' (then the readout's).
            assert len(got[name]) == 5
            for k, layer in enumerate([1, 3, 4]):
                np.testing.assert_array_equal(got[name][layer], want[name][k])


RESIDUAL = [Dense(32, b_std=0.3), Residual([Dense(32), "relu", Dense(32, W_std=1.2, b_std=0.1)], scale=0.7), "erf",
            Residual([Dense(32, b_std=0.2)], scale=-0.5), Dense(24), "relu", Dense(1, b_std=0.4)]


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_residual_network_against_numpy_recursion(parameterization):
    network = Network(RESIDUAL, parameterization=parameterization)
    x2 = RNG.normal(size=(5, 6))
    got = nnpk.analytic(X, x2, arch=network, get=("nngp", "ntk"))
    want = reference_kernels(network, X, x2)
    np.testing.assert_allclose(got["nngp"], want[0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got["ntk"], want[1], rtol=1e-12, atol=1e-11)


def test_flatten_of_spatial_input_is_the_flat_network():
    images = RNG.normal(size=(6, 3, 4, 2))
    network = Network([Flatten(), Dense(8), "relu", Residual([Dense(8)], 0.5), Dense(2)])
    flat = Network(network.layers[1:])
    for name in ("nngp", "ntk"):
        np.testing.assert_array_equal(nnpk.analytic(images, arch=network, get=name),
                                      nnpk.analytic(images.reshape(6, -1), arch=flat, get=name))


def test_residual_with_scale_zero_is_the_identity():
    with_block = Network([Dense(16), "relu", Dense(16), Residual([Dense(16), "erf", Dense(16, b_std=1.0)], 0.0),
                          "relu", Dense(2)])
    without = Network([Dense(16), "relu", Dense(16), "relu", Dense(2)])
    got = nnpk.analytic(X, arch=with_block, get=("nngp", "ntk"))
    want = nnpk.analytic(X, arch=without, get=("nngp", "ntk"))
    for name in ("nngp", "ntk"):
        np.testing.assert_array_equal(got[name], want[name])


def test_threads_and_x2_do_not_change_bits():
    network = Network(RESIDUAL)
    assert_analytic_bits_invariant(network, RNG.normal(size=(150, 6)), 70)


def _wide_residual(width, parameterization):
    return Network([Dense(width, b_std=0.2), "relu", Dense(width),
                    Residual([Dense(width, W_std=1.3), "erf", Dense(width, b_std=0.3)], scale=0.8), "relu",
                    Residual([Dense(width)], scale=0.5), Dense(1, b_std=0.1)], parameterization=parameterization)


def _relative(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_residual_nngp_matches_monte_carlo_at_large_width():
    x = RNG.normal(size=(6, 6))
    exact = nnpk.analytic(x, arch=_wide_residual(8, "ntk"))
    # Each network's readout-integrated kernel deviates by O(1/sqrt(width)) from the limit, and
    # the mean over networks by O(1/sqrt(width * networks)) plus an O(1/width) bias: 2048 x 24
    # puts both near 0.5%.
    estimate = nnpk.monte_carlo(x, arch=_wide_residual(2048, "ntk"), n_networks=24, seed=3)
    assert _relative(estimate, exact) < 0.03


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_residual_ntk_matches_numpy_backprop_at_large_width(parameterization):
    x = RNG.normal(size=(5, 6))
    width = 1024
    network = _wide_residual(width, parameterization)
    exact = nnpk.analytic(x, arch=network, get="ntk")
    n_networks = 16
    estimate = sum(empirical_ntk(network, nnpk.sample_params(network, 6, 7, m), x) for m in range(n_networks))
    estimate /= n_networks
    scale = width if parameterization == "standard" else 1.0  # "standard" NTKs grow with the widths
    assert exact.max() > scale * 0.1
    # One network's NTK here deviates by about 7% from the limit (depth and residual sums add
    # up), so the mean of 16 by about 2%; taking the residual scales unsquared would move the
    # limit by 36%.
    assert _relative(estimate, exact) < 0.08


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize("layers, shape, match", [
    ([MaxPool((2, 2)), Flatten(), Dense(2)], (4, 4, 1),
     r"layer 0 \(MaxPool window 2 x 2, padding 'valid'\) takes maxima, which have no closed-form kernel"),
    (["relu", Dense(2)], (5,), r"layer 0 \(Activation relu\) reads the network's input"),
    ([Flatten(), "tanh", Dense(2)], (3, 2), r"layer 1 \(Activation tanh\) reads the network's input"),
    ([Dense(4), "relu", "tanh", Dense(2)], (5,), r"layer 2 \(Activation tanh\) reads features that are not Gaussian"),
    ([Dense(4), "relu", Residual([Dense(4), "relu"]), Dense(2)], (5,),
     r"layer 2 \(Residual, scale 1\) has a block ending with Activation relu, not with a Dense or Conv layer"),
    ([Dense(4), Residual([Dense(4), Residual([Dense(4), "erf"], 0.5), Dense(4)]), Dense(2)], (5,),
     r"layer 1\.1 \(Residual, scale 0\.5\) has a block ending with Activation erf"),
    ([Dense(4), "relu", Residual([Dense(4)]), "relu", Dense(2)], (5,),
     r"layer 3 \(Activation relu\) reads features that are not Gaussian"),
])
def test_refusals_name_the_layer(layers, shape, match):
    x = RNG.normal(size=(3,) + shape)
    for get in ("nngp", "ntk"):
        with pytest.raises(ValueError, match=match):
            nnpk.analytic(x, arch=Network(layers), get=get)


def test_shape_errors_come_before_refusals():
    with pytest.raises(ValueError, match=r"layer 0 \(Conv kernel 9, padding 'valid'\): input length 5 is shorter"):
        nnpk.analytic(RNG.normal(size=(3, 5, 1)), arch=Network([Conv(2, 9, padding="valid"), Flatten(), Dense(1)]))


def test_residual_of_gaussian_features_feeds_an_activation():
    # Dense output plus a block ending with Dense: still Gaussian, so an activation may follow.
    network = Network([Dense(8), Residual([Dense(8), "relu", Dense(8)]), "relu", Dense(1)])
    got = nnpk.analytic(X, arch=network)
    np.testing.assert_allclose(got, reference_kernels(network, X, X)[0], rtol=1e-12)
