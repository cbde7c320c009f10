"""`nnpk demo biases`: random weights, learned biases or masks, on digits and MNIST-1D.

(a) Accuracy against the number of trained parameters: for each hidden width, one random
ReLU network (standard parameterization, He weights, biases drawn with std 1) trained on
its biases, its unit masks, its readout, or biases and readout; beside them a narrower
network trained fully with about as many trained parameters as the biases, and kernel
regression with the biases-only tangent kernel. Every learning rate is chosen by
``nnpk.learn.sweep`` on validation accuracy. (b) One random network serving several tasks
from both data sets, each with its own biases or its own masks: accuracy, the units each
leaves active, the units' task-variance clusters and how the learned biases relate to task
variance. Writes biases.md, biases.json and biases.png into the report folder.
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
from ..architectures import MLP, sample_params
from ..kernels import empirical
from ..learn import RELATIVE_RIDGES, RidgePath, sweep, task_variance, unit_clusters
from ..learn._bias_learning import BiasLearner
from ..learn._learning_rates import DEFAULT_LEARNING_RATES
from ..learn._network_learning import NetworkLearner
from ._common import Dataset, add_datasets_argument, available_datasets, load_dataset, write_report

# The trained parameters compared in (a), in the order of the table's columns; "full" is a narrower network
# trained on every parameter.
MODES = ("biases", "masks", "readout", "biases+readout", "full")
# Learning rates swept: these multiples of the default (nnpk.learn.DEFAULT_LEARNING_RATES).
LR_FACTORS = (10 ** -0.5, 1.0, 10 ** 0.5)
# Full training of a few units needs larger steps than Adam's default 1e-3 to finish in the same epochs.
FULL_LRS = (1e-3, 3e-3, 1e-2, 3e-2)
# (b)'s tasks: name -> (data set, labels -> targets).
TASKS = {
    "digit": ("digits", lambda y: y),
    "digit parity": ("digits", lambda y: y % 2),
    "digit > 4": ("digits", lambda y: (y > 4).astype(int)),
    "digit mod 3": ("digits", lambda y: y % 3),
    "mnist1d class": ("mnist1d", lambda y: y),
    "mnist1d parity": ("mnist1d", lambda y: y % 2),
    "mnist1d > 4": ("mnist1d", lambda y: (y > 4).astype(int)),
    "mnist1d mod 3": ("mnist1d", lambda y: y % 3),
}
# (b)'s shared input width: digits' 64 pixels; MNIST-1D's 40 values padded with zeros.
SHARED_FEATURES = 64
FULL: Dict[str, Any] = {
    "samples": {"digits": None, "mnist1d": 2000},
    "widths": (64, 256, 1024, 4096, 16384), "ntk_max_width": 4096, "epochs": 30, "batch_size": 96,
    "validation": 0.2, "multitask_width": 32000, "multitask_epochs": 20,
}
QUICK: Dict[str, Any] = {
    "samples": {"digits": 400, "mnist1d": 400},
    "widths": (32, 128), "ntk_max_width": 128, "epochs": 8, "batch_size": 96,
    "validation": 0.2, "multitask_width": 512, "multitask_epochs": 8,
}


def network(width: int, n_classes: int = 10) -> MLP:
    """One hidden ReLU layer, He weights, biases drawn with std 1, standard parameterization."""
    return MLP(hidden=[width], out=n_classes, activation="relu", W_std=math.sqrt(2.0), b_std=1.0,
               parameterization="standard")


def trained_parameters(mode: str, width: int, n_features: int, n_classes: int = 10) -> int:
    """Parameters a mode trains on one hidden layer of `width` units."""
    return {"biases": width + n_classes, "masks": width, "readout": (width + 1) * n_classes,
            "biases+readout": width + (width + 1) * n_classes,
            "full": width * (n_features + 1) + (width + 1) * n_classes}[mode]


def full_width(width: int, n_features: int, n_classes: int = 10) -> int:
    """The hidden width of the fully trained network with about as many trained parameters as the biases of a
    network `width` wide (at least one unit)."""
    return max(1, round(width / (n_features + 1 + n_classes)))


def _split(data: Dataset, fraction: float, seed: int):
    """The training half split into fitting and validation rows (for the learning-rate sweeps)."""
    rows = np.random.default_rng(seed).permutation(data.train)
    n_val = max(2, int(fraction * len(rows)))
    return np.sort(rows[n_val:]), np.sort(rows[:n_val])


def _ntk_regression(arch: MLP, seed: int, x_train, y_train, x_test, y_test, threads: int) -> float:
    """Test accuracy of kernel ridge regression on one-hot targets with the network's biases-only empirical NTK,
    the ridge by GCV among multiples of the kernel's mean diagonal (as nnpk.sklearn chooses it)."""
    params = sample_params(arch, x_train.shape[1], seed, 0)
    k_train = empirical(x_train, arch=arch, params=params, get="ntk", wrt="biases", n_threads=threads)
    k_test = empirical(x_test, x_train, arch=arch, params=params, get="ntk", wrt="biases", n_threads=threads)
    path = RidgePath(k_train, np.eye(arch.out)[y_train])
    ridge, _ = path.select_ridge(float(np.trace(k_train)) / k_train.shape[0] * RELATIVE_RIDGES, "gcv")
    return float(np.mean(np.argmax(k_test @ path.coefficients(ridge), axis=1) == y_test))


