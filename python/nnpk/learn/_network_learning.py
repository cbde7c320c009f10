"""Training any parameters of a network: SGD (with momentum) or Adam on the engine's gradients.

>>> import nnpk
>>> arch = nnpk.MLP(hidden=[512], out=10, W_std=2**0.5, b_std=0.1, parameterization="standard")
>>> learner = nnpk.NetworkLearner(arch, optimizer="sgd", lr=0.1, momentum=0.9).fit(x, digit)  # doctest: +SKIP
>>> learner.history_["loss"], learner.params_                                                # doctest: +SKIP
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Dict, Hashable, List, Optional, Tuple

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .. import _core
from .._threads import resolve_n_threads
from .._validate import check_int, compute_dtype
from ..architectures import (
    SEED_MAX,
    BatchNorm,
    Conv,
    Dense,
    Recurrent,
    SelfAttention,
    check_arch,
    check_differentiable,
    sample_params,
)
from ..architectures._network import NormLayer, _biases, _param_layers
from ..architectures._params import check_network_params, check_points
from ..diagnostics import kernel_target_alignment
from ._divergence import Checkpoint, DivergenceError, all_finite
from ._learning_rates import check_lr, learner_lr
from ._masks import apply_masks, check_slopes, mask_gradients, mask_sites, mask_slope, sigmoid

__all__ = ["NetworkLearner", "TaskFit"]

TRAIN = ("all", "weights", "biases", "readout", "masks")
OPTIMIZERS = ("adam", "sgd")
LOSSES = ("auto", "cross_entropy", "squared", "logistic")
SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class TaskFit:
    """One task's trained network.

    Attributes
    ----------
    loss : "cross_entropy", "squared" or "logistic"
    classes : array or None
        The class labels (sorted) of a classification task; class i is logit i.
    n_outputs : int
        The task uses the network's first `n_outputs` logits.
    params : list of (W, b)
        Every parametrised layer's parameters in the layout of ``nnpk.sample_params``
        (float64; b None where the layer has no bias); untrained ones keep the sampled values.
    history : dict
        ``"loss"``: the mean training loss of each epoch (each minibatch's loss before
        its step); ``"accuracy"``: the fraction of training rows whose largest logit
        was their label, before each step (nan for a regression task).
    targets_1d : bool
        Regression targets were given as a vector (predictions are then one too).
    epochs : int
        Epochs trained so far (``fit`` restarts from the sampled network; ``partial_fit`` continues).
    kernels : list of dict
        The kernels recorded along training (see ``NetworkLearner``'s ``kernels_history_``).
    buffers : list of (running_mean, running_var)
        Each BatchNorm's running statistics (float64, shape (channels,)), in network order.
    initial_kernels : dict or None
        The sampled network's kernels on the record points (the reference of the distances).
    origin : list of (W, b) or None
        A linearised task's theta_0 (the network it is linearised around), in the layout of
        ``params``; None for a network trained itself.
    masks : list of arrays
        With train="masks": each masked layer's unit scores s (units whose s > 0 are on); ``params``
        then holds the network with those masks applied.
    lr : float or None
        The learning rate of the task's last fit (the schedule's peak): lr's number, its default,
        or lr="ntk"'s value.
    """

    loss: str
    classes: Optional[np.ndarray]
    n_outputs: int
    params: List[Tuple[np.ndarray, Optional[np.ndarray]]]
    history: Dict[str, List[float]] = field(default_factory=lambda: {"loss": [], "accuracy": []})
    targets_1d: bool = False
    epochs: int = 0
    kernels: List[Dict[str, Any]] = field(default_factory=list)
    buffers: List[Tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    initial_kernels: Optional[Dict[str, np.ndarray]] = None
    origin: Optional[List[Tuple[np.ndarray, Optional[np.ndarray]]]] = None
    offset: bool = True
    # train="masks": each masked layer's unit scores (the mask in evaluation is scores > 0).
    masks: List[np.ndarray] = field(default_factory=list)
    # The optimizer's state: per trainable array (in the engine's order) SGD's momentum buffer or
    # Adam's m, Adam's v, and Adam's step count.
    firsts: List[np.ndarray] = field(default_factory=list)
    seconds: List[np.ndarray] = field(default_factory=list)
    steps: int = 0
    # (weight flags, bias flags, optimizer, momentum used): the settings the state belongs to.
    rule: Tuple[Any, ...] = ()
    # The minibatch order's generator, continued by partial_fit.
    rng: Any = None
    lr: Optional[float] = None
    # (the settings, the value) of lr="ntk" for this task, computed on its first fit.
    ntk_lr: Tuple[Any, ...] = ()

    @property
    def loss_curve(self) -> List[float]:
        """The mean training loss of each epoch (``history["loss"]``)."""
        return self.history["loss"]

    @property
    def biases(self) -> List[Optional[np.ndarray]]:
        """Every parametrised layer's bias (None where it has none)."""
        return [b for _, b in self.params]

    @property
    def readout(self) -> np.ndarray:
        """The final layer's weights as a (fan_in, n_outputs) matrix."""
        W = self.params[-1][0]
        return W.reshape(-1, W.shape[-1])


def _update(values: List[np.ndarray], grads: List[np.ndarray], fit: "TaskFit", learner, lr: float) -> None:
    """The learner's update rule (as the engine's: clipping, weight decay, SGD with momentum or Adam at step
    fit.steps) on float64 arrays in place."""
    if learner.clip_norm is not None:
        norm = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads))
        if norm > learner.clip_norm:
            grads = [g * (learner.clip_norm / norm) for g in grads]
    t = fit.steps
    for i, (p, g) in enumerate(zip(values, grads)):
        g = g.reshape(p.shape) + learner.weight_decay * p
        if learner.optimizer == "adam":
            m, v = fit.firsts[i], fit.seconds[i]
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            p -= lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        else:
            if fit.firsts:
                fit.firsts[i] *= learner.momentum
                fit.firsts[i] += g
                g = fit.firsts[i]
            p -= lr * g


