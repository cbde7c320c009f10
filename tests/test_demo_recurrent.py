"""`nnpk demo recurrent` in its quick setting: the report's structure and sane figures; the Jacobian it studies
against finite differences of one step of the network written here."""

import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from nnpk import sample_params
from nnpk.demos._recurrent import (
    LORENZ_METHODS,
    METHODS,
    QUICK,
    SYSTEMS,
    closed_loop_pre_activations,
    fit_tasks,
    gain_shape,
    matched_width,
    recurrent_jacobian,
    recurrent_network,
    trained_parameters,
    tune_learning_rates,
)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recurrent")
    out = subprocess.run([sys.executable, "-m", "nnpk.cli", "demo", "recurrent", "--quick", "--threads", "2",
                          "--out", str(folder)], check=True, capture_output=True, text=True).stdout
    with open(folder / "recurrent.json") as f:
        return folder, json.load(f), out


def _sane_r2(value) -> bool:
    """An R^2 is at most 1; an untrained or badly trained closed loop may be far below 0, but finite."""
    return value is not None and math.isfinite(value) and -1e3 < value <= 1


def test_report_files_and_tables(report):
    folder, results, out = report
    assert sorted(os.listdir(folder)) == ["recurrent.json", "recurrent.md", "recurrent.png"]
    assert (folder / "recurrent.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (folder / "recurrent.md").read_text()
    for heading in ("## What was found", "### (a) sine", "### (a) van der pol", "### (a) van der pol at width",
                    "### (b) lorenz", "### (c) recurrent Jacobian", "### (d) recurrent NNGP"):
        assert heading in text and heading in out
    assert "- Test R^2 > 0.99 with bias-only training" in text and "- Test R^2 > 0.99 with the other methods" in text
    assert list(results["generation"]) == list(SYSTEMS)
    v = results["verdict"]
    assert set(v) >= {"r2_above_0.99", "biases_r2_by_gain", "biases_threshold_near_gain_1"}
    for system, entry in results["generation"].items():
        rows = entry["methods"]["biases"]["rows"]
        assert v["biases_r2_by_gain"][system] == {f"{r['gain']:g}": r["test_r2"] for r in rows}
        # Every configuration above 0.99 is listed, and only those.
        listed = {(r["method"], r["gain"]) for r in v["r2_above_0.99"] if r["system"] == system}
        assert listed == {(m, row["gain"]) for m, e in entry["methods"].items() for row in e["rows"]
                          if row["test_r2"] is not None and row["test_r2"] > 0.99}


def test_generation_figures(report):
    _, results, _ = report
    sine = results["generation"]["sine"]
    assert sine["tasks"] == [f"f={f:g}" for f in QUICK["sine"]["frequencies"]]
    assert results["generation"]["van der pol"]["tasks"] == ["mu=1"]
    for entry in results["generation"].values():
        assert list(entry["methods"]) == list(METHODS)
        assert entry["optimizer_steps"] >= QUICK["optimizer_steps"]
        for method, m in entry["methods"].items():
            assert [row["gain"] for row in m["rows"]] == list(QUICK["gains"])
            for row in m["rows"]:
                assert list(row["tasks"]) == entry["tasks"]
                per_task = [t["test_r2"] for t in row["tasks"].values()]
                assert all(_sane_r2(r) for r in per_task) and _sane_r2(row["validation_r2"])
                # The table's figure is the plain mean over the tasks.
                assert row["test_r2"] == pytest.approx(float(np.mean(per_task)), abs=1e-12)
            assert m["lr"] in [row["lr"] for row in m["lr_sweep"]] and len(m["lr_sweep"]) >= len(QUICK["lr_exponents"])
            best = max(m["lr_sweep"], key=lambda r: r["validation_r2"])
            assert best["lr"] == m["lr"]
            d = entry["state_dim"]
            assert m["trained_parameters"] == trained_parameters(method, m["width"], d, d)
        assert len(entry["example"]["generated"]) == QUICK["horizon"]


def test_width_check_has_its_own_learning_rate(report):
    _, results, _ = report
    (row,) = results["width_check"]
    at_width = results["generation"]["van der pol"]["methods"]["biases"]["lr"]
    assert row["width"] == QUICK["check_width"] and row["lr_at_width"] == at_width
    expected = sorted([at_width, at_width * math.sqrt(QUICK["width"] / QUICK["check_width"])])
    assert [r["lr"] for r in row["lr_sweep"]] == pytest.approx(expected, rel=1e-12)
    assert row["lr"] == max(row["lr_sweep"], key=lambda r: r["validation_r2"])["lr"]
    assert _sane_r2(row["test_r2"]) and len(row["loss"]) >= 1


def test_lorenz_figures(report):
    _, results, _ = report
    lz = results["lorenz"]
    assert list(lz["methods"]) == list(LORENZ_METHODS)
    assert lz["horizon_steps"] == max(1, round(lz["half_width_steps"])) and lz["half_width_steps"] > 1
    for row in lz["methods"].values():
        assert _sane_r2(row["teacher_forced_r2"]) and _sane_r2(row["self_sustained_r2"])
        assert len(row["next_step_loss"]) * lz["steps_per_epoch"]["next_step"] >= QUICK["optimizer_steps"]
    # Every weight trained, reading the true trajectory: well above the mean's R^2 of 0 even in the quick setting.
    assert lz["methods"]["all"]["teacher_forced_r2"] > 0.5


def test_learning_rate_sweep_extends_past_a_winning_edge():
    """Scores peaking at 10^-1 on the grid 10^(-3, -2.5, -2): the upper edge wins, so 10^-1.5 is tried once more;
    a peak inside the grid adds nothing."""
    tried = []

    def submit(method, lr):
        tried.append((method, lr))
        peak = {"edge": -1.0, "inside": -2.5}[method]
        return pool.submit(lambda: (f"fit at {lr:.3g}", -(math.log10(lr) - peak) ** 2))

    with ThreadPoolExecutor(2) as pool:
        tuned = tune_learning_rates(submit, ("edge", "inside"), (-3.0, -2.5, -2.0))
    assert tuned["edge"]["lr"] == pytest.approx(10 ** -1.5) and len(tuned["edge"]["sweep"]) == 4
    assert tuned["inside"]["lr"] == pytest.approx(10 ** -2.5) and len(tuned["inside"]["sweep"]) == 3
    assert tuned["edge"]["fits"][tuned["edge"]["lr"]] == "fit at 0.0316"
    assert len(tried) == 7


def test_fits_side_by_side_equal_fits_alone():
    """The demo runs fits in a thread pool: each must be bitwise what it is when run alone."""
    x = np.random.default_rng(0).normal(size=(40, 6, 2))
    y = np.roll(x, -1, axis=1)
    s = {**QUICK, "optimizer_steps": 6, "warmup_steps": 2}
    jobs = [("biases", 0.03), ("biases+readout", 0.01), ("full (small)", 0.01), ("readout", 0.02)]

    def params(method, lr):
        learner, _ = fit_tasks(method, 12, 1.1, lr, {"a": (x, y), "b": (y, x)}, s, 3)
        return [[a for a in pair if a is not None] for task in ("a", "b") for pair in learner.tasks_[task].params]

    alone = [params(*job) for job in jobs]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda job: params(*job), jobs))
    for a, b in zip(alone, together):
        for pa, pb in zip(a, b):
            for u, v in zip(pa, pb):
                np.testing.assert_array_equal(u, v)


