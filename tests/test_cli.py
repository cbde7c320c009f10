import subprocess
import sys


def test_demo_help_lists_the_options_and_the_biases_demo():
    out = " ".join(subprocess.run([sys.executable, "-m", "nnpk.cli", "demo", "--help"], check=True,
                                  capture_output=True, text=True).stdout.split())  # argparse wraps lines
    for option in ("--dataset", "--hidden", "--activation", "--networks", "--out", "--threads", "--quick"):
        assert option in out
    assert "nnpk demo biases" in out
