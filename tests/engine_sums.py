"""The engine's raw float64 sums of an MLP's kernels, by its layer numbering (hidden layers 0..L-1, then the
readout), for tests of determinism, resumption and in-place accumulation."""

from nnpk.architectures._params import prepare_network_points
from nnpk.kernels import _plans


def _points(x1, x2, arch):
    return prepare_network_points(x1, x2, arch, x1.dtype.name)


def kernel_sums(x1, x2, arch, *, all_layers, kernel_layers=None, **kw):
    """Sums of h^l . h^l' for the layers `kernel_layers` (all, or the readout's)."""
    compiled, a1, a2 = _points(x1, x2, arch)
    if kernel_layers is None:
        kernel_layers = range(arch.n_layers) if all_layers else [arch.n_layers - 1]
    nodes = [compiled.layer_nodes[arch.kernel_layers()[l]] for l in kernel_layers]
    return _plans.node_sums(a1, a2, compiled, nodes, **kw)


def conditional_sums(x1, x2, arch, *, layers, **kw):
    """Sums of the conditional kernels of hidden layers `layers`."""
    compiled, a1, a2 = _points(x1, x2, arch)
    return _plans.conditional_sums(a1, a2, compiled, arch, [arch.kernel_layers()[l] for l in layers], **kw)


def tangent_sums(x1, x2, arch, *, names, per_layer=False, per_logit=False, **kw):
    """[NNGP sums if "nngp" in names], then the tangent sums."""
    compiled, a1, a2 = _points(x1, x2, arch)
    return _plans.tangent_sums(a1, a2, compiled, nngp="nngp" in names, per_layer=per_layer, per_logit=per_logit, **kw)