def test_jacobian_and_nngp_figures(report):
    _, results, _ = report
    for row in results["jacobian"]["rows"]:
        # The demo's numpy pass reproduces the engine's generation, so its Jacobians are the trained network's.
        assert row["numpy_vs_engine_max_abs_difference"] < 1e-4
        for when in ("before", "after"):
            assert len(row[when]["eigenvalues"]) == QUICK["jacobian_times"]
            assert all(len(e) == QUICK["width"] for e in row[when]["eigenvalues"])
            radius = max(math.hypot(*v) for e in row[when]["eigenvalues"] for v in e)
            # tanh' <= 1: the spectral radius is at most the largest singular value of W, about 2 g for wide W.
            assert 0 < row[when]["spectral_radius"] <= radius + 1e-12 < 2 * row["gain"] + 1
    errors = [row["relative_error"] for row in results["nngp"]["rows"]]
    assert [row["width"] for row in results["nngp"]["rows"]] == list(QUICK["nngp"]["widths"])
    assert all(math.isfinite(e) and e > 0 for e in errors) and errors[-1] < errors[0]


def _one_step(params, h, x, leak):
    """h_t from h_{t-1} and x_t, written from the layer's definition."""
    (U, b), (W, _) = params[:2]
    return (1 - leak) * h + leak * np.tanh(h @ W + x @ U + b)


