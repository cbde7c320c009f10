"""`nnpk demo architectures`: the prior kernel of random MLPs, CNNs and residual CNNs in kernel ridge.

For each data set (digits as 8x8 images, MNIST-1D as signals of length 40), architecture, width
(hidden units of the MLP, channels of the CNNs) and weight initialisation scheme, the Monte Carlo
NNGP of the logits (the readout integrated exactly) is the kernel of a ridge classifier, the ridge
chosen by GCV as in `nnpk demo`. Beside the finite widths, the infinite-width NNGP of each
architecture (`nnpk.analytic`, the limit of those kernels) in the same classifier; and, on a subset
of the first data set, the Monte Carlo CNN kernel's relative error against that limit as the number
of networks grows. Writes a Markdown table of test accuracies, a JSON of the figures and a PNG plot
into the report folder.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any, Dict, List, Optional, Union, cast

import numpy as np

from .._threads import resolve_n_threads
from .._version import __version__
from ..architectures import INITS, Conv, Dense, Flatten, Network, Residual
from ..architectures._layers import Layer
from ..kernels import analytic, monte_carlo
from ._common import (
    Dataset,
    add_datasets_argument,
    available_datasets,
    evaluate,
    load_dataset,
    positive_int,
    widths,
    write_report,
)

ARCHITECTURES = ("MLP", "CNN", "ResCNN")
# Points: all 1,797 digits; 2,000 of MNIST-1D's 5,000 as in `nnpk demo`.
FULL: Dict[str, Any] = {"samples": {"digits": None, "mnist1d": 2000}, "widths": (16, 32, 64), "networks": 8,
                        "inits": INITS, "convergence": {"points": 300, "networks": (1, 2, 4, 8, 16, 32)}}
QUICK: Dict[str, Any] = {"samples": {"digits": 300, "mnist1d": 300}, "widths": (8, 16), "networks": 2,
                         "inits": ("gaussian", "orthogonal"), "convergence": {"points": 100, "networks": (1, 2, 4)}}
HE = math.sqrt(2.0)  # relu's W_std keeping the pre-activation variance
B_STD = 0.1


def network(architecture: str, width: int, dims: int, init: str) -> Network:
    """Three hidden layers of `width` units or channels (3 or 3x3 kernels, "same" padding), relu,
    then a Dense readout to 10 logits: the MLP on the flattened points, the CNNs on the
    flattened feature maps; the residual CNN adds two blocks x + relu-conv(x) after its first conv."""
    layers: List[Union[Layer, str]]
    if architecture == "MLP":
        layers = [Flatten(), *(layer for _ in range(3) for layer in (Dense(width, W_std=HE, b_std=B_STD), "relu"))]
    else:
        conv = lambda: Conv(width, (3, 3) if dims == 2 else 3, W_std=HE, b_std=B_STD)
        if architecture == "CNN":
            layers = [layer for _ in range(3) for layer in (conv(), "relu")]
        else:
            layers = [conv(), *(Residual(("relu", conv()), scale=1.0 / math.sqrt(2)) for _ in range(2)), "relu"]
        layers.append(Flatten())
    return Network(tuple(layers) + (Dense(10, b_std=B_STD),), init=init)


def point_shape(data: Dataset) -> tuple:
    """Digits as (8, 8, 1) images, MNIST-1D as (40, 1) signals."""
    return (8, 8, 1) if data.name == "digits" else (data.x.shape[1], 1)


def study(data: Dataset, *, widths, inits, networks: int, seed: int, threads: int, progress: bool) -> List[dict]:
    """One row per (architecture, init, width): its test accuracy and the kernel's seconds."""
    shape = point_shape(data)
    x = data.x.reshape((len(data.x),) + shape).astype(np.float32)
    rows = []
    for architecture in ARCHITECTURES:
        for init in inits:
            for width in widths:
                net = network(architecture, width, len(shape) - 1, init)
                start = time.perf_counter()
                kernel = monte_carlo(x, arch=net, n_networks=networks, seed=seed, dtype="float32", n_threads=threads)
                seconds = time.perf_counter() - start
                result = evaluate(kernel, data, "gcv")
                rows.append({"architecture": architecture, "init": init, "width": width, "seconds": seconds,
                             "test_accuracy": result["test_accuracy"], "relative_ridge": result["relative_ridge"]})
                if progress:
                    print(f"  {data.name} {architecture:6s} {init:16s} width {width:4d}: accuracy "
                          f"{result['test_accuracy']:.3f} ({seconds:.1f} s)", flush=True)
    return rows


