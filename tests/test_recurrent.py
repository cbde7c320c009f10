"""Recurrent layers: the forward pass, backpropagation through time, the tangent kernels, training, closed-loop
generation and torch's nn.RNN layout, each against a plain numpy implementation written here."""

import math

import numpy as np
import pytest

import nnpk
from nnpk import _core
from nnpk.architectures._params import check_network_params, network_outputs

PHI = {
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float)),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
}


class NumpyRNN:
    """Recurrent(m) -> Dense(C) (per step with return_sequences) in numpy, with its backward pass through time."""

    def __init__(self, params, *, W_std, U_std, b_std, leak, activation, parameterization, sequences,
                 readout_std=1.0, readout_b_std=None):
        (self.U, self.b), (self.W, _), (self.V, self.c) = params
        d, m = self.U.shape
        ntk = parameterization == "ntk"
        self.su = U_std / math.sqrt(d) if ntk else 1.0
        self.sw = W_std / math.sqrt(m) if ntk else 1.0
        self.sb = (b_std if ntk else 1.0) if b_std is not None else 0.0
        self.sv = readout_std / math.sqrt(m) if ntk else 1.0
        self.sc = (readout_b_std if ntk else 1.0) if self.c is not None else 0.0
        self.leak, self.sequences = leak, sequences
        self.phi, self.dphi = PHI[activation]

    def forward(self, x, h0=None):
        n, T, _ = x.shape
        h = np.zeros((n, self.W.shape[0])) if h0 is None else h0
        self.x, self.hs, self.zs = x, [h], []
        for t in range(T):
            z = self.sw * h @ self.W + self.su * x[:, t] @ self.U
            if self.b is not None:
                z = z + self.sb * self.b
            h = (1 - self.leak) * h + self.leak * self.phi(z)
            self.hs.append(h)
            self.zs.append(z)
        readout = lambda h: self.sv * h @ self.V + (self.sc * self.c if self.c is not None else 0.0)
        if self.sequences:
            return np.stack([readout(h) for h in self.hs[1:]], 1).reshape(n, -1)
        return readout(h)

    def backward(self, g):
        """Gradients [(dU, db), (dW, None), (dV, dc)] of sum(g * outputs) for the last forward pass."""
        n, T, _ = self.x.shape
        C = self.V.shape[1]
        if self.sequences:
            g = g.reshape(n, T, C)
            dV = self.sv * sum(self.hs[t + 1].T @ g[:, t] for t in range(T))
            dc = g.sum((0, 1))
            into_h = [self.sv * g[:, t] @ self.V.T for t in range(T)]
        else:
            dV, dc = self.sv * self.hs[-1].T @ g, g.sum(0)
            into_h = [0.0] * (T - 1) + [self.sv * g @ self.V.T]
        dU, dW, db = np.zeros_like(self.U), np.zeros_like(self.W), np.zeros(self.W.shape[0])
        gh = np.zeros_like(self.hs[0])
        for t in reversed(range(T)):
            gh = gh + into_h[t]
            gz = self.leak * self.dphi(self.zs[t]) * gh
            dU += self.su * self.x[:, t].T @ gz
            dW += self.sw * self.hs[t].T @ gz
            db += self.sb * gz.sum(0)
            gh = (1 - self.leak) * gh + self.sw * gz @ self.W.T
        db_out = db if self.b is not None else None
        return [(dU, db_out), (dW, None), (dV, self.sc * dc if self.c is not None else None)]


CASES = [  # (activation, leak, return_sequences, parameterization, bias)
    ("tanh", 1.0, False, "ntk", True),
    ("relu", 1.0, False, "standard", True),
    ("tanh", 0.6, True, "ntk", True),
    ("relu", 0.3, True, "standard", False),
    ("relu", 1.0, True, "ntk", False),
    ("tanh", 0.8, False, "standard", True),
]


def _setup(activation, leak, sequences, parameterization, bias, *, n=7, T=5, d=3, m=11, C=2, seed=0):
    b_std = 0.4 if bias else None
    net = nnpk.Network([nnpk.Recurrent(m, activation, W_std=1.3, U_std=0.9, b_std=b_std, leak=leak,
                                       return_sequences=sequences),
                        nnpk.Dense(C, W_std=1.1, b_std=0.2 if bias else None)], parameterization=parameterization)
    x = np.random.default_rng(seed).standard_normal((n, T, d))
    params = nnpk.sample_params(net, (T, d), 3, 1)
    ref = NumpyRNN(params, W_std=1.3, U_std=0.9, b_std=b_std, leak=leak, activation=activation,
                   parameterization=parameterization, sequences=sequences, readout_std=1.1,
                   readout_b_std=0.2 if bias else None)
    return net, x, params, ref


