"""How much each hidden unit varies on each task's inputs, and the units grouped by it."""

from __future__ import annotations

from typing import Hashable, List, Optional, Sequence

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .. import _core
from .._threads import resolve_n_threads
from ..architectures import Activation, BatchNorm, Conv, Dense, Network, Parallel, Recurrent, Residual, check_arch
from ..architectures._params import check_points

__all__ = ["task_variance", "unit_clusters"]


def _hidden_layer(arch: Network, layer: Optional[int]) -> int:
    layers = arch.layers
    activations = [i for i, l in enumerate(layers) if isinstance(l, Activation) and i < len(layers) - 1]
    if layer is None:
        if not activations:
            raise ValueError("task_variance needs a hidden activation layer; the network has none")
        return activations[-1]
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer < len(layers) - 1:
        raise ValueError(f"layer must be the index of a hidden layer (0 to {len(layers) - 2}), got {layer!r}")
    if any(isinstance(l, (Residual, Recurrent, Parallel)) for l in layers[: layer + 1]):
        raise ValueError("task_variance reads hidden units of sequential layers (no Residual, Recurrent or Parallel "
                         f"layer up to layer {layer})")
    return int(layer)


def task_variance(learner, X, tasks: Optional[Sequence[Hashable]] = None, layer: Optional[int] = None,
                  inputs: Optional[Sequence] = None) -> np.ndarray:
    """The variance of each hidden unit's activity over each task's inputs: a (units, tasks) array.

    Column t is ``Var_x[h_i(x)]`` over the rows of task t's inputs, h the output of hidden layer `layer` of
    the network with task t's parameters (its biases, masks or weights as trained). Spatial features count
    every (position, channel) as a unit.

    Parameters
    ----------
    learner : a fitted nnpk.NetworkLearner or nnpk.BiasLearner
    X : array
        The inputs of every task, or, with `inputs`, ignored (pass None).
    tasks : sequence, optional
        The tasks (keys of ``learner.tasks_``), in the columns' order; all of them by default.
    layer : int, optional
        The index (into ``arch.layers``) of the hidden layer; the last hidden activation layer by default.
    inputs : sequence of arrays, optional
        Each task's own inputs (one array per task), when the tasks see different points.
    """
    check_is_fitted(learner, "tasks_")
    arch = check_arch(learner.arch)
    tasks = list(learner.tasks_) if tasks is None else list(tasks)
    for t in tasks:
        if t not in learner.tasks_:
            raise ValueError(f"task {t!r} has not been fitted; fitted tasks: {list(learner.tasks_)}")
    if inputs is not None and len(inputs) != len(tasks):
        raise ValueError(f"inputs has {len(inputs)} arrays; tasks has {len(tasks)}")
    depth = _hidden_layer(arch, layer)
    front = Network(arch.layers[: depth + 1], parameterization=arch.parameterization, init=arch.init)
    n_entries = sum(isinstance(l, (Dense, Conv, BatchNorm)) for l in arch.layers[: depth + 1])
    threads = resolve_n_threads(learner.n_threads)
    columns: List[np.ndarray] = []
    for k, t in enumerate(tasks):
        points = X if inputs is None else inputs[k]
        x = check_points(points, "X" if inputs is None else f"inputs[{k}]", arch, np.float64,
                         point_shape=learner.input_shape_, other="the network's points")
        if len(x) < 2:
            raise ValueError(f"task {t!r} has {len(x)} input rows; a variance needs at least 2")
        compiled = front.compile(x.shape[1:])
        fit = learner.tasks_[t]
        params = learner._engine_params(fit.params, np.float64)[:n_entries]
        buffers = fit.buffers[: len(compiled.norms)] or None
        h = _core.sequential_outputs(x.reshape(len(x), -1), compiled.spec, params, threads, buffers, False)
        columns.append(h.var(axis=0))
    return np.stack(columns, axis=1)


def unit_clusters(variance: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Units grouped by their task-variance profile: k-means (scikit-learn's) on each unit's variances across
    tasks scaled to sum 1 (units that vary on no task form their own group, label -1). Returns one label per
    unit."""
    from sklearn.cluster import KMeans

    v = np.asarray(variance, dtype=np.float64)
    if v.ndim != 2 or not np.isfinite(v).all() or (v < 0).any():
        raise ValueError(f"variance must be a (units, tasks) array of finite nonnegative values, got shape {v.shape}")
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or n_clusters < 1:
        raise ValueError(f"n_clusters must be a positive integer, got {n_clusters!r}")
    total = v.sum(axis=1)
    active = total > 0
    labels = np.full(len(v), -1)
    if active.sum() < n_clusters:
        raise ValueError(f"n_clusters={n_clusters} but only {int(active.sum())} units vary on any task")
    profiles = v[active] / total[active, None]
    labels[active] = KMeans(n_clusters=int(n_clusters), n_init=10, random_state=seed).fit_predict(profiles)
    return labels
