"""nnpk.datasets against independent references: closed forms, the ODEs' right-hand sides, a plain RK4
integrator, known constants of the Van der Pol cycle and a trapping region of the Lorenz system."""

import math
import random
import sys

import numpy as np
import pytest
import scipy.optimize
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from nnpk import datasets

# The Van der Pol limit cycle for mu = 1: its amplitude max |x| and its period, as published to many digits
# (2.0086198609 and 6.6632868593).
VDP_AMPLITUDE_MU1 = 2.00862
VDP_PERIOD_MU1 = 6.66329


def van_der_pol_rhs(state, mu=1.0):
    x, y = state[..., 0], state[..., 1]
    return np.stack([y, mu * (1 - x**2) * y - x], axis=-1)


def lorenz_rhs(state, sigma=10.0, rho=28.0, beta=8.0 / 3.0):
    x, y, z = state[..., 0], state[..., 1], state[..., 2]
    return np.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], axis=-1)


def rk4(rhs, states, dt, substeps):
    """Classical Runge-Kutta over a time dt in `substeps` steps, for a batch of states."""
    h = dt / substeps
    for _ in range(substeps):
        k1 = rhs(states)
        k2 = rhs(states + h / 2 * k1)
        k3 = rhs(states + h / 2 * k2)
        k4 = rhs(states + h * k3)
        states = states + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return states


def five_point_derivative(trajectories, dt):
    """The time derivative at steps 2 .. n_steps - 3 by the fourth-order central difference."""
    x = trajectories
    return (x[:, :-4] - 8 * x[:, 1:-3] + 8 * x[:, 3:-1] - x[:, 4:]) / (12 * dt)


@pytest.fixture(scope="module")
def vdp_cycle():
    """Van der Pol, mu = 1, started on the cycle: 5 trajectories over 40 time units."""
    return datasets.van_der_pol(5, 801, dt=0.05, mu=1.0, seed=3, transient=50.0)


@pytest.fixture(scope="module")
def lorenz_fine():
    """Lorenz on its attractor, 4 trajectories over 20 time units at dt = 0.005."""
    return datasets.lorenz(4, 4001, dt=0.005, seed=11)


# --------------------------------------------------------------------------- sine waves


def test_sine_waves_are_the_closed_form():
    f, phases, amplitude = np.array([0.5, 2.0, 7.0]), np.array([0.0, 1.0, -2.5]), np.array([1.0, 0.3, 4.0])
    waves = datasets.sine_waves(f, 500, dt=0.01, phases=phases, amplitude=amplitude)
    assert waves.shape == (3, 500, 1) and waves.dtype == np.float64
    t = 0.01 * np.arange(500)
    for i in range(3):
        np.testing.assert_allclose(waves[i, :, 0], amplitude[i] * np.sin(2 * np.pi * f[i] * t + phases[i]),
                                   rtol=0, atol=1e-12)


def test_sine_waves_satisfy_the_two_step_recurrence():
    # A sampled sinusoid of angular step w obeys x[k+1] = 2 cos(w) x[k] - x[k-1], whatever its phase and amplitude.
    dt, f = 0.02, np.array([0.3, 1.7, 11.0])
    waves = datasets.sine_waves(f, 300, dt=dt, phases=0.4, amplitude=2.0)[:, :, 0]
    w = 2 * np.pi * f[:, None] * dt
    np.testing.assert_allclose(waves[:, 2:], 2 * np.cos(w) * waves[:, 1:-1] - waves[:, :-2], rtol=0, atol=1e-11)
    np.testing.assert_allclose(waves[:, 0], 2.0 * np.sin(0.4))


def test_one_frequency_and_scalar_phase_broadcast():
    wave = datasets.sine_waves(1.0, 4, dt=0.25, phases=np.pi / 2)
    assert wave.shape == (1, 4, 1)
    np.testing.assert_allclose(wave[0, :, 0], [1.0, 0.0, -1.0, 0.0], atol=1e-15)


# --------------------------------------------------------------------------- Van der Pol


