"""`nnpk demo depth`: depth, conditioning and training of deep MLPs, on digits and MNIST-1D.

(a) The condition number of the unit-diagonal NNGP and NTK matrices of digits against depth
(``nnpk.conditioning``, infinite width) for relu, relu_normalized and the normalised erf.
(b) Learnability and trainability against depth (``nnpk.depth_study``): kernel-ridge test
accuracy and loss, and the linearised network's training loss under gradient descent's
learning-rate limit, on each data set. (c) Deep MLPs of depth 2 to 64, and CNNs (3x3
convolutions on the 8x8 digits, global average pooling, a Dense readout) at a few depths,
relu, relu_normalized and relu + BatchNorm, trained for a fixed number of steps by SGD with
momentum 0.9 and by Adam, each (architecture, variant, depth, optimiser) at its own learning
rate chosen by ``nnpk.learn.sweep`` on validation accuracy, over several seeds: does the
normalised ReLU train deep networks as well as batch normalisation? Writes depth.md,
depth.json and depth.png into the report folder.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import multiprocessing
import os
import time
from typing import Any, Dict, List, Optional

import numpy as np

from .._threads import resolve_n_threads
from .._version import __version__
from ..architectures import MLP, BatchNorm, Conv, Dense, GlobalAvgPool, Network
from ..kernels import conditioning
from ..learn import depth_study, sweep
from ..learn._divergence import DivergenceError
from ..learn._network_learning import NetworkLearner
from ._common import Dataset, add_datasets_argument, available_datasets, load_dataset, write_report
from ._training import B_STD, HE, VARIANTS, deep_network

ACTIVATIONS = ("relu", "relu_normalized", "erf, normalize=True")
OPTIMIZERS = ("sgd", "adam")
# Learning-rate grids, a factor sqrt(10) (Adam) or 10 (SGD) apart. SGD's reaches down to 1e-5: the normalised
# ReLU's backward gain per layer, W_std^2 E[phi'(g)^2] = 1 / (1 - 1/pi) = 1.47, makes deep networks' gradients
# grow as 1.47^depth, so their stable rates are orders of magnitude below the usual ones.
LRS = {"sgd": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1), "adam": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)}
MOMENTUM = 0.9
LOSS_THRESHOLD = 0.1
FULL: Dict[str, Any] = {
    "samples": {"digits": None, "mnist1d": 2000},
    "conditioning": {"n_points": 300, "depths": (1, 2, 4, 8, 16, 32, 64)},
    "study": {"n_train": 500, "n_test": 300, "depths": (1, 2, 4, 8, 16, 32, 64)},
    "training": {"depths": (2, 4, 8, 16, 32, 64), "width": 128, "n_train": 256, "n_val": 200, "batch_size": 64,
                 "epochs": 40, "seeds": (0, 1, 2)},
    "cnn": {"depths": (2, 4, 8, 16), "channels": 8},
}
QUICK: Dict[str, Any] = {
    "samples": {"digits": 500, "mnist1d": 500},
    "conditioning": {"n_points": 60, "depths": (1, 4, 16)},
    "study": {"n_train": 100, "n_test": 60, "depths": (1, 4, 16)},
    "training": {"depths": (2, 8), "width": 32, "n_train": 96, "n_val": 60, "batch_size": 48, "epochs": 6,
                 "seeds": (0, 1)},
    "cnn": {"depths": (2,), "channels": 4},
}
ARCHITECTURES = ("MLP", "CNN")


def kernel_network(activation: str, depth: int) -> MLP:
    """The MLPs of parts (a) and (b): relu with He weights, relu_normalized and the normalised erf with W_std 1;
    no biases (the setting in which the normalised activations' correlations go to 0)."""
    if activation == "relu":
        return MLP(hidden=[512] * depth, out=10, activation="relu", W_std=math.sqrt(2.0))
    if activation == "relu_normalized":
        return MLP(hidden=[512] * depth, out=10, activation="relu_normalized")
    return MLP(hidden=[512] * depth, out=10, activation="erf", normalize=True)


def _finite(value) -> Optional[float]:
    value = float(value)
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- (a) conditioning


def conditioning_study(data: Dataset, s: dict, threads: int) -> Dict[str, Any]:
    """Condition numbers and mean |off-diagonal| of the unit-diagonal kernels of the first `n_points` training
    points, per activation and kernel."""
    x = data.x[data.train[:s["n_points"]]]
    out: Dict[str, Any] = {}
    for activation in ACTIVATIONS:
        c = conditioning(x, arch=kernel_network(activation, max(s["depths"])), depths=s["depths"],
                         get=("nngp", "ntk"), n_threads=threads)
        out[activation] = {kernel: {"condition_number": [_finite(v) for v in c[kernel]["condition_number"]],
                                    "mean_abs_offdiag": [float(v) for v in c[kernel]["mean_abs_offdiag"]]}
                           for kernel in ("nngp", "ntk")}
    return out


# --------------------------------------------------------------------------- (b) learnability, trainability


def learnability_study(data: Dataset, s: dict, threads: int) -> Dict[str, Any]:
    train, test = data.train[:s["n_train"]], data.test[:s["n_test"]]
    out: Dict[str, Any] = {}
    for activation in ACTIVATIONS:
        study = depth_study(data.x[train], data.labels[train], data.x[test], data.labels[test],
                            arch=kernel_network(activation, max(s["depths"])), depths=s["depths"], n_threads=threads)
        out[activation] = {kernel: {key: [_finite(v) for v in study[kernel][key]]
                                    for key in ("condition_number", "test_accuracy", "test_loss", "train_loss_lr_max")}
                           for kernel in ("nngp", "ntk")}
    return out


# --------------------------------------------------------------------------- (c) training deep MLPs and CNNs


def deep_cnn(variant: str, depth: int, channels: int, n_classes: int) -> Network:
    """`depth` 3x3 convolutions ("same" padding, `channels` channels) on (8, 8, 1) digits: relu with He weights,
    relu_normalized (W_std 1), or Conv -> BatchNorm -> relu; then GlobalAvgPool and a Dense readout. Biases std
    0.1, standard parameterization (as deep_network)."""
    if variant == "relu_normalized":
        block = [Conv(channels, (3, 3), W_std=1.0, b_std=B_STD), "relu_normalized"]
    elif variant == "relu":
        block = [Conv(channels, (3, 3), W_std=HE, b_std=B_STD), "relu"]
    else:
        block = [Conv(channels, (3, 3), W_std=HE, b_std=B_STD), BatchNorm(), "relu"]
    return Network(tuple(block * depth) + (GlobalAvgPool(), Dense(n_classes, b_std=B_STD)),
                   parameterization="standard")


def _learner(arch: str, variant: str, depth: int, optimizer: str, s: dict, n_classes: int) -> NetworkLearner:
    network = (deep_network(variant, depth, s["width"], n_classes) if arch == "MLP"
               else deep_cnn(variant, depth, s["channels"], n_classes))
    return NetworkLearner(network, train="all", optimizer=optimizer, momentum=MOMENTUM if optimizer == "sgd" else 0.0,
                          epochs=s["epochs"], batch_size=s["batch_size"], loss="cross_entropy", dtype="float32",
                          n_threads=1)


def _work(arch: str, depth: int, s: dict) -> float:
    """Multiply-adds per point of a network's hidden layers: the order of the jobs, longest first."""
    return depth * (s["width"] ** 2 if arch == "MLP" else 64 * 9 * s["channels"] ** 2)


def _log_loss(learner: NetworkLearner, x: np.ndarray, labels: np.ndarray) -> float:
    """Cross-entropy of the trained network on all of x (batch normalisation by its running statistics)."""
    p = learner.predict_proba(x)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(p, 1e-300))))


