"""Aggregate (graph aggregation over a fixed pattern, or over each point's own graph carried by graph points) in
every kernel, training, stores and the scikit-learn estimators: against numpy forward passes and forward-mode
Jacobians (reference_networks; per-point graphs point by point), numpy recursions of the infinite-width NNGP and
NTK written here (K' = A^T K A per pair of points, A_x^T K A_x' over the two points' own graphs), the identity
pattern, Monte Carlo, gradients of a training step, and determinism across thread counts."""

import numpy as np
import pytest

import nnpk
from nnpk import Aggregate, Conv, Dense, Flatten, GlobalAvgPool, GlobalSumPool, Network, Residual, SumPool
from nnpk.sklearn import NNPKRegressor
from reference_networks import (
    check_logits_and_tangent_kernel,
    check_monte_carlo_near_analytic,
    forward,
    jacobian,
    points,
)


def graph(nodes, seed=0, density=0.4, weighted=False):
    """A random directed graph's pattern with self-loops (weights in [0.5, 1.5] if weighted)."""
    rng = np.random.default_rng(seed)
    a = (rng.random((nodes, nodes)) < density).astype(float)
    if weighted:
        a *= rng.uniform(0.5, 1.5, a.shape)
    return a + np.eye(nodes)


RING = np.roll(np.eye(6), 1, axis=1) + np.roll(np.eye(6), -1, axis=1)  # each node's two neighbours

CASES = {
    "1d_sum": ([Conv(3, 1, b_std=0.1), "relu", Aggregate(graph(6, 1)), Conv(2, 2), "tanh", Flatten(), Dense(2)],
               (6, 2)),
    "1d_mean_ring": ([Aggregate(RING, reduction="mean"), Conv(3, 1), "erf", Aggregate(RING + np.eye(6)),
                      GlobalSumPool(), Dense(1, b_std=0.2)], (6, 3)),
    "2d_weighted": ([Conv(3, (2, 2), b_std=0.1), "relu", Aggregate(graph(12, 2, weighted=True), reduction="mean"),
                     SumPool((2, 2)), Flatten(), Dense(2)], (4, 3, 1)),
}



@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_logits_and_tangent_kernel_equal_numpy(case, parameterization):
    """The engine's forward pass and its empirical NTK (backward pass) against numpy's forward pass and
    forward-mode Jacobian of the same parameters."""
    layers, shape = CASES[case]
    check_logits_and_tangent_kernel(Network(layers, parameterization=parameterization), shape, 5)


def test_gradients_against_finite_differences():
    """The logit's gradient in the first layer's weights, back-propagated through Aggregate by the engine, against
    central differences of the numpy forward pass: the per-layer empirical NTK is g g^T."""
    nodes, c = 5, 2
    pattern = graph(nodes, 3, weighted=True)
    net = Network([Conv(3, 1), "tanh", Aggregate(pattern), Flatten(), Dense(1)])
    x = points(3, (nodes, c), 3)
    params = nnpk.sample_params(net, (nodes, c), seed=1, index=0)
    f = lambda p: forward(net, p, x)[-1][:, 0]  # noqa: E731
    # Jacobian in the first layer's weights by central differences, against the engine's per-layer NTK.
    W, b = params[0]
    eps = 1e-6
    grads = []
    for index in np.ndindex(*W.shape):
        up, down = W.copy(), W.copy()
        up[index] += eps
        down[index] -= eps
        grads.append((f([(up, b)] + list(params[1:])) - f([(down, b)] + list(params[1:]))) / (2 * eps))
    g = np.stack(grads, axis=1)  # (n, parameters of layer 0)
    got = nnpk.empirical(x, arch=net, params=params, get="ntk", wrt=[0])
    np.testing.assert_allclose(got, g @ g.T, rtol=1e-7, atol=1e-10)


def test_identity_pattern_changes_nothing():
    """Aggregate(I) is the identity map: the same logits and kernels as the network without it."""
    shape = (5, 2)
    body = [Conv(3, 2, b_std=0.2), "relu"]
    with_it = Network(body + [Aggregate(np.eye(5)), Flatten(), Dense(2)])
    without = Network(body + [Flatten(), Dense(2)])
    x = points(4, shape, 4)
    np.testing.assert_array_equal(nnpk.initial_outputs(x, with_it, seed=3), nnpk.initial_outputs(x, without, seed=3))
    for get in ("nngp", "ntk"):
        np.testing.assert_allclose(nnpk.analytic(x, arch=with_it, get=get), nnpk.analytic(x, arch=without, get=get),
                                   rtol=1e-14)
        np.testing.assert_allclose(nnpk.monte_carlo(x, arch=with_it, n_networks=2, get=get),
                                   nnpk.monte_carlo(x, arch=without, n_networks=2, get=get), rtol=1e-12)


