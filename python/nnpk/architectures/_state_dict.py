"""Parameters trained elsewhere: a PyTorch or Flax state dict converted to the layout of ``sample_params``."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Dict, List, Optional, Tuple

import numpy as np

from ._layers import BatchNorm, Conv, ConvTranspose, Dense, Flatten, Parallel, Recurrent, Residual
from ._network import Network, NormLayer, ParamLayer, _param_layers
from ._params import check_arch

__all__ = ["LAYOUTS", "params_from_state_dict"]

LAYOUTS = ("torch", "flax")
# The entries each framework gives a Dense or Conv layer: (weight, bias) names.
_NAMES = {"torch": ("weight", "bias"), "flax": ("kernel", "bias")}
# ... and a batch normalisation: (gamma, beta, running mean, running variance).
_NORM_NAMES = {"torch": ("weight", "bias", "running_mean", "running_var"), "flax": ("scale", "bias", "mean", "var")}
_TORCH_IGNORED = ("num_batches_tracked",)


def params_from_state_dict(network, state_dict, *, layout: str = "torch", input_shape) -> Tuple[list, list]:
    """A network's parameters from a PyTorch or Flax state dict, in the layout of ``nnpk.sample_params``.

    The i-th parametrised layer of `network` (Dense, Conv or BatchNorm, residual blocks
    expanded) takes the i-th group of entries of `state_dict` in the mapping's order, a
    group being the entries that share a prefix: ``"features.0.weight"`` and
    ``"features.0.bias"`` in PyTorch, ``["params"]["Dense_0"]["kernel"]`` and
    ``[...]["bias"]`` in Flax (nested dicts, or flat keys joined by "/"; the top-level
    "params" and "batch_stats" collections are looked into, so that a Flax BatchNorm's
    ``scale``, ``bias``, ``mean`` and ``var`` form one group). A PyTorch BatchNorm1d/2d
    gives ``weight``, ``bias``, ``running_mean`` and ``running_var``
    (``num_batches_tracked`` is ignored). Arrays are anything ``numpy.asarray`` takes
    (torch tensors on the CPU, jax arrays).

    Conversions, so that nnpk's forward pass equals the framework's:

    - PyTorch ``Linear.weight`` (out, in) becomes W (in, out); ``Conv2d.weight``
      (out, in, kh, kw) becomes (kh, kw, in, out) and ``Conv1d.weight`` (out, in, k)
      becomes (k, in, out). Flax's Dense kernel (in, out) and Conv kernel (kh, kw, in, out)
      are nnpk's layout already. Biases are (out,) in both.
    - PyTorch flattens (channels, height, width) points channel by channel, nnpk position
      by position: the rows of the first Dense after a Flatten of spatial points, and the
      vectors of a BatchNorm between them, are permuted accordingly (Flax is channels-last
      like nnpk: nothing to permute).
    - Under the "ntk" parameterization nnpk stores ``W sqrt(fan_in) / W_std`` and
      ``b / b_std`` (its forward pass multiplies them back); under "standard" the weights
      as they are. A BatchNorm's gamma and beta are used as they are under both.

    - A ``Recurrent`` layer takes a PyTorch ``nn.RNN``'s entries ``weight_ih_l{k}`` (width,
      features), ``weight_hh_l{k}`` (width, width), ``bias_ih_l{k}`` and ``bias_hh_l{k}``
      (width,): U is ``weight_ih`` transposed, W is ``weight_hh`` transposed and b the sum of
      the two biases. A multi-layer ``nn.RNN`` (``num_layers=L``) is one group of entries for
      L consecutive Recurrent layers (``return_sequences=True`` but for the last, as
      ``nn.RNN`` feeds each layer's every step to the next). Give the Recurrent layer the
      RNN's nonlinearity ("tanh" or "relu"), and pass ``batch_first=True`` sequences to
      torch to compare. Flax has no such layout here: recurrent layers read PyTorch's only.

    The BatchNorm layers' ``eps`` must be the framework's (1e-5 by default in both) for the
    outputs to agree; its momentum only matters for further training.

    PyTorch's "same" padding (stride 1) and nnpk's agree; a symmetric integer padding
    equals nnpk's "same" only for stride 1 and odd kernels, and "valid" is padding 0.

    Parameters
    ----------
    network : nnpk.Network (an nnpk.MLP is one)
    state_dict : mapping of names to arrays
        ``model.state_dict()`` in PyTorch; a Flax variables dict.
    layout : "torch" or "flax"
    input_shape : int or tuple
        The shape of one point as nnpk takes it (channels last), e.g. ``(28, 28, 1)``.

    Returns
    -------
    params : list of pairs
        One pair per parametrised layer, float64: (W, b) for a Dense or Conv layer, b None
        where the layer has no bias; (gamma, beta) for a BatchNorm. For ``nnpk.empirical``,
        ``nnpk.initial_outputs(params=...)`` and the learners.
    buffers : list of (running_mean, running_var)
        One pair per BatchNorm in network order, float64 (empty without BatchNorm), for
        ``nnpk.initial_outputs(params=..., buffers=...)``.

    Raises
    ------
    ValueError
        Naming the layer, the entry and the expected and actual shapes on any mismatch:
        missing or extra entries, a missing or unexpected bias, a wrong shape, or a nonzero
        weight where the layer's W_std (or bias where b_std) is 0 under "ntk".
    """
    network = check_arch(network)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'torch' or 'flax', got {layout!r}")
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}")
    shape = (input_shape,) if isinstance(input_shape, (int, np.integer)) else tuple(input_shape)
    compiled = network.compile(shape)
    for p in compiled.entries:
        if isinstance(p, ParamLayer) and p.role:
            raise ValueError(f"layer {p.label} ({p.layer.describe()}): a SelfAttention layer's parameters have no "
                             f"{layout} state_dict layout to convert from; pass them to the learner or the kernels as "
                             "(W, b) pairs in nnpk.sample_params' order")
    for p in compiled.params:
        if isinstance(p.layer, ConvTranspose):
            raise ValueError(f"layer {p.label} ({p.layer.describe()}): transposed convolutions are not converted "
                             "from a state dict (PyTorch stores them (in, out, k) and flips the kernel); pass "
                             "params directly")
    groups = _groups(state_dict, layout)
    permutations = _flatten_permutations(network, compiled.input_shape) if layout == "torch" else {}
    params: list = []
    buffers: list = []
    g = 0  # the group of entries the next layer takes
    sublayer = 0  # a multi-layer nn.RNN group: the layers of it already taken
    for k, p in enumerate(compiled.entries):
        if isinstance(p, ParamLayer) and p.recurrent_weights:
            continue  # taken with the layer's (U, b) entry
        if g >= len(groups):
            names = _expected_names(p, layout)
            if isinstance(p, NormLayer):
                wanted = f"{', '.join(map(repr, names))}, each of shape ({p.channels},)"
            else:
                wanted = f"{names[0]!r} of shape {_framework_shape(p, layout)}" + "".join(
                    f" and {n!r}" for n in names[1:])
            raise ValueError(f"state_dict has {len(groups)} groups of entries; parametrised layer {k}, layer "
                             f"{p.label} ({p.layer.describe()}), has none (expected {wanted})")
        if isinstance(p, NormLayer):
            gamma, beta, mean, var = _convert_norm(k, p, groups[g], layout, permutations.get(k))
            params.append((gamma, beta))
            buffers.append((mean, var))
        elif isinstance(p.layer, Recurrent):
            U, b, W, more = _convert_recurrent(k, p, compiled.entries[k + 1], groups[g], sublayer, layout,
                                               network.parameterization)
            params += [(U, b), (W, None)]
            sublayer = sublayer + 1 if more else 0
            g += 0 if more else 1
            continue
        else:
            params.append(_convert(k, p, groups[g], layout, network.parameterization, permutations.get(k)))
        g += 1
    if sublayer:
        _, entries = groups[g]
        raise ValueError(f"state_dict's recurrent entries {', '.join(repr(v[0]) for v in entries.values())} have "
                         f"layers beyond the network's {sublayer} Recurrent layers there")
    if len(groups) > g:
        extra = [name for _, entries in groups[g:] for name, _ in entries.values()]
        raise ValueError(f"state_dict has entries beyond the network's {len(compiled.entries)} parametrised layers: "
                         f"{', '.join(map(repr, extra))}")
    return params, buffers


def _groups(state_dict: Mapping, layout: str) -> List[Tuple[str, Dict[str, Tuple[str, object]]]]:
    """[(prefix, {leaf: (full name, array)})] in the order of first appearance."""
    if layout == "torch":
        flat = [tuple(str(name).rpartition(".")[::2]) + (str(name), value) for name, value in state_dict.items()]
        flat = [entry for entry in flat if entry[1] not in _TORCH_IGNORED]
    else:
        flat = []
        _flatten_nested(state_dict, (), flat)
    groups: Dict[str, Dict[str, Tuple[str, object]]] = {}
    for prefix, leaf, name, value in flat:
        groups.setdefault(prefix, {})[leaf] = (name, value)
    return list(groups.items())


def _flatten_nested(tree: Mapping, path: Tuple[str, ...], out: list) -> None:
    """(prefix, leaf, name, array) of every array of a Flax variables dict; a top-level "params" or
    "batch_stats" collection is not part of the prefix."""
    for key, value in tree.items():
        sub = path + tuple(str(key).split("/"))
        if isinstance(value, Mapping):
            _flatten_nested(value, sub, out)
        else:
            inside = sub[1:] if sub[0] in ("params", "batch_stats") and len(sub) > 2 else sub
            out.append(("/".join(inside[:-1]), inside[-1], "/".join(sub), value))


def _flatten_permutations(network: Network, input_shape) -> Dict[int, np.ndarray]:
    """{parametrised layer index: permutation} for each Dense that reads a Flatten of spatial points (and each
    BatchNorm between them): feature r of nnpk's (position-major) flat features is feature perm[r] of PyTorch's
    (channel-major) ones."""
    compiled = network.compile(input_shape)
    out: Dict[int, np.ndarray] = {}
    pending: Optional[np.ndarray] = None
    k = 0
    for i, layer in enumerate(network.layers):
        before = compiled.features_shape if i == 0 else compiled.shapes[i - 1]
        if isinstance(layer, Flatten) and len(before) > 1:
            channel_major = np.arange(math.prod(before)).reshape((before[-1],) + tuple(before[:-1]))
            pending = np.moveaxis(channel_major, 0, -1).reshape(-1)
        elif isinstance(layer, (Residual, Parallel)):
            n_inside = len(_param_layers([layer], (Dense, Conv, BatchNorm)))
            if pending is not None and n_inside:
                raise ValueError(f"layer {i} ({layer.describe()}) sits between a Flatten of spatial points and the "
                                 "next Dense: its parameters cannot be converted from PyTorch's channel-major order")
            k += n_inside
        elif isinstance(layer, BatchNorm):
            if pending is not None:
                out[k] = pending
            k += 1
        elif isinstance(layer, (Dense, Conv)):
            if pending is not None:
                out[k] = pending
                pending = None
            k += 1
        elif isinstance(layer, Recurrent):
            k += 2
    return out


def _expected_names(p, layout: str) -> Tuple[str, ...]:
    if isinstance(p, NormLayer):
        return _NORM_NAMES[layout]
    weight, bias = _NAMES[layout]
    return (weight,) if p.layer.b_std is None else (weight, bias)


def _check_group(k: int, p, group, layout: str) -> Tuple[str, Dict[str, Tuple[str, object]]]:
    """(where, entries): the group's entries are exactly the layer's, else a ValueError naming both."""
    prefix, entries = group
    where = f"parametrised layer {k}, layer {p.label} ({p.layer.describe()})"
    expected = set(_expected_names(p, layout))
    missing, unexpected = sorted(expected - set(entries)), sorted(set(entries) - expected)
    if missing or unexpected:
        what = [f"no {n!r}" for n in missing] + [f"an unexpected {entries[n][0]!r}" for n in unexpected]
        why = ""
        if isinstance(p, ParamLayer) and _NAMES[layout][1] in unexpected:
            why = " (the layer has b_std=None: no bias)"
        other = "flax" if layout == "torch" else "torch"
        other_names = set(_NAMES[other] + _NORM_NAMES[other]) - set(_NAMES[layout] + _NORM_NAMES[layout])
        if any(name.replace("/", ".").rpartition(".")[2] in other_names for name, _ in entries.values()):
            why += f" (names in {other}'s layout: pass layout={other!r})"
        raise ValueError(f"the entries of {prefix!r} go to {where}: it has {' and '.join(what)}{why}; its entries "
                         f"are {', '.join(repr(v[0]) for v in entries.values())}")
    return where, entries


def _convert_norm(k: int, p: NormLayer, group, layout: str, permutation: Optional[np.ndarray]):
    """gamma, beta, running mean and running variance, each (channels,) in nnpk's feature order."""
    where, entries = _check_group(k, p, group, layout)
    out = []
    for leaf in _NORM_NAMES[layout]:
        name, value = entries[leaf]
        a = _array(name, value)
        if a.shape != (p.channels,):
            raise ValueError(f"state_dict[{name!r}] has shape {a.shape}; {where} expects ({p.channels},)")
        out.append(a if permutation is None else a[permutation])
    if np.any(out[3] < 0):
        raise ValueError(f"state_dict[{entries[_NORM_NAMES[layout][3]][0]!r}] has negative variances")
    return tuple(out)


def _framework_shape(p: ParamLayer, layout: str) -> Tuple[int, ...]:
    if layout == "flax":
        return p.weight_shape
    if isinstance(p.layer, Dense):
        return (p.fan_out, p.fan_in)
    return (p.fan_out, p.weight_shape[-2]) + p.weight_shape[:-2]


def _array(name: str, value) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as exc:  # a tensor that numpy cannot read (on a GPU, say)
        raise TypeError(f"state_dict[{name!r}] cannot be read as an array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"state_dict[{name!r}] must hold real numbers, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(f"state_dict[{name!r}] contains NaN or inf")
    return arr.astype(np.float64)


def _convert(k: int, p: ParamLayer, group, layout: str, parameterization: str,
             permutation: Optional[np.ndarray]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    where, entries = _check_group(k, p, group, layout)
    weight_name, bias_name = _NAMES[layout]
    name, value = entries[weight_name]
    W = _array(name, value)
    framework_shape = _framework_shape(p, layout)
    if W.shape != framework_shape:
        raise ValueError(f"state_dict[{name!r}] has shape {W.shape}; {where} expects {framework_shape} in {layout}'s "
                         f"layout for {_input_text(p)}")
    if layout == "torch":
        W = W.T if W.ndim == 2 else np.moveaxis(W, (0, 1), (-1, -2))
        if permutation is not None:
            W = W[permutation]
    if parameterization == "ntk":
        W = _unscaled(W, p.w_std / math.sqrt(p.fan_in), name, where, "W_std")
    if p.layer.b_std is None:
        return np.ascontiguousarray(W), None
    name_b, value_b = entries[bias_name]
    b = _array(name_b, value_b)
    if b.shape != (p.fan_out,):
        raise ValueError(f"state_dict[{name_b!r}] has shape {b.shape}; {where} expects ({p.fan_out},)")
    if parameterization == "ntk":
        b = _unscaled(b, p.layer.b_std, name_b, where, "b_std")
    return np.ascontiguousarray(W), b


_RNN_LEAVES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _convert_recurrent(k: int, p: ParamLayer, p_w: ParamLayer, group, sublayer: int, layout: str,
                       parameterization: str):
    """(U, b, W, whether the group holds more layers) of a Recurrent layer from layer `sublayer` of an nn.RNN's
    entries."""
    prefix, entries = group
    where = f"parametrised layer {k}, layer {p.label} ({p.layer.describe()})"
    if layout != "torch":
        raise ValueError(f"{where}: recurrent layers are read in PyTorch's nn.RNN layout only (layout='torch')")
    layers: Dict[int, Dict[str, Tuple[str, object]]] = {}
    for leaf in entries:
        match = re.fullmatch(r"(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)", leaf)
        if match is None:
            raise ValueError(f"the entries of {prefix!r} go to {where}, which takes an nn.RNN's weight_ih_l0, "
                             f"weight_hh_l0, bias_ih_l0 and bias_hh_l0; it has {entries[leaf][0]!r}")
        layers.setdefault(int(match.group(2)), {})[match.group(1)] = entries[leaf]
    if sublayer not in layers:
        raise ValueError(f"the entries of {prefix!r} go to {where}: they have no layer {sublayer} "
                         f"(weight_ih_l{sublayer})")
    mine = layers[sublayer]
    expected = set(_RNN_LEAVES if p.has_bias else _RNN_LEAVES[:2])
    if set(mine) != expected:
        missing = sorted(f"{n}_l{sublayer}" for n in expected - set(mine))
        unexpected = sorted(f"{n}_l{sublayer}" for n in set(mine) - expected)
        why = " (the layer has b_std=None: no bias)" if unexpected and not p.has_bias else ""
        raise ValueError(f"the entries of {prefix!r} go to {where}: missing {missing}, unexpected {unexpected}{why}")
    m, d = p.fan_out, p.fan_in
    arrays = {}
    for leaf, shape in (("weight_ih", (m, d)), ("weight_hh", (m, m)), ("bias_ih", (m,)), ("bias_hh", (m,))):
        if leaf not in mine:
            continue
        name, value = mine[leaf]
        a = _array(name, value)
        if a.shape != shape:
            raise ValueError(f"state_dict[{name!r}] has shape {a.shape}; {where} expects {shape}")
        arrays[leaf] = a
    U, W = arrays["weight_ih"].T, arrays["weight_hh"].T
    b = arrays["bias_ih"] + arrays["bias_hh"] if p.has_bias else None
    if parameterization == "ntk":
        U = _unscaled(U, p.w_std / math.sqrt(d), mine["weight_ih"][0], where, "U_std")
        W = _unscaled(W, p_w.w_std / math.sqrt(m), mine["weight_hh"][0], where, "W_std")
        if b is not None and p.layer.b_std is not None:
            b = _unscaled(b, p.layer.b_std, mine["bias_ih"][0], where, "b_std")
    return np.ascontiguousarray(U), b, np.ascontiguousarray(W), (sublayer + 1) in layers


def _input_text(p: ParamLayer) -> str:
    return f"{p.input_size} input features" if isinstance(p.layer, Dense) else f"{p.weight_shape[-2]} input channels"


def _unscaled(values: np.ndarray, scale: float, name: str, where: str, std_name: str) -> np.ndarray:
    """The "ntk" parameterization's stored values: values / scale."""
    if scale == 0:
        if np.any(values != 0):
            raise ValueError(f"state_dict[{name!r}] is nonzero but {where} has {std_name}=0: under the 'ntk' "
                             "parameterization its values are multiplied by 0")
        return np.zeros_like(values)
    return values / scale
