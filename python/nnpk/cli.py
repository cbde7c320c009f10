"""The `nnpk` command."""

from __future__ import annotations

import argparse
import sys

from ._version import __version__
from .demos import _kernels as demo_kernels
from .store._jobs import register as register_batch


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["demo", "biases"]:
        from .demos import _biases  # imports scikit-learn and matplotlib: only when asked for

        return _biases.main(argv[2:])
    if argv[:2] == ["demo", "architectures"]:
        from .demos import _architectures  # imports scikit-learn and matplotlib: only when asked for

        return _architectures.main(argv[2:])
    if argv[:2] == ["demo", "training"]:
        from .demos import _training  # imports scikit-learn and matplotlib: only when asked for

        return _training.main(argv[2:])
    parser = argparse.ArgumentParser(prog="nnpk", description="Kernels of random neural networks.")
    parser.add_argument("--version", action="version", version=f"nnpk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="random-network kernels learning digits: accuracy, Monte Carlo error, depth",
                       description="Random-network kernels (Monte Carlo and analytic NNGP and NTK, RBF) in ridge "
                       "classifiers on digits or MNIST-1D: a table of accuracy, alignment and condition number, the "
                       "Monte Carlo error against the number of networks, the smallest eigenvalue against depth; "
                       "written to a report folder. `nnpk demo biases` runs the bias-learning demo instead, `nnpk demo "
                       "architectures` the random MLP/CNN/residual CNN comparison, `nnpk demo training` trained "
                       "networks beside their linearisations and kernels.")
    demo_kernels.add_arguments(p)
    p.set_defaults(func=demo_kernels.run)
    register_batch(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
