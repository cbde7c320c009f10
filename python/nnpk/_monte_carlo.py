"""Monte Carlo kernels of random networks."""

from __future__ import annotations

from typing import List, Union

import numpy as np

from . import _core
from ._arch import CLOSED_FORM_DUALS
from ._architecture import Network
from ._params import SEED_MAX, _check_arch
from ._threads import resolve_n_threads
from ._sequential import (check_network_estimator, check_tangent_network, network_nngp_plan, network_tangent_sums,
                          prepare_network_points, readout_layer)
from ._streaming import KernelMap, Plan, run_plan
from ._tangent import arrange_tangent, check_tangent_memory, feature_bytes, parse_get, parse_wrt, tangent_maps
from ._validate import as_points, check_int, check_memory, compute_dtype

__all__ = ["monte_carlo"]

_DEFAULT_TILE_ROWS = 2 * _core.ROW_QUANTUM
_DEFAULT_GRAM_TILE = 256
_DEFAULT_PANEL_COLS = 128
_DEFAULT_NTK_TILE = 4 * _core.ROW_QUANTUM


class _Progress:
    """Networks finished, shown with tqdm."""

    def __init__(self, total: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="network", desc="nnpk")
        self.done = 0

    def __call__(self, done: int) -> None:
        if done > self.done:
            self.bar.update(done - self.done)
            self.done = done

    def close(self) -> None:
        self.bar.close()


def _prepare(x1, x2, arch, dtype):
    arch = _check_arch(arch)
    dt = compute_dtype(dtype)
    a1 = as_points(x1, "x1", dt)
    a2 = None if x2 is None else as_points(x2, "x2", dt, n_features=a1.shape[1], other="x1")
    return arch, a1, a2


def _kernel_sums(a1, a2, arch, *, seed, start, stop, all_layers, n_threads, progress=None, initial=None,
                 tile_rows=_DEFAULT_TILE_ROWS, gram_tile=_DEFAULT_GRAM_TILE, panel_cols=_DEFAULT_PANEL_COLS,
                 kernel_layers=None, in_place=False):
    """Float64 sums over networks [start, stop) of each kernel's un-normalised Gram.

    The kernels are every layer's (all_layers) or the output's, or the layers
    listed in `kernel_layers` (0-based, ascending; the readout is n_layers - 1).
    `initial` (the sums over networks [0, start)) continues a run: the result is
    bitwise the sums over [0, stop). With `in_place` the sums accumulate into the arrays of
    `initial` (C-contiguous float64, writeable), which are returned."""
    if kernel_layers is None:
        kernel_layers = list(range(arch.n_layers)) if all_layers else [arch.n_layers - 1]
    n_kernels = len(kernel_layers)
    n2 = a1.shape[0] if a2 is None else a2.shape[0]
    check_memory(8 * a1.shape[0] * n2 * n_kernels, f"the output ({n_kernels} x {a1.shape[0]} x {n2} float64)")
    spec = arch._spec(a1.shape[1])
    return _core.monte_carlo_sums(a1, a2, spec, seed, start, stop, list(kernel_layers), n_threads,
                                  tile_rows, gram_tile, panel_cols, progress, initial, in_place)


def _tangent_sums(a1, a2, arch, *, seed, start, stop, names, weights, biases, per_layer, per_logit, n_threads,
                  progress=None, initial=None, tile_rows=_DEFAULT_TILE_ROWS, gram_tile=_DEFAULT_NTK_TILE,
                  panel_cols=_DEFAULT_PANEL_COLS, in_place=False):
    """Float64 sums over networks [start, stop): [nngp], then the tangent outputs (`initial`,
    `in_place` as in _kernel_sums)."""
    n1, d = a1.shape
    n2 = n1 if a2 is None else a2.shape[0]
    n_out = ("nngp" in names) + (sum(weights) + sum(biases) if per_layer else 1)
    features = feature_bytes(arch, d, n1, weights, a1.itemsize, per_logit)
    if a2 is not None:
        features += feature_bytes(arch, d, n2, weights, a1.itemsize, per_logit)
    check_tangent_memory(n1, n2, n_out, arch.out, per_logit, features)
    spec = arch._spec(d)
    return _core.tangent_sums(a1, a2, spec, seed, start, stop, weights, biases, "nngp" in names, per_layer,
                              per_logit, n_threads, tile_rows, gram_tile, panel_cols, progress, initial, in_place)


ESTIMATORS = ("sampled", "readout", "conditional")


