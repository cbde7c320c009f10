"""Infinite-width (analytic) NNGP and NTK of random networks."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

from . import _core
from ._monte_carlo import _prepare
from ._threads import resolve_n_threads
from ._validate import check_int, check_memory

__all__ = ["analytic", "DEFAULT_QUADRATURE_ORDER"]

DEFAULT_QUADRATURE_ORDER = 40
_KERNELS = ("nngp", "ntk")
_TILE = 64

Kernels = Union[np.ndarray, List[np.ndarray]]


def _check_get(get) -> Tuple[str, ...]:
    names = (get,) if isinstance(get, str) else get
    if not isinstance(names, (tuple, list)) or not names or len(set(names)) != len(names) or any(
        not isinstance(n, str) or n not in _KERNELS for n in names
    ):
        raise ValueError(f"get must be 'nngp', 'ntk' or a tuple of both, got {get!r}")
    return tuple(names)


def _unit_second_moment(arch) -> bool:
    return bool(arch.normalize) or arch.activation == "relu_normalized"


def _analytic_kernels(a1, a2, arch, *, layers: Sequence[int], kernels: Sequence[str], n_threads: int,
                      quadrature_order: int, closed_form: bool) -> Dict[str, List[np.ndarray]]:
    """The requested kernels of the requested layers (ascending, kernel_layers indexing)."""
    n2 = a1.shape[0] if a2 is None else a2.shape[0]
    n_out = len(layers) * len(kernels)
    check_memory(8 * a1.shape[0] * n2 * n_out, f"the output ({n_out} x {a1.shape[0]} x {n2} float64)")
    nngp, ntk = _core.analytic_kernels(
        a1, a2, arch._spec(a1.shape[1]), getattr(_core.Parameterization, arch.parameterization),
        "nngp" in kernels, "ntk" in kernels, list(layers), closed_form, quadrature_order,
        _unit_second_moment(arch), n_threads, _TILE)
    return {"nngp": nngp, "ntk": ntk}


def analytic(x1, x2=None, *, arch, get: Union[str, Sequence[str]] = "nngp", layers: str = "output",
             n_threads=None, quadrature_order: int = DEFAULT_QUADRATURE_ORDER,
             closed_form: bool = True) -> Union[Kernels, Dict[str, Kernels]]:
    """The infinite-width NNGP and/or NTK of ``arch`` between the rows of x1 and x2.

    The exact layer recursion of CONVENTIONS.md ("Infinite-width (analytic) kernels"), in
    float64: ``Sigma^0 = x . x' / d``; each layer's affine step (per-layer ``W_std``,
    ``b_std``, either parameterization; under "standard" the NTK uses the finite widths
    ``n_{l-1}`` as neural-tangents does), then the activation's dual map. It is the limit of
    ``nnpk.monte_carlo`` as the hidden widths and the number of networks grow.

    The dual maps are closed forms for relu, leaky_relu, abs (``a min(z,0) + b max(z,0)``),
    erf, identity and relu_normalized, and for ``normalize=True`` versions of them (through
    the first moments: ``E[phi_n(u) phi_n(v)] = (E[phi(u) phi(v)] - mu E[phi(u)] - mu E[phi(v)]
    + mu^2) / s^2`` for ``phi_n = (phi - mu) / s``).
    Every other activation (tanh, sigmoid, gelu, softplus, sin and their normalised versions)
    is integrated over the bivariate normal by Gauss-Legendre panels split where each
    argument crosses 0 (see ``quadrature_order``).

    Correlations are clamped to [-1, 1]; a zero input gives ``theta = pi/2`` rather than NaN;
    the diagonal of a normalised activation's kernel stays exactly 1 on inputs with
    ``x . x / d = 1`` (W_std=1, no bias) at any depth. The work is tiled over the output on
    ``n_threads`` threads (one triangle when x2 is None) and every entry is computed by the
    same operations whatever the thread count, so the result is bitwise reproducible.

    Parameters
    ----------
    x1 : (n1, d) array
    x2 : (n2, d) array, optional
        Defaults to x1 (then only one triangle is computed and mirrored).
    arch : nnpk.MLP
        Only the depth, activation, stds and parameterization matter, and the hidden widths
        only for the "standard" NTK.
    get : "nngp", "ntk" or a tuple of both
        With a tuple a dict keyed by kernel name is returned; both come from one recursion.
    layers : "output" or "all"
        "all" returns a list of every hidden layer's kernel, then the output kernel, from one
        recursion. Hidden layer l's NNGP is the conjugate kernel ``h^l . h^l' / n_l`` of its
        post-activation features (what ``monte_carlo(layers="all")`` estimates); its NTK is
        the tangent kernel of ``h^l`` with respect to the parameters of layers 1..l, per unit
        (``Theta * Sigma_dot`` after its nonlinearity). The output kernels are after the
        readout's affine step.
    n_threads : int, optional
        None: all physical cores; -1 all, -2 all but one; 0 is an error.
    quadrature_order : int
        Gauss-Legendre nodes per panel (each integral has 2 to 4 panels over +-9 standard
        deviations). Relative to ``sqrt(K(x,x) K(x',x'))``, the default 40 is accurate to 4e-9
        on the smooth activations for pre-activation variances up to 9 and any correlation
        (erf and tanh are the hardest); at variance 25 the error grows to 2e-6, and 48 brings
        it back to 3e-8. Plain Gauss-Hermite is not used: it converges only algebraically
        across relu's kink and slowly where phi' is peaked (tanh at variance 9: 5e-3 at order
        96). A quadrature entry costs 4 to 8 times ``quadrature_order**2`` evaluations of
        phi and phi' per layer, so these activations are far slower than the closed forms.
    closed_form : bool
        False integrates every activation by quadrature, closed forms included (for checking
        the quadrature against them).

    Returns
    -------
    (n1, n2) float64 array, a list of them for ``layers="all"``, or a dict of either keyed
    "nngp"/"ntk" when ``get`` is a tuple.
    """
    arch, a1, a2 = _prepare(x1, x2, arch, "float64")
    kernels = _check_get(get)
    if layers not in ("output", "all"):
        raise ValueError(f"layers must be 'output' or 'all', got {layers!r}")
    quadrature_order = check_int(quadrature_order, "quadrature_order", minimum=1, maximum=4096)
    if not isinstance(closed_form, (bool, np.bool_)):
        raise TypeError(f"closed_form must be a bool, got {closed_form!r}")
    threads = resolve_n_threads(n_threads)
    indices = list(range(arch.n_layers)) if layers == "all" else [arch.n_layers - 1]
    out = _analytic_kernels(a1, a2, arch, layers=indices, kernels=kernels, n_threads=threads,
                            quadrature_order=quadrature_order, closed_form=bool(closed_form))
    result = {name: (out[name] if layers == "all" else out[name][0]) for name in kernels}
    return result[get] if isinstance(get, str) else result
