"""SelfAttention: global self-attention over positions, in every kernel, training and stores, against a numpy
forward pass written here (neural-tangents' GlobalSelfAttention, as docs/definitions.rst states it), gradients
and Jacobians by finite differences, a numpy computation of the infinite-width limit, and Monte Carlo."""

import math

import numpy as np
import pytest

import nnpk
from nnpk import Conv, Dense, Flatten, GlobalAvgPool, Network, Residual, SelfAttention, _core
from nnpk.architectures._params import check_network_params, prepare_network_points
from nnpk.kernels._plans import node_sums
from nnpk.kernels._plans import tangent_sums as network_tangent_sums
from reference import ntk_from_jacobians
from reference_networks import apply


def points(n, shape, seed=0):
    return np.random.default_rng(seed).standard_normal((n,) + shape)


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def _mechanism(name, s):
    if name == "softmax":
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return {"identity": lambda v: v, "abs": np.abs, "relu": lambda v: np.maximum(v, 0.0)}[name](s)


def attention(layer, h, params, parameterization):
    """neural-tangents' GlobalSelfAttention apply_fn, per head, on (n, *spatial, c) inputs, weights in
    sample_params' layout (heads as column blocks)."""
    n, spatial, c = h.shape[0], h.shape[1:-1], h.shape[-1]
    x = h.reshape(n, -1, c)
    ntk = parameterization == "ntk"
    H, dk, dv = layer.heads, layer.key_width, layer.value_width
    Wk, _ = next(params)
    Wq = Wk if layer.linear_scaling else next(params)[0]
    Wv, _ = next(params)
    Wo, b = next(params)
    u = xv = x
    if layer.pos_emb_type != "none":  # the table E, mapped by the Cholesky factor of R, summed or concatenated
        E, _ = next(params)
        P = x.shape[1]
        coords = np.indices(spatial).reshape(len(spatial), -1).T
        R = np.eye(P)
        if layer.pos_emb_decay_fn is not None:
            dist = (np.abs(coords[:, None, :] - coords[None, :, :]) ** layer.pos_emb_p_norm).sum(-1)
            R = np.vectorize(layer.pos_emb_decay_fn)(dist.astype(float))
        Z = (layer.W_pos_emb_std if ntk else 1.0) * np.linalg.cholesky(R) @ E
        u = x + Z if layer.pos_emb_type == "sum" else np.concatenate([x, np.broadcast_to(Z, (n,) + Z.shape)], -1)
        xv = u if layer.val_pos_emb else x
    ck, cv = u.shape[-1], xv.shape[-1]
    if layer.linear_scaling:
        sk = sq = math.sqrt(layer.W_key_std * layer.W_query_std)
    else:
        sk, sq = layer.W_key_std, layer.W_query_std
    fk, fq = (sk / math.sqrt(ck), sq / math.sqrt(ck)) if ntk else (1.0, 1.0)
    fv = layer.W_value_std / math.sqrt(cv) if ntk else 1.0
    fo = layer.W_out_std / math.sqrt(H * dv) if ntk else 1.0
    heads = []
    for i in range(H):
        K = fk * u @ Wk[:, i * dk:(i + 1) * dk]
        Q = fq * u @ Wq[:, i * dk:(i + 1) * dk]
        V = fv * xv @ Wv[:, i * dv:(i + 1) * dv]
        S = Q @ np.swapaxes(K, 1, 2) / (dk if layer.linear_scaling else math.sqrt(dk))
        heads.append(_mechanism(layer.attention_mechanism, S) @ V)
    out = fo * np.concatenate(heads, axis=-1) @ Wo
    if b is not None:
        out = out + (layer.b_std if ntk else 1.0) * b
    return out.reshape((n,) + spatial + (Wo.shape[1],))


def run(layers, h, params, parameterization):
    for layer in layers:
        if isinstance(layer, SelfAttention):
            h = attention(layer, h, params, parameterization)
        elif isinstance(layer, Residual):
            h = h + layer.scale * run(layer.block, h, params, parameterization)
        else:
            h = apply(layer, h, params, parameterization)
    return h


def numpy_forward(net, params, x):
    return run(net.layers, np.asarray(x, dtype=np.float64), iter(params), net.parameterization)


def fd_jacobian(net, params, x, h=1e-6):
    """(n, C, n_params) by central differences of numpy_forward, parameters in sample_params' order."""
    flat = [(k, j) for k, (W, b) in enumerate(params) for j in range(2) if (W, b)[j] is not None]
    cols = []
    for k, j in flat:
        base = params[k][j]
        for i in range(base.size):
            out = []
            for step in (h, -h):
                trial = [list(p) for p in params]
                changed = base.copy().reshape(-1)
                changed[i] += step
                trial[k][j] = changed.reshape(base.shape)
                out.append(numpy_forward(net, [tuple(p) for p in trial], x))
            cols.append((out[0] - out[1]) / (2 * h))
    return np.stack(cols, axis=-1)


