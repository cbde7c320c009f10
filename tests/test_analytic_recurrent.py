"""nnpk.analytic for networks starting with a Recurrent layer, against independent references:
the step recursions of docs/definitions.rst ("Recurrent networks") written out here in numpy
(closed-form relu and erf dual maps, Gauss-Hermite quadrature for tanh), the cross-step
covariances as plain sums over pairs of steps, and Monte Carlo over random networks (nnpk's NNGP
and NTK, and an empirical NTK by back-propagation through time written here)."""

import math

import numpy as np
import pytest

import nnpk
from conftest import assert_analytic_bits_invariant
from reference import NEEDS_PARAMETER

# ---------------------------------------------------------------------------------------
# Independent references


def relu_dual(q1, q2, c):
    """(E[relu(u) relu(v)], E[relu'(u) relu'(v)]) for (u, v) ~ N(0, [[q1, c], [c, q2]])."""
    root_p = np.sqrt(q1 * q2)
    theta = np.arccos(np.clip(c / root_p, -1, 1))
    return root_p * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi), (np.pi - theta) / (2 * np.pi)


def erf_dual(q1, q2, c):
    det = (1 + 2 * q1) * (1 + 2 * q2)
    return 2 / np.pi * np.arcsin(2 * c / np.sqrt(det)), 4 / np.pi / np.sqrt(det - 4 * c * c)


def tanh_dual(q1, q2, c, order=240):
    """Gauss-Hermite product rule on u = sqrt(q1) z1, v = sqrt(q2) (rho z1 + sqrt(1 - rho^2) z2)."""
    z, w = np.polynomial.hermite_e.hermegauss(order)
    w = w / w.sum()
    q1, q2, c = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (q1, q2, c)))
    rho = np.clip(c / np.sqrt(q1 * q2), -1, 1)[..., None, None]
    u = np.sqrt(q1)[..., None, None] * z[:, None]
    v = np.sqrt(q2)[..., None, None] * (rho * z[:, None] + np.sqrt(1 - rho**2) * z[None, :])
    weights = w[:, None] * w[None, :]
    du, dv = 1 - np.tanh(u) ** 2, 1 - np.tanh(v) ** 2
    return ((weights * np.tanh(u) * np.tanh(v)).sum((-2, -1)), (weights * du * dv).sum((-2, -1)))


DUALS = {"relu": relu_dual, "erf": erf_dual, "tanh": tanh_dual}
# nnpk integrates tanh's dual map by quadrature (4e-9 per map at its default order), over several steps.
TANH_RTOL = 5e-8


def same_step_kernels(x1, x2, activation, *, W_std, U_std, b_std, parameterization, width):
    """NNGP and NTK of h_T (per unit) for leak 1: Sigma_1 = U^2 x_1.x'_1/d + b^2, Sigma_t = W^2 E[phi phi] at
    Sigma_{t-1} + U^2 x_t.x'_t/d + b^2; Theta_1 = Sigma_1 ("standard": x_1.x'_1 + 1), Theta_t = Sigma_t (or
    m E[phi phi] + x_t.x'_t + 1) + W^2 E[phi' phi'] Theta_{t-1}; h_T: E[phi phi] and Theta_T E[phi' phi'] at Sigma_T."""
    dual = DUALS[activation]
    d = x1.shape[2]
    b2, bias = (0.0, 0.0) if b_std is None else (b_std**2, 1.0)
    cross, own1, own2 = (np.einsum("itf,jtf->tij", a, b) / d for a, b in ((x1, x2), (x1, x1), (x2, x2)))
    own1, own2 = np.diagonal(own1, axis1=1, axis2=2), np.diagonal(own2, axis1=1, axis2=2)
    for t in range(x1.shape[1]):
        if t == 0:
            sigma, q1, q2 = (U_std**2 * k + b2 for k in (cross[0], own1[0], own2[0]))
            theta = sigma if parameterization == "ntk" else d * cross[0] + bias
            continue
        e, e_dot = dual(q1[:, None], q2[None, :], sigma)
        new = W_std**2 * e + U_std**2 * cross[t] + b2
        input_terms = new if parameterization == "ntk" else width * e + d * cross[t] + bias
        theta = input_terms + W_std**2 * e_dot * theta
        sigma = new
        q1 = W_std**2 * dual(q1, q1, q1)[0] + U_std**2 * own1[t] + b2
        q2 = W_std**2 * dual(q2, q2, q2)[0] + U_std**2 * own2[t] + b2
    e, e_dot = dual(q1[:, None], q2[None, :], sigma)
    return e, theta * e_dot


