"""Independent numpy references for the tests: written from docs/definitions.rst, not from nnpk."""

import math

import numpy as np
from scipy import integrate, special

SQRT2PI = math.sqrt(2 * math.pi)


# The activations that need a parameter with no default (degree, coefficients): loops over nnpk.ACTIVATIONS
# with bare names leave them out (tests/test_activations_more.py covers them).
NEEDS_PARAMETER = ("monomial", "rectified_monomial", "polynomial")


def activation(name, slope=0.01):
    """phi in plain numpy/scipy (gaussian and rbf at their default gamma = 1)."""
    return {
        "relu": lambda z: np.maximum(z, 0.0),
        "leaky_relu": lambda z: np.where(z > 0, z, slope * z),
        "abs": np.abs,
        "erf": special.erf,
        "tanh": np.tanh,
        "sigmoid": special.expit,
        "gelu": lambda z: z * special.ndtr(z),
        "softplus": lambda z: np.logaddexp(0.0, z),
        "sin": np.sin,
        "identity": lambda z: z,
        "relu_normalized": lambda z: (np.maximum(z, 0.0) - 1 / SQRT2PI) / math.sqrt(0.5 - 1 / (2 * math.pi)),
        "cos": np.cos,
        "gaussian": lambda z: np.exp(-z * z),
        "exp": np.exp,
        "rbf": lambda z: math.sqrt(2) * np.sin(math.sqrt(2) * z + math.pi / 4),
        "sign": np.sign,
    }[name]


def activation_derivative(name, slope=0.01):
    """phi' in plain numpy/scipy (0 at the kinks)."""
    return {
        "relu": lambda z: (z > 0).astype(float),
        "leaky_relu": lambda z: np.where(z > 0, 1.0, slope),
        "abs": np.sign,
        "erf": lambda z: 2 / math.sqrt(math.pi) * np.exp(-z * z),
        "tanh": lambda z: 1 - np.tanh(z) ** 2,
        "sigmoid": lambda z: special.expit(z) * (1 - special.expit(z)),
        "gelu": lambda z: special.ndtr(z) + z * np.exp(-0.5 * z * z) / SQRT2PI,
        "softplus": special.expit,
        "sin": np.cos,
        "identity": np.ones_like,
        "relu_normalized": lambda z: (z > 0) / math.sqrt(0.5 - 1 / (2 * math.pi)),
        "cos": lambda z: -np.sin(z),
        "gaussian": lambda z: -2 * z * np.exp(-z * z),
        "exp": np.exp,
        "rbf": lambda z: 2 * np.cos(math.sqrt(2) * z + math.pi / 4),
        "sign": np.zeros_like,
    }[name]


def jacobian(arch, params, x):
    """d f_c(x) / d theta for every stored parameter: (n, C, P), by explicit per-example backprop.

    Parameters are ordered layer by layer, W (row-major) then b."""
    phi = activation(arch.activation, arch.slope)
    dphi = activation_derivative(arch.activation, arch.slope)
    shift, scale = (0.0, 1.0)
    if arch.normalize:
        mu, var = gaussian_moments(phi)
        shift, scale = mu, math.sqrt(var)
    ntk = arch.parameterization == "ntk"
    rows = []
    for xi in np.asarray(x, dtype=np.float64):
        hs, zs = [xi], []
        for l, (W, b) in enumerate(params):
            s = arch.w_stds[l] / math.sqrt(hs[-1].size) if ntk else 1.0
            z = s * (hs[-1] @ W) + (0.0 if b is None else (arch.b_stds[l] if ntk else 1.0) * b)
            zs.append(z)
            hs.append((phi(z) - shift) / scale if l < len(params) - 1 else z)
        per_logit = []
        for c in range(arch.out):
            g = np.zeros(arch.out)
            g[c] = 1.0
            grads = [None] * len(params)
            for l in range(len(params) - 1, -1, -1):
                W, b = params[l]
                s = arch.w_stds[l] / math.sqrt(hs[l].size) if ntk else 1.0
                gW = np.outer(s * hs[l], g)
                gb = None if b is None else (arch.b_stds[l] if ntk else 1.0) * g
                grads[l] = np.concatenate([gW.ravel()] + ([] if gb is None else [gb]))
                if l > 0:
                    g = (s * W @ g) * dphi(zs[l - 1]) / scale
            per_logit.append(np.concatenate(grads))
        rows.append(per_logit)
    return np.array(rows)