@pytest.mark.parametrize("leak", [1.0, 0.3])
def test_recurrent_jacobian_against_finite_differences(leak):
    network = recurrent_network(12, 1.3, 2)
    params = [(np.asarray(W, dtype=np.float64), None if b is None else np.asarray(b, dtype=np.float64))
              for W, b in sample_params(network, (5, 2), 3, 0)]
    rng = np.random.default_rng(0)
    params[0] = (params[0][0], rng.normal(size=12))  # nonzero biases, as after training
    h, x = rng.normal(size=12), rng.normal(size=2)
    (U, b), (W, _) = params[:2]
    z = h @ W + x @ U + b
    eps = 1e-6
    numeric = np.empty((12, 12))
    for j in range(12):
        e = np.zeros(12)
        e[j] = eps
        numeric[:, j] = (_one_step(params, h + e, x, leak) - _one_step(params, h - e, x, leak)) / (2 * eps)
    np.testing.assert_allclose(recurrent_jacobian(z, W, leak), numeric, rtol=1e-6, atol=1e-8)


def test_closed_loop_pass_feeds_outputs_back():
    network = recurrent_network(8, 0.9, 2)
    params = [(W.astype(np.float64), None if b is None else b.astype(np.float64))
              for W, b in sample_params(network, (4, 2), 1, 0)]
    warmup = np.random.default_rng(2).normal(size=(4, 2))
    outputs, pre, W = closed_loop_pre_activations(params, warmup, 3)
    (U, b), _, (V, c) = params
    h = np.zeros(8)
    for x in warmup:
        h = np.tanh(h @ W + x @ U + b)
    for t in range(3):
        y = h @ V + c
        np.testing.assert_allclose(outputs[t], y)
        np.testing.assert_allclose(pre[t], h @ W + y @ U + b)
        h = np.tanh(pre[t])


def test_parameter_counts_match_the_sampled_network():
    for width, d in ((16, 1), (40, 3)):
        params = sample_params(recurrent_network(width, 1.0, d), (6, d), 0, 0)
        biases = sum(b.size for _, b in params if b is not None)
        everything = biases + sum(W.size for W, _ in params)
        assert trained_parameters("biases", width, d, d) == biases
        assert trained_parameters("biases+readout", width, d, d) == biases + params[2][0].size
        assert trained_parameters("readout", width, d, d) == sum(a.size for a in params[2] if a is not None)
        assert trained_parameters("all", width, d, d) == everything
    k = matched_width(trained_parameters("biases", 256, 2, 2), 2, 2)
    assert abs(trained_parameters("all", k, 2, 2) - 258) <= abs(trained_parameters("all", k + 1, 2, 2) - 258)
    assert abs(trained_parameters("all", k, 2, 2) - 258) <= abs(trained_parameters("all", k - 1, 2, 2) - 258)


def test_unknown_option_is_a_usage_error():
    bad = subprocess.run([sys.executable, "-m", "nnpk.cli", "demo", "recurrent", "--gains", "1"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unrecognized arguments: --gains" in bad.stderr


@pytest.mark.parametrize("r2, words", [
    ({"0.5": 0.3, "0.8": 0.95, "1": 0.99}, "a threshold between g = 0.5 and 0.8, below 1, not the claimed one"),
    ({"0.5": 0.3, "0.8": 0.5, "1": 0.99}, "a threshold between g = 0.8 and 1, the claimed one near 1"),
    ({"0.5": 0.95, "1": 0.2, "1.5": 0.97}, "no single threshold"),
    ({"0.5": 0.95, "1": 0.99}, "no failure below gain 1"),
    ({"0.5": None, "1": 0.5}, "R^2 < 0.9 at every gain"),
])
def test_gain_shape_in_words(r2, words):
    assert gain_shape(r2).endswith(words)
