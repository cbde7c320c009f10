"""From trajectories to training data: splits by trajectory, targets ahead in time, windows for teacher forcing,
and the autocorrelation's half-width (the time scale that sets how far ahead a prediction is hard)."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np

from ._checks import as_trajectories, check_float, check_int, check_output_memory, check_seed

__all__ = ["autocorrelation_half_width", "delay_targets", "split_by_trajectory", "windows"]


def split_by_trajectory(trajectories, test_fraction: float = 0.25, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Training and test trajectories: a random split by initial condition.

    Whole trajectories go to one side or the other, so no step of a test trajectory is
    seen in training. ``ceil(test_fraction * n_trajectories)`` trajectories (as
    scikit-learn's ``train_test_split`` counts them) are chosen for the test set by
    ``numpy.random.default_rng(seed).permutation``; each side keeps the trajectories'
    original order. Split first, then cut each side with :func:`windows` or
    :func:`delay_targets`.

    Parameters
    ----------
    trajectories : (n_trajectories, n_steps, state_dim) array
        At least 2 trajectories.
    test_fraction : float
        In (0, 1); it must leave at least one training trajectory.
    seed : int
        Seed of the choice, in [0, 2**32 - 1].

    Returns
    -------
    train : (n_train, n_steps, state_dim) float64 array
    test : (n_test, n_steps, state_dim) float64 array
        Copies; ``n_train + n_test = n_trajectories``.
    """
    x = as_trajectories(trajectories)
    test_fraction = check_float(test_fraction, "test_fraction", above=0.0, below=1.0)
    seed = check_seed(seed)
    n = x.shape[0]
    # Rounded first, so that 0.3 x 10 counts as 3 and not as the 4 that ceil(3.0000000000000004) gives.
    n_test = math.ceil(round(test_fraction * n, 9))
    if n_test >= n:
        raise ValueError(f"test_fraction={test_fraction} of {n} trajectories puts {n_test} in the test set and "
                         f"leaves none to train on: give more trajectories or a smaller test_fraction")
    order = np.random.default_rng(seed).permutation(n)
    return x[np.sort(order[n_test:])], x[np.sort(order[:n_test])]


def _coordinate(coordinate, state_dim: int) -> int:
    c = check_int(coordinate, "coordinate", minimum=-state_dim, maximum=state_dim - 1)
    return c % state_dim