def cross_step_tables(xa, xb, qa, qb, dual, *, W_std, U_std, b_std, leak, parameterization, width):
    """C_{s,t} = E[h_s(x) h_t(x')] and its tangent kernel for every pair of steps (1-based, index 0 = 0),
    the sums over earlier steps written out: h_s = sum_{k<=s} a (1-a)^(s-k) phi(z_k), so
    C_{s,t} = sum_{k<=s, l<=t} a^2 (1-a)^(s-k+t-l) E[phi(z_k) phi(z'_l)], with
    Sigma_{k,l} = W^2 C_{k-1,l-1} + U^2 x_k.x'_l/d + b^2; the tangent kernel likewise with
    E[phi' phi'] Theta^z_{k,l}, Theta^z_{k,l} = Sigma_{k,l} + W^2 Theta^h_{k-1,l-1} (or its "standard" form).
    qa, qb: each point's variances Sigma_{k,k} (at least as many steps as xa, xb have)."""
    steps, d = xa.shape[1], xa.shape[2]
    a = leak
    b2, bias = (0.0, 0.0) if b_std is None else (b_std**2, 1.0)
    shape = (steps + 1, steps + 1) + (xa.shape[0], xb.shape[0])
    c, theta_h, g, g_theta = (np.zeros(shape) for _ in range(4))
    for s in range(1, steps + 1):
        for t in range(1, steps + 1):
            k = xa[:, s - 1] @ xb[:, t - 1].T / d
            sigma = W_std**2 * c[s - 1, t - 1] + U_std**2 * k + b2
            if parameterization == "ntk":
                theta_z = sigma + W_std**2 * theta_h[s - 1, t - 1]
            else:
                theta_z = width * c[s - 1, t - 1] + d * k + bias + W_std**2 * theta_h[s - 1, t - 1]
            e, e_dot = dual(qa[s - 1][:, None], qb[t - 1][None, :], sigma)
            g[s, t], g_theta[s, t] = e, e_dot * theta_z
            # a^2 (1-a)^(s-k+t-l) for 1 <= k <= s, 1 <= l <= t (0 for the index-0 rows)
            weights = np.array([[a * a * (1 - a) ** (s - k + t - l) if k and l else 0.0 for l in range(t + 1)]
                                for k in range(s + 1)])
            c[s, t] = np.einsum("kl,klij->ij", weights, g[: s + 1, : t + 1])
            theta_h[s, t] = np.einsum("kl,klij->ij", weights, g_theta[: s + 1, : t + 1])
    return c, theta_h


def cross_step_kernels(x1, x2, activation, **cell):
    """NNGP and NTK of h_T (per unit) for any leak; each point's variances by the same sums on (x, x),
    one step longer at a time."""
    dual = DUALS[activation]
    d = x1.shape[2]
    b2 = 0.0 if cell["b_std"] is None else cell["b_std"] ** 2

    def variances(x):
        q = [cell["U_std"] ** 2 * np.sum(x[:, 0] ** 2, axis=1) / d + b2]
        for t in range(1, x.shape[1]):
            c, _ = cross_step_tables(x[:, :t], x[:, :t], q, q, dual, **cell)
            q.append(cell["W_std"] ** 2 * np.diagonal(c[t, t]) + cell["U_std"] ** 2 * np.sum(x[:, t] ** 2, axis=1) / d
                     + b2)
        return q

    c, theta_h = cross_step_tables(x1, x2, variances(x1), variances(x2), dual, **cell)
    return c[-1, -1], theta_h[-1, -1]


def readout(nngp_h, ntk_h, *, V_std, v_b, parameterization, width):
    """A Dense readout after h_T (the dense recursion)."""
    nngp = V_std**2 * nngp_h + (0.0 if v_b is None else v_b**2)
    if parameterization == "ntk":
        return nngp, nngp + V_std**2 * ntk_h
    return nngp, width * nngp_h + V_std**2 * ntk_h + (0.0 if v_b is None else 1.0)


