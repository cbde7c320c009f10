"""Independent numpy forward passes and Jacobians of sequential networks, written from the layer
definitions (docs/definitions.rst and the nnpk.Network docstrings), not from nnpk's engine.

Convolutions here are sums over kernel offsets of strided slices of the padded input (not
patches times a matrix, as in the engine); pooling reduces over NaN-padded windows.
"""

import math

import numpy as np

from reference import activation, activation_derivative, gaussian_moments


def _tuple(v, dims):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * dims


def _padding(n, k, s, padding):
    """(output length, padding before, padding after) of one axis; "same" as XLA pads."""
    if padding == "valid":
        return (n - k) // s + 1, 0, 0
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2, total - total // 2


def _windows(x, window, stride, padding, fill):
    """(K, n, *out, c): the input under each of the K window offsets, padded with `fill`."""
    dims = len(window)
    geometry = [_padding(x.shape[1 + a], window[a], stride[a], padding) for a in range(dims)]
    xp = np.pad(x, [(0, 0)] + [(lo, hi) for _, lo, hi in geometry] + [(0, 0)], constant_values=fill)
    out = []
    for offset in np.ndindex(*window):
        index = tuple(slice(o, o + stride[a] * (geometry[a][0] - 1) + 1, stride[a]) for a, o in enumerate(offset))
        out.append(xp[(slice(None),) + index + (slice(None),)])
    return np.stack(out)


def conv(x, W, stride, padding):
    """x (n, *spatial, c_in), W (*kernel, c_in, c_out)."""
    dims = W.ndim - 2
    windows = _windows(x, W.shape[:dims], _tuple(stride, dims), padding, 0.0)
    return sum(w @ W[offset] for w, offset in zip(windows, np.ndindex(*W.shape[:dims])))


def _transposed_padding(k, s, padding):
    """Zeros before the stride-dilated input of XLA's conv_transpose along one axis."""
    if padding == "valid":
        return k - 1
    return k - 1 if s > k - 1 else math.ceil((k + s - 2) / 2)


def conv_transpose(x, W, stride, padding):
    """XLA's conv_transpose (the kernel not flipped), written as a scatter: input position i and kernel offset t
    add x_i W_t to output s i + (k - 1 - t) - (k - 1 - pad), pad the zeros before the dilated input; outputs
    n s ("same") or n s + max(k - s, 0) ("valid") positions."""
    dims = W.ndim - 2
    stride = _tuple(stride, dims)
    ks = W.shape[:dims]
    sizes = tuple(n * s if padding == "same" else n * s + max(k - s, 0) for n, k, s in zip(x.shape[1:-1], ks, stride))
    shift = [_transposed_padding(k, s, padding) for k, s in zip(ks, stride)]
    y = np.zeros((x.shape[0],) + sizes + (W.shape[-1],))
    for i in np.ndindex(*x.shape[1:-1]):
        for t in np.ndindex(*ks):
            o = tuple(s * a + sh - b for a, b, s, sh in zip(i, t, stride, shift))
            if all(0 <= a < n for a, n in zip(o, sizes)):
                y[(slice(None),) + o] += x[(slice(None),) + i] @ W[t]
    return y


def aggregate(h, layer):
    """Output node v = sum_u pattern[u][v] h_u ("mean": divided by sum_u pattern[u][v], 0 without edges)."""
    a = np.array(layer.pattern, dtype=np.float64)
    if layer.reduction == "mean":
        a = a / np.where(a.sum(axis=0) > 0, a.sum(axis=0), np.inf)
    flat = h.reshape(h.shape[0], -1, h.shape[-1])
    return np.einsum("nuc,uv->nvc", flat, a).reshape(h.shape)


def pool(x, window, stride, padding, kind):
    dims = x.ndim - 2
    window = _tuple(window, dims)
    stride = window if stride is None else _tuple(stride, dims)
    windows = _windows(x, window, stride, padding, np.nan)
    reduce = {"AvgPool": np.nanmean, "SumPool": np.nansum, "MaxPool": np.nanmax}[kind]
    return reduce(windows, axis=0)


def _linear(kind, layer):
    """(h, W) -> the layer's linear map of h."""
    if kind == "Dense":
        return lambda a, w: a @ w
    if kind == "Conv":
        return lambda a, w: conv(a, w, layer.stride, layer.padding)
    return lambda a, w: conv_transpose(a, w, layer.stride, layer.padding)


