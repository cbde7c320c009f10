"""Trajectories of dynamical systems: sampled sine waves, the Van der Pol oscillator and the Lorenz system."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ._checks import check_bool, check_float, check_int, check_output_memory, check_seed

__all__ = ["lorenz", "sine_waves", "van_der_pol"]

# The integrator and its tolerances: DOP853's 7th-order dense output keeps the samples between its steps as
# accurate as the steps themselves.
METHOD = "DOP853"
RTOL = 1e-10
ATOL = 1e-12
# Where the initial states are drawn (uniformly): Van der Pol's square holds its limit cycle for mu <= 1
# (for mu = 1, |x| <= 2.01 and |y| <= 2.68); Lorenz's box holds the classic attractor.
VAN_DER_POL_BOX = (np.array([-3.0, -3.0]), np.array([3.0, 3.0]))
LORENZ_BOX = (np.array([-20.0, -30.0, 0.0]), np.array([20.0, 30.0, 50.0]))


def _per_wave(value, name: str, n_waves: int | None) -> np.ndarray:
    """A scalar or 1-D array of finite reals as a float64 vector of length `n_waves` (a scalar is repeated)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a number or a 1-D array, got shape {arr.shape}")
    arr = np.atleast_1d(arr).astype(np.float64)
    if n_waves is None:
        if arr.size == 0:
            raise ValueError(f"{name} is empty")
    elif arr.size == 1:
        arr = np.full(n_waves, arr[0])
    elif arr.size != n_waves:
        raise ValueError(f"{name} has {arr.size} values, frequencies has {n_waves}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} must be finite, got {name}[{i}] = {arr[i]}")
    return arr


def sine_waves(frequencies, n_steps: int, dt: float = 0.01, phases=None, amplitude=1.0) -> np.ndarray:
    """Sine waves sampled every `dt`, one trajectory per frequency.

    Trajectory i at step k is ``amplitude_i sin(2 pi f_i k dt + phase_i)``, k = 0, ...,
    ``n_steps - 1``.

    Parameters
    ----------
    frequencies : float or (n_waves,) array
        Frequencies f_i >= 0 in cycles per unit of time, below the Nyquist frequency
        ``1 / (2 dt)`` (above it the samples would be those of a lower frequency).
    n_steps : int
        Samples per wave, >= 1.
    dt : float
        Time between samples, > 0.
    phases : None, float or (n_waves,) array
        Phases in radians; None: 0.
    amplitude : float or (n_waves,) array
        Amplitudes > 0.

    Returns
    -------
    (n_waves, n_steps, 1) float64 array
    """
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    dt = check_float(dt, "dt", above=0.0)
    f = _per_wave(frequencies, "frequencies", None)
    nyquist = 0.5 / dt
    bad = (f < 0) | (f >= nyquist)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"frequencies must be >= 0 and below the Nyquist frequency 1 / (2 dt) = {nyquist:g}, "
                         f"got frequencies[{i}] = {f[i]:g}")
    phase = np.zeros_like(f) if phases is None else _per_wave(phases, "phases", f.size)
    scale = _per_wave(amplitude, "amplitude", f.size)
    if (scale <= 0).any():
        i = int(np.argmax(scale <= 0))
        raise ValueError(f"amplitude must be > 0, got amplitude[{i}] = {scale[i]:g}")
    check_output_memory((f.size, n_steps, 1), "the waves")
    times = dt * np.arange(n_steps)
    waves = scale[:, None] * np.sin(2 * np.pi * f[:, None] * times + phase[:, None])
    return waves[:, :, None]