def network(activation, *, width=64, W_std=1.2, U_std=0.9, b_std=0.3, leak=1.0, V_std=1.1, v_b=0.1,
            parameterization="ntk", out=2):
    return nnpk.Network([nnpk.Recurrent(width, activation, W_std=W_std, U_std=U_std, b_std=b_std, leak=leak),
                         nnpk.Dense(out, W_std=V_std, b_std=v_b)], parameterization=parameterization)


def sequences(n, steps=4, features=3, seed=0):
    """n sequences of i.i.d. standard normal entries, the same for the same arguments whatever ran before."""
    return np.random.default_rng([seed, n, steps, features]).normal(size=(n, steps, features))


def reference(x1, x2, activation, kernels, *, width=64, W_std=1.2, U_std=0.9, b_std=0.3, leak=1.0, V_std=1.1,
              v_b=0.1, parameterization="ntk"):
    x2 = x1 if x2 is None else x2
    cell = dict(W_std=W_std, U_std=U_std, b_std=b_std, parameterization=parameterization, width=width)
    h = kernels(x1, x2, activation, **cell) if kernels is same_step_kernels else kernels(x1, x2, activation,
                                                                                        leak=leak, **cell)
    return readout(*h, V_std=V_std, v_b=v_b, parameterization=parameterization, width=width)


# ---------------------------------------------------------------------------------------
# The recursion


@pytest.mark.parametrize("activation,with_x2", [("relu", False), ("relu", True), ("erf", False), ("erf", True),
                                                ("tanh", False)])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("b_std", [0.3, None])
def test_leak_one_matches_the_same_step_recursion(activation, with_x2, parameterization, b_std):
    # The reference's quadrature for tanh is (n1, n2, 240, 240) arrays: fewer points.
    x1 = sequences(4 if activation == "tanh" else 6)
    x2 = sequences(5, seed=1) if with_x2 else None
    got = nnpk.analytic(x1, x2, arch=network(activation, b_std=b_std, parameterization=parameterization),
                        get=("nngp", "ntk"))
    nngp, ntk = reference(x1, x2, activation, same_step_kernels, b_std=b_std, parameterization=parameterization)
    # tanh: nnpk's quadrature (order 40: 4e-9 per dual map) against Gauss-Hermite of order 240 (1e-10).
    rtol = TANH_RTOL if activation == "tanh" else 1e-12
    np.testing.assert_allclose(got["nngp"], nngp, rtol=rtol, atol=rtol * np.abs(nngp).max())
    np.testing.assert_allclose(got["ntk"], ntk, rtol=rtol, atol=rtol * np.abs(ntk).max())


@pytest.mark.parametrize("activation,parameterization,b_std,leak", [
    ("relu", "ntk", 0.3, 0.5), ("relu", "standard", None, 0.3), ("erf", "ntk", None, 0.8),
    ("erf", "standard", 0.3, 0.6), ("tanh", "ntk", 0.3, 0.5), ("relu", "ntk", 0.3, 1.0),
])
def test_any_leak_matches_the_cross_step_sums(activation, parameterization, b_std, leak):
    """Every leak against the plain sums over pairs of steps; at leak 1 they reduce to the same-step recursion."""
    x1, x2 = (sequences(3, steps=3), sequences(2, steps=3, seed=1)) if activation == "tanh" else (
        sequences(5), sequences(4, seed=1))
    arch = network(activation, b_std=b_std, leak=leak, parameterization=parameterization)
    got = nnpk.analytic(x1, x2, arch=arch, get=("nngp", "ntk"))
    nngp, ntk = reference(x1, x2, activation, cross_step_kernels, b_std=b_std, leak=leak,
                          parameterization=parameterization)
    rtol = TANH_RTOL if activation == "tanh" else 1e-12
    np.testing.assert_allclose(got["nngp"], nngp, rtol=rtol, atol=rtol * np.abs(nngp).max())
    np.testing.assert_allclose(got["ntk"], ntk, rtol=rtol, atol=rtol * np.abs(ntk).max())


