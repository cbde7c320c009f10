"""Ctrl-C stops a long engine call within a couple of seconds."""

import signal
import subprocess
import sys
import textwrap
import time

import pytest

import nnpk


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_stops_a_long_call():
    script = textwrap.dedent(
        """
        import sys, time, numpy as np, nnpk
        x = np.random.default_rng(0).standard_normal((3000, 200))
        print("start", flush=True)
        t = time.perf_counter()
        try:
            nnpk.monte_carlo(x, arch=nnpk.MLP(hidden=[1024, 1024], out=10), n_networks=100000, n_threads=2)
        except KeyboardInterrupt:
            print(f"interrupted {time.perf_counter() - t:.2f}", flush=True)
            sys.exit(3)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "start"
    time.sleep(1.5)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=10)
    finally:
        proc.kill()
    assert code == 3, proc.stdout.read()
    assert time.perf_counter() - sent < 3.0


def test_openmp_is_reported():
    assert isinstance(nnpk.has_openmp(), bool)
    assert nnpk.physical_cores() >= 1
