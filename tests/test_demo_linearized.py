"""`nnpk demo linearized` in its quick setting: the report's structure, sane figures, and the alignment at
initialisation against a direct eigendecomposition of the network's NTK."""

import math
import pickle
import subprocess
import sys

import numpy as np
import pytest

import nnpk
from nnpk.demos._linearized import NAD_POSITIONS, QUICK, dataset_points, load_cifar10
from conftest import run_quick_demo


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("linearized")
    results, out = run_quick_demo("linearized", folder)
    return folder, results, out


def test_report_files_and_tables(report):
    folder, results, out = report
    assert sorted(p.name for p in folder.iterdir()) == ["linearized.json", "linearized.md", "linearized.png"]
    assert (folder / "linearized.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (folder / "linearized.md").read_text()
    for heading in ("test accuracy, network / linearised", "ranking of the eigenfunction tasks (Spearman)",
                    "NTK alignment after training the network"):
        assert f"### digits, MLP 100-100-1: {heading}" in text and heading in out
    assert "CIFAR-10: skipped" in text and f"{QUICK['epochs']} epochs instead of the study's 100" in text
    [entry] = results["datasets"]["digits"]
    assert entry["architecture"] == "MLP 100-100-1" and entry["point_shape"] == [64]
    assert [s["n_train"] for s in entry["sizes"]] == list(QUICK["sizes"]["digits"])
    for size in entry["sizes"]:
        assert [r["k"] for r in size["eigenfunction"]] == list(QUICK["ks"])
        assert [r["position"] for r in size["nad"]] == list(NAD_POSITIONS)
        assert set(size["alpha_after"]) == {str(r["k"]) for r in size["eigenfunction"] if not r["single_class"]}


def test_figures_are_sane(report):
    _, results, _ = report
    [entry] = results["datasets"]["digits"]
    for size in entry["sizes"]:
        for row in size["eigenfunction"] + size["nad"]:
            assert 0 <= row["network"] <= 1 and 0 <= row["linearized"] <= 1
        # A training set of one class is marked and predicted as that class by both.
        for row in size["eigenfunction"]:
            assert row["single_class"] == (row["positive_fraction"] in (0.0, 1.0))
        ranking = size["spearman"]
        assert ranking["tasks"] == sum(not r["single_class"] for r in size["eigenfunction"])
        assert all(v is None or -1 <= v <= 1 for k, v in ranking.items() if k != "tasks")
        for alphas in [size["alpha_before"], *size["alpha_after"].values()]:
            for subset in ("train", "test", "all"):
                assert len(alphas[subset]) == size["n_vectors"]
                assert all(math.isfinite(a) and a >= 0 for a in alphas[subset])
        for row in size["eigenfunction"]:
            if "alignment" in row:
                assert 1 <= row["alignment"]["all"]["rank_after"] <= size["n_vectors"]
        # The top NAD is the direction the network sees best: both learn it.
        top = size["nad"][0]
        assert top["singular_value"] == max(r["singular_value"] for r in size["nad"])
        assert min(top["network"], top["linearized"]) > 0.7


def test_alignment_at_initialisation_is_the_ntk_spectrum(report):
    """alpha_i before training, on all points, is the i-th eigenvalue of the initial NTK: checked against numpy's
    eigendecomposition of the kernel of network 0 of seed 0 on the same points; the first eigenvector's task is
    one class when the kernel's entries are all positive (Perron-Frobenius)."""
    _, results, _ = report
    size = results["datasets"]["digits"][0]["sizes"][0]
    n_all = size["n_train"] + size["n_test"]
    x = dataset_points("digits", 0, None)[:n_all]
    arch = nnpk.mlp_100(out=1)
    kernel = nnpk.empirical(x, arch=arch, params=nnpk.sample_params(arch, (64,), 0, 0), get="ntk", n_threads=1)
    eigenvalues = np.linalg.eigvalsh(kernel)[::-1][:size["n_vectors"]]
    np.testing.assert_allclose(size["alpha_before"]["all"], eigenvalues, rtol=1e-8, atol=1e-9 * eigenvalues[0])
    np.testing.assert_allclose(size["eigenvalues"], eigenvalues, rtol=1e-8, atol=1e-9 * eigenvalues[0])
    assert (kernel > 0).all() == size["eigenfunction"][0]["single_class"]


def test_cifar_copies_by_path(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(6, 32, 32, 3)).astype(np.uint8)
    np.savez(tmp_path / "cifar.npz", x=images, y=np.arange(6))
    np.testing.assert_array_equal(load_cifar10(str(tmp_path / "cifar.npz")), images)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rows = images.transpose(0, 3, 1, 2).reshape(6, 3072)  # CIFAR's rows: the red plane, then green, then blue
    for name, part in (("data_batch_1", rows[:4]), ("test_batch", rows[4:])):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": part, b"labels": [0] * len(part)}, f)
    np.testing.assert_array_equal(load_cifar10(str(folder)), images)
    with pytest.raises(ValueError, match="no CIFAR-10 python batches"):
        load_cifar10(str(tmp_path))


def test_bad_options_name_the_argument(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "nnpk.cli", "demo", "linearized", "--cifar",
                          str(tmp_path / "absent")], capture_output=True, text=True)
    assert bad.returncode == 2 and "--cifar:" in bad.stderr and "does not exist" in bad.stderr