def _learner(mode: str, arch: MLP, s: dict, seed: int, threads: int, epochs: Optional[int] = None):
    common = dict(seed=seed, epochs=s["epochs"] if epochs is None else epochs, batch_size=s["batch_size"],
                  dtype="float32", n_threads=threads, random_state=seed)
    if mode == "full":
        return NetworkLearner(arch, train="all", loss="cross_entropy", **common)
    return BiasLearner(arch, train=mode, **common)


def _lrs(mode: str) -> tuple:
    if mode == "full":
        return FULL_LRS
    default = float(DEFAULT_LEARNING_RATES["adam"][mode])  # Adam's defaults are numbers
    return tuple(float(f"{default * f:.2g}") for f in LR_FACTORS)


# --------------------------------------------------------------------------- (a) accuracy against trained parameters


def sweep_job(data: Dataset, width: int, mode: str, s: dict, seed: int) -> dict:
    """One (data set, width, mode) of (a): the learning-rate sweep on the fitting rows, the best run's scores."""
    start = time.perf_counter()
    fit, val = _split(data, s["validation"], seed)
    x, y = data.x, data.labels
    d, c = x.shape[1], data.n_classes
    units = full_width(width, d, c) if mode == "full" else width
    result = sweep(_learner(mode, network(units, c), s, seed, 1), x[fit], y[fit], lrs=_lrs(mode), seeds=(seed,),
                   X_val=x[val], y_val=y[val])
    best = result.best_learner
    return {"trained_parameters": trained_parameters(mode, units, d, c), "lr": result.best_lr,
            "val_accuracy": result.best_score,
            "test_accuracy": None if best is None else best.score(x[data.test], y[data.test]),
            "train_accuracy": None if best is None else best.score(x[fit], y[fit]),
            "seconds": time.perf_counter() - start}


def ntk_job(data: Dataset, width: int, seed: int) -> dict:
    start = time.perf_counter()
    accuracy = _ntk_regression(network(width, data.n_classes), seed, data.x[data.train], data.labels[data.train],
                               data.x[data.test], data.labels[data.test], 1)
    return {"accuracy": accuracy, "seconds": time.perf_counter() - start}


def width_rows(data: Dataset, s: dict, done: Dict[tuple, dict]) -> List[dict]:
    """(a)'s table rows of one data set from its finished jobs."""
    d, c = data.x.shape[1], data.n_classes
    rows = []
    for width in s["widths"]:
        row: Dict[str, Any] = {"width": width, "full_width": full_width(width, d, c)}
        for mode in MODES:
            row[mode] = done[("sweep", data.name, width, mode)]
        ntk = done.get(("ntk", data.name, width))
        row["ntk_biases"] = None if ntk is None else ntk["accuracy"]
        row["ntk_seconds"] = None if ntk is None else ntk["seconds"]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- (b) several tasks on one network


