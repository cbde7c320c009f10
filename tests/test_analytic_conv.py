"""nnpk.analytic for networks with convolutions and pooling: against a numpy recursion over the
full position covariances written here, Monte Carlo estimates of wide random CNNs, the dense
kernel (a convolution covering its input, 1 x 1 convolutions), bitwise symmetry and thread
independence, the store and the scikit-learn estimators, and the refusals."""

import math

import numpy as np
import pytest

import nnpk
from nnpk import Activation, AvgPool, Conv, Dense, Flatten, GlobalAvgPool, MaxPool, Network, Residual
from nnpk.sklearn import NNPKRegressor
from conftest import assert_analytic_bits_invariant
from reference import activation, gaussian_moments
from reference_networks import _padding

RNG = np.random.default_rng(17)


# ---------------------------------------------------------------- numpy reference
#
# State of a layer for all pairs of the points X (x1 then x2): S[i, j, p, q] = Sigma(x_i, x_j)_{pq}
# over the flattened positions p, q of the spatial shape `shape` (the NTK T likewise); a layer
# kernel is read off S. Each layer is its definition applied directly: a convolution sums
# every window offset at once, pooling is an averaging matrix on both sides.

def _closed_dual(name, q1, q2, c, slope):
    """E[phi(u) phi(v)], E[phi'(u) phi'(v)] of a min/max-linear phi (relu, leaky_relu, abs)."""
    a = {"relu": 0.0, "leaky_relu": slope, "abs": -1.0}[name]
    p = np.sqrt(q1 * q2)
    theta = np.arccos(np.clip(c / np.where(p > 0, p, 1.0), -1, 1))
    dot = (a * a + 1) / 2 - (a - 1) ** 2 * theta / (2 * np.pi)
    return (a - 1) ** 2 * p * np.sin(theta) / (2 * np.pi) + dot * c, dot


def _hermite_dual(phi, dphi, q1, q2, c, order=80):
    """The two expectations by a product Gauss-Hermite rule (smooth phi only)."""
    z, w = np.polynomial.hermite_e.hermegauss(order)
    w = w / w.sum()
    rho = np.clip(c / np.sqrt(q1 * q2), -1, 1)[..., None, None]
    u = np.sqrt(q1)[..., None, None] * z[:, None]
    v = np.sqrt(q2)[..., None, None] * (rho * z[:, None] + np.sqrt(1 - rho**2) * z[None, :])
    ww = w[:, None] * w[None, :]
    return (phi(u) * phi(v) * ww).sum((-1, -2)), (dphi(u) * dphi(v) * ww).sum((-1, -2))


def _dual(layer, q1, q2, c):
    if layer.name == "identity":
        return c, np.ones_like(c)
    if layer.name == "erf":
        det = (1 + 2 * q1) * (1 + 2 * q2)
        return 2 / np.pi * np.arcsin(2 * c / np.sqrt(det)), 4 / np.pi / np.sqrt(det - 4 * c * c)
    if layer.name in ("relu", "leaky_relu", "abs"):
        gg, dot = _closed_dual(layer.name, q1, q2, c, layer.slope)
        if not layer.normalize:
            return gg, dot
        mu, var = gaussian_moments(activation(layer.name, layer.slope))
        mean = (1 - {"relu": 0.0, "leaky_relu": layer.slope, "abs": -1.0}[layer.name]) / math.sqrt(2 * math.pi)
        return (gg - mu * mean * (np.sqrt(q1) + np.sqrt(q2)) + mu * mu) / var, dot / var
    assert layer.name == "tanh" and not layer.normalize
    return _hermite_dual(np.tanh, lambda z: 1 / np.cosh(z) ** 2, q1, q2, c)


def _averaging(n, window, stride, padding):
    """(out, n): row o averages the inputs in output o's window (inside the input)."""
    out, lo, _ = _padding(n, window, stride, padding)
    a = np.zeros((out, n))
    for o in range(out):
        inside = [u for u in range(o * stride - lo, o * stride - lo + window) if 0 <= u < n]
        a[o, inside] = 1.0 / len(inside)
    return a


def _sizes(v, dims):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * dims


