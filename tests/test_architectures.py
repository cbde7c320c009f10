"""nnpk.Network: the engine's forward pass and Monte Carlo NNGP against an independent numpy
forward pass, identities between layers, determinism, and the description's errors."""

import numpy as np
import pytest

import nnpk
from nnpk import AvgPool, Conv, Dense, Flatten, GlobalAvgPool, MaxPool, Network, Residual
from nnpk.architectures._params import prepare_network_points
from nnpk.kernels._plans import node_sums
from reference_networks import forward, mc_kernels, pooled

RNG = np.random.default_rng(11)

# (layers, point shape): every layer type, 1-D and 2-D, strides, both paddings, odd sizes.
CASES = {
    "conv1d": ([Conv(4, 3, b_std=0.3), "tanh", Conv(5, 4, stride=2, padding="valid", W_std=1.3), "relu",
                AvgPool(2, stride=1, padding="same"), MaxPool(3, stride=2, padding="same"), Flatten(),
                Dense(3, b_std=0.1)], (13, 2)),
    "conv2d": ([Conv(3, (3, 2), stride=(2, 1), b_std=0.2), "relu", Conv(4, (2, 3), padding="valid"),
                nnpk.Activation("gelu", normalize=True), MaxPool((2, 2), stride=1), AvgPool((3, 2), stride=(2, 1),
                padding="same"), GlobalAvgPool(), Dense(5, W_std=0.8, b_std=0.5)], (7, 6, 2)),
    "residual": ([Conv(4, (3, 3)), "relu", Residual([Conv(4, (3, 3), b_std=0.1), "erf", Conv(4, (1, 1))], scale=0.7),
                  Residual([Residual(["relu"], 0.3), AvgPool((2, 2), stride=1, padding="same")], scale=-0.5),
                  MaxPool((2, 2)), Flatten(), Dense(6), "tanh", Dense(2)], (8, 8, 1)),
    # Multiples of 16 output channels: float32 passes take the direct convolution on AVX-512 (column groups of
    # 16, 48 and 64 + 16 channels; row blocks with remainders).
    "wide": ([Conv(16, (3, 3), b_std=0.2), "relu", Conv(48, (2, 3), stride=(2, 1), padding="valid"), "tanh",
              Conv(80, (3, 3), W_std=1.2), "relu", GlobalAvgPool(), Dense(3, b_std=0.1)], (8, 8, 1)),
    "dense": ([Dense(7, b_std=0.2), nnpk.Activation("leaky_relu", slope=0.2), Residual([Dense(7), "sin"], 0.5),
               Dense(3)], (9,)),
}


def points(n, shape, seed=0):
    return np.random.default_rng(seed).standard_normal((n,) + shape)


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_logits_equal_numpy_forward_pass(case, parameterization):
    layers, shape = CASES[case]
    net = Network(layers, parameterization=parameterization)
    x = points(11, shape)
    params = nnpk.sample_params(net, shape, seed=3, index=2)
    f = nnpk.initial_outputs(x, net, seed=3, index=2)
    assert rel(f, forward(net, params, x)[-1]) < 1e-12


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("with_x2", [False, True])
def test_every_layers_kernel_equals_numpy(case, with_x2):
    layers, shape = CASES[case]
    net = Network(layers)
    x1, x2 = points(10, shape, 1), (points(7, shape, 2) if with_x2 else None)
    params = [nnpk.sample_params(net, shape, 5, m) for m in range(2)]
    refs = mc_kernels(net, params, x1, x2)
    Ks = nnpk.monte_carlo(x1, x2, arch=net, n_networks=2, seed=5, layers="all", estimator="sampled")
    assert len(Ks) == len(layers)
    for K, R in zip(Ks, refs):
        assert K.shape == R.shape and rel(K, R) < 1e-10
    assert np.array_equal(Ks[-1], nnpk.monte_carlo(x1, x2, arch=net, n_networks=2, seed=5, estimator="sampled"))
    K32 = nnpk.monte_carlo(x1, x2, arch=net, n_networks=2, seed=5, estimator="sampled", dtype="float32")
    assert rel(K32, refs[-1]) < 1e-5