def _relu_duals(q1, q2, c):
    """E[relu(u) relu(v)] and E[relu'(u) relu'(v)] for variances q1, q2 (per position) and covariances c."""
    y = np.sqrt(np.maximum(np.outer(q1, q2) - c * c, 0.0))
    theta = np.arctan2(y, c)
    return (y + (np.pi - theta) * c) / (2 * np.pi), (np.pi - theta) / (2 * np.pi)


def _numpy_kernels(x, pattern, w1, b1, w2, b2, standard, c_hidden):
    """NNGP and NTK of Conv(1 x 1, w1, b1) -> relu -> Aggregate(pattern) -> Flatten -> Dense(w2, b2): per pair
    of points, position covariances Sigma = w1^2 x x'^T / c + b1^2, the relu duals entry by entry, A^T Sigma A,
    then the mean of the diagonal through the readout."""
    n, P, c = x.shape
    A = pattern
    nngp, ntk = np.empty((n, n)), np.empty((n, n))
    pre = lambda i, j: w1**2 * x[i] @ x[j].T / c + b1**2  # noqa: E731
    for i in range(n):
        for j in range(n):
            s, dot = _relu_duals(np.diag(pre(i, i)), np.diag(pre(j, j)), pre(i, j))
            if standard:  # Theta of the first layer: fan_in-scaled input covariance + 1 (bias)
                t1 = c * (x[i] @ x[j].T / c) + 1.0
            else:
                t1 = pre(i, j)
            s_agg, t_agg = A.T @ s @ A, A.T @ (t1 * dot) @ A
            mean_s, mean_t = np.mean(np.diag(s_agg)), np.mean(np.diag(t_agg))
            nngp[i, j] = w2**2 * mean_s + b2**2
            if standard:
                ntk[i, j] = c_hidden * P * mean_s + w2**2 * mean_t + 1.0
            else:
                ntk[i, j] = nngp[i, j] + w2**2 * mean_t
    return nngp, ntk


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_analytic_against_a_numpy_recursion(parameterization):
    nodes, c, hidden = 6, 3, 4
    pattern = graph(nodes, 5, weighted=True)
    x = points(4, (nodes, c), 5)
    w1, b1, w2, b2 = 1.3, 0.4, 0.9, 0.2
    arch = Network([Conv(hidden, 1, W_std=w1, b_std=b1), "relu", Aggregate(pattern), Flatten(),
                    Dense(1, W_std=w2, b_std=b2)], parameterization=parameterization)
    kernels = nnpk.analytic(x, arch=arch, get=("nngp", "ntk"))
    nngp, ntk = kernels["nngp"], kernels["ntk"]
    want_nngp, want_ntk = _numpy_kernels(x, pattern, w1, b1, w2, b2, parameterization == "standard", hidden)
    np.testing.assert_allclose(nngp, want_nngp, rtol=1e-11)
    np.testing.assert_allclose(ntk, want_ntk, rtol=1e-11)
    # Between two sets of points, and the "mean" reduction as its column-normalised pattern.
    x2 = points(3, (nodes, c), 6)
    cross = nnpk.analytic(x, x2, arch=arch)
    both = nnpk.analytic(np.concatenate([x, x2]), arch=arch)
    np.testing.assert_allclose(cross, both[:4, 4:], rtol=1e-13)
    mean = Network([Conv(hidden, 1, W_std=w1, b_std=b1), "relu", Aggregate(pattern, reduction="mean"), Flatten(),
                    Dense(1, W_std=w2, b_std=b2)], parameterization=parameterization)
    normalised = pattern / pattern.sum(axis=0)
    want, _ = _numpy_kernels(x, normalised, w1, b1, w2, b2, parameterization == "standard", hidden)
    np.testing.assert_allclose(nnpk.analytic(x, arch=mean), want, rtol=1e-11)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_monte_carlo_converges_to_the_analytic_kernel(get):
    x = points(5, (3, 3, 1), 7) * 0.7
    pattern = graph(9, 8)
    arch = lambda ch: Network([Conv(ch, (2, 2), b_std=0.2), "relu", Aggregate(pattern, reduction="mean"),  # noqa
                               Conv(ch, (2, 2)), "erf", Aggregate(pattern), GlobalAvgPool(), Dense(1, b_std=0.1)])
    check_monte_carlo_near_analytic(x, arch, get, n_networks=24)