def test_van_der_pol_settles_on_the_known_limit_cycle(vdp_cycle):
    assert vdp_cycle.shape == (5, 801, 2) and vdp_cycle.dtype == np.float64
    x = vdp_cycle[:, :, 0]
    np.testing.assert_allclose(np.abs(x).max(axis=1), VDP_AMPLITUDE_MU1, rtol=2e-4)
    for row in x:
        # Upward zero crossings, located by linear interpolation between samples.
        k = np.flatnonzero((row[:-1] < 0) & (row[1:] >= 0))
        crossings = 0.05 * (k + row[k] / (row[k] - row[k + 1]))
        assert len(crossings) >= 5
        np.testing.assert_allclose(np.diff(crossings), VDP_PERIOD_MU1, rtol=2e-4)
    # Started on the cycle at random phases, not in step with each other.
    assert np.ptp(vdp_cycle[:, 0, 0]) > 1.0


def test_van_der_pol_follows_its_equation():
    mu = 2.0
    trajectories = datasets.van_der_pol(3, 800, dt=0.005, mu=mu, seed=5)
    derivative = five_point_derivative(trajectories, 0.005)
    # The stencil's error is dt^4 / 30 times the fifth derivative: below 2e-6 here.
    np.testing.assert_allclose(derivative, van_der_pol_rhs(trajectories[:, 2:-2], mu), rtol=0, atol=1e-5)
    # Each sample is the previous one carried dt ahead by the ODE (a plain RK4 in fine steps).
    ahead = rk4(lambda s: van_der_pol_rhs(s, mu), trajectories[:, :-1], 0.005, 10)
    np.testing.assert_allclose(trajectories[:, 1:], ahead, rtol=0, atol=1e-9)


def test_van_der_pol_initial_states_are_the_documented_draws():
    start = datasets.van_der_pol(6, 1, dt=0.1, seed=42)[:, 0]
    np.testing.assert_array_equal(start, np.random.default_rng(42).uniform(-3.0, 3.0, size=(6, 2)))


def test_van_der_pol_trajectory_depends_on_seed_and_index_only():
    few = datasets.van_der_pol(2, 50, dt=0.1, seed=7)
    more = datasets.van_der_pol(3, 50, dt=0.1, seed=7)
    np.testing.assert_array_equal(more[:2], few)
    assert not np.allclose(datasets.van_der_pol(2, 50, dt=0.1, seed=8), few)


# --------------------------------------------------------------------------- Lorenz


def test_lorenz_follows_its_equation(lorenz_fine):
    assert lorenz_fine.shape == (4, 4001, 3) and lorenz_fine.dtype == np.float64
    derivative = five_point_derivative(lorenz_fine, 0.005)
    rhs = lorenz_rhs(lorenz_fine[:, 2:-2])
    # The stencil's error is dt^4 / 30 times the fifth derivative, up to ~1e7 on the attractor (about 2e-3 at
    # worst, 1e-4 on average); the right-hand side reaches 240.
    np.testing.assert_allclose(derivative, rhs, rtol=0, atol=1e-2)
    assert np.abs(derivative - rhs).mean() < 1e-3
    ahead = rk4(lorenz_rhs, lorenz_fine[:, :-1], 0.005, 10)
    np.testing.assert_allclose(lorenz_fine[:, 1:], ahead, rtol=0, atol=1e-7)


def test_lorenz_stays_on_the_attractor(lorenz_fine):
    # V = x^2 + y^2 + (z - rho - sigma)^2 decreases outside the ellipsoid sigma x^2 + y^2 + beta (z - c)^2 <= beta c^2
    # (c = (rho + sigma) / 2), so the attractor lies where V <= max of V on that ellipsoid, itself at most
    # beta c^2 / sigma + beta c^2 + 4 c^2.
    sigma, rho, beta = 10.0, 28.0, 8.0 / 3.0
    c = (rho + sigma) / 2
    x, y, z = np.moveaxis(lorenz_fine, -1, 0)
    v = x**2 + y**2 + (z - rho - sigma) ** 2
    assert v.max() < beta * c**2 / sigma + beta * c**2 + 4 * c**2
    assert z.min() > 0
    # Chaotic, not at a fixed point: every trajectory visits both wings and keeps moving.
    assert (x.max(axis=1) > 5).all() and (x.min(axis=1) < -5).all()
    assert (x.std(axis=1) > 4).all()