class Reference:
    def __init__(self, network, x1, x2):
        self.standard = network.parameterization == "standard"
        self.n1 = len(x1)
        x = np.concatenate([x1, x2]).astype(np.float64)
        self.shape, c = x.shape[1:-1], x.shape[-1]
        flat = x.reshape(len(x), -1, c)
        self.s = np.einsum("ipc,jqc->ijpq", flat, flat) / c
        self.t = np.zeros_like(self.s)
        self.channels, self.flattened = c, False
        self.layer_kernels = []
        for layer in network.layers:
            self.step(layer)
            self.layer_kernels.append(self.kernels())

    def kernels(self):
        """(NNGP, NTK) of the current features between x1 and x2 (a spatial layer's averaged over
        positions, a flattened one's the mean over its same positions)."""
        if self.flattened:
            read = lambda k: np.einsum("ijpp->ijp", k).mean(-1)
        else:
            read = lambda k: k.mean((-1, -2))
        return read(self.s)[: self.n1, self.n1:], read(self.t)[: self.n1, self.n1:]

    def variances(self):
        v = np.einsum("iipp->ip", self.s)
        return v[:, None, :, None], v[None, :, None, :]

    def conv(self, layer):
        dims = len(self.shape)
        window, stride = _sizes(layer.kernel_size, dims), _sizes(layer.stride, dims)
        geometry = [_padding(n, k, s, layer.padding) for n, k, s in zip(self.shape, window, stride)]
        out = tuple(g[0] for g in geometry)
        pads = [(lo, hi) for _, lo, hi in geometry]

        def taps(k):
            k = k.reshape(k.shape[:2] + self.shape + self.shape)
            kp = np.pad(k, [(0, 0)] * 2 + pads + pads)
            total = 0.0
            for offset in np.ndindex(*window):
                index = tuple(slice(o, o + s * (m - 1) + 1, s) for o, s, m in zip(offset, stride, out))
                total = total + kp[(slice(None),) * 2 + index + index]
            return total.reshape(k.shape[:2] + (math.prod(out),) * 2)

        k_size = math.prod(window)
        w2, b2 = layer.W_std**2, (layer.b_std or 0.0) ** 2
        bias = 0.0 if layer.b_std is None else 1.0
        s_taps, t_taps = taps(self.s), taps(self.t)
        self.s = w2 / k_size * s_taps + b2
        if self.standard:
            self.t = self.channels * s_taps + w2 / k_size * t_taps + bias
        else:
            self.t = self.s + w2 / k_size * t_taps
        self.shape, self.channels = out, layer.channels

    def pool(self, layer):
        dims = len(self.shape)
        window, stride = _sizes(layer.window, dims), _sizes(layer.stride or layer.window, dims)
        a = np.ones((1, 1))
        for n, k, s in zip(self.shape, window, stride):
            a = np.kron(a, _averaging(n, k, s, layer.padding))
        self.s, self.t = (a @ k @ a.T for k in (self.s, self.t))
        self.shape = tuple(_padding(n, k, s, layer.padding)[0] for n, k, s in zip(self.shape, window, stride))

    def step(self, layer):
        if isinstance(layer, Conv):
            self.conv(layer)
        elif isinstance(layer, AvgPool):
            self.pool(layer)
        elif isinstance(layer, GlobalAvgPool):
            self.s, self.t = (k.mean((-1, -2), keepdims=True) for k in (self.s, self.t))
            self.shape = (1,)
        elif isinstance(layer, Flatten):
            self.channels *= math.prod(self.shape)
            self.flattened = True
        elif isinstance(layer, Dense):
            s_old, t_old = (np.einsum("ijpp->ijp", k).mean(-1)[..., None, None] for k in (self.s, self.t))
            w2, b2 = layer.W_std**2, (layer.b_std or 0.0) ** 2
            self.s = w2 * s_old + b2
            bias = 0.0 if layer.b_std is None else 1.0
            self.t = self.channels * s_old + w2 * t_old + bias if self.standard else self.s + w2 * t_old
            self.shape, self.channels, self.flattened = (1,), layer.width, False
        elif isinstance(layer, Residual):
            s, t, shape, channels, flattened = self.s, self.t, self.shape, self.channels, self.flattened
            for inner in layer.block:
                self.step(inner)
            self.s, self.t = s + layer.scale**2 * self.s, t + layer.scale**2 * self.t
            self.shape, self.channels, self.flattened = shape, channels, flattened
        else:
            q1, q2 = self.variances()
            self.s, dot = _dual(layer, q1, q2, self.s)
            self.t = self.t * dot


def _check(network, x1, x2=None, layers="output", rtol=1e-11):
    got = nnpk.analytic(x1, x2, arch=network, get=("nngp", "ntk"), layers=layers)
    ref = Reference(network, x1, x1 if x2 is None else x2)
    want = ref.layer_kernels if layers == "all" else ref.layer_kernels[-1:]
    for name, index in (("nngp", 0), ("ntk", 1)):
        kernels = got[name] if layers == "all" else [got[name]]
        assert len(kernels) == len(want)
        for k, (g, w) in enumerate(zip(kernels, want)):
            scale = np.abs(w[index]).max()
            np.testing.assert_allclose(g, w[index], rtol=rtol, atol=rtol * scale, err_msg=f"{name}, layer {k}")
    return got


