"""`nnpk demo training` in its quick setting: the report's structure and sane figures."""

import json
import math
import os
import subprocess
import sys

import pytest

from nnpk import BatchNorm, Conv, Dense, Flatten
from nnpk.demos._training import QUICK, VARIANTS, deep_network, prior_network
from conftest import run_quick_demo


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("training")
    results, out = run_quick_demo("training", folder)
    return folder, results, out


def test_report_files_and_tables(report):
    folder, results, out = report
    assert sorted(os.listdir(folder)) == ["training.json", "training.md", "training.png"]
    assert (folder / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (folder / "training.md").read_text()
    for heading in ("(b) deep MLPs", "(c) prior kernels"):
        assert f"### digits: {heading}" in text and f"### digits: {heading}" in out
    # Part (a), networks beside their linearisations, is `nnpk demo linearized` now.
    assert "(a) network and linearisation" not in out and "`nnpk demo linearized`" in text
    entry = results["datasets"]["digits"]
    assert "linearized" not in entry and "linearized" not in results["settings"]
    assert [(row["depth"], row["variant"]) for row in entry["depth"]] == [
        (d, v) for d in QUICK["depth"]["depths"] for v in VARIANTS]
    assert [row["architecture"] for row in entry["prior"]] == ["MLP", "CNN"]


def test_figures_are_sane(report):
    _, results, _ = report
    entry = results["datasets"]["digits"]
    for row in entry["depth"]:
        assert len(row["loss"]) == QUICK["depth"]["epochs"] and all(math.isfinite(v) and v >= 0 for v in row["loss"])
        assert 0 <= row["test_accuracy"] <= 1
    for row in entry["prior"]:
        assert all(0 <= v <= 1 for v in row["cka"].values())
        assert all(-1 <= v <= 1 for v in row["label_alignment"].values())
        # Ten classes: the trained networks are far above chance (0.1).
        assert 0.5 < row["test_accuracy"] <= 1


def test_networks_are_the_described_architectures():
    relu, normalized, batchnorm = (deep_network(v, 8, 16, 10) for v in VARIANTS)
    assert relu.activation == "relu" and normalized.activation == "relu_normalized"
    assert sum(isinstance(layer, BatchNorm) for layer in batchnorm.layers) == 8
    assert sum(isinstance(layer, Dense) for layer in batchnorm.layers) == 9
    mlp, cnn = (prior_network(a, QUICK["prior"], (8, 8, 1), 10) for a in ("MLP", "CNN"))
    assert isinstance(mlp.layers[0], Flatten) and sum(isinstance(layer, Conv) for layer in cnn.layers) == 2
    assert cnn.compile((8, 8, 1)).out == 10 and prior_network("CNN", QUICK["prior"], (40, 1), 10).compile((40, 1))


def test_bad_options_name_the_argument():
    bad = subprocess.run([sys.executable, "-m", "nnpk.cli", "demo", "training", "--datasets", "cifar"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--datasets must be digits, mnist1d or both" in bad.stderr


def test_mnist1d_signals(tmp_path):
    pytest.importorskip("mnist1d")
    subprocess.run([sys.executable, "-m", "nnpk.cli", "demo", "training", "--quick", "--datasets", "mnist1d",
                    "--out", str(tmp_path)], check=True, capture_output=True)
    with open(tmp_path / "training.json") as f:
        entry = json.load(f)["datasets"]["mnist1d"]
    assert entry["point_shape"] == [40, 1] and len(entry["prior"]) == 2