def _steps_to(loss_curve: List[float], steps_per_epoch: int) -> Optional[int]:
    """Optimiser steps until an epoch's mean training loss first fell below LOSS_THRESHOLD (None: never)."""
    for epoch, loss in enumerate(loss_curve):
        if math.isfinite(loss) and loss < LOSS_THRESHOLD:
            return (epoch + 1) * steps_per_epoch
    return None


def training_job(job: dict) -> dict:
    """One (architecture, variant, depth, optimiser): the learning rate swept on the first seed, then the chosen
    rate on the others. Runs in a worker process, on one engine thread (a minibatch of fewer than 96 rows is one
    chunk of the engine's work, so the demo runs jobs side by side instead)."""
    start = time.perf_counter()
    data, s, arch = job["data"], job["settings"], job["arch"]
    x, labels = data["x"], data["labels"]
    if arch == "CNN":
        x = x.reshape(len(x), 8, 8, 1)
    train, val, test = data["train"], data["val"], data["test"]
    n_classes = int(labels.max()) + 1

    def learner() -> NetworkLearner:
        return _learner(arch, job["variant"], job["depth"], job["optimizer"], s, n_classes)

    seeds = list(s["seeds"])
    result = sweep(learner(), x[train], labels[train], lrs=LRS[job["optimizer"]], seeds=seeds[:1],
                   X_val=x[val], y_val=labels[val])
    grid = [{"lr": run["lr"], "diverged": run["diverged"], "val_accuracy": _finite(run["val_score"])}
            for run in result.runs]
    row: Dict[str, Any] = {"arch": arch, "variant": job["variant"], "depth": job["depth"],
                           "optimizer": job["optimizer"], "grid": grid, "lr": result.best_lr, "runs": []}
    if result.best_lr is not None:
        steps_per_epoch = math.ceil(len(train) / s["batch_size"])
        for seed in seeds:
            fitted = result.best_learner if seed == seeds[0] else None
            diverged = False
            if fitted is None:
                fitted = learner().set_params(lr=result.best_lr, seed=seed, random_state=seed)
                try:
                    fitted.fit(x[train], labels[train])
                except DivergenceError:
                    diverged = True
            curve = [float(v) for v in fitted.history_["loss"]] if not diverged else []
            row["runs"].append({"seed": seed, "diverged": diverged,
                                "train_loss": None if diverged else _finite(_log_loss(fitted, x[train], labels[train])),
                                "test_accuracy": None if diverged else fitted.score(x[test], labels[test]),
                                "steps_to_threshold": None if diverged else _steps_to(curve, steps_per_epoch),
                                "loss_curve": [_finite(v) for v in curve]})
    row["seconds"] = time.perf_counter() - start
    return row