def _phi(layer):
    phi, dphi = activation(layer.name, layer.slope), activation_derivative(layer.name, layer.slope)
    if not layer.normalize:
        return phi, dphi
    mu, var = gaussian_moments(phi)
    s = math.sqrt(var)
    return (lambda z: (phi(z) - mu) / s), (lambda z: dphi(z) / s)


def _affine_scales(layer, W, parameterization):
    fan_in = int(np.prod(W.shape[:-1]))
    if parameterization == "ntk":
        return layer.W_std / math.sqrt(fan_in), layer.b_std
    return 1.0, 1.0


def apply(layer, h, params, parameterization):
    """One layer's output; `params` is an iterator over (W, b) in sample_params order."""
    kind = type(layer).__name__
    if kind in ("Dense", "Conv", "ConvTranspose"):
        W, b = next(params)
        s, bs = _affine_scales(layer, W, parameterization)
        lin = _linear(kind, layer)(h, W)
        out = s * lin + (0.0 if b is None else bs * b)
        return out
    if kind in ("AvgPool", "SumPool", "MaxPool"):
        out = pool(h, layer.window, layer.stride, layer.padding, kind)
    elif kind == "GlobalAvgPool":
        out = h.mean(axis=tuple(range(1, h.ndim - 1)))
    elif kind == "GlobalSumPool":
        out = h.sum(axis=tuple(range(1, h.ndim - 1)))
    elif kind == "Flatten":
        out = h.reshape(h.shape[0], -1)
    elif kind == "Aggregate":
        out = aggregate(h, layer)
    elif kind == "Activation":
        out = _phi(layer)[0](h)
    else:  # Residual
        block = h
        for inner in layer.block:
            block = apply(inner, block, params, parameterization)
        out = h + layer.scale * block
    return out


def forward(network, params, x):
    """Each top-level layer's output, one network with parameters in sample_params' layout."""
    it = iter(params)
    h = np.asarray(x, dtype=np.float64)
    outs = []
    for layer in network.layers:
        h = apply(layer, h, it, network.parameterization)
        outs.append(h)
    return outs


def pooled(h):
    """Features averaged over positions (flat features unchanged)."""
    return h.reshape(h.shape[0], -1, h.shape[-1]).mean(axis=1)


def mc_kernels(network, params_list, x1, x2=None):
    """Average over networks of each layer's pooled features' Gram / channels."""
    x2 = x1 if x2 is None else x2
    total = None
    for params in params_list:
        f1, f2 = forward(network, params, x1), forward(network, params, x2)
        ks = [pooled(a) @ pooled(b).T / a.shape[-1] for a, b in zip(f1, f2)]
        total = ks if total is None else [t + k for t, k in zip(total, ks)]
    return [t / len(params_list) for t in total]


def _fold(op, dh):
    """A linear op of (n, ...) arrays applied to each of the P tangents in dh (P, n, ...)."""
    out = op(dh.reshape((-1,) + dh.shape[2:]))
    return out.reshape(dh.shape[:2] + out.shape[1:])


def _tangent(layer, h, dh, params, offset, parameterization):
    """Forward-mode step: the layer's output and its derivative along each parameter direction."""
    kind = type(layer).__name__
    if kind in ("Dense", "Conv", "ConvTranspose"):
        W, b = next(params)
        s, bs = _affine_scales(layer, W, parameterization)
        lin = _linear(kind, layer)
        z = s * lin(h, W) + (0.0 if b is None else bs * b)
        dz = s * _fold(lambda a: lin(a, W), dh)
        for k, index in enumerate(np.ndindex(*W.shape)):
            unit = np.zeros_like(W)
            unit[index] = 1.0
            dz[offset + k] += s * lin(h, unit)
        offset += W.size
        if b is not None:
            for o in range(b.size):
                dz[offset + o][..., o] += bs
            offset += b.size
        return z, dz, offset
    if kind == "Activation":
        phi, dphi = _phi(layer)
        return phi(h), dphi(h) * dh, offset
    if kind == "MaxPool":
        dims = h.ndim - 2
        window = _tuple(layer.window, dims)
        stride = window if layer.stride is None else _tuple(layer.stride, dims)
        windows = _windows(h, window, stride, layer.padding, np.nan)
        first = np.nanargmax(windows, axis=0)[None]  # ties go to the first position of the window
        tangents = np.stack([_windows(t, window, stride, layer.padding, 0.0) for t in dh], axis=1)
        return (np.take_along_axis(windows, first, 0)[0],
                np.take_along_axis(tangents, np.broadcast_to(first[:, None], (1,) + tangents.shape[1:]), 0)[0], offset)
    if kind == "Residual":
        block, dblock = h, dh
        for inner in layer.block:
            block, dblock, offset = _tangent(inner, block, dblock, params, offset, parameterization)
        return h + layer.scale * block, dh + layer.scale * dblock, offset
    # AvgPool, SumPool, GlobalAvgPool, GlobalSumPool, Aggregate and Flatten are linear in their input.
    op = lambda a: apply(layer, a, iter(()), parameterization)
    return op(h), _fold(op, dh), offset


