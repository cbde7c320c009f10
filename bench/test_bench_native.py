"""The dispatching build against a native one (-march=native): the same workloads, rates as ratios to the reference
(numpy's float32 matrix product in a child process of the worker: bench/conftest.py), each build in its own
processes, alternated over rounds.

Run with a native build's Python directory: build one (``pip install . -Ccmake.define.NNPK_NATIVE=ON`` into
another environment, or a build tree whose ``python/`` holds the native ``_core``) and set
``NNPK_NATIVE_PYTHONPATH`` to the directory to put first on ``PYTHONPATH`` for it; the build under test is the
one this pytest imports. Skipped otherwise. Printed: per workload the median ratio of each build and
dispatch / native (target >= 0.95).
"""

import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nnpk

ROUNDS = 3
BENCH = Path(__file__).parent

WORKER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    sys.path.insert(0, {bench!r})
    import nnpk
    from conftest import best_time, reference_gflops
    import test_bench_monte_carlo as mc, test_bench_architectures as cnn, test_bench_ntk as ntk
    from nnpk.architectures._params import prepare_network_points
    from nnpk.kernels._plans import conditional_sums

    out = {{"isa": nnpk.build_info()["isa_level"]}}
    reference = reference_gflops("float32")
    sgemm = reference.gflops
    out["reference"] = reference.header()

    def measure(name, fn, flops):
        fn()
        out[name] = flops / best_time(fn) / 1e9 / sgemm

    x = mc.data(4096)
    for n, m in ((512, 128), (4096, 32)):
        points = np.ascontiguousarray(x[:n])
        measure(f"sampled MLP n={{n}}", lambda: nnpk.monte_carlo(points, arch=mc.ARCH, n_networks=m,
                dtype="float32", n_threads=2, estimator="sampled"), mc.flops(n, m))
    for name in ("digits", "mnist1d"):
        try:
            images = cnn.load(name)
        except BaseException:  # mnist1d not installed: pytest's skip
            continue
        net = cnn.cnn(images.ndim - 2)
        measure(f"CNN {{name}}", lambda: nnpk.monte_carlo(images, arch=net, n_networks=12, dtype="float32",
                n_threads=2, estimator="sampled"), cnn.flops(net, images.shape[1:], len(images), 12))
    points = ntk.data(1024)
    measure("NTK n=1024", lambda: nnpk.monte_carlo(points, arch=ntk.ARCH, n_networks=4, get="ntk",
            dtype="float32", n_threads=2), ntk.flops(1024, 4))
    compiled, a1, _ = prepare_network_points(x[:2048], None, mc.ARCH, "float32")
    gram = 2048 * 2049 * 512  # one triangle of the hidden features' Gram
    measure("conditional n=2048", lambda: conditional_sums(a1, None, compiled, mc.ARCH, [3], seed=0, start=0,
            stop=8, n_threads=2, control=False), 8 * (2 * 2048 * 784 * 512 + gram))
    print(json.dumps(out))
    """
)


def run_worker(pythonpath: str) -> dict:
    env = {**os.environ, "PYTHONPATH": pythonpath + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", WORKER.format(bench=str(BENCH))], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_dispatch_against_native():
    native_path = os.environ.get("NNPK_NATIVE_PYTHONPATH")
    if not native_path:
        pytest.skip("set NNPK_NATIVE_PYTHONPATH to a native build's Python directory")
    this = str(Path(nnpk.__file__).parent.parent)
    runs = {"dispatch": [], "native": []}
    for _ in range(ROUNDS):
        runs["dispatch"].append(run_worker(this))
        runs["native"].append(run_worker(native_path))
    assert runs["native"][0]["isa"] == "native" and runs["dispatch"][0]["isa"] != "native"
    names = [k for k in runs["dispatch"][0] if k not in ("isa", "reference")]
    print(f"\n{runs['dispatch'][0]['reference']}")
    print(f"dispatching build ({runs['dispatch'][0]['isa']}) against native, median of {ROUNDS} rounds, rates "
          "as ratios to the reference measured by each worker")
    print("| workload | dispatch | native | dispatch / native | target |")
    print("| --- | ---: | ---: | ---: | ---: |")
    worst = float("inf")
    for name in names:
        d = statistics.median(r[name] for r in runs["dispatch"])
        n = statistics.median(r[name] for r in runs["native"])
        worst = min(worst, d / n)
        print(f"| {name} | {d:.2f} | {n:.2f} | {d / n:.2f} | 0.95 |")
    assert worst >= 0.95
