"""NTK conditioning at depth L, conv-net depths, and nnpk.depth_study, against numpy recursions and direct calls."""

import numpy as np
import pytest

import nnpk
from nnpk import Activation, Conv, Dense, Flatten, GlobalAvgPool, Network

DEPTHS = [1, 2, 5, 10, 30]


def unit_rows(x):
    return x / np.sqrt((x * x).sum(1, keepdims=True) / x.shape[1])


def points(n=24, d=10, seed=5):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n - 6, d))
    return unit_rows(np.vstack([base, base[:6] + 3e-2 * rng.standard_normal((6, d))]))


def relu_dual(S, diag):
    """relu's Sigma_new and Sigma_dot (the abrelu closed form with a=0, b=1)."""
    p = np.outer(diag, diag)
    c = np.clip(S, -np.sqrt(p), np.sqrt(p))
    theta = np.arctan2(np.sqrt(np.maximum(p - c * c, 0)), c)
    dot = (np.pi - theta) / (2 * np.pi)
    return np.sqrt(np.maximum(p - c * c, 0)) / (2 * np.pi) + dot * c, dot


def erf_dual(S, diag):
    q = np.outer(1 + 2 * diag, 1 + 2 * diag)
    return 2 / np.pi * np.arcsin(2 * S / np.sqrt(q)), 4 / np.pi / np.sqrt(q - 4 * S * S)


def normalized_relu_dual(S, diag):
    """The dual of CONVENTIONS on unit variances, and its derivative (pi - arccos rho) / (pi - 1) as Sigma_dot.

    rho = 1 is a repelling fixed point (slope pi / (pi - 1)), so the diagonal is set to its exact value 1."""
    assert np.allclose(diag, 1)
    rho = np.clip(S, -1, 1)
    np.fill_diagonal(rho, 1.0)
    new = (np.sqrt(1 - rho * rho) + (np.pi - np.arccos(rho)) * rho - 1) / (np.pi - 1)
    np.fill_diagonal(new, 1.0)
    return new, (np.pi - np.arccos(rho)) / (np.pi - 1)


def reference_ntk(x, dual, depths, W_std=1.0, b_std=None):
    """{L: the NTK of L hidden layers (ntk parameterization) plus a readout with W_std=1, no bias}."""
    S = x @ x.T / x.shape[1]
    T = np.zeros_like(S)
    out = {}
    for depth in range(1, max(depths) + 1):
        S = W_std**2 * S + (0 if b_std is None else b_std**2)
        T = S + W_std**2 * T
        S, dot = dual(S, np.diag(S).copy())
        T = T * dot
        if depth in depths:
            out[depth] = S + T
    return out


def statistics(K):
    d = np.sqrt(np.diag(K))
    C = K / np.outer(d, d)
    eig = np.linalg.eigvalsh(C)
    n = len(C)
    return {"min_eigenvalue": eig[0], "condition_number": eig[-1] / eig[0],
            "mean_abs_offdiag": (np.abs(C).sum() - n) / (n * (n - 1))}


def assert_statistics(got, kernels, depths, rtol):
    for key in ("min_eigenvalue", "condition_number", "mean_abs_offdiag"):
        np.testing.assert_allclose(got[key], [statistics(kernels[d])[key] for d in depths], rtol=rtol, err_msg=key)


@pytest.mark.parametrize("activation,normalize,dual,W_std,b_std", [
    ("relu", False, relu_dual, 2**0.5, 0.1),
    ("erf", False, erf_dual, 1.5, 0.2),
    ("relu_normalized", False, normalized_relu_dual, 1.0, None),
    ("relu", True, normalized_relu_dual, 1.0, None),
])
def test_ntk_conditioning_follows_the_numpy_recursion(activation, normalize, dual, W_std, b_std):
    x = points()
    arch = nnpk.MLP(hidden=[16] * 30, activation=activation, normalize=normalize, W_std=W_std, b_std=b_std)
    got = nnpk.conditioning(x, arch=arch, depths=DEPTHS, get="ntk")
    assert got["depth"].tolist() == DEPTHS
    assert_statistics(got, reference_ntk(x, dual, DEPTHS, W_std, b_std), DEPTHS, rtol=1e-7)


def test_both_kernels_in_one_call_and_nngp_unchanged():
    x = points()
    arch = nnpk.MLP(hidden=[16] * 10, activation="erf", normalize=True)
    both = nnpk.conditioning(x, arch=arch, depths=[10, 1, 4], get=("nngp", "ntk"))
    nngp = nnpk.conditioning(x, arch=arch, depths=[10, 1, 4])
    ntk = nnpk.conditioning(x, arch=arch, depths=[10, 1, 4], get="ntk")
    for key in nngp:
        np.testing.assert_array_equal(both["nngp"][key], nngp[key])
        np.testing.assert_array_equal(both["ntk"][key], ntk[key])