def shared_inputs(data: Dataset) -> np.ndarray:
    """The data set's points as SHARED_FEATURES values: zeros appended, then scaled back to x . x / d = 1."""
    d = data.x.shape[1]
    padded = np.zeros((len(data.x), SHARED_FEATURES))
    padded[:, :d] = data.x * math.sqrt(SHARED_FEATURES / d)
    return padded


def _hidden(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The hidden layer's ReLU outputs under the standard parameterization."""
    return np.maximum(x @ W + b, 0.0)


def _hidden_biases(fit) -> np.ndarray:
    """A task's learned biases of the hidden layer."""
    b = fit.biases[0]
    assert b is not None  # the network has biases (b_std 1)
    return b


def _spearman(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def _clusters(variance: np.ndarray, names: List[str], seed: int) -> dict:
    """k-means clusters (one per task) of the units' task-variance profiles: each cluster's size, the task its
    profile leans on most and that task's share; and the mean largest share of a unit's profile (1 / tasks for
    a unit that varies alike on every task, 1 for a unit that varies on one task only)."""
    from sklearn.metrics import silhouette_score

    labels = unit_clusters(variance, len(names), seed=seed)
    active = labels >= 0
    profiles = variance[active] / variance[active].sum(axis=1, keepdims=True)
    clusters = []
    for k in range(len(names)):
        members = profiles[labels[active] == k]
        if len(members):
            mean = members.mean(axis=0)
            clusters.append({"size": int(len(members)), "task": names[int(np.argmax(mean))],
                             "share": float(mean.max())})
    sample = np.random.default_rng(seed).permutation(int(active.sum()))[:2000]
    silhouette = (float(silhouette_score(profiles[sample], labels[active][sample]))
                  if len(set(labels[active][sample])) > 1 else None)
    return {"clusters": sorted(clusters, key=lambda c: -c["size"]), "silhouette": silhouette,
            "mean_largest_share": float(profiles.max(axis=1).mean()), "units_varying": int(active.sum())}


def _tasks(datasets: Dict[str, Dataset]) -> Dict[str, tuple]:
    return {name: spec for name, spec in TASKS.items() if spec[0] in datasets}


def multitask_job(datasets: Dict[str, Dataset], mode: str, s: dict, seed: int) -> dict:
    """(b) for one kind of parameters: every task on one network of `multitask_width` units, each with its own
    biases or its own masks, trained one after the other on one learner; per task its scores and the units it
    leaves active; the units' task variance; the learned biases or masks; whether the first task's test logits
    are bitwise those it had before the other tasks were trained."""
    start = time.perf_counter()
    tasks = _tasks(datasets)
    inputs = {name: shared_inputs(data) for name, data in datasets.items()}
    width = s["multitask_width"]
    arch = network(width)
    W0, drawn = sample_params(arch, SHARED_FEATURES, seed, 0)[0]
    assert drawn is not None  # the network has biases (b_std 1)
    b0 = drawn
    learner = _learner(mode, arch, s, seed, 1, s["multitask_epochs"])
    entries: Dict[str, Any] = {}
    first_logits = None
    for name, (source, target) in tasks.items():
        data, x = datasets[source], inputs[source]
        y_train, y_test = target(data.labels[data.train]), target(data.labels[data.test])
        fit_start = time.perf_counter()
        learner.fit(x[data.train], y_train, task=name)
        fit = learner.tasks_[name]
        b = _hidden_biases(fit) if mode == "biases" else b0
        on = fit.masks[0] > 0 if mode == "masks" else np.ones(width, dtype=bool)
        fires = (_hidden(x[data.train], W0, b) > 0) & on
        if first_logits is None:
            first_logits = learner.decision_function(x[data.test], task=name)
        entries[name] = {"test_accuracy": learner.score(x[data.test], y_test, task=name),
                         "train_accuracy": learner.score(x[data.train], y_train, task=name),
                         "lr": fit.lr, "units_on": int(on.sum()), "units_active": int(fires.any(axis=0).sum()),
                         "mean_firing_fraction": float(fires.mean()), "seconds": time.perf_counter() - fit_start}
    names = list(tasks)
    task_inputs = [inputs[tasks[n][0]][datasets[tasks[n][0]].train] for n in names]
    variance = task_variance(learner, None, tasks=names, inputs=task_inputs)
    learned = None
    if mode == "masks":
        # Masked units contribute nothing to their task's logits: their variance there counts as 0.
        variance = variance * np.stack([learner.tasks_[n].masks[0] > 0 for n in names], 1)
    else:
        learned = np.stack([_hidden_biases(learner.tasks_[n]) for n in names], axis=1)
    first = names[0]
    first_x = inputs[tasks[first][0]][datasets[tasks[first][0]].test]
    assert first_logits is not None  # at least one task
    unchanged = bool(np.array_equal(first_logits, learner.decision_function(first_x, task=first)))
    return {"tasks": entries, "variance": variance, "biases": learned, "first_task_unchanged": unchanged,
            "seconds": time.perf_counter() - start}


def multitask_summary(datasets: Dict[str, Dataset], parts: Dict[str, dict], s: dict, seed: int) -> dict:
    """(b)'s report from the two multitask jobs: the tasks' entries, the task-variance clusters (biases, masks and
    the random network with its drawn biases) and the learned biases against task variance."""
    tasks = _tasks(datasets)
    names = list(tasks)
    width = s["multitask_width"]
    out: Dict[str, Any] = {"width": width, "tasks": {}}
    for name, (source, target) in tasks.items():
        data = datasets[source]
        y_train, y_test = target(data.labels[data.train]), target(data.labels[data.test])
        out["tasks"][name] = {"data": source, "n_classes": int(y_train.max()) + 1,
                              "majority_test_accuracy": float(np.bincount(y_test).max() / len(y_test)),
                              **{mode: parts[mode]["tasks"][name] for mode in ("biases", "masks")}}
    W0, drawn = sample_params(network(width), SHARED_FEATURES, seed, 0)[0]
    assert drawn is not None
    b0 = drawn
    inputs = {name: shared_inputs(data) for name, data in datasets.items()}
    task_inputs = [inputs[tasks[n][0]][datasets[tasks[n][0]].train] for n in names]
    variance = {mode: parts[mode]["variance"] for mode in ("biases", "masks")}
    variance["initial"] = np.stack([_hidden(x, W0, b0).var(axis=0) for x in task_inputs], axis=1)
    from threadpoolctl import threadpool_limits

    # k-means on one thread: with two, on a busy machine, its OpenMP threads wait on each other ten times longer
    # than they work.
    with threadpool_limits(1):
        out["clusters"] = {mode: _clusters(v, names, seed) for mode, v in variance.items()}
    correlations = {}
    for k, name in enumerate(names):
        b = parts["biases"]["biases"][:, k]
        correlations[name] = {"bias_vs_variance": _spearman(b, variance["biases"][:, k]),
                              "bias_change_vs_variance": _spearman(b - b0, variance["biases"][:, k]),
                              "bias_change_vs_initial_variance": _spearman(b - b0, variance["initial"][:, k]),
                              "initial_bias_vs_initial_variance": _spearman(b0, variance["initial"][:, k]),
                              "mean_abs_bias_change": float(np.mean(np.abs(b - b0)))}
    out["correlations"] = correlations
    out["first_task_unchanged"] = all(parts[mode]["first_task_unchanged"] for mode in ("biases", "masks"))
    return out


def run_job(job: tuple) -> tuple:
    """One job of the demo, in a worker process, on one engine thread and one BLAS thread: a minibatch of 96 rows
    is one chunk of the engine's work, so more threads only wait on each other (on a busy machine, many times
    longer than the work); the demo runs jobs side by side instead."""
    from threadpoolctl import threadpool_limits

    kind, args = job[0], job[1:]
    cpu = time.process_time()
    key: tuple
    with threadpool_limits(1, user_api="blas"):
        if kind == "sweep":
            data, width, mode, s, seed = args
            key, value = ("sweep", data.name, width, mode), sweep_job(data, width, mode, s, seed)
        elif kind == "ntk":
            data, width, seed = args
            key, value = ("ntk", data.name, width), ntk_job(data, width, seed)
        else:
            datasets, mode, s, seed = args
            key, value = ("multitask", mode), multitask_job(datasets, mode, s, seed)
    value["cpu_seconds"] = time.process_time() - cpu
    return key, value


# --------------------------------------------------------------------------- the report


def run_demo(*, datasets=("digits", "mnist1d"), preset: Optional[dict] = None, seed: int = 0, threads: int = 1,
             progress: bool = False) -> dict:
    preset = FULL if preset is None else preset
    start = time.perf_counter()
    results: Dict[str, Any] = {"version": __version__,
                               "settings": {"datasets": list(datasets), "seed": seed, "threads": threads,
                                            "lr_factors": LR_FACTORS, "full_lrs": FULL_LRS,
                                            **{k: v for k, v in preset.items()}},
                               "datasets": {}}
    loaded = {name: load_dataset(name, preset["samples"].get(name), seed) for name in datasets}
    # The longest jobs first: the two multitask fits, then the widest networks.
    jobs: List[tuple] = [("multitask", loaded, mode, preset, seed) for mode in ("biases", "masks")]
    for width in sorted(preset["widths"], reverse=True):
        for data in loaded.values():
            jobs += [("sweep", data, width, mode, preset, seed) for mode in MODES]
            if width <= preset["ntk_max_width"]:
                jobs.append(("ntk", data, width, seed))
    done: Dict[tuple, Any] = {}
    # Spawned workers: a forked child would inherit the parent's OpenMP and BLAS thread pools in an unusable state.
    with concurrent.futures.ProcessPoolExecutor(threads, mp_context=multiprocessing.get_context("spawn")) as pool:
        for key, value in pool.map(run_job, jobs):
            done[key] = value
            if progress:
                label = " ".join(str(k) for k in key)
                print(f"  {label}: {value['seconds']:.1f} s", flush=True)
    profile: Dict[str, Dict[str, float]] = {}
    for name, data in loaded.items():
        results["datasets"][name] = {"n_train": len(data.train), "n_test": len(data.test),
                                     "n_features": data.x.shape[1], "widths": width_rows(data, preset, done)}
        profile[f"(a) {name}"] = {key: sum(v[key] for k, v in done.items() if k[0] in ("sweep", "ntk")
                                           and k[1] == name) for key in ("seconds", "cpu_seconds")}
    part, cpu = time.perf_counter(), time.process_time()
    parts = {mode: done[("multitask", mode)] for mode in ("biases", "masks")}
    results["multitask"] = multitask_summary(loaded, parts, preset, seed)
    for mode, p in parts.items():
        profile[f"(b) {mode} fits"] = {key: p[key] for key in ("seconds", "cpu_seconds")}
    profile["(b) clusters and correlations"] = {"seconds": time.perf_counter() - part,
                                                "cpu_seconds": time.process_time() - cpu}
    results["multitask"]["seconds"] = sum(profile[k]["seconds"] for k in profile if k.startswith("(b)"))
    results["profile"] = profile
    results["seconds"] = time.perf_counter() - start
    results["cpu_seconds"] = sum(p["cpu_seconds"] for p in profile.values())
    return results


def _acc(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.3f}"


def _corr(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:+.2f}"


def tables(results: dict) -> List[str]:
    lines = []
    for name, entry in results["datasets"].items():
        lines += [f"### (a) {name}: test accuracy (trained parameters; chosen lr)", "",
                  "| width | biases | masks | readout | biases + readout | full, matched (units) | "
                  "biases-only NTK regression |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row in entry["widths"]:
            cells = []
            for mode in MODES:
                r = row[mode]
                units = f" {row['full_width']} units," if mode == "full" else ""
                lr = "all diverged" if r["lr"] is None else f"lr {r['lr']:.2g}"
                cells.append(f"{_acc(r['test_accuracy'])} ({r['trained_parameters']:,};{units} {lr})")
            lines.append(f"| {row['width']} | " + " | ".join(cells) + f" | {_acc(row['ntk_biases'])} |")
        lines.append("")
    multi = results["multitask"]
    width = multi["width"]
    lines += [f"### (b) tasks on one random network of {width:,} units: test accuracy, units active", "",
              "| task | classes | majority | biases: accuracy | units active | firing fraction | masks: accuracy | "
              "masks on | on and active | firing fraction |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, t in multi["tasks"].items():
        b, m = t["biases"], t["masks"]
        lines.append(f"| {name} | {t['n_classes']} | {t['majority_test_accuracy']:.3f} | {b['test_accuracy']:.3f} | "
                     f"{b['units_active']:,} | {b['mean_firing_fraction']:.2f} | {m['test_accuracy']:.3f} | "
                     f"{m['units_on']:,} | {m['units_active']:,} | {m['mean_firing_fraction']:.2f} |")
    lines += ["", "### (b) task-variance clusters (k-means, one cluster per task)", "",
              "| parameters | units varying | silhouette | mean largest share | "
              "clusters: size, task leaned on (share) |",
              "| --- | ---: | ---: | ---: | --- |"]
    for mode, c in multi["clusters"].items():
        clusters = "; ".join(f"{k['size']:,} {k['task']} ({k['share']:.2f})" for k in c["clusters"])
        sil = "—" if c["silhouette"] is None else f"{c['silhouette']:.2f}"
        lines.append(f"| {mode} | {c['units_varying']:,} | {sil} | {c['mean_largest_share']:.2f} | {clusters} |")
    lines += ["", "### (b) learned biases against task variance (Spearman correlation across units)", "",
              "| task | learned bias vs variance | bias change vs variance | bias change vs initial variance | "
              "initial bias vs initial variance | mean abs bias change |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, c in multi["correlations"].items():
        lines.append(f"| {name} | {_corr(c['bias_vs_variance'])} | {_corr(c['bias_change_vs_variance'])} | "
                     f"{_corr(c['bias_change_vs_initial_variance'])} | "
                     f"{_corr(c['initial_bias_vs_initial_variance'])} | {c['mean_abs_bias_change']:.3f} |")
    lines.append("")
    return lines


def markdown(results: dict, plot_file: str) -> str:
    s = results["settings"]
    lines = [f"# Random weights, learned biases or masks (nnpk {results['version']})", "",
             "One hidden ReLU layer, standard parameterization, He weights (W_std = sqrt 2), biases drawn with std 1; "
             "inputs centred and scaled to x . x / d = 1; Adam, batches of "
             f"{s['batch_size']}, float32, seed {s['seed']}.", ""]
    for name, entry in results["datasets"].items():
        lines.append(f"- {name}: {entry['n_features']} features, {entry['n_train']} training points "
                     f"({1 - s['validation']:.0%} fitted, {s['validation']:.0%} validation) and {entry['n_test']} test "
                     f"points")
    lines += ["", f"(a) {s['epochs']} epochs. Trained parameters of width n: biases n + 10, masks n (one score per "
              "unit), readout 10 n + 10, both 11 n + 10; 'full, matched': a network of round(n / (d + 11)) units "
              "trained on every parameter, about as many as the biases. Each mode's learning rate is the best on "
              "validation accuracy (nnpk.learn.sweep) among the default times "
              f"{', '.join(f'{f:.2g}' for f in s['lr_factors'])} (full training: "
              f"{', '.join(f'{v:g}' for v in s['full_lrs'])}). The NTK column: kernel ridge regression (one-hot "
              "targets, ridge by GCV) with the network's biases-only empirical tangent kernel on the training half "
              f"(widths up to {s['ntk_max_width']}).", "",
              f"(b) One network of {s['multitask_width']:,} units on {SHARED_FEATURES} inputs (MNIST-1D's 40 values "
              f"padded with zeros), every task trained for {s['multitask_epochs']} epochs on its data set's training "
              "half at the default learning rate, once with its own biases, once with its own masks. A unit is "
              "active on a task when its ReLU output is nonzero on at least one of the task's training points (and, "
              "under masks, its mask is on); the firing fraction is the mean over units and points of output > 0 "
              "(masked units count as silent). Task variance: nnpk.task_variance on each task's training points "
              "(under masks, 0 for units masked off); 'initial': the random network with its drawn biases. Clusters: "
              "nnpk.unit_clusters, silhouette on 2,000 units.", "",
              f"Each mode's first task's test logits are bitwise unchanged after the other tasks were trained: "
              f"{'yes' if results['multitask']['first_task_unchanged'] else 'NO'}.", "",
              *tables(results), f"![biases]({plot_file})", "",
              f"{results['seconds']:.0f} s in all, {s['threads']} jobs side by side on one engine thread each, "
              f"{results['cpu_seconds']:.0f} s of processor time; per part, the processor time (and the wall time) "
              "of its jobs: " + ", ".join(f"{part} {p['cpu_seconds']:.0f} s ({p['seconds']:.0f} s)"
                                          for part, p in results["profile"].items()) + ".", ""]
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(results["datasets"])
    figure = Figure(figsize=(5.2 * (len(names) + 2), 4.4))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(names) + 2)
    labels = {"biases": "biases", "masks": "masks", "readout": "readout", "biases+readout": "biases + readout",
              "full": "full training (narrower)"}
    for ax, name in zip(axes, names):
        rows = results["datasets"][name]["widths"]
        for mode, label in labels.items():
            ax.plot([r[mode]["trained_parameters"] for r in rows],
                    [np.nan if r[mode]["test_accuracy"] is None else r[mode]["test_accuracy"] for r in rows],
                    marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("trained parameters")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"(a) {name}: accuracy against trained parameters")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    multi = results["multitask"]
    tasks = list(multi["tasks"])
    position = np.arange(len(tasks))
    bars, units = axes[-2], axes[-1]
    for offset, key, label in ((-0.27, "biases", "biases"), (0.0, "masks", "masks"), (0.27, None, "majority")):
        values = [multi["tasks"][t][key]["test_accuracy"] if key else multi["tasks"][t]["majority_test_accuracy"]
                  for t in tasks]
        bars.bar(position + offset, values, 0.27, label=label)
    bars.set_xticks(position, tasks, rotation=45, ha="right", fontsize=7)
    bars.set_ylim(0, 1.1)
    bars.set_ylabel("test accuracy")
    bars.set_title(f"(b) tasks on one network of {multi['width']:,} units")
    bars.legend(fontsize=7)
    for offset, key in ((-0.2, "biases"), (0.2, "masks")):
        units.bar(position + offset, [multi["tasks"][t][key]["units_active"] / multi["width"] for t in tasks], 0.4,
                  label=key)
    units.set_xticks(position, tasks, rotation=45, ha="right", fontsize=7)
    units.set_ylim(0, 1.05)
    units.set_ylabel("fraction of units active")
    units.set_title("(b) units active per task")
    units.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nnpk demo biases", description=__doc__.split("\n\n")[0])
    add_datasets_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="split, network and minibatch order")
    parser.add_argument("--threads", type=int, default=None, help="default: all physical cores; the demo runs this "
                        "many trainings side by side, each on one engine thread")
    parser.add_argument("--out", default=os.path.join("nnpk-report", "biases"), help="report folder")
    parser.add_argument("--quick", action="store_true", help="seconds, not minutes: narrow networks, few points "
                        "and epochs")
    args = parser.parse_args(argv)
    datasets = available_datasets(parser, args.datasets)
    if not datasets:
        return 2
    threads = resolve_n_threads(args.threads)
    print(f"nnpk {__version__} demo biases: {', '.join(datasets)}; {threads} threads", flush=True)
    from threadpoolctl import threadpool_limits

    # LAPACK on one thread beside the engine's OpenMP workers (see `nnpk demo`).
    with threadpool_limits(1, user_api="blas"):
        results = run_demo(datasets=datasets, preset=QUICK if args.quick else FULL, seed=args.seed,
                           threads=threads, progress=True)
        files = write_report(results, args.out, "biases", markdown, plot)
    print("\n".join(tables(results)))
    print(f"{results['seconds']:.1f} s; report: {os.path.abspath(args.out)} "
          f"({', '.join(os.path.basename(p) for p in files.values())})")
    return 0