# ---------------------------------------------------------------- against the reference

CASES = {
    "2d same gap": ([Conv(3, (3, 3), W_std=1.3, b_std=0.2), "relu", Conv(3, (3, 3)), "relu", GlobalAvgPool(),
                     Dense(2, b_std=0.1)], (5, 4, 2)),
    "2d same flatten": ([Conv(3, (3, 3), b_std=0.3), "erf", Conv(3, (3, 3), W_std=1.2), "relu", Flatten(),
                         Dense(1)], (5, 4, 2)),
    "2d stride 2 same, even and odd": ([Conv(3, (3, 2), stride=2, W_std=1.1), "relu", Conv(3, (2, 2)), "relu",
                                        Flatten(), Dense(1, b_std=0.5)], (6, 5, 1)),
    "2d valid stride, avgpool same": ([Conv(2, (2, 3), stride=(1, 2), padding="valid", b_std=0.1), "abs",
                                       AvgPool((2, 2), stride=1, padding="same"), Conv(2, (2, 2)), "relu",
                                       AvgPool((2, 3)), Flatten(), Dense(1)], (5, 7, 2)),
    "2d stride 3 same on 4": ([Conv(2, (2, 2), stride=3, b_std=0.4), "leaky_relu", GlobalAvgPool(), Dense(1)],
                              (4, 4, 1)),
    "1d": ([Conv(3, 3, b_std=0.2), "relu", AvgPool(2, padding="same"), Conv(3, 2, stride=2, padding="valid"),
            "relu", Flatten(), Dense(3), "relu", Dense(1)], (7, 2)),
    "1d stride 2 same, even": ([Conv(3, 4, stride=2), Activation("relu", normalize=True), Conv(2, 3), "tanh",
                                GlobalAvgPool(), Dense(1)], (8, 1)),
    "residual": ([Conv(4, (3, 3), b_std=0.2), Residual(["relu", Conv(4, (3, 3), W_std=0.8)], scale=0.7),
                  "relu", AvgPool((2, 2)), Conv(4, (1, 2)), Residual([Conv(4, (1, 1), b_std=0.1)], scale=-0.5),
                  "erf", Flatten(), Dense(1)], (5, 4, 1)),
    "flatten then activation": ([Conv(3, (2, 2), padding="valid"), Flatten(), "relu", Dense(2)], (4, 3, 2)),
}


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("case", list(CASES))
def test_against_numpy_recursion(case, parameterization):
    layers, shape = CASES[case]
    network = Network(layers, parameterization=parameterization)
    x1 = RNG.normal(size=(4,) + shape)
    x2 = RNG.normal(size=(3,) + shape)
    # tanh: both sides integrate numerically (the engine's quadrature is good to about 4e-9).
    _check(network, x1, x2, rtol=1e-7 if "tanh" in layers else 1e-11)


@pytest.mark.parametrize("case", ["2d valid stride, avgpool same", "residual", "flatten then activation", "1d"])
def test_every_layer_kernel(case):
    layers, shape = CASES[case]
    x = RNG.normal(size=(4,) + shape)
    got = _check(Network(layers), x, layers="all")
    assert len(got["nngp"]) == len(layers)


@pytest.mark.parametrize("case", ["2d same gap", "2d same flatten", "residual"])
def test_threads_tiles_and_symmetry(case):
    layers, shape = CASES[case]
    network = Network(layers)
    assert_analytic_bits_invariant(network, RNG.normal(size=(21,) + shape), 11)


def test_result_does_not_depend_on_the_tile():
    layers, shape = CASES["2d valid stride, avgpool same"]
    network = Network(layers)
    x = RNG.normal(size=(30,) + shape)
    compiled = network.compile(shape)
    units = [False] * (compiled.layer_nodes[-1] + 1)  # no normalised activation
    wanted = [compiled.layer_nodes[2], compiled.layer_nodes[-1]]
    tiles = [nnpk._core.analytic_conv_kernels(x.reshape(30, -1), None, compiled.spec, units, True, True, wanted, True,
                                              10, 2, t) for t in (1, 13, 64)]
    for other in tiles[1:]:
        for a, b in zip(tiles[0][0] + tiles[0][1], other[0] + other[1]):
            assert np.array_equal(a, b)


# ---------------------------------------------------------------- identities