def test_normalised_activations_drive_the_ntk_to_the_identity_and_relu_does_not():
    x = points()
    deep = [1, 10, 30]
    last = {}
    for activation, normalize in [("relu_normalized", False), ("erf", True)]:
        got = nnpk.conditioning(x, arch=nnpk.MLP(hidden=[8] * 30, activation=activation, normalize=normalize),
                                depths=deep, get="ntk")
        assert np.all(np.diff(got["mean_abs_offdiag"]) < 0)
        assert np.all(np.diff(got["condition_number"]) < 0)
        last[activation] = got["condition_number"][-1]
    relu = nnpk.conditioning(x, arch=nnpk.MLP(hidden=[8] * 30, W_std=2**0.5), depths=deep, get="ntk")
    # relu's NTK correlations settle slowly near 1/4 (0.31 at depth 30), not 0: the condition number stays large.
    assert 0.25 < relu["mean_abs_offdiag"][-1] < 0.35
    assert relu["condition_number"][-1] > 50
    assert last["relu_normalized"] < 1.1 and last["erf"] < 10  # erf is nearly linear: slower


def truncated_mlp(arch, depth):
    """Hidden layers 1..depth of an MLP and a readout with W_std=1, no bias, built by hand."""
    return Network(arch.layers[: 2 * depth] + (Dense(1, W_std=1.0, b_std=None),),
                   parameterization=arch.parameterization)


def test_standard_parameterization_ntk_is_the_truncated_network_s():
    x = points()
    arch = nnpk.MLP(hidden=[16, 32, 8], activation="erf", W_std=1.3, b_std=0.4, parameterization="standard")
    got = nnpk.conditioning(x, arch=arch, depths=[1, 2, 3], get="ntk")
    direct = {d: nnpk.analytic(x, arch=truncated_mlp(arch, d), get="ntk") for d in (1, 2, 3)}
    assert_statistics(got, direct, [1, 2, 3], rtol=1e-10)


def test_monte_carlo_ntk_estimates_the_analytic_one_and_is_the_truncated_network_s():
    """Depth L's estimate is monte_carlo on the truncated network, and near the limit at width 256."""
    x = points()
    arch = nnpk.MLP(hidden=[256] * 3, activation="relu_normalized")
    exact = nnpk.conditioning(x, arch=arch, depths=[1, 3], get="ntk")
    estimate = nnpk.conditioning(x, arch=arch, depths=[1, 3], get="ntk", method="monte_carlo", n_networks=16,
                                 seed=3, n_threads=1)
    np.testing.assert_allclose(estimate["mean_abs_offdiag"], exact["mean_abs_offdiag"], rtol=0.05)
    np.testing.assert_allclose(estimate["min_eigenvalue"], exact["min_eigenvalue"], rtol=0.3)
    by_hand = {d: nnpk.monte_carlo(x, arch=truncated_mlp(arch, d), n_networks=16, seed=3, get="ntk", n_threads=1)
               for d in (1, 3)}
    assert_statistics(estimate, by_hand, [1, 3], rtol=1e-12)


def conv_points(n=7, seed=2):
    x = np.random.default_rng(seed).standard_normal((n, 6, 2))
    return x / np.sqrt((x * x).mean(axis=(1, 2), keepdims=True))


def conv_net(readout, parameterization="ntk", activation="relu_normalized"):
    blocks = []
    for channels in (4, 4, 4):
        blocks += [Conv(channels, 3, b_std=0.1 if parameterization == "standard" else None),
                   Activation(activation, normalize=activation == "erf")]
    return Network(tuple(blocks) + readout, parameterization=parameterization)


READOUTS = {
    "gap": (GlobalAvgPool(), Dense(2, W_std=1.7, b_std=0.3)),
    "flatten": (Flatten(), Dense(2, W_std=0.8)),
}


@pytest.mark.parametrize("readout", sorted(READOUTS))
@pytest.mark.parametrize("parameterization,activation", [("ntk", "relu_normalized"), ("standard", "erf")])
def test_conv_depth_is_the_truncated_network(readout, parameterization, activation):
    """Depth L of a conv net: its first L Conv+activation blocks, then its readout, as nnpk.analytic gives it."""
    x = conv_points()
    net = conv_net(READOUTS[readout], parameterization, activation)
    got = nnpk.conditioning(x, arch=net, depths=[3, 1, 2], get=("nngp", "ntk"))
    for name in ("nngp", "ntk"):
        direct = {d: nnpk.analytic(x, arch=Network(net.layers[: 2 * d] + READOUTS[readout],
                                                   parameterization=parameterization), get=name)
                  for d in (1, 2, 3)}
        assert_statistics(got[name], direct, [3, 1, 2], rtol=1e-9)