def scheduled_lr(schedule: str, peak: float, warmup: int, k: int, total: int) -> float:
    """The learning rate of step k (from 0) of `total` (see NetworkLearner's lr_schedule)."""
    if k < warmup:
        return peak * (k + 1) / warmup
    if schedule == "constant":
        return peak
    j, J = k - warmup, total - warmup
    if j >= J:
        return 0.0
    if schedule == "linear":
        return peak * (1.0 - j / J)
    return peak * 0.5 * (1.0 + math.cos(math.pi * j / J))


def _real(value, name: str, *, minimum: float, strict: bool, below: Optional[float] = None) -> float:
    """value as a float: a finite real number above `minimum` (or at it unless `strict`) and below `below`."""
    number = float(value) if not isinstance(value, bool) and isinstance(
        value, (numbers.Real, np.floating, np.integer)) else math.nan
    if (not math.isfinite(number) or (number <= minimum if strict else number < minimum)
            or (below is not None and number >= below)):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        if below is not None:
            bound += f" and < {below}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


def _entries(arch) -> List[Tuple[str, bool]]:
    """("param" or "norm", whether it has a bias or beta) per entry of sample_params' layout (a Recurrent layer
    has two: (U, b) and (W, None))."""
    out: List[Tuple[str, bool]] = []
    for layer in _param_layers(arch.layers, (Dense, Conv, BatchNorm, Recurrent, SelfAttention)):
        if isinstance(layer, BatchNorm):
            out.append(("norm", True))
        else:
            out += [("param", has) for has in _biases(layer)]
    return out


