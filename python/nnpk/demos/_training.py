"""`nnpk demo training`: trained networks beside their kernels, on digits and MNIST-1D.

Networks beside their linearisations are ``nnpk demo linearized`` (this demo's part (a) until
it moved there). (b) Deep MLPs trained with relu, relu_normalized and relu with BatchNorm:
their training-loss curves at one learning rate (`nnpk demo depth` tunes it per variant, depth
and optimiser). (c) The prior kernels at initialisation (the Monte Carlo NNGP and
NTK of the architecture) against the trained network's logit kernel ``f(x) . f(x') / C``, by
CKA, for an MLP and a CNN. Writes training.md, training.json and
training.png into the report folder.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any, Dict, List, Optional

import numpy as np

from .._threads import resolve_n_threads
from .._version import __version__
from ..architectures import MLP, BatchNorm, Conv, Dense, Flatten, Network, sample_params
from ..diagnostics import kernel_alignment, kernel_target_alignment
from ..kernels import empirical, monte_carlo
from ..learn._network_learning import NetworkLearner
from ._common import Dataset, add_datasets_argument, available_datasets, load_dataset, write_report

VARIANTS = ("relu", "relu_normalized", "relu + BatchNorm")
HE = math.sqrt(2.0)
B_STD = 0.1
FULL: Dict[str, Any] = {
    "samples": {"digits": None, "mnist1d": 2000},
    "depth": {"depths": (8, 16, 32), "width": 64, "epochs": 15, "n_train": 600, "lr": 0.001, "batch_size": 64},
    "prior": {"width": 256, "channels": 16, "epochs": 20, "lr": 0.01, "batch_size": 64, "networks": 16,
              "n_kernel": 300},
}
QUICK: Dict[str, Any] = {
    "samples": {"digits": 400, "mnist1d": 400},
    "depth": {"depths": (8,), "width": 32, "epochs": 5, "n_train": 150, "lr": 0.001, "batch_size": 50},
    "prior": {"width": 64, "channels": 8, "epochs": 20, "lr": 0.01, "batch_size": 50, "networks": 2, "n_kernel": 60},
}


def point_shape(data: Dataset) -> tuple:
    """Digits as (8, 8, 1) images, MNIST-1D as (40, 1) signals."""
    return (8, 8, 1) if data.name == "digits" else (data.x.shape[1], 1)


# --------------------------------------------------------------------------- (b) depth


def deep_network(variant: str, depth: int, width: int, n_classes: int) -> Network:
    """`depth` hidden Dense layers of `width` units: relu with He weights, relu_normalized (unit second moment,
    W_std 1), or Dense -> BatchNorm -> relu; then a Dense readout. Standard parameterization (the weights as
    they are, as in PyTorch), under which Adam's steps are the same for every layer width."""
    if variant == "relu_normalized":
        return MLP(hidden=[width] * depth, out=n_classes, activation="relu_normalized", W_std=1.0, b_std=B_STD,
                   parameterization="standard")
    if variant == "relu":
        return MLP(hidden=[width] * depth, out=n_classes, activation="relu", W_std=HE, b_std=B_STD,
                   parameterization="standard")
    block = [Dense(width, W_std=HE, b_std=B_STD), BatchNorm(), "relu"]
    return Network(tuple(block * depth) + (Dense(n_classes, b_std=B_STD),), parameterization="standard")


def depth_study(data: Dataset, s: dict, seed: int, threads: int, progress: bool) -> List[dict]:
    train = data.train[:s["n_train"]]
    rows = []
    for depth in s["depths"]:
        for variant in VARIANTS:
            start = time.perf_counter()
            learner = NetworkLearner(deep_network(variant, depth, s["width"], data.n_classes), seed=seed, train="all",
                                     optimizer="adam", lr=s["lr"], epochs=s["epochs"],
                                     batch_size=s["batch_size"], loss="cross_entropy", dtype="float32",
                                     n_threads=threads, random_state=seed)
            learner.fit(data.x[train], data.labels[train])
            # A diverged loss (inf or nan) is stored as null: JSON has neither.
            loss = [float(v) if math.isfinite(v) else None for v in learner.history_["loss"]]
            rows.append({"variant": variant, "depth": depth, "loss": loss,
                         "train_accuracy": learner.score(data.x[train], data.labels[train]),
                         "test_accuracy": learner.score(data.x[data.test], data.labels[data.test]),
                         "seconds": time.perf_counter() - start})
            if progress:
                print(f"  {data.name} depth {depth:3d} {variant:17s}: loss {_loss_text(loss)}", flush=True)
    return rows


def _loss_text(loss: list) -> str:
    return " -> ".join("diverged" if v is None else f"{v:.3f}" for v in (loss[0], loss[-1]))


# --------------------------------------------------------------------------- (c) prior kernels