def test_conv_monte_carlo_is_the_truncated_network_s():
    x = conv_points()
    net = conv_net(READOUTS["gap"])
    got = nnpk.conditioning(x, arch=net, depths=[1, 3], get=("nngp", "ntk"), method="monte_carlo", n_networks=4,
                            seed=1, n_threads=1)
    by_hand = {d: nnpk.monte_carlo(x, arch=Network(net.layers[: 2 * d] + READOUTS["gap"]), n_networks=4, seed=1,
                                   get=("nngp", "ntk"), n_threads=1) for d in (1, 3)}
    for name in ("nngp", "ntk"):
        assert_statistics(got[name], {d: k[name] for d, k in by_hand.items()}, [1, 3], rtol=1e-12)


def test_dense_network_with_its_own_readout():
    x = points()
    readout = (Dense(3, W_std=2.0, b_std=0.5),)
    net = Network((Dense(16), "tanh", Dense(16), "tanh") + readout)
    got = nnpk.conditioning(x, arch=net, depths=[1, 2], get="ntk")
    direct = {d: nnpk.analytic(x, arch=Network(net.layers[: 2 * d] + readout), get="ntk") for d in (1, 2)}
    assert_statistics(got, direct, [1, 2], rtol=1e-9)


def digits(n_train=60, n_test=40):
    x, labels = nnpk.datasets.load_digits(n_train + n_test, seed=1)
    x = unit_rows(x)
    return x[:n_train], labels[:n_train], x[n_train:], labels[n_train:]


def test_depth_study_against_kernel_ridge_and_linearized_prediction_by_hand():
    x_train, y_train, x_test, y_test = digits()
    arch = nnpk.MLP(hidden=[32] * 4, activation="relu_normalized")
    got = nnpk.depth_study(x_train, y_train, x_test, y_test, arch=arch, depths=[4, 1], ridge=1e-2, time=30.0,
                           lr=0.5)
    assert got["depth"].tolist() == [4, 1]
    x_all = np.vstack([x_train, x_test])
    targets = np.eye(10)[y_train] - 0.1
    test_targets = np.eye(10)[y_test] - 0.1
    n = len(x_train)
    for i, depth in enumerate([4, 1]):
        kernels = {"nngp": nnpk.analytic(x_all, arch=arch, layers="all")[depth - 1],
                   "ntk": nnpk.analytic(x_all, arch=truncated_mlp(arch, depth), get="ntk")}
        for name, K in kernels.items():
            d = np.sqrt(np.diag(K))
            C = K / np.outer(d, d)
            predicted = nnpk.kernel_ridge(C[:n, :n], targets, C[n:, :n], 1e-2)
            test, train = nnpk.linearized_prediction(C[:n, :n], C[n:, :n], np.zeros((n, 10)),
                                                     np.zeros((len(x_test), 10)), targets, time=30.0, lr=0.5,
                                                     return_train=True)
            row = got[name]
            assert row["test_accuracy"][i] == np.mean(predicted.argmax(1) == y_test)
            assert row["test_loss"][i] == pytest.approx(0.5 * np.mean(((predicted - test_targets) ** 2).sum(1)),
                                                        rel=1e-8)
            assert row["train_loss"][i] == pytest.approx(0.5 * np.mean(((train - targets) ** 2).sum(1)), rel=1e-8)
            assert row["trained_test_accuracy"][i] == np.mean(test.argmax(1) == y_test)
            largest = np.linalg.eigvalsh(C[:n, :n])[-1]
            _, limited = nnpk.linearized_prediction(C[:n, :n], C[n:, :n], np.zeros((n, 10)),
                                                    np.zeros((len(x_test), 10)), targets, time=30.0,
                                                    lr=0.5 / largest, return_train=True)
            assert row["train_loss_lr_max"][i] == pytest.approx(0.5 * np.mean(((limited - targets) ** 2).sum(1)),
                                                                rel=1e-7)
            expected = statistics(K[:n, :n])
            for key, value in expected.items():
                assert row[key][i] == pytest.approx(value, rel=1e-7)
    # Learning something: far above chance (0.1) at depth 1.
    assert got["ntk"]["test_accuracy"][1] > 0.6