def limits(data: Dataset, *, threads: int, progress: bool) -> Dict[str, dict]:
    """Per architecture: the test accuracy of its infinite-width NNGP (the same for every init)."""
    shape = point_shape(data)
    x = data.x.reshape((len(data.x),) + shape).astype(np.float64)
    out = {}
    for architecture in ARCHITECTURES:
        start = time.perf_counter()
        kernel = cast(np.ndarray, analytic(x, arch=network(architecture, 1, len(shape) - 1, "gaussian"),
                                           n_threads=threads))
        seconds = time.perf_counter() - start
        result = evaluate(kernel, data, "gcv")
        out[architecture] = {"seconds": seconds, "test_accuracy": result["test_accuracy"],
                             "relative_ridge": result["relative_ridge"]}
        if progress:
            print(f"  {data.name} {architecture:6s} infinite width: accuracy {result['test_accuracy']:.3f} "
                  f"({seconds:.1f} s)", flush=True)
    return out


def convergence(data: Dataset, *, points: int, networks, widths, seed: int, threads: int) -> dict:
    """The Monte Carlo CNN NNGP's relative Frobenius error against its infinite-width limit on the first
    `points` points, for each width and number of networks (each estimate a prefix of the next)."""
    shape = point_shape(data)
    x = data.x[:points].reshape((min(points, len(data.x)),) + shape).astype(np.float32)
    dims = len(shape) - 1
    limit = cast(np.ndarray, analytic(x.astype(np.float64), arch=network("CNN", 1, dims, "gaussian"),
                                      n_threads=threads))
    norm = float(np.linalg.norm(limit))
    errors = {}
    for width in widths:
        arch = network("CNN", width, dims, "gaussian")
        errors[str(width)] = [float(np.linalg.norm(monte_carlo(x, arch=arch, n_networks=m, seed=seed, dtype="float32",
                                                               n_threads=threads) - limit)) / norm
                              for m in networks]
    return {"points": len(x), "networks": list(networks), "errors": errors}


def run_demo(*, datasets=("digits", "mnist1d"), samples: Dict[str, Optional[int]] = FULL["samples"],
             widths=FULL["widths"], networks: int = FULL["networks"], inits=FULL["inits"],
             convergence_settings: Dict[str, Any] = FULL["convergence"], seed: int = 0, threads: int = 1,
             progress: bool = False) -> dict:
    start = time.perf_counter()
    results: Dict[str, Any] = {
        "version": __version__,
        "settings": {"datasets": list(datasets), "widths": list(widths), "networks": networks,
                     "inits": list(inits), "seed": seed, "threads": threads, "W_std": HE, "b_std": B_STD},
        "datasets": {}}
    for name in datasets:
        data = load_dataset(name, samples.get(name), seed)
        results["datasets"][name] = {
            "n_train": len(data.train), "n_test": len(data.test), "point_shape": list(point_shape(data)),
            "chance": float(np.bincount(data.labels[data.test]).max() / len(data.test)),
            "rows": study(data, widths=widths, inits=inits, networks=networks, seed=seed, threads=threads,
                          progress=progress),
            "infinite_width": limits(data, threads=threads, progress=progress)}
        if "convergence" not in results:
            results["convergence"] = {"dataset": name, **convergence(
                data, points=convergence_settings["points"], networks=convergence_settings["networks"],
                widths=widths, seed=seed, threads=threads)}
    results["seconds"] = time.perf_counter() - start
    return results


