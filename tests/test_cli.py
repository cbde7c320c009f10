import subprocess
import sys


def test_demo_runs():
    out = subprocess.run([sys.executable, "-m", "nnpk.cli", "demo", "--networks", "4", "--width", "64"],
                         check=True, capture_output=True, text=True).stdout
    assert "kernel (1797, 1797)" in out