def test_threads_do_not_change_any_bit():
    x = points(40, (6, 2), 9)
    arch = Network([Conv(8, 2, b_std=0.1), "relu", Aggregate(graph(6, 9)), Flatten(), Dense(2)])
    params = nnpk.sample_params(arch, (6, 2), seed=1, index=0)
    for kernel in (lambda t: nnpk.monte_carlo(x, arch=arch, n_networks=3, get="ntk", n_threads=t),
                   lambda t: nnpk.empirical(x, arch=arch, params=params, get="ntk", n_threads=t),
                   lambda t: nnpk.analytic(x, arch=arch, get="ntk", n_threads=t),
                   lambda t: nnpk.analytic(x, arch=arch, n_threads=t)):
        np.testing.assert_array_equal(kernel(1), kernel(2))


def test_training_takes_aggregation():
    """A few Adam steps through Aggregate lower the loss (its backward pass carries the gradients)."""
    x = points(24, (6, 1), 10)
    y = (RING @ x[..., 0].T).T.sum(axis=1) / 4
    arch = Network([Conv(4, 1), "relu", Aggregate(RING), Flatten(), Dense(1)], parameterization="standard")
    learner = nnpk.NetworkLearner(arch, loss="squared", optimizer="adam", lr=1e-2, epochs=30, batch_size=24)
    learner.fit(x, y)
    loss = learner.history_["loss"]
    assert loss[-1] < 0.2 * loss[0]


def test_store_round_trip(tmp_path):
    x = points(6, (6, 2), 11)
    arch = Network([Conv(2, 1), "relu", Aggregate(graph(6, 11, weighted=True), reduction="mean"), Flatten(),
                    Dense(1)])
    store = nnpk.compute_to_store(tmp_path / "k", x, arch=arch, kernel="analytic_ntk", tile_size=96)
    assert store.arch == arch
    np.testing.assert_allclose(store.to_numpy(), nnpk.analytic(x, arch=arch, get="ntk"), rtol=1e-15)
    assert store.spec["arch"]["layers"][2]["type"] == "Aggregate"
    reopened = nnpk.open_store(tmp_path / "k")
    assert reopened.arch == arch


def test_sklearn_estimator_takes_aggregation():
    x = points(20, (6, 1), 12).reshape(20, -1)
    y = x.sum(axis=1)
    arch = Network([Conv(2, 1), "relu", Aggregate(RING), Flatten(), Dense(1)])
    model = NNPKRegressor(arch=arch, input_shape=(6, 1), method="analytic", ridge=1e-3).fit(x[:15], y[:15])
    k_train = nnpk.analytic(x[:15].reshape(15, 6, 1), arch=arch)
    k_test = nnpk.analytic(x[15:].reshape(5, 6, 1), x[:15].reshape(15, 6, 1), arch=arch)
    np.testing.assert_allclose(model.predict(x[15:]), nnpk.kernel_ridge(k_train, y[:15], k_test, 1e-3), rtol=1e-8)


def test_refusals_name_the_argument():
    with pytest.raises(ValueError, match=r"pattern must be a square \(nodes, nodes\) array, got shape \(2, 3\)"):
        Aggregate(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"pattern must be a square \(nodes, nodes\) array, got shape \(2, 2, 2\)"):
        Aggregate(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="pattern must be finite"):
        Aggregate([[1.0, np.nan], [0.0, 1.0]])
    with pytest.raises(TypeError, match="pattern must be a square"):
        Aggregate([["a", "b"], ["c", "d"]])
    with pytest.raises(ValueError, match="reduction must be 'sum' or 'mean', got 'max'"):
        Aggregate(np.eye(2), reduction="max")
    with pytest.raises(ValueError, match="reduction='mean' needs non-negative pattern weights"):
        Aggregate([[1.0, -1.0], [0.0, 1.0]], reduction="mean")
    with pytest.raises(ValueError, match=r"layer 1 \(Aggregate 4 nodes, 4 edges, reduction 'sum'\): its pattern "
                                         r"has 4 nodes, the points have 5 positions"):
        Network([Conv(2, 1), Aggregate(np.eye(4)), Flatten(), Dense(1)]).compile((5, 2))
    with pytest.raises(ValueError, match=r"layer 1 \(Aggregate.*\): needs \(nodes, channels\)"):
        Network([Dense(4), Aggregate(np.eye(4)), Dense(1)]).compile((3,))
    # An activation reading the aggregated input itself has no Gaussian pre-activation: refused by analytic.
    with pytest.raises(ValueError, match=r"layer 1 \(Activation relu\) reads the network's input"):
        nnpk.analytic(points(2, (4, 1)), arch=Network([Aggregate(np.eye(4)), "relu", Flatten(), Dense(1)]))


