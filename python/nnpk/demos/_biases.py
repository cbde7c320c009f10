"""`nnpk demo biases`: random weights, learned biases, on scikit-learn's digits.

For each hidden width, one random ReLU network (standard parameterization, He
weights, biases drawn with std 1) is trained three ways: its biases only, its
readout only (random features) and both; beside them, kernel regression with
the network's biases-only tangent kernel (the kernel regime of bias training).
Then one random network learns several tasks, each with its own biases.
Writes a Markdown table, a JSON of the figures and a PNG plot.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any, Dict

import numpy as np

from .._threads import resolve_n_threads
from .._version import __version__
from ..architectures import MLP, sample_params
from ..datasets import load_digits
from ..kernels import empirical
from ..learn import RELATIVE_RIDGES, RidgePath
from ..learn._bias_learning import BiasLearner

# The `train` settings compared, in the order of the table's columns.
MODES = ("biases", "readout", "biases+readout")

TASKS = {
    "digit": lambda y: y,
    "parity": lambda y: y % 2,
    "digit > 4": lambda y: (y > 4).astype(int),
}


def _network(width: int) -> MLP:
    return MLP(hidden=[width], out=10, activation="relu", W_std=math.sqrt(2), b_std=1.0, parameterization="standard")


def _digits(train_size: int, seed: int):
    """A stratified train/test split, inputs centred and scaled by the training set's statistics."""
    from sklearn.model_selection import train_test_split

    x, y = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(x, y, train_size=train_size, random_state=seed, stratify=y)
    mean = x_train.mean(axis=0)
    # Unit mean squared value per feature, so that He weights give unit-scale pre-activations.
    scale = math.sqrt(np.mean(np.sum((x_train - mean) ** 2, axis=1)) / x.shape[1])
    return (x_train - mean) / scale, (x_test - mean) / scale, y_train, y_test


def _ntk_regression(arch: MLP, seed: int, x_train, y_train, x_test, y_test, threads: int) -> dict:
    """Kernel ridge regression on one-hot targets with the network's biases-only empirical NTK, ridge by GCV
    among multiples of the kernel's mean diagonal (as nnpk.sklearn chooses it)."""
    start = time.perf_counter()
    params = sample_params(arch, x_train.shape[1], seed, 0)
    k_train = empirical(x_train, arch=arch, params=params, get="ntk", wrt="biases", n_threads=threads)
    k_test = empirical(x_test, x_train, arch=arch, params=params, get="ntk", wrt="biases", n_threads=threads)
    path = RidgePath(k_train, np.eye(arch.out)[y_train])
    ridge, _ = path.select_ridge(float(np.trace(k_train)) / k_train.shape[0] * RELATIVE_RIDGES, "gcv")
    accuracy = float(np.mean(np.argmax(k_test @ path.coefficients(ridge), axis=1) == y_test))
    return {"test_accuracy": accuracy, "ridge": float(ridge), "seconds": time.perf_counter() - start}


def _learner(arch: MLP, train: str, args, threads: int) -> BiasLearner:
    return BiasLearner(arch, seed=args.seed, train=train, lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                       dtype=args.dtype, n_threads=threads, random_state=args.seed)


def _width_sweep(args, data, threads: int) -> list:
    x_train, x_test, y_train, y_test = data
    rows = []
    for width in args.widths:
        arch = _network(width)
        row = {"width": width}
        for train in MODES:
            start = time.perf_counter()
            learner = _learner(arch, train, args, threads).fit(x_train, y_train)
            row[train] = {"train_accuracy": learner.score(x_train, y_train),
                          "test_accuracy": learner.score(x_test, y_test),
                          "final_loss": learner.tasks_[0].loss_curve[-1],
                          "seconds": time.perf_counter() - start}
        row["ntk_biases"] = _ntk_regression(arch, args.seed, x_train, y_train, x_test, y_test, threads)
        rows.append(row)
        print(f"width {width:>5}: test accuracy " + ", ".join(
            f"{name} {row[name]['test_accuracy']:.3f}" for name in (*MODES, "ntk_biases")), flush=True)
    return rows


def _multitask(args, data, threads: int) -> dict:
    """Every task's biases on one network; the first task's predictions checked after the others are trained."""
    x_train, x_test, y_train, y_test = data
    learner = _learner(_network(args.multitask_width), "biases", args, threads)
    tasks = {}
    first_logits = None
    for name, target in TASKS.items():
        start = time.perf_counter()
        learner.fit(x_train, target(y_train), task=name)
        classes = learner.tasks_[name].classes
        assert classes is not None  # integer targets: a classification task
        tasks[name] = {"n_classes": len(classes),
                       "train_accuracy": learner.score(x_train, target(y_train), task=name),
                       "test_accuracy": learner.score(x_test, target(y_test), task=name),
                       "majority_test_accuracy": float(np.max(np.bincount(target(y_test))) / len(y_test)),
                       "seconds": time.perf_counter() - start}
        if first_logits is None:
            first, first_logits = name, learner.decision_function(x_test, task=name)
    assert first_logits is not None  # TASKS is not empty
    unchanged = bool(np.array_equal(first_logits, learner.decision_function(x_test, task=first)))
    return {"width": args.multitask_width, "tasks": tasks, "first_task_unchanged": unchanged}