def prior_network(architecture: str, s: dict, shape: tuple, n_classes: int) -> Network:
    """The MLP: two relu layers on the flattened points; the CNN: two relu convolutions (3 or 3x3, "same"),
    Flatten; both end in a Dense readout."""
    if architecture == "MLP":
        hidden = [Dense(s["width"], W_std=HE, b_std=B_STD), "relu"] * 2
        return Network((Flatten(), *hidden, Dense(n_classes, b_std=B_STD)))
    kernel = (3, 3) if len(shape) == 3 else 3
    convs = [Conv(s["channels"], kernel, W_std=HE, b_std=B_STD), "relu"] * 2
    return Network((*convs, Flatten(), Dense(n_classes, b_std=B_STD)))


def prior_study(data: Dataset, s: dict, seed: int, threads: int, progress: bool) -> List[dict]:
    shape = point_shape(data)
    x = data.x.reshape((len(data.x),) + shape)
    points = data.test[:s["n_kernel"]]
    labels = np.eye(data.n_classes)[data.labels[points]]
    rows = []
    for architecture in ("MLP", "CNN"):
        arch = prior_network(architecture, s, shape, data.n_classes)
        start = time.perf_counter()
        learner = NetworkLearner(arch, seed=seed, train="all", optimizer="adam", lr=s["lr"], epochs=s["epochs"],
                                 batch_size=s["batch_size"], loss="cross_entropy", dtype="float32", n_threads=threads,
                                 random_state=seed)
        learner.fit(x[data.train], data.labels[data.train])
        trained = empirical(x[points], arch=arch, params=learner.params_, get="nngp", n_threads=threads)
        initial = empirical(x[points], arch=arch, params=sample_params(arch, shape, seed, 0), get="nngp",
                            n_threads=threads)
        prior = monte_carlo(x[points], arch=arch, n_networks=s["networks"], seed=seed + 1, get=("nngp", "ntk"),
                            n_threads=threads)
        cka = {"prior_nngp": kernel_alignment(prior["nngp"], trained),
               "prior_ntk": kernel_alignment(prior["ntk"], trained),
               "initial_network": kernel_alignment(initial, trained)}
        row = {"architecture": architecture,
               "test_accuracy": learner.score(x[data.test], data.labels[data.test]), "cka": cka,
               "label_alignment": {"prior_nngp": kernel_target_alignment(prior["nngp"], labels, centered=True),
                                   "prior_ntk": kernel_target_alignment(prior["ntk"], labels, centered=True),
                                   "trained": kernel_target_alignment(trained, labels, centered=True)},
               "seconds": time.perf_counter() - start}
        rows.append(row)
        if progress:
            print(f"  {data.name} {architecture}: test accuracy {row['test_accuracy']:.3f}, CKA(prior NNGP, trained) "
                  f"{cka['prior_nngp']:.3f}", flush=True)
    return rows


# --------------------------------------------------------------------------- the report


def run_demo(*, datasets=("digits", "mnist1d"), preset: Optional[dict] = None, seed: int = 0, threads: int = 1,
             progress: bool = False) -> dict:
    preset = FULL if preset is None else preset
    start = time.perf_counter()
    results: Dict[str, Any] = {"version": __version__,
                               "settings": {"datasets": list(datasets), "seed": seed, "threads": threads,
                                            "W_std": HE, "b_std": B_STD,
                                            **{k: preset[k] for k in ("depth", "prior")}},
                               "datasets": {}}
    for name in datasets:
        data = load_dataset(name, preset["samples"].get(name), seed)
        if progress:
            print(f"{name}: {len(data.train)} train / {len(data.test)} test points", flush=True)
        entry: Dict[str, Any] = {"n_train": len(data.train), "n_test": len(data.test),
                                 "point_shape": list(point_shape(data))}
        for part, study in (("depth", depth_study), ("prior", prior_study)):
            part_start = time.perf_counter()
            entry[part] = study(data, preset[part], seed, threads, progress)
            entry[f"{part}_seconds"] = time.perf_counter() - part_start
        results["datasets"][name] = entry
    results["seconds"] = time.perf_counter() - start
    return results