CASES = {
    "1d_tied_softmax": ([SelfAttention(2, 3, 2, width=4, b_std=0.3), "relu", Flatten(), Dense(2)], (4, 3)),
    "2d_untied_softmax": ([SelfAttention(2, 2, 3, linear_scaling=False, W_key_std=1.3, W_value_std=0.7),
                           "tanh", GlobalAvgPool(), Dense(2, b_std=0.1)], (2, 2, 3)),
    "residual_relu": ([Residual([SelfAttention(1, 3, 2, attention_mechanism="relu", W_query_std=0.8)]), "erf",
                       Flatten(), Dense(1)], (3, 2)),
    "abs_identity": ([SelfAttention(2, 2, 2, width=3, attention_mechanism="abs", b_std=0.2), "erf",
                      SelfAttention(1, 2, 2, attention_mechanism="identity", linear_scaling=False), Flatten(),
                      Dense(2)], (3, 2)),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_logits_and_tangent_kernel_equal_numpy(case, parameterization):
    """The engine's forward pass against the numpy forward pass of the same parameters, and its empirical NTK
    (the backward pass through the softmax and the products) against finite-difference Jacobians of it."""
    layers, shape = CASES[case]
    net = Network(layers, parameterization=parameterization)
    x = points(3, shape)
    params = nnpk.sample_params(net, shape, seed=2, index=1)
    assert rel(nnpk.initial_outputs(x, net, seed=2, index=1), numpy_forward(net, params, x)) < 1e-12
    j = fd_jacobian(net, params, x)
    ntk = nnpk.empirical(x, arch=net, params=params, get="ntk")
    assert rel(ntk, ntk_from_jacobians(j, j)) < 1e-6
    x2 = points(2, shape, 5)
    j2 = fd_jacobian(net, params, x2)
    assert rel(nnpk.empirical(x, x2, arch=net, params=params, get="ntk"), ntk_from_jacobians(j, j2)) < 1e-6


def test_parameter_layout():
    net = Network([SelfAttention(3, 4, 5, width=6, b_std=0.1), Flatten(), Dense(1)])
    shapes = [(W.shape, None if b is None else b.shape) for W, b in nnpk.sample_params(net, (7, 2), 0, 0)]
    assert shapes == [((2, 12), None), ((2, 15), None), ((15, 6), (6,)), ((42, 1), None)]
    untied = Network([SelfAttention(3, 4, 5, linear_scaling=False), Flatten(), Dense(1)])
    assert len(nnpk.sample_params(untied, (7, 2), 0, 0)) == 5
    assert net.has_bias == (False, False, True, False)
    assert untied.has_bias == (False, False, False, False, False)


@pytest.mark.parametrize("case", ["1d_tied_softmax", "2d_untied_softmax", "abs_identity"])
def test_loss_gradients_equal_finite_differences(case):
    """The trainer's gradients of the squared loss (the backward pass through the softmax and the products)
    against central differences of the numpy loss."""
    layers, shape = CASES[case]
    net = Network(layers, parameterization="standard")
    compiled = net.compile(shape)
    x = points(4, shape, 3)
    y = np.random.default_rng(4).standard_normal((4, compiled.out))
    params = nnpk.sample_params(net, shape, seed=1, index=0)
    j = fd_jacobian(net, params, x)  # (n, C, n_params)
    residual = numpy_forward(net, params, x) - y
    want = np.einsum("nc,ncp->p", residual, j) / len(x)  # d/d theta of sum ||f - y||^2 / (2 n)
    n = len(params)
    trainer = _core.SequentialTrainer(compiled.spec, [True] * n, list(net.has_bias), 2, "float64")
    loss, gw, gb = trainer.gradients(x.reshape(len(x), -1), check_network_params(params, compiled, np.float64),
                                     "squared", compiled.out, y)
    assert loss == pytest.approx(0.5 * (residual ** 2).sum() / len(x), rel=1e-12)
    got = np.concatenate([np.concatenate([np.ravel(gw[k])] + ([np.ravel(gb[k])] if net.has_bias[k] else []))
                          for k in range(n)])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def _relu_dual(q1, q2, c):
    """E[relu(u) relu(v)] and E[relu'(u) relu'(v)] entry by entry (arc-cosine kernels)."""
    y = np.sqrt(np.maximum(np.outer(q1, q2) - c * c, 0.0))
    theta = np.arctan2(y, c)
    return (y + (np.pi - theta) * c) / (2 * np.pi), (np.pi - theta) / (2 * np.pi)


def _softmax_rows(s):
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def numpy_limit(x, qk, ov2, b2, qk2, ov22):
    """The infinite-width NNGP and NTK of [SelfAttention (linear scaling, softmax, bias b2), relu,
    SelfAttention (linear scaling, softmax, no bias), GlobalAvgPool, Dense(1)] by neural-tangents' rules: each
    point's weights G(x) = softmax(qk Sigma(x, x)), Sigma' = ov2 G Sigma G'^T + b2, Theta' = ov2 G (Theta +
    2 Sigma) G'^T + b2; relu entry by entry; the pooling's mean over all pairs of positions; Dense(1) with
    W_std = 1 and no bias."""
    n, c = len(x), x.shape[-1]
    flat = x.reshape(n, -1, c)
    sigma = [[a @ b.T / c for b in flat] for a in flat]
    G1 = [_softmax_rows(qk * sigma[i][i]) for i in range(n)]
    s1 = [[ov2 * G1[i] @ sigma[i][j] @ G1[j].T + b2 for j in range(n)] for i in range(n)]
    t1 = [[ov2 * G1[i] @ (2 * sigma[i][j]) @ G1[j].T + b2 for j in range(n)] for i in range(n)]
    q = [np.diag(s1[i][i]) for i in range(n)]
    duals = [[_relu_dual(q[i], q[j], s1[i][j]) for j in range(n)] for i in range(n)]
    s2 = [[duals[i][j][0] for j in range(n)] for i in range(n)]
    t2 = [[t1[i][j] * duals[i][j][1] for j in range(n)] for i in range(n)]
    G2 = [_softmax_rows(qk2 * s2[i][i]) for i in range(n)]
    s3 = np.array([[np.mean(ov22 * G2[i] @ s2[i][j] @ G2[j].T) for j in range(n)] for i in range(n)])
    t3 = np.array([[np.mean(ov22 * G2[i] @ (t2[i][j] + 2 * s2[i][j]) @ G2[j].T) for j in range(n)]
                   for i in range(n)])
    return s3, s3 + t3


def limit_network(heads=1, key_width=1, value_width=1, width=None):
    return Network([SelfAttention(heads, key_width, value_width, width=width, W_key_std=1.2, W_query_std=0.9,
                                  W_value_std=1.1, W_out_std=0.8, b_std=0.3), "relu",
                    SelfAttention(heads, key_width, value_width, width=width, W_key_std=0.7, W_value_std=1.3),
                    GlobalAvgPool(), Dense(1)])


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2)])
def test_analytic_against_a_numpy_limit(shape):
    x = points(4, shape, 6)
    x2 = points(3, shape, 7)
    nngp, ntk = numpy_limit(np.concatenate([x, x2]), 1.2 * 0.9, (1.1 * 0.8) ** 2, 0.09, 0.7, 1.3**2)
    got = nnpk.analytic(x, arch=limit_network(), get=("nngp", "ntk"))
    np.testing.assert_allclose(got["nngp"], nngp[:4, :4], rtol=1e-12)
    np.testing.assert_allclose(got["ntk"], ntk[:4, :4], rtol=1e-12)
    cross = nnpk.analytic(x, x2, arch=limit_network(), get="ntk")
    np.testing.assert_allclose(cross, ntk[:4, 4:], rtol=1e-12)
    # the NNGP does not depend on the parameterization
    standard = Network(limit_network().layers, parameterization="standard")
    np.testing.assert_allclose(nnpk.analytic(x, arch=standard), nngp[:4, :4], rtol=1e-12)