def delay_targets(trajectories, horizon: int, coordinate: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Inputs and the values `horizon` steps ahead: a prediction task on each trajectory.

    ``inputs[i, t] = trajectories[i, t]`` and ``targets[i, t] = trajectories[i, t + horizon]``
    (only `coordinate` of it, when given) for t = 0, ..., ``n_steps - horizon - 1``: the
    last `horizon` steps have no target and are trimmed from the inputs.

    Parameters
    ----------
    trajectories : (n_trajectories, n_steps, state_dim) array
    horizon : int
        Steps ahead, in [1, n_steps - 1].
    coordinate : int, optional
        The coordinate to predict, in [-state_dim, state_dim - 1] (negative counts from the
        end); None: the whole state.

    Returns
    -------
    inputs : (n_trajectories, n_steps - horizon, state_dim) float64 array
    targets : (n_trajectories, n_steps - horizon, state_dim or 1) float64 array
        C-contiguous copies.
    """
    x = as_trajectories(trajectories)
    n_steps, state_dim = x.shape[1], x.shape[2]
    horizon = check_int(horizon, "horizon", minimum=1)
    if horizon >= n_steps:
        raise ValueError(f"horizon must be < n_steps = {n_steps} (the trajectories' length), got {horizon}")
    ahead = x[:, horizon:]
    if coordinate is not None:
        c = _coordinate(coordinate, state_dim)
        ahead = ahead[:, :, c : c + 1]
    return x[:, : n_steps - horizon].copy(), ahead.copy()


def windows(trajectories, length: int, stride: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Training sequences cut from long trajectories, with next-step targets for teacher forcing.

    A window starting at step s of trajectory i has inputs ``trajectories[i, s:s + length]``
    (x_1, ..., x_T with T = `length`) and targets ``trajectories[i, s + 1:s + length + 1]``
    (x_2, ..., x_{T+1}): at every step the network reads the true state and predicts the
    next. Windows start at s = 0, stride, 2 stride, ... while ``s + length + 1 <= n_steps``
    (a trajectory's last steps that do not fill a window are left out). The windows of
    trajectory 0 come first, in order of s, then those of trajectory 1, and so on.

    Parameters
    ----------
    trajectories : (n_trajectories, n_steps, state_dim) array
    length : int
        Steps per window T, in [1, n_steps - 1].
    stride : int, optional
        Steps between the starts of consecutive windows, >= 1; None: `length` (windows
        whose inputs do not overlap).

    Returns
    -------
    inputs : (n_windows, length, state_dim) float64 array
    targets : (n_windows, length, state_dim) float64 array
        ``n_windows = n_trajectories * ((n_steps - length - 1) // stride + 1)``.
    """
    x = as_trajectories(trajectories)
    n_trajectories, n_steps, state_dim = x.shape
    length = check_int(length, "length", minimum=1)
    if length >= n_steps:
        raise ValueError(f"length must be < n_steps = {n_steps} (the trajectories' length; the window's last target "
                         f"is the step after it), got {length}")
    stride = length if stride is None else check_int(stride, "stride", minimum=1)
    starts = np.arange(0, n_steps - length, stride)
    n_windows = n_trajectories * len(starts)
    check_output_memory((2, n_windows, length, state_dim), "the windows' inputs and targets")
    steps = starts[:, None] + np.arange(length)
    shape = (n_windows, length, state_dim)
    return x[:, steps].reshape(shape), x[:, steps + 1].reshape(shape)


def _series(signal, coordinate) -> np.ndarray:
    """The signal as (n_series, n_steps) float64 rows: one for a 1-D signal, one per trajectory of a coordinate."""
    if signal is not None and np.ndim(signal) == 1:
        if coordinate is not None:
            raise ValueError(f"coordinate applies to a 3-D signal (n_trajectories, n_steps, state_dim), got "
                             f"coordinate={coordinate!r} with a 1-D signal")
        return as_trajectories(np.asarray(signal)[None, :, None], "signal")[:, :, 0]
    if signal is not None and np.ndim(signal) != 3:
        raise ValueError(f"signal must be a 1-D array (n_steps,) or a 3-D array (n_trajectories, n_steps, "
                         f"state_dim), got shape {np.shape(signal)}")
    x = as_trajectories(signal, "signal")
    state_dim = x.shape[2]
    if coordinate is None:
        if state_dim != 1:
            raise ValueError(f"signal has {state_dim} coordinates: say which one with coordinate=")
        coordinate = 0
    return x[:, :, _coordinate(coordinate, state_dim)]


def autocorrelation_half_width(signal, coordinate: Optional[int] = None) -> float:
    """Half width at half maximum of the autocorrelation: the lag, in steps, where it first falls to 1/2.

    The estimator, for one series x_0, ..., x_{T-1} with its mean m removed::

        r(k) = [ sum_{t < T-k} (x_t - m)(x_{t+k} - m) / (T - k) ] / [ sum_t (x_t - m)^2 / T ]

    (the mean product at lag k over its T - k pairs, normalised so that r(0) = 1). For a 3-D
    signal, r is the mean over trajectories of each trajectory's own r (its own mean
    removed, its own normalisation) for `coordinate`. The half-width is the first lag k
    >= 1 with ``r(k) <= 1/2``, refined by linear interpolation between lags k - 1 and k.
    There always is one: the products of a mean-removed series summed over every lag
    vanish, so r turns negative somewhere. Removing the mean also pulls r down at lags
    that are not small against T, so a signal only a few half-widths long gives too
    small a half-width: give tens of half-widths.

    For ``cos(2 pi t / P)`` over many periods, ``r(k) = cos(2 pi k / P)`` and the half-width
    is P / 6; for an AR(1) process ``x_t = a x_{t-1} + noise``, ``r(k) = a^k`` and it is
    ``log(1/2) / log(a)``.

    Parameters
    ----------
    signal : (n_steps,) or (n_trajectories, n_steps, state_dim) array
        Finite values, no series constant.
    coordinate : int, optional
        For a 3-D signal, the coordinate, in [-state_dim, state_dim - 1]; it may be left out
        when state_dim is 1.

    Returns
    -------
    float
        The half-width in steps (multiply by dt for a time).
    """
    series = _series(signal, coordinate)
    n_series, n_steps = series.shape
    centred = series - series.mean(axis=1, keepdims=True)
    variance = np.mean(centred**2, axis=1)
    if (variance == 0).any():
        i = int(np.argmax(variance == 0))
        where = "signal" if np.ndim(signal) == 1 else f"trajectory {i} of signal"
        raise ValueError(f"{where} is constant: its autocorrelation is undefined")
    # Products at every lag by FFT, zero-padded to at least 2T so that lags do not wrap around.
    n_fft = 1 << (2 * n_steps - 1).bit_length()
    spectrum = np.fft.rfft(centred, n_fft, axis=1)
    products = np.fft.irfft(spectrum * spectrum.conj(), n_fft, axis=1)[:, :n_steps]
    r = np.mean(products / (n_steps - np.arange(n_steps)) / variance[:, None], axis=0)
    # The products of a mean-removed series summed over the lags -(T-1)..T-1 vanish: T + 2 sum_{k>=1} (T - k) r(k)
    # = 0 for each series, hence for their mean, so some r(k) < 0 and a crossing exists.
    k = int(np.flatnonzero(r[1:] <= 0.5)[0]) + 1
    return float(k - 1 + (r[k - 1] - 0.5) / (r[k - 1] - r[k]))