def test_a_2d_pattern_runs_over_positions_in_row_major_order():
    """On (height, width, channels) points the nodes are the positions in row-major order: the pattern that
    sends each position to the next one in that order shifts the flattened features by one position."""
    x = points(3, (2, 3, 2), 13)
    shift = np.roll(np.eye(6), 1, axis=1)  # edge u -> u + 1 (mod 6)
    arch = Network([Aggregate(shift), Flatten(), Dense(1, W_std=1.0)])
    params = nnpk.sample_params(arch, (2, 3, 2), seed=0, index=0)
    W = params[0][0]
    moved = np.roll(x.reshape(3, 6, 2), 1, axis=1).reshape(3, -1)
    np.testing.assert_allclose(nnpk.initial_outputs(x, arch, seed=0)[:, 0], moved @ W[:, 0] / np.sqrt(12),
                               rtol=1e-12)


def test_every_layers_monte_carlo_nngp_near_the_analytic_one():
    """layers="all": each layer's kernel (spatial layers' features averaged over positions) near the analytic one
    at 256 channels (seeded: deterministic)."""
    x = points(4, (3, 3, 1), 14) * 0.7
    pattern = graph(9, 14)
    arch = lambda ch: Network([Conv(ch, (2, 2), b_std=0.2), "relu", Aggregate(pattern, reduction="mean"),  # noqa
                               Conv(ch, (1, 1)), "erf", Aggregate(pattern), GlobalAvgPool(), Dense(1)])
    exact = nnpk.analytic(x, arch=arch(1), layers="all")
    estimate = nnpk.monte_carlo(x, arch=arch(256), n_networks=12, seed=1, layers="all")
    assert len(exact) == len(estimate) == 8
    for a, b in zip(exact, estimate):
        assert np.linalg.norm(a - b) / np.linalg.norm(a) < 0.06


def test_2d_points_are_their_positions_in_row_major_order_in_every_kernel():
    """A (height, width, channels) point under 1 x 1 convolutions and Aggregate is the (height x width, channels)
    point of its positions in row-major order: the same logits and kernels, a residual block included."""
    x = points(4, (2, 3, 2), 15)
    pattern = graph(6, 15, weighted=True)
    layers = lambda k: [Conv(3, k, b_std=0.1), "relu", Aggregate(pattern),  # noqa: E731
                        Residual([Conv(3, k), "erf", Aggregate(pattern, reduction="mean"), Conv(3, k)], scale=0.5),
                        "tanh", GlobalSumPool(), Dense(1)]
    two, one = Network(layers((1, 1))), Network(layers(1))
    flat = x.reshape(4, 6, 2)
    np.testing.assert_allclose(nnpk.initial_outputs(x, two, seed=1), nnpk.initial_outputs(flat, one, seed=1),
                               rtol=1e-13)
    params2, params1 = nnpk.sample_params(two, (2, 3, 2), seed=1, index=0), nnpk.sample_params(one, (6, 2), seed=1,
                                                                                                  index=0)
    np.testing.assert_allclose(nnpk.empirical(x, arch=two, params=params2),
                               nnpk.empirical(flat, arch=one, params=params1), rtol=1e-12)
    nngp_ntk = Network(layers((1, 1))[:4] + [GlobalSumPool(), Dense(1)]), Network(layers(1)[:4] + [GlobalSumPool(),
                                                                                                   Dense(1)])
    for get in ("nngp", "ntk"):
        np.testing.assert_allclose(nnpk.analytic(x, arch=nngp_ntk[0], get=get),
                                   nnpk.analytic(flat, arch=nngp_ntk[1], get=get), rtol=1e-13)


# ---- Each point's own graph: Aggregate() over graph points (nnpk.graph_points) ----

def graphs(n, nodes, seed, density=0.4, weighted=True):
    """n random directed graphs with self-loops, different for every point (weights in [0.5, 1.5] if weighted)."""
    return np.stack([graph(nodes, seed * 1000 + i, density, weighted) for i in range(n)])


def fixed(network, pattern):
    """`network` with every Aggregate() replaced by the fixed-pattern Aggregate(pattern) (residual blocks too)."""
    def swap(layers):
        out = []
        for layer in layers:
            if isinstance(layer, Aggregate) and layer.per_point:
                layer = Aggregate(pattern, reduction=layer.reduction)
            elif isinstance(layer, Residual):
                layer = Residual(swap(layer.block), scale=layer.scale)
            out.append(layer)
        return out
    return Network(swap(network.layers), parameterization=network.parameterization, init=network.init)


def per_point_reference(network, params, features, adjacency):
    """Logits (n, C) and Jacobians (n, C, parameters) of the numpy reference, point by point: point i through the
    network whose Aggregate() is Aggregate(adjacency[i])."""
    logits, jacobians = [], []
    for i in range(features.shape[0]):
        net = fixed(network, adjacency[i])
        logits.append(forward(net, params, features[i:i + 1])[-1][0])
        jacobians.append(jacobian(net, params, features[i:i + 1])[0])
    return np.stack(logits), np.stack(jacobians)


