"""Graph points: each point carries its own graph (for ``Aggregate()``, the aggregation over each point's graph)."""

from __future__ import annotations

import math

import numpy as np

from .._validate import _check_finite, _real_array
from ._layers import Aggregate
from ._network import Network, _param_layers

__all__ = ["check_graph_points", "graph_points"]


def graph_points(features, adjacency) -> np.ndarray:
    """Points that carry their own graphs, for a network with ``Aggregate()`` (each point's graph).

    Parameters
    ----------
    features : (n, nodes, channels) or (n, height, width, channels) array
        Each point's node features (the nodes of a 2-D point are its positions in row-major order).
    adjacency : (n, nodes, nodes) array
        Each point's edge weights: ``adjacency[i, u, v]`` is the weight of the edge from node u to node v of
        point i (0: no edge). ``Aggregate(reduction="mean")`` needs them non-negative.

    Returns
    -------
    (n, nodes, channels + nodes) or (n, height, width, channels + nodes) float64 array
        Node u of point i holds its features, then its row ``adjacency[i, u, :]``: the points every kernel
        (``monte_carlo``, ``empirical``, ``analytic``), ``NetworkLearner`` and the stores take for such a
        network, split again by the engine (the layers read the features, each ``Aggregate()`` the adjacency).

    Examples
    --------
    Two points of three nodes, one without edges but self-loops, one fully connected:

    >>> import numpy as np, nnpk
    >>> x = nnpk.graph_points(np.ones((2, 3, 1)), np.stack([np.eye(3), np.ones((3, 3))]))
    >>> x.shape
    (2, 3, 4)
    >>> net = nnpk.Network([nnpk.Conv(8, 1), "relu", nnpk.Aggregate(), nnpk.GlobalSumPool(), nnpk.Dense(1)])
    >>> nnpk.analytic(x, arch=net).shape
    (2, 2)
    """
    f = _real_array(features, "features")
    a = _real_array(adjacency, "adjacency")
    if f.ndim not in (3, 4) or min(f.shape) < 1:
        raise ValueError(f"features must be an (n, nodes, channels) or (n, height, width, channels) array with "
                         f"positive sizes, got shape {f.shape}")
    n, nodes = f.shape[0], math.prod(f.shape[1:-1])
    if a.shape != (n, nodes, nodes):
        raise ValueError(f"adjacency must have shape (n, nodes, nodes) = {(n, nodes, nodes)} for features of shape "
                         f"{f.shape}, got {a.shape}")
    f = np.ascontiguousarray(f, dtype=np.float64)
    a = np.ascontiguousarray(a, dtype=np.float64)
    _check_finite(f.reshape(n, -1), "features")
    _check_finite(a.reshape(n, -1), "adjacency")
    return np.concatenate([f, a.reshape(f.shape[:-1] + (nodes,))], axis=-1)


def check_graph_points(a: np.ndarray, name: str, network: Network) -> None:
    """ValueError naming `name` if the points `a` (n, ...) of a network reading graph points have no room for
    their adjacency, or have negative edge weights where an ``Aggregate(reduction="mean")`` reads them."""
    nodes = math.prod(a.shape[1:-1])
    if a.ndim < 3 or a.shape[-1] <= nodes:
        raise ValueError(f"{name} has points of shape {a.shape[1:]}; the network aggregates over each point's own "
                         f"graph (Aggregate()), so its points are (nodes, features + nodes) arrays: each node's "
                         f"features, then its row of the point's adjacency (build them with "
                         f"nnpk.graph_points(features, adjacency))")
    if any(layer.per_point and layer.reduction == "mean" for layer in _param_layers(network.layers, Aggregate)):
        adjacency = a[..., a.shape[-1] - nodes:].reshape(a.shape[0], nodes, nodes)
        bad = np.argwhere(adjacency < 0)
        if bad.size:
            i, u, v = (int(k) for k in bad[0])
            raise ValueError(f"{name}: point {i}'s adjacency has the negative weight {adjacency[i, u, v]} on the edge "
                             f"{u} -> {v}; Aggregate(reduction='mean') needs non-negative edge weights (the mean "
                             "over the edges into a node is weighted by them)")
