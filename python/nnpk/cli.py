"""The `nnpk` command."""

from __future__ import annotations

import argparse
import json
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
    if argv[:2] == ["demo", "linearized"]:
        from .demos import _linearized  # imports scipy and matplotlib: only when asked for

        return _linearized.main(argv[2:])
    if argv[:2] == ["demo", "depth"]:
        from .demos import _depth  # imports scikit-learn and matplotlib: only when asked for

        return _depth.main(argv[2:])
    if argv[:2] == ["demo", "recurrent"]:
        from .demos import _recurrent  # imports scipy and matplotlib: only when asked for

        return _recurrent.main(argv[2:])
    parser = argparse.ArgumentParser(prog="nnpk", description="Kernels of random neural networks.")
    parser.add_argument("--version", action="version", version=f"nnpk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="random-network kernels learning digits: accuracy, Monte Carlo error, depth",
                       description="Random-network kernels (Monte Carlo and analytic NNGP and NTK, RBF) in ridge "
                       "classifiers on digits or MNIST-1D: a table of accuracy, alignment and condition number, the "
                       "Monte Carlo error against the number of networks, the smallest eigenvalue against depth; "
                       "written to a report folder. `nnpk demo biases` runs the bias-learning demo instead, `nnpk demo "
                       "architectures` the random MLP/CNN/residual CNN comparison, `nnpk demo training` trained "
                       "networks beside their kernels, `nnpk demo linearized` networks beside their linearisations on "
                       "NTK eigenfunction and NAD tasks, `nnpk demo depth` conditioning, learnability and training of "
                       "deep MLPs against depth, `nnpk demo recurrent` random recurrent "
                       "networks learning dynamical systems through their biases.")
    demo_kernels.add_arguments(p)
    p.set_defaults(func=demo_kernels.run)
    register_batch(sub)
    p = sub.add_parser("info", help="version and build: instruction-set levels, OpenMP, compiler, Eigen, products",
                       description="nnpk's version and how its engine was built: the instruction-set levels compiled, "
                       "the one in use (the best this CPU runs, or the one the NNPK_ISA environment variable names), "
                       "OpenMP, the compiler and Eigen's version; and the matrix-product kernels: the engine's "
                       "(Eigen's, at the level in use) and the BLAS numpy calls (the kernel OpenBLAS chose, as "
                       "threadpoolctl reports it).")
    p.add_argument("--json", action="store_true",
                   help="machine-readable output (nnpk.build_info(), and the product kernels under \"products\")")
    p.set_defaults(func=_info)
    args = parser.parse_args(argv)
    return args.func(args)


def _info(args) -> int:
    from ._build import build_info, product_kernels

    info, products = build_info(), product_kernels()
    if args.json:
        print(json.dumps({**info, "products": products}, indent=1))
        return 0
    forced = f" (forced by NNPK_ISA={info['isa_forced']})" if info["isa_forced"] else ""
    print(f"nnpk          {info['version']}\n"
          f"isa level     {info['isa_level']}{forced}\n"
          f"compiled      {', '.join(info['isa_levels'])}\n"
          f"cpu runs      {', '.join(info['cpu_isa_levels']) or '(not an x86-64 CPU)'}\n"
          f"openmp        {'yes' if info['openmp'] else 'no (one thread)'}\n"
          f"compiler      {info['compiler']}\n"
          f"eigen         {info['eigen']} ({info['simd']})\n"
          f"extension     {info['extension']}\n"
          f"products      {products['engine']['library']}'s kernels at {products['engine']['isa_level']} "
          "(the engine's own)\n"
          f"packed f32    {products['engine']['float32']}\n"
          f"packed f64    {products['engine']['float64']}")
    overrides = ", ".join(f"{k}={v}" for k, v in products["environment"].items() if v is not None)
    for lib in products["numpy"] or [{}]:
        if not lib:
            line = "none found by threadpoolctl"
        else:
            line = (f"{lib.get('internal_api', 'unknown')} {lib.get('version') or ''}: kernel "
                    f"{lib.get('architecture') or '(not reported)'}, {lib.get('threading_layer', 'unknown')}, "
                    f"{lib.get('num_threads', '?')} threads")
        if overrides:
            line += f" ({overrides} set: it overrides OpenBLAS's own choice)"
        print(f"numpy blas    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