def tables(results: dict) -> List[str]:
    lines = []
    for name, entry in results["datasets"].items():
        lines += [f"### {name}: (b) deep MLPs, training loss (first epoch -> last) and test accuracy", "",
                  "| depth | " + " | ".join(VARIANTS) + " |", "| ---: | " + " | ".join("---" for _ in VARIANTS) + " |"]
        by_depth: Dict[int, Dict[str, dict]] = {}
        for row in entry["depth"]:
            by_depth.setdefault(row["depth"], {})[row["variant"]] = row
        for depth, rows in by_depth.items():
            cells = [f"{_loss_text(rows[v]['loss'])} ({rows[v]['test_accuracy']:.3f})" for v in VARIANTS]
            lines.append(f"| {depth} | " + " | ".join(cells) + " |")
        lines += ["", f"### {name}: (c) prior kernels against the trained network's logit kernel", "",
                  "| architecture | test accuracy | CKA prior NNGP | CKA prior NTK | CKA initial network | "
                  "label alignment: prior NNGP | prior NTK | trained |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row in entry["prior"]:
            cka, label = row["cka"], row["label_alignment"]
            lines.append(f"| {row['architecture']} | {row['test_accuracy']:.3f} | {cka['prior_nngp']:.3f} | "
                         f"{cka['prior_ntk']:.3f} | {cka['initial_network']:.3f} | {label['prior_nngp']:.3f} | "
                         f"{label['prior_ntk']:.3f} | {label['trained']:.3f} |")
        lines.append("")
    return lines


def markdown(results: dict, plot_file: str) -> str:
    s = results["settings"]
    b, c = s["depth"], s["prior"]
    lines = [f"# Trained networks and their kernels (nnpk {results['version']})", "",
             "Inputs centred and scaled to unit mean square per point; biases b_std = "
             f"{s['b_std']}; NTK parameterization unless said otherwise; seed {s['seed']}.", "",
             "(a) Networks beside their linearisations: `nnpk demo linearized`.", "",
             f"(b) {b['width']} units per layer, standard parameterization, the first {b['n_train']} training "
             f"points, Adam (lr {b['lr']}, batches of {b['batch_size']}) for {b['epochs']} epochs; relu with W_std = "
             "sqrt 2, relu_normalized with W_std = 1, or Dense -> BatchNorm -> relu. Mean training loss of the "
             "first and the last epoch (test accuracy in brackets). One learning rate for all: `nnpk demo depth` "
             "compares them at tuned rates.", "",
             f"(c) MLP: two relu layers of {c['width']} units; CNN: two relu convolutions of {c['channels']} "
             f"channels and a Flatten; Adam (lr {c['lr']}, batches of {c['batch_size']}) for "
             f"{c['epochs']} epochs on the training half. Kernels on {c['n_kernel']} test points: the trained "
             "network's logit kernel f(x) . f(x') / C against the architecture's prior NNGP and NTK (Monte Carlo, "
             f"{c['networks']} networks) and against the logit kernel of the same network at initialisation, by "
             "CKA (centred kernel alignment); the label alignment is each kernel's centred alignment with the "
             "one-hot classes.", ""]
    for name, entry in results["datasets"].items():
        lines.append(f"- {name}: points of shape {tuple(entry['point_shape'])}, {entry['n_train']} train / "
                     f"{entry['n_test']} test; (b) "
                     f"{entry['depth_seconds']:.0f} s, (c) {entry['prior_seconds']:.0f} s")
    lines += ["", *tables(results), f"![training]({plot_file})", "",
              f"{results['seconds']:.0f} s on {s['threads']} threads.", ""]
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(results["datasets"])
    figure = Figure(figsize=(10, 3.8 * len(names)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(names), 2, squeeze=False)
    for row_axes, name in zip(axes, names):
        entry = results["datasets"][name]
        losses, cka = row_axes
        styles = dict(zip(VARIANTS, ("-", "--", ":")))
        depths = sorted({row["depth"] for row in entry["depth"]})
        shades = dict(zip(depths, ("tab:blue", "tab:orange", "tab:red", "tab:purple")))
        for row in entry["depth"]:
            losses.plot(range(1, len(row["loss"]) + 1), np.array(row["loss"], dtype=float),
                        linestyle=styles[row["variant"]], color=shades[row["depth"]],
                        label=f"{row['variant']}, depth {row['depth']}")
        losses.set_yscale("log")
        losses.set_xlabel("epoch")
        losses.set_ylabel("training loss")
        losses.set_title("(b) deep MLPs")
        losses.legend(fontsize=6)
        keys = ("prior_nngp", "prior_ntk", "initial_network")
        position = np.arange(len(entry["prior"]))
        for i, key in enumerate(keys):
            cka.bar(position + (i - 1) * 0.25, [row["cka"][key] for row in entry["prior"]], 0.25,
                    label=key.replace("_", " "))
        cka.set_xticks(position, [row["architecture"] for row in entry["prior"]])
        cka.set_ylim(0, 1.1)
        cka.set_ylabel("CKA with the trained logit kernel")
        cka.set_title("(c) prior kernels")
        cka.legend(fontsize=7)
        for ax in row_axes:
            ax.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nnpk demo training", description=__doc__.split("\n\n")[0])
    add_datasets_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="split, networks and minibatch order")
    parser.add_argument("--threads", type=int, default=None, help="default: all physical cores")
    parser.add_argument("--out", default=os.path.join("nnpk-report", "training"), help="report folder")
    parser.add_argument("--quick", action="store_true", help="seconds, not minutes: small networks, few points "
                        "and epochs")
    args = parser.parse_args(argv)
    datasets = available_datasets(parser, args.datasets)
    if not datasets:
        return 2
    threads = resolve_n_threads(args.threads)
    print(f"nnpk {__version__} demo training: {', '.join(datasets)}; {threads} threads", flush=True)
    from threadpoolctl import threadpool_limits

    # LAPACK on one thread beside the engine's OpenMP workers (see `nnpk demo`).
    with threadpool_limits(1, user_api="blas"):
        results = run_demo(datasets=datasets, preset=QUICK if args.quick else FULL, seed=args.seed,
                           threads=threads, progress=True)
        files = write_report(results, args.out, "training", markdown, plot)
    print("\n".join(tables(results)))
    print(f"{results['seconds']:.1f} s; report: {os.path.abspath(args.out)} "
          f"({', '.join(os.path.basename(p) for p in files.values())})")
    return 0
