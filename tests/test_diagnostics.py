"""nnpk.diagnostics against direct formulas: spectrum, alignment, Monte Carlo standard error."""

import math

import numpy as np
import pytest

import nnpk

ARCH = nnpk.MLP(hidden=[32], out=4, b_std=0.3)


@pytest.fixture(scope="module")
def points():
    return np.random.default_rng(0).standard_normal((30, 6))


def test_spectrum_matches_eigvalsh(points):
    k = nnpk.monte_carlo(points, arch=ARCH, n_networks=16)
    eigenvalues = np.sort(np.linalg.eigvalsh(k))[::-1]
    result = nnpk.spectrum(k)
    np.testing.assert_allclose(result.eigenvalues, eigenvalues, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.top(5), eigenvalues[:5], rtol=1e-9)
    assert result.largest == pytest.approx(eigenvalues[0], rel=1e-9)
    assert result.smallest == pytest.approx(eigenvalues[-1], rel=1e-6)
    assert result.condition_number == pytest.approx(np.linalg.cond(k), rel=1e-6)
    assert result.effective_rank == pytest.approx(np.trace(k) ** 2 / np.sum(k * k), rel=1e-9)
    p = eigenvalues / eigenvalues.sum()
    assert result.entropy_effective_rank == pytest.approx(math.exp(-np.sum(p * np.log(p))), rel=1e-9)


def test_spectrum_extremes():
    identity = nnpk.spectrum(np.eye(7))
    assert identity.condition_number == pytest.approx(1.0)
    assert identity.effective_rank == pytest.approx(7.0)
    assert identity.entropy_effective_rank == pytest.approx(7.0)
    v = np.arange(1.0, 6.0)
    rank_one = nnpk.spectrum(np.outer(v, v))
    assert rank_one.condition_number == math.inf or rank_one.condition_number > 1e15
    assert rank_one.effective_rank == pytest.approx(1.0)
    assert rank_one.entropy_effective_rank == pytest.approx(1.0, rel=1e-6)
    zero = nnpk.spectrum(np.zeros((3, 3)))
    assert zero.condition_number == math.inf and zero.effective_rank == 0.0 and zero.entropy_effective_rank == 0.0


def direct_alignment(k, y, centered):
    """docs/definitions.rst, literally: with H = I - 11^T/n and the n x n target kernel Y Y^T."""
    y = y.reshape(len(y), -1)
    target = y @ y.T
    if centered:
        h = np.eye(len(k)) - np.ones_like(k) / len(k)
        k, target = h @ k @ h, h @ target @ h
    return np.sum(k * target) / (np.linalg.norm(k) * np.linalg.norm(target))


@pytest.mark.parametrize("centered", [False, True])
def test_alignment_matches_direct_formula(points, centered):
    k = nnpk.monte_carlo(points, arch=ARCH, n_networks=16)
    labels = (points[:, 0] > 0).astype(int) + (points[:, 1] > 0)
    one_hot = np.eye(3)[labels]
    regression = np.sin(points[:, 2])
    for targets in (one_hot, regression):
        expected = direct_alignment(k, targets, centered)
        assert nnpk.kernel_target_alignment(k, targets, centered=centered) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("centered", [False, True])
def test_alignment_of_the_target_kernel_is_one(centered):
    y = np.random.default_rng(2).standard_normal((10, 2))
    target_kernel = y @ y.T
    if centered:
        y_c = y - y.mean(axis=0)
        target_kernel = y_c @ y_c.T
    assert nnpk.kernel_target_alignment(target_kernel, y, centered=centered) == pytest.approx(1.0)


def test_alignment_of_constant_targets_centred_is_nan():
    assert math.isnan(nnpk.kernel_target_alignment(np.eye(4), np.ones(4), centered=True))


@pytest.mark.parametrize("n_batches", [2, 4])
@pytest.mark.parametrize("cross", [False, True])
def test_standard_error_matches_batches_computed_one_by_one(points, n_batches, cross):
    x1, x2 = (points[:20], points[20:]) if cross else (points, None)
    estimate, error = nnpk.monte_carlo_standard_error(x1, x2, arch=ARCH, n_networks=8 * n_batches,
                                                      n_batches=n_batches, seed=5)
    batches = np.stack([nnpk.monte_carlo(x1, x2, arch=ARCH, n_networks=8, seed=5 + b) for b in range(n_batches)])
    np.testing.assert_allclose(estimate, batches.mean(axis=0), rtol=1e-12, atol=1e-14)
    expected_error = batches.std(axis=0, ddof=1) / math.sqrt(n_batches)
    np.testing.assert_allclose(error, expected_error, rtol=1e-9, atol=1e-13)


