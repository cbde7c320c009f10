"""A learner trained over a grid of learning rates and seeds, divergence recorded rather than raised."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from .._validate import check_int
from ._divergence import DivergenceError

__all__ = ["SweepResult", "sweep"]

SEED_PARAMS = ("seed", "random_state")


@dataclass
class SweepResult:
    """The runs of ``nnpk.learn.sweep``.

    Attributes
    ----------
    lrs : (n_lrs,) array
        The learning rates, in the order given.
    seeds : list of int
    scores : (n_lrs, n_seeds) array
        Each run's final score: on (X_val, y_val) when given, else on the training set;
        nan for a run that diverged.
    runs : list of dict
        One per (lr, seed), lr-major: ``"lr"``, ``"seed"``, ``"history"`` (a copy of the
        learner's ``history_``: per epoch ``"loss"`` and ``"accuracy"``, the epochs before
        a divergence only; None for a learner without one), ``"train_score"``,
        ``"val_score"`` (None without validation data; nan after a divergence),
        ``"diverged"`` (bool) and ``"error"`` (the DivergenceError's message, or None).
    best_lr : float or None
        The learning rate of the best mean score over seeds among those whose runs all
        stayed finite (ties: the first, i.e. in the order of `lrs`); None when every
        learning rate diverged for some seed.
    best_score : float
        That mean score (nan if none).
    best_learner : estimator or None
        The fitted learner of the best learning rate and the first seed.
    """

    lrs: np.ndarray
    seeds: List[int]
    scores: np.ndarray
    runs: List[Dict[str, Any]] = field(default_factory=list)
    best_lr: Optional[float] = None
    best_score: float = math.nan
    best_learner: Any = None

    @property
    def diverged(self) -> np.ndarray:
        """(n_lrs, n_seeds) bool: which runs diverged."""
        return np.array([run["diverged"] for run in self.runs]).reshape(self.scores.shape)


def _check_lrs(lrs) -> np.ndarray:
    values = np.asarray(lrs, dtype=np.float64).reshape(-1) if not isinstance(lrs, str) else np.array([np.nan])
    if values.size == 0 or not (np.isfinite(values) & (values > 0)).all():
        raise ValueError(f"lrs must be a non-empty sequence of finite learning rates > 0, got {lrs!r}")
    return values


def sweep(learner, X, y, *, lrs=None, seeds: Sequence[int] = (0,), X_val=None, y_val=None,
          score: Optional[Callable[..., float]] = None) -> SweepResult:
    """Fit copies of a learner at every learning rate of a grid and every seed; a run whose loss diverges
    is recorded as diverged, not raised.

    Each run is ``sklearn.base.clone(learner).set_params(lr=lr, seed=s, random_state=s).fit(X, y)``
    (``seed`` and ``random_state`` where the learner has them: for ``nnpk.NetworkLearner`` and
    ``nnpk.BiasLearner``, the sampled network and the minibatch order), so a run is the
    same as that learner fitted by hand. Any scikit-learn estimator with an ``lr``
    parameter, ``fit`` and ``score`` can be swept.

    Parameters
    ----------
    learner : estimator
        Its other parameters are kept (clone copies them); it is not fitted itself.
    X, y : training data
    lrs : sequence of float, optional
        The learning rates; None: ``np.logspace(-4, 0, 9)`` (1e-4 to 1, a factor sqrt(10) apart).
    seeds : sequence of int
        One run per seed at each learning rate.
    X_val, y_val : validation data, optional
        Runs are compared by their score on it (else on the training data).
    score : callable, optional
        ``score(fitted_learner, X, y) -> float``, larger is better (a scikit-learn
        scorer, e.g. ``sklearn.metrics.get_scorer("neg_log_loss")``); None: the learner's
        ``score`` (accuracy or R^2 for nnpk's learners).

    Returns
    -------
    SweepResult
    """
    from sklearn.base import clone

    values = _check_lrs(np.logspace(-4, 0, 9) if lrs is None else lrs)
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"seeds must be a sequence of integers, got {type(seeds).__name__}")
    seed_list = [check_int(s, f"seeds[{i}]", minimum=0) for i, s in enumerate(seeds)]
    if not seed_list:
        raise ValueError("seeds must hold at least one seed")
    if (X_val is None) != (y_val is None):
        raise ValueError("X_val and y_val go together: give both or neither")
    if "lr" not in learner.get_params():
        raise ValueError(f"{type(learner).__name__} has no lr parameter to sweep")
    scorer = (lambda fitted, a, b: fitted.score(a, b)) if score is None else score
    names = [name for name in SEED_PARAMS if name in learner.get_params()]
    scores = np.full((values.size, len(seed_list)), np.nan)
    runs: List[Dict[str, Any]] = []
    fitted: Dict[int, Any] = {}
    for i, lr in enumerate(values):
        for j, seed in enumerate(seed_list):
            run = clone(learner).set_params(lr=float(lr), **{name: seed for name in names})
            error = None
            try:
                run.fit(X, y)
            except DivergenceError as diverged:
                error = str(diverged)
            history = getattr(run, "history_", None)
            entry: Dict[str, Any] = {"lr": float(lr), "seed": seed,
                                     "history": None if history is None else copy.deepcopy(history),
                                     "diverged": error is not None, "error": error,
                                     "train_score": math.nan, "val_score": None if X_val is None else math.nan}
            if error is None:
                entry["train_score"] = float(scorer(run, X, y))
                if X_val is not None:
                    entry["val_score"] = float(scorer(run, X_val, y_val))
                scores[i, j] = entry["train_score"] if X_val is None else entry["val_score"]
                if j == 0:
                    fitted[i] = run
            runs.append(entry)
    result = SweepResult(values, seed_list, scores, runs)
    finite = np.isfinite(scores).all(axis=1)
    if finite.any():
        means = np.where(finite, scores.mean(axis=1), -np.inf)
        best = int(np.argmax(means))
        result.best_lr, result.best_score, result.best_learner = float(values[best]), float(means[best]), fitted[best]
    return result
