"""The `nnpk` command."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import __version__
from ._arch import ACTIVATIONS, MLP
from ._monte_carlo import monte_carlo
from ._threads import resolve_n_threads


def _digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x - x.mean(axis=0)
    x /= np.sqrt(np.mean(np.sum(x * x, axis=1)) / x.shape[1])  # unit mean squared norm per feature
    return x, y


def demo(args) -> int:
    x, y = _digits()
    arch = MLP(hidden=[args.width] * args.depth, out=10, activation=args.activation, W_std=2**0.5, b_std=0.1)
    threads = resolve_n_threads(args.threads)
    print(f"nnpk {__version__}: Monte Carlo NNGP of {arch} on digits ({x.shape[0]} x {x.shape[1]}), "
          f"{args.networks} networks, {threads} threads")
    t = time.perf_counter()
    K = monte_carlo(x, arch=arch, n_networks=args.networks, dtype="float32", n_threads=threads, progress=True)
    seconds = time.perf_counter() - t
    eig = np.linalg.eigvalsh(K)
    same = y[:, None] == y[None, :]
    print(f"kernel {K.shape} in {seconds:.2f} s; eigenvalues [{eig[0]:.3g}, {eig[-1]:.3g}]; "
          f"mean kernel within a class {K[same].mean():.3f}, across classes {K[~same].mean():.3f}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["demo", "biases"]:
        from . import _demo_biases  # imports scikit-learn and matplotlib: only when asked for

        return _demo_biases.main(argv[2:])
    parser = argparse.ArgumentParser(prog="nnpk", description="Kernels of random neural networks.")
    parser.add_argument("--version", action="version", version=f"nnpk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="compute and summarise a kernel on scikit-learn's digits")
    p.add_argument("--networks", type=int, default=64)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