class NetworkLearner(BaseEstimator):
    """Train any parameters of one network by minibatch SGD (with momentum) or Adam.

    Training starts from network `index` of `seed` (``nnpk.sample_params``); the
    chosen parameters are trained, the others keep their sampled values. Each
    task (``fit(X, y, task=t)``) keeps its own trained parameters, so one sampled
    network serves several tasks. Classification uses softmax cross-entropy over
    the first ``n_classes`` logits (class i is logit i of the sorted labels),
    regression the squared loss ``0.5 * sum_c (f_c - y_c)^2`` on the first
    ``n_targets`` outputs; both are averaged over the minibatch.

    Gradients are taken with respect to the stored parameters (under "ntk" a layer
    computes ``z = (W_std / sqrt(fan_in)) h W + b_std b``, so the gradients carry
    those factors). They come from the C++ engine's backward pass through every
    layer (dense, convolution, pooling, residual blocks, activations, and
    recurrent layers by backpropagation through time): a weight's
    gradient is the product of its layer's inputs and the back-propagated errors
    of a whole chunk of rows. Rows are processed in fixed chunks of 96 and the
    chunks' float64 gradient sums added in a fixed order, and the optimizer
    updates every element by the same formula whichever thread runs it: a fit is
    bitwise the same for any ``n_threads``. Parameters and the optimizer's state
    are float64; the forward and backward passes run in ``dtype``.

    A network whose output is a sequence (a ``Recurrent`` layer with
    ``return_sequences=True``, then layers acting on every step) trains on the squared
    loss of every step's outputs: y is ``(n_samples, steps, n_targets)`` (or
    ``(n_samples, steps)`` for one output per step), the loss summed over steps and
    outputs; predictions have y's shape. ``generate`` runs such a network in closed loop.

    Parameters
    ----------
    arch : nnpk.Network (an nnpk.MLP is one)
    seed, index : int
        Which network to start from: network `index` of `seed`, as everywhere in nnpk.
    train : "all", "weights", "biases", "readout", "masks" or list of int
        "all": every weight and bias; "weights": every weight; "biases": every
        bias; "readout": the final Dense layer's weights and bias; a list:
        the weights and biases of those parametrised layers (indices into
        ``params_``, the layout of ``nnpk.sample_params``). "masks": a mask per
        hidden unit (every activation layer read by a Dense or Conv layer, through
        pooling or flattening), the weights and biases staying as drawn: unit i's
        output is multiplied by ``sigmoid(k s_i)`` in training, its score s_i learned
        (starting at 1) and the slope k rising geometrically over the fit's steps
        from ``mask_slope[0]`` to ``mask_slope[1]``, and by ``1[s_i > 0]`` in
        evaluation (predictions, ``params_``). Each task has its own masks on the same
        random network.
    optimizer : "adam" or "sgd"
        SGD: ``buf = momentum * buf + g``, ``p -= lr * buf`` (buf starts at 0; plain
        gradient descent with momentum 0), as torch.optim.SGD without dampening or
        Nesterov. Adam: beta1 0.9, beta2 0.999, eps 1e-8,
        ``p -= lr * m_hat / (sqrt(v_hat) + eps)`` with the bias-corrected moments,
        as torch.optim.Adam.
    lr : float, "ntk" or None
        Learning rate (step size), > 0: the peak of the schedule. "ntk" (SGD only): a
        fraction 1/2 of SGD's stability bound ``2 (1 + momentum) / lambda`` at the sampled
        network, lambda the largest curvature of a minibatch's loss from the empirical NTK
        of the trained parameters and the loss's Hessian in the logits there
        (``nnpk.learn.ntk_learning_rate``), computed once per task.
        None: the default of the optimizer and trained parameters
        (``nnpk.learn.DEFAULT_LEARNING_RATES``): Adam 1e-3 when weights of hidden layers
        train, 1e-1 for "biases" and "masks", 1e-2 for "readout" and "biases+readout"; SGD
        "ntk" (masks: 100). The
        value used is ``lr_`` (and each task's ``lr``). A loss that stops being finite raises
        ``nnpk.learn.DivergenceError``, the task kept as after its last finite epoch.
    lr_schedule : "constant", "linear" or "cosine"
        The learning rate of the k-th step (k = 0, 1, ...) over the K steps of `epochs`
        epochs (partial_fit continues the same schedule, one epoch a call): after
        `warmup` steps rising linearly, ``lr (k + 1) / warmup``, it is constant, or decays
        to 0 as ``lr (1 - j / J)`` ("linear") or ``lr (1 + cos(pi j / J)) / 2`` ("cosine")
        with ``j = k - warmup`` and ``J = K - warmup``; steps past K take 0.
    warmup : int
        Steps of linear warm-up (0: none).
    params : list, optional
        Start from these parameters (the layout of ``nnpk.sample_params``, e.g. a trained
        network's) instead of network `index` of `seed`.
    linearize : bool
        Train the network's linearisation around its starting parameters theta_0,
        ``f_lin(x; theta) = f(x; theta_0) + J(x; theta_0) (theta - theta_0)`` (J the Jacobian
        of the logits in the stored parameters), with the same optimiser, schedule, loss,
        batches and trained parameters as the network itself; predictions are f_lin's.
        Each step runs the forward pass at theta_0, a forward-mode tangent pass for
        ``J (theta - theta_0)`` and the backward pass at theta_0: memory as training the
        network, never a Jacobian or a kernel. Batch normalisations are evaluated by their
        statistics at theta_0 (the running statistics, initially mean 0 and variance 1).
    offset : bool
        With linearize: include ``f(x; theta_0)`` (True) or train ``J (theta - theta_0)``
        alone (False).
    mask_slope : (float, float)
        With train="masks": the sigmoid's slope at the first and the last step.
    momentum : float
        SGD's momentum in [0, 1); must be 0 with Adam.
    weight_decay : float
        L2 penalty >= 0, added to the gradient as ``g + weight_decay * p`` for every
        trained parameter (biases included) before the update, as torch's SGD and
        Adam do (not Adam's decoupled "AdamW" decay).
    epochs : int
        Passes over the training set in ``fit``.
    batch_size : int or None
        Rows per step (the last step of an epoch takes the rest); None: the whole
        training set (full-batch). Multiples of 96 waste no work.
    loss : "auto", "cross_entropy", "squared" or "logistic"
        "auto": cross-entropy for class labels (binary or multiclass targets in
        scikit-learn's sense), squared loss for real-valued targets. "logistic": two
        classes on the first logit alone, the sigmoid cross-entropy
        ``log(1 + exp(-s f))`` with ``s = +1`` for the larger class label and -1 for the
        smaller; a row is predicted right when the sign of f is s.
    dtype : "float32" or "float64"
        Precision of the forward and backward passes.
    n_threads : int, optional
        None: all physical cores; -1 all, -2 all but one; 0 is an error.
    random_state : None, int or numpy RandomState
        The minibatch order, and nothing else.
    record : list of int, optional
        Epochs (0 = the sampled network, before any step) after which the empirical
        NTK and NNGP of the network's logits on `record_points` are stored in
        ``kernels_history_``; each in [0, epochs].
    record_points : array, optional
        The points of the recorded kernels (needed with `record`).
    record_targets : array, optional
        Targets of `record_points` for the kernels' alignment: class labels of a
        classification task (one-hot over the task's classes) or real values.
    clip_norm : float, optional
        Clip each step's gradient (all trained arrays together, before weight decay) to
        this Euclidean norm where it is larger, as ``torch.nn.utils.clip_grad_norm_``;
        long sequences through recurrent layers need it. None: no clipping.


    Attributes
    ----------
    tasks_ : dict
        Task -> its ``TaskFit`` (``params``, ``history``, ``classes``, ``loss``,
        ``n_outputs``, ``kernels``).
    params_ : list of (W, b)
        The last fitted task's parameters, in the layout of ``nnpk.sample_params``.
    history_ : dict
        The last fitted task's ``{"loss": [...], "accuracy": [...]}``, one entry per epoch.
    lr_ : float
        The last fitted task's learning rate (the schedule's peak): lr, its default, or lr="ntk"'s value.
    kernels_history_ : list of dict
        The last fitted task's recorded kernels, one dict per recorded epoch, in
        order: ``"epoch"``; ``"ntk"`` and ``"nngp"``, the (n, n) empirical kernels of
        ``nnpk.empirical(record_points, arch=arch, params=..., get=("ntk", "nngp"))``
        (the NTK with respect to every parameter, trained or not);
        ``"ntk_alignment"`` and ``"nngp_alignment"``, their centred kernel-target
        alignment with `record_targets` (``nnpk.diagnostics.kernel_target_alignment``;
        nan without record_targets); ``"ntk_distance"`` and ``"nngp_distance"``, the
        relative Frobenius distance ``||K_t - K_0||_F / ||K_0||_F`` from the kernels of
        the sampled network.
    n_features_in_ : int
        Values per input point (shared by all tasks).
    input_shape_ : tuple
        The shape of one input point.
    """

    _TRAIN: Tuple[str, ...] = TRAIN

    def __init__(self, arch, seed=0, index=0, train="all", optimizer="adam", lr=None, momentum=0.0,
                 weight_decay=0.0, epochs=10, batch_size=96, loss="auto", dtype="float64", n_threads=None,
                 random_state=None, record=None, record_points=None, record_targets=None, clip_norm=None,
                 lr_schedule="constant", warmup=0, params=None, linearize=False, offset=True,
                 mask_slope=(1.0, 50.0)):
        self.arch = arch
        self.seed = seed
        self.index = index
        self.train = train
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.loss = loss
        self.dtype = dtype
        self.n_threads = n_threads
        self.random_state = random_state
        self.record = record
        self.record_points = record_points
        self.record_targets = record_targets
        self.clip_norm = clip_norm
        self.lr_schedule = lr_schedule
        self.warmup = warmup
        self.params = params
        self.linearize = linearize
        self.offset = offset
        self.mask_slope = mask_slope

    # ------------------------------------------------------------------ checks

    def _check_train(self, arch) -> None:
        train = self.train
        if isinstance(train, str):
            if train not in self._TRAIN:
                raise ValueError(f"train must be one of {', '.join(map(repr, self._TRAIN))} or a list of "
                                 f"parametrised-layer indices, got {train!r}")
            if "biases" in train and not any(arch.has_bias) and not arch.has_batch_norm:
                raise ValueError(f"train={train!r} but arch has no biases (b_std=None); "
                                 "give arch a b_std or train other parameters")
            if "readout" in train and not isinstance(arch.layers[-1], Dense):
                others = " or ".join(repr(t) for t in self._TRAIN if "readout" not in t)
                raise ValueError(f"train={train!r} trains the final Dense layer; this network ends with layer "
                                 f"{len(arch.layers) - 1} ({arch.layers[-1].describe()}): use train={others}")
            return
        if not isinstance(train, (list, tuple)) or not train:
            raise ValueError(f"train must be one of {', '.join(map(repr, self._TRAIN))} or a non-empty list of "
                             f"parametrised-layer indices, got {train!r}")
        n = len(_entries(arch))
        for i, layer in enumerate(train):
            check_int(layer, f"train[{i}]")
            if not 0 <= layer < n:
                raise ValueError(f"train[{i}] = {layer} is out of range: the network has {n} parametrised layers "
                                 f"(indices 0 to {n - 1})")
        if len(set(train)) != len(train):
            raise ValueError(f"train names a layer twice: {list(train)}")

    def _check_hyperparameters(self) -> None:
        arch = check_arch(self.arch)
        if self.train != "readout":  # the readout's gradient needs no activation's derivative
            check_differentiable(arch, f"{type(self).__name__}(train={self.train!r})")
        check_int(self.seed, "seed", minimum=0, maximum=SEED_MAX)
        check_int(self.index, "index", minimum=0, maximum=SEED_MAX)
        self._check_train(arch)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        check_lr(self.lr, self.optimizer)
        momentum = _real(self.momentum, "momentum", minimum=0, strict=False, below=1)
        if momentum and self.optimizer == "adam":
            raise ValueError(f"momentum={momentum} applies to optimizer='sgd'; Adam's moments have fixed betas")
        _real(self.weight_decay, "weight_decay", minimum=0, strict=False)
        check_int(self.epochs, "epochs", minimum=1)
        if self.batch_size is not None:
            check_int(self.batch_size, "batch_size", minimum=1)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {self.loss!r}")
        compute_dtype(self.dtype)
        resolve_n_threads(self.n_threads)
        if self.clip_norm is not None:
            _real(self.clip_norm, "clip_norm", minimum=0, strict=True)
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(map(repr, SCHEDULES))}, got {self.lr_schedule!r}")
        check_int(self.warmup, "warmup", minimum=0)
        if self.train == "masks":
            check_slopes(self.mask_slope)
            if not mask_sites(check_arch(self.arch)):
                raise ValueError("train='masks' found no hidden units to mask: no activation layer is read by a "
                                 "Dense or Conv layer")
            if self.linearize:
                raise ValueError("train='masks' and linearize=True do not go together")
        for name in ("linearize", "offset"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.linearize and self.record is not None:
            raise ValueError("record= stores the kernels of the trained network; a linearised network's tangent "
                             "kernel stays the NTK at theta_0 (nnpk.empirical of the starting parameters)")
        self._check_record()

    def _check_record(self) -> None:
        if self.record is None:
            if self.record_points is not None or self.record_targets is not None:
                raise ValueError("record_points and record_targets are used with record= (the epochs at which "
                                 "kernels are recorded); record is None")
            return
        if isinstance(self.record, (str, bytes)) or not hasattr(self.record, "__iter__"):
            raise TypeError(f"record must be a list of epochs, got {type(self.record).__name__}")
        for i, epoch in enumerate(self.record):
            check_int(epoch, f"record[{i}]", minimum=0)
            if epoch > self.epochs:
                raise ValueError(f"record[{i}] = {epoch} is beyond epochs={self.epochs}")
        if self.record_points is None:
            raise ValueError("record needs record_points: the points on which the kernels are computed")
        if check_arch(self.arch).has_batch_norm:
            raise ValueError("record= stores the empirical kernels of the network, which are not defined with "
                             "BatchNorm (a point's output depends on the batch it is normalised with)")

    def _check_x(self, X, name: str = "X") -> np.ndarray:
        """X in the compute dtype, checked against the network's point shape once there is one, flattened
        to (n, values per point); the network compiled for its points is ``self._compiled``."""
        shape = getattr(self, "input_shape_", None)
        x = check_points(X, name, check_arch(self.arch), self.dtype, point_shape=shape,
                         other="the network the fitted tasks share")
        self._compiled = self.arch.compile(x.shape[1:])
        return x.reshape(x.shape[0], -1)

    def _task(self, task) -> TaskFit:
        check_is_fitted(self, "tasks_")
        if task not in self.tasks_:
            raise ValueError(f"task {task!r} has not been fitted; fitted tasks: {list(self.tasks_)}")
        return self.tasks_[task]

    def _targets(self, y, n_rows: int, classes=None):
        """(loss, classes, n_outputs, engine targets, 1-D) for training targets y; with `classes` (a
        fitted task's), labels must be among them."""
        if y is None:
            raise TypeError("y must be an array of targets, got None")
        if np.shape(y)[:1] != (n_rows,):
            raise ValueError(f"y has shape {np.shape(y)}; X has {n_rows} rows, y needs one target per row")
        loss = self.loss
        if len(self._compiled.out_shape) == 2:
            return self._sequence_targets(y, n_rows, "squared" if loss == "auto" else loss, self._compiled.out_shape)
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
        if loss in ("cross_entropy", "logistic"):
            y = column_or_1d(y, warn=True)
            check_classification_targets(y)
            if classes is None:
                classes, labels = np.unique(y, return_inverse=True)
            else:
                labels = np.searchsorted(classes, y)
                unknown = (labels >= len(classes)) | (classes[np.minimum(labels, len(classes) - 1)] != y)
                if unknown.any():
                    raise ValueError(f"y has labels not among the task's classes {classes.tolist()}: "
                                     f"{np.unique(y[unknown]).tolist()}")
            if len(classes) < 2:
                raise ValueError(f"y has a single class ({classes[0]!r}); classification needs at least two")
            if loss == "logistic":
                if len(classes) != 2:
                    raise ValueError(f"loss='logistic' takes two classes on one logit; y has {len(classes)}: "
                                     f"{classes.tolist()}")
                return loss, classes, 1, labels.astype(np.int64), False
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

    def _sequence_targets(self, y, n_rows: int, loss: str, out_shape):
        """The targets of a network whose output is a sequence of `steps` steps of C outputs: the squared
        loss on every step, y (n, steps, C) or (n, steps) for C = 1."""
        steps, C = out_shape
        if loss != "squared":
            raise ValueError(f"the network's output is a sequence of {steps} steps: it trains on the squared loss of "
                             "every step (loss='squared'); for one label per sequence use a Recurrent layer with "
                             "return_sequences=False and a Dense readout")
        values = np.asarray(y, dtype=np.float64)
        if values.shape not in ((n_rows, steps, C),) + (((n_rows, steps),) if C == 1 else ()):
            one = f" or ({n_rows}, {steps})" if C == 1 else ""
            raise ValueError(f"y has shape {values.shape}; the network outputs {C} values at each of {steps} steps: "
                             f"y must be ({n_rows}, {steps}, {C}){one}")
        if not np.isfinite(values).all():
            raise ValueError("y contains NaN or infinite values")
        return loss, None, steps * C, np.ascontiguousarray(values.reshape(n_rows, -1)), values.ndim == 2

    # ----------------------------------------------------------------- network

    def _sampled_params(self):
        """The starting float64 (W, b) of every parametrised layer: network `index` of `seed`, drawn once per
        network, or the given `params` (checked)."""
        key = (self.arch, self.seed, self.index, self.input_shape_, id(self.params))
        cached = getattr(self, "_sampled", None)
        if cached is None or cached[0] != key:
            if getattr(self, "tasks_", None):
                raise ValueError(f"arch, seed or index changed after tasks {list(self.tasks_)} were fitted (or "
                                 f"params did); their parameters belong to the network sampled then: use a new "
                                 f"{type(self).__name__}")
            if self.params is None:
                start = sample_params(self.arch, self.input_shape_, self.seed, self.index)
            else:
                compiled = self.arch.compile(self.input_shape_)
                checked = check_network_params(self.params, compiled, np.float64)
                start = [(W if isinstance(p, NormLayer) else W.reshape(p.weight_shape), b)
                         for (W, b), p in zip(checked, compiled.entries)]
            cached = self._sampled = (key, start)
        return cached[1]

    def _flags(self) -> Tuple[List[bool], List[bool]]:
        """(per-entry weight flags, per-entry bias flags) of the trained parameters, one per parametrised
        layer (a BatchNorm's gamma counts as a weight, its beta as a bias)."""
        entries = _entries(check_arch(self.arch))
        n = len(entries)
        has_bias = [has for _, has in entries]
        last = [l == n - 1 for l in range(n)]
        train = self.train
        if not isinstance(train, str):
            chosen = [l in set(train) for l in range(n)]
            return chosen, [c and b for c, b in zip(chosen, has_bias)]
        if train == "masks":
            # The engine's weight gradients of the layers reading masked units give the masks' gradients.
            read = {site.entry for site in mask_sites(check_arch(self.arch))}
            return [l in read for l in range(n)], [False] * n
        weights = {"all": [True] * n, "weights": [True] * n, "biases": [False] * n, "readout": last,
                   "biases+readout": last}[train]
        biases = {"all": has_bias, "weights": [False] * n, "biases": has_bias,
                  "readout": [b and r for b, r in zip(has_bias, last)], "biases+readout": has_bias}[train]
        return list(weights), list(biases)

    def _engine_params(self, params, dtype) -> list:
        """Every parametrised layer's pair as the engine reads it: W as (fan_in, fan_out), in `dtype`
        (the float64 arrays themselves in float64, copies otherwise)."""
        out = []
        for (W, b), p in zip(params, self._compiled.entries):
            shape = W.shape if isinstance(p, NormLayer) else (p.fan_in, p.fan_out)
            out.append((np.ascontiguousarray(W.reshape(shape), dtype=dtype),
                        None if b is None else np.ascontiguousarray(b, dtype=dtype)))
        return out

    def _trained_arrays(self, fit: TaskFit, params=None) -> List[np.ndarray]:
        """The float64 trained arrays in the engine's order (per layer its W as (fan_in, fan_out) or gamma,
        then b or beta), of the fit's parameters or of `params` in their layout."""
        weights, biases = self._flags()
        out: List[np.ndarray] = []
        for l, ((W, b), p) in enumerate(zip(fit.params if params is None else params, self._compiled.entries)):
            if weights[l]:
                out.append(W if isinstance(p, NormLayer) else W.reshape(p.fan_in, p.fan_out))
            if biases[l] and b is not None:
                out.append(b)
        return out

    def _mask_step(self, fit: TaskFit, x: np.ndarray, loss: str, n_outputs: int, threads: int, n: int):
        """One optimizer step of a masked task (see train="masks"): the engine's gradients of the weights reading
        the masked units, at the soft masks, give the scores' gradients; the scores are updated here by the
        learner's rule, in float64."""
        sites = mask_sites(check_arch(self.arch))
        weights, biases = self._flags()
        start = self._engine_params(self._sampled_params(), np.float64)  # the random network, as drawn
        if not fit.masks:
            fit.masks = [np.ones(site.channels) for site in sites]
        if not fit.firsts and (self.optimizer == "adam" or self.momentum):
            fit.firsts = [np.zeros_like(v) for v in fit.masks]
        if not fit.seconds and self.optimizer == "adam":
            fit.seconds = [np.zeros_like(v) for v in fit.masks]
        engine = _core.SequentialTrainer(self._compiled.spec, weights, biases, threads, x.dtype.name)
        engine_params = [(np.array(W, dtype=x.dtype), None if b is None else np.array(b, dtype=x.dtype))
                         for W, b in self._engine_params(fit.params, x.dtype)]
        slopes = check_slopes(self.mask_slope)
        batch = n if self.batch_size is None else min(int(self.batch_size), n)
        total = int(self.epochs) * -(-n // batch)
        fit.lr = peak = learner_lr(self, fit, x, loss, n_outputs)

        def step(xb: np.ndarray, tb: np.ndarray) -> Tuple[float, float]:
            k = mask_slope(slopes, fit.steps, total)
            soft = [sigmoid(k * s) for s in fit.masks]
            for site, m in zip(sites, soft):
                apply_masks(start[site.entry][0], m, engine_params[site.entry][0])
            value, grad_w, _, correct = engine.gradients(xb, engine_params, loss, n_outputs, tb, None, True, True)
            grads = [mask_gradients(grad_w[site.entry], start[site.entry][0], site.channels) * k * m * (1 - m)
                     for site, m in zip(sites, soft)]
            lr = scheduled_lr(self.lr_schedule, peak, int(self.warmup), fit.steps, total)
            fit.steps += 1
            _update(fit.masks, grads, fit, self, lr)
            for site, s in zip(sites, fit.masks):
                masked = np.empty_like(start[site.entry][0])
                apply_masks(start[site.entry][0], (s > 0).astype(np.float64), masked)
                fit.params[site.entry] = (masked.reshape(fit.params[site.entry][0].shape), fit.params[site.entry][1])
            return value, correct

        return step

    def _direction(self, fit: TaskFit, dtype, trained_only: bool = False) -> list:
        """A linearised task's theta - theta_0 per parametrised layer, as the engine reads it ((dW, db) in `dtype`,
        None where zero; with trained_only, an array for every trained one, which the steps refresh)."""
        assert fit.origin is not None
        weights, biases = self._flags()
        current = self._engine_params(fit.params, np.float64)
        origin = self._engine_params(fit.origin, np.float64)
        out = []
        for l, ((W, b), (W0, b0)) in enumerate(zip(current, origin)):
            pair = []
            for flag, a, a0 in ((weights[l], W, W0), (biases[l], b, b0)):
                keep = flag if trained_only else (a is not None and not np.array_equal(a, a0))
                pair.append(np.ascontiguousarray(a - a0, dtype=dtype) if keep and a is not None else None)
            out.append(tuple(pair))
        return out

    # --------------------------------------------------------------- training

    def fit(self, X, y, task: Hashable = 0):
        """Train task `task` for `epochs` epochs from the sampled network on X.

        Other tasks keep their parameters; all tasks share the network, so X
        must have the point shape of the first fit's X.

        Parameters
        ----------
        X : (n_samples, n_features) array, or points of the shape the network takes
        y : (n_samples,) class labels, or (n_samples,) / (n_samples, n_targets) values
        task : hashable
            The task's name.
        """
        return self._train(X, y, task, restart=True, classes=None)

    def partial_fit(self, X, y, task: Hashable = 0, classes=None):
        """One more epoch of task `task` on X, continuing its parameters and optimizer state.

        The first call for a task starts it from the sampled network; the minibatch
        order continues the random stream of the first call. For a
        classification task, `classes` (on the first call) gives every class label
        the task will see, when X holds only some of them; later calls' labels must
        be among the task's classes. Kernels are recorded at the task's epoch counts
        in `record`.
        """
        fitted = getattr(self, "tasks_", {})
        if classes is not None and task in fitted:
            raise ValueError(f"classes is given only on the first partial_fit of a task; task {task!r} has "
                             f"classes {None if fitted[task].classes is None else fitted[task].classes.tolist()}")
        return self._train(X, y, task, restart=task not in fitted, classes=classes, epochs=1)

    def _train(self, X, y, task, *, restart: bool, classes, epochs: Optional[int] = None):
        fit, x, targets, step, recorder = self._start(X, y, task, restart=restart, classes=classes)
        if recorder is not None and fit.epochs == 0:
            recorder(fit)  # the sampled network's kernels: the reference of the distances
        n = x.shape[0]
        rng = fit.rng
        batch = n if self.batch_size is None else min(int(self.batch_size), n)
        arrays = self._trained_arrays(fit)
        # The state after the last epoch whose parameters gave a finite loss, and after the epoch just run.
        finite = latest = Checkpoint.take(fit, arrays)
        for _ in range(int(self.epochs) if epochs is None else epochs):
            order = rng.permutation(n) if batch < n else None
            total_loss = total_correct = 0.0
            for start in range(0, n, batch):
                if order is None:
                    xb, tb = x, targets
                else:
                    rows = order[start : start + batch]
                    xb, tb = x[rows], targets[rows]
                value, correct = step(xb, tb)
                if not math.isfinite(value):
                    self._diverged(task, fit, finite, arrays, start // batch + 1, value)
                if start == 0:
                    finite = latest
                total_loss += value * xb.shape[0]
                total_correct += round(correct * xb.shape[0])  # a count of rows
            if not all_finite(arrays):
                self._diverged(task, fit, finite, arrays, -(-n // batch), value)
            fit.epochs += 1
            fit.history["loss"].append(total_loss / n)
            fit.history["accuracy"].append(total_correct / n if fit.classes is not None else math.nan)
            if recorder is not None and fit.epochs in self.record:
                recorder(fit)
            latest = Checkpoint.take(fit, arrays)
        self._keep(task, fit)
        return self

    def _keep(self, task, fit: TaskFit) -> None:
        self.tasks_[task] = fit
        self.params_, self.history_, self.kernels_history_ = fit.params, fit.history, fit.kernels
        self.buffers_, self.lr_ = fit.buffers, fit.lr

    def _diverged(self, task, fit: TaskFit, finite: Checkpoint, arrays, step: int, loss: float) -> None:
        """Keep the task as it was after its last epoch whose parameters gave a finite loss and raise
        DivergenceError for step `step` of the current epoch."""
        epoch = fit.epochs + 1
        finite.restore(fit, arrays)
        self._keep(task, fit)
        raise DivergenceError(task, epoch, step, loss, fit.lr or math.nan, self.optimizer, fit.epochs)

    def _start(self, X, y, task, *, restart: bool, classes):
        """(the task's fit, X in the compute dtype, its engine targets, a function running one optimizer step
        on rows (x, targets) and returning their (mean loss, accuracy), the kernel recorder or None)."""
        self._check_hyperparameters()
        try:
            hash(task)
        except TypeError:
            raise TypeError(f"task must be hashable (a name such as 0 or 'parity'), "
                            f"got {type(task).__name__}") from None
        shape = getattr(self, "input_shape_", None)
        x = self._check_x(X)
        n, d = x.shape
        fitted: Dict[Hashable, TaskFit] = getattr(self, "tasks_", {})
        previous = None if restart else fitted[task]
        if classes is not None:
            classes = np.unique(column_or_1d(classes))
        elif previous is not None:
            classes = previous.classes
        loss, classes, n_outputs, targets, targets_1d = self._targets(y, n, classes)
        weights, biases = self._flags()
        rule = (tuple(weights), tuple(biases), self.optimizer, bool(self.momentum))
        if previous is not None:
            if loss != previous.loss:
                raise ValueError(f"task {task!r} was fitted with loss {previous.loss!r}; y now calls for {loss!r}")
            if rule != previous.rule:
                raise ValueError(f"task {task!r} was trained with other train, optimizer or momentum settings; "
                                 "its optimizer state does not carry over: fit it anew")
        threads = resolve_n_threads(self.n_threads)
        recorder = self._recorder(classes)
        self.n_features_in_ = d
        self.input_shape_ = self._compiled.input_shape if shape is None else shape
        if previous is None:
            start = self._sampled_params()
            params = [(W.copy(), None if b is None else b.copy()) for W, b in start]
            fit = TaskFit(loss=loss, classes=classes, n_outputs=n_outputs, params=params, targets_1d=targets_1d,
                          rule=rule, rng=check_random_state(self.random_state),
                          buffers=[(np.zeros(p.channels), np.ones(p.channels)) for p in self._compiled.norms],
                          origin=start if self.linearize else None, offset=bool(self.offset))
        else:
            fit = previous
            if (fit.origin is not None) != bool(self.linearize):
                raise ValueError(f"task {task!r} was trained with linearize={fit.origin is not None}; fit it anew to "
                                 "change that")
        self.tasks_ = fitted
        if self.train == "masks":
            return fit, x, targets, self._mask_step(fit, x, loss, n_outputs, threads, n), recorder
        values = self._trained_arrays(fit)
        if not fit.firsts and (self.optimizer == "adam" or self.momentum):
            fit.firsts = [np.zeros_like(v) for v in values]
        if not fit.seconds and self.optimizer == "adam":
            fit.seconds = [np.zeros_like(v) for v in values]
        engine = _core.SequentialTrainer(self._compiled.spec, weights, biases, threads, x.dtype.name)
        origins = None
        if fit.origin is None:
            # In float64 the engine reads the trained arrays themselves; in float32 copies that each step refreshes.
            engine_params = self._engine_params(fit.params, x.dtype)
        else:
            # The passes run at theta_0; the engine's copies of the trained arrays are theta - theta_0.
            engine_params = [(np.array(W, dtype=x.dtype), None if b is None else np.array(b, dtype=x.dtype))
                             for W, b in self._engine_params(fit.origin, x.dtype)]
            engine.linearize(self._direction(fit, x.dtype, trained_only=True), fit.offset)
            origins = self._trained_arrays(fit, fit.origin)
        norms = fit.buffers or None  # each BatchNorm's running statistics, updated in place
        clip = 0.0 if self.clip_norm is None else float(self.clip_norm)
        batch = n if self.batch_size is None else min(int(self.batch_size), n)
        total = int(self.epochs) * -(-n // batch)  # the schedule's steps
        fit.lr = peak = learner_lr(self, fit, x, loss, n_outputs)

        def step(xb: np.ndarray, tb: np.ndarray) -> Tuple[float, float]:
            lr = scheduled_lr(self.lr_schedule, peak, int(self.warmup), fit.steps, total)
            fit.steps += 1
            return engine.step(xb, engine_params, loss, n_outputs, tb, values, fit.firsts, fit.seconds,
                               self.optimizer, lr, float(self.momentum), float(self.weight_decay), fit.steps, norms,
                               clip, origins)

        return fit, x, targets, step, recorder

    def _stepper(self, X, y, task: Hashable = 0):
        """A function running one optimizer step of fitted task `task` on all of (X, y), as training does
        per minibatch (for benchmarks)."""
        _, _, targets, step, _ = self._start(X, y, task, restart=False, classes=None)
        x = self._check_x(X)
        return lambda: step(x, targets)

    # ----------------------------------------------------------------- kernels

    def _recorder(self, classes):
        """A function storing the kernels of a task's current network (at its epoch count), or None."""
        if self.record is None:
            return None
        from ..kernels import empirical

        arch = check_arch(self.arch)
        points = check_points(self.record_points, "record_points", arch, "float64",
                              point_shape=self._compiled.input_shape, other="X")
        n = points.shape[0]
        targets = None
        if self.record_targets is not None:
            if np.shape(self.record_targets)[:1] != (n,):
                raise ValueError(f"record_targets has shape {np.shape(self.record_targets)}; record_points has {n} "
                                 "points, record_targets needs one target per point")
            if classes is not None:
                labels = column_or_1d(self.record_targets)
                index = np.minimum(np.searchsorted(classes, labels), len(classes) - 1)
                if (classes[index] != labels).any():
                    raise ValueError(f"record_targets has labels not among the task's classes {classes.tolist()}")
                targets = np.eye(len(classes))[index]
            else:
                targets = np.asarray(self.record_targets, dtype=np.float64).reshape(n, -1)
        record, threads = set(self.record), self.n_threads

        def store(fit: TaskFit) -> None:
            kernels = empirical(points, arch=arch, params=fit.params, get=("ntk", "nngp"), n_threads=threads)
            if fit.epochs == 0:
                fit.initial_kernels = kernels
            if fit.epochs not in record:
                return
            entry: Dict[str, Any] = {"epoch": fit.epochs}
            for name in ("ntk", "nngp"):
                K = kernels[name]
                entry[name] = K
                entry[f"{name}_alignment"] = (math.nan if targets is None else
                                              kernel_target_alignment(K, targets, centered=True))
                K0 = None if fit.initial_kernels is None else fit.initial_kernels[name]
                entry[f"{name}_distance"] = (math.nan if K0 is None else
                                             float(np.linalg.norm(K - K0) / np.linalg.norm(K0)))
            fit.kernels.append(entry)

        return store

    # ------------------------------------------------------------- prediction

    def decision_function(self, X, task: Hashable = 0) -> np.ndarray:
        """The task's outputs: (n_samples, n_outputs) logits or regression values (float64)."""
        fit = self._task(task)
        x = self._check_x(X)
        self._sampled_params()  # the network has not changed since the tasks were fitted
        threads = resolve_n_threads(self.n_threads)
        if fit.origin is not None:
            outputs = _core.sequential_linearized_outputs(x, self._compiled.spec,
                                                          self._engine_params(fit.origin, x.dtype),
                                                          self._direction(fit, x.dtype), fit.offset, threads,
                                                          fit.buffers or None)
        else:
            outputs = _core.sequential_outputs(x, self._compiled.spec, self._engine_params(fit.params, x.dtype),
                                               threads, fit.buffers or None, False)
        return outputs[:, : fit.n_outputs]

    def predict(self, X, task: Hashable = 0) -> np.ndarray:
        """Class labels (the largest of the task's logits), or regression values shaped like the targets."""
        fit = self._task(task)
        outputs = self.decision_function(X, task)
        if fit.classes is not None:
            index = (outputs[:, 0] > 0).astype(np.int64) if fit.loss == "logistic" else np.argmax(outputs, axis=1)
            return fit.classes[index]
        if len(self._compiled.out_shape) == 2:
            outputs = outputs.reshape((outputs.shape[0],) + self._compiled.out_shape)
            return outputs[..., 0] if fit.targets_1d else outputs
        return outputs[:, 0] if fit.targets_1d else outputs

    def generate(self, warmup, steps: int, task: Hashable = 0) -> np.ndarray:
        """Closed-loop generation: after the warm-up sequences are read (teacher forcing), each output is fed
        back as the next input.

        The network's output must be a sequence with as many outputs per step as inputs (a ``Recurrent``
        layer with ``return_sequences=True`` and a readout of the input's size, trained on next-step targets).
        The warm-up's last output is the first generated value; each recurrent layer then carries its state
        from step to step.

        Parameters
        ----------
        warmup : (n_sequences, warmup_steps, features) or (warmup_steps, features) array
        steps : int
            How many values to generate.
        task : hashable

        Returns
        -------
        (n_sequences, steps, features) array (float64), or (steps, features) for one warm-up sequence.
        """
        fit = self._task(task)
        steps = check_int(steps, "steps", minimum=1)
        arch = check_arch(self.arch)
        trained = arch.compile(self.input_shape_)
        if len(trained.out_shape) != 2:
            raise ValueError("generate needs a network whose output is a sequence (a Recurrent layer with "
                             "return_sequences=True, then layers acting on every step)")
        if trained.norms:
            raise ValueError("generate cannot carry a state through BatchNorm layers")
        if fit.origin is not None:
            raise ValueError("generate runs the network itself; this task trained a linearisation")
        features, C = self.input_shape_[-1], trained.out_shape[1]
        if fit.n_outputs != trained.out or C != features:
            raise ValueError(f"generate feeds each step's output back as the next input: the task has "
                             f"{fit.n_outputs // trained.out_shape[0]} outputs per step and the network takes "
                             f"{features} features per step; they must be equal")
        x = np.asarray(warmup)
        one = x.ndim == 2
        if one:
            x = x[None]
        if x.ndim != 3 or x.shape[-1] != features or x.shape[1] < 1 or x.shape[0] < 1:
            raise ValueError(f"warmup must be (n_sequences, warmup_steps, {features}) or (warmup_steps, {features}), "
                             f"got shape {np.shape(warmup)}")
        if x.dtype.kind not in "biuf" or not np.isfinite(x).all():
            raise ValueError("warmup must hold finite real numbers")
        dtype = compute_dtype(self.dtype)
        x = np.ascontiguousarray(x, dtype=dtype)
        n, warm = x.shape[:2]
        self._sampled_params()  # the network has not changed since the tasks were fitted
        self._compiled = trained
        params = self._engine_params(fit.params, dtype)
        threads = resolve_n_threads(self.n_threads)
        n_recurrent = sum(1 for p in trained.params if p.recurrent_weights)
        outputs, states = _core.sequential_state_outputs(x.reshape(n, -1), arch.compile((warm, features)).spec, params,
                                                         threads, [None] * n_recurrent)
        value = outputs.reshape(n, warm, C)[:, -1]
        step_spec = arch.compile((1, features)).spec
        generated = np.empty((n, steps, C))
        for t in range(steps):
            generated[:, t] = value
            if t + 1 < steps:
                value, states = _core.sequential_state_outputs(np.ascontiguousarray(value, dtype=dtype), step_spec,
                                                               params, threads, states)
        return generated[0] if one else generated

    def predict_proba(self, X, task: Hashable = 0) -> np.ndarray:
        """Class probabilities (n_samples, n_classes): the softmax of the task's logits (the logistic loss:
        the sigmoid of the first logit for the larger class)."""
        if self._task(task).classes is None:
            raise ValueError(f"task {task!r} is a regression task; predict_proba needs class labels")
        logits = self.decision_function(X, task)
        if self._task(task).loss == "logistic":
            p = 0.5 * (1.0 + np.tanh(0.5 * logits[:, 0]))  # the sigmoid, without overflow
            return np.stack([1.0 - p, p], axis=1)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def score(self, X, y, task: Hashable = 0) -> float:
        """Accuracy for a classification task, R^2 for a regression task."""
        prediction = self.predict(X, task)
        if self._task(task).classes is not None:
            return float(accuracy_score(column_or_1d(y), prediction))
        return float(r2_score(y, prediction))
