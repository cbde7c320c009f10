"""A fit whose loss stops being finite: the error it raises and the state it falls back to."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Hashable, List, Tuple

import numpy as np

__all__ = ["DivergenceError"]


class DivergenceError(FloatingPointError):
    """Training diverged: a minibatch's loss (or, at the end of an epoch, a trained parameter) was not finite.

    A ``FloatingPointError`` (as numpy raises under ``np.errstate(all="raise")``): the
    arithmetic overflowed, the data and settings were valid. The task is kept, put back to
    the end of the last epoch (of this call) whose parameters still gave a finite loss on
    the next minibatch -- the one before the divergence, or the one before that when the
    divergence came at an epoch's first step -- or to where the call started: its
    ``history`` holds the epochs up to there (all finite), and its parameters, optimizer
    state, step count and minibatch order are those after that epoch. ``partial_fit``
    continues from there, for instance after ``set_params(lr=...)``.

    Attributes
    ----------
    task : hashable
        The task being fitted.
    epoch : int
        The task's epoch (counted from 1 over all its fits) in which the loss diverged.
    step : int
        The minibatch (from 1) within that epoch.
    loss : float
        The loss of that minibatch: nan or inf, or finite when the parameters its step
        produced were not (the epoch's last step).
    lr : float
        The learning rate the fit used (the schedule's peak).
    finite_epochs : int
        The epochs the task's history keeps (the task's epoch count now).
    """

    def __init__(self, task: Hashable, epoch: int, step: int, loss: float, lr: float, optimizer: str,
                 finite_epochs: int):
        self.task, self.epoch, self.step, self.loss = task, epoch, step, loss
        self.lr, self.optimizer, self.finite_epochs = lr, optimizer, finite_epochs
        what = (f"the training loss was {loss}" if not math.isfinite(loss) else
                f"the trained parameters were not finite after it (its loss was {loss:.4g})")
        advice = ("a smaller learning rate" if optimizer == "adam" else
                  "a smaller learning rate (lr='ntk' sets SGD's step from the network's tangent kernel)")
        super().__init__(
            f"task {task!r} diverged at step {step} of epoch {epoch}: {what}, optimizer={optimizer!r}, "
            f"lr={lr:.4g}. The task is kept as it was after epoch {finite_epochs}, the last whose parameters gave a "
            f"finite loss (history and parameters); fit again with {advice}, or clip_norm=")

    def __reduce__(self):
        return (type(self), (self.task, self.epoch, self.step, self.loss, self.lr, self.optimizer,
                             self.finite_epochs))


@dataclass
class Checkpoint:
    """A copy of the part of a task's fit that training changes, taken after a finite epoch."""

    arrays: List[np.ndarray]
    firsts: List[np.ndarray]
    seconds: List[np.ndarray]
    buffers: List[Tuple[np.ndarray, np.ndarray]]
    steps: int
    epochs: int
    rng_state: Any
    n_kernels: int

    @classmethod
    def take(cls, fit, arrays: List[np.ndarray]) -> "Checkpoint":
        """The fit's state now; `arrays` are its trained arrays (views into ``fit.params``)."""
        return cls([a.copy() for a in arrays], [a.copy() for a in fit.firsts], [a.copy() for a in fit.seconds],
                   [(m.copy(), v.copy()) for m, v in fit.buffers], fit.steps, fit.epochs,
                   fit.rng.get_state() if hasattr(fit.rng, "get_state") else None, len(fit.kernels))

    def restore(self, fit, arrays: List[np.ndarray]) -> None:
        """Put the fit back to this state, writing into its arrays (a fit's parameters stay the same objects)."""
        for saved, now in ((self.arrays, arrays), (self.firsts, fit.firsts), (self.seconds, fit.seconds)):
            for a, b in zip(saved, now):
                np.copyto(b, a)
        for (m, v), (m_now, v_now) in zip(self.buffers, fit.buffers):
            np.copyto(m_now, m)
            np.copyto(v_now, v)
        fit.steps, fit.epochs = self.steps, self.epochs
        if self.rng_state is not None:
            fit.rng.set_state(self.rng_state)
        for curve in fit.history.values():
            del curve[self.epochs:]  # one entry per epoch of the task
        del fit.kernels[self.n_kernels:]


def all_finite(arrays: List[np.ndarray]) -> bool:
    """Whether every value of the arrays is finite."""
    return all(bool(np.isfinite(a).all()) for a in arrays)