def test_leak_one_has_no_cross_step_terms():
    """The two references agree at leak 1: the cross-step covariances do not reach h_T."""
    x1, x2 = sequences(4), sequences(3, seed=1)
    for parameterization in ("ntk", "standard"):
        same = reference(x1, x2, "erf", same_step_kernels, parameterization=parameterization)
        cross = reference(x1, x2, "erf", cross_step_kernels, parameterization=parameterization)
        np.testing.assert_allclose(same, cross, rtol=1e-12)


@pytest.mark.parametrize("leak", [1.0, 0.6])
def test_layers_all_gives_the_recurrent_layers_kernel(leak):
    x = sequences(5)
    arch = nnpk.Network([nnpk.Recurrent(32, "relu", W_std=1.1, leak=leak), nnpk.Dense(16, b_std=0.2), "erf",
                         nnpk.Dense(1)])
    every = nnpk.analytic(x, arch=arch, get=("nngp", "ntk"), layers="all")
    assert [len(every[k]) for k in ("nngp", "ntk")] == [4, 4]
    h_nngp, h_ntk = cross_step_kernels(x, x, "relu", W_std=1.1, U_std=1.0, b_std=0.0, leak=leak,
                                       parameterization="ntk", width=32)
    np.testing.assert_allclose(every["nngp"][0], h_nngp, rtol=1e-12)
    # On the diagonal the reference's correlation is 1 only to rounding (its variances come from other sums), and
    # relu's E[phi' phi'] moves like sqrt(1 - rho) there: 1e-9.
    np.testing.assert_allclose(every["ntk"][0], h_ntk, rtol=1e-12, atol=1e-8)
    output = nnpk.analytic(x, arch=arch, get=("nngp", "ntk"))
    for name in ("nngp", "ntk"):
        np.testing.assert_array_equal(every[name][-1], output[name])


@pytest.mark.parametrize("activation,leak", [("relu", 1.0), ("relu", 0.6), ("erf", 0.9)])
def test_bits_do_not_depend_on_threads_tiles_or_order(activation, leak):
    """Over two tiles of 64: the same bits on 1 and 2 threads, symmetric, x2 = x's columns, and
    K(x2, x1) = K(x1, x2)^T exactly."""
    arch = network(activation, leak=leak, W_std=1.3)
    x = sequences(100, steps=5)
    assert_analytic_bits_invariant(arch, x, 70)
    y = sequences(30, steps=5, seed=1)
    forward = nnpk.analytic(x, y, arch=arch, get=("nngp", "ntk"), n_threads=2)
    backward = nnpk.analytic(y, x, arch=arch, get=("nngp", "ntk"), n_threads=1)
    for name in ("nngp", "ntk"):
        np.testing.assert_array_equal(forward[name], backward[name].T)


@pytest.mark.parametrize("activation", [nnpk.Activation(name) for name in nnpk.ACTIVATIONS
                                        if name not in NEEDS_PARAMETER + ("sign",)]  # sign: no NTK
                         + [nnpk.Activation("tanh", normalize=True), nnpk.Activation("leaky_relu", slope=0.2),
                            nnpk.Activation("monomial", degree=3), nnpk.Activation("rectified_monomial", degree=2),
                            nnpk.Activation("polynomial", coefficients=(0.1, 1.0, 0.3))])
