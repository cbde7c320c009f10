"""`nnpk demo`: kernels of random networks learning a data set that ships with the install.

On scikit-learn's digits (or MNIST-1D, generated offline by the optional
`mnist1d` package), split into stratified halves: the Monte Carlo NNGP at
several network counts (the default estimator and the plain sampled one), the
analytic NNGP and NTK, the Monte Carlo NTK at initialisation and an RBF
baseline, each feeding a kernel ridge classifier whose ridge is chosen by GCV or
LOO from one eigendecomposition; the Monte Carlo error against the number of
networks; the smallest eigenvalue of the NNGP against depth for relu and
relu_normalized. Writes a Markdown table, a JSON of every figure and two PNG
plots.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, cast

import numpy as np

from .._threads import resolve_n_threads
from .._version import __version__
from ..architectures import CLOSED_FORM_DUALS, MLP
from ..kernels import analytic, conditioning, default_estimator, monte_carlo
from ..learn import CRITERIA
from ._common import (
    DATASETS,
    DEFAULT_SAMPLES,
    PREPROCESSING,
    Dataset,
    _finite,
    evaluate,
    load_dataset,
    positive_int,
    widths,
)

# Settings that `--quick` changes (options given explicitly win), the full run's first.
FULL: Dict[str, Any] = {"hidden": (512, 512), "networks": 256, "ntk_networks": 16, "max_depth": 64}
QUICK: Dict[str, Any] = {"samples": 300, "hidden": (128, 128), "networks": 4, "ntk_networks": 2, "max_depth": 8}
# Forward passes in float32 (float64 accumulation): their rounding is far below the Monte Carlo error.
MC_DTYPE = "float32"
DEPTH_ACTIVATIONS = {"relu": math.sqrt(2), "relu_normalized": 1.0}  # W_std keeping the diagonal at 1


def _geometric(maximum: int, factor: int) -> List[int]:
    """1, factor, factor^2, ... below `maximum`, then `maximum`."""
    values = [1]
    while values[-1] * factor < maximum:
        values.append(values[-1] * factor)
    return values + [maximum] if maximum > 1 else values


def network_counts(maximum: int) -> List[int]:
    return _geometric(maximum, 4)


def depths(maximum: int) -> List[int]:
    return _geometric(maximum, 2)


@dataclass(frozen=True)
class KernelSpec:
    """One kernel of the table: `method` "rbf", "analytic" or "monte_carlo"."""

    kernel: str  # "rbf", "nngp" or "ntk"
    method: str
    estimator: Optional[str] = None
    n_networks: Optional[int] = None

    @property
    def label(self) -> str:
        if self.method == "rbf":
            return "RBF (baseline)"
        if self.method == "analytic":
            return f"{self.kernel.upper()}, analytic"
        if self.kernel == "ntk":
            return "NTK, Monte Carlo (empirical, at init)"
        return f"NNGP, Monte Carlo ({self.estimator})"


def kernel_specs(arch: MLP, networks: int, ntk_networks: int) -> List[KernelSpec]:
    specs = [KernelSpec("rbf", "rbf"), KernelSpec("nngp", "analytic"), KernelSpec("ntk", "analytic")]
    for estimator in (default_estimator(arch), "sampled"):
        specs += [KernelSpec("nngp", "monte_carlo", estimator, m) for m in network_counts(networks)]
    return specs + [KernelSpec("ntk", "monte_carlo", None, m) for m in network_counts(ntk_networks)]


def rbf_gamma(x_train: np.ndarray) -> float:
    """scikit-learn's gamma="scale": 1 / (d Var(x))."""
    return 1.0 / (x_train.shape[1] * float(x_train.var()))


