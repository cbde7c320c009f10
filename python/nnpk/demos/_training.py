"""`nnpk demo training`: trained networks beside their kernels, on digits and MNIST-1D.

(a) A ReLU network and its linearisation (the network's first-order expansion around its
initial parameters, trained by the same gradient descent in function space through its
empirical NTK) on binary tasks of different difficulty and several training-set sizes:
their test accuracies side by side, and the empirical NTK's centred alignment with the task
along the network's training. (b) Deep MLPs trained with relu, relu_normalized and relu
with BatchNorm: their training-loss curves at one learning rate (`nnpk demo depth` tunes it per
variant, depth and optimiser). (c) The prior kernels at initialisation (the
Monte Carlo NNGP and NTK of the architecture) against the trained network's logit kernel
``f(x) . f(x') / C``, by CKA, for an MLP and a CNN. Writes training.md, training.json and
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
from ..learn import initial_outputs, linearized_prediction
from ..learn._network_learning import NetworkLearner
from ._common import Dataset, add_datasets_argument, available_datasets, load_dataset, write_report

# Binary tasks, from easy to hard: (classes labelled 0, classes labelled 1).
TASKS = {"0 vs 1": ((0,), (1,)), "3 vs 8": ((3,), (8,)), "even vs odd": ((0, 2, 4, 6, 8), (1, 3, 5, 7, 9))}
VARIANTS = ("relu", "relu_normalized", "relu + BatchNorm")
HE = math.sqrt(2.0)
B_STD = 0.1
FULL: Dict[str, Any] = {
    "samples": {"digits": None, "mnist1d": 2000},
    "linearized": {"sizes": (20, 60, 160), "width": 64, "steps": 500, "lr": 2.0, "max_test": 400},
    "depth": {"depths": (8, 16, 32), "width": 64, "epochs": 15, "n_train": 600, "lr": 0.001, "batch_size": 64},
    "prior": {"width": 256, "channels": 16, "epochs": 20, "lr": 0.01, "batch_size": 64, "networks": 16,
              "n_kernel": 300},
}
QUICK: Dict[str, Any] = {
    "samples": {"digits": 400, "mnist1d": 400},
    "linearized": {"sizes": (16, 32), "width": 64, "steps": 50, "lr": 2.0, "max_test": 100},
    "depth": {"depths": (8,), "width": 32, "epochs": 5, "n_train": 150, "lr": 0.001, "batch_size": 50},
    "prior": {"width": 64, "channels": 8, "epochs": 20, "lr": 0.01, "batch_size": 50, "networks": 2, "n_kernel": 60},
}


def point_shape(data: Dataset) -> tuple:
    """Digits as (8, 8, 1) images, MNIST-1D as (40, 1) signals."""
    return (8, 8, 1) if data.name == "digits" else (data.x.shape[1], 1)


# --------------------------------------------------------------------------- (a) linearised networks


def _binary_split(data: Dataset, task, size: int, max_test: int, seed: int):
    """`size` training points of the task's classes (a seeded random choice from the training half) and at
    most `max_test` test points from the test half; labels 0/1."""
    negative, positive = task
    rng = np.random.default_rng(seed)

    def pick(indices, count):
        inside = indices[np.isin(data.labels[indices], negative + positive)]
        chosen = np.sort(rng.permutation(inside)[:count])
        return data.x[chosen], np.isin(data.labels[chosen], positive).astype(np.int64)

    return pick(data.train, size) + pick(data.test, max_test)


def _linearized_row(data: Dataset, task_name: str, size: int, s: dict, seed: int, threads: int) -> dict:
    """The network trained by full-batch gradient descent on the cross-entropy, and its linearisation, trained
    by the same steps in function space with the network's per-logit empirical NTK at initialisation."""
    x_train, y_train, x_test, y_test = _binary_split(data, TASKS[task_name], size, s["max_test"], seed)
    arch = MLP(hidden=[s["width"]], out=2, activation="relu", W_std=HE, b_std=B_STD)
    record = sorted({0, s["steps"] // 10, s["steps"] // 3, s["steps"]})
    learner = NetworkLearner(arch, seed=seed, train="all", optimizer="sgd", lr=s["lr"], epochs=s["steps"],
                             batch_size=None, loss="cross_entropy", dtype="float64", n_threads=threads,
                             random_state=seed, record=record, record_points=x_train, record_targets=y_train)
    learner.fit(x_train, y_train)
    params = sample_params(arch, x_train.shape[1], seed, 0)
    theta = empirical(x_train, arch=arch, params=params, per_logit=True, n_threads=threads)
    theta_test = empirical(x_test, x_train, arch=arch, params=params, per_logit=True, n_threads=threads)
    f0_train, f0_test = (initial_outputs(x, arch, seed=seed) for x in (x_train, x_test))
    linear = linearized_prediction(theta, theta_test, f0_train, f0_test, np.eye(2)[y_train], time=s["steps"],
                                   lr=s["lr"], loss="cross_entropy")
    return {"task": task_name, "n_train": len(y_train), "n_test": len(y_test),
            "network_test_accuracy": learner.score(x_test, y_test),
            "linearized_test_accuracy": float(np.mean(linear.argmax(axis=1) == y_test)),
            "network_train_loss": learner.history_["loss"][-1],
            "agreement": float(np.mean(linear.argmax(axis=1) == learner.predict(x_test))),
            "alignment": [{"epoch": k["epoch"], "ntk": k["ntk_alignment"], "ntk_distance": k["ntk_distance"]}
                          for k in learner.kernels_history_]}


def linearized_study(data: Dataset, s: dict, seed: int, threads: int, progress: bool) -> List[dict]:
    rows = []
    for task_name in TASKS:
        for size in s["sizes"]:
            row = _linearized_row(data, task_name, size, s, seed, threads)
            rows.append(row)
            if progress:
                print(f"  {data.name} {task_name:12s} n={size:4d}: network {row['network_test_accuracy']:.3f}, "
                      f"linearised {row['linearized_test_accuracy']:.3f}, NTK alignment "
                      f"{row['alignment'][0]['ntk']:.3f} -> {row['alignment'][-1]['ntk']:.3f}", flush=True)
    return rows


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
                                            **{k: preset[k] for k in ("linearized", "depth", "prior")}},
                               "datasets": {}}
    for name in datasets:
        data = load_dataset(name, preset["samples"].get(name), seed)
        if progress:
            print(f"{name}: {len(data.train)} train / {len(data.test)} test points", flush=True)
        entry: Dict[str, Any] = {"n_train": len(data.train), "n_test": len(data.test),
                                 "point_shape": list(point_shape(data))}
        for part, study in (("linearized", linearized_study), ("depth", depth_study), ("prior", prior_study)):
            part_start = time.perf_counter()
            entry[part] = study(data, preset[part], seed, threads, progress)
            entry[f"{part}_seconds"] = time.perf_counter() - part_start
        results["datasets"][name] = entry
    results["seconds"] = time.perf_counter() - start
    return results