def test_lorenz_is_reproducible_and_seeds_differ():
    first = datasets.lorenz(3, 200, seed=1, transient=2.0)
    np.testing.assert_array_equal(datasets.lorenz(3, 200, seed=1, transient=2.0), first)
    np.testing.assert_array_equal(datasets.lorenz(2, 200, seed=1, transient=2.0), first[:2])
    other = datasets.lorenz(3, 200, seed=2, transient=2.0)
    assert np.abs(other - first).max(axis=(1, 2)).min() > 1.0


def test_lorenz_initial_states_and_other_parameters():
    start = datasets.lorenz(5, 1, transient=0.0, seed=9)[:, 0]
    expected = np.random.default_rng(9).uniform([-20.0, -30.0, 0.0], [20.0, 30.0, 50.0], size=(5, 3))
    np.testing.assert_array_equal(start, expected)
    # rho < 1: the origin attracts everything.
    settled = datasets.lorenz(2, 3, rho=0.5, transient=40.0, seed=9)
    np.testing.assert_allclose(settled, 0.0, atol=1e-6)
    params = {"sigma": 12.0, "rho": 35.0, "beta": 2.0}
    trajectories = datasets.lorenz(2, 300, dt=0.005, seed=4, transient=1.0, **params)
    ahead = rk4(lambda s: lorenz_rhs(s, **params), trajectories[:, :-1], 0.005, 10)
    np.testing.assert_allclose(trajectories[:, 1:], ahead, rtol=0, atol=1e-7)


def test_standardize_scales_each_coordinate_over_all_trajectories_and_steps():
    raw = datasets.lorenz(3, 300, seed=6, transient=5.0)
    scaled = datasets.lorenz(3, 300, seed=6, transient=5.0, standardize=True)
    np.testing.assert_allclose(scaled, (raw - raw.mean(axis=(0, 1))) / raw.std(axis=(0, 1)), rtol=1e-12, atol=1e-12)
    raw = datasets.van_der_pol(2, 100, dt=0.1, seed=6)
    scaled = datasets.van_der_pol(2, 100, dt=0.1, seed=6, standardize=True)
    np.testing.assert_allclose(scaled.mean(axis=(0, 1)), 0.0, atol=1e-12)
    np.testing.assert_allclose(scaled.std(axis=(0, 1)), 1.0, rtol=1e-12)
    np.testing.assert_allclose(scaled * raw.std(axis=(0, 1)) + raw.mean(axis=(0, 1)), raw, atol=1e-12)
    # One sample: no spread, only centred.
    np.testing.assert_array_equal(datasets.van_der_pol(1, 1, standardize=True), 0.0)


# --------------------------------------------------------------------------- split, targets, windows


def labelled(n_trajectories, n_steps=4, state_dim=2):
    """Trajectories whose every value is the trajectory's index, so that any mixing shows."""
    return np.broadcast_to(np.arange(n_trajectories, dtype=float)[:, None, None],
                           (n_trajectories, n_steps, state_dim)).copy()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 40), fraction=st.floats(0.01, 0.99), seed=st.integers(0, 2**32 - 1))
def test_split_never_shares_a_trajectory_and_covers_all(n, fraction, seed):
    expected_test = math.ceil(round(fraction * n, 9))
    if expected_test >= n:
        with pytest.raises(ValueError, match="test_fraction"):
            datasets.split_by_trajectory(labelled(n), fraction, seed)
        return
    train, test = datasets.split_by_trajectory(labelled(n), fraction, seed)
    for part in (train, test):
        # Each trajectory whole: all its values are its index.
        assert (part == part[:, :1, :1]).all()
    train_ids, test_ids = train[:, 0, 0].astype(int), test[:, 0, 0].astype(int)
    assert len(test_ids) == expected_test
    assert not set(train_ids) & set(test_ids)
    assert sorted(np.concatenate([train_ids, test_ids])) == list(range(n))
    assert list(train_ids) == sorted(train_ids) and list(test_ids) == sorted(test_ids)