GRAPH_CASES = {
    "sum": ([Conv(3, 1, b_std=0.1), "relu", Aggregate(), Conv(2, 1), "tanh", Flatten(), Dense(2)], (5, 2)),
    "mean_residual": ([Conv(3, 1), "erf", Aggregate(reduction="mean"),
                       Residual([Conv(3, 1, b_std=0.2), "tanh", Aggregate(), Conv(3, 1)], scale=0.5),
                       GlobalSumPool(), Dense(2, b_std=0.1)], (6, 2)),
    "mixed_with_a_fixed_pattern": ([Conv(2, 1), "relu", Aggregate(RING), Conv(2, 2, padding="same"), "tanh",
                                    Aggregate(reduction="mean"), GlobalAvgPool(), Dense(1)], (6, 3)),
    "2d": ([Conv(3, (1, 1), b_std=0.1), "relu", Aggregate(), SumPool((2, 1)), Flatten(), Dense(2)], (2, 3, 2)),
}


@pytest.mark.parametrize("case", sorted(GRAPH_CASES))
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_per_point_graphs_logits_and_tangent_kernel_equal_numpy(case, parameterization):
    """Different graphs per point: the engine's logits and empirical NTK (its backward pass) against the numpy
    forward pass and forward-mode Jacobians, point by point over each point's own graph."""
    from reference import ntk_from_jacobians

    layers, shape = GRAPH_CASES[case]
    net = Network(layers, parameterization=parameterization)
    n, nodes = 5, int(np.prod(shape[:-1]))
    features, adjacency = points(n, shape, 20), graphs(n, nodes, 20)
    x = nnpk.graph_points(features, adjacency)
    assert x.shape == (n,) + shape[:-1] + (shape[-1] + nodes,)
    params = nnpk.sample_params(net, x.shape[1:], seed=2, index=1)
    logits, j = per_point_reference(net, params, features, adjacency)
    np.testing.assert_allclose(nnpk.initial_outputs(x, net, seed=2, index=1), logits, rtol=1e-12, atol=1e-13)
    ntk = nnpk.empirical(x, arch=net, params=params, get="ntk")
    np.testing.assert_allclose(ntk, ntk_from_jacobians(j, j), rtol=1e-11, atol=1e-12)
    # float32 runs the same passes
    np.testing.assert_allclose(nnpk.empirical(x, arch=net, params=params, get="ntk", dtype="float32"), ntk,
                               rtol=2e-4, atol=2e-4 * np.abs(ntk).max())


def test_per_point_graphs_are_the_fixed_pattern_point_by_point():
    """Points that all carry the same graph: the per-point network's kernels equal the fixed-pattern network's on
    the bare features (analytic NNGP and NTK, layers="all", Monte Carlo, the conditional estimator)."""
    shape, nodes = (6, 2), 6
    layers = [Conv(4, 1, b_std=0.1), "relu", Aggregate(reduction="mean"), Conv(4, 2), "erf", Aggregate(),
              GlobalAvgPool(), Dense(1)]
    net = Network(layers)
    features, pattern = points(4, shape, 21), graph(nodes, 21, weighted=True)
    x = nnpk.graph_points(features, np.broadcast_to(pattern, (4, nodes, nodes)))
    same = fixed(net, pattern)
    for get in ("nngp", "ntk"):
        np.testing.assert_allclose(nnpk.analytic(x, arch=net, get=get), nnpk.analytic(features, arch=same, get=get),
                                   rtol=1e-13)
        np.testing.assert_allclose(nnpk.monte_carlo(x, arch=net, n_networks=2, get=get),
                                   nnpk.monte_carlo(features, arch=same, n_networks=2, get=get), rtol=1e-12)
    for a, b in zip(nnpk.analytic(x, arch=net, get="ntk", layers="all"),
                    nnpk.analytic(features, arch=same, get="ntk", layers="all")):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    # The conditional estimator (a network ending Dense -> activation -> Dense) reads graph points too.
    deep = Network(layers[:-1] + [Dense(8), "relu", Dense(1)])
    np.testing.assert_allclose(nnpk.monte_carlo(x, arch=deep, n_networks=3, estimator="conditional"),
                               nnpk.monte_carlo(features, arch=fixed(deep, pattern), n_networks=3,
                                                estimator="conditional"), rtol=1e-12)


def _relu_layer(S, T, qi, qj):
    """relu's dual maps of position covariances S (variances qi, qj per position); T times Sigma_dot."""
    s, dot = _relu_duals(qi, qj, S)
    return s, T * dot


