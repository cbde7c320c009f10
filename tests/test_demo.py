import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge

from nnpk import cli
from nnpk.demos import _common
from nnpk.demos import _kernels as _demo

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    """`nnpk demo --quick` run as a user runs it: its output and its report folder."""
    folder = tmp_path_factory.mktemp("report")
    run = subprocess.run([sys.executable, "-m", "nnpk.cli", "demo", "--quick", "--out", str(folder)],
                         check=True, capture_output=True, text=True, timeout=600)
    return run.stdout, folder


def test_quick_demo_writes_a_report_that_parses(quick_report):
    stdout, folder = quick_report
    assert f"report: {folder}" in stdout
    assert "| NNGP, analytic | inf |" in stdout
    results = json.loads((folder / "digits.json").read_text())
    assert {"version", "versions", "settings", "kernels", "monte_carlo_error", "depth", "timings"} <= set(results)
    rows = {(row["label"], row["n_networks"]): row for row in results["kernels"]}
    assert rows["NNGP, analytic", None]["test_accuracy"] > 0.9
    assert rows["NTK, analytic", None]["test_accuracy"] > 0.9
    assert rows["RBF (baseline)", None]["test_accuracy"] > 0.9
    assert results["settings"]["nngp_networks"] == [1, 4]
    assert set(results["monte_carlo_error"]) == {"NNGP, Monte Carlo (conditional)", "NNGP, Monte Carlo (sampled)",
                                                 "NTK, Monte Carlo (empirical, at init)"}
    assert set(results["depth"]) == {"relu", "relu_normalized"}
    assert results["depth"]["relu"]["depth"] == [1, 2, 4, 8]
    markdown = (folder / "digits.md").read_text()
    assert "| kernel | networks M | test accuracy |" in markdown
    assert "digits-monte-carlo-error.png" in markdown
    for name in ("digits-monte-carlo-error.png", "digits-depth.png"):
        assert (folder / name).read_bytes()[:8] == PNG_SIGNATURE


def test_quick_demo_figures_behave(quick_report):
    _, folder = quick_report
    results = json.loads((folder / "digits.json").read_text())
    errors = results["monte_carlo_error"]
    # The conditional estimator integrates the readout and the last hidden layer: far less error per network.
    conditional = errors["NNGP, Monte Carlo (conditional)"]["relative_error"]
    sampled = errors["NNGP, Monte Carlo (sampled)"]["relative_error"]
    assert all(c < s for c, s in zip(conditional, sampled))
    assert sampled[-1] < sampled[0]
    # The normalised relu's kernel tends to the identity with depth (docs/definitions.rst).
    normalized = results["depth"]["relu_normalized"]
    assert normalized["min_eigenvalue"][-1] > results["depth"]["relu"]["min_eigenvalue"][-1]
    assert normalized["condition_number"][-1] < normalized["condition_number"][0]


def test_split_is_stratified_halves_of_unit_variance_rows():
    data = _common.load_dataset("digits", 400, seed=1)
    assert len(data.train) == 200 and len(data.test) == 200
    assert not set(data.train) & set(data.test)
    counts = np.bincount(data.labels[data.train], minlength=10) - np.bincount(data.labels[data.test], minlength=10)
    assert np.abs(counts).max() <= 1
    np.testing.assert_allclose(np.mean(data.x**2, axis=1), 1.0)


def test_evaluate_matches_scikit_learn_kernel_ridge():
    data = _common.load_dataset("digits", 300, seed=0)
    kernel = np.exp(-0.5 * np.square(data.x[:, None, :] - data.x[None, :, :]).sum(-1) / data.x.shape[1])
    result = _common.evaluate(kernel, data, "loo")
    model = KernelRidge(alpha=result["ridge"], kernel="precomputed")
    model.fit(kernel[np.ix_(data.train, data.train)], np.eye(10)[data.labels[data.train]])
    predicted = np.argmax(model.predict(kernel[np.ix_(data.test, data.train)]), axis=1)
    assert result["test_accuracy"] == np.mean(predicted == data.labels[data.test])
    eigenvalues = np.linalg.eigvalsh(kernel[np.ix_(data.train, data.train)])
    assert result["condition_number"] == pytest.approx(eigenvalues[-1] / eigenvalues[0], rel=1e-6)


def test_counts_and_depths():
    assert _demo.network_counts(64) == [1, 4, 16, 64]
    assert _demo.network_counts(100) == [1, 4, 16, 64, 100]
    assert _demo.network_counts(1) == [1]
    assert _demo.depths(64) == [1, 2, 4, 8, 16, 32, 64]
    assert _demo.depths(12) == [1, 2, 4, 8, 12]


def test_mnist1d_without_the_package_says_how_to_get_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "mnist1d", None)  # find_spec then reports it missing
    assert cli.main(["demo", "--dataset", "mnist1d", "--out", str(tmp_path)]) == 2
    assert "pip install 'nnpk[mnist1d]'" in capsys.readouterr().err


def test_mnist1d_quick(tmp_path, capsys):
    pytest.importorskip("mnist1d")
    assert cli.main(["demo", "--dataset", "mnist1d", "--quick", "--samples", "1000", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "mnist1d.json").read_text())
    assert results["settings"]["n_features"] == 40
    accuracy = {row["label"]: row["test_accuracy"] for row in results["kernels"] if row["method"] == "analytic"}
    assert accuracy["NNGP, analytic"] > 0.25  # chance is 0.1; MNIST-1D is hard for kernels on 500 training points


@pytest.mark.parametrize("option", [["--hidden", "512,x"], ["--hidden", "0"], ["--networks", "0"],
                                    ["--activation", "tanh"]])
def test_bad_options_are_usage_errors(option, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["demo", *option])
    assert stop.value.code == 2
    assert "nnpk demo: error" in capsys.readouterr().err