def test_split_is_seeded_and_counts_like_scikit_learn():
    x = labelled(10)
    train, test = datasets.split_by_trajectory(x, 0.3, seed=5)
    assert len(test) == 3 and len(train) == 7  # 0.3 x 10 is 3.0000000000000004 in floating point
    again = datasets.split_by_trajectory(x, 0.3, seed=5)
    np.testing.assert_array_equal(again[1], test)
    seeds = {tuple(datasets.split_by_trajectory(x, 0.3, seed=s)[1][:, 0, 0]) for s in range(10)}
    assert len(seeds) > 5


@pytest.mark.parametrize("coordinate", [None, 0, 2, -1])
def test_delay_targets_align_with_direct_indexing(coordinate):
    x = np.random.default_rng(0).standard_normal((3, 20, 3))
    horizon = 4
    inputs, targets = datasets.delay_targets(x, horizon, coordinate)
    assert inputs.shape == (3, 16, 3)
    assert targets.shape == (3, 16, 3 if coordinate is None else 1)
    for i in range(3):
        for t in range(16):
            np.testing.assert_array_equal(inputs[i, t], x[i, t])
            expected = x[i, t + horizon] if coordinate is None else x[i, t + horizon, [coordinate]]
            np.testing.assert_array_equal(targets[i, t], expected)
    inputs[...] = 0.0
    targets[...] = 0.0
    assert np.all(x != 0.0)  # copies, not views of the argument
    assert inputs.flags.c_contiguous and targets.flags.c_contiguous


@settings(max_examples=40, deadline=None)
@given(n_trajectories=st.integers(1, 3), n_steps=st.integers(2, 30), length=st.integers(1, 29),
       stride=st.one_of(st.none(), st.integers(1, 12)))
def test_windows_are_the_explicit_loop(n_trajectories, n_steps, length, stride):
    if length >= n_steps:
        return
    x = np.random.default_rng(n_steps).standard_normal((n_trajectories, n_steps, 2))
    inputs, targets = datasets.windows(x, length, stride)
    step = length if stride is None else stride
    expected_inputs, expected_targets = [], []
    for i in range(n_trajectories):
        s = 0
        while s + length + 1 <= n_steps:
            expected_inputs.append(x[i, s : s + length])
            expected_targets.append(x[i, s + 1 : s + length + 1])
            s += step
    np.testing.assert_array_equal(inputs, np.array(expected_inputs))
    np.testing.assert_array_equal(targets, np.array(expected_targets))
    assert inputs.shape == (n_trajectories * ((n_steps - length - 1) // step + 1), length, 2)


def test_windows_of_a_split_feed_teacher_forcing():
    trajectories = datasets.sine_waves([0.5, 1.0, 1.5, 2.0], 101, dt=0.05)
    train, test = datasets.split_by_trajectory(trajectories, 0.25, seed=0)
    inputs, targets = datasets.windows(train, 25)
    assert inputs.shape == targets.shape == (3 * 4, 25, 1)
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])


# --------------------------------------------------------------------------- autocorrelation half-width