def test_depth_study_monte_carlo_and_default_time():
    x_train, y_train, x_test, y_test = digits(30, 20)
    arch = nnpk.MLP(hidden=[64] * 2, activation="erf", normalize=True)
    got = nnpk.depth_study(x_train, y_train, x_test, y_test, arch=arch, depths=[2], get="ntk",
                           method="monte_carlo", n_networks=4, seed=2, n_threads=1)
    assert set(got) == {"depth", "ntk"}
    K = nnpk.monte_carlo(np.vstack([x_train, x_test]), arch=truncated_mlp(arch, 2), n_networks=4, seed=2,
                         get="ntk", n_threads=1)
    d = np.sqrt(np.diag(K))
    C = K / np.outer(d, d)
    targets = np.eye(10)[y_train] - 0.1
    _, train = nnpk.linearized_prediction(C[:30, :30], C[30:, :30], np.zeros((30, 10)), np.zeros((20, 10)),
                                          targets, time=30.0, return_train=True)  # default time: n
    assert got["ntk"]["train_loss"][0] == pytest.approx(0.5 * np.mean(((train - targets) ** 2).sum(1)), rel=1e-8)


X = points()
ARCH = nnpk.MLP(hidden=[8, 8])
XT, YT, XS, YS = digits(30, 20)
CONV = conv_net(READOUTS["gap"])


@pytest.mark.parametrize("call,error,match", [
    (lambda: nnpk.conditioning(X, arch=ARCH, depths=[1], get="cka"), ValueError, "get must be"),
    (lambda: nnpk.conditioning(X, arch=Network((Dense(4), Dense(1))), depths=[1]), ValueError,
     "no top-level Activation"),
    (lambda: nnpk.conditioning(X, arch=Network((Dense(4), "relu")), depths=[1]), ValueError,
     "ends with an activation"),
    (lambda: nnpk.conditioning(conv_points(), arch=CONV, depths=[4]), ValueError,
     "up to 4 but arch has 3 blocks"),
    (lambda: nnpk.conditioning(X, arch=CONV, depths=[1]), ValueError,
     r"x has points of shape \(10,\), which arch does not take: layer 0 \(Conv"),
    (lambda: nnpk.conditioning(X, arch=ARCH, depths=[1], method="monte_carlo", n_networks=0), ValueError,
     "n_networks must be >= 1"),
    (lambda: nnpk.depth_study(XT, YT.astype(float), XS, YS, arch=ARCH, depths=[1]), TypeError,
     "y_train must hold integer class labels"),
    (lambda: nnpk.depth_study(XT, YT[:-1], XS, YS, arch=ARCH, depths=[1]), ValueError,
     "y_train has 29 labels, x_train has 30 points"),
    (lambda: nnpk.depth_study(XT, YT, XS[:, :5], YS, arch=ARCH, depths=[1]), ValueError,
     r"x_test has points of shape \(5,\), x_train of shape \(64,\)"),
    (lambda: nnpk.depth_study(XT, np.zeros(30, int), XS, YS, arch=ARCH, depths=[1]), ValueError,
     "y_train needs at least 2 classes"),
    (lambda: nnpk.depth_study(XT, YT, XS, YS + 10, arch=ARCH, depths=[1]), ValueError,
     "y_test has label 10"),
    (lambda: nnpk.depth_study(XT, YT, XS, YS, arch=ARCH, depths=[1], ridge=-1.0), ValueError, "ridge"),
    (lambda: nnpk.depth_study(XT, YT, XS, YS, arch=ARCH, depths=[1], time=[1.0, 2.0]), ValueError,
     "time must be one number"),
    (lambda: nnpk.depth_study(XT, YT, XS, YS, arch=ARCH, depths=[1], time=-1.0), ValueError,
     "time must be finite and >= 0"),
    (lambda: nnpk.depth_study(XT, YT, XS, YS, arch=ARCH, depths=[1], lr=0.0), ValueError, "lr must be"),
    (lambda: nnpk.depth_study(XT, YT, XS, YS, arch=ARCH, depths=[3]), ValueError, "up to 3"),
    (lambda: nnpk.depth_study(XT, YT, XS, YS, arch="relu", depths=[1]), TypeError, "arch must be"),
    (lambda: nnpk.depth_study(XT, YT, XS, YS, arch=ARCH, depths=[1], get=("ntk", "ntk")), ValueError,
     "get must be"),
])
def test_bad_input_is_refused_before_any_kernel_is_computed(monkeypatch, call, error, match):
    import nnpk.kernels._conditioning as conditioning_module

    def refuse(*args, **kwargs):
        raise AssertionError("a kernel was computed before the arguments were checked")

    monkeypatch.setattr(conditioning_module, "analytic_kernels", refuse)
    monkeypatch.setattr(conditioning_module, "monte_carlo", refuse)
    with pytest.raises(error, match=match):
        call()