@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_convolution_covering_the_input_is_dense(parameterization):
    x = RNG.normal(size=(6, 4, 3, 2))
    conv = Network([Conv(5, (4, 3), padding="valid", W_std=1.2, b_std=0.3), "relu", Flatten(), Dense(2, b_std=0.1)],
                   parameterization=parameterization)
    dense = Network([Flatten(), Dense(5, W_std=1.2, b_std=0.3), "relu", Dense(2, b_std=0.1)],
                    parameterization=parameterization)
    got = nnpk.analytic(x, arch=conv, get=("nngp", "ntk"))
    want = nnpk.analytic(x.reshape(6, -1), arch=dense, get=("nngp", "ntk"))
    for name in ("nngp", "ntk"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-13)


def test_one_by_one_convolutions_are_dense_at_each_position():
    x1, x2 = RNG.normal(size=(4, 3, 5, 2)), RNG.normal(size=(3, 3, 5, 2))
    conv = Network([Conv(4, (1, 1), W_std=1.3, b_std=0.2), "erf", Conv(4, (1, 1)), "relu", Flatten(),
                    Dense(1, W_std=0.9)])
    dense = Network([Dense(4, W_std=1.3, b_std=0.2), "erf", Dense(4), "relu", Dense(1, W_std=0.9)])
    got = nnpk.analytic(x1, x2, arch=conv, get=("nngp", "ntk"))
    per_position = [nnpk.analytic(x1[:, h, w], x2[:, h, w], arch=dense, get=("nngp", "ntk"))
                    for h in range(3) for w in range(5)]
    for name in ("nngp", "ntk"):
        np.testing.assert_allclose(got[name], np.mean([k[name] for k in per_position], axis=0), rtol=1e-13)


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_one_by_one_convolutions_pooled_are_dense_over_pairs_of_positions(parameterization):
    # Pooled, every node carries the covariances of all pairs of positions (the input's too): the kernel is the
    # mean over pairs (p, q) of the dense network's between position p of x1 and position q of x2. 15
    # positions and 3 channels: the input's covariances in whole blocks of positions and in the rest.
    x1, x2 = RNG.normal(size=(4, 3, 5, 3)), RNG.normal(size=(3, 3, 5, 3))
    conv = Network([Conv(4, (1, 1), W_std=1.3, b_std=0.2), "erf", Conv(4, (1, 1), W_std=0.8, b_std=0.1), "relu",
                    GlobalAvgPool(), Dense(1, W_std=0.9, b_std=0.3)], parameterization=parameterization)
    dense = Network([Dense(4, W_std=1.3, b_std=0.2), "erf", Dense(4, W_std=0.8, b_std=0.1), "relu",
                     Dense(1, W_std=0.9, b_std=0.3)], parameterization=parameterization)
    got = nnpk.analytic(x1, x2, arch=conv, get=("nngp", "ntk"))
    p1, p2 = x1.reshape(4, 15, 3), x2.reshape(3, 15, 3)
    pairs = [nnpk.analytic(p1[:, p], p2[:, q], arch=dense, get=("nngp", "ntk")) for p in range(15) for q in range(15)]
    for name in ("nngp", "ntk"):
        np.testing.assert_allclose(got[name], np.mean([k[name] for k in pairs], axis=0), rtol=1e-12)


def test_global_pooling_of_one_position_changes_nothing():
    x = RNG.normal(size=(5, 3, 3, 2))
    covering = [Conv(3, (3, 3), padding="valid", b_std=0.2), "relu"]
    pooled = nnpk.analytic(x, arch=Network(covering + [GlobalAvgPool(), Dense(1)]), get=("nngp", "ntk"))
    flat = nnpk.analytic(x, arch=Network(covering + [Flatten(), Dense(1)]), get=("nngp", "ntk"))
    for name in ("nngp", "ntk"):
        np.testing.assert_array_equal(pooled[name], flat[name])


# ---------------------------------------------------------------- Monte Carlo

def _wide_cnn(channels, pooling):
    readout = [GlobalAvgPool()] if pooling else [Flatten()]
    return Network([Conv(channels, (3, 3), b_std=0.2), "relu", Conv(channels, (2, 2), stride=2, W_std=1.2), "relu"]
                   + readout + [Dense(1, b_std=0.1)])