def table(results: dict) -> List[str]:
    """Markdown: one row per (data set, architecture, init), one column per width and one for the
    infinite-width limit (the same for every init)."""
    widths = results["settings"]["widths"]
    lines = ["| data set | architecture | init | " + " | ".join(f"width {w}" for w in widths) + " | width ∞ |",
             "| --- | --- | --- | " + " | ".join("---:" for _ in widths) + " | ---: |"]
    for name, entry in results["datasets"].items():
        cells: Dict[tuple, Dict[int, float]] = {}
        for row in entry["rows"]:
            cells.setdefault((row["architecture"], row["init"]), {})[row["width"]] = row["test_accuracy"]
        for (architecture, init), by_width in cells.items():
            limit = entry["infinite_width"][architecture]["test_accuracy"]
            lines.append(f"| {name} | {architecture} | {init} | "
                         + " | ".join(f"{by_width[w]:.3f}" for w in widths) + f" | {limit:.3f} |")
    return lines


def convergence_table(results: dict) -> List[str]:
    """Markdown: the Monte Carlo CNN kernel's relative error against its limit, per width and networks."""
    study = results["convergence"]
    lines = ["| CNN width | " + " | ".join(f"{m} networks" for m in study["networks"]) + " |",
             "| ---: | " + " | ".join("---:" for _ in study["networks"]) + " |"]
    for width, errors in study["errors"].items():
        lines.append(f"| {width} | " + " | ".join(f"{e:.4f}" for e in errors) + " |")
    return lines