def default_estimator(arch) -> str:
    """The NNGP estimator monte_carlo uses when none is given, the best estimate per second: for an
    MLP the conditional estimator where the dual map has a closed form, else the readout one; for a
    Network the readout one where it ends with Dense, else the sampled one."""
    if isinstance(arch, Network):
        return "readout" if readout_layer(arch) is not None else "sampled"
    return "conditional" if arch.activation in CLOSED_FORM_DUALS else "readout"


def _conditional_sums(a1, a2, arch, *, seed, start, stop, layers, n_threads, progress=None, initial=None,
                      tile_rows=_DEFAULT_TILE_ROWS, gram_tile=_DEFAULT_NTK_TILE, in_place=False):
    """Float64 sums over networks [start, stop) of the conditional kernels of hidden `layers`
    (`initial`, `in_place` as in _kernel_sums)."""
    n1 = a1.shape[0]
    n2 = n1 if a2 is None else a2.shape[0]
    widths = arch.widths(a1.shape[1])
    features = sum(widths[l] for l in layers) * (-(-n1 // 96) * 96 + (0 if a2 is None else -(-n2 // 96) * 96))
    check_memory(8 * n1 * n2 * len(layers) + features * a1.itemsize,
                 f"the output ({len(layers)} x {n1} x {n2} float64) and its per-network features")
    return _core.conditional_sums(a1, a2, arch._spec(a1.shape[1]), arch._unit_second_moment, seed, start, stop,
                                  list(layers), n_threads, tile_rows, gram_tile, progress, initial, in_place)


def _input_kernel(a1, a2):
    x1 = a1.astype(np.float64, copy=False)
    x2 = x1 if a2 is None else a2.astype(np.float64, copy=False)
    return x1 @ x2.T / x1.shape[1]


def _nngp_plan(a1, a2, arch, *, seed, layers, estimator, n_threads) -> Plan:
    """The NNGP by `estimator`: kernels of every layer (layers="all") or the output's."""
    L = len(arch.hidden)
    all_layers = layers == "all"
    kw = dict(seed=seed, n_threads=n_threads)
    if estimator == "sampled":
        kernel_layers = list(range(arch.n_layers)) if all_layers else [L]
        widths = arch.hidden + (arch.out,)
        run = lambda start, stop, initial, progress=None, in_place=False: _kernel_sums(
            a1, a2, arch, start=start, stop=stop, all_layers=False, kernel_layers=kernel_layers, initial=initial,
            progress=progress, in_place=in_place, **kw)
        return Plan(run, [KernelMap(i, 1.0 / widths[l]) for i, l in enumerate(kernel_layers)])
    # readout and conditional: hidden kernels estimated, the readout integrated exactly
    w2 = arch.w_stds[-1] ** 2
    b2 = (arch.b_stds[-1] or 0.0) ** 2
    if L == 0:
        return Plan(lambda *args, **kwargs: [_input_kernel(a1, a2)], [KernelMap(0, w2, b2)], exact=True)
    hidden = list(range(L)) if all_layers else [L - 1]
    if estimator == "readout":
        run = lambda start, stop, initial, progress=None, in_place=False: _kernel_sums(
            a1, a2, arch, start=start, stop=stop, all_layers=False, kernel_layers=hidden, initial=initial,
            progress=progress, in_place=in_place, **kw)
        scales = [1.0 / arch.hidden[l] for l in hidden]
    else:
        run = lambda start, stop, initial, progress=None, in_place=False: _conditional_sums(
            a1, a2, arch, start=start, stop=stop, layers=hidden, initial=initial, progress=progress,
            in_place=in_place, **kw)
        scales = [1.0] * len(hidden)
    maps = [KernelMap(i, scales[i]) for i in range(len(hidden))] if all_layers else []
    maps.append(KernelMap(len(hidden) - 1, w2 * scales[-1], b2))
    # one hidden layer: its conditional kernel depends on x alone, exact with one network
    return Plan(run, maps, exact=estimator == "conditional" and L == 1)


def _tangent_plan(a1, a2, arch, compiled, *, seed, with_nngp, weights, biases, per_layer, per_logit,
                  n_threads) -> Plan:
    """The NTK (and with_nngp the NNGP from the same passes) of an MLP, or of a Network compiled
    for the points (`compiled`, else None)."""
    names = ("nngp", "ntk") if with_nngp else ("ntk",)
    n_out = sum(weights) + sum(biases) if per_layer else 1
    kw = dict(weights=weights, biases=biases, per_layer=per_layer, per_logit=per_logit, n_threads=n_threads)
    if compiled is None:
        out = arch.out
        run = lambda start, stop, initial, progress=None, in_place=False: _tangent_sums(
            a1, a2, arch, seed=seed, start=start, stop=stop, names=names, initial=initial, progress=progress,
            in_place=in_place, **kw)
    else:
        out = compiled.out
        run = lambda start, stop, initial, progress=None, in_place=False: network_tangent_sums(
            a1, a2, compiled, seed=seed, start=start, stop=stop, nngp=with_nngp, initial=initial, progress=progress,
            in_place=in_place, **kw)
    maps = [KernelMap(0, 1.0 / out)] if with_nngp else []
    return Plan(run, maps + tangent_maps(int(with_nngp), n_out, out, per_logit))


def monte_carlo(x1, x2=None, *, arch, n_networks: int, seed: int = 0, get="nngp", layers: str = "output",
                estimator=None, wrt="all", per_layer: bool = False, per_logit: bool = False, dtype="float64",
                n_threads=None, progress: bool = False, return_standard_error: bool = False, tol=None,
                max_networks=None):
    """Monte Carlo estimate of a random network's kernels at finite width.

    NNGP (the prior kernel, per logit; CONVENTIONS.md): the expectation over
    random networks of ``f(x1) . f(x2) / C``. NTK at initialisation: the
    expectation of ``sum_p df(x1)/dtheta_p . df(x2)/dtheta_p / C``, the
    derivative with respect to the stored parameters of the parameterization,
    computed layer by layer (never a Jacobian). Network m is drawn by
    ``nnpk.sample_params(arch, d, seed, m)``. Results are bitwise the same for
    any thread count, and the sums over M networks are a prefix of those over 2M.

    Parameters
    ----------
    x1 : (n1, d) array, or (n1, ...) points of the shape an nnpk.Network takes
    x2 : (n2, d) array, optional
        Defaults to x1 (then only one triangle is computed).
    arch : nnpk.MLP or nnpk.Network
        For a Network, the NTK's layer indices (``wrt``, ``per_layer``) are its Dense and Conv
        layers in order, as in ``sample_params``.
    n_networks : int
        Number of random networks M (with ``tol``: the first ones).
    seed : int
        0 <= seed < 2**64.
    get : "nngp", "ntk", or a tuple of them
        A tuple returns a dict keyed by name.
    layers : "output" or "all"
        For the NNGP: "all" returns a list, the kernel ``h^l . h^l' / n_l`` of
        every hidden layer, then the output kernel.
    estimator : "conditional", "readout" or "sampled", optional
        How the NNGP is estimated; all three have the same expectation, the
        finite-width kernel. The default is the best estimate per second:
        "conditional" where the activation's dual map has a closed form (relu,
        leaky_relu, abs, erf, identity, relu_normalized, normalised or not),
        "readout" otherwise, since there "conditional" evaluates a bivariate
        quadrature for every kernel entry of every network. "sampled" averages ``f . f' / C`` over sampled
        networks: the features of specific networks, what other tools compute
        (with get=("nngp", "ntk") it comes from the NTK's own passes).
        "readout" integrates the linear readout exactly: ``W_std^2 h_L . h_L' /
        n_L + b_std^2`` on the last hidden layer. "conditional" also integrates
        the last hidden layer, given the layer below, by the activation's dual
        map (as in ``nnpk.analytic``): far less variance per network, exact for
        one hidden layer. With layers="all" each layer gets the same treatment:
        a hidden layer's kernel is sampled ("sampled", "readout") or integrated
        over its own weights ("conditional").
    wrt : "all", "weights", "biases", "readout" or a list of layer indices
        Which parameters the NTK differentiates: layer indices are positions in
        ``sample_params`` (0 .. n_layers - 1; -1 is the readout), each with its
        weights and biases.
    per_layer : bool
        The NTK becomes a dict ``{"total": K, "weights": [K_l or None, ...],
        "biases": [K_l or None, ...]}``: each included layer's weight and bias
        shares, which sum to the total.
    per_logit : bool
        The NTK is returned per pair of logits, shape (n1, n2, C, C), not traced
        (the traced kernel is the mean of its diagonal over c).
    dtype : "float32" or "float64"
        Precision of the forward and backward passes; accumulation is always float64.
    n_threads : int, optional
        None: all physical cores; -1 all, -2 all but one; 0 is an error.
    progress : bool
        Show a progress bar.
    return_standard_error : bool
        Also return a dict ``{"standard_error", "n_networks", "n_batches"}``:
        the relative Frobenius standard error ``||K - E K||_F / ||K||_F`` of each
        returned kernel, from batch means over disjoint batches of networks
        (the estimate itself is bitwise the unbatched one).
    tol : float, optional
        Add networks, in batches of ``ceil(n_networks / 4)``, until every
        kernel's relative standard error is at most ``tol`` (and at least
        ``n_networks`` networks ran), or ``max_networks`` is reached (a
        RuntimeWarning says so).
    max_networks : int, optional
        Cap for ``tol``; default ``100 * n_networks``.

    Returns
    -------
    (n1, n2) float64 array; a list of them for ``layers="all"``; a dict for a
    tuple ``get``; with return_standard_error, ``(result, info)``.
    """
    network = isinstance(_check_arch(arch, allow_network=True), Network)
    if network:
        compiled, a1, a2 = prepare_network_points(x1, x2, arch, dtype)
    else:
        arch, a1, a2 = _prepare(x1, x2, arch, dtype)
    n_networks = check_int(n_networks, "n_networks", minimum=1)
    seed = check_int(seed, "seed", minimum=0, maximum=SEED_MAX)
    names, as_dict = parse_get(get)
    if layers not in ("output", "all"):
        raise ValueError(f"layers must be 'output' or 'all', got {layers!r}")
    if layers == "all" and names != ("nngp",):
        raise ValueError("layers='all' is available for get='nngp' only; for the NTK use per_layer=True")
    if estimator is not None and "nngp" not in names:
        raise ValueError("estimator applies to the NNGP; get does not include 'nngp'")
    if estimator is None:
        estimator = default_estimator(arch)
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    if network:
        check_network_estimator(arch, estimator)
    weights, biases = parse_wrt(wrt, arch.has_bias)
    if tol is not None:
        if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating)) or not 0 < tol < 1:
            raise ValueError(f"tol must be a relative error in (0, 1), got {tol!r}")
        max_networks = check_int(100 * n_networks if max_networks is None else max_networks, "max_networks",
                                 minimum=n_networks)
    elif max_networks is not None:
        raise ValueError("max_networks applies with tol only")
    if (return_standard_error or tol is not None) and per_layer:
        raise ValueError("standard errors are for whole kernels: use per_layer=False with return_standard_error or tol")
    threads = resolve_n_threads(n_threads)

    plans = {}
    nngp_in_tangent = "ntk" in names and "nngp" in names and estimator == "sampled"
    if "ntk" in names:
        if network:
            check_tangent_network(compiled)
        plans["ntk"] = _tangent_plan(a1, a2, arch, compiled if network else None, seed=seed,
                                     with_nngp=nngp_in_tangent, weights=weights, biases=biases, per_layer=per_layer,
                                     per_logit=per_logit, n_threads=threads)
    if "nngp" in names and not nngp_in_tangent:
        kw = dict(seed=seed, layers=layers, estimator=estimator, n_threads=threads)
        plans["nngp"] = network_nngp_plan(a1, a2, arch, compiled, **kw) if network else _nngp_plan(a1, a2, arch, **kw)

    results, errors, used, batches = {}, {}, n_networks, 1
    for key, plan in plans.items():
        bar = _Progress(max_networks if tol is not None else n_networks) if progress and not plan.exact else None
        try:
            kernels, errs, used, batches = run_plan(plan, n_networks, standard_error=return_standard_error,
                                                    tol=tol, max_networks=max_networks, progress=bar)
        finally:
            if bar is not None:
                bar.close()
        if key == "ntk" and nngp_in_tangent:
            results["nngp"] = kernels.pop(0)
            errors["nngp"] = errs.pop(0) if errs else None
        if key == "ntk":
            results["ntk"] = arrange_tangent(kernels, weights, biases, per_layer)
            errors["ntk"] = errs[0] if errs else None
        else:
            results["nngp"] = kernels if layers == "all" else kernels[0]
            errors["nngp"] = (errs if layers == "all" else errs[0]) if errs else None
    result = {name: results[name] for name in names} if as_dict else results[names[0]]
    if not return_standard_error:
        return result
    se = {name: errors[name] for name in names} if as_dict else errors[names[0]]
    return result, {"standard_error": se, "n_networks": used, "n_batches": batches}
