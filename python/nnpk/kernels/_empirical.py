"""Kernels of one network with given parameters."""

from __future__ import annotations

from .. import _core
from .._threads import resolve_n_threads
from .._validate import ROW_BLOCK_ADVICE, check_memory
from ..architectures import check_arch, check_differentiable
from ..architectures._params import check_network_params, prepare_network_points
from ._plans import _DEFAULT_NTK_TILE, _DEFAULT_TILE_ROWS, check_tangent_network, network_feature_bytes
from ._streaming import KernelMap, Plan, run_plan
from ._tangent import arrange_tangent, parse_get, parse_wrt, tangent_maps

__all__ = ["empirical"]


def empirical(x1, x2=None, *, arch, params, get="ntk", wrt="all", per_layer: bool = False, per_logit: bool = False,
              dtype="float64", n_threads=None):
    """The empirical NTK (and/or NNGP) of one network with the given parameters.

    Parameters
    ----------
    x1, x2 : (n1, d), (n2, d) arrays, or points of the shape the network takes
    arch : nnpk.Network (an nnpk.MLP is one)
        The architecture the parameters belong to (its parameterization says
        how they are stored and which derivative the NTK takes).
    params : list of (W, b)
        In the layout of ``nnpk.sample_params``: W of shape (n_in, n_out) (a
        convolution's ``kernel_size + (in_channels, channels)``), b of shape
        (n_out,) or None where the layer has no bias; for instance a trained
        network's weights converted from another framework.
    get, wrt, per_layer, per_logit, dtype, n_threads
        As in ``nnpk.monte_carlo``; "nngp" here is ``f(x1) . f(x2) / C``.

    Returns
    -------
    As ``nnpk.monte_carlo`` for one network.
    """
    compiled, a1, a2 = prepare_network_points(x1, x2, check_arch(arch, "nnpk.empirical"), dtype)
    checked = check_network_params(params, compiled, a1.dtype)
    out = compiled.out
    names, as_dict = parse_get(get)
    weights, biases = parse_wrt(wrt, arch.has_bias)
    want_nngp, want_ntk = "nngp" in names, "ntk" in names
    if want_ntk:
        check_tangent_network(compiled)
        check_differentiable(arch, "nnpk.empirical(get='ntk')")
    threads = resolve_n_threads(n_threads)
    n1 = a1.shape[0]
    n2 = n1 if a2 is None else a2.shape[0]
    n_out = want_nngp + (sum(weights) + sum(biases) if per_layer else 1)
    per_entry = out**2 if per_logit else 1
    features = network_feature_bytes(compiled, n1 + (0 if a2 is None else n2), weights, biases, a1.itemsize)
    check_memory(8 * n1 * n2 * per_entry * n_out + features, f"the kernels ({n_out} x {n1} x {n2} float64)",
                 ROW_BLOCK_ADVICE)
    if not want_ntk:  # no tangent parts: the engine stores no features and forms no Gram for them
        weights = biases = [False] * len(weights)
    sums = _core.sequential_empirical_sums(a1, a2, compiled.spec, checked, weights, biases, want_nngp,
                                           per_layer and want_ntk, per_logit, threads, _DEFAULT_TILE_ROWS,
                                           _DEFAULT_NTK_TILE)
    maps = [KernelMap(0, 1.0 / out)] if want_nngp else []
    if want_ntk:
        maps += tangent_maps(int(want_nngp), len(sums) - want_nngp, out, per_logit)
    kernels, _, _, _ = run_plan(Plan(lambda *a: sums, maps, exact=True), 1, standard_error=False, tol=None,
                                max_networks=None)
    out = {}
    if want_nngp:
        out["nngp"] = kernels.pop(0)
    if want_ntk:
        out["ntk"] = arrange_tangent(kernels, weights, biases, per_layer)
    return out if as_dict else out[names[0]]