def test_standard_error_in_row_blocks_equals_whole_kernel(points):
    whole = nnpk.monte_carlo_standard_error(points, arch=ARCH, n_networks=12, n_batches=3, seed=1)
    blocked = nnpk.monte_carlo_standard_error(points, arch=ARCH, n_networks=12, n_batches=3, seed=1, block_rows=7)
    for a, b in zip(whole, blocked):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


def test_standard_error_of_a_large_kernel_works_in_row_blocks_of_an_eighth(points, monkeypatch):
    """Past the whole-kernel size limit, no batch kernel larger than an eighth of the result is made."""
    rows_per_call = []

    def recording_monte_carlo(x1, x2=None, **kwargs):
        rows_per_call.append((len(x1), x2 is None))
        return nnpk.monte_carlo(x1, x2, **kwargs)

    monkeypatch.setattr(nnpk.diagnostics._standard_error, "monte_carlo", recording_monte_carlo)
    monkeypatch.setattr(nnpk.diagnostics._standard_error, "_WHOLE_KERNEL_BYTES", 8 * 30 * 30 - 1)
    blocked = nnpk.monte_carlo_standard_error(points, arch=ARCH, n_networks=4, seed=2)
    assert rows_per_call == ([(4, False)] * 7 + [(2, False)]) * 2
    monkeypatch.undo()
    for a, b in zip(nnpk.monte_carlo_standard_error(points, arch=ARCH, n_networks=4, seed=2), blocked):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


def test_standard_error_predicts_the_spread_of_independent_estimates(points):
    """Independent estimates differ by about sqrt(se_a^2 + se_b^2): the squared gap over the predicted
    variance is 1 on average. The entries of one kernel are strongly correlated, so average over pairs."""
    gaps, predicted = [], []
    for pair in range(40):
        a, se_a = nnpk.monte_carlo_standard_error(points, arch=ARCH, n_networks=64, n_batches=8, seed=20 * pair,
                                                  estimator="sampled")
        b, se_b = nnpk.monte_carlo_standard_error(points, arch=ARCH, n_networks=64, n_batches=8, seed=20 * pair + 10,
                                                  estimator="sampled")
        gaps.append(np.mean((a - b) ** 2))
        predicted.append(np.mean(se_a**2 + se_b**2))
    assert 0.6 < np.sum(gaps) / np.sum(predicted) < 1.6


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: nnpk.spectrum(np.ones((2, 3))), ValueError, "kernel must be square"),
        (lambda: nnpk.spectrum(np.array([[1.0, 2.0], [0.0, 1.0]])), ValueError, "kernel is not symmetric"),
        (lambda: nnpk.spectrum(np.full((2, 2), np.nan)), ValueError, "kernel contains NaN"),
        (lambda: nnpk.spectrum(np.eye(3)).top(0), ValueError, "k must be >= 1"),
        (lambda: nnpk.kernel_target_alignment(np.eye(3), np.ones(4)), ValueError, "targets has 4 rows, expected 3"),
        (lambda: nnpk.kernel_target_alignment(np.eye(3), [1.0, np.nan, 0.0]), ValueError, "targets contains NaN"),
        (lambda: nnpk.kernel_target_alignment(np.ones((3, 2)), np.ones(3)), ValueError, "kernel must be square"),
        (lambda: nnpk.monte_carlo_standard_error(np.ones((3, 2)), arch=ARCH, n_networks=5), ValueError,
         "n_networks=5 must be a multiple of n_batches=2"),
        (lambda: nnpk.monte_carlo_standard_error(np.ones((3, 2)), arch=ARCH, n_networks=4, n_batches=1), ValueError,
         "n_batches must be >= 2"),
        (lambda: nnpk.monte_carlo_standard_error(np.ones((3, 2)), arch=ARCH, n_networks=1), ValueError,
         "n_networks must be >= 2"),
        (lambda: nnpk.monte_carlo_standard_error(np.ones((3, 2)), np.ones((3, 4)), arch=ARCH, n_networks=2),
         ValueError, "x2 has 4 features, x1 has 2"),
        (lambda: nnpk.monte_carlo_standard_error(np.ones((3, 2)), arch=ARCH, n_networks=4, n_batches=2,
                                                 seed=2**64 - 1), ValueError, "seed must be <="),
        (lambda: nnpk.monte_carlo_standard_error(np.ones((3, 2)), arch=ARCH, n_networks=4, block_rows=0),
         ValueError, "block_rows must be >= 1"),
        (lambda: nnpk.monte_carlo_standard_error(np.ones((3, 2)), arch="mlp", n_networks=4), TypeError,
         "arch must be an nnpk.MLP"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