def _markdown(results: dict) -> str:
    config = results["config"]
    lines = [
        "# Random weights, learned biases: digits",
        "",
        f"nnpk {results['version']}; one hidden ReLU layer, standard parameterization, He weights "
        f"(W_std = sqrt 2), biases drawn with std 1; {config['n_train']} training and {config['n_test']} test digits; "
        f"Adam, lr {config['lr']}, {config['epochs']} epochs, batch {config['batch_size']}, {config['dtype']}, "
        f"{config['threads']} threads; {results['seconds']:.0f} s in all.",
        "",
        "Test accuracy (training accuracy in brackets) against hidden width n. Trained parameters: "
        "biases n + 10, readout 10 n + 10, biases+readout 11 n + 10. The NTK column is kernel ridge regression "
        "(one-hot targets, ridge by GCV) with the same network's biases-only empirical tangent kernel; "
        "its kernel is traced over the logits, so each logit gets its own coefficients, more freedom than the "
        "n + 10 shared biases have at small widths.",
        "",
        "| width | biases only | readout only | biases + readout | biases-only NTK regression |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["widths"]:
        cells = [f"{row[t]['test_accuracy']:.3f} ({row[t]['train_accuracy']:.3f})" for t in MODES]
        lines.append(f"| {row['width']} | " + " | ".join(cells) + f" | {row['ntk_biases']['test_accuracy']:.3f} |")
    multi = results["multitask"]
    lines += [
        "",
        f"## Several tasks on one random network (width {multi['width']}), each with its own biases",
        "",
        "| task | classes | train accuracy | test accuracy | majority class (test) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, task in multi["tasks"].items():
        lines.append(f"| {name} | {task['n_classes']} | {task['train_accuracy']:.3f} | {task['test_accuracy']:.3f} "
                     f"| {task['majority_test_accuracy']:.3f} |")
    lines += ["", "The first task's test logits are bitwise unchanged after the other tasks were trained: "
              f"{'yes' if multi['first_task_unchanged'] else 'NO'}.", ""]
    return "\n".join(lines)


def _plot(results: dict, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    widths = [row["width"] for row in results["widths"]]
    labels = {"biases": "biases only", "readout": "readout only", "biases+readout": "biases + readout",
              "ntk_biases": "biases-only NTK regression"}
    for key, label in labels.items():
        left.plot(widths, [row[key]["test_accuracy"] for row in results["widths"]], marker="o",
                  linestyle="--" if key == "ntk_biases" else "-", label=label)
    left.set_xscale("log", base=2)
    left.set_xticks(widths, [str(w) for w in widths])
    left.set_xlabel("hidden width")
    left.set_ylabel("test accuracy")
    left.set_title("digits: one random ReLU layer")
    left.grid(True, alpha=0.3)
    left.legend()
    tasks = results["multitask"]["tasks"]
    names = list(tasks)
    position = np.arange(len(names))
    right.bar(position - 0.2, [tasks[n]["test_accuracy"] for n in names], 0.4, label="learned biases")
    right.bar(position + 0.2, [tasks[n]["majority_test_accuracy"] for n in names], 0.4, label="majority class")
    right.set_xticks(position, names)
    right.set_ylim(0, 1.15)
    right.set_ylabel("test accuracy")
    right.set_title(f"tasks on one network (width {results['multitask']['width']})")
    right.legend(loc="upper center", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _widths(text: str) -> list:
    widths = [int(w) for w in text.split(",")]
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive integers separated by commas, got {text!r}")
    return widths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nnpk demo biases", description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=_widths, default=_widths("64,128,256,512,1024,2048,4096,8192"),
                        help="hidden widths, comma separated")
    parser.add_argument("--multitask-width", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=96)
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=os.path.join("nnpk-report", "biases"), help="report folder")
    args = parser.parse_args(argv)
    threads = resolve_n_threads(args.threads)
    start = time.perf_counter()
    data = _digits(args.train_size, args.seed)
    print(f"nnpk {__version__}: random weights, learned biases on digits ({len(data[2])} train, {len(data[3])} test), "
          f"{threads} threads", flush=True)
    results: Dict[str, Any] = {
        "version": __version__,
        "config": {"n_train": len(data[2]), "n_test": len(data[3]), "lr": args.lr, "epochs": args.epochs,
                   "batch_size": args.batch_size, "dtype": args.dtype, "threads": threads, "seed": args.seed},
        "widths": _width_sweep(args, data, threads)}
    results["multitask"] = _multitask(args, data, threads)
    results["seconds"] = time.perf_counter() - start
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "biases.json"), "w") as f:
        json.dump(results, f, indent=1)
    markdown = _markdown(results)
    with open(os.path.join(args.out, "biases.md"), "w") as f:
        f.write(markdown)
    _plot(results, os.path.join(args.out, "biases.png"))
    print(markdown)
    print(f"report: {os.path.abspath(args.out)} (biases.md, biases.json, biases.png)")
    return 0