def _summary(row: dict, key: str) -> Dict[str, Optional[float]]:
    values = [run[key] for run in row["runs"] if run[key] is not None]
    if not values:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def training_study(data: Dataset, preset: dict, seed: int, threads: int, progress: bool) -> Dict[str, List[dict]]:
    """The rows of (c) per architecture ("MLP": preset["training"]; "CNN": the same with preset["cnn"]'s depths and
    channels), every job run side by side in `threads` worker processes."""
    settings = {"MLP": preset["training"], "CNN": {**preset["training"], **preset["cnn"]}}
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(data.train)
    s = settings["MLP"]
    split = {"x": data.x, "labels": data.labels, "train": np.sort(shuffled[:s["n_train"]]),
             "val": np.sort(shuffled[s["n_train"]:s["n_train"] + s["n_val"]]), "test": data.test}
    jobs = [{"arch": a, "variant": v, "depth": d, "optimizer": o, "settings": settings[a], "data": split}
            for a in ARCHITECTURES for d in settings[a]["depths"] for o in OPTIMIZERS for v in VARIANTS]
    jobs.sort(key=lambda job: -_work(job["arch"], job["depth"], job["settings"]))
    rows: Dict[str, List[dict]] = {a: [] for a in ARCHITECTURES}
    # Spawned workers: the parent's OpenMP threads (parts a and b) do not survive a fork.
    with concurrent.futures.ProcessPoolExecutor(threads, mp_context=multiprocessing.get_context("spawn")) as pool:
        for row in pool.map(training_job, jobs):
            for key in ("train_loss", "test_accuracy", "steps_to_threshold"):
                row[key] = _summary(row, key)
            row["diverged_lrs"] = [g["lr"] for g in row["grid"] if g["diverged"]]
            rows[row["arch"]].append(row)
            if progress:
                print(f"  {data.name} {row['arch']} {row['optimizer']:4s} depth {row['depth']:3d} {row['variant']:17s}:"
                      f" lr {row['lr']}, train loss {_mean_text(row['train_loss'], '.3g')}, test accuracy "
                      f"{_mean_text(row['test_accuracy'], '.3f')} ({row['seconds']:.0f} s)", flush=True)
    for a in ARCHITECTURES:
        order = {(o, d, v): i for i, (o, d, v) in enumerate((o, d, v) for o in OPTIMIZERS
                                                            for d in sorted(settings[a]["depths"]) for v in VARIANTS)}
        rows[a].sort(key=lambda r: order[(r["optimizer"], r["depth"], r["variant"])])
    return rows