def ntk_from_jacobians(j1, j2, select=None, per_logit=False):
    """Theta from Jacobians (n, C, P): J1 J2^T over the selected parameter slices, traced / C or
    (n1, n2, C, C) per logit."""
    if select is not None:
        mask = np.zeros(j1.shape[-1], bool)
        for sl in select:
            mask[sl] = True
        j1, j2 = j1[..., mask], j2[..., mask]
    full = np.einsum("icp,jdp->ijcd", j1, j2)
    return full if per_logit else np.einsum("ijcc->ij", full) / full.shape[-1]


def parameter_slices(arch, params):
    """(layer, part) -> slice of the flat parameter vector of `jacobian`."""
    out, pos = {}, 0
    for l, (W, b) in enumerate(params):
        out[(l, "weights")] = slice(pos, pos + W.size)
        pos += W.size
        if b is not None:
            out[(l, "biases")] = slice(pos, pos + b.size)
            pos += b.size
    return out


def gaussian_moments(phi):
    """E[phi(g)], Var[phi(g)] for g ~ N(0,1) by adaptive quadrature."""
    dens = lambda z: math.exp(-0.5 * z * z) / SQRT2PI
    f = lambda z: float(phi(np.array([z]))[0])
    kw = dict(points=[0.0], limit=200, epsabs=1e-14, epsrel=1e-13)
    m1 = integrate.quad(lambda z: f(z) * dens(z), -40, 40, **kw)[0]
    m2 = integrate.quad(lambda z: f(z) ** 2 * dens(z), -40, 40, **kw)[0]
    return m1, m2 - m1 * m1


def network_activation(arch):
    phi = activation(arch.activation, arch.slope)
    if not arch.normalize:
        return phi
    mu, var = gaussian_moments(phi)
    return lambda z: (phi(z) - mu) / math.sqrt(var)


def forward(arch, params, x, phi=None):
    """Post-activations of every hidden layer and the output, one network."""
    phi = phi or network_activation(arch)
    h = np.asarray(x, dtype=np.float64)
    outs = []
    for l, (W, b) in enumerate(params):
        if arch.parameterization == "ntk":
            z = arch.w_stds[l] / math.sqrt(h.shape[1]) * (h @ W)
            if b is not None:
                z = z + arch.b_stds[l] * b
        else:
            z = h @ W + (0.0 if b is None else b)
        h = phi(z) if l < len(params) - 1 else z
        outs.append(h)
    return outs


def mc_kernels(arch, params_list, x1, x2=None):
    """Average over networks of every layer's h(x1) h(x2)^T / width."""
    x2 = x1 if x2 is None else x2
    phi = network_activation(arch)
    total = None
    for params in params_list:
        o1, o2 = forward(arch, params, x1, phi), forward(arch, params, x2, phi)
        ks = [a @ b.T / a.shape[1] for a, b in zip(o1, o2)]
        total = ks if total is None else [t + k for t, k in zip(total, ks)]
    return [t / len(params_list) for t in total]


def arccos1(x1, x2, w_std=1.0):
    """Closed-form NNGP of one hidden ReLU layer, no biases, W_std for both layers (Cho & Saul)."""
    d = x1.shape[1]
    s12 = w_std**2 * x1 @ x2.T / d
    s1 = w_std**2 * np.sum(x1 * x1, 1) / d
    s2 = w_std**2 * np.sum(x2 * x2, 1) / d
    p = np.sqrt(np.outer(s1, s2))
    c = np.clip(s12 / p, -1, 1)
    theta = np.arccos(c)
    return w_std**2 * p * (np.sin(theta) + (math.pi - theta) * c) / (2 * math.pi)
