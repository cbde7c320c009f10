"""Random weights, learned biases: training only the biases of a fixed random network.

>>> import nnpk
>>> arch = nnpk.MLP(hidden=[4096], out=10, W_std=2**0.5, b_std=1.0, parameterization="standard")
>>> learner = nnpk.BiasLearner(arch, seed=0).fit(x, digit)            # doctest: +SKIP
>>> learner.fit(x, digit % 2, task="parity").score(x, digit % 2, task="parity")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Hashable, List, Optional

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .. import _core
from .._threads import resolve_n_threads
from .._validate import check_int, compute_dtype
from ..architectures import SEED_MAX, Dense, check_arch, sample_params
from ..architectures._params import check_points

__all__ = ["BiasLearner", "TaskFit"]

TRAIN = ("biases", "biases+readout", "readout")
OPTIMIZERS = ("adam", "sgd")
LOSSES = ("auto", "cross_entropy", "squared")


@dataclass
class TaskFit:
    """One task's trained parameters on the learner's fixed weights.

    Attributes
    ----------
    loss : "cross_entropy" or "squared"
    classes : array or None
        The class labels (sorted) of a classification task; class i is logit i.
    n_outputs : int
        The task uses the network's first `n_outputs` logits.
    biases : list of (n_l,) float64 arrays or None
        Every Dense or Conv layer's bias (None where the layer has none), in the
        order of ``sample_params``; layers that are not trained keep the sampled values.
    readout : (n_L, C) float64 array
        The final Dense layer's weights: trained, or the sampled ones.
    loss_curve : list of float
        Mean training loss of each epoch (each minibatch's loss before its step).
    targets_1d : bool
        Regression targets were given as a vector (predictions are then one too).
    """

    loss: str
    classes: Optional[np.ndarray]
    n_outputs: int
    biases: List[Optional[np.ndarray]]
    readout: np.ndarray
    loss_curve: List[float] = field(default_factory=list)
    targets_1d: bool = False


class _Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1) with beta1 = 0.9, beta2 = 0.999, eps = 1e-8, in place:
    p -= lr * m_hat / (sqrt(v_hat) + eps) with the bias-corrected moments m_hat, v_hat."""

    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def __init__(self, params: List[np.ndarray], lr: float):
        self.lr = lr
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, params: List[np.ndarray], grads: List[np.ndarray]) -> None:
        self.t += 1
        m_scale, v_scale = 1 / (1 - self.beta1**self.t), 1 / (1 - self.beta2**self.t)
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= self.lr * (m * m_scale) / (np.sqrt(v * v_scale) + self.eps)


class _SGD:
    """Plain gradient descent."""

    def __init__(self, params: List[np.ndarray], lr: float):
        self.lr = lr

    def step(self, params: List[np.ndarray], grads: List[np.ndarray]) -> None:
        for p, g in zip(params, grads):
            p -= self.lr * g