def markdown(results: dict, plot: str) -> str:
    s = results["settings"]
    lines = [f"# Prior kernels of random architectures (nnpk {results['version']})", "",
             f"Test accuracy of kernel ridge classification (ridge by GCV) with the Monte Carlo NNGP of "
             f"{s['networks']} random networks per kernel (readout integrated exactly, float32 forward passes). "
             f"Architectures: three relu layers of `width` units (MLP on the flattened points) or channels (3 or 3x3 "
             f"convolutions, 'same' padding; ResCNN: a conv then two residual blocks x + relu-conv(x) / sqrt 2), "
             f"then Flatten and a Dense readout; W_std = sqrt 2, b_std = {s['b_std']}. Inputs centred and scaled to "
             f"unit mean square per point. The column width ∞ is the infinite-width NNGP (`nnpk.analytic`), "
             f"the limit of every init's kernels.", ""]
    for name, entry in results["datasets"].items():
        lines.append(f"- {name}: points of shape {tuple(entry['point_shape'])}, {entry['n_train']} train / "
                     f"{entry['n_test']} test, majority class {entry['chance']:.3f}")
    study = results["convergence"]
    lines += ["", *table(results), "",
              f"Relative Frobenius error of the Monte Carlo CNN NNGP against its infinite-width limit, on the "
              f"first {study['points']} points of {study['dataset']} (an estimate of M networks is a prefix of the "
              f"next; at finite width it converges to the finite-width kernel, whose distance to the limit shrinks "
              f"as the width grows):", "", *convergence_table(results), "",
              f"![accuracy against width, and the CNN kernel's error against networks]({plot})", "",
              f"{results['seconds']:.0f} s on {s['threads']} threads.", ""]
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(results["datasets"])
    figure = Figure(figsize=(5.5 * (len(names) + 1), 4.2))
    FigureCanvasAgg(figure)
    axes = np.atleast_1d(figure.subplots(1, len(names) + 1, squeeze=False)[0])
    styles = dict(zip(INITS, ("-", "--", ":", "-.")))
    colors = dict(zip(ARCHITECTURES, ("tab:blue", "tab:orange", "tab:green")))
    widths = results["settings"]["widths"]
    for ax, name in zip(axes, names):
        rows = results["datasets"][name]["rows"]
        for architecture, limit in results["datasets"][name]["infinite_width"].items():
            ax.axhline(limit["test_accuracy"], color=colors[architecture], linewidth=1.5, alpha=0.5,
                       label=f"{architecture}, infinite width")
        for architecture in ARCHITECTURES:
            for init in results["settings"]["inits"]:
                acc = [r["test_accuracy"] for r in rows if r["architecture"] == architecture and r["init"] == init]
                ax.plot(widths, acc, marker="o", color=colors[architecture], linestyle=styles[init],
                        label=f"{architecture}, {init}")
        ax.axhline(results["datasets"][name]["chance"], color="grey", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.set_xlabel("width (units or channels)")
        ax.set_ylabel("test accuracy")
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
    axes[-2].legend(fontsize=7, ncol=1, loc="center right")
    study, ax = results["convergence"], axes[-1]
    for width, errors in study["errors"].items():
        ax.plot(study["networks"], errors, marker="o", label=f"CNN width {width}")
    first = max(e[0] for e in study["errors"].values())
    ax.plot(study["networks"], [first / math.sqrt(m) for m in study["networks"]], color="grey", linestyle=":",
            label="1 / sqrt(networks)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("networks")
    ax.set_ylabel("relative error against the infinite-width NNGP")
    ax.set_title(f"Monte Carlo CNN kernel, {study['points']} {study['dataset']} points")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _inits(text: str) -> tuple:
    inits = tuple(text.split(","))
    unknown = [i for i in inits if i not in INITS]
    if unknown or not inits:
        raise argparse.ArgumentTypeError(f"inits must be among {', '.join(INITS)}, comma separated, got {text!r}")
    return inits


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nnpk demo architectures", description=__doc__.split("\n\n")[0])
    add_datasets_argument(parser)
    parser.add_argument("--widths", type=widths, default=None, help="units or channels, comma separated (16,32,64)")
    parser.add_argument("--networks", type=positive_int, default=None, help="networks per Monte Carlo kernel (8)")
    parser.add_argument("--inits", type=_inits, default=None, help=f"init schemes, comma separated ({','.join(INITS)})")
    parser.add_argument("--samples", type=positive_int, default=None,
                        help="points per data set, a stratified subsample (default: all of digits, 2000 of MNIST-1D)")
    parser.add_argument("--seed", type=int, default=0, help="split and networks")
    parser.add_argument("--threads", type=int, default=None, help="default: all physical cores")
    parser.add_argument("--out", default=os.path.join("nnpk-report", "architectures"), help="report folder")
    parser.add_argument("--quick", action="store_true",
                        help="seconds, not minutes: 300 points, widths 8,16, 2 networks, gaussian and orthogonal")
    args = parser.parse_args(argv)
    datasets = available_datasets(parser, args.datasets)
    if not datasets:
        return 2
    preset = QUICK if args.quick else FULL
    samples = dict(preset["samples"])
    if args.samples is not None:
        samples = {name: args.samples for name in samples}
    threads = resolve_n_threads(args.threads)
    settings = dict(widths=args.widths or preset["widths"], networks=args.networks or preset["networks"],
                    inits=args.inits or preset["inits"], convergence_settings=preset["convergence"])
    print(f"nnpk {__version__} demo architectures: {', '.join(datasets)}; {', '.join(ARCHITECTURES)}; widths "
          f"{list(settings['widths'])}; {settings['networks']} networks per kernel; {threads} threads", flush=True)
    from threadpoolctl import threadpool_limits

    # LAPACK on one thread beside the engine's OpenMP workers (see `nnpk demo`).
    with threadpool_limits(1, user_api="blas"):
        results = run_demo(datasets=datasets, samples=samples, seed=args.seed, threads=threads, progress=True,
                           **settings)
        files = write_report(results, args.out, "architectures", markdown, plot)
    print("\n".join(table(results)))
    print("\n".join(["", *convergence_table(results)]))
    print(f"\n{results['seconds']:.1f} s; report: {os.path.abspath(args.out)} "
          f"({', '.join(os.path.basename(p) for p in files.values())})")
    return 0