def test_analytic_identity_square_root_scaling():
    """neural-tangents' closed form for identity attention with independent keys and queries: with s = sum of
    Sigma_ab^2 and t = sum of Sigma_ab Theta_ab over pairs of positions, Sigma' = qk^2 ov2 s Sigma and Theta' =
    qk^2 ov2 (2 t Sigma + s (Theta + 4 Sigma)); here after a Conv of kernel size 1 (Theta = Sigma)."""
    x = points(3, (3, 2), 8)
    arch = Network([nnpk.Conv(4, 1, W_std=1.1), SelfAttention(2, 2, 2, linear_scaling=False,
                                                                attention_mechanism="identity", W_key_std=0.9),
                    Flatten(), Dense(1)])
    sigma = [[1.21 * a @ b.T / 2 for b in x] for a in x]
    c = 0.81
    nngp = np.array([[c * np.sum(sigma[i][j] ** 2) * np.trace(sigma[i][j]) / 3 for j in range(3)] for i in range(3)])
    ntk = np.array([[c * (2 * np.sum(sigma[i][j] ** 2) + 5 * np.sum(sigma[i][j] ** 2)) * np.trace(sigma[i][j]) / 3
                     for j in range(3)] for i in range(3)])
    got = nnpk.analytic(x, arch=arch, get=("nngp", "ntk"))
    np.testing.assert_allclose(got["nngp"], nngp, rtol=1e-12)
    np.testing.assert_allclose(got["ntk"], nngp + ntk, rtol=1e-12)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_monte_carlo_approaches_the_analytic_kernel(get):
    """Linear scaling: the logits' fluctuations shrink as key_width grows, the heads' as heads x value_width
    does; the Monte Carlo error falls with width and ends within a few standard errors plus O(1/width)."""
    check_error_falls_with_width(points(4, (3, 2), 9) * 0.7, limit_network(),
                                 lambda width: limit_network(2, width, width // 2, width), get)


def check_error_falls_with_width(x, infinite, at_width, get):
    """Monte Carlo of at_width(8) and at_width(128) against the analytic kernel of `infinite`: the error falls
    with width and ends within 4 standard errors plus 8 / 128."""
    exact = nnpk.analytic(x, arch=infinite, get=get)
    errors = []
    for width in (8, 128):
        estimate, info = nnpk.monte_carlo(x, arch=at_width(width), n_networks=24, seed=3, get=get,
                                          return_standard_error=True)
        errors.append(np.linalg.norm(estimate - exact) / np.linalg.norm(exact))
    assert errors[1] < errors[0]
    assert errors[1] < 4 * info["standard_error"] + 8 / 128


@pytest.mark.parametrize("kernel", ["nngp", "ntk"])
def test_threads_and_tiles_are_bitwise_equal(kernel):
    layers, shape = CASES["2d_untied_softmax"]
    net = Network(layers)
    x = points(30, shape, 10)
    one = nnpk.monte_carlo(x, arch=net, n_networks=3, get=kernel, n_threads=1)
    two = nnpk.monte_carlo(x, arch=net, n_networks=3, get=kernel, n_threads=2)
    assert np.array_equal(one, two)
    params = nnpk.sample_params(net, shape, seed=0, index=0)
    assert np.array_equal(nnpk.empirical(x, arch=net, params=params, get=kernel, n_threads=1),
                          nnpk.empirical(x, arch=net, params=params, get=kernel, n_threads=2))
    assert np.array_equal(nnpk.analytic(x, arch=limit_network(), get=kernel, n_threads=1),
                          nnpk.analytic(x, arch=limit_network(), get=kernel, n_threads=2))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_monte_carlo_spatial_tiles_are_bitwise_equal(dtype):
    """Points of many positions run in tiles of a few points (64 positions: 24 points a tile): a point's kernel
    entries are the same bits wherever its tile boundaries fall and whatever the threads."""
    net = Network([SelfAttention(2, 5, 3, width=8, b_std=0.1), "relu", SelfAttention(2, 4, 5, linear_scaling=False),
                   GlobalAvgPool(), Dense(3)])
    x = points(60, (8, 8, 3), 21)
    whole = nnpk.monte_carlo(x, arch=net, n_networks=2, dtype=dtype, n_threads=2)
    part = nnpk.monte_carlo(x[5:55], arch=net, n_networks=2, dtype=dtype, n_threads=1)
    assert np.array_equal(whole[5:55, 5:55], part)


def test_training_lowers_the_loss():
    x = points(32, (4, 2), 11)
    y = x[:, :, 0].mean(axis=1) * x[:, :, 1].max(axis=1)
    arch = Network([SelfAttention(2, 4, 4, width=8, b_std=0.1), "relu", Flatten(), Dense(1)],
                   parameterization="standard")
    learner = nnpk.NetworkLearner(arch, loss="squared", optimizer="adam", lr=3e-3, epochs=40, batch_size=16,
                                  n_threads=2, random_state=0).fit(x, y)
    loss = learner.history_["loss"]
    assert loss[-1] < 0.5 * loss[0]
    single = nnpk.NetworkLearner(arch, loss="squared", optimizer="adam", lr=3e-3, epochs=40, batch_size=16,
                                 n_threads=1, random_state=0).fit(x, y)
    assert single.history_["loss"] == loss


def test_store_round_trip(tmp_path):
    x = points(6, (3, 2), 12)
    arch = limit_network()
    store = nnpk.compute_to_store(tmp_path / "k", x, arch=arch, kernel="analytic_nngp", tile_size=96)
    assert store.arch == arch
    np.testing.assert_allclose(store.to_numpy(), nnpk.analytic(x, arch=arch), rtol=1e-15)
    assert store.spec["arch"]["layers"][0]["type"] == "SelfAttention"


def test_refusals_name_the_reason():
    x = points(3, (3, 2), 13)
    untied = Network([SelfAttention(1, 2, 2, linear_scaling=False), Flatten(), Dense(1)])
    with pytest.raises(ValueError, match=r"layer 0 \(SelfAttention.*linear_scaling=False.*no known closed form"):
        nnpk.analytic(x, arch=untied)
    standard = Network(limit_network().layers, parameterization="standard")
    with pytest.raises(ValueError, match=r"layer 0 \(SelfAttention.*'ntk' parameterization only"):
        nnpk.analytic(x, arch=standard, get="ntk")
    with pytest.raises(ValueError, match=r"layer 0 \(SelfAttention.*needs \(length, channels\)"):
        Network([SelfAttention(1, 2, 2), Dense(1)]).compile((4,))
    with pytest.raises(ValueError, match="attention_mechanism must be one of softmax, identity, abs, relu"):
        SelfAttention(1, 2, 2, attention_mechanism="sigmoid")
    with pytest.raises(ValueError, match="key_width must be positive"):
        SelfAttention(1, 0, 2)
    with pytest.raises(ValueError, match="W_out_std must be finite and >= 0"):
        SelfAttention(1, 2, 2, W_out_std=-1.0)
    with pytest.raises(ValueError, match=r"SelfAttention.*no torch state_dict layout"):
        nnpk.params_from_state_dict(untied, {}, input_shape=(3, 2))


def _tangent_sums_bitwise(net, dtype, seed):
    """The Monte Carlo tangent sums of `net` (per layer, NNGP too) the same bits for any threads and tiles, with
    x2 absent and given; returns the compiled network and its points for further checks."""
    compiled, x1, x2 = prepare_network_points(points(131, (3, 2), seed), points(101, (3, 2), seed + 1), net, dtype)
    n = len(compiled.params)
    q = nnpk._core.ROW_QUANTUM
    for xb in (None, x2):
        runs = [network_tangent_sums(x1, xb, compiled, seed=2, start=0, stop=2, nngp=True, weights=[True] * n,
                                     biases=[True] * n, per_layer=True, per_logit=False, n_threads=t,
                                     tile_rows=tr, gram_tile=gt, panel_cols=pc)
                for t, tr, gt, pc in [(1, q, q, 5), (2, 2 * q, 4 * q, 128), (2, 3 * q, 2 * q, 1000)]]
        for other in runs[1:]:
            for a, b in zip(runs[0], other):
                assert np.array_equal(a, b)
    return compiled, x1, x2


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tangent_sums_are_bitwise_equal_across_threads_and_tiles(dtype):
    net = Network([SelfAttention(2, 3, 2, width=4, b_std=0.1), "relu",
                   SelfAttention(2, 2, 3, linear_scaling=False, attention_mechanism="abs"), Flatten(), Dense(3)])
    compiled, x1, x2 = _tangent_sums_bitwise(net, dtype, 14)
    q = nnpk._core.ROW_QUANTUM
    for xb in (None, x2):
        nodes = list(compiled.layer_nodes)
        sums = [node_sums(x1, xb, compiled, nodes, seed=2, start=0, stop=2, n_threads=t, tile_rows=r, gram_tile=g,
                          panel_cols=p) for t, r, g, p in [(1, q, 16, 3), (2, 3 * q, 256, 128)]]
        for a, b in zip(*sums):
            assert np.array_equal(a, b)


def test_sklearn_estimator_takes_attention():
    from nnpk.sklearn import NNPKRegressor

    x = points(20, (3, 2), 16).reshape(20, -1)
    y = x.sum(axis=1)
    arch = limit_network()
    model = NNPKRegressor(arch=arch, input_shape=(3, 2), method="analytic", ridge=1e-3).fit(x[:15], y[:15])
    k_train = nnpk.analytic(x[:15].reshape(15, 3, 2), arch=arch)
    k_test = nnpk.analytic(x[15:].reshape(5, 3, 2), x[:15].reshape(15, 3, 2), arch=arch)
    np.testing.assert_allclose(model.predict(x[15:]), nnpk.kernel_ridge(k_train, y[:15], k_test, 1e-3), rtol=1e-8)


def test_layer_kernels_of_every_layer():
    """layers="all": the attention layer's kernel is its features' kernel averaged over positions, the mean of
    the position covariances (here the first layer's ov2 G Sigma G'^T + b2 of the numpy limit)."""
    x = points(3, (4, 3), 17)
    c = 3
    flat = x.reshape(3, -1, c)
    sigma = [[a @ b.T / c for b in flat] for a in flat]
    G = [_softmax_rows(1.08 * sigma[i][i]) for i in range(3)]
    first = np.array([[np.mean((1.1 * 0.8) ** 2 * G[i] @ sigma[i][j] @ G[j].T + 0.09) for j in range(3)]
                      for i in range(3)])
    kernels = nnpk.analytic(x, arch=limit_network(), layers="all")
    np.testing.assert_allclose(kernels[0], first, rtol=1e-12)
    np.testing.assert_allclose(kernels[-1], nnpk.analytic(x, arch=limit_network()), rtol=1e-13)
    estimates = nnpk.monte_carlo(x, arch=limit_network(2, 64, 32, 64), n_networks=4, layers="all")
    assert len(estimates) == len(kernels) == 5


@pytest.mark.parametrize("mechanism,linear", [("softmax", True), ("identity", False)])
def test_analytic_diagonal_and_full_attention_outputs_agree(mechanism, linear):
    # Read by Flatten, the attention node carries only same-position covariances; asked for its own kernel
    # (layers="all") it carries every pair of positions. The output kernels are the same bits.
    x = np.random.default_rng(0).standard_normal((11, 6, 3))
    attention = nnpk.SelfAttention(2, 4, 4, linear_scaling=linear, attention_mechanism=mechanism, b_std=0.3)
    net = nnpk.Network([nnpk.Conv(8, 1), attention, "relu", nnpk.Flatten(), nnpk.Dense(3)])
    out = nnpk.analytic(x, arch=net, get=("nngp", "ntk"))
    every = nnpk.analytic(x, arch=net, get=("nngp", "ntk"), layers="all")
    for k in ("nngp", "ntk"):
        np.testing.assert_array_equal(out[k], every[k][-1])


# Positional embeddings (neural-tangents' pos_emb_type, val_pos_emb, n_chan_pos_emb, W_pos_emb_std,
# pos_emb_decay_fn, pos_emb_p_norm).


def _decay(d):
    return math.exp(-d / 2)


POS_CASES = {
    "sum_tied_softmax_values": ([SelfAttention(2, 3, 2, width=4, b_std=0.3, pos_emb_type="sum", val_pos_emb=True,
                                               W_pos_emb_std=0.7), "relu", Flatten(), Dense(2)], (4, 3)),
    "concat_untied_decay_2d": ([SelfAttention(2, 2, 3, linear_scaling=False, pos_emb_type="concat", n_chan_pos_emb=2,
                                              pos_emb_decay_fn=_decay, pos_emb_p_norm=1, W_pos_emb_std=1.3), "tanh",
                                GlobalAvgPool(), Dense(2, b_std=0.1)], (2, 2, 3)),
    "residual_relu_concat_values": ([Residual([SelfAttention(1, 3, 2, attention_mechanism="relu", pos_emb_type="concat",
                                                             val_pos_emb=True, n_chan_pos_emb=3)]), "erf", Flatten(),
                                     Dense(1)], (3, 2)),
    "stacked": ([SelfAttention(2, 2, 2, width=3, attention_mechanism="abs", pos_emb_type="sum",
                               pos_emb_decay_fn=_decay), "erf",
                 SelfAttention(1, 2, 2, attention_mechanism="identity", linear_scaling=False, pos_emb_type="concat",
                               val_pos_emb=True), Flatten(), Dense(2)], (3, 2)),
}


@pytest.mark.parametrize("case", sorted(POS_CASES))
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_positional_embeddings_forward_and_tangent_kernel_equal_numpy(case, parameterization):
    """With positional embeddings: the forward pass against numpy, the empirical NTK (the embedding table one
    more parameter) and the forward-mode tangent against finite-difference Jacobians."""
    layers, shape = POS_CASES[case]
    net = Network(layers, parameterization=parameterization)
    x = points(3, shape, 20)
    params = nnpk.sample_params(net, shape, seed=4, index=2)
    assert rel(nnpk.initial_outputs(x, net, seed=4, index=2), numpy_forward(net, params, x)) < 1e-12
    j = fd_jacobian(net, params, x)
    got = nnpk.empirical(x, arch=net, params=params, get=("nngp", "ntk"))
    assert rel(got["ntk"], ntk_from_jacobians(j, j)) < 1e-6
    f = numpy_forward(net, params, x).reshape(3, -1)
    np.testing.assert_allclose(got["nngp"], f @ f.T / f.shape[1], rtol=1e-10)
    x2 = points(2, shape, 21)
    j2 = fd_jacobian(net, params, x2)
    assert rel(nnpk.empirical(x, x2, arch=net, params=params, get="ntk"), ntk_from_jacobians(j, j2)) < 1e-6


@pytest.mark.parametrize("case", ["sum_tied_softmax_values", "concat_untied_decay_2d", "stacked"])
def test_positional_embeddings_loss_gradients_equal_finite_differences(case):
    """The trainer's gradients, the embedding table's included, against central differences of the numpy loss."""
    layers, shape = POS_CASES[case]
    net = Network(layers, parameterization="standard")
    compiled = net.compile(shape)
    x = points(4, shape, 22)
    y = np.random.default_rng(23).standard_normal((4, compiled.out))
    params = nnpk.sample_params(net, shape, seed=5, index=0)
    j = fd_jacobian(net, params, x)
    residual = numpy_forward(net, params, x) - y
    want = np.einsum("nc,ncp->p", residual, j) / len(x)
    n = len(params)
    trainer = _core.SequentialTrainer(compiled.spec, [True] * n, list(net.has_bias), 2, "float64")
    _, gw, gb = trainer.gradients(x.reshape(len(x), -1), check_network_params(params, compiled, np.float64),
                                  "squared", compiled.out, y)
    got = np.concatenate([np.concatenate([np.ravel(gw[k])] + ([np.ravel(gb[k])] if net.has_bias[k] else []))
                          for k in range(n)])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_positional_embedding_parameters():
    """The table E (positions, e) comes after (Wo, b), without bias; with "concat" the keys' (and, with
    val_pos_emb, the values') weights have c + e rows; "standard" stores the same draws times W_pos_emb_std."""
    layer = SelfAttention(3, 4, 5, width=6, b_std=0.1, pos_emb_type="concat", n_chan_pos_emb=3, W_pos_emb_std=0.6)
    net = Network([layer, Flatten(), Dense(1)])
    shapes = [(W.shape, None if b is None else b.shape) for W, b in nnpk.sample_params(net, (7, 2), 0, 0)]
    assert shapes == [((5, 12), None), ((2, 15), None), ((15, 6), (6,)), ((7, 3), None), ((42, 1), None)]
    assert net.has_bias == (False, False, True, False, False)
    assert layer.roles == ("key", "value", "out", "pos_emb")
    values = Network([SelfAttention(1, 2, 2, pos_emb_type="concat", val_pos_emb=True, linear_scaling=False),
                      Flatten(), Dense(1)])
    assert [W.shape for W, _ in nnpk.sample_params(values, (3, 2), 0, 0)][:5] == [(4, 2), (4, 2), (4, 2), (2, 2),
                                                                                  (3, 2)]
    ntk_E = nnpk.sample_params(net, (7, 2), 1, 3)[3][0]
    std_E = nnpk.sample_params(Network(net.layers, parameterization="standard"), (7, 2), 1, 3)[3][0]
    np.testing.assert_allclose(std_E, 0.6 * ntk_E, rtol=1e-15)


def test_positional_embeddings_break_permutation_equivariance():
    """Without embeddings, permuting a point's positions permutes the attention's output; with them it does not."""
    x = points(1, (4, 2), 24)
    perm = [2, 0, 3, 1]
    for pos, equivariant in (("none", True), ("sum", False)):
        net = Network([SelfAttention(2, 2, 2, pos_emb_type=pos), Flatten()])
        out = nnpk.initial_outputs(x, net, seed=0, index=0).reshape(4, 2)
        moved = nnpk.initial_outputs(x[:, perm], net, seed=0, index=0).reshape(4, 2)
        assert np.allclose(moved, out[perm], rtol=1e-12) == equivariant


def _positional_limit(x, w1, qk, ov2, b2, w_in, w_pe, R, values):
    """The infinite-width NNGP and NTK of [Conv(kernel 1, W_std=w1), SelfAttention (linear scaling, softmax,
    positional embeddings), relu, GlobalAvgPool, Dense(1)] by neural-tangents' rules: G(x) = softmax(qk (w_in
    Sigma(x, x) + w_pe R)); the values' Sigma_v = w_in Sigma + w_pe R and Theta_v = w_in Theta + w_pe R if they read
    the embeddings (else Sigma, Theta); Sigma' = ov2 G Sigma_v G'^T + b2, Theta' = ov2 G (Theta_v + 2 Sigma_v) G'^T
    + b2."""
    n, d = len(x), x.shape[-1]
    flat = x.reshape(n, -1, d)
    sigma = [[w1 ** 2 * a @ b.T / d for b in flat] for a in flat]
    theta = sigma
    G = [_softmax_rows(qk * (w_in * sigma[i][i] + w_pe * R)) for i in range(n)]
    sv = [[w_in * sigma[i][j] + w_pe * R if values else sigma[i][j] for j in range(n)] for i in range(n)]
    tv = [[w_in * theta[i][j] + w_pe * R if values else theta[i][j] for j in range(n)] for i in range(n)]
    s1 = [[ov2 * G[i] @ sv[i][j] @ G[j].T + b2 for j in range(n)] for i in range(n)]
    t1 = [[ov2 * G[i] @ (tv[i][j] + 2 * sv[i][j]) @ G[j].T + b2 for j in range(n)] for i in range(n)]
    q = [np.diag(s1[i][i]) for i in range(n)]
    duals = [[_relu_dual(q[i], q[j], s1[i][j]) for j in range(n)] for i in range(n)]
    s2 = np.array([[np.mean(duals[i][j][0]) for j in range(n)] for i in range(n)])
    t2 = np.array([[np.mean(t1[i][j] * duals[i][j][1]) for j in range(n)] for i in range(n)])
    return s2, s2 + t2


def positional_network(width=4, pos="concat", values=True, heads=1, key_width=1, value_width=1, decay=_decay):
    return Network([nnpk.Conv(width, 1, W_std=1.1),
                    SelfAttention(heads, key_width, value_width, width=width, W_key_std=1.2, W_query_std=0.9,
                                  W_value_std=1.1, W_out_std=0.8, b_std=0.3, pos_emb_type=pos, val_pos_emb=values,
                                  W_pos_emb_std=0.7, pos_emb_decay_fn=decay), "relu", GlobalAvgPool(), Dense(1)])


@pytest.mark.parametrize("pos,values,decay", [("concat", True, _decay), ("sum", False, None), ("sum", True, None),
                                              ("concat", False, _decay)])
def test_positional_analytic_against_a_numpy_limit(pos, values, decay):
    x = points(3, (4, 2), 25)
    x2 = points(2, (4, 2), 26)
    coords = np.arange(4.0)
    R = np.exp(-np.abs(coords[:, None] - coords[None, :]) ** 2 / 2) if decay else np.eye(4)
    w_in, w_pe = (0.5, 0.49 * 0.5) if pos == "concat" else (1.0, 0.49)
    nngp, ntk = _positional_limit(np.concatenate([x, x2]), 1.1, 1.2 * 0.9, (1.1 * 0.8) ** 2, 0.09, w_in, w_pe, R,
                                  values)
    arch = positional_network(pos=pos, values=values, decay=decay)
    got = nnpk.analytic(x, arch=arch, get=("nngp", "ntk"))
    np.testing.assert_allclose(got["nngp"], nngp[:3, :3], rtol=1e-12)
    np.testing.assert_allclose(got["ntk"], ntk[:3, :3], rtol=1e-12)
    np.testing.assert_allclose(nnpk.analytic(x, x2, arch=arch, get="ntk"), ntk[:3, 3:], rtol=1e-12)


def test_positional_analytic_2d_decay_against_a_numpy_limit():
    """2-D points: R from the decay of the L1 distances between (row, column) positions (pos_emb_p_norm=1)."""
    x = points(3, (2, 3, 2), 33)
    coords = np.array([(r, c) for r in range(2) for c in range(3)], dtype=float)
    R = np.exp(-np.abs(coords[:, None, :] - coords[None, :, :]).sum(-1) / 2)
    arch = Network([nnpk.Conv(4, (1, 1), W_std=1.1),
                    SelfAttention(1, 1, 1, W_key_std=1.2, W_query_std=0.9, W_value_std=1.1, W_out_std=0.8, b_std=0.3,
                                  pos_emb_type="concat", n_chan_pos_emb=2, val_pos_emb=True, W_pos_emb_std=0.7,
                                  pos_emb_decay_fn=_decay, pos_emb_p_norm=1), "relu", GlobalAvgPool(), Dense(1)])
    nngp, ntk = _positional_limit(x, 1.1, 1.2 * 0.9, (1.1 * 0.8) ** 2, 0.09, 4 / 6, 0.49 * 2 / 6, R, True)
    got = nnpk.analytic(x, arch=arch, get=("nngp", "ntk"))
    np.testing.assert_allclose(got["nngp"], nngp, rtol=1e-12)
    np.testing.assert_allclose(got["ntk"], ntk, rtol=1e-12)


def _identity_positional_limit(x, w1, qk, ov2, b2, w_in, w_pe, R, values):
    """The infinite-width NNGP and NTK of [Conv(kernel 1, W_std=w1), SelfAttention (square-root scaling, identity,
    positional embeddings), relu, GlobalAvgPool, Dense(1)]: the keys and queries read S~ = w_in Sigma + w_pe R
    (T~ = w_in Theta + w_pe R), the values Sv, Tv (S~, T~ if they read the embeddings, else Sigma, Theta);
    s = sum S~ Sv, u = sum (T~ Sv + S~ Tv), Sigma' = qk^2 ov2 s S~ + b2, Theta' = qk^2 ov2 (u S~ + s (T~ + 4 S~))
    + b2 (neural-tangents' rule)."""
    n, d = len(x), x.shape[-1]
    flat = x.reshape(n, -1, d)
    c = qk ** 2 * ov2
    s1, t1 = {}, {}
    for i in range(n):
        for j in range(n):
            sigma = w1 ** 2 * flat[i] @ flat[j].T / d
            theta = sigma
            sk, tk = w_in * sigma + w_pe * R, w_in * theta + w_pe * R
            sv, tv = (sk, tk) if values else (sigma, theta)
            s, u = np.sum(sk * sv), np.sum(tk * sv) + np.sum(sk * tv)
            s1[i, j] = c * s * sk + b2
            t1[i, j] = c * (u * sk + s * (tk + 4 * sk)) + b2
    q = [np.diag(s1[i, i]) for i in range(n)]
    duals = {(i, j): _relu_dual(q[i], q[j], s1[i, j]) for i in range(n) for j in range(n)}
    s2 = np.array([[np.mean(duals[i, j][0]) for j in range(n)] for i in range(n)])
    t2 = np.array([[np.mean(t1[i, j] * duals[i, j][1]) for j in range(n)] for i in range(n)])
    return s2, s2 + t2


def identity_positional_network(width=4, pos="concat", values=True, heads=1, key_width=1, value_width=1,
                                decay=_decay):
    return Network([nnpk.Conv(width, 1, W_std=1.1),
                    SelfAttention(heads, key_width, value_width, width=width, W_key_std=1.2, W_query_std=0.9,
                                  W_value_std=1.1, W_out_std=0.8, b_std=0.3, attention_mechanism="identity",
                                  linear_scaling=False, pos_emb_type=pos, val_pos_emb=values, W_pos_emb_std=0.7,
                                  pos_emb_decay_fn=decay), "relu", GlobalAvgPool(), Dense(1)])


@pytest.mark.parametrize("pos,values,decay", [("concat", True, _decay), ("sum", False, None), ("sum", True, None),
                                              ("concat", False, _decay)])
def test_identity_positional_analytic_against_a_numpy_limit(pos, values, decay):
    """Square-root scaling, identity mechanism, positional embeddings: the analytic kernels against the numpy
    rule, for one set of points and for two."""
    x = points(3, (4, 2), 35)
    x2 = points(2, (4, 2), 36)
    coords = np.arange(4.0)
    R = np.exp(-np.abs(coords[:, None] - coords[None, :]) ** 2 / 2) if decay else np.eye(4)
    w_in, w_pe = (0.5, 0.49 * 0.5) if pos == "concat" else (1.0, 0.49)
    nngp, ntk = _identity_positional_limit(np.concatenate([x, x2]), 1.1, 1.2 * 0.9, (1.1 * 0.8) ** 2, 0.09, w_in,
                                           w_pe, R, values)
    arch = identity_positional_network(pos=pos, values=values, decay=decay)
    got = nnpk.analytic(x, arch=arch, get=("nngp", "ntk"))
    np.testing.assert_allclose(got["nngp"], nngp[:3, :3], rtol=1e-12)
    np.testing.assert_allclose(got["ntk"], ntk[:3, :3], rtol=1e-12)
    np.testing.assert_allclose(nnpk.analytic(x, x2, arch=arch, get="ntk"), ntk[:3, 3:], rtol=1e-12)


@pytest.mark.parametrize("values", [True, False])
@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_identity_positional_monte_carlo_approaches_the_analytic_kernel(get, values):
    """The same layer at finite width (keys, values and embeddings growing with the width): the Monte Carlo
    error falls with width and ends within a few standard errors plus O(1/width)."""
    check_error_falls_with_width(
        points(4, (3, 2), 37) * 0.7, identity_positional_network(values=values),
        lambda width: identity_positional_network(width, values=values, heads=2, key_width=width,
                                                  value_width=width // 2), get)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_positional_monte_carlo_approaches_the_analytic_kernel(get):
    """The embeddings' channels grow with the input's (n_chan_pos_emb=None): the Monte Carlo error falls with
    width and ends within a few standard errors plus O(1/width)."""
    check_error_falls_with_width(
        points(4, (3, 2), 27) * 0.7, positional_network(),
        lambda width: positional_network(width, heads=2, key_width=width, value_width=width // 2), get)


@pytest.mark.parametrize("kernel", ["nngp", "ntk"])
def test_positional_threads_are_bitwise_equal(kernel):
    layers, shape = POS_CASES["concat_untied_decay_2d"]
    net = Network(layers)
    x = points(30, shape, 28)
    assert np.array_equal(nnpk.monte_carlo(x, arch=net, n_networks=3, get=kernel, n_threads=1),
                          nnpk.monte_carlo(x, arch=net, n_networks=3, get=kernel, n_threads=2))
    params = nnpk.sample_params(net, shape, seed=0, index=0)
    assert np.array_equal(nnpk.empirical(x, arch=net, params=params, get=kernel, n_threads=1),
                          nnpk.empirical(x, arch=net, params=params, get=kernel, n_threads=2))
    xa = points(20, (4, 2), 29)
    assert np.array_equal(nnpk.analytic(xa, arch=positional_network(), get=kernel, n_threads=1),
                          nnpk.analytic(xa, arch=positional_network(), get=kernel, n_threads=2))


def test_positional_training_lowers_the_loss_and_moves_the_embeddings():
    x = points(32, (4, 2), 30)
    y = x[:, 0, 0] - x[:, 3, 1]  # depends on which position holds what
    arch = Network([SelfAttention(2, 4, 4, width=8, b_std=0.1, pos_emb_type="concat", val_pos_emb=True), "relu",
                    GlobalAvgPool(), Dense(1)], parameterization="standard")
    kwargs = dict(loss="squared", optimizer="adam", lr=1e-2, epochs=40, batch_size=16, random_state=0)
    learner = nnpk.NetworkLearner(arch, n_threads=2, **kwargs).fit(x, y)
    loss = learner.history_["loss"]
    assert loss[-1] < 0.25 * loss[0]
    initial = nnpk.sample_params(arch, (4, 2), seed=0, index=0)
    assert learner.params_[3][0].shape == initial[3][0].shape == (4, 2)  # the table E is trained
    assert not np.allclose(learner.params_[3][0], initial[3][0])
    assert nnpk.NetworkLearner(arch, n_threads=1, **kwargs).fit(x, y).history_["loss"] == loss


def test_positional_store_round_trip(tmp_path):
    x = points(6, (4, 2), 31)
    arch = positional_network(decay=None)
    store = nnpk.compute_to_store(tmp_path / "k", x, arch=arch, kernel="analytic_nngp", tile_size=96)
    assert store.arch == arch
    np.testing.assert_allclose(store.to_numpy(), nnpk.analytic(x, arch=arch), rtol=1e-15)
    with pytest.raises(ValueError, match="pos_emb_decay_fn is a Python function"):
        nnpk.compute_to_store(tmp_path / "d", x, arch=positional_network(), kernel="analytic_nngp", tile_size=96)


def test_positional_refusals_name_the_argument():
    x = points(3, (3, 2), 32)
    with pytest.raises(ValueError, match="pos_emb_type must be one of none, sum, concat"):
        SelfAttention(1, 2, 2, pos_emb_type="rotary")
    with pytest.raises(ValueError, match="pos_emb_p_norm must be a finite number > 0"):
        SelfAttention(1, 2, 2, pos_emb_type="sum", pos_emb_p_norm=0)
    with pytest.raises(TypeError, match="pos_emb_decay_fn must be None or a function"):
        SelfAttention(1, 2, 2, pos_emb_type="sum", pos_emb_decay_fn=0.5)
    with pytest.raises(ValueError, match="n_chan_pos_emb must be positive"):
        SelfAttention(1, 2, 2, pos_emb_type="concat", n_chan_pos_emb=0)
    with pytest.raises(ValueError, match="W_pos_emb_std must be finite and >= 0"):
        SelfAttention(1, 2, 2, pos_emb_type="sum", W_pos_emb_std=-1.0)
    with pytest.raises(TypeError, match="val_pos_emb must be True or False"):
        SelfAttention(1, 2, 2, pos_emb_type="sum", val_pos_emb="yes")
    with pytest.raises(ValueError, match=r"layer 0 \(SelfAttention.*n_chan_pos_emb=3 differs from the input's 2"):
        Network([SelfAttention(1, 2, 2, pos_emb_type="sum", n_chan_pos_emb=3), Flatten(), Dense(1)]).compile((3, 2))
    not_pd = Network([SelfAttention(1, 2, 2, pos_emb_type="sum", pos_emb_decay_fn=lambda d: 1.0 if d < 2 else 0.0),
                      Flatten(), Dense(1)])
    with pytest.raises(ValueError, match=r"layer 0 \(SelfAttention.*pos_emb_decay_fn makes .* not positive definite"):
        not_pd.compile((4, 2))
    untied = Network([SelfAttention(1, 2, 2, linear_scaling=False, attention_mechanism="softmax",
                                    pos_emb_type="sum"), Flatten(), Dense(1)])
    with pytest.raises(ValueError, match=r"layer 0 \(SelfAttention.*linear_scaling=False.*no known closed form"):
        nnpk.analytic(x, arch=untied)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_positional_tangent_sums_are_bitwise_equal_across_threads_and_tiles(dtype):
    net = Network([SelfAttention(2, 3, 2, width=4, b_std=0.1, pos_emb_type="sum", val_pos_emb=True,
                                 pos_emb_decay_fn=_decay), "relu",
                   SelfAttention(2, 2, 3, linear_scaling=False, attention_mechanism="abs", pos_emb_type="concat",
                                 n_chan_pos_emb=2), Flatten(), Dense(3)])
    _tangent_sums_bitwise(net, dtype, 34)


def fused_network():
    """Residual sums right after a dense or convolution layer, after its activation and after an attention layer
    (the forward pass applies them as the product's rows are done); widths 16 and 64 run on the product's own
    tiles, 40 and 7 on the packed path with the rows' steps after it."""
    return Network([Conv(16, 1, b_std=0.2),
                    Residual([Conv(64, 1), "relu", Conv(16, 1, b_std=0.1)], scale=0.5),
                    Residual([SelfAttention(2, 4, 8, b_std=0.3)]),
                    "tanh",
                    Residual([Conv(16, (3,), padding="same"), "erf"]),
                    Residual([SelfAttention(2, 4, 4, width=16)], scale=0.7),
                    Conv(40, 1, b_std=0.1), "relu",
                    Residual([Conv(40, 1)]),
                    GlobalAvgPool(), Dense(7, b_std=0.2)])


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 2e-5)])
def test_monte_carlo_fused_steps_every_layer_equal_numpy(dtype, tol):
    """Every layer's Monte Carlo kernel against the numpy forward pass; the output's kernel alone (the other
    layers' buffers reused once read) is the same bits as with every layer's."""
    net, shape = fused_network(), (6, 3)
    x = points(9, shape, 4)
    estimates = nnpk.monte_carlo(x.astype(dtype), arch=net, n_networks=2, layers="all", estimator="sampled",
                                 dtype=dtype, seed=3)
    exact = [0.0] * len(net.layers)
    for m in range(2):
        it, h = iter(nnpk.sample_params(net, shape, seed=3, index=m)), x
        for i, layer in enumerate(net.layers):
            h = run([layer], h, it, net.parameterization)
            f = h.reshape(h.shape[0], -1, h.shape[-1]).mean(axis=1)
            exact[i] += f @ f.T / h.shape[-1] / 2
    assert len(estimates) == len(exact)
    for estimate, reference in zip(estimates, exact):
        assert rel(estimate, reference) < tol
    alone = nnpk.monte_carlo(x.astype(dtype), arch=net, n_networks=2, estimator="sampled", dtype=dtype, seed=3)
    assert np.array_equal(alone, estimates[-1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_monte_carlo_fused_steps_bitwise_across_threads(dtype):
    net = Network([Conv(32, 1), Residual([SelfAttention(2, 8, 8)]), Residual([Conv(64, 1), "relu", Conv(32, 1)]),
                   GlobalAvgPool(), Dense(5)])
    x = points(200, (16, 4), 8).astype(dtype)
    two = nnpk.monte_carlo(x, arch=net, n_networks=2, dtype=dtype, n_threads=2)
    one = nnpk.monte_carlo(x, arch=net, n_networks=2, dtype=dtype, n_threads=1)
    assert np.array_equal(two, one)
