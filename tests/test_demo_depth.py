"""`nnpk demo depth` in its quick setting: the report's structure, sane figures, and a table entry against a
direct call."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

import nnpk
from nnpk.demos._common import load_dataset
from nnpk.demos._depth import ACTIVATIONS, LRS, OPTIMIZERS, QUICK, _matches, deep_cnn, kernel_network
from nnpk.demos._training import VARIANTS
from conftest import run_quick_demo


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("depth")
    results, out = run_quick_demo("depth", folder)
    return folder, results, out


def test_report_files_and_tables(report):
    folder, results, out = report
    assert sorted(os.listdir(folder)) == ["depth.json", "depth.md", "depth.png"]
    assert (folder / "depth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (folder / "depth.md").read_text()
    for heading in ("## Findings", "### (a) condition number", "### (b) digits", "### (c) MLP, SGD, momentum 0.9",
                    "### (c) MLP, Adam", "### (c) CNN, SGD, momentum 0.9", "### (c) CNN, Adam"):
        assert heading in text and heading in out
    assert list(results["conditioning"]) == list(ACTIVATIONS) and list(results["datasets"]) == ["digits"]
    for key, depths in (("training", QUICK["training"]["depths"]), ("training_cnn", QUICK["cnn"]["depths"])):
        assert [(r["optimizer"], r["depth"], r["variant"]) for r in results[key]] == [
            (o, d, v) for o in OPTIMIZERS for d in depths for v in VARIANTS]
    assert {r["arch"] for r in results["training"]} == {"MLP"}
    assert {r["arch"] for r in results["training_cnn"]} == {"CNN"}
    assert set(results["verdicts"]) == set(results["verdicts_cnn"]) == set(OPTIMIZERS)
    assert text.count("- MLP, ") == text.count("- CNN, ") == len(OPTIMIZERS)


def test_condition_number_matches_nnpk_conditioning(report):
    _, results, _ = report
    s = QUICK["conditioning"]
    data = load_dataset("digits", QUICK["samples"]["digits"], 0)
    x = data.x[data.train[:s["n_points"]]]
    depth = s["depths"][1]
    direct = nnpk.conditioning(x, arch=kernel_network("relu_normalized", depth), depths=[depth], get="ntk")
    reported = results["conditioning"]["relu_normalized"]["ntk"]["condition_number"][1]
    np.testing.assert_allclose(reported, direct["condition_number"][0], rtol=1e-9)
    # Depth makes the normalised kernels better conditioned and relu's NNGP no better.
    cond = results["conditioning"]
    normalized = cond["relu_normalized"]["ntk"]["condition_number"]
    assert normalized[-1] < normalized[0]
    assert cond["relu"]["nngp"]["condition_number"][-1] > 10 * cond["relu_normalized"]["nngp"]["condition_number"][-1]


def test_figures_are_sane(report):
    _, results, _ = report
    for kernels in results["datasets"]["digits"]["learnability"].values():
        for row in kernels.values():
            assert all(0 <= v <= 1 for v in row["test_accuracy"])
            assert all(0 <= v <= 0.45 + 1e-9 for v in row["train_loss_lr_max"])
    t = QUICK["training"]
    for row in results["training"] + results["training_cnn"]:
        grid = LRS[row["optimizer"]]
        assert [g["lr"] for g in row["grid"]] == list(grid)
        assert row["lr"] is None or row["lr"] in grid
        assert row["diverged_lrs"] == [g["lr"] for g in row["grid"] if g["diverged"]]
        if row["lr"] is None:
            assert row["runs"] == [] and row["train_loss"]["mean"] is None
            continue
        assert [run["seed"] for run in row["runs"]] == list(t["seeds"])
        for run in row["runs"]:
            if run["diverged"]:
                continue
            assert math.isfinite(run["train_loss"]) and run["train_loss"] >= 0
            assert 0 <= run["test_accuracy"] <= 1
            assert len(run["loss_curve"]) == t["epochs"]
            assert run["steps_to_threshold"] is None or 0 < run["steps_to_threshold"] <= t["epochs"] * 2
        assert row["test_accuracy"]["std"] >= 0
    # Two layers of 32 units learn digits far above chance (0.1) at their tuned rates.
    shallow = [r for r in results["training"] if r["depth"] == 2 and r["variant"] == "relu"]
    assert min(r["test_accuracy"]["mean"] for r in shallow) > 0.5


def test_cnn_is_the_stack_of_convolutions_it_says():
    channels = QUICK["cnn"]["channels"]
    for variant, per_block in (("relu", 2), ("relu_normalized", 2), ("relu + BatchNorm", 3)):
        net = deep_cnn(variant, 3, channels, 10)
        assert len(net.layers) == 3 * per_block + 2
        assert isinstance(net.layers[-2], nnpk.GlobalAvgPool) and net.layers[-1].width == 10
        convs = [layer for layer in net.layers if isinstance(layer, nnpk.Conv)]
        assert len(convs) == 3 and all(c.channels == channels and c.window == (3, 3) and c.padding == "same"
                                       for c in convs)
        assert all(c.W_std == (1.0 if variant == "relu_normalized" else math.sqrt(2)) for c in convs)
        assert (sum(isinstance(layer, nnpk.BatchNorm) for layer in net.layers) == 3) == (variant == "relu + BatchNorm")
    # On the demo's (8, 8, 1) digits: one output per class.
    x = load_dataset("digits", 50, 0).x.reshape(-1, 8, 8, 1)
    assert nnpk.NetworkLearner(deep_cnn("relu", 2, channels, 10), epochs=1).fit(x, np.arange(50) % 10)\
        .decision_function(x).shape == (50, 10)


def test_matching_rule():
    def row(accuracy, loss):
        return {"test_accuracy": {"mean": accuracy}, "train_loss": {"mean": loss}}

    assert _matches(row(0.90, 0.2), row(0.91, 0.15))
    assert not _matches(row(0.85, 0.2), row(0.91, 0.15))
    assert not _matches(row(0.90, 0.9), row(0.91, 0.2))
    assert not _matches(row(None, None), row(0.91, 0.2))
    assert _matches(row(0.90, 0.9), row(None, None))


def test_bad_options_name_the_argument():
    bad = subprocess.run([sys.executable, "-m", "nnpk.cli", "demo", "depth", "--datasets", "cifar"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--datasets must be digits, mnist1d or both" in bad.stderr