class BiasLearner(BaseEstimator):
    """Train the biases (and optionally the readout) of one fixed random network.

    The weights are ``nnpk.sample_params(arch, input_shape, seed, index)`` and
    never change; training starts from the sampled biases (drawn with std
    ``b_std``) and readout. Each task (``fit(X, y, task=t)``) keeps its own
    trained parameters on the same weights, so one random network serves several
    tasks. Classification uses softmax cross-entropy over the first
    ``n_classes`` logits (class i is logit i of the sorted labels), regression the
    squared loss ``0.5 * sum_c (f_c - y_c)^2`` on the first ``n_targets`` outputs;
    both are averaged over the minibatch.

    Gradients are taken with respect to the stored parameters: under "standard"
    the bias b enters as ``z = h W + b``; under "ntk" as ``z = (W_std / sqrt(n_in))
    h W + b_std b``, so its gradient carries the factor ``b_std`` (and the readout's
    the factor ``W_std / sqrt(n_L)``). The forward and backward passes run in the
    C++ engine (through every layer: convolutions, pooling, residual blocks) over
    fixed chunks of minibatch rows, with float64 gradient sums added in a fixed
    order: a fit is bitwise the same for any ``n_threads``.

    Parameters
    ----------
    arch : nnpk.Network (an nnpk.MLP is one)
        Training the readout needs a network ending with a Dense layer.
    seed, index : int
        Which random network: network `index` of `seed`, as everywhere in nnpk.
    train : "biases", "biases+readout" or "readout"
        "biases": every Dense or Conv layer's bias, the readout's included.
        "readout": the final Dense layer's weights and bias (random features).
        "biases+readout": both.
    optimizer : "adam" or "sgd"
        Adam (beta1 0.9, beta2 0.999, eps 1e-8) or plain gradient descent.
    lr : float
        Learning rate (step size).
    epochs : int
        Passes over the training set.
    batch_size : int or None
        Rows per step (the last step of an epoch takes the rest); None: the
        whole training set (full-batch). Multiples of 96 waste no work: the
        engine computes rows in chunks of 96, the last one padded.
    loss : "auto", "cross_entropy" or "squared"
        "auto": cross-entropy for class labels (binary or multiclass targets in
        scikit-learn's sense), squared loss for real-valued targets.
    dtype : "float32" or "float64"
        Precision of the forward and backward passes; parameters, the
        optimizer and gradient sums are float64.
    n_threads : int, optional
        None: all physical cores; -1 all, -2 all but one; 0 is an error.
    random_state : None, int or numpy RandomState
        The minibatch order, and nothing else.

    Attributes
    ----------
    tasks_ : dict
        Task -> its fit, with the attributes ``loss`` ("cross_entropy" or
        "squared"), ``classes`` (sorted labels, or None for regression),
        ``n_outputs``, ``biases`` (every Dense or Conv layer's bias, None where
        it has none), ``readout`` (the final Dense layer's weights) and
        ``loss_curve`` (the mean training loss of each epoch).
    n_features_in_ : int
        Values per input point (shared by all tasks).
    input_shape_ : tuple
        The shape of one input point: ``(n_features_in_,)`` for flat points.
    """

    def __init__(self, arch, seed=0, index=0, train="biases", optimizer="adam", lr=0.01, epochs=100,
                 batch_size=96, loss="auto", dtype="float64", n_threads=None, random_state=None):
        self.arch = arch
        self.seed = seed
        self.index = index
        self.train = train
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.loss = loss
        self.dtype = dtype
        self.n_threads = n_threads
        self.random_state = random_state

    # ------------------------------------------------------------------ checks

    def _check_hyperparameters(self) -> None:
        arch = check_arch(self.arch)
        check_int(self.seed, "seed", minimum=0, maximum=SEED_MAX)
        check_int(self.index, "index", minimum=0, maximum=SEED_MAX)
        if self.train not in TRAIN:
            raise ValueError(f"train must be one of {', '.join(map(repr, TRAIN))}, got {self.train!r}")
        if "biases" in self.train and not any(arch.has_bias):
            raise ValueError(f"train={self.train!r} but arch has no biases (b_std=None); "
                             "give arch a b_std or use train='readout'")
        if "readout" in self.train and not isinstance(arch.layers[-1], Dense):
            raise ValueError(f"train={self.train!r} trains the final Dense layer; this network ends with layer "
                             f"{len(arch.layers) - 1} ({arch.layers[-1].describe()}): use train='biases'")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if (isinstance(self.lr, bool) or not isinstance(self.lr, (numbers.Real, np.floating, np.integer))
                or not math.isfinite(self.lr) or self.lr <= 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        check_int(self.epochs, "epochs", minimum=1)
        if self.batch_size is not None:
            check_int(self.batch_size, "batch_size", minimum=1)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {self.loss!r}")
        compute_dtype(self.dtype)
        resolve_n_threads(self.n_threads)

    def _check_x(self, X) -> np.ndarray:
        """X in the compute dtype, checked against the network's point shape once there is one, flattened
        to (n, values per point); the network compiled for its points is ``self._compiled``."""
        shape = getattr(self, "input_shape_", None)
        x = check_points(X, "X", check_arch(self.arch), self.dtype, point_shape=shape,
                         other="the network the fitted tasks share")
        self._compiled = self.arch.compile(x.shape[1:])
        return x.reshape(x.shape[0], -1)

    def _task(self, task) -> TaskFit:
        check_is_fitted(self, "tasks_")
        if task not in self.tasks_:
            raise ValueError(f"task {task!r} has not been fitted; fitted tasks: {list(self.tasks_)}")
        return self.tasks_[task]

    def _targets(self, y, n_rows: int):
        """(loss, classes, n_outputs, engine targets, 1-D) for training targets y."""
        if y is None:
            raise TypeError("y must be an array of targets, got None")
        if np.shape(y)[:1] != (n_rows,):
            raise ValueError(f"y has shape {np.shape(y)}; X has {n_rows} rows, y needs one target per row")
        loss = self.loss
        if loss == "auto":
            kind = type_of_target(y, input_name="y")
            if kind in ("binary", "multiclass"):
                loss = "cross_entropy"
            elif kind in ("continuous", "continuous-multioutput"):
                loss = "squared"
            else:
                raise ValueError(f"y looks {kind}; pass loss='cross_entropy' for one class label per row "
                                 "or loss='squared' for real-valued targets")
        C = self._compiled.out
        if loss == "cross_entropy":
            y = column_or_1d(y, warn=True)
            check_classification_targets(y)
            classes, labels = np.unique(y, return_inverse=True)
            if len(classes) < 2:
                raise ValueError(f"y has a single class ({classes[0]!r}); classification needs at least two")
            if len(classes) > C:
                raise ValueError(f"y has {len(classes)} classes but the network has only {C} logits (arch.out)")
            return loss, classes, len(classes), labels.astype(np.int64), False
        try:
            values = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("y must hold real numbers for the squared loss") from None
        targets_1d = values.ndim == 1
        if values.ndim not in (1, 2) or values.size == 0:
            raise ValueError(f"y must be (n_samples,) or (n_samples, n_targets), got shape {values.shape}")
        values = values.reshape(n_rows, -1)
        if values.shape[1] > C:
            raise ValueError(f"y has {values.shape[1]} targets but the network has only {C} outputs (arch.out)")
        if not np.isfinite(values).all():
            raise ValueError("y contains NaN or infinite values")
        return loss, None, values.shape[1], np.ascontiguousarray(values), targets_1d

    # ----------------------------------------------------------------- network

    def _network(self, dtype):
        """(the sampled float64 (W, b) of every Dense or Conv layer, their fixed weights as the engine's
        (fan_in, fan_out) matrices in `dtype`).

        Drawn once per network, and the fixed weights converted once per dtype, not at every step."""
        key = (self.arch, self.seed, self.index, self.input_shape_)
        cached = getattr(self, "_sampled", None)
        if cached is None or cached[0] != key:
            if getattr(self, "tasks_", None):
                raise ValueError(f"arch, seed or index changed after tasks {list(self.tasks_)} were fitted; their "
                                 "parameters belong to the network sampled then: use a new BiasLearner")
            cached = self._sampled = (key, sample_params(self.arch, self.input_shape_, self.seed, self.index), {})
        sampled, converted = cached[1], cached[2]
        name = np.dtype(dtype).name
        if name not in converted:
            converted[name] = [np.ascontiguousarray(W.reshape(p.fan_in, p.fan_out), dtype=dtype)
                               for (W, _), p in zip(sampled[:-1], self._compiled.params)]
        return sampled, converted[name]

    def _engine_params(self, fit: TaskFit, dtype) -> list:
        """The task's (W, b) of every Dense or Conv layer in the compute dtype, for the engine."""
        weights = self._network(dtype)[1] + [fit.readout.astype(dtype, copy=False)]
        return [(W, None if b is None else b.astype(dtype, copy=False)) for W, b in zip(weights, fit.biases)]

    def _trainable(self, fit: TaskFit):
        """(per-layer weight flags, per-layer bias flags, the float64 arrays they name, in engine order)."""
        n_layers = len(fit.biases)
        has_bias = [b is not None for b in fit.biases]
        if self.train == "readout":
            biases = [has_bias[l] and l == n_layers - 1 for l in range(n_layers)]
        else:
            biases = has_bias
        readout = self.train != "biases"
        weights = [readout and l == n_layers - 1 for l in range(n_layers)]
        arrays = [fit.biases[l] for l in range(n_layers) if biases[l]] + ([fit.readout] if readout else [])
        return weights, biases, arrays

    # --------------------------------------------------------------- training

    def fit(self, X, y, task: Hashable = 0):
        """Train task `task` from the sampled biases (and readout) on (n_samples, n_features) X.

        Other tasks keep their parameters; all tasks share the network, so X
        must have the width of the first fit's X.

        Parameters
        ----------
        X : (n_samples, n_features) array
        y : (n_samples,) class labels, or (n_samples,) / (n_samples, n_targets) values
        task : hashable
            The task's name.
        """
        self._check_hyperparameters()
        try:
            hash(task)
        except TypeError:
            raise TypeError(f"task must be hashable (a name such as 0 or 'parity'), "
                            f"got {type(task).__name__}") from None
        shape = getattr(self, "input_shape_", None)
        x = self._check_x(X)
        n, d = x.shape
        loss, classes, n_outputs, targets, targets_1d = self._targets(y, n)
        threads = resolve_n_threads(self.n_threads)
        self.n_features_in_ = d
        self.input_shape_ = self._compiled.input_shape if shape is None else shape
        sampled = self._network(x.dtype)[0]
        fit = TaskFit(loss=loss, classes=classes, n_outputs=n_outputs,
                      biases=[None if b is None else b.copy() for _, b in sampled],
                      readout=sampled[-1][0].reshape(self._compiled.params[-1].fan_in, -1).copy(),
                      targets_1d=targets_1d)
        train_weights, train_biases, arrays = self._trainable(fit)
        optimizer = (_Adam if self.optimizer == "adam" else _SGD)(arrays, float(self.lr))
        rng = check_random_state(self.random_state)
        batch = n if self.batch_size is None else min(int(self.batch_size), n)
        engine = _core.SequentialTrainer(self._compiled.spec, train_weights, train_biases, threads, x.dtype.name)
        for _ in range(int(self.epochs)):
            order = rng.permutation(n) if batch < n else None
            total = 0.0
            for start in range(0, n, batch):
                if order is None:
                    xb, tb = x, targets
                else:
                    rows = order[start : start + batch]
                    xb, tb = x[rows], targets[rows]
                value, weight_grads, bias_grads = engine.gradients(xb, self._engine_params(fit, x.dtype), loss,
                                                                   n_outputs, tb)
                grads = [g for g in bias_grads if g is not None] + [g for g in weight_grads if g is not None]
                optimizer.step(arrays, grads)
                total += value * xb.shape[0]
            fit.loss_curve.append(total / n)
        if not hasattr(self, "tasks_"):
            self.tasks_ = {}
        self.tasks_[task] = fit
        return self

    # ------------------------------------------------------------- prediction

    def decision_function(self, X, task: Hashable = 0) -> np.ndarray:
        """The task's outputs: (n_samples, n_outputs) logits or regression values (float64)."""
        fit = self._task(task)
        x = self._check_x(X)
        outputs = _core.sequential_outputs(x, self._compiled.spec, self._engine_params(fit, x.dtype),
                                           resolve_n_threads(self.n_threads))
        return outputs[:, : fit.n_outputs]

    def predict(self, X, task: Hashable = 0) -> np.ndarray:
        """Class labels (the largest of the task's logits), or regression values shaped like the targets."""
        fit = self._task(task)
        outputs = self.decision_function(X, task)
        if fit.classes is not None:
            return fit.classes[np.argmax(outputs, axis=1)]
        return outputs[:, 0] if fit.targets_1d else outputs

    def predict_proba(self, X, task: Hashable = 0) -> np.ndarray:
        """Class probabilities (n_samples, n_classes): the softmax of the task's logits."""
        if self._task(task).classes is None:
            raise ValueError(f"task {task!r} is a regression task; predict_proba needs class labels")
        logits = self.decision_function(X, task)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def score(self, X, y, task: Hashable = 0) -> float:
        """Accuracy for a classification task, R^2 for a regression task."""
        prediction = self.predict(X, task)
        if self._task(task).classes is not None:
            return float(accuracy_score(column_or_1d(y), prediction))
        return float(r2_score(y, prediction))
