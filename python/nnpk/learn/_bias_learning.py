"""Random weights, learned biases: training only the biases of a fixed random network.

>>> import nnpk
>>> arch = nnpk.MLP(hidden=[4096], out=10, W_std=2**0.5, b_std=1.0, parameterization="standard")
>>> learner = nnpk.BiasLearner(arch, seed=0).fit(x, digit)            # doctest: +SKIP
>>> learner.fit(x, digit % 2, task="parity").score(x, digit % 2, task="parity")  # doctest: +SKIP
"""

from __future__ import annotations

from ._network_learning import NetworkLearner, TaskFit

__all__ = ["BiasLearner", "TaskFit"]


class BiasLearner(NetworkLearner):
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
    train : "biases", "biases+readout", "readout" or "masks"
        "biases": every Dense or Conv layer's bias, the readout's included.
        "readout": the final Dense layer's weights and bias (random features).
        "biases+readout": both. "masks": a learned on/off mask per hidden unit, weights and
        biases as drawn (see ``nnpk.NetworkLearner``'s train="masks").
    optimizer : "adam" or "sgd"
        Adam (beta1 0.9, beta2 0.999, eps 1e-8) or plain gradient descent.
    lr : float, "ntk" or None
        Learning rate (step size). None: the default of the optimizer and trained
        parameters (``nnpk.learn.DEFAULT_LEARNING_RATES``: Adam 1e-1 for "biases" and
        "masks", 1e-2 with the readout; SGD "ntk", a fraction of the stability bound from
        the tangent kernel, as ``nnpk.NetworkLearner``, and 100 for "masks").
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
    clip_norm : float, optional
        Clip each step's gradient to this norm, as ``nnpk.NetworkLearner`` (recurrent
        networks over long sequences need it). None: no clipping.
    lr_schedule : "constant", "linear" or "cosine"
        The learning rate of each step, peaking at `lr`, as ``nnpk.NetworkLearner``.
    warmup : int
        Steps of linear warm-up of the learning rate (0: none).

    Attributes
    ----------
    tasks_ : dict
        Task -> its fit, with the attributes ``loss`` ("cross_entropy" or
        "squared"), ``classes`` (sorted labels, or None for regression),
        ``n_outputs``, ``params`` (every layer's (W, b)), ``biases`` (every Dense
        or Conv layer's bias, None where it has none), ``readout`` (the final
        Dense layer's weights) and ``loss_curve`` (the mean training loss of each
        epoch).
    params_, history_, lr_ : the last fitted task's parameters, history and learning
        rate, as in ``nnpk.NetworkLearner``.
    n_features_in_ : int
        Values per input point (shared by all tasks).
    input_shape_ : tuple
        The shape of one input point: ``(n_features_in_,)`` for flat points.
    """

    _TRAIN = ("biases", "biases+readout", "readout", "masks")

    def __init__(self, arch, seed=0, index=0, train="biases", optimizer="adam", lr=None, epochs=100,
                 batch_size=96, loss="auto", dtype="float64", n_threads=None, random_state=None, clip_norm=None,
                 lr_schedule="constant", warmup=0):
        # NetworkLearner's other settings keep their defaults: plain SGD or Adam, no kernels recorded.
        super().__init__(arch, seed=seed, index=index, train=train, optimizer=optimizer, lr=lr, epochs=epochs,
                         batch_size=batch_size, loss=loss, dtype=dtype, n_threads=n_threads,
                         random_state=random_state, clip_norm=clip_norm,
                         lr_schedule=lr_schedule, warmup=warmup)