@pytest.mark.parametrize("case", ["conv1d", "residual", "dense"])
def test_readout_estimator_integrates_the_readout(case):
    layers, shape = CASES[case]
    net = Network(layers)
    x = points(9, shape, 3)
    readout = layers[-1]
    ref = 0
    for m in range(3):
        h = pooled(forward(net, nnpk.sample_params(net, shape, 0, m), x)[-2])
        ref = ref + readout.W_std**2 * h @ h.T / h.shape[1] + (readout.b_std or 0.0) ** 2
    K = nnpk.monte_carlo(x, arch=net, n_networks=3)  # the default for a Dense readout
    assert rel(K, ref / 3) < 1e-10
    alone = Network([Dense(4, W_std=1.5, b_std=0.5)])
    x = points(6, (5,))
    assert rel(nnpk.monte_carlo(x, arch=alone, n_networks=1), 2.25 * x @ x.T / 5 + 0.25) < 1e-14


@pytest.mark.parametrize("shape, kernel", [((6, 3), 6), ((4, 2, 3), (4, 2))])
def test_a_convolution_as_large_as_its_input_is_a_dense_layer(shape, kernel):
    x = points(10, shape)
    tail = ["relu", Dense(4, b_std=0.2)]
    conv = Network([Conv(8, kernel, padding="valid", b_std=0.3), Flatten()] + tail)
    dense = Network([Flatten(), Dense(8, b_std=0.3)] + tail)
    for layers in ("output", "all"):
        a = nnpk.monte_carlo(x, arch=conv, n_networks=3, estimator="sampled", layers=layers)
        b = nnpk.monte_carlo(x, arch=dense, n_networks=3, estimator="sampled", layers=layers)
        assert np.array_equal(np.asarray(a)[-3:], np.asarray(b)[-3:])


def test_residual_with_scale_zero_is_the_identity():
    shape = (8, 8, 2)
    x = points(12, shape)
    head = [Conv(3, (3, 3), b_std=0.1), "relu", Flatten(), Dense(4)]
    with_block = Network(head + [Residual([Dense(4, b_std=1.0), "tanh", Dense(4)], scale=0.0)])
    for layers in ("output", "all"):
        a = nnpk.monte_carlo(x, arch=with_block, n_networks=2, estimator="sampled", layers=layers)
        b = nnpk.monte_carlo(x, arch=Network(head), n_networks=2, estimator="sampled", layers=layers)
        if layers == "all":
            assert np.array_equal(a[-1], a[-2])
            a = a[:-1]
        assert np.array_equal(np.asarray(a), np.asarray(b))
    spatial = Network([Conv(3, (3, 3)), Residual([Conv(3, (3, 3)), "relu"], scale=0.0), GlobalAvgPool(), Dense(2)])
    plain = Network([Conv(3, (3, 3)), GlobalAvgPool(), Dense(2)])
    # the block's weights sit between the two networks' parameter lists: compare one network's logits
    p_plain = nnpk.sample_params(plain, shape, 0, 0)
    p_spatial = nnpk.sample_params(spatial, shape, 0, 0)
    assert np.array_equal(p_plain[0][0], p_spatial[0][0])
    f = forward(plain, [p_spatial[0], p_spatial[2]], x)[-1]
    assert rel(nnpk.initial_outputs(x, spatial), f) < 1e-13


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_an_mlp_as_a_network_draws_the_same_networks(parameterization):
    mlp = nnpk.MLP(hidden=[13, 9], out=3, activation="gelu", normalize=True, W_std=[1.2, 1.4, 0.9],
                   b_std=[0.1, None, 0.3], parameterization=parameterization)
    net = mlp.to_network()
    x = points(20, (6,))
    for a, b in zip(nnpk.sample_params(mlp, 6, 4, 1), nnpk.sample_params(net, 6, 4, 1)):
        assert np.array_equal(a[0], b[0]) and (a[1] is None) == (b[1] is None)
    K_mlp = nnpk.monte_carlo(x, arch=mlp, n_networks=3, estimator="sampled", layers="all")
    K_net = nnpk.monte_carlo(x, arch=net, n_networks=3, estimator="sampled", layers="all")
    # the MLP's hidden kernels are post-activation: the network's activation layers
    for a, b in zip(K_mlp, [K_net[1], K_net[3], K_net[4]]):
        assert rel(a, b) < 1e-13
    assert rel(nnpk.monte_carlo(x, arch=mlp, n_networks=3, estimator="readout"),
               nnpk.monte_carlo(x, arch=net, n_networks=3, estimator="readout")) < 1e-13