@pytest.mark.parametrize("leak", [1.0, 0.7])
def test_every_activation_reduces_to_the_dense_recursion(activation, leak):
    """Recurrent layers that are a dense layer in disguise, for every dual map (closed form or quadrature):
    sequences of one step (h_1 = a phi(z_1): a^2 times a dense layer's kernels, either parameterization), and
    at leak 1 W_std = 0 under "ntk" (only the last step reaches h_T; the recurrent weights' share is 0)."""
    x = sequences(4, steps=3)
    cases = [(x[:, :1], 1.1, "standard", x[:, 0]), (x[:, :1], 1.1, "ntk", x[:, 0])]
    if leak == 1:
        cases.append((x, 0.0, "ntk", x[:, -1]))
    for sequence, w_std, parameterization, last in cases:
        rnn = nnpk.Network([nnpk.Recurrent(32, activation, W_std=w_std, U_std=0.9, b_std=0.3, leak=leak),
                            nnpk.Dense(1)], parameterization=parameterization)
        dense = nnpk.Network([nnpk.Dense(32, W_std=0.9, b_std=0.3), activation, nnpk.Dense(1)],
                             parameterization=parameterization)
        got = nnpk.analytic(sequence, arch=rnn, get=("nngp", "ntk"), layers="all")
        want = nnpk.analytic(last, arch=dense, get=("nngp", "ntk"), layers="all")
        for name in ("nngp", "ntk"):
            np.testing.assert_allclose(got[name][0], leak**2 * want[name][1], rtol=1e-12, atol=1e-14,
                                       err_msg=f"{parameterization} {name} {sequence.shape[1]} steps")


# ---------------------------------------------------------------------------------------
# Monte Carlo at finite width converges to the limit


def relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("activation,parameterization,leak", [("relu", "ntk", 1.0), ("tanh", "standard", 1.0),
                                                               ("relu", "ntk", 0.5)])
def test_monte_carlo_nngp_converges_to_analytic(activation, parameterization, leak):
    """nnpk.monte_carlo at width 1024 (the readout integrated): within 4 standard errors plus 2% for the finite width
    (the 1/width bias; measured 0.3% to 2% at this width)."""
    x = sequences(20, steps=5, features=4)
    arch = nnpk.Network([nnpk.Recurrent(1024, activation, W_std=1.2, b_std=0.1, leak=leak), nnpk.Dense(1)],
                        parameterization=parameterization)
    estimate, info = nnpk.monte_carlo(x, arch=arch, n_networks=32, return_standard_error=True, n_threads=2)
    assert relative(estimate, nnpk.analytic(x, arch=arch)) <= 4 * info["standard_error"] + 0.02


def empirical_ntk(x, activation, *, width, W_std, U_std, b_std, leak, V_std, parameterization, rng):
    """One random network's NTK (Recurrent then Dense(1) without bias) by back-propagation through time: with
    delta_t = df/dz_t, the shared U, W and b sum their gradients over steps, so
    Theta = sum_{s,t} (delta_s . delta'_t) (a_s . a'_t + w_{s-1} . w'_{t-1} + beta^2) + readout's share,
    a_t the scaled input of step t and w_t the scaled state."""
    phi = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}[activation]
    dphi = {"relu": lambda z: (z > 0).astype(float), "tanh": lambda z: 1 - np.tanh(z) ** 2}[activation]
    n, steps, d = x.shape
    U, W, V = rng.normal(size=(d, width)), rng.normal(size=(width, width)), rng.normal(size=width)
    b = rng.normal(size=width)
    scale_u, scale_w, scale_v = U_std / math.sqrt(d), W_std / math.sqrt(width), V_std / math.sqrt(width)
    scale_b = b_std
    if parameterization == "standard":  # the stored parameters carry the scales; derivatives are taken wrt them
        U, W, V, b = U * scale_u, W * scale_w, V * scale_v, b * b_std
        scale_u = scale_w = scale_v = scale_b = 1.0
    states, pre = [np.zeros((n, width))], []
    for t in range(steps):
        pre.append(scale_w * states[-1] @ W + scale_u * x[:, t] @ U + scale_b * b)
        states.append((1 - leak) * states[-1] + leak * phi(pre[-1]))
    grad_h = np.broadcast_to(scale_v * V, (n, width))
    deltas = [None] * steps
    for t in reversed(range(steps)):
        deltas[t] = leak * dphi(pre[t]) * grad_h
        grad_h = (1 - leak) * grad_h + scale_w * deltas[t] @ W.T
    ntk = scale_v**2 * states[-1] @ states[-1].T
    for s in range(steps):
        for t in range(steps):
            inputs = scale_u**2 * x[:, s] @ x[:, t].T + scale_w**2 * states[s] @ states[t].T + scale_b**2
            ntk += (deltas[s] @ deltas[t].T) * inputs
    return ntk


@pytest.mark.parametrize("activation,parameterization,leak", [("relu", "ntk", 1.0), ("tanh", "standard", 1.0),
                                                               ("relu", "standard", 0.5)])
