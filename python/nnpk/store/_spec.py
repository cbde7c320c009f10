"""A store's spec: the validated request (architecture, kernel, networks, inputs' checksums) as JSON-able
data, and the differences between two specs."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Dict, List, Union

import numpy as np

from .. import _core
from .._validate import check_int, compute_dtype
from .._version import __version__
from ..architectures import (
    LAYER_TYPES,
    MLP,
    SEED_MAX,
    Activation,
    Network,
    Parallel,
    Residual,
    check_arch,
    check_differentiable,
)
from ..architectures._params import DRAW_SCHEME, prepare_network_points
from ..kernels._analytic import DEFAULT_QUADRATURE_ORDER, check_analytic_network
from ..kernels._plans import CONDITIONAL_SCHEME, check_estimator, check_tangent_network, default_estimator
from ..kernels._tangent import parse_wrt
from ._layout import _FORMAT, KERNELS

# Activation parameters that only some activations take (None for the others).
_ACTIVATION_PARAMETERS = ("degree", "gamma", "coefficients")


def _layer_spec(layer) -> Union[dict, str]:
    """A layer as JSON-able data: its type and fields (tuples as lists), blocks recursively."""
    if isinstance(layer, Activation) and layer.name == "elementwise":
        raise ValueError("a store or job file cannot record Activation('elementwise', fn=...): its fn is a Python "
                         "function, not data; compute its kernels with nnpk.analytic / monte_carlo / empirical "
                         "instead")
    out: Dict[str, Any] = {"type": type(layer).__name__}
    for field in dataclasses.fields(layer):
        if not field.init:
            continue  # derived (an elementwise activation's table)
        if isinstance(layer, Activation) and field.name in ("fn", "fn_derivative"):
            continue  # None: only elementwise takes them
        value = getattr(layer, field.name)
        if isinstance(layer, Activation) and field.name in _ACTIVATION_PARAMETERS and value is None:
            continue  # not this activation's parameter: left out, as in stores made before there were any
        if isinstance(layer, Residual) and field.name == "block":
            value = [_layer_spec(inner) for inner in value]
        elif isinstance(layer, Parallel) and field.name == "branches":
            value = [[_layer_spec(inner) for inner in branch] for branch in value]
        elif isinstance(value, Activation):  # a Recurrent layer's activation
            value = _layer_spec(value)
        if isinstance(value, tuple):  # an Aggregate's pattern is a tuple of tuples: nested lists
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        if callable(value) and not isinstance(value, type):
            raise ValueError(f"{layer.describe()}: its {field.name} is a Python function, which a store cannot keep "
                             f"as JSON data (nor check on resume); use {field.name}=None to store it")
        out[field.name] = value
    return out


_LAYERS = {cls.__name__: cls for cls in LAYER_TYPES}


def _layer_from_spec(spec):
    """A layer from `_layer_spec` data (or a job file's table); an activation name stays a name."""
    if isinstance(spec, str):
        return spec
    if not isinstance(spec, dict) or spec.get("type") not in _LAYERS:
        raise ValueError(f"a layer must be an activation name or a table with type = one of "
                         f"{', '.join(_LAYERS)}, got {spec!r}")
    if spec["type"] == "Activation" and (spec.get("name") == "elementwise" or "fn" in spec or "fn_derivative" in spec):
        raise ValueError("a store or job file cannot describe Activation('elementwise', fn=...): its fn is a Python "
                         "function, not data; build the nnpk.Network in Python instead")
    kwargs = {key: tuple(value) if isinstance(value, list) else value for key, value in spec.items() if key != "type"}
    if isinstance(kwargs.get("activation"), dict):  # a Recurrent layer's activation
        kwargs["activation"] = _layer_from_spec(kwargs["activation"])
    if spec["type"] == "Residual" and isinstance(spec.get("block"), list):
        kwargs["block"] = tuple(_layer_from_spec(inner) for inner in spec["block"])
    if spec["type"] == "Parallel" and isinstance(spec.get("branches"), list):
        kwargs["branches"] = tuple(tuple(_layer_from_spec(inner) for inner in branch) if isinstance(branch, list)
                                   else _layer_from_spec(branch) for branch in spec["branches"])
    return _LAYERS[spec["type"]](**kwargs)


def _arch_from_spec(spec: dict) -> Union[MLP, Network]:
    """The architecture `_arch_spec` describes (also the [arch] table of a job file)."""
    if spec.get("type") == "Network":
        options = {key: value for key, value in spec.items() if key not in ("type", "layers")}
        layers = spec.get("layers")
        if not isinstance(layers, list):
            raise ValueError(f"a Network needs layers = [...], got {layers!r}")
        return Network(layers=tuple(_layer_from_spec(layer) for layer in layers), **options)
    return MLP(**spec)


def _arch_spec(arch: Network) -> dict:
    if not isinstance(arch, MLP):
        return {"type": "Network", "layers": [_layer_spec(layer) for layer in arch.layers],
                "parameterization": arch.parameterization, "init": arch.init}
    # Per-layer stds as floats: MLP(W_std=1) and MLP(W_std=[1.0, 1.0]) are the same network.
    spec = {
        "hidden": list(arch.hidden),
        "out": arch.out,
        "activation": arch.activation,
        "W_std": list(arch.w_stds),
        "b_std": list(arch.b_stds),
        "parameterization": arch.parameterization,
        "normalize": bool(arch.normalize),
        "slope": arch.slope,
    }
    if arch.init != "gaussian":  # stores made before MLPs had init schemes stay resumable
        spec["init"] = arch.init
    for name in _ACTIVATION_PARAMETERS:  # likewise: only an activation's own parameters
        value = getattr(arch, name)
        if value is not None:
            spec[name] = list(value) if isinstance(value, tuple) else value
    return spec


def _points_spec(a: np.ndarray) -> dict:
    """SHA-256 over dtype, shape and bytes of the forward-pass inputs."""
    digest = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    digest.update(a.data.cast("B"))
    return {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": digest.hexdigest()}


def _check_tile_size(tile_size) -> int:
    tile_size = check_int(tile_size, "tile_size", minimum=1)
    if tile_size % _core.ROW_QUANTUM:
        raise ValueError(f"tile_size must be a multiple of {_core.ROW_QUANTUM}, got {tile_size} "
                         f"(e.g. {max(1, round(tile_size / _core.ROW_QUANTUM)) * _core.ROW_QUANTUM})")
    return tile_size


def _make_spec(x1, x2, *, arch, kernel, n_networks, seed, estimator, wrt, dtype, quadrature_order, closed_form,
               tile_size):
    """(spec, a1, a2): the validated request and its inputs in the forward-pass dtype.

    Settings that do not apply to the kernel are None in the spec."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    analytic = kernel.startswith("analytic_")
    if analytic:
        for name, value in (("n_networks", n_networks), ("estimator", estimator)):
            if value is not None:
                raise ValueError(f"{name} applies to Monte Carlo kernels, not kernel={kernel!r}")
        if compute_dtype(dtype) is not np.float64:
            raise ValueError(f"kernel={kernel!r} is computed in float64, got dtype={dtype!r}")
        quadrature_order = check_int(DEFAULT_QUADRATURE_ORDER if quadrature_order is None else quadrature_order,
                                     "quadrature_order", minimum=1, maximum=4096)
        closed_form = True if closed_form is None else closed_form
        if not isinstance(closed_form, (bool, np.bool_)):
            raise TypeError(f"closed_form must be a bool, got {closed_form!r}")
        closed_form, n_networks, seed = bool(closed_form), None, None
    else:
        for name, value in (("quadrature_order", quadrature_order), ("closed_form", closed_form)):
            if value is not None:
                raise ValueError(f"{name} applies to analytic kernels, not kernel={kernel!r}")
        if n_networks is None:
            raise TypeError(f"kernel={kernel!r} needs n_networks")
        n_networks = check_int(n_networks, "n_networks", minimum=1)
        seed = check_int(seed, "seed", minimum=0, maximum=SEED_MAX)
        if kernel == "ntk" and estimator is not None:
            raise ValueError("estimator applies to the NNGP, not kernel='ntk'")
    # Checked as monte_carlo and analytic check it, before any store exists.
    compiled, a1, a2 = prepare_network_points(x1, x2, check_arch(arch, "nnpk.compute_to_store"), dtype)
    if kernel == "nngp" and estimator is None:  # as monte_carlo chooses
        estimator = default_estimator(arch)
    if kernel.endswith("ntk"):
        check_differentiable(arch, f"compute_to_store(kernel={kernel!r})")
    if analytic:
        check_analytic_network(arch, compiled.input_shape)
    elif kernel == "ntk":
        check_tangent_network(compiled)
    else:
        check_estimator(arch, estimator)
    # A Network's points are stored flat, with their shape here; an MLP's are flat already.
    point_shape = None if isinstance(arch, MLP) else list(compiled.input_shape)
    weights, biases = parse_wrt(wrt, arch.has_bias)
    spec = {
        "format": _FORMAT,
        "nnpk_version": __version__,
        "kernel": kernel,
        "arch": _arch_spec(arch),
        "n_networks": n_networks,
        "seed": seed,
        "draws": None if analytic else DRAW_SCHEME,
        "dtype": a1.dtype.name,
        "estimator": estimator,
        "conditional": CONDITIONAL_SCHEME if kernel == "nngp" and estimator == "conditional" else None,
        "wrt": {"weights": weights, "biases": biases} if kernel == "ntk" else None,
        "quadrature_order": quadrature_order,
        "closed_form": closed_form,
        "tile_size": _check_tile_size(tile_size),
        "shape": [a1.shape[0], a1.shape[0] if a2 is None else a2.shape[0]],
        "point_shape": point_shape,
        "symmetric": a2 is None,
        "inputs": {"x1": _points_spec(a1), "x2": None if a2 is None else _points_spec(a2)},
    }
    return spec, a1, a2


def _differences(stored, wanted, prefix="") -> List[str]:
    if isinstance(stored, dict) and isinstance(wanted, dict):
        out = []
        for key in sorted(set(stored) | set(wanted)):
            out += _differences(stored.get(key), wanted.get(key), f"{prefix}{key}.")
        return out
    if stored != wanted:
        return [f"{prefix[:-1]} is {stored!r} in the store, {wanted!r} here"]
    return []
