"""Neural anisotropy directions of a network at initialisation, and the linearly separable tasks along them."""

from __future__ import annotations

import math
import numbers
from typing import Tuple

import numpy as np

from .._threads import resolve_n_threads
from .._validate import check_int, check_memory
from ..architectures import Dense, check_arch, sample_params
from ..kernels import empirical
from ._eigensolver import sign_fixed

__all__ = ["nad_task", "nads"]

DEFAULT_STEP = 1e-3


def _positive_real(value, name: str, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be finite and {'>=' if allow_zero else '>'} 0, got {value}")
    return value


def _point_shape(arch, input_shape) -> Tuple[int, ...]:
    if isinstance(input_shape, (numbers.Integral, np.integer)) and not isinstance(input_shape, bool):
        input_shape = (input_shape,)
    if not isinstance(input_shape, (tuple, list)) or not input_shape:
        raise TypeError(f"input_shape must be the shape of one point (an int or a tuple of ints), got {input_shape!r}")
    shape = tuple(check_int(s, "input_shape", minimum=1) for s in input_shape)
    if isinstance(arch.layers[0], Dense) and len(shape) != 1:
        raise ValueError(f"input_shape must be (features,) for a network that starts with a Dense layer, got {shape}")
    return shape


def input_gram(arch, input_shape, seed: int = 0, index: int = 0, params=None, *, step: float = DEFAULT_STEP,
               n_threads=None) -> np.ndarray:
    """``M^T M`` (d x d) at x = 0, ``M = d/dx grad_theta f(x)``, by central differences of the empirical NTK on
    the 2d points ``+-step e_i`` (see :func:`nads`)."""
    network = check_arch(arch, "nnpk.tasks.nads")
    shape = _point_shape(network, input_shape)
    compiled = network.compile(shape)
    if compiled.out != 1:
        raise ValueError(f"arch has {compiled.out} outputs; neural anisotropy directions are those of a scalar "
                         "network: give it one output (out=1)")
    h = _positive_real(step, "step", allow_zero=False)
    d = math.prod(shape)
    check_memory(8 * (2 * d) ** 2 * 2, f"the NTK of the {2 * d} points +-step e_i ({2 * d} x {2 * d} float64)",
                 "use smaller inputs")
    if params is None:
        params = sample_params(network, shape, seed, index)
    points = np.concatenate([h * np.eye(d), -h * np.eye(d)]).reshape((2 * d,) + shape)
    theta = empirical(points, arch=network, params=params, get="ntk", n_threads=resolve_n_threads(n_threads))
    plus, minus = slice(0, d), slice(d, 2 * d)
    # d^2 Theta / dx_i dx'_j ~ [Theta(+i, +j) - Theta(+i, -j) - Theta(-i, +j) + Theta(-i, -j)] / (4 h^2)
    gram = (theta[plus, plus] - theta[plus, minus] - theta[minus, plus] + theta[minus, minus]) / (4 * h * h)
    return (gram + gram.T) / 2


def nads(arch, input_shape, n_directions: int, seed: int = 0, index: int = 0, params=None, *,
         step: float = DEFAULT_STEP, n_threads=None):
    """Neural anisotropy directions (NADs) of a scalar network at initialisation.

    With ``M = d/dx grad_theta f(x; theta_0)`` at ``x = 0`` (P x d, P parameters, d input
    values), the NADs are the right singular vectors of M, by decreasing singular value: the
    input directions along which the network's parameter gradient changes most. As
    ``M^T M = d^2 Theta(x, x') / dx dx'`` at ``x = x' = 0`` (Theta the empirical NTK), it is
    computed from the NTK of the 2d points ``+-step e_i`` by central differences,

        (M^T M)_ij = [Theta(h e_i, h e_j) - Theta(h e_i, -h e_j) - Theta(-h e_i, h e_j)
                      + Theta(-h e_i, -h e_j)] / (4 h^2),

    never forming the P x d Jacobian; the singular values are the square roots of its
    eigenvalues. Accuracy: for piecewise-linear activations (relu, leaky_relu, abs, identity)
    ``grad_theta f`` is affine in x wherever no unit changes sign, so the quotient is exact up to
    rounding (relative ``eps Theta(0, 0) / (h^2 ||M^T M||)``) as long as no unit's
    pre-activation at 0 lies within the step's reach; for smooth activations its error is
    ``O(h^2)``. A relu network without biases has every unit at its kink at x = 0: give it
    biases. Each direction is signed with its entry of largest magnitude positive.

    Parameters
    ----------
    arch : nnpk.Network
        A network with one output (``out=1``), without batch normalisation.
    input_shape : int or tuple of ints
        The shape of one point (``(features,)``, ``(length, channels)`` or ``(height, width,
        channels)``).
    n_directions : int
        How many directions, 1 to d.
    seed, index, params
        Which network: network `index` of `seed`, or the given parameters (the layout of
        ``nnpk.sample_params``).
    step : float
        The difference step h > 0.
    n_threads : int, optional
        Threads of the NTK computation; None: all physical cores.

    Returns
    -------
    singular_values : (n_directions,) array
        Descending.
    directions : (n_directions,) + input_shape array
        Unit-norm directions, shaped like a point.
    """
    shape = _point_shape(check_arch(arch, "nnpk.tasks.nads"), input_shape)
    d = math.prod(shape)
    k = check_int(n_directions, "n_directions", minimum=1, maximum=d)
    gram = input_gram(arch, shape, seed, index, params, step=step, n_threads=n_threads)
    values, vectors = np.linalg.eigh(gram)
    values, vectors = values[::-1][:k], sign_fixed(vectors[:, ::-1][:, :k])
    return np.sqrt(np.maximum(values, 0.0)), np.ascontiguousarray(vectors.T).reshape((k,) + shape)


def nad_task(direction, n: int, eps: float, sigma: float, seed: int = 0):
    """A linearly separable binary task along a direction: ``x = (eps / 2) s v + w``.

    ``v`` is `direction` normalised, ``s = +-1`` with probability 1/2 each, and ``w`` Gaussian
    noise ``N(0, sigma^2 I)`` projected orthogonally to v, so that the two classes lie on the
    hyperplanes ``x . v = +-eps / 2``, ``eps`` apart, and differ in nothing else.

    Parameters
    ----------
    direction : array
        The direction v (any shape: a point's, such as a NAD from :func:`nads`); nonzero.
    n : int
        Points.
    eps : float
        Distance between the classes, >= 0.
    sigma : float
        Standard deviation of the noise per coordinate, >= 0.
    seed : int
        Seed of ``numpy.random.default_rng``, which draws the labels, then the noise.

    Returns
    -------
    X : (n,) + direction.shape float64 array
    y : (n,) int64 array
        The labels as 0 and 1: ``s = 2 y - 1``.
    """
    v = np.asarray(direction)
    if v.dtype.kind not in "biuf":
        raise TypeError(f"direction must hold real numbers, got dtype {v.dtype}")
    if v.size == 0:
        raise ValueError(f"direction is empty: shape {v.shape}")
    v = np.array(v, dtype=np.float64)
    if not np.isfinite(v).all():
        raise ValueError("direction must hold finite numbers")
    norm = float(np.linalg.norm(v))
    if norm == 0:
        raise ValueError("direction is zero: it defines no direction")
    n = check_int(n, "n", minimum=1)
    eps = _positive_real(eps, "eps", allow_zero=True)
    sigma = _positive_real(sigma, "sigma", allow_zero=True)
    check_memory(8 * n * v.size * 2, f"the task's points ({n} x {v.size} float64)", "ask for fewer points")
    rng = np.random.default_rng(seed)
    unit = v.reshape(-1) / norm
    labels = rng.integers(0, 2, size=n)
    noise = sigma * rng.standard_normal((n, unit.size))
    noise -= np.outer(noise @ unit, unit)
    x = noise + np.outer((eps / 2) * (2 * labels - 1), unit)
    return x.reshape((n,) + v.shape), labels.astype(np.int64)