def compute_kernel(spec: KernelSpec, data: Dataset, arch: MLP, seed: int, threads: int) -> np.ndarray:
    """The (n, n) kernel of every point, training and test together (one triangle of one symmetric matrix)."""
    if spec.method == "rbf":
        from sklearn.metrics.pairwise import rbf_kernel

        return rbf_kernel(data.x, gamma=rbf_gamma(data.x[data.train]))
    if spec.method == "analytic":
        # One kernel name and layers="output": one array.
        return cast(np.ndarray, analytic(data.x, arch=arch, get=spec.kernel, n_threads=threads))
    assert spec.n_networks is not None  # kernel_specs gives every Monte Carlo kernel its network count
    return monte_carlo(data.x, arch=arch, n_networks=spec.n_networks, seed=seed, get=spec.kernel,
                       estimator=spec.estimator, dtype=MC_DTYPE, n_threads=threads)


def relative_error(estimate: np.ndarray, reference: np.ndarray) -> float:
    """||K_M - K_inf||_F / ||K_inf||_F."""
    return float(np.linalg.norm(estimate - reference) / np.linalg.norm(reference))


def depth_study(x: np.ndarray, max_depth: int, threads: int) -> dict:
    """The analytic NNGP's conditioning against depth, relu against relu_normalized, without biases."""
    out = {}
    for activation, w_std in DEPTH_ACTIVATIONS.items():
        # The widths do not enter the analytic NNGP.
        arch = MLP(hidden=[1] * max_depth, out=1, activation=activation, W_std=w_std, b_std=None)
        stats = conditioning(x, arch=arch, depths=depths(max_depth), n_threads=threads)
        out[activation] = {"W_std": w_std, "b_std": None, "depth": stats["depth"].tolist(),
                           **{key: [_finite(v) for v in values] for key, values in stats.items() if key != "depth"}}
    return out


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out: Dict[str, Optional[str]] = {"nnpk": __version__, "python": platform.python_version()}
    for package in ("numpy", "scipy", "scikit-learn", "matplotlib", "mnist1d"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


def _architecture(arch: MLP) -> dict:
    return {"hidden": list(arch.hidden), "out": arch.out, "activation": arch.activation, "W_std": arch.W_std,
            "b_std": arch.b_std, "parameterization": arch.parameterization}


def run_demo(*, dataset: str = "digits", n_samples: Optional[int] = None, hidden=FULL["hidden"],
             activation: str = "relu", W_std: Optional[float] = None, b_std: float = 0.1,
             networks: int = FULL["networks"], ntk_networks: int = FULL["ntk_networks"],
             max_depth: int = FULL["max_depth"], criterion: str = "gcv", seed: int = 0, threads: int = 1,
             progress: bool = False) -> dict:
    """Every figure of the report, as the JSON stores it; `progress` shows a bar over the steps."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    data = load_dataset(dataset, n_samples, seed)
    load_seconds = time.perf_counter() - start
    if W_std is None:
        W_std = math.sqrt(2) if activation in ("relu", "leaky_relu") else 1.0
    arch = MLP(hidden=list(hidden), out=data.n_classes, activation=activation, W_std=W_std, b_std=b_std)
    specs = kernel_specs(arch, networks, ntk_networks)
    rows: List[Dict[str, Any]] = []
    references: Dict[str, np.ndarray] = {}
    with tqdm(total=len(specs) + 1, unit="step", desc="nnpk demo", disable=not progress) as bar:
        for spec in specs:
            bar.set_postfix_str(spec.label + (f", M={spec.n_networks}" if spec.n_networks else ""))
            t = time.perf_counter()
            kernel = compute_kernel(spec, data, arch, seed, threads)
            row: Dict[str, Any] = {"label": spec.label, "kernel": spec.kernel, "method": spec.method,
                                   "estimator": spec.estimator, "n_networks": spec.n_networks,
                                   "seconds": time.perf_counter() - t}
            if spec.method == "analytic":
                references[spec.kernel] = kernel
            row["monte_carlo_error"] = (relative_error(kernel, references[spec.kernel])
                                        if spec.method == "monte_carlo" else None)
            t = time.perf_counter()
            row.update(evaluate(kernel, data, criterion))
            row["fit_seconds"] = time.perf_counter() - t
            rows.append(row)
            bar.update()
        bar.set_postfix_str("smallest eigenvalue against depth")
        t = time.perf_counter()
        depth = depth_study(data.x[data.train], max_depth, threads)
        depth_seconds = time.perf_counter() - t
        bar.update()
    errors: Dict[str, Dict[str, list]] = {}
    for row in rows:
        if row["method"] == "monte_carlo":
            curve = errors.setdefault(row["label"], {"n_networks": [], "relative_error": []})
            curve["n_networks"].append(row["n_networks"])
            curve["relative_error"].append(row["monte_carlo_error"])
    return {
        "version": __version__,
        "versions": _versions(),
        "settings": {
            "dataset": dataset, "n_samples": len(data.labels), "n_features": data.x.shape[1],
            "n_train": len(data.train), "n_test": len(data.test), "n_classes": data.n_classes,
            "split": "stratified halves (sklearn.model_selection.train_test_split, test_size=0.5)",
            "preprocessing": PREPROCESSING, "architecture": _architecture(arch),
            "monte_carlo_dtype": MC_DTYPE, "default_estimator": default_estimator(arch),
            "nngp_networks": network_counts(networks),
            "ntk_networks": network_counts(ntk_networks), "rbf_gamma": rbf_gamma(data.x[data.train]),
            "ridge_criterion": criterion, "depths": depths(max_depth), "seed": seed, "threads": threads,
        },
        "kernels": rows,
        "monte_carlo_error": errors,
        "depth": depth,
        "timings": {"load_seconds": load_seconds, "depth_seconds": depth_seconds,
                    "kernel_seconds": sum(r["seconds"] for r in rows),
                    "fit_seconds": sum(r["fit_seconds"] for r in rows),
                    "total_seconds": time.perf_counter() - start},
    }


def _number(value: Optional[float], digits: int = 3) -> str:
    return "singular" if value is None else f"{value:.{digits}g}"


def kernel_table(results: dict) -> List[str]:
    lines = ["| kernel | networks M | test accuracy | alignment (centred) | condition number | ridge / mean diag "
             "| MC error | seconds |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in results["kernels"]:
        networks = {"rbf": "", "analytic": "inf"}.get(row["method"], str(row["n_networks"]))
        error = "" if row["monte_carlo_error"] is None else f"{row['monte_carlo_error']:.4f}"
        lines.append(f"| {row['label']} | {networks} | {row['test_accuracy']:.4f} | {row['alignment_centered']:.3f} "
                     f"| {_number(row['condition_number'])} | {row['relative_ridge']:.0e} | {error} "
                     f"| {row['seconds']:.2f} |")
    return lines


def depth_table(results: dict) -> List[str]:
    names = list(results["depth"])
    lines = ["| depth | " + " | ".join(f"{n}: smallest eigenvalue | {n}: condition number" for n in names) + " |",
             "| ---: |" + " ---: | ---: |" * len(names)]
    for i, depth in enumerate(results["settings"]["depths"]):
        cells = [f"{_number(results['depth'][n]['min_eigenvalue'][i])} | "
                 f"{_number(results['depth'][n]['condition_number'][i])}" for n in names]
        lines.append(f"| {depth} | " + " | ".join(cells) + " |")
    return lines


def markdown(results: dict, files: dict) -> str:
    s = results["settings"]
    a = s["architecture"]
    mlp = (f"MLP hidden {a['hidden']}, {a['activation']}, W_std = {a['W_std']:.4g}, b_std = {a['b_std']}, "
           f"{a['parameterization']} parameterization, {a['out']} logits")
    lines = [
        f"# nnpk demo: random-network kernels on {s['dataset']}",
        "",
        f"nnpk {results['version']}; {s['dataset']}: {s['n_samples']} points of {s['n_features']} features, "
        f"{s['n_classes']} classes, {s['split']}: {s['n_train']} train, {s['n_test']} test. Inputs "
        f"{s['preprocessing']}. Network: {mlp}, the same for the analytic and the Monte Carlo kernels. "
        f"Monte Carlo forward passes in {s['monte_carlo_dtype']} with float64 sums; {s['threads']} threads; "
        f"{results['timings']['total_seconds']:.0f} s in all.",
        "",
        f"Kernel ridge classification on one-hot targets; the ridge is chosen by {s['ridge_criterion'].upper()} "
        "among multiples of the training kernel's mean diagonal, from one eigendecomposition. Alignment is the "
        "centred kernel-target alignment and the condition number that of the training kernel. MC error is "
        "||K_M - K_inf||_F / ||K_inf||_F over all points, K_inf the analytic kernel of the same kind: it falls "
        "like 1/sqrt(M) until it meets the finite-width difference between the expected kernel of width "
        f"{a['hidden']} networks and the infinite-width one. The Monte Carlo NNGP by {s['default_estimator']}, "
        "nnpk.monte_carlo's default estimator here, and by sampled, the mean of f(x) . f(x') / C over the sampled "
        f"networks, whose rank is at most M C (singular while M C < {s['n_train']}). The RBF kernel is "
        f"exp(-gamma ||x - x'||^2) with gamma = 1 / (d Var x) = {s['rbf_gamma']:.3g}. Seconds: computing the "
        f"kernel of all {s['n_samples']} points.",
        "",
        *kernel_table(results),
        "",
        "## Smallest eigenvalue against depth",
        "",
        "The analytic NNGP of the training inputs at each depth (no biases; relu with W_std = sqrt 2, "
        "relu_normalized with W_std = 1), scaled to a unit diagonal. relu drives every correlation towards 1, so "
        "the kernel tends to a constant matrix and its smallest eigenvalue to 0; the centred relu_normalized "
        "drives them to 0 and the kernel to the identity. At small depths both rise from the input kernel "
        f"x . x' / d, whose rank is at most d = {s['n_features']}: each nonlinear layer lifts its small "
        "eigenvalues.",
        "",
        *depth_table(results),
        "",
        f"![Monte Carlo error against M]({files['error_plot']})",
        f"![Smallest eigenvalue against depth]({files['depth_plot']})",
        "",
    ]
    return "\n".join(lines)


def _figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size)
    FigureCanvasAgg(figure)  # the Agg backend, whatever matplotlib's default is
    return figure


def plot_error(results: dict, path: str) -> None:
    figure = _figure((6.4, 4.6))
    axes = figure.subplots()
    curves = results["monte_carlo_error"]
    for label, curve in curves.items():
        axes.plot(curve["n_networks"], curve["relative_error"], marker="o", label=label)
    counts = sorted({m for curve in curves.values() for m in curve["n_networks"]})
    top = max(curve["relative_error"][0] for curve in curves.values())
    axes.plot(counts, [top / math.sqrt(m / counts[0]) for m in counts], color="grey", linestyle="--",
              label="1/sqrt(M) guide")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("networks M")
    axes.set_ylabel("||K_M - K_inf||_F / ||K_inf||_F")
    architecture = results["settings"]["architecture"]
    axes.set_title(f"{results['settings']['dataset']}: {architecture['activation']} MLP {architecture['hidden']}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_depth(results: dict, path: str) -> None:
    figure = _figure((10, 4.2))
    panels = figure.subplots(1, 2)
    for activation, stats in results["depth"].items():
        for axes, key in zip(panels, ("min_eigenvalue", "condition_number")):
            axes.plot(stats["depth"], [np.nan if v is None else v for v in stats[key]], marker="o", label=activation)
    for axes, title in zip(panels, ("smallest eigenvalue", "condition number")):
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xlabel("depth (hidden layers)")
        axes.set_title(f"analytic NNGP, unit diagonal: {title}")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def write_report(results: dict, folder: str) -> dict:
    """Writes <dataset>.md, <dataset>.json and two PNGs into `folder`; returns their paths by role."""
    os.makedirs(folder, exist_ok=True)
    name = results["settings"]["dataset"]
    files = {"markdown": f"{name}.md", "json": f"{name}.json", "error_plot": f"{name}-monte-carlo-error.png",
             "depth_plot": f"{name}-depth.png"}
    with open(os.path.join(folder, files["json"]), "w") as f:
        json.dump(results, f, indent=1, allow_nan=False)
    with open(os.path.join(folder, files["markdown"]), "w") as f:
        f.write(markdown(results, files))
    plot_error(results, os.path.join(folder, files["error_plot"]))
    plot_depth(results, os.path.join(folder, files["depth_plot"]))
    return {role: os.path.join(folder, file) for role, file in files.items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `nnpk demo` (None: the full run's value, or the quick run's with --quick)."""
    parser.add_argument("--dataset", choices=DATASETS, default="digits",
                        help="mnist1d needs the optional mnist1d package (pip install 'nnpk[mnist1d]')")
    parser.add_argument("--samples", type=positive_int, default=None,
                        help="points used, a stratified subsample (default: all of digits, 2000 of MNIST-1D)")
    parser.add_argument("--hidden", type=widths, default=None, help="hidden widths, comma separated (512,512)")
    # The closed forms that need no parameter (degree, coefficients) and have a tangent kernel (not sign).
    choices = [a for a in CLOSED_FORM_DUALS if a not in ("sign", "monomial", "rectified_monomial", "polynomial")]
    parser.add_argument("--activation", choices=choices, default="relu",
                        help="activations whose analytic kernel has a closed form (others take minutes)")
    parser.add_argument("--W-std", dest="W_std", type=float, default=None,
                        help="weight std (default: sqrt 2 for relu and leaky_relu, 1 otherwise)")
    parser.add_argument("--b-std", dest="b_std", type=float, default=0.1)
    parser.add_argument("--networks", type=positive_int, default=None,
                        help="largest Monte Carlo network count M of the NNGP (256); also 1, 4, 16, ... below it")
    parser.add_argument("--ntk-networks", type=positive_int, default=None,
                        help="largest network count of the Monte Carlo NTK (16)")
    parser.add_argument("--max-depth", type=positive_int, default=None, help="deepest network of the depth study (64)")
    parser.add_argument("--criterion", choices=CRITERIA, default="gcv", help="ridge selection")
    parser.add_argument("--seed", type=int, default=0, help="split and networks")
    parser.add_argument("--threads", type=int, default=None, help="default: all physical cores")
    parser.add_argument("--out", default="nnpk-report", help="report folder")
    parser.add_argument("--quick", action="store_true",
                        help="a small setting that runs in seconds: 300 points, hidden 128,128, 4 networks")


def run(args: argparse.Namespace) -> int:
    """`nnpk demo`: compute, print the tables, write the report."""
    import importlib.util
    import sys

    from threadpoolctl import threadpool_limits

    if args.dataset == "mnist1d" and importlib.util.find_spec("mnist1d") is None:
        print("nnpk demo: error: --dataset mnist1d needs the mnist1d package: pip install 'nnpk[mnist1d]'",
              file=sys.stderr)
        return 2
    preset = {**FULL, "samples": DEFAULT_SAMPLES[args.dataset], **(QUICK if args.quick else {})}
    chosen = {key: default if getattr(args, key) is None else getattr(args, key) for key, default in preset.items()}
    threads = resolve_n_threads(args.threads)
    print(f"nnpk {__version__} demo: {args.dataset}, {args.activation} MLP {list(chosen['hidden'])}, "
          f"up to {chosen['networks']} networks, {threads} threads", flush=True)
    # LAPACK on one thread: on these n ~ 1000 eigendecompositions two BLAS threads gain little, and beside the
    # engine's OpenMP workers (which keep spinning after each kernel) they contend for the cores, several times
    # slower on 2 cores.
    with threadpool_limits(1, user_api="blas"):
        results = run_demo(dataset=args.dataset, n_samples=chosen["samples"], hidden=chosen["hidden"],
                           activation=args.activation, W_std=args.W_std, b_std=args.b_std,
                           networks=chosen["networks"], ntk_networks=chosen["ntk_networks"],
                           max_depth=chosen["max_depth"], criterion=args.criterion, seed=args.seed,
                           threads=threads, progress=True)
        files = write_report(results, args.out)
    print("\n".join(kernel_table(results)))
    print()
    print("\n".join(depth_table(results)))
    print(f"\n{results['timings']['total_seconds']:.1f} s; report: {os.path.abspath(args.out)} "
          f"({', '.join(os.path.basename(p) for p in files.values())})")
    return 0