def _mean_text(summary: dict, fmt: str) -> str:
    if summary["mean"] is None:
        return "—"
    return f"{summary['mean']:{fmt}} ± {summary['std']:{fmt}}"


def _matches(normalized: dict, batchnorm: dict) -> bool:
    """The normalised ReLU matches BatchNorm: test accuracy at most 0.02 below and a training loss at most twice
    BatchNorm's (or below the threshold)."""
    a, b = normalized["test_accuracy"]["mean"], batchnorm["test_accuracy"]["mean"]
    la, lb = normalized["train_loss"]["mean"], batchnorm["train_loss"]["mean"]
    if a is None or la is None:
        return b is None
    if b is None or lb is None:
        return True
    return a >= b - 0.02 and (la <= 2 * lb or la < LOSS_THRESHOLD)


def verdicts(rows: List[dict]) -> Dict[str, Any]:
    """Per optimiser: the depths at which relu_normalized matches relu + BatchNorm (see _matches), and the
    largest depth up to which it matches at every depth."""
    out = {}
    for optimizer in OPTIMIZERS:
        by = {(r["variant"], r["depth"]): r for r in rows if r["optimizer"] == optimizer}
        depths = sorted({d for _, d in by})
        matched = [d for d in depths if _matches(by[("relu_normalized", d)], by[("relu + BatchNorm", d)])]
        up_to = None
        for d in depths:
            if d not in matched:
                break
            up_to = d
        # Where BatchNorm itself stays near chance, matching it says nothing.
        failed = [d for d in depths if (by[("relu + BatchNorm", d)]["test_accuracy"]["mean"] or 0.0) < 0.5]
        out[optimizer] = {"matching_depths": matched, "matches_up_to": up_to, "batchnorm_fails_at": failed}
    return out


# --------------------------------------------------------------------------- the report


def run_demo(*, datasets=("digits", "mnist1d"), preset: Optional[dict] = None, seed: int = 0, threads: int = 1,
             progress: bool = False) -> dict:
    preset = FULL if preset is None else preset
    start = time.perf_counter()
    results: Dict[str, Any] = {"version": __version__,
                               "settings": {"datasets": list(datasets), "seed": seed, "threads": threads,
                                            "lrs": LRS, "momentum": MOMENTUM, "loss_threshold": LOSS_THRESHOLD,
                                            **{k: preset[k] for k in ("conditioning", "study", "training", "cnn")}},
                               "datasets": {}}
    digits = load_dataset("digits", preset["samples"]["digits"], seed)
    part = time.perf_counter()
    results["conditioning"] = conditioning_study(digits, preset["conditioning"], threads)
    results["conditioning_seconds"] = time.perf_counter() - part
    if progress:
        print(f"(a) conditioning: {results['conditioning_seconds']:.0f} s", flush=True)
    for name in datasets:
        data = digits if name == "digits" else load_dataset(name, preset["samples"].get(name), seed)
        part = time.perf_counter()
        results["datasets"][name] = {"learnability": learnability_study(data, preset["study"], threads),
                                     "learnability_seconds": time.perf_counter() - part}
        if progress:
            print(f"(b) {name} learnability: {results['datasets'][name]['learnability_seconds']:.0f} s", flush=True)
    part = time.perf_counter()
    rows = training_study(digits, preset, seed, threads, progress)
    results["training"], results["training_cnn"] = rows["MLP"], rows["CNN"]
    results["training_seconds"] = time.perf_counter() - part
    results["training_work"] = {a: sum(r["seconds"] for r in rows[a]) for a in ARCHITECTURES}
    results["verdicts"] = verdicts(results["training"])
    results["verdicts_cnn"] = verdicts(results["training_cnn"])
    results["seconds"] = time.perf_counter() - start
    return results


def _number(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.3g}"


def _lr_text(row: dict) -> str:
    if row["lr"] is None:
        return "all diverged"
    grid = LRS[row["optimizer"]]
    edge = " (grid edge)" if row["lr"] in (grid[0], grid[-1]) else ""
    return f"lr {row['lr']:.0e}{edge}"


