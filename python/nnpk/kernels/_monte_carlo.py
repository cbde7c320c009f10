"""Monte Carlo kernels of random networks."""

from __future__ import annotations

import numpy as np

from .._threads import resolve_n_threads
from .._validate import check_int
from ..architectures import SEED_MAX, check_arch, check_differentiable
from ..architectures._params import prepare_network_points
from ._plans import check_estimator, check_tangent_network, default_estimator, nngp_plan, tangent_plan
from ._streaming import run_plan
from ._tangent import arrange_tangent, parse_get, parse_wrt

__all__ = ["monte_carlo"]


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


def monte_carlo(x1, x2=None, *, arch, n_networks: int, seed: int = 0, get="nngp", layers: str = "output",
                estimator=None, wrt="all", per_layer: bool = False, per_logit: bool = False, dtype="float64",
                n_threads=None, progress: bool = False, return_standard_error: bool = False, tol=None,
                max_networks=None):
    """Monte Carlo estimate of a random network's kernels at finite width.

    NNGP (the prior kernel, per logit): the expectation over
    random networks of ``f(x1) . f(x2) / C``. NTK at initialisation: the
    expectation of ``sum_p df(x1)/dtheta_p . df(x2)/dtheta_p / C``, the
    derivative with respect to the stored parameters of the parameterization,
    computed layer by layer (never a Jacobian). Network m is drawn by
    ``nnpk.sample_params(arch, d, seed, m)``. Results are bitwise the same for
    any thread count, and the sums over M networks are a prefix of those over 2M.

    Parameters
    ----------
    x1 : (n1, d) array, or (n1, ...) points of the shape the network takes
    x2 : (n2, ...) array, optional
        Defaults to x1 (then only one triangle is computed).
    arch : nnpk.Network (an nnpk.MLP is one)
        The NTK's layer indices (``wrt``, ``per_layer``) are its Dense and Conv layers in
        order, as in ``sample_params``.
    n_networks : int
        Number of random networks M (with ``tol``: the first ones).
    seed : int
        0 <= seed < 2**64.
    get : "nngp", "ntk", or a tuple of them
        A tuple returns a dict keyed by name.
    layers : "output" or "all"
        For the NNGP: "all" returns a list, the kernel ``h^l . h^l' / n_l`` of
        every layer of ``arch.kernel_layers()`` (an MLP's hidden layers; every layer of
        another Network, a spatial layer's features averaged over positions), the output
        kernel last.
    estimator : "conditional", "readout" or "sampled", optional
        How the NNGP is estimated; all three have the same expectation, the
        finite-width kernel. The default is the best estimate per second:
        "conditional" where the network ends Dense -> activation -> Dense and the
        activation's dual map has a closed form (relu, leaky_relu, abs, erf, identity,
        relu_normalized, normalised or not), else "readout" where it ends with Dense
        (a quadrature dual evaluates a bivariate quadrature for every kernel entry of
        every network), else "sampled". "sampled" averages ``f . f' / C`` over sampled
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
    numpy.ndarray, list or dict
        The (n1, n2) float64 kernel; a list of them for ``layers="all"``; a dict
        for a tuple ``get``; with return_standard_error, ``(result, info)``.
    """
    compiled, a1, a2 = prepare_network_points(x1, x2, check_arch(arch, "nnpk.monte_carlo"), dtype)
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
    check_estimator(arch, estimator)
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
        check_tangent_network(compiled)
        check_differentiable(arch, "nnpk.monte_carlo(get='ntk')")
        plans["ntk"] = tangent_plan(a1, a2, compiled, seed=seed, with_nngp=nngp_in_tangent, weights=weights,
                                    biases=biases, per_layer=per_layer, per_logit=per_logit, n_threads=threads)
    if "nngp" in names and not nngp_in_tangent:
        plans["nngp"] = nngp_plan(a1, a2, arch, compiled, seed=seed, layers=layers, estimator=estimator,
                                  n_threads=threads)

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