def _integrated(rhs: Callable, initial_states: np.ndarray, n_steps: int, dt: float, transient: float,
                system: str) -> np.ndarray:
    """Each initial state integrated on its own by solve_ivp, sampled at ``transient + k dt``."""
    from scipy.integrate import solve_ivp  # imported here: scipy.integrate takes a while to load

    times = transient + dt * np.arange(n_steps)
    out = np.empty((len(initial_states), n_steps, initial_states.shape[1]))
    for i, state in enumerate(initial_states):
        if times[-1] == 0.0:  # one sample, no transient: the initial state itself
            out[i, 0] = state
            continue
        solution = solve_ivp(rhs, (0.0, times[-1]), state, method=METHOD, t_eval=times, rtol=RTOL, atol=ATOL)
        if not solution.success:
            raise RuntimeError(f"{system}: integrating trajectory {i} from {state} failed: {solution.message}")
        out[i] = solution.y.T
    return out


def _standardize(trajectories: np.ndarray) -> np.ndarray:
    """In place: each coordinate centred and scaled to unit standard deviation over all trajectories and steps."""
    mean = trajectories.mean(axis=(0, 1))
    std = trajectories.std(axis=(0, 1))
    trajectories -= mean
    trajectories /= np.where(std > 0, std, 1.0)  # a coordinate without spread is only centred
    return trajectories


def _check_trajectory_arguments(n_trajectories, n_steps, dt, seed, transient, standardize, state_dim: int,
                                system: str):
    n_trajectories = check_int(n_trajectories, "n_trajectories", minimum=1)
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    dt = check_float(dt, "dt", above=0.0)
    seed = check_seed(seed)
    transient = check_float(transient, "transient", minimum=0.0)
    check_bool(standardize, "standardize")
    check_output_memory((n_trajectories, n_steps, state_dim), f"the {system} trajectories")
    return n_trajectories, n_steps, dt, seed, transient


def van_der_pol(n_trajectories: int, n_steps: int, dt: float = 0.1, mu: float = 1.0, seed: int = 0, *,
                transient: float = 0.0, standardize: bool = False) -> np.ndarray:
    """Trajectories of the Van der Pol oscillator from random initial states.

    The system ``x' = y``, ``y' = mu (1 - x^2) y - x``: for mu > 0 every trajectory but
    the origin's tends to one limit cycle (for mu = 1, amplitude ``max |x| = 2.0086`` and
    period 6.6633; as mu -> 0, the circle of radius 2 with period 2 pi).

    Initial states are drawn uniformly in the square ``[-3, 3] x [-3, 3]`` around the
    limit cycle by ``numpy.random.default_rng(seed)`` (one row of two draws per
    trajectory), each integrated on its own by ``scipy.integrate.solve_ivp`` (DOP853,
    ``rtol=1e-10``, ``atol=1e-12``) and sampled from its dense output at times
    ``transient + k dt``, k = 0, ..., ``n_steps - 1``, measured from the initial state.
    Trajectory i therefore depends on `seed` and i only, not on `n_trajectories` (unless
    `standardize`).

    Parameters
    ----------
    n_trajectories : int
        Trajectories, >= 1.
    n_steps : int
        Samples per trajectory, >= 1.
    dt : float
        Time between samples, > 0.
    mu : float
        Damping, >= 0 (0: the harmonic oscillator). The system grows stiff as mu grows:
        beyond mu ~ 20 the explicit integrator needs many small steps.
    seed : int
        Seed of the initial states, in [0, 2**32 - 1].
    transient : float
        Time integrated from the initial state and dropped before the first sample, >= 0;
        0 keeps each trajectory's approach to the cycle, a few periods (e.g. 50 for mu = 1)
        start every trajectory on it, at a random phase.
    standardize : bool
        False: the states (x, y) as integrated. True: each coordinate minus its mean,
        divided by its standard deviation (numpy's ``std``, ddof 0), both over all returned
        trajectories and steps (a coordinate with no spread is only centred).

    Returns
    -------
    (n_trajectories, n_steps, 2) float64 array
        The states (x, y); ``trajectories[i, k]`` is trajectory i at time ``transient + k dt``.
    """
    n_trajectories, n_steps, dt, seed, transient = _check_trajectory_arguments(
        n_trajectories, n_steps, dt, seed, transient, standardize, 2, "Van der Pol")
    mu = check_float(mu, "mu", minimum=0.0)

    def rhs(t, state):
        x, y = state
        return [y, mu * (1.0 - x * x) * y - x]

    low, high = VAN_DER_POL_BOX
    initial_states = np.random.default_rng(seed).uniform(low, high, size=(n_trajectories, 2))
    trajectories = _integrated(rhs, initial_states, n_steps, dt, transient, "van_der_pol")
    return _standardize(trajectories) if standardize else trajectories