def tables(results: dict) -> List[str]:
    s = results["settings"]
    depths = s["conditioning"]["depths"]
    lines = ["### (a) condition number of the unit-diagonal kernel (digits, infinite width)", "",
             "| activation | kernel | " + " | ".join(f"L={d}" for d in depths) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in depths) + " |"]
    for activation, kernels in results["conditioning"].items():
        for kernel, row in kernels.items():
            lines.append(f"| {activation} | {kernel.upper()} | "
                         + " | ".join(_number(v) for v in row["condition_number"]) + " |")
    depths = s["study"]["depths"]
    for name, entry in results["datasets"].items():
        lines += ["", f"### (b) {name}: kernel-ridge test accuracy / linearised training loss at gradient "
                  "descent's rate limit", "",
                  "| activation | kernel | " + " | ".join(f"L={d}" for d in depths) + " |",
                  "| --- | --- | " + " | ".join("---:" for _ in depths) + " |"]
        for activation, kernels in entry["learnability"].items():
            for kernel, row in kernels.items():
                cells = [f"{_number(a)} / {_number(t)}" for a, t in zip(row["test_accuracy"], row["train_loss_lr_max"])]
                lines.append(f"| {activation} | {kernel.upper()} | " + " | ".join(cells) + " |")
    for arch, key in (("MLP", "training"), ("CNN", "training_cnn")):
        lines += training_tables(results, arch, results[key])
    lines.append("")
    return lines


def training_tables(results: dict, arch: str, rows: List[dict]) -> List[str]:
    """(c)'s tables of one architecture, one per optimiser: a row per depth, a column per variant."""
    s = results["settings"]
    t = s["training"]
    lines: List[str] = []
    for optimizer in OPTIMIZERS:
        title = f"SGD, momentum {s['momentum']}" if optimizer == "sgd" else "Adam"
        lines += ["", f"### (c) {arch}, {title}: training loss after "
                  f"{t['epochs'] * math.ceil(t['n_train'] / t['batch_size'])} steps, test accuracy, steps to loss < "
                  f"{s['loss_threshold']} (mean ± sd over seeds), chosen lr", "",
                  "| depth | " + " | ".join(VARIANTS) + " |", "| ---: | " + " | ".join("---" for _ in VARIANTS) + " |"]
        by: Dict[int, Dict[str, dict]] = {}
        for row in rows:
            if row["optimizer"] == optimizer:
                by.setdefault(row["depth"], {})[row["variant"]] = row
        for depth, cells_by in by.items():
            cells = []
            for v in VARIANTS:
                r = cells_by[v]
                steps = r["steps_to_threshold"]["mean"]
                reached = sum(run["steps_to_threshold"] is not None for run in r["runs"])
                step_text = "—" if steps is None else f"{steps:.0f} ({reached}/{len(r['runs'])})"
                cells.append(f"loss {_mean_text(r['train_loss'], '.2g')}; acc {_mean_text(r['test_accuracy'], '.3f')}; "
                             f"steps {step_text}; {_lr_text(r)}")
            lines.append(f"| {depth} | " + " | ".join(cells) + " |")
    return lines


def findings(results: dict) -> List[str]:
    """The training study's verdict in sentences, from the figures: per architecture and optimiser."""
    lines = []
    for arch, key in (("MLP", "training"), ("CNN", "training_cnn")):
        for optimizer in OPTIMIZERS:
            v = results["verdicts" if arch == "MLP" else "verdicts_cnn"][optimizer]
            by = {(r["variant"], r["depth"]): r for r in results[key] if r["optimizer"] == optimizer}
            depths = sorted({d for _, d in by})
            name = "SGD with momentum" if optimizer == "sgd" else "Adam"
            failing = [d for d in depths if d not in v["matching_depths"]]
            text = (f"- {arch}, {name}: relu_normalized matches relu + BatchNorm (test accuracy within 0.02, training "
                    f"loss at most twice or below {LOSS_THRESHOLD}) at depths {v['matching_depths'] or 'none'}")
            if failing:
                d = failing[0]
                n, b = by[("relu_normalized", d)], by[("relu + BatchNorm", d)]
                text += (f"; it falls behind at depth {d}: training loss {_mean_text(n['train_loss'], '.2g')} "
                         f"against {_mean_text(b['train_loss'], '.2g')}, test accuracy "
                         f"{_mean_text(n['test_accuracy'], '.3f')} against {_mean_text(b['test_accuracy'], '.3f')}")
            deepest = depths[-1]
            n, b, r = (by[(variant, deepest)] for variant in ("relu_normalized", "relu + BatchNorm", "relu"))
            if v["batchnorm_fails_at"]:
                text += f"; BatchNorm itself stays below 0.5 test accuracy at depths {v['batchnorm_fails_at']}"
            text += (f". At depth {deepest}: relu_normalized {_mean_text(n['test_accuracy'], '.3f')} ({_lr_text(n)}), "
                     f"BatchNorm {_mean_text(b['test_accuracy'], '.3f')} ({_lr_text(b)}), plain relu "
                     f"{_mean_text(r['test_accuracy'], '.3f')} ({_lr_text(r)}).")
            lines.append(text)
    return lines


