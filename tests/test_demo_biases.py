"""`nnpk demo biases` in its quick setting: the report's structure, sane figures, the parameter counts and
the units-active figures against a plain numpy forward pass."""

import os
import subprocess
import sys

import numpy as np
import pytest

import nnpk
from nnpk.demos._biases import MODES, QUICK, TASKS, full_width, network, shared_inputs, trained_parameters
from nnpk.demos._common import load_dataset
from conftest import run_quick_demo


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("biases")
    results, out = run_quick_demo("biases", folder)
    return folder, results, out


def test_report_files_and_tables(report):
    folder, results, out = report
    assert sorted(os.listdir(folder)) == ["biases.json", "biases.md", "biases.png"]
    assert (folder / "biases.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (folder / "biases.md").read_text()
    for heading in ("### (a) digits: test accuracy", "### (b) tasks on one random network",
                    "### (b) task-variance clusters", "### (b) learned biases against task variance"):
        assert heading in text and heading in out
    assert [row["width"] for row in results["datasets"]["digits"]["widths"]] == list(QUICK["widths"])
    digits_tasks = [name for name, (source, _) in TASKS.items() if source == "digits"]
    assert list(results["multitask"]["tasks"]) == digits_tasks
    assert results["multitask"]["first_task_unchanged"] is True


def test_figures_are_sane(report):
    _, results, _ = report
    for row in results["datasets"]["digits"]["widths"]:
        for mode in MODES:
            assert 0 <= row[mode]["test_accuracy"] <= 1 and row[mode]["lr"] > 0
        assert row["masks"]["trained_parameters"] == row["width"]
        assert 0 <= row["ntk_biases"] <= 1
    # The readout of 128 random features learns digits far above chance.
    assert results["datasets"]["digits"]["widths"][-1]["readout"]["test_accuracy"] > 0.6
    multi = results["multitask"]
    for task in multi["tasks"].values():
        for mode in ("biases", "masks"):
            entry = task[mode]
            assert 0 <= entry["test_accuracy"] <= 1 and 0 <= entry["mean_firing_fraction"] <= 1
            assert entry["units_active"] <= entry["units_on"] <= multi["width"]
        assert task["biases"]["units_on"] == multi["width"]
    for clusters in multi["clusters"].values():
        assert sum(c["size"] for c in clusters["clusters"]) == clusters["units_varying"] <= multi["width"]
        assert 1 / len(multi["tasks"]) - 1e-12 <= clusters["mean_largest_share"] <= 1
    for corr in multi["correlations"].values():
        assert all(-1 <= v <= 1 for k, v in corr.items() if k != "mean_abs_bias_change" and v is not None)


def test_units_active_against_numpy(report):
    """The first task's units active under biases, from the biases the demo learns, by a numpy forward pass."""
    _, results, _ = report
    data = load_dataset("digits", QUICK["samples"]["digits"], 0)
    x = shared_inputs(data)
    arch = network(QUICK["multitask_width"])
    learner = nnpk.BiasLearner(arch, seed=0, train="biases", epochs=QUICK["multitask_epochs"],
                               batch_size=QUICK["batch_size"], dtype="float32", n_threads=1, random_state=0)
    learner.fit(x[data.train], data.labels[data.train], task="digit")
    W, _ = nnpk.sample_params(arch, x.shape[1], 0, 0)[0]
    h = np.maximum(x[data.train] @ W + learner.tasks_["digit"].biases[0], 0)
    entry = results["multitask"]["tasks"]["digit"]["biases"]
    assert entry["units_active"] == int((h > 0).any(axis=0).sum())
    np.testing.assert_allclose(entry["mean_firing_fraction"], (h > 0).mean(), rtol=1e-12)
    accuracy = learner.score(x[data.test], data.labels[data.test], task="digit")
    np.testing.assert_allclose(entry["test_accuracy"], accuracy)


def test_parameter_counts():
    # 64 inputs, 10 classes: a fully trained network of m units has 75 m + 10 parameters.
    assert full_width(1024, 64) == 14 and full_width(10, 64) == 1
    assert trained_parameters("full", 14, 64) == 75 * 14 + 10
    assert trained_parameters("biases", 1024, 64) == 1034
    assert trained_parameters("readout", 1024, 64) == 10250
    arch = network(20)
    params = nnpk.sample_params(arch, 64, 0, 0)
    assert trained_parameters("biases+readout", 20, 64) == sum(b.size for _, b in params) + params[-1][0].size


def test_bad_options_name_the_argument():
    bad = subprocess.run([sys.executable, "-m", "nnpk.cli", "demo", "biases", "--datasets", "cifar"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--datasets must be digits, mnist1d or both" in bad.stderr