def lorenz(n_trajectories: int, n_steps: int, dt: float = 0.01, sigma: float = 10.0, rho: float = 28.0,
           beta: float = 8.0 / 3.0, seed: int = 0, *, transient: float = 10.0,
           standardize: bool = False) -> np.ndarray:
    """Trajectories of the Lorenz system on its attractor, from random initial states.

    The system ``x' = sigma (y - x)``, ``y' = x (rho - z) - y``, ``z' = x y - beta z``;
    with the classic parameters (the defaults) its trajectories settle on the chaotic
    butterfly attractor (``|x| <~ 20``, ``|y| <~ 27``, ``0 < z <~ 48``; largest Lyapunov
    exponent about 0.9, so nearby trajectories separate e-fold in about 1.1 time units).

    Initial states are drawn uniformly in the box ``[-20, 20] x [-30, 30] x [0, 50]`` by
    ``numpy.random.default_rng(seed)`` (one row of three draws per trajectory), each
    integrated on its own by ``scipy.integrate.solve_ivp`` (DOP853, ``rtol=1e-10``,
    ``atol=1e-12``) for `transient` time units, which are dropped so that the trajectory
    starts on the attractor, then sampled from its dense output at times
    ``transient + k dt``, k = 0, ..., ``n_steps - 1``. Trajectory i therefore depends on
    `seed` and i only, not on `n_trajectories` (unless `standardize`). Beyond a few
    Lyapunov times a sampled trajectory follows the true one from its initial state only
    approximately (the integration error grows like the separation of nearby
    trajectories), but it stays a trajectory of the system to the tolerances above.

    Parameters
    ----------
    n_trajectories : int
        Trajectories, >= 1.
    n_steps : int
        Samples per trajectory, >= 1.
    dt : float
        Time between samples, > 0.
    sigma : float
        > 0 (Lorenz's 10).
    rho : float
        > 0 (Lorenz's 28; chaos from about 24.74 with the other two at their defaults, below
        1 the origin attracts every trajectory).
    beta : float
        > 0 (Lorenz's 8/3).
    seed : int
        Seed of the initial states, in [0, 2**32 - 1].
    transient : float
        Time integrated from the initial state and dropped before the first sample, >= 0.
    standardize : bool
        False: the states (x, y, z) as integrated. True: each coordinate minus its mean,
        divided by its standard deviation (numpy's ``std``, ddof 0), both over all returned
        trajectories and steps (a coordinate with no spread is only centred).

    Returns
    -------
    (n_trajectories, n_steps, 3) float64 array
        The states (x, y, z); ``trajectories[i, k]`` is trajectory i at time ``transient + k dt``.
    """
    n_trajectories, n_steps, dt, seed, transient = _check_trajectory_arguments(
        n_trajectories, n_steps, dt, seed, transient, standardize, 3, "Lorenz")
    sigma = check_float(sigma, "sigma", above=0.0)
    rho = check_float(rho, "rho", above=0.0)
    beta = check_float(beta, "beta", above=0.0)

    def rhs(t, state):
        x, y, z = state
        return [sigma * (y - x), x * (rho - z) - y, x * y - beta * z]

    low, high = LORENZ_BOX
    initial_states = np.random.default_rng(seed).uniform(low, high, size=(n_trajectories, 3))
    trajectories = _integrated(rhs, initial_states, n_steps, dt, transient, "lorenz")
    return _standardize(trajectories) if standardize else trajectories