def direct_autocorrelation(series):
    """The docstring's r(k), term by term, for lags 0 .. T // 2."""
    u = series - series.mean()
    T = len(u)
    return np.array([np.dot(u[: T - k], u[k:]) / (T - k) for k in range(T // 2 + 1)]) / (np.dot(u, u) / T)


def interpolated_half_width(r):
    k = int(np.flatnonzero(r[1:] <= 0.5)[0]) + 1
    return k - 1 + (r[k - 1] - 0.5) / (r[k - 1] - r[k])


def test_half_width_of_a_cosine_is_a_sixth_of_its_period():
    for period in (48.0, 30.0, 100.0):
        signal = np.cos(2 * np.pi * np.arange(100 * int(period)) / period)
        assert datasets.autocorrelation_half_width(signal) == pytest.approx(period / 6, abs=0.05)


def test_half_width_of_an_ar1_process():
    a = 0.9
    noise = np.random.default_rng(0).standard_normal((8, 50_000))
    process = scipy.signal.lfilter([1.0], [1.0, -a], noise, axis=1)[:, 200:]
    width = datasets.autocorrelation_half_width(process[:, :, None])
    assert width == pytest.approx(math.log(0.5) / math.log(a), abs=0.15)


def test_half_width_averages_the_trajectories_autocorrelations():
    # Two cosines of periods 40 and 80: the mean autocorrelation (cos(2 pi k / 40) + cos(2 pi k / 80)) / 2.
    t = np.arange(8000)
    signal = np.zeros((2, len(t), 3))
    signal[0, :, 1] = 5.0 * np.cos(2 * np.pi * t / 40)
    signal[1, :, 1] = np.cos(2 * np.pi * t / 80 + 1.0)
    signal[:, :, [0, 2]] = np.random.default_rng(1).standard_normal((2, len(t), 2))
    expected = scipy.optimize.brentq(lambda k: (np.cos(2 * np.pi * k / 40) + np.cos(2 * np.pi * k / 80)) / 2 - 0.5,
                                     0.0, 10.0)
    assert datasets.autocorrelation_half_width(signal, coordinate=1) == pytest.approx(expected, abs=0.05)
    assert datasets.autocorrelation_half_width(signal, coordinate=-2) == datasets.autocorrelation_half_width(
        signal, coordinate=1)


def test_half_width_is_the_documented_estimator():
    smooth = scipy.signal.lfilter([1.0], [1.0, -1.6, 0.7], np.random.default_rng(2).standard_normal((3, 301)), axis=1)
    r = np.mean([direct_autocorrelation(row) for row in smooth], axis=0)
    assert datasets.autocorrelation_half_width(smooth[:, :, None]) == pytest.approx(interpolated_half_width(r),
                                                                                     rel=1e-10)


@settings(max_examples=40, deadline=None)
@given(n_steps=st.integers(2, 200), seed=st.integers(0, 1000), smoothing=st.floats(0.0, 0.99))
def test_half_width_always_exists_within_the_signal(n_steps, seed, smoothing):
    # Even signals far shorter than their correlation time: the mean-removed r turns negative somewhere.
    signal = scipy.signal.lfilter([1.0], [1.0, -smoothing], np.random.default_rng(seed).standard_normal(n_steps))
    width = datasets.autocorrelation_half_width(signal)
    assert 0 < width <= n_steps - 1


def test_half_width_of_the_van_der_pol_cycle(vdp_cycle):
    # On the cycle each trajectory's x is a periodic signal: its half-width is a fixed fraction of the period,
    # the same for every phase; a direct computation on one long trajectory agrees.
    width = datasets.autocorrelation_half_width(vdp_cycle, coordinate=0)
    r = np.mean([direct_autocorrelation(row) for row in vdp_cycle[:, :, 0]], axis=0)
    assert width == pytest.approx(interpolated_half_width(r), rel=1e-10)
    assert 0.1 * VDP_PERIOD_MU1 / 0.05 < width < 0.25 * VDP_PERIOD_MU1 / 0.05


# --------------------------------------------------------------------------- classification data sets


def test_load_digits_is_scikit_learn_digits():
    from sklearn.datasets import load_digits

    x, labels = datasets.load_digits()
    expected_x, expected_labels = load_digits(return_X_y=True)
    assert x.shape == (1797, 64) and x.dtype == np.float64 and labels.dtype == np.int64
    np.testing.assert_array_equal(x, expected_x)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(datasets.load_digits(5000)[1], expected_labels)


def test_load_digits_subsample_is_stratified_ordered_and_seeded():
    full_x, full_labels = datasets.load_digits()
    x, labels = datasets.load_digits(300, seed=4)
    assert x.shape == (300, 64)
    counts = np.bincount(labels, minlength=10)
    assert counts.min() >= 29 and counts.max() <= 31
    # Rows of the full set, in its order.
    rows = [int(np.flatnonzero((full_x == row).all(axis=1) & (full_labels == label))[0])
            for row, label in zip(x, labels)]
    assert rows == sorted(rows) and len(set(rows)) == 300
    np.testing.assert_array_equal(datasets.load_digits(300, seed=4)[0], x)
    assert not np.array_equal(datasets.load_digits(300, seed=5)[0], x)


def test_load_mnist1d_pools_the_generated_set_and_leaves_random_states_alone():
    pytest.importorskip("mnist1d")
    np.random.seed(123)
    random.seed(123)
    numpy_before, python_before = np.random.get_state()[1].copy(), random.getstate()
    x, labels = datasets.load_mnist1d()
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_before)
    assert random.getstate() == python_before
    assert x.shape == (5000, 40) and x.dtype == np.float64 and labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(labels), 500)
    assert abs(x.mean()) < 1e-9 and x.std() == pytest.approx(1.0)


def test_load_mnist1d_without_the_package_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'nnpk\[mnist1d\]'"):
        datasets.load_mnist1d()


def test_subpackage_is_reachable_from_nnpk():
    import nnpk

    assert nnpk.datasets is datasets
    assert set(datasets.__all__) == {"autocorrelation_half_width", "delay_targets", "load_digits", "load_mnist1d",
                                     "lorenz", "sine_waves", "split_by_trajectory", "van_der_pol", "windows"}


# --------------------------------------------------------------------------- errors

TRAJECTORIES = np.zeros((4, 10, 2))
SYSTEMS = [datasets.van_der_pol, datasets.lorenz]


@pytest.mark.parametrize("call, error, match", [
    (lambda: datasets.sine_waves([1.0], 0), ValueError, "n_steps must be >= 1, got 0"),
    (lambda: datasets.sine_waves([1.0], 10, dt=0.0), ValueError, "dt must be > 0.0, got 0.0"),
    (lambda: datasets.sine_waves([1.0], 10, dt=-0.1), ValueError, r"dt must be > 0.0, got -0.1"),
    (lambda: datasets.sine_waves([1.0], 10, dt=float("nan")), ValueError, "dt must be finite, got nan"),
    (lambda: datasets.sine_waves([1.0], 10, dt="0.1"), TypeError, "dt must be a real number, got str"),
    (lambda: datasets.sine_waves([1.0], 2.5), TypeError, "n_steps must be an integer, got float"),
    (lambda: datasets.sine_waves([1.0], True), TypeError, "n_steps must be an integer, got a bool"),
    (lambda: datasets.sine_waves([1.0, 60.0], 10, dt=0.01), ValueError,
     r"Nyquist frequency 1 / \(2 dt\) = 50, got frequencies\[1\] = 60"),
    (lambda: datasets.sine_waves([-1.0], 10), ValueError, r"frequencies must be >= 0 .* got frequencies\[0\] = -1"),
    (lambda: datasets.sine_waves([], 10), ValueError, "frequencies is empty"),
    (lambda: datasets.sine_waves([[1.0]], 10), ValueError, r"frequencies must be a number or a 1-D array, got shape"),
    (lambda: datasets.sine_waves([1.0, np.inf], 10), ValueError, r"frequencies must be finite, got frequencies\[1\]"),
    (lambda: datasets.sine_waves(["a"], 10), TypeError, "frequencies must hold real numbers"),
    (lambda: datasets.sine_waves([1.0, 2.0], 10, phases=[0.0, 1.0, 2.0]), ValueError,
     "phases has 3 values, frequencies has 2"),
    (lambda: datasets.sine_waves([1.0, 2.0], 10, amplitude=[1.0, 0.0]), ValueError,
     r"amplitude must be > 0, got amplitude\[1\] = 0"),
    (lambda: datasets.sine_waves([1.0], 10, phases=np.nan), ValueError, r"phases must be finite"),
])
def test_sine_wave_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("kwargs, error, match", [
    ({"n_trajectories": 0}, ValueError, "n_trajectories must be >= 1, got 0"),
    ({"n_trajectories": 1.0}, TypeError, "n_trajectories must be an integer, got float"),
    ({"n_steps": 0}, ValueError, "n_steps must be >= 1, got 0"),
    ({"n_steps": -5}, ValueError, "n_steps must be >= 1, got -5"),
    ({"dt": 0.0}, ValueError, "dt must be > 0.0, got 0.0"),
    ({"dt": np.inf}, ValueError, "dt must be finite, got inf"),
    ({"seed": -1}, ValueError, "seed must be >= 0, got -1"),
    ({"seed": 2**32}, ValueError, "seed must be <= 4294967295, got 4294967296"),
    ({"seed": 0.5}, TypeError, "seed must be an integer, got float"),
    ({"transient": -1.0}, ValueError, "transient must be >= 0.0, got -1.0"),
    ({"standardize": "yes"}, TypeError, "standardize must be True or False, got 'yes'"),
])
def test_trajectory_errors_name_the_argument(system, kwargs, error, match):
    arguments = {"n_trajectories": 2, "n_steps": 10, **kwargs}
    with pytest.raises(error, match=match):
        system(**arguments)


@pytest.mark.parametrize("call, error, match", [
    (lambda: datasets.van_der_pol(2, 10, mu=-1.0), ValueError, "mu must be >= 0.0, got -1.0"),
    (lambda: datasets.lorenz(2, 10, sigma=0.0), ValueError, "sigma must be > 0.0, got 0.0"),
    (lambda: datasets.lorenz(2, 10, rho=-28.0), ValueError, "rho must be > 0.0, got -28.0"),
    (lambda: datasets.lorenz(2, 10, beta=float("nan")), ValueError, "beta must be finite, got nan"),
])
def test_system_parameter_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_a_failed_integration_is_reported(monkeypatch):
    import scipy.integrate

    class Failed:
        success = False
        message = "Required step size is less than spacing between numbers."

    monkeypatch.setattr(scipy.integrate, "solve_ivp", lambda *args, **kwargs: Failed())
    with pytest.raises(RuntimeError, match="lorenz: integrating trajectory 0 from .* failed: Required step size"):
        datasets.lorenz(2, 5)


def test_too_much_memory_is_refused_before_allocating(monkeypatch):
    monkeypatch.setenv("NNPK_MEMORY_LIMIT", str(10**6))
    with pytest.raises(MemoryError, match=r"the Lorenz trajectories \(10 x 1000000 x 3 float64\) needs"):
        datasets.lorenz(10, 10**6)
    with pytest.raises(MemoryError, match="fewer trajectories or fewer steps"):
        datasets.sine_waves(np.ones(1000), 10**6, dt=0.1)
    with pytest.raises(MemoryError, match="the windows' inputs and targets"):
        datasets.windows(np.zeros((2, 1000, 3)), 500, 1)


@pytest.mark.parametrize("call, error, match", [
    (lambda: datasets.split_by_trajectory(TRAJECTORIES, 0.0), ValueError, "test_fraction must be > 0.0, got 0.0"),
    (lambda: datasets.split_by_trajectory(TRAJECTORIES, 1.0), ValueError, "test_fraction must be < 1.0, got 1.0"),
    (lambda: datasets.split_by_trajectory(TRAJECTORIES, 1.5), ValueError, "test_fraction must be < 1.0, got 1.5"),
    (lambda: datasets.split_by_trajectory(TRAJECTORIES, float("nan")), ValueError, "test_fraction must be finite"),
    (lambda: datasets.split_by_trajectory(TRAJECTORIES[:2], 0.9), ValueError,
     "test_fraction=0.9 of 2 trajectories puts 2 in the test set and leaves none to train on"),
    (lambda: datasets.split_by_trajectory(TRAJECTORIES[:1], 0.5), ValueError, "leaves none to train on"),
    (lambda: datasets.split_by_trajectory(TRAJECTORIES, 0.5, seed=-2), ValueError, "seed must be >= 0, got -2"),
    (lambda: datasets.split_by_trajectory(np.zeros((4, 10)), 0.5), ValueError,
     r"trajectories must be a 3-D array \(n_trajectories, n_steps, state_dim\), got shape \(4, 10\)"),
    (lambda: datasets.split_by_trajectory(np.zeros((0, 10, 2)), 0.5), ValueError, "trajectories is empty"),
    (lambda: datasets.split_by_trajectory(None, 0.5), TypeError, "trajectories must be an array, got None"),
    (lambda: datasets.split_by_trajectory(np.full((2, 3, 1), "a"), 0.5), TypeError,
     "trajectories must hold real numbers"),
    (lambda: datasets.split_by_trajectory(np.where(np.arange(8)[:, None, None] == 5, np.nan, TRAJECTORIES[:1]), 0.5),
     ValueError, r"trajectories contains NaN or infinite values \(first at trajectory 5, step 0, coordinate 0"),
    (lambda: datasets.delay_targets(TRAJECTORIES, 0), ValueError, "horizon must be >= 1, got 0"),
    (lambda: datasets.delay_targets(TRAJECTORIES, 10), ValueError, "horizon must be < n_steps = 10 .*, got 10"),
    (lambda: datasets.delay_targets(TRAJECTORIES, 2, coordinate=2), ValueError, "coordinate must be <= 1, got 2"),
    (lambda: datasets.delay_targets(TRAJECTORIES, 2, coordinate=-3), ValueError, "coordinate must be >= -2, got -3"),
    (lambda: datasets.delay_targets(TRAJECTORIES, 2, coordinate=1.0), TypeError, "coordinate must be an integer"),
    (lambda: datasets.delay_targets(TRAJECTORIES[:, :1], 1), ValueError, "horizon must be < n_steps = 1"),
    (lambda: datasets.windows(TRAJECTORIES, 0), ValueError, "length must be >= 1, got 0"),
    (lambda: datasets.windows(TRAJECTORIES, 10), ValueError, "length must be < n_steps = 10 .*, got 10"),
    (lambda: datasets.windows(TRAJECTORIES, 3, stride=0), ValueError, "stride must be >= 1, got 0"),
    (lambda: datasets.autocorrelation_half_width(np.ones(50)), ValueError, "signal is constant"),
    (lambda: datasets.autocorrelation_half_width(np.stack([np.random.default_rng(0).standard_normal((50, 1)),
                                                           np.ones((50, 1))])),
     ValueError, "trajectory 1 of signal is constant"),
    (lambda: datasets.autocorrelation_half_width(np.zeros((5, 50))), ValueError,
     r"signal must be a 1-D array \(n_steps,\) or a 3-D array .*, got shape \(5, 50\)"),
    (lambda: datasets.autocorrelation_half_width(TRAJECTORIES), ValueError,
     "signal has 2 coordinates: say which one with coordinate="),
    (lambda: datasets.autocorrelation_half_width(np.arange(50.0), coordinate=0), ValueError,
     "coordinate applies to a 3-D signal"),
    (lambda: datasets.autocorrelation_half_width(TRAJECTORIES, coordinate=5), ValueError,
     "coordinate must be <= 1, got 5"),
    (lambda: datasets.autocorrelation_half_width([1.0, np.nan, 2.0]), ValueError, "signal contains NaN"),
    (lambda: datasets.autocorrelation_half_width(None), TypeError, "signal must be an array, got None"),
    (lambda: datasets.load_digits(5), ValueError, "n_samples must be >= 10, got 5"),
    (lambda: datasets.load_digits(1790), ValueError,
     "n_samples=1790 would leave out 7 of the 1,797 digits points, fewer than one per class"),
    (lambda: datasets.load_digits(100.0), TypeError, "n_samples must be an integer, got float"),
    (lambda: datasets.load_digits(100, seed=-1), ValueError, "seed must be >= 0, got -1"),
    (lambda: datasets.load_mnist1d(3), ValueError, "n_samples must be >= 10, got 3"),
])
def test_helper_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