def tables(results: dict) -> List[str]:
    lines = []
    for name, entry in results["datasets"].items():
        lines += [f"### {name}: (a) network and linearisation", "",
                  "| task | n train | network | linearised | agree | NTK alignment (epoch: value) | NTK moved |",
                  "| --- | ---: | ---: | ---: | ---: | --- | ---: |"]
        for row in entry["linearized"]:
            path = ", ".join(f"{a['epoch']}: {a['ntk']:.3f}" for a in row["alignment"])
            lines.append(f"| {row['task']} | {row['n_train']} | {row['network_test_accuracy']:.3f} | "
                         f"{row['linearized_test_accuracy']:.3f} | {row['agreement']:.3f} | {path} | "
                         f"{row['alignment'][-1]['ntk_distance']:.3f} |")
        lines += ["", f"### {name}: (b) deep MLPs, training loss (first epoch -> last) and test accuracy", "",
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
    a, b, c = s["linearized"], s["depth"], s["prior"]
    lines = [f"# Trained networks and their kernels (nnpk {results['version']})", "",
             "Inputs centred and scaled to unit mean square per point; biases b_std = "
             f"{s['b_std']}; NTK parameterization unless said otherwise; seed {s['seed']}.", "",
             f"(a) One relu layer of {a['width']} units (W_std = sqrt 2), two logits, trained on all its parameters "
             f"by {a['steps']} full-batch gradient-descent steps (lr {a['lr']}) on the cross-entropy; its "
             "linearisation takes the same steps in function space with the network's empirical NTK at "
             "initialisation (per pair of logits). Test accuracies on at most "
             f"{a['max_test']} test points of the task; 'agree': the fraction of test points both classify alike; "
             "NTK alignment: centred kernel-target alignment of the network's empirical NTK on its training points "
             "at the recorded epochs; 'NTK moved': its relative Frobenius distance from the initial NTK at the end.",
             "",
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
                     f"{entry['n_test']} test; (a) {entry['linearized_seconds']:.0f} s, (b) "
                     f"{entry['depth_seconds']:.0f} s, (c) {entry['prior_seconds']:.0f} s")
    lines += ["", *tables(results), f"![training]({plot_file})", "",
              f"{results['seconds']:.0f} s on {s['threads']} threads.", ""]
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(results["datasets"])
    figure = Figure(figsize=(16, 3.8 * len(names)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(names), 4, squeeze=False)
    colors = dict(zip(TASKS, ("tab:blue", "tab:orange", "tab:green")))
    for row_axes, name in zip(axes, names):
        entry = results["datasets"][name]
        accuracy, alignment, losses, cka = row_axes
        labelled = set()
        for row in entry["linearized"]:
            label = None if row["task"] in labelled else row["task"]
            labelled.add(row["task"])
            accuracy.scatter(row["linearized_test_accuracy"], row["network_test_accuracy"], color=colors[row["task"]],
                             s=12 + row["n_train"] / 2, label=label)
            alignment.plot([a["epoch"] for a in row["alignment"]], [a["ntk"] for a in row["alignment"]],
                           color=colors[row["task"]], marker="o", label=label)
        accuracy.plot([0.4, 1], [0.4, 1], color="grey", linewidth=0.8)
        accuracy.set_xlabel("linearised network: test accuracy")
        accuracy.set_ylabel("network: test accuracy")
        accuracy.set_title(f"{name} (a): marker size ~ training points")
        accuracy.legend(fontsize=7)
        alignment.set_xlabel("epoch")
        alignment.set_ylabel("centred NTK-task alignment")
        alignment.set_title("(a) the NTK aligns with the task")
        alignment.legend(fontsize=7)
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
