"""Shared measurements: the machine's own matrix-product rate and peak memory."""

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest


def numpy_matmul_gflops(dtype, n=4096, repeats=3):
    """numpy's (BLAS) matrix-product rate on this machine, now: the practical ceiling."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def best_time(fn, repeats=2):
    return min(_timed(fn) for _ in range(repeats))


def peak_memory(setup: str, call: str) -> dict:
    """Resident memory around `call` in a fresh process, in bytes.

    baseline: before `setup` (after imports); after_setup: once `setup` has built
    the inputs; peak: the high-water mark during `call` alone."""
    script = textwrap.dedent(
        f"""
        import json, numpy as np, nnpk
        def rss(field):
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) * 1024
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        baseline = rss("VmRSS")
        {setup}
        after_setup = rss("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        {call}
        print(json.dumps(dict(baseline=baseline, after_setup=after_setup, peak=rss("VmHWM"))))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def sgemm_rate():
    return numpy_matmul_gflops(np.float32)


@pytest.fixture(scope="session")
def dgemm_rate():
    return numpy_matmul_gflops(np.float64)
