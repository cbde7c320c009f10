import os
import sys

sys.path.insert(0, os.path.dirname(__file__))


def assert_analytic_bits_invariant(network, x, n_cross: int) -> None:
    """nnpk.analytic's NNGP and NTK of `x`: the same bits on 1 and 2 threads, bitwise symmetric, and a call with
    x2 = x[:n_cross] gives exactly those columns."""
    import numpy as np

    import nnpk

    one = nnpk.analytic(x, arch=network, get=("nngp", "ntk"), n_threads=1)
    two = nnpk.analytic(x, arch=network, get=("nngp", "ntk"), n_threads=2)
    cross = nnpk.analytic(x, x[:n_cross], arch=network, get=("nngp", "ntk"), n_threads=2)
    for name in ("nngp", "ntk"):
        np.testing.assert_array_equal(one[name], two[name])
        np.testing.assert_array_equal(one[name], one[name].T)
        np.testing.assert_array_equal(cross[name], one[name][:, :n_cross])


def run_quick_demo(name: str, folder):
    """Runs `nnpk demo NAME --quick` on digits with 2 threads into `folder`: (its JSON report, its stdout)."""
    import json
    import subprocess

    out = subprocess.run([sys.executable, "-m", "nnpk.cli", "demo", name, "--quick", "--datasets", "digits",
                          "--threads", "2", "--out", str(folder)], check=True, capture_output=True, text=True).stdout
    with open(os.path.join(folder, f"{name}.json")) as f:
        return json.load(f), out