def jacobian(network, params, x):
    """d f_c(x) / d theta_p (n, C, P), parameters flattened in sample_params order (W row-major,
    then b, layer by layer), by forward-mode differentiation: each layer maps the output's
    derivative along every parameter direction at once (exact, no backpropagation rule)."""
    n_params = sum(np.size(W) + (0 if b is None else np.size(b)) for W, b in params)
    h = np.asarray(x, dtype=np.float64)
    dh = np.zeros((n_params,) + h.shape)
    it, offset = iter(params), 0
    for layer in network.layers:
        h, dh, offset = _tangent(layer, h, dh, it, offset, network.parameterization)
    return np.moveaxis(dh, 0, -1)


def parameter_slices(params):
    """(layer, "weights" | "biases") -> slice of the flat parameter vector of `jacobian`."""
    out, pos = {}, 0
    for l, (W, b) in enumerate(params):
        out[(l, "weights")] = slice(pos, pos + np.size(W))
        pos += np.size(W)
        if b is not None:
            out[(l, "biases")] = slice(pos, pos + np.size(b))
            pos += np.size(b)
    return out


def points(n, shape, seed=0):
    """n standard normal points of the given shape."""
    return np.random.default_rng(seed).standard_normal((n,) + shape)


def rel(a, b):
    """The largest entry of |a - b| relative to the largest of |b|."""
    return np.abs(a - b).max() / np.abs(b).max()


def check_logits_and_tangent_kernel(net, shape, n):
    """The engine's forward pass and its empirical NTK (its backward pass) on n points against this module's
    forward pass and forward-mode Jacobian of the same parameters."""
    import nnpk
    from reference import ntk_from_jacobians

    x = points(n, shape)
    params = nnpk.sample_params(net, shape, seed=2, index=1)
    assert rel(nnpk.initial_outputs(x, net, seed=2, index=1), forward(net, params, x)[-1]) < 1e-12
    ntk = nnpk.empirical(x, arch=net, params=params, get="ntk")
    j = jacobian(net, params, x)
    assert rel(ntk, ntk_from_jacobians(j, j)) < 1e-11


def check_monte_carlo_near_analytic(x, arch, get, n_networks=24, channels=256):
    """Monte Carlo at `channels` channels within 4 standard errors (relative) plus the finite-width term 4 / channels
    of the infinite-width kernel; arch(ch) builds the network at ch channels (analytic: arch(1))."""
    import nnpk

    exact = nnpk.analytic(x, arch=arch(1), get=get)
    estimate, info = nnpk.monte_carlo(x, arch=arch(channels), n_networks=n_networks, seed=4, get=get,
                                      return_standard_error=True)
    error = np.linalg.norm(estimate - exact) / np.linalg.norm(exact)
    tolerance = 4 * info["standard_error"] + 4 / channels  # the standard error is relative
    assert error < tolerance < 0.15


def check_dense_activation_near_analytic(x, act, width, n_networks):
    """Dense -> act -> Dense: Monte Carlo NNGP (readout estimator) and NTK at `width` within 5 standard errors
    (relative) plus 8 / width of the analytic kernels."""
    import nnpk

    arch = lambda w: nnpk.Network([nnpk.Dense(w, b_std=0.2), act, nnpk.Dense(2)])  # noqa: E731
    exact = nnpk.analytic(x, arch=arch(1), get=("nngp", "ntk"))
    for name, options in (("nngp", dict(estimator="readout")), ("ntk", {})):
        estimate, info = nnpk.monte_carlo(x, arch=arch(width), n_networks=n_networks, seed=3, get=name,
                                          return_standard_error=True, **options)
        error = np.linalg.norm(estimate - exact[name]) / np.linalg.norm(exact[name])
        assert error < 5 * info["standard_error"] + 8 / width < 0.2, (name, error)