def test_numpy_empirical_ntk_converges_to_analytic(activation, parameterization, leak):
    """The derived NTK against the mean empirical NTK of 24 networks of width 512 written here (back-propagation
    through time, every pair of steps summed): within 4 standard errors plus 3% for the finite width."""
    x = sequences(6, steps=4)
    cell = dict(width=512, W_std=1.2, U_std=1.0, b_std=0.3, leak=leak)
    arch = nnpk.Network([nnpk.Recurrent(512, activation, W_std=1.2, b_std=0.3, leak=leak), nnpk.Dense(1)],
                        parameterization=parameterization)
    rng = np.random.default_rng(7)
    draws = np.stack([empirical_ntk(x, activation, V_std=1.0, parameterization=parameterization, rng=rng, **cell)
                      for _ in range(24)])
    exact = nnpk.analytic(x, arch=arch, get="ntk")
    standard_error = np.linalg.norm(draws.std(axis=0, ddof=1)) / math.sqrt(len(draws)) / np.linalg.norm(exact)
    assert relative(draws.mean(axis=0), exact) <= 4 * standard_error + 0.03


def test_monte_carlo_ntk_converges_to_analytic():
    """nnpk.monte_carlo's NTK at width 1024 (Monte Carlo of recurrent NTKs is new in the engine): within 4
    standard errors plus 2% for the finite width."""
    x = sequences(12, steps=5, features=4)
    for activation, parameterization, leak in (("relu", "ntk", 1.0), ("tanh", "standard", 0.5)):
        arch = nnpk.Network([nnpk.Recurrent(1024, activation, W_std=1.2, b_std=0.1, leak=leak), nnpk.Dense(1)],
                            parameterization=parameterization)
        estimate, info = nnpk.monte_carlo(x, arch=arch, n_networks=24, get="ntk", return_standard_error=True,
                                          n_threads=2)
        exact = nnpk.analytic(x, arch=arch, get="ntk")
        assert relative(estimate, exact) <= 4 * info["standard_error"] + 0.02, (activation, leak)


# ---------------------------------------------------------------------------------------
# Refusals, before anything is computed


def test_unequal_lengths_are_refused():
    arch = network("relu")
    with pytest.raises(ValueError, match="x2 has sequences of 9 steps, x1 of 7: the analytic recurrent kernel needs "
                                         "equal lengths"):
        nnpk.analytic(sequences(3, steps=7), sequences(2, steps=9, seed=1), arch=arch)


def test_return_sequences_is_refused():
    arch = nnpk.Network([nnpk.Recurrent(8, return_sequences=True), nnpk.Flatten(), nnpk.Dense(1)])
    with pytest.raises(ValueError, match=r"layer 0 \(Recurrent 8 relu, return_sequences\) has return_sequences=True"):
        nnpk.analytic(sequences(3), arch=arch)


@pytest.mark.parametrize("layers", [
    [nnpk.Conv(8, 1), nnpk.Recurrent(8), nnpk.Dense(1)],
    [nnpk.Residual([nnpk.Conv(3, 2)]), nnpk.Recurrent(8), nnpk.Dense(1)],
])
def test_a_recurrent_layer_after_others_is_refused(layers):
    with pytest.raises(ValueError, match=r"layer 1 \(Recurrent 8 relu\) is not the network's first layer"):
        nnpk.analytic(sequences(3), arch=nnpk.Network(layers))


def test_flat_points_are_refused():
    with pytest.raises(ValueError, match=r"needs sequences, points of shape \(steps, features\), got flat points of 4 "
                                         r"features: pass x as an \(n, steps, features\) array"):
        nnpk.analytic(np.ones((3, 4)), arch=network("relu"))


def test_an_activation_after_the_recurrent_layer_is_refused():
    """h_T = phi(z_T) is not Gaussian: a dual map cannot read it."""
    arch = nnpk.Network([nnpk.Recurrent(8), "relu", nnpk.Dense(1)])
    with pytest.raises(ValueError, match="layer 1 .* reads features that are not Gaussian pre-activations"):
        nnpk.analytic(sequences(3), arch=arch)
