"""params_from_state_dict: nnpk's forward pass with converted weights against numpy forward passes written in
PyTorch's conventions (NCHW, cross-correlation, channel-major flattening) and Flax's (NHWC)."""

import numpy as np
import pytest

import nnpk


def conv_nchw(x, w, b, stride, padding):
    """PyTorch's Conv1d/Conv2d: x (n, C, *spatial), w (out, C, *kernel), cross-correlation; padding "same"
    (stride 1: k - 1 zeros, the odd one after) or "valid"."""
    spatial = w.shape[2:]
    if padding == "same":
        pads = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in spatial]
        x = np.pad(x, [(0, 0), (0, 0)] + pads)
    sizes = [(n - k) // stride + 1 for n, k in zip(x.shape[2:], spatial)]
    out = np.zeros((x.shape[0], w.shape[0]) + tuple(sizes))
    for pos in np.ndindex(*sizes):
        window = tuple(slice(p * stride, p * stride + k) for p, k in zip(pos, spatial))
        patch = x[(slice(None), slice(None)) + window]  # (n, C, *kernel)
        out[(slice(None), slice(None)) + pos] = patch.reshape(x.shape[0], -1) @ w.reshape(w.shape[0], -1).T
    return out + b.reshape((1, -1) + (1,) * len(spatial))


def max_pool_nchw(x, k):
    n, c, h, w = x.shape
    return x[:, :, : h // k * k, : w // k * k].reshape(n, c, h // k, k, w // k, k).max(axis=(3, 5))


def relu(z):
    return np.maximum(z, 0)


def torch_weights(rng, shapes):
    """A state dict of the given (name, shape) entries, in order, scaled like trained weights."""
    return {name: rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]) if len(shape) > 1 else 4.0)
            for name, shape in shapes}


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_mlp_from_torch(parameterization):
    rng = np.random.default_rng(0)
    sd = torch_weights(rng, [("0.weight", (6, 5)), ("0.bias", (6,)), ("2.weight", (4, 6)), ("2.bias", (4,)),
                             ("4.weight", (3, 4)), ("4.bias", (3,))])
    net = nnpk.MLP(hidden=[6, 4], out=3, W_std=1.3, b_std=0.2, parameterization=parameterization)
    params, buffers = nnpk.params_from_state_dict(net, sd, layout="torch", input_shape=5)
    assert buffers == [] and [p[0].shape for p in params] == [(5, 6), (6, 4), (4, 3)]
    x = rng.standard_normal((7, 5))
    h = relu(x @ sd["0.weight"].T + sd["0.bias"])
    h = relu(h @ sd["2.weight"].T + sd["2.bias"])
    expected = h @ sd["4.weight"].T + sd["4.bias"]
    np.testing.assert_allclose(nnpk.initial_outputs(x, net, params=params), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_cnn_with_flatten_from_torch(parameterization):
    # Points 6 x 7 with 2 channels (not square: height and width cannot be swapped unnoticed).
    rng = np.random.default_rng(1)
    sd = torch_weights(rng, [("features.0.weight", (4, 2, 3, 3)), ("features.0.bias", (4,)),
                             ("features.3.weight", (5, 4, 2, 2)), ("features.3.bias", (5,)),
                             ("classifier.0.weight", (6, 5 * 1 * 1)), ("classifier.0.bias", (6,)),
                             ("classifier.2.weight", (3, 6)), ("classifier.2.bias", (3,))])
    sd["features.3.weight"] = rng.standard_normal((5, 4, 2, 2))
    sd["classifier.0.weight"] = rng.standard_normal((6, 5 * 1 * 1))
    net = nnpk.Network([nnpk.Conv(4, (3, 3), W_std=1.4, b_std=0.1), "relu", nnpk.MaxPool((2, 2)),
                        nnpk.Conv(5, (2, 2), stride=2, padding="valid", W_std=1.1, b_std=0.3), "relu",
                        nnpk.Flatten(), nnpk.Dense(6, W_std=1.2, b_std=0.1), "relu", nnpk.Dense(3, b_std=0.5)],
                       parameterization=parameterization)
    params, _ = nnpk.params_from_state_dict(net, sd, layout="torch", input_shape=(6, 7, 2))
    x = rng.standard_normal((3, 6, 7, 2))
    h = relu(conv_nchw(x.transpose(0, 3, 1, 2), sd["features.0.weight"], sd["features.0.bias"], 1, "same"))
    h = relu(conv_nchw(max_pool_nchw(h, 2), sd["features.3.weight"], sd["features.3.bias"], 2, "valid"))
    h = relu(h.reshape(3, -1) @ sd["classifier.0.weight"].T + sd["classifier.0.bias"])
    expected = h @ sd["classifier.2.weight"].T + sd["classifier.2.bias"]
    np.testing.assert_allclose(nnpk.initial_outputs(x, net, params=params), expected, rtol=1e-12, atol=1e-12)


def test_flatten_of_many_positions_permutes_the_dense_rows():
    # 4 x 5 positions and 3 channels after the convolution: the Dense after Flatten reads 60 features in
    # PyTorch's channel-major order; a 1-D convolution on (length, channels) points likewise.
    rng = np.random.default_rng(2)
    sd = torch_weights(rng, [("c.weight", (3, 2, 3, 3)), ("c.bias", (3,)), ("d.weight", (2, 60)), ("d.bias", (2,))])
    net = nnpk.Network([nnpk.Conv(3, (3, 3), b_std=0.1), nnpk.Flatten(), nnpk.Dense(2, b_std=0.1)],
                       parameterization="standard")
    params, _ = nnpk.params_from_state_dict(net, sd, layout="torch", input_shape=(4, 5, 2))
    x = rng.standard_normal((2, 4, 5, 2))
    h = conv_nchw(x.transpose(0, 3, 1, 2), sd["c.weight"], sd["c.bias"], 1, "same").reshape(2, -1)
    np.testing.assert_allclose(nnpk.initial_outputs(x, net, params=params), h @ sd["d.weight"].T + sd["d.bias"],
                               rtol=1e-12, atol=1e-12)
    sd1 = torch_weights(rng, [("c.weight", (3, 2, 3)), ("c.bias", (3,)), ("d.weight", (2, 24)), ("d.bias", (2,))])
    net1 = nnpk.Network([nnpk.Conv(3, 3, b_std=0.1), "tanh", nnpk.Flatten(), "tanh", nnpk.Dense(2, b_std=0.1)])
    params1, _ = nnpk.params_from_state_dict(net1, sd1, layout="torch", input_shape=(8, 2))
    x1 = rng.standard_normal((2, 8, 2))
    h1 = np.tanh(np.tanh(conv_nchw(x1.transpose(0, 2, 1), sd1["c.weight"], sd1["c.bias"], 1, "same")).reshape(2, -1))
    np.testing.assert_allclose(nnpk.initial_outputs(x1, net1, params=params1), h1 @ sd1["d.weight"].T + sd1["d.bias"],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nested", [True, False])
def test_cnn_from_flax(nested):
    rng = np.random.default_rng(3)
    kernels = {"Conv_0": rng.standard_normal((3, 3, 2, 4)) / 4, "Dense_0": rng.standard_normal((4 * 5 * 4, 3)) / 9}
    biases = {"Conv_0": rng.standard_normal(4), "Dense_0": rng.standard_normal(3)}
    tree = {"params": {m: {"kernel": kernels[m], "bias": biases[m]} for m in kernels}}
    if not nested:
        tree = {f"params/{m}/{leaf}": v for m, entries in tree["params"].items() for leaf, v in entries.items()}
    net = nnpk.Network([nnpk.Conv(4, (3, 3), W_std=1.5, b_std=0.1), "relu", nnpk.Flatten(),
                        nnpk.Dense(3, b_std=0.2)])
    params, _ = nnpk.params_from_state_dict(net, tree, layout="flax", input_shape=(4, 5, 2))
    x = rng.standard_normal((3, 4, 5, 2))
    # Flax is channels-last: its convolution is PyTorch's on transposed arrays, and it flattens (h, w, c).
    h = relu(conv_nchw(x.transpose(0, 3, 1, 2), kernels["Conv_0"].transpose(3, 2, 0, 1), biases["Conv_0"], 1, "same"))
    expected = h.transpose(0, 2, 3, 1).reshape(3, -1) @ kernels["Dense_0"] + biases["Dense_0"]
    np.testing.assert_allclose(nnpk.initial_outputs(x, net, params=params), expected, rtol=1e-12, atol=1e-12)


def test_converted_params_give_the_empirical_kernel_of_the_converted_network():
    # nngp of one network is f(x1) . f(x2) / C, with f the converted network's outputs.
    rng = np.random.default_rng(4)
    sd = torch_weights(rng, [("0.weight", (8, 3)), ("1.weight", (2, 8))])
    net = nnpk.MLP(hidden=[8], out=2, activation="erf", W_std=1.5)
    params, _ = nnpk.params_from_state_dict(net, sd, layout="torch", input_shape=(3,))
    x = rng.standard_normal((5, 3))
    from scipy.special import erf

    f = erf(x @ sd["0.weight"].T) @ sd["1.weight"].T
    np.testing.assert_allclose(nnpk.empirical(x, arch=net, params=params, get="nngp"), f @ f.T / 2, rtol=1e-10)


def batch_norm_nc(x, weight, bias, mean, var, eps=1e-5):
    """PyTorch's BatchNorm1d/2d in evaluation: channel axis 1."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * weight.reshape(shape) + bias.reshape(shape)


def batch_norm_entries(rng, prefix, channels):
    return {f"{prefix}.weight": 1 + 0.3 * rng.standard_normal(channels),
            f"{prefix}.bias": rng.standard_normal(channels), f"{prefix}.running_mean": rng.standard_normal(channels),
            f"{prefix}.running_var": rng.uniform(0.5, 2.0, channels), f"{prefix}.num_batches_tracked": np.array(7)}


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_batch_norm_from_torch_after_a_convolution_and_after_flatten(parameterization):
    # Conv -> BatchNorm2d -> relu -> Flatten -> BatchNorm1d (its vectors in channel-major order) -> Linear.
    rng = np.random.default_rng(5)
    sd = {"0.weight": rng.standard_normal((3, 2, 3, 3)) / 4, "0.bias": rng.standard_normal(3),
          **batch_norm_entries(rng, "1", 3), **batch_norm_entries(rng, "4", 3 * 4 * 5),
          "5.weight": rng.standard_normal((2, 60)) / 8, "5.bias": rng.standard_normal(2)}
    net = nnpk.Network([nnpk.Conv(3, (3, 3), W_std=1.3, b_std=0.1), nnpk.BatchNorm(), "relu", nnpk.Flatten(),
                        nnpk.BatchNorm(), nnpk.Dense(2, b_std=0.2)], parameterization=parameterization)
    params, buffers = nnpk.params_from_state_dict(net, sd, layout="torch", input_shape=(4, 5, 2))
    assert len(params) == 4 and len(buffers) == 2 and params[1][0].shape == (3,) and buffers[1][1].shape == (60,)
    x = rng.standard_normal((3, 4, 5, 2))
    bn = lambda h, p: batch_norm_nc(h, *(sd[f"{p}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")))
    h = relu(bn(conv_nchw(x.transpose(0, 3, 1, 2), sd["0.weight"], sd["0.bias"], 1, "same"), "1"))
    expected = bn(h.reshape(3, -1), "4") @ sd["5.weight"].T + sd["5.bias"]
    got = nnpk.initial_outputs(x, net, params=params, buffers=buffers)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_batch_norm_from_flax():
    rng = np.random.default_rng(6)
    k0, k1 = rng.standard_normal((5, 4)) / 2, rng.standard_normal((4, 3)) / 2
    b0, b1 = rng.standard_normal(4), rng.standard_normal(3)
    scale, bias, mean, var = 1 + rng.standard_normal(4) / 3, rng.standard_normal(4), rng.standard_normal(4), \
        rng.uniform(0.5, 2, 4)
    tree = {"params": {"Dense_0": {"kernel": k0, "bias": b0}, "BatchNorm_0": {"scale": scale, "bias": bias},
                       "Dense_1": {"kernel": k1, "bias": b1}},
            "batch_stats": {"BatchNorm_0": {"mean": mean, "var": var}}}
    net = nnpk.Network([nnpk.Dense(4, b_std=0.1), nnpk.BatchNorm(), "tanh", nnpk.Dense(3, b_std=0.1)])
    params, buffers = nnpk.params_from_state_dict(net, tree, layout="flax", input_shape=5)
    x = rng.standard_normal((6, 5))
    expected = np.tanh((x @ k0 + b0 - mean) / np.sqrt(var + 1e-5) * scale + bias) @ k1 + b1
    np.testing.assert_allclose(nnpk.initial_outputs(x, net, params=params, buffers=buffers), expected, rtol=1e-12,
                               atol=1e-12)


MLP = nnpk.MLP(hidden=[4], out=2, b_std=0.1)
GOOD = {"0.weight": np.ones((4, 3)), "0.bias": np.ones(4), "2.weight": np.ones((2, 4)), "2.bias": np.ones(2)}


def without(name):
    return {k: v for k, v in GOOD.items() if k != name}


BN_NET = nnpk.Network([nnpk.Dense(4), nnpk.BatchNorm(), "relu", nnpk.Dense(2)])
BN_GOOD = {"0.weight": np.ones((4, 3)), **{f"1.{n}": np.ones(4) for n in ("weight", "bias", "running_mean",
                                                                         "running_var")}, "3.weight": np.ones((2, 4))}
BN_PARAMS = [(np.ones((3, 4)), None), (np.ones(4), np.zeros(4)), (np.ones((4, 2)), None)]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: nnpk.params_from_state_dict(BN_NET, {k: v for k, v in BN_GOOD.items() if k != "1.running_var"},
                                             input_shape=3), ValueError,
         "the entries of '1' go to parametrised layer 1, layer 1 \\(BatchNorm eps 1e-05, momentum 0.1\\): it has no "
         "'running_var'"),
        (lambda: nnpk.params_from_state_dict(BN_NET, {**BN_GOOD, "1.running_mean": np.ones(5)}, input_shape=3),
         ValueError, "state_dict\\['1.running_mean'\\] has shape \\(5,\\); parametrised layer 1, layer 1 "
         "\\(BatchNorm eps 1e-05, momentum 0.1\\) expects \\(4,\\)"),
        (lambda: nnpk.params_from_state_dict(BN_NET, {**BN_GOOD, "1.running_var": -np.ones(4)}, input_shape=3),
         ValueError, "state_dict\\['1.running_var'\\] has negative variances"),
        (lambda: nnpk.params_from_state_dict(BN_NET, {k: BN_GOOD[k] for k in ("0.weight",)}, input_shape=3), ValueError,
         "parametrised layer 1, layer 1 \\(BatchNorm.*\\), has none \\(expected 'weight', 'bias', 'running_mean', "
         "'running_var', each of shape \\(4,\\)\\)"),
        (lambda: nnpk.initial_outputs(np.ones((2, 3)), BN_NET, params=BN_PARAMS), ValueError,
         "the network has 1 BatchNorm layers: pass buffers"),
        (lambda: nnpk.initial_outputs(np.ones((2, 3)), BN_NET, params=BN_PARAMS, buffers=[]), ValueError,
         "buffers must hold one \\(running_mean, running_var\\) pair per BatchNorm \\(1\\), got 0"),
        (lambda: nnpk.initial_outputs(np.ones((2, 3)), BN_NET, params=BN_PARAMS, buffers=[(np.zeros(4), np.ones(3))]),
         ValueError, "buffers\\[0\\] running_var has shape \\(3,\\); layer 1 \\(BatchNorm .*\\) expects \\(4,\\)"),
        (lambda: nnpk.initial_outputs(np.ones((2, 3)), BN_NET, params=BN_PARAMS, buffers=[(np.zeros(4), -np.ones(4))]),
         ValueError, "buffers\\[0\\] running_var has negative values"),
        (lambda: nnpk.initial_outputs(np.ones((2, 3)), MLP, params=nnpk.sample_params(MLP, 3, 0, 0),
                                      buffers=[(np.zeros(4), np.ones(4))]), ValueError,
         "buffers has 1 entries; the network has no BatchNorm"),
    ],
)
def test_batch_norm_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: nnpk.params_from_state_dict(MLP, GOOD, layout="keras", input_shape=3), ValueError,
         "layout must be 'torch' or 'flax', got 'keras'"),
        (lambda: nnpk.params_from_state_dict(MLP, [1, 2], input_shape=3), TypeError, "state_dict must be a mapping"),
        (lambda: nnpk.params_from_state_dict("mlp", GOOD, input_shape=3), TypeError, "arch must be an nnpk"),
        (lambda: nnpk.params_from_state_dict(MLP, {k: GOOD[k] for k in ("0.weight", "0.bias")}, input_shape=3),
         ValueError, "state_dict has 1 groups of entries; parametrised layer 1, layer 2 \\(Dense 2\\), has none "
         "\\(expected 'weight' of shape \\(2, 4\\) and 'bias'\\)"),
        (lambda: nnpk.params_from_state_dict(MLP, {**GOOD, "4.weight": np.ones(2)}, input_shape=3), ValueError,
         "entries beyond the network's 2 parametrised layers: '4.weight'"),
        (lambda: nnpk.params_from_state_dict(MLP, {**GOOD, "0.weight": np.ones((3, 4))}, input_shape=3), ValueError,
         "state_dict\\['0.weight'\\] has shape \\(3, 4\\); parametrised layer 0, layer 0 \\(Dense 4\\) "
         "expects \\(4, 3\\) in torch's layout for 3 input features"),
        (lambda: nnpk.params_from_state_dict(MLP, GOOD, layout="flax", input_shape=3), ValueError,
         "the entries of '' go to parametrised layer 0, layer 0 \\(Dense 4\\): it has no 'bias' and no 'kernel' .* "
         "\\(names in torch's layout: pass layout='torch'\\)"),
        (lambda: nnpk.params_from_state_dict(MLP, without("2.bias"), input_shape=3), ValueError,
         "the entries of '2' go to parametrised layer 1, layer 2 \\(Dense 2\\): it has no 'bias'"),
        (lambda: nnpk.params_from_state_dict(MLP.replace(b_std=None), GOOD, input_shape=3), ValueError,
         "an unexpected '0.bias' \\(the layer has b_std=None: no bias\\)"),
        (lambda: nnpk.params_from_state_dict(MLP, {**GOOD, "2.bias": np.ones(3)}, input_shape=3), ValueError,
         "state_dict\\['2.bias'\\] has shape \\(3,\\); parametrised layer 1, layer 2 \\(Dense 2\\) expects \\(2,\\)"),
        (lambda: nnpk.params_from_state_dict(MLP.replace(b_std=0.0), GOOD, input_shape=3), ValueError,
         "state_dict\\['0.bias'\\] is nonzero but parametrised layer 0, layer 0 \\(Dense 4\\) has b_std=0"),
        (lambda: nnpk.params_from_state_dict(MLP, {**GOOD, "0.bias": np.array(["a"] * 4)}, input_shape=3), TypeError,
         "state_dict\\['0.bias'\\] must hold real numbers"),
        (lambda: nnpk.params_from_state_dict(MLP, {**GOOD, "0.bias": np.full(4, np.nan)}, input_shape=3), ValueError,
         "state_dict\\['0.bias'\\] contains NaN or inf"),
        (lambda: nnpk.params_from_state_dict(MLP, GOOD, input_shape=(4,)), ValueError,
         "expects \\(4, 4\\) in torch's layout"),
        (lambda: nnpk.params_from_state_dict(
            nnpk.Network([nnpk.Conv(2, 3), nnpk.Flatten(), nnpk.Residual([nnpk.Dense(8)]), nnpk.Dense(1)]), {},
            input_shape=(4, 1)), ValueError, "layer 2 \\(Residual, scale 1\\) sits between a Flatten"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