@pytest.mark.parametrize("pooling", [True, False])
@pytest.mark.parametrize("kernel", ["nngp", "ntk"])
def test_monte_carlo_converges_to_the_limit(kernel, pooling):
    x = RNG.normal(size=(5, 4, 4, 2))
    exact = nnpk.analytic(x, arch=_wide_cnn(1, pooling), get=kernel)
    channels = 256
    estimate, info = nnpk.monte_carlo(x, arch=_wide_cnn(channels, pooling), n_networks=32, seed=4, get=kernel,
                                      return_standard_error=True)
    error = np.linalg.norm(estimate - exact) / np.linalg.norm(exact)
    # The estimate's spread (its standard error, about 1.5% here) plus the O(1/channels) bias
    # of finite width; the limit with 1 x 1 first-layer windows (no spatial covariances) is 30% away.
    tolerance = 4 * info["standard_error"] + 2 / channels
    assert error < tolerance < 0.1
    pointwise = [Conv(1, (1, 1), b_std=0.2)] + list(_wide_cnn(1, pooling).layers[1:])
    other = nnpk.analytic(x, arch=Network(pointwise), get=kernel)
    assert np.linalg.norm(other - exact) / np.linalg.norm(exact) > tolerance


# ---------------------------------------------------------------- store and scikit-learn

def test_store_tiles_match_and_resume(tmp_path):
    import os

    layers, shape = CASES["2d same gap"]
    network = Network(layers)
    x = RNG.normal(size=(200,) + shape)
    for kernel in ("analytic_nngp", "analytic_ntk"):
        path = tmp_path / kernel
        store = nnpk.compute_to_store(path, x, arch=network, kernel=kernel, tile_size=96, n_threads=1)
        expected = nnpk.analytic(x, arch=network, get=kernel[len("analytic_"):])
        assert np.array_equal(store.to_numpy(), expected)
        # Forget two tiles: resuming computes only those, bitwise as before.
        for i, j in [(0, 1), (1, 2)]:
            os.unlink(store._chunk_path(i, j))
        before = {t: os.stat(store._chunk_path(*t)).st_mtime_ns for t in store.tiles_done()}
        store = nnpk.compute_to_store(path, x, arch=network, kernel=kernel, tile_size=96, n_threads=2)
        assert {t: os.stat(store._chunk_path(*t)).st_mtime_ns for t in before} == before
        assert np.array_equal(store.to_numpy(), expected)


def test_sklearn_analytic_with_a_convolutional_arch():
    layers, shape = CASES["2d same flatten"]
    network = Network(layers)
    x = RNG.normal(size=(12,) + shape)
    y = RNG.normal(size=12)
    model = NNPKRegressor(method="analytic", arch=network, input_shape=shape, ridge=0.1).fit(x.reshape(12, -1), y)
    k = nnpk.analytic(x, arch=network)
    want = k @ np.linalg.solve(k + 0.1 * np.eye(12), y)
    np.testing.assert_allclose(model.predict(x.reshape(12, -1)), want, rtol=1e-9)


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize("layers, shape, match", [
    ([Conv(2, (2, 2)), "relu", MaxPool((2, 2)), Flatten(), Dense(1)], (4, 4, 1),
     r"layer 2 \(MaxPool window 2 x 2, padding 'valid'\) takes maxima, which have no closed-form kernel: the "
     r"covariance E\[max_a u_a max_b v_b\] of two windows' maxima is an integral over the joint Gaussian law of all "
     r"2m pooled values"),
    ([Conv(2, 3), "relu", AvgPool(2), "relu", Flatten(), Dense(1)], (6, 2),
     r"layer 3 \(Activation relu\) reads features that are not Gaussian pre-activations"),
    ([AvgPool(2), "relu", Flatten(), Dense(1)], (6, 2), r"layer 1 \(Activation relu\) reads the network's input"),
    ([Conv(2, 3), "relu", Residual([Conv(2, 3), "relu"]), Flatten(), Dense(1)], (6, 2),
     r"layer 2 \(Residual, scale 1\) has a block ending with Activation relu, not with a Dense or Conv layer"),
])
def test_refusals_name_the_layer(layers, shape, match):
    x = RNG.normal(size=(3,) + shape)
    for get in ("nngp", "ntk"):
        with pytest.raises(ValueError, match=match):
            nnpk.analytic(x, arch=Network(layers), get=get)


def test_memory_is_checked_before_allocating(monkeypatch):
    from nnpk import _validate
    monkeypatch.setattr(_validate, "available_memory", lambda: 2**20)
    x = RNG.normal(size=(8, 12, 12, 1))
    network = Network([Conv(2, (3, 3)), "relu", GlobalAvgPool(), Dense(1)])
    with pytest.raises(MemoryError, match=r"the convolutional recursion's buffers \(2 threads x [\d.]+ MiB\) needs "):
        nnpk.analytic(x, arch=network, get=("nngp", "ntk"), n_threads=2)