def _numpy_graph_kernels(features, adjacency, blocks, readout, pool, standard):
    """NNGP and NTK per pair of points of [Conv(width, 1, W_std=w, b_std=b) -> relu -> Aggregate(reduction=r)] for
    each (width, w, b, r) of `blocks`, then GlobalSumPool (pool "sum") or Flatten (pool "flatten") and
    Dense(1, W_std, b_std = readout), written from the definitions: position covariances S (P x P) and T per
    pair, a 1 x 1 convolution S <- w^2 S + b^2 (NTK "ntk": T <- S_new + w^2 T; "standard": T <- fan_in S_old +
    w^2 T + 1), relu's duals entry by entry (variances from the pairs (i, i) and (j, j)), aggregation over both
    points' own graphs S <- A_i^T S A_j (A column-normalised for "mean"), then the readout of the sum over all
    pairs of positions (sum pool) or of the mean of the same-position ones (flatten)."""
    n, P, c = features.shape

    def weights(i, reduction):
        a = adjacency[i]
        return a / a.sum(axis=0) if reduction == "mean" else a

    nngp, ntk = np.empty((n, n)), np.empty((n, n))
    for i in range(n):
        for j in range(n):
            pairs = {"ij": (i, j), "ii": (i, i), "jj": (j, j)}
            S = {key: features[a] @ features[b].T / c for key, (a, b) in pairs.items()}
            T = {key: np.zeros((P, P)) for key in pairs}
            fan = c
            for width, w, b, reduction in blocks:
                for key in pairs:
                    new = w**2 * S[key] + b**2
                    T[key] = fan * S[key] + w**2 * T[key] + 1.0 if standard else new + w**2 * T[key]
                    S[key] = new
                qi, qj = np.diag(S["ii"]).copy(), np.diag(S["jj"]).copy()
                variances = {"ij": (qi, qj), "ii": (qi, qi), "jj": (qj, qj)}
                for key, (a, b) in pairs.items():
                    s, dot = _relu_duals(*variances[key], S[key])
                    S[key], T[key] = s, T[key] * dot
                    Aa, Ab = weights(a, reduction), weights(b, reduction)
                    S[key], T[key] = Aa.T @ S[key] @ Ab, Aa.T @ T[key] @ Ab
                fan = width
            read = (lambda m: m.sum()) if pool == "sum" else (lambda m: np.mean(np.diag(m)))
            s_out, t_out = read(S["ij"]), read(T["ij"])
            fan_in = fan * (P if pool == "flatten" else 1)
            w, b = readout
            nngp[i, j] = w**2 * s_out + b**2
            ntk[i, j] = fan_in * s_out + w**2 * t_out + 1.0 if standard else nngp[i, j] + w**2 * t_out
    return nngp, ntk


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("pool", ["flatten", "sum"])
def test_per_point_graphs_analytic_against_a_numpy_recursion(parameterization, pool):
    """Points of different graphs (and sizes of neighbourhoods): the analytic NNGP and NTK against the numpy
    recursion over each pair's two graphs, between the points themselves and between two sets."""
    nodes, c = 5, 3
    blocks = [(4, 1.3, 0.4, "sum"), (3, 0.9, 0.2, "mean")]
    readout = (1.1, 0.3)
    layers = []
    for width, w, b, reduction in blocks:
        layers += [Conv(width, 1, W_std=w, b_std=b), "relu", Aggregate(reduction=reduction)]
    layers += [GlobalSumPool() if pool == "sum" else Flatten(), Dense(1, W_std=readout[0], b_std=readout[1])]
    arch = Network(layers, parameterization=parameterization)
    features, adjacency = points(6, (nodes, c), 22), graphs(6, nodes, 22)
    x = nnpk.graph_points(features, adjacency)
    kernels = nnpk.analytic(x, arch=arch, get=("nngp", "ntk"))
    want_nngp, want_ntk = _numpy_graph_kernels(features, adjacency, blocks, readout, pool,
                                               parameterization == "standard")
    np.testing.assert_allclose(kernels["nngp"], want_nngp, rtol=1e-11)
    np.testing.assert_allclose(kernels["ntk"], want_ntk, rtol=1e-11)
    cross = nnpk.analytic(x[:4], x[4:], arch=arch, get="ntk")
    np.testing.assert_allclose(cross, want_ntk[:4, 4:], rtol=1e-11)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_per_point_graphs_monte_carlo_converges_to_the_analytic_kernel(get):
    nodes = 6
    features, adjacency = points(5, (nodes, 2), 23) * 0.7, graphs(5, nodes, 23)
    x = nnpk.graph_points(features, adjacency)
    arch = lambda ch: Network([Conv(ch, 1, b_std=0.2), "relu", Aggregate(reduction="mean"),  # noqa: E731
                               Conv(ch, 3, padding="same"), "erf", Aggregate(), GlobalAvgPool(),
                               Dense(1, b_std=0.1)])
    check_monte_carlo_near_analytic(x, arch, get, n_networks=24)