@pytest.mark.parametrize("case", ["residual", "wide"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("with_x2", [False, True])
def test_bitwise_identical_across_threads_tiles_and_panels(case, dtype, with_x2):
    net = Network(CASES[case][0])
    compiled, x1, x2 = prepare_network_points(points(131, (8, 8, 1), 4), points(101, (8, 8, 1), 5) if with_x2 else None,
                                              net, dtype)
    nodes = list(compiled.layer_nodes)
    q = nnpk._core.ROW_QUANTUM
    runs = [node_sums(x1, x2, compiled, nodes, seed=2, start=0, stop=3, n_threads=t, tile_rows=r, gram_tile=g,
                      panel_cols=p)
            for t, r, g, p in [(1, q, 16, 3), (2, 2 * q, 256, 128), (3, 3 * q, 48, 1000), (2, q, 1024, 7)]]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)
    first = node_sums(x1, x2, compiled, nodes, seed=2, start=0, stop=2, n_threads=2)
    resumed = node_sums(x1, x2, compiled, nodes, seed=2, start=2, stop=3, n_threads=1, initial=first)
    for a, b in zip(runs[0], resumed):
        assert np.array_equal(a, b)


def test_public_api_is_deterministic_across_n_threads():
    net = Network(CASES["conv1d"][0], init="orthogonal")
    x = points(40, (13, 2))
    ks = [nnpk.monte_carlo(x, arch=net, n_networks=3, n_threads=t) for t in (1, 2, 3, None)]
    for k in ks[1:]:
        assert np.array_equal(ks[0], k)


def test_description_is_immutable_hashable_and_takes_activation_names():
    a = Network([Conv(4, (3, 3)), "relu", GlobalAvgPool(), Dense(2)])
    b = Network((Conv(4, [3, 3], stride=1), nnpk.Activation("relu"), GlobalAvgPool(), Dense(2)))
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.init = "uniform"
    assert a.shapes((8, 8, 1)) == ((8, 8, 4), (8, 8, 4), (4,), (2,))
    assert Conv(2, (3, 3), stride=2).stride == (2, 2) and AvgPool(3).stride == 3
    assert [type(l).__name__ for l in a.param_layers] == ["Conv", "Dense"]
    assert AvgPool(2) != MaxPool(2)


@pytest.mark.parametrize(
    "layers, shape, match",
    [
        ([Conv(4, 5, padding="valid"), Flatten(), Dense(2)], (3, 2),
         r"layer 0 \(Conv kernel 5, padding 'valid'\): input length 3 is shorter than the kernel \(5\)"),
        ([Conv(4, (2, 5), padding="valid"), Flatten(), Dense(2)], (6, 4, 1),
         r"layer 0 \(Conv kernel 2 x 5, padding 'valid'\): input width 4 is shorter than the kernel \(2 x 5\)"),
        ([Conv(4, 3), MaxPool(4), Flatten(), Dense(2)], (3, 1),
         r"layer 1 \(MaxPool window 4, padding 'valid'\): input length 3 is shorter than the window \(4\)"),
        ([Conv(4, 3), Flatten(), Dense(2)], (8, 8, 1),
         r"layer 0 \(Conv kernel 3, padding 'same'\): a 1-D kernel needs \(length, channels\) points, got points "
         r"of shape \(8, 8, 1\) \(a 2-D kernel is a pair, such as \(3, 3\)\)"),
        ([Conv(4, (3, 3)), Flatten(), Dense(2)], (8, 1),
         r"a 2-D kernel needs \(height, width, channels\) points, got points of shape \(8, 1\)"),
        ([Conv(4, 3), Dense(2)], (8, 1), r"layer 1 \(Dense 2\): needs flat points, got points of shape \(8, 4\): "
         r"add Flatten\(\) or GlobalAvgPool\(\)"),
        ([Dense(3), GlobalAvgPool(), Dense(2)], (5,), r"layer 1 \(GlobalAvgPool\): needs .* got flat points of 3"),
        ([Dense(3), AvgPool(2), Dense(2)], (5,), r"layer 1 \(AvgPool window 2, padding 'valid'\): a 1-D window "
         r"needs \(length, channels\) points, got flat points of 3 features"),
        ([Conv(4, 3), Residual([Conv(5, 3)]), Flatten(), Dense(2)], (6, 2),
         r"layer 1 \(Residual, scale 1\): its block maps points of shape \(6, 4\) to \(6, 5\)"),
        ([Conv(4, 3), Residual([Conv(4, 3), MaxPool(7)]), Flatten(), Dense(2)], (6, 2),
         r"layer 1.1 \(MaxPool window 7, padding 'valid'\): input length 6 is shorter than the window"),
        ([Conv(4, 3)], (6, 2), r"the network's output has shape \(6, 4\) per point; logits must be flat"),
    ],
)
def test_shape_errors_name_the_layer(layers, shape, match):
    net = Network(layers)
    with pytest.raises(ValueError, match=match):
        net.shapes(shape)
    with pytest.raises(ValueError, match=match):
        nnpk.monte_carlo(np.ones((2,) + shape), arch=net, n_networks=1)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: Conv(0, 3), ValueError, "channels must be positive"),
        (lambda: Conv(2, (3, 3, 3)), ValueError, "kernel_size must be an int"),
        (lambda: Conv(2, 3, stride=(1, 1)), ValueError, "stride .* has another dimension than kernel_size"),
        (lambda: Conv(2, 3, padding="SAME"), ValueError, "padding must be 'same' or 'valid'"),
        (lambda: Conv(2, 2.5), TypeError, "kernel_size must be an integer"),
        (lambda: Dense(3, W_std=-1), ValueError, "W_std must be finite and >= 0"),
        (lambda: Dense(3, b_std="1"), TypeError, "b_std must be a number or None"),
        (lambda: AvgPool(0), ValueError, "window must be positive"),
        (lambda: nnpk.Activation("reLU"), ValueError, "activation must be one of"),
        (lambda: Residual([]), ValueError, "block is empty"),
        (lambda: Residual([Dense(2)], scale=float("inf")), ValueError, "scale must be finite"),
        (lambda: Network([]), ValueError, "layers is empty"),
        (lambda: Network([Dense(2), 3]), TypeError, r"layers\[1\] must be a layer"),
        (lambda: Network(Dense(2)), TypeError, "layers must be a sequence of layers"),
        (lambda: Network([Dense(2)], init="xavier"), ValueError, "init must be one of gaussian, uniform"),
        (lambda: Network([Dense(2)], parameterization="mup"), ValueError, "parameterization must be"),
    ],
)
def test_layer_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_points():
    net = Network([Conv(4, (3, 3)), GlobalAvgPool(), Dense(2)])
    x = np.ones((3, 8, 8, 1))
    cases = [
        (np.ones(5), None, r"x1 must be a 2-D \(n, features\), 3-D \(n, length, channels\) or 4-D"),
        (np.ones((2, 3, 4, 5, 6)), None, "x1 must be a 2-D"),
        (x, np.ones((3, 8, 8, 2)), r"x2 has points of shape \(8, 8, 2\), x1 has \(8, 8, 1\)"),
        (np.ones((0, 8, 8, 1)), None, "x1 is empty"),
        (np.where(np.arange(64).reshape(1, 8, 8, 1) == 9, np.nan, x), None, r"x1 contains NaN .* row 0, column 9"),
        (np.ones((3, 8, 1)), None, r"a 2-D kernel needs \(height, width, channels\) points"),
    ]
    for x1, x2, match in cases:
        with pytest.raises(ValueError, match=match):
            nnpk.monte_carlo(x1, x2, arch=net, n_networks=1)
    with pytest.raises(ValueError, match="estimator='conditional' integrates a network ending Dense -> activation -> "
                                         "Dense; this one ends"):
        nnpk.monte_carlo(x, arch=net, n_networks=1, estimator="conditional")
    with pytest.raises(ValueError, match=r"estimator='readout' integrates a final Dense layer; this network ends "
                                         r"with Activation relu"):
        nnpk.monte_carlo(x, arch=Network([Conv(4, (3, 3)), GlobalAvgPool(), Dense(2), "relu"]), n_networks=1,
                         estimator="readout")
    with pytest.raises(TypeError, match="arch must be an nnpk.MLP or nnpk.Network"):
        nnpk.monte_carlo(x, arch="cnn", n_networks=1)