def _flat(grads):
    return np.concatenate([a.ravel() for pair in grads for a in pair if a is not None])


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_numpy(case):
    net, x, params, ref = _setup(*case)
    np.testing.assert_allclose(network_outputs(x, net, 3, 1), ref.forward(x), rtol=1e-12, atol=1e-12)


def test_sample_params_layout_and_scales():
    net = nnpk.Network([nnpk.Recurrent(400, "tanh", W_std=1.5, U_std=0.5, b_std=0.3), nnpk.Dense(2)],
                       parameterization="standard")
    (U, b), (W, none), _ = nnpk.sample_params(net, (4, 8), 0, 0)
    assert U.shape == (8, 400) and b.shape == (400,) and W.shape == (400, 400) and none is None
    assert abs(W.std() - 1.5 / 20) < 0.01 * 1.5 / 20 * 5 and abs(U.std() - 0.5 / math.sqrt(8)) < 0.01
    assert abs(b.std() - 0.3) < 0.05
    uniform = nnpk.Network([nnpk.Recurrent(400, "tanh", W_std=1.5, init="uniform"), nnpk.Dense(2)],
                           parameterization="standard")
    W = nnpk.sample_params(uniform, (4, 8), 0, 0)[1][0]
    R = math.sqrt(3) * 1.5 / 20  # uniform on [-R, R] with the Gaussian's variance
    assert np.abs(W).max() <= R and np.abs(W).max() > 0.99 * R
    # the readout keeps the network's init and its draws do not move
    assert np.array_equal(nnpk.sample_params(uniform, (4, 8), 0, 0)[2][0],
                          nnpk.sample_params(net, (4, 8), 0, 0)[2][0])


@pytest.mark.parametrize("case", CASES)
def test_backpropagation_through_time_matches_numpy(case):
    net, x, params, ref = _setup(*case)
    compiled = net.compile(x.shape[1:])
    f = ref.forward(x)
    y = np.random.default_rng(5).standard_normal(f.shape)
    bias = case[-1]
    trainer = _core.SequentialTrainer(compiled.spec, [True] * 3, [bias, False, bias], 2, "float64")
    loss, gw, gb = trainer.gradients(x.reshape(len(x), -1), check_network_params(params, compiled, np.float64),
                                     "squared", f.shape[1], y)
    assert loss == pytest.approx(0.5 * ((f - y) ** 2).sum() / len(x), rel=1e-12)
    expected = ref.backward((f - y) / len(x))
    for k in range(3):
        np.testing.assert_allclose(gw[k], expected[k][0].reshape(gw[k].shape), rtol=1e-10, atol=1e-13)
        if expected[k][1] is not None:
            np.testing.assert_allclose(gb[k], expected[k][1], rtol=1e-10, atol=1e-13)