def test_per_point_graphs_threads_do_not_change_any_bit():
    nodes = 6
    x = nnpk.graph_points(points(40, (nodes, 2), 24), graphs(40, nodes, 24))
    arch = Network([Conv(8, 2, b_std=0.1), "relu", Aggregate(), Conv(4, 1), "erf", Aggregate(reduction="mean"),
                    Flatten(), Dense(2)])
    params = nnpk.sample_params(arch, x.shape[1:], seed=1, index=0)
    for kernel in (lambda t: nnpk.monte_carlo(x, arch=arch, n_networks=3, get="ntk", n_threads=t),
                   lambda t: nnpk.empirical(x, arch=arch, params=params, get="ntk", n_threads=t),
                   lambda t: nnpk.analytic(x, arch=arch, get="ntk", n_threads=t),
                   lambda t: nnpk.analytic(x[:30], x[30:], arch=arch, n_threads=t)):
        np.testing.assert_array_equal(kernel(1), kernel(2))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_per_point_graphs_training_gradient_equals_numpy(reduction):
    """One full-batch SGD step of NetworkLearner moves the parameters by -lr times the squared loss's gradient,
    (1/n) sum_i (f_i - y_i) J_i, J_i the numpy reference's Jacobian over point i's own graph."""
    nodes, n, lr = 5, 6, 0.05
    arch = Network([Conv(3, 1, b_std=0.1), "tanh", Aggregate(reduction=reduction), Flatten(), Dense(1, b_std=0.1)])
    features, adjacency = points(n, (nodes, 2), 25), graphs(n, nodes, 25)
    x = nnpk.graph_points(features, adjacency)
    y = np.random.default_rng(25).standard_normal(n)
    params = nnpk.sample_params(arch, x.shape[1:], seed=3, index=0)
    logits, j = per_point_reference(arch, params, features, adjacency)
    gradient = ((logits[:, 0] - y)[:, None] * j[:, 0, :]).mean(axis=0)
    learner = nnpk.NetworkLearner(arch, seed=3, optimizer="sgd", lr=lr, epochs=1, batch_size=None, loss="squared",
                                  n_threads=1).fit(x, y)
    before = np.concatenate([np.concatenate([W.ravel(), b.ravel()]) for W, b in params])
    after = np.concatenate([np.concatenate([W.ravel(), b.ravel()]) for W, b in learner.params_])
    np.testing.assert_allclose((before - after) / lr, gradient, rtol=1e-9, atol=1e-12)
    # The linearised network (its tangent pass) has the same gradient at the start.
    linear = nnpk.NetworkLearner(arch, seed=3, optimizer="sgd", lr=lr, epochs=1, batch_size=None, loss="squared",
                                 n_threads=1, linearize=True).fit(x, y)
    moved = np.concatenate([np.concatenate([W.ravel(), b.ravel()]) for W, b in linear.params_])
    np.testing.assert_allclose((before - moved) / lr, gradient, rtol=1e-9, atol=1e-12)
    # and training continues to lower the loss
    longer = nnpk.NetworkLearner(arch, seed=3, optimizer="adam", lr=3e-2, epochs=40, batch_size=None,
                                 loss="squared").fit(x, y)
    assert longer.history_["loss"][-1] < 0.5 * longer.history_["loss"][0]


def test_per_point_graphs_store_round_trip(tmp_path):
    """Stores of graph points, in tiles of 96 rows (two per side here), equal the kernels computed at once."""
    nodes = 5
    x = nnpk.graph_points(points(100, (nodes, 2), 26), graphs(100, nodes, 26))
    arch = Network([Conv(2, 1), "relu", Aggregate(reduction="mean"), Flatten(), Dense(1)])
    store = nnpk.compute_to_store(tmp_path / "k", x, arch=arch, kernel="analytic_ntk", tile_size=96)
    assert store.arch == arch
    np.testing.assert_allclose(store.to_numpy(), nnpk.analytic(x, arch=arch, get="ntk"), rtol=1e-15)
    assert store.spec["arch"]["layers"][2] == {"type": "Aggregate", "pattern": None, "reduction": "mean"}
    assert nnpk.open_store(tmp_path / "k").arch == arch
    mc = nnpk.compute_to_store(tmp_path / "m", x, arch=arch, kernel="ntk", n_networks=2, tile_size=96)
    np.testing.assert_allclose(mc.to_numpy(), nnpk.monte_carlo(x, arch=arch, n_networks=2, get="ntk"), rtol=1e-12)