def markdown(results: dict, plot_file: str) -> str:
    s = results["settings"]
    t = s["training"]
    steps = t["epochs"] * math.ceil(t["n_train"] / t["batch_size"])
    lines = [f"# Depth: conditioning, learnability and training (nnpk {results['version']})", "",
             "Inputs centred and scaled to x . x / d = 1; seed " f"{s['seed']}.", "",
             f"(a) nnpk.conditioning on {s['conditioning']['n_points']} digits: infinite-width kernels of MLPs "
             "without biases (relu with W_std = sqrt 2; relu_normalized and erf, normalize=True with W_std = 1), "
             "depth L = the first L hidden layers and a readout, the kernel scaled to a unit diagonal.", "",
             f"(b) nnpk.depth_study, {s['study']['n_train']} training and {s['study']['n_test']} test points, the same "
             "networks: kernel ridge (ridge 1e-3) test accuracy, and the training loss of the linearised network "
             "after gradient flow for time n with the learning rate divided by the kernel's largest eigenvalue "
             "(predicting 0 scores 0.45).", "",
             f"(c) MLPs of {t['width']} units per layer on {t['n_train']} digits (validation {t['n_val']}, test the "
             f"{'test half'}), standard parameterisation, He weights (relu_normalized: W_std 1), biases std 0.1; "
             f"relu, relu_normalized, or Dense -> BatchNorm -> relu. {steps} steps ({t['epochs']} epochs, batches of "
             f"{t['batch_size']}), cross-entropy, float32. Each (variant, depth, optimiser) takes the learning "
             f"rate of best validation accuracy from nnpk.learn.sweep on seed {t['seeds'][0]} (SGD "
             f"{', '.join(f'{v:.0e}' for v in s['lrs']['sgd'])}; Adam {', '.join(f'{v:.0e}' for v in s['lrs']['adam'])}"
             f"), then runs it on seeds {', '.join(str(v) for v in t['seeds'])}. Training loss: the cross-entropy on "
             "all training points after the budget (BatchNorm by its running statistics). Steps: until an epoch's "
             f"mean minibatch loss fell below {s['loss_threshold']} (runs that reached it, of all).", "",
             f"(c) CNNs, the same protocol on the same points as (8, 8, 1) images: depth L is L 3x3 convolutions of "
             f"{s['cnn']['channels']} channels ('same' padding, stride 1; He weights, relu_normalized W_std 1, biases "
             "std 0.1), relu, relu_normalized or Conv -> BatchNorm -> relu, then GlobalAvgPool and a Dense readout; "
             f"depths {', '.join(str(d) for d in s['cnn']['depths'])}.", ""]
    lines += ["## Findings", "", *findings(results), "", *tables(results)]
    for arch, key in (("MLP", "training"), ("CNN", "training_cnn")):
        for optimizer in OPTIMIZERS:
            diverged = [f"{r['variant']} depth {r['depth']}: {', '.join(f'{lr:.0e}' for lr in r['diverged_lrs'])}"
                        for r in results[key] if r["optimizer"] == optimizer and r["diverged_lrs"]]
            lines += [f"Diverged ({arch}, {optimizer}, seed {t['seeds'][0]}): " + ("; ".join(diverged) or "none")
                      + ".", ""]
    work = results["training_work"]
    lines += [f"![depth]({plot_file})", "",
              f"(a) {results['conditioning_seconds']:.0f} s, (b) "
              + ", ".join(f"{n} {e['learnability_seconds']:.0f} s" for n, e in results["datasets"].items())
              + f", (c) {results['training_seconds']:.0f} s ({s['threads']} trainings side by side; the MLPs' jobs "
              f"{work['MLP']:.0f} s, the CNNs' {work['CNN']:.0f} s); {results['seconds']:.0f} s in all on "
              f"{s['threads']} threads.", ""]
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(16, 12))
    FigureCanvasAgg(figure)
    axes = figure.subplots(3, 3)
    colors = dict(zip(ACTIVATIONS, ("tab:blue", "tab:orange", "tab:green")))
    styles = {"nngp": "-", "ntk": "--"}
    s = results["settings"]
    for activation, kernels in results["conditioning"].items():
        for kernel, row in kernels.items():
            axes[0, 0].plot(s["conditioning"]["depths"], np.array(row["condition_number"], dtype=float), marker="o",
                            color=colors[activation], linestyle=styles[kernel], label=f"{activation} {kernel.upper()}")
    axes[0, 0].set_yscale("log")
    axes[0, 0].set_ylabel("condition number")
    axes[0, 0].set_title("(a) conditioning (digits)")
    name = next(iter(results["datasets"]))
    for activation, kernels in results["datasets"][name]["learnability"].items():
        for kernel, row in kernels.items():
            for ax, key in ((axes[0, 1], "test_accuracy"), (axes[0, 2], "train_loss_lr_max")):
                ax.plot(s["study"]["depths"], np.array(row[key], dtype=float), marker="o", color=colors[activation],
                        linestyle=styles[kernel], label=f"{activation} {kernel.upper()}")
    axes[0, 1].set_ylabel("kernel-ridge test accuracy")
    axes[0, 1].set_title(f"(b) learnability ({name})")
    axes[0, 2].set_ylabel("linearised training loss, lr / lambda_max")
    axes[0, 2].set_title(f"(b) trainability ({name})")
    variant_colors = dict(zip(VARIANTS, ("tab:blue", "tab:orange", "tab:red")))
    for row_axes, arch, key in ((axes[1], "MLP", "training"), (axes[2], "CNN", "training_cnn")):
        for ax, optimizer in zip(row_axes[:2], OPTIMIZERS):
            for variant in VARIANTS:
                rows = [r for r in results[key] if r["optimizer"] == optimizer and r["variant"] == variant]
                loss = np.array([np.nan if r["train_loss"]["mean"] is None else r["train_loss"]["mean"] for r in rows])
                spread = np.array([0.0 if r["train_loss"]["std"] is None else r["train_loss"]["std"] for r in rows])
                ax.errorbar([r["depth"] for r in rows], loss, yerr=spread, marker="o", capsize=3,
                            color=variant_colors[variant], label=variant)
                accuracy = np.array([np.nan if r["test_accuracy"]["mean"] is None else r["test_accuracy"]["mean"]
                                     for r in rows])
                row_axes[2].plot([r["depth"] for r in rows], accuracy, marker="o", color=variant_colors[variant],
                                 linestyle="-" if optimizer == "adam" else ":", label=f"{variant}, {optimizer}")
            ax.set_yscale("log")
            ax.set_ylabel("training loss after the budget")
            ax.set_title(f"(c) {arch}, {'SGD, momentum 0.9' if optimizer == 'sgd' else 'Adam'}, tuned lr")
        row_axes[2].set_ylabel("test accuracy")
        row_axes[2].set_title(f"(c) {arch} test accuracy (Adam solid, SGD dotted)")
    for ax in axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("depth")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nnpk demo depth", description=__doc__.split("\n\n")[0])
    add_datasets_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="split, networks and minibatch order")
    parser.add_argument("--threads", type=int, default=None, help="default: all physical cores; part (c) runs this "
                        "many trainings side by side")
    parser.add_argument("--out", default=os.path.join("nnpk-report", "depth"), help="report folder")
    parser.add_argument("--quick", action="store_true", help="seconds, not minutes: few depths, points and steps")
    args = parser.parse_args(argv)
    datasets = available_datasets(parser, args.datasets)
    if not datasets:
        return 2
    threads = resolve_n_threads(args.threads)
    print(f"nnpk {__version__} demo depth: {', '.join(datasets)}; {threads} threads", flush=True)
    from threadpoolctl import threadpool_limits

    # LAPACK on one thread beside the engine's OpenMP workers (see `nnpk demo`).
    with threadpool_limits(1, user_api="blas"):
        results = run_demo(datasets=datasets, preset=QUICK if args.quick else FULL, seed=args.seed,
                           threads=threads, progress=True)
        files = write_report(results, args.out, "depth", markdown, plot)
    print("\n".join(["## Findings", *findings(results), "", *tables(results)]))
    print(f"{results['seconds']:.1f} s; report: {os.path.abspath(args.out)} "
          f"({', '.join(os.path.basename(p) for p in files.values())})")
    return 0