def test_gradients_match_finite_differences():
    net, x, params, _ = _setup("tanh", 0.7, True, "ntk", True)
    compiled = net.compile(x.shape[1:])
    y = np.random.default_rng(6).standard_normal((len(x), compiled.out))

    def loss(p):
        f = network_outputs(x, net, 0, 0, params=p)
        return 0.5 * ((f - y) ** 2).sum() / len(x)

    trainer = _core.SequentialTrainer(compiled.spec, [True] * 3, [True, False, True], 1, "float64")
    _, gw, gb = trainer.gradients(x.reshape(len(x), -1), check_network_params(params, compiled, np.float64),
                                  "squared", compiled.out, y)
    rng = np.random.default_rng(7)
    for k, part in [(0, 0), (0, 1), (1, 0), (2, 0)]:
        for _ in range(3):
            index = tuple(rng.integers(0, s) for s in params[k][part].shape)
            plus = [(W.copy(), None if b is None else b.copy()) for W, b in params]
            minus = [(W.copy(), None if b is None else b.copy()) for W, b in params]
            eps = 1e-6
            plus[k][part][index] += eps
            minus[k][part][index] -= eps
            numeric = (loss(plus) - loss(minus)) / (2 * eps)
            engine = (gw if part == 0 else gb)[k].reshape(params[k][part].shape)[index]
            assert engine == pytest.approx(numeric, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("train", ["biases", "readout", "all", "weights", [1], [0, 2]])
def test_every_train_mode_steps_by_the_numpy_gradient(train):
    """One full-batch SGD step of the learner moves each trained array by -lr times numpy's gradient and leaves
    the others as drawn."""
    net, x, params, ref = _setup("tanh", 1.0, True, "standard", True)
    y = np.random.default_rng(8).standard_normal((len(x), 5, 2))
    learner = nnpk.NetworkLearner(net, seed=3, index=1, train=train, optimizer="sgd", lr=0.05, epochs=1,
                                  batch_size=None, dtype="float64", n_threads=1).fit(x, y)
    f = ref.forward(x)
    grads = ref.backward((f - y.reshape(len(x), -1)) / len(x))
    trained = {"biases": {(0, 1), (2, 1)}, "readout": {(2, 0), (2, 1)}, "weights": {(0, 0), (1, 0), (2, 0)},
               "all": {(0, 0), (0, 1), (1, 0), (2, 0), (2, 1)}}
    chosen = trained[train] if isinstance(train, str) else {(k, p) for k in train for p in (0, 1)
                                                           if params[k][p] is not None}
    for k in range(3):
        for part in (0, 1):
            before, after = params[k][part], learner.params_[k][part]
            if before is None:
                assert after is None
                continue
            step = -0.05 * grads[k][part] if (k, part) in chosen else 0.0
            np.testing.assert_allclose(after, before + step, rtol=1e-10, atol=1e-13)


def test_wide_step_over_several_chunks_and_column_blocks_matches_numpy_and_any_thread_count():
    """A minibatch of several chunks (400 sequences) through a layer wider than one block of a step's products
    and of its weight gradients (300 units: blocks of whole panels and a partial one; the readout's gradient by
    blocks of its 300 input units): one SGD step moves every array by numpy's gradient, and the float32 steps
    are bitwise the same on 1, 2 and 3 threads."""
    net, x, params, ref = _setup("tanh", 0.7, True, "standard", True, n=400, T=4, m=300)
    y = np.random.default_rng(10).standard_normal((len(x), 4, 2))
    learner = nnpk.NetworkLearner(net, seed=3, index=1, train="all", optimizer="sgd", lr=0.05, epochs=1,
                                  batch_size=None, dtype="float64", n_threads=2).fit(x, y)
    grads = ref.backward((ref.forward(x) - y.reshape(len(x), -1)) / len(x))
    for k in range(3):
        for part in (0, 1):
            if params[k][part] is not None:
                np.testing.assert_allclose(learner.params_[k][part], params[k][part] - 0.05 * grads[k][part],
                                           rtol=1e-9, atol=1e-12)
    runs = [nnpk.NetworkLearner(net, train="all", lr=1e-2, epochs=2, batch_size=400, random_state=0,
                                dtype="float32", n_threads=t).fit(x, y).params_ for t in (1, 2, 3)]
    for other in runs[1:]:
        for (W1, b1), (W2, b2) in zip(runs[0], other):
            assert np.array_equal(W1, W2) and (b1 is None or np.array_equal(b1, b2))


def test_clip_norm_scales_the_step_to_the_norm():
    net, x, params, ref = _setup("relu", 1.0, False, "standard", True)
    y = np.random.default_rng(9).standard_normal((len(x), 2))
    learner = nnpk.NetworkLearner(net, seed=3, index=1, train="all", optimizer="sgd", lr=0.1, epochs=1,
                                  batch_size=None, dtype="float64", clip_norm=1e-3).fit(x, y)
    grads = ref.backward((ref.forward(x) - y) / len(x))
    norm = np.linalg.norm(_flat(grads))
    assert norm > 1e-3
    moved = _flat(learner.params_) - _flat(params)
    np.testing.assert_allclose(moved, -0.1 * _flat(grads) * 1e-3 / norm, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("threads", [1, 2])
def test_training_is_bitwise_the_same_for_any_thread_count(threads):
    net, x, _, _ = _setup("tanh", 0.5, True, "ntk", True, n=200, T=6)
    y = np.sin(x[..., :2])
    runs = [nnpk.NetworkLearner(net, train="all", lr=1e-2, epochs=2, batch_size=128, random_state=0,
                                dtype="float32", n_threads=t, clip_norm=5.0).fit(x, y) for t in (1, threads)]
    for (W1, b1), (W2, b2) in zip(runs[0].params_, runs[1].params_):
        assert np.array_equal(W1, W2) and (b1 is None or np.array_equal(b1, b2))


def test_generate_matches_a_numpy_closed_loop():
    net, x, params, ref = _setup("tanh", 0.7, True, "standard", True, C=3, d=3)
    y = np.roll(x, -1, axis=1)
    learner = nnpk.NetworkLearner(net, seed=3, index=1, train="biases", lr=1e-2, epochs=2, batch_size=None).fit(x, y)
    trained = NumpyRNN(learner.params_, W_std=1.3, U_std=0.9, b_std=0.4, leak=0.7, activation="tanh",
                       parameterization="standard", sequences=True)
    warmup = x[:4, :3]
    generated = learner.generate(warmup, 6)
    seq, expected = warmup, []
    for _ in range(6):
        nxt = trained.forward(seq).reshape(4, seq.shape[1], 3)[:, -1]
        expected.append(nxt)
        seq = np.concatenate([seq, nxt[:, None]], axis=1)
    np.testing.assert_allclose(generated, np.stack(expected, 1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(learner.generate(warmup[0], 6), generated[0], rtol=0, atol=0)


def _numpy_ntk(ref, x, C_total):
    ref.forward(x)
    J = []
    for i in range(len(x)):
        rows = []
        for c in range(C_total):
            g = np.zeros((len(x), C_total))
            g[i, c] = 1.0
            rows.append(_flat(ref.backward(g)))
        J.append(rows)
    J = np.array(J)
    return np.einsum("icp,jcp->ij", J, J) / C_total


@pytest.mark.parametrize("case", CASES[:4])
def test_empirical_ntk_matches_numpy_jacobian(case):
    net, x, params, ref = _setup(*case)
    f = ref.forward(x)
    K = nnpk.empirical(x, arch=net, params=params, get="ntk")
    np.testing.assert_allclose(K, _numpy_ntk(ref, x, f.shape[1]), rtol=1e-10, atol=1e-12)
    nngp = nnpk.empirical(x, arch=net, params=params, get="nngp")
    np.testing.assert_allclose(nngp, f @ f.T / f.shape[1], rtol=1e-10, atol=1e-12)


def test_monte_carlo_kernels_are_bitwise_the_same_across_threads_and_tiles():
    net = nnpk.Network([nnpk.Recurrent(48, "tanh", W_std=1.2, b_std=0.1, leak=0.8), nnpk.Dense(2)])
    x = np.random.default_rng(2).standard_normal((230, 6, 3))
    for get in ("nngp", "ntk"):
        a = nnpk.monte_carlo(x, arch=net, n_networks=3, get=get, n_threads=1, dtype="float32")
        b = nnpk.monte_carlo(x, arch=net, n_networks=3, get=get, n_threads=2, dtype="float32")
        assert np.array_equal(a, b)
    # the NNGP's estimate is the mean of the networks' f . f' / C
    K = nnpk.monte_carlo(x[:20], arch=net, n_networks=3, get="nngp", estimator="sampled", dtype="float64")
    fs = [network_outputs(x[:20], net, 0, m) for m in range(3)]
    np.testing.assert_allclose(K, sum(f @ f.T for f in fs) / (3 * 2), rtol=1e-10, atol=1e-12)


def test_state_dict_in_torch_layout_matches_a_numpy_rnn():
    """nn.RNN(d, m, num_layers=2, batch_first=True) then nn.Linear(m, C), written as torch computes it."""
    rng = np.random.default_rng(3)
    d, m, C, T = 3, 6, 2, 5
    sd = {}
    for layer, fan_in in enumerate((d, m)):
        sd[f"rnn.weight_ih_l{layer}"] = rng.standard_normal((m, fan_in)) * 0.5
        sd[f"rnn.weight_hh_l{layer}"] = rng.standard_normal((m, m)) * 0.3
        sd[f"rnn.bias_ih_l{layer}"] = rng.standard_normal(m) * 0.1
        sd[f"rnn.bias_hh_l{layer}"] = rng.standard_normal(m) * 0.1
    sd["head.weight"], sd["head.bias"] = rng.standard_normal((C, m)), rng.standard_normal(C)
    x = rng.standard_normal((4, T, d))
    seq = x
    for layer in range(2):
        h, out = np.zeros((4, m)), []
        for t in range(T):
            h = np.tanh(seq[:, t] @ sd[f"rnn.weight_ih_l{layer}"].T + sd[f"rnn.bias_ih_l{layer}"]
                        + h @ sd[f"rnn.weight_hh_l{layer}"].T + sd[f"rnn.bias_hh_l{layer}"])
            out.append(h)
        seq = np.stack(out, 1)
    expected = seq[:, -1] @ sd["head.weight"].T + sd["head.bias"]
    for parameterization in ("standard", "ntk"):
        net = nnpk.Network([nnpk.Recurrent(m, "tanh", W_std=0.9, U_std=1.2, b_std=0.5, return_sequences=True),
                            nnpk.Recurrent(m, "tanh", W_std=0.9, U_std=1.2, b_std=0.5),
                            nnpk.Dense(C, W_std=1.0, b_std=1.0)], parameterization=parameterization)
        params, _ = nnpk.params_from_state_dict(net, sd, input_shape=(T, d))
        np.testing.assert_allclose(network_outputs(x, net, 0, 0, params=params), expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------- refusals


def test_refusals_name_the_argument():
    net = nnpk.Network([nnpk.Recurrent(8, "tanh", return_sequences=True), nnpk.Dense(2)])
    with pytest.raises(ValueError, match=r"layer 0 \(Recurrent 8 tanh, return_sequences\): needs sequences.*"
                                         r"\(n, steps, features\)"):
        nnpk.monte_carlo(np.zeros((5, 4)), arch=net, n_networks=1)
    for leak in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"leak must be in \(0, 1\]"):
            nnpk.Recurrent(8, leak=leak)
    with pytest.raises(ValueError, match="init must be None or one of"):
        nnpk.Recurrent(8, init="he")
    with pytest.raises(TypeError, match="activation must be"):
        nnpk.Recurrent(8, activation=3)
    x = np.random.default_rng(0).standard_normal((6, 4, 3))
    learner = nnpk.NetworkLearner(net, epochs=1, batch_size=None)
    with pytest.raises(ValueError, match=r"y has shape \(6, 4\); the network outputs 2 values at each of 4 steps: "
                                         r"y must be \(6, 4, 2\)"):
        learner.fit(x, np.zeros((6, 4)))
    with pytest.raises(ValueError, match="squared loss of every step"):
        nnpk.NetworkLearner(net, loss="cross_entropy").fit(x, np.zeros((6, 4, 2)))
    learner.fit(x, np.zeros((6, 4, 2)))
    with pytest.raises(ValueError, match="generate feeds each step's output back as the next input: the task has 2 "
                                         "outputs per step and the network takes 3 features per step"):
        learner.generate(x[:, :2], 3)
    with pytest.raises(ValueError, match="clip_norm must be a finite number > 0"):
        nnpk.NetworkLearner(net, clip_norm=0.0).fit(x, np.zeros((6, 4, 2)))
    flat = nnpk.Network([nnpk.Recurrent(8, "tanh"), nnpk.Dense(3)])
    fitted = nnpk.NetworkLearner(flat, epochs=1, loss="squared").fit(x, np.zeros((6, 3)))
    with pytest.raises(ValueError, match="generate needs a network whose output is a sequence"):
        fitted.generate(x[:, :2], 3)
    same = nnpk.NetworkLearner(nnpk.Network([nnpk.Recurrent(8, "tanh", return_sequences=True), nnpk.Dense(3)]),
                               epochs=1).fit(x, x)
    with pytest.raises(ValueError, match=r"warmup must be \(n_sequences, warmup_steps, 3\)"):
        same.generate(np.zeros((2, 3, 4)), 3)
    with pytest.raises(ValueError, match="steps must be"):
        same.generate(x[:, :2], 0)
    with pytest.raises(ValueError, match="recurrent layers are read in PyTorch's nn.RNN layout only"):
        nnpk.params_from_state_dict(flat, {"rnn/i": np.zeros(1)}, layout="flax", input_shape=(4, 3))


def test_monte_carlo_sums_do_not_depend_on_the_row_tiles():
    """Each step's products see whole quanta of rows: a tile of 96 sequences and one of 384 give the same bits,
    with every state kept (the tangent kernels' forward pass) or two in turn (the NNGP's)."""
    from nnpk.kernels._plans import node_sums, tangent_sums

    net = nnpk.Network([nnpk.Recurrent(40, "tanh", W_std=1.1, b_std=0.2, leak=0.9), nnpk.Dense(3)])
    x = np.random.default_rng(4).standard_normal((300, 7, 5)).astype(np.float32)
    compiled = net.compile(x.shape[1:])
    flat = x.reshape(len(x), -1)
    nodes = [0, 1]  # the recurrent node and the readout
    sums = [node_sums(flat, None, compiled, nodes, seed=1, start=0, stop=2, n_threads=2, tile_rows=rows)
            for rows in (96, 384)]
    for a, b in zip(*sums):
        assert np.array_equal(a, b)
    flags = [True] * 3
    tangents = [tangent_sums(flat, None, compiled, seed=1, start=0, stop=2, nngp=True, weights=flags,
                             biases=[True, False, False], per_layer=False, per_logit=False, n_threads=2,
                             tile_rows=rows) for rows in (96, 384)]
    for a, b in zip(*tangents):
        assert np.array_equal(a, b)
    # the NNGP of the tangent pass (every state kept) and of the plain one (two in turn) agree to the bit
    assert np.array_equal(tangents[0][0], sums[0][1])


def test_estimators_of_sequence_outputs():
    """Logits at every step: the sampled estimator (the mean over networks of f . f' / (steps C)) is the default;
    the readout and conditional ones, which integrate a Dense layer on flat features, are refused."""
    from nnpk.kernels._plans import default_estimator

    net = nnpk.Network([nnpk.Recurrent(16, "tanh", b_std=0.1, return_sequences=True), nnpk.Dense(8), "relu",
                        nnpk.Dense(2, W_std=1.3, b_std=0.3)])
    x = np.random.default_rng(5).standard_normal((6, 4, 3))
    assert default_estimator(net) == "sampled" and net.returns_sequences
    with pytest.raises(ValueError, match="act on every step: use estimator='sampled'"):
        nnpk.monte_carlo(x, arch=net, n_networks=1, estimator="conditional")
    with pytest.raises(ValueError, match="acting on every step of a sequence: use estimator='sampled'"):
        nnpk.monte_carlo(x, arch=net, n_networks=1, estimator="readout")
    K = nnpk.monte_carlo(x, arch=net, n_networks=2, dtype="float64")
    expected = np.zeros((6, 6))
    for m in range(2):
        (U, b), (W, _), (A, _), (V, c) = nnpk.sample_params(net, (4, 3), 0, m)
        h, f = np.zeros((6, 16)), []
        for t in range(4):
            h = np.tanh(h @ W / 4 + x[:, t] @ U / math.sqrt(3) + 0.1 * b)
            f.append(1.3 / math.sqrt(8) * np.maximum(h @ A / 4, 0) @ V + 0.3 * c)
        f = np.concatenate(f, axis=1)
        expected += f @ f.T / 8 / 2
    np.testing.assert_allclose(K, expected, rtol=1e-10)


def test_stores_and_job_files_take_recurrent_networks(tmp_path):
    pytest.importorskip("zarr")
    from nnpk.store._spec import _arch_from_spec, _arch_spec

    net = nnpk.Network([nnpk.Recurrent(12, nnpk.Activation("relu", normalize=True), W_std=1.1, b_std=0.2, leak=0.7,
                                       init="orthogonal"), nnpk.Dense(2)], parameterization="standard")
    assert _arch_from_spec(_arch_spec(net)) == net
    x = np.random.default_rng(6).standard_normal((130, 5, 3))
    path = str(tmp_path / "k.zarr")
    for kernel in ("nngp", "ntk"):
        store = nnpk.compute_to_store(path + kernel, x, arch=net, kernel=kernel, n_networks=3, tile_size=96)
        expected = nnpk.monte_carlo(x, arch=net, n_networks=3, get=kernel)
        np.testing.assert_allclose(store.to_numpy(), expected, rtol=1e-12, atol=1e-12)