def test_per_point_graphs_sklearn_estimator():
    nodes = 5
    x = nnpk.graph_points(points(20, (nodes, 1), 27), graphs(20, nodes, 27))
    y = x[..., 0].sum(axis=1)
    arch = Network([Conv(2, 1), "relu", Aggregate(), Flatten(), Dense(1)])
    flat = x.reshape(20, -1)
    model = NNPKRegressor(arch=arch, input_shape=x.shape[1:], method="analytic", ridge=1e-3).fit(flat[:15], y[:15])
    k_train = nnpk.analytic(x[:15], arch=arch)
    k_test = nnpk.analytic(x[15:], x[:15], arch=arch)
    np.testing.assert_allclose(model.predict(flat[15:]), nnpk.kernel_ridge(k_train, y[:15], k_test, 1e-3), rtol=1e-8)


def test_per_point_graphs_refusals_name_the_argument():
    nodes = 4
    features, adjacency = points(3, (nodes, 2), 28), graphs(3, nodes, 28)
    arch = Network([Conv(2, 1), "relu", Aggregate(reduction="mean"), Flatten(), Dense(1)])
    assert Aggregate().per_point and Aggregate().nodes is None and not Aggregate(np.eye(2)).per_point
    assert Aggregate(reduction="mean").describe() == "Aggregate over each point's graph, reduction 'mean'"
    with pytest.raises(ValueError, match="its weights come with the points"):
        _ = Aggregate().weights
    # graph_points
    with pytest.raises(ValueError, match=r"adjacency must have shape \(n, nodes, nodes\) = \(3, 4, 4\) for features "
                                         r"of shape \(3, 4, 2\), got \(3, 4, 5\)"):
        nnpk.graph_points(features, np.ones((3, 4, 5)))
    with pytest.raises(ValueError, match=r"adjacency must have shape .* got \(2, 4, 4\)"):
        nnpk.graph_points(features, adjacency[:2])
    with pytest.raises(ValueError, match=r"features must be an \(n, nodes, channels\)"):
        nnpk.graph_points(features[..., 0], adjacency)
    bad = adjacency.copy()
    bad[1, 2, 3] = np.inf
    with pytest.raises(ValueError, match="adjacency contains NaN or infinite values"):
        nnpk.graph_points(features, bad)
    with pytest.raises(TypeError, match="adjacency must hold real numbers"):
        nnpk.graph_points(features, adjacency.astype(str))
    # points without room for the adjacency, in every entry point
    with pytest.raises(ValueError, match=r"x1 has points of shape \(4, 2\); the network aggregates over each "
                                         r"point's own graph"):
        nnpk.analytic(features, arch=arch)
    with pytest.raises(ValueError, match=r"x1 has points of shape \(4, 2\)"):
        nnpk.monte_carlo(features, arch=arch, n_networks=1)
    with pytest.raises(ValueError, match=r"X has points of shape \(4, 2\)"):
        nnpk.NetworkLearner(arch, epochs=1).fit(features, np.zeros(3))
    with pytest.raises(ValueError, match="graph points, .* no room for a 4 x 4 adjacency"):
        arch.compile((4, 2))
    # negative weights under "mean", named with the argument, the point and the edge
    negative = adjacency.copy()
    negative[2, 1, 0] = -0.5
    x = nnpk.graph_points(features, negative)
    for call, name in ((lambda: nnpk.analytic(x, arch=arch), "x1"),
                       (lambda: nnpk.analytic(x[:1], x, arch=arch), "x2"),
                       (lambda: nnpk.empirical(x, arch=arch, params=nnpk.sample_params(arch, x.shape[1:], 0, 0)),
                        "x1"),
                       (lambda: nnpk.NetworkLearner(arch, epochs=1).fit(x, np.zeros(3)), "X")):
        with pytest.raises(ValueError, match=rf"{name}: point 2's adjacency has the negative weight -0.5 on the edge "
                                             r"1 -> 0; Aggregate\(reduction='mean'\) needs non-negative"):
            call()
    summed = Network([Conv(2, 1), "relu", Aggregate(), Flatten(), Dense(1)])
    assert np.all(np.isfinite(nnpk.analytic(x, arch=summed)))  # "sum" takes any sign
    # a per-point aggregation after the positions changed
    with pytest.raises(ValueError, match=r"layer 2 \(Aggregate over each point's graph, reduction 'sum'\): "
                                         r"aggregates over each point's graph of 4 nodes, but its input has 2 "
                                         r"positions"):
        Network([Conv(2, 1), SumPool(2), Aggregate(), Flatten(), Dense(1)]).compile((4, 6))
