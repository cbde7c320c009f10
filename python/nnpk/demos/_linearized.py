"""`nnpk demo linearized`: networks beside their linearisations on NTK eigenfunction and NAD tasks.

A scalar network f(x; theta) and its linearisation around its initial parameters theta_0,
``f_lin(x; theta) = f(x; theta_0) + J(x; theta_0) (theta - theta_0)``, trained by the same
protocol (SGD with momentum 0.9, peak learning rate 0.05 decayed linearly to 0, batches of 128,
the sigmoid cross-entropy on the single logit) on two families of binary tasks: eigenfunction
task k labels every point by the sign of the k-th eigenvector of the network's empirical NTK at
initialisation over all the points (train and test); a NAD task separates two classes along one
neural anisotropy direction of the network. Reported: test accuracies of both, how alike they
rank the eigenfunction tasks by difficulty (Spearman), and how training moves the NTK's energy
``alpha_i = phi_i' Theta phi_i / |phi_i|^2`` along the initial eigenvectors. LeNet (1-D) and the
MLP 100-100-1 on MNIST-1D, the MLP on digits (LeNet's valid 5x5 convolutions do not fit 8x8
images), LeNet (2-D) on a local CIFAR-10 copy when its path is given. Writes linearized.md,
linearized.json and linearized.png into the report folder.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .._threads import resolve_n_threads
from .._version import __version__
from ..architectures import Network, lenet, mlp_100, sample_params
from ..diagnostics import eigen_alignment
from ..kernels import empirical
from ..learn._network_learning import NetworkLearner
from ..tasks import nad_task, nads, ntk_eigenvectors
from ._common import add_datasets_argument, available_datasets, load_dataset, write_report

PROTOCOL = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "lr_schedule": "linear", "batch_size": 128,
            "loss": "logistic", "study_epochs": 100}
KS = (1, 2, 5, 10, 20, 50, 100, 200)
NAD_POSITIONS = ("top", "middle", "low")
FULL: Dict[str, Any] = {
    "sizes": {"digits": (500, 1000), "mnist1d": (500, 1000, 2000), "cifar10": (500, 1000)},
    "n_test": {"digits": 500, "mnist1d": 1000, "cifar10": 1000},
    "ks": KS, "epochs": 20, "n_alignment": 1000, "nad": {"eps": 2.0, "sigma": 1.0},
}
QUICK: Dict[str, Any] = {
    "sizes": {"digits": (200,), "mnist1d": (200,), "cifar10": (200,)},
    "n_test": {"digits": 200, "mnist1d": 200, "cifar10": 200},
    "ks": (1, 2, 5, 10, 20, 50), "epochs": 4, "n_alignment": 200, "nad": {"eps": 2.0, "sigma": 1.0},
}


# --------------------------------------------------------------------------- data and networks


def load_cifar10(path: str) -> np.ndarray:
    """The images of a local CIFAR-10 copy as (n, 32, 32, 3) floats: a numpy .npz (the first array of four
    dimensions, or of 3072 values a row in CIFAR's channel-major order) or the folder of python-pickled batches
    (data_batch_1..5, test_batch). Nothing is downloaded; the class labels are not needed."""
    if os.path.isdir(path):
        names = [n for n in sorted(os.listdir(path)) if n.startswith(("data_batch", "test_batch"))]
        if not names:
            raise ValueError(f"{path} holds no CIFAR-10 python batches (data_batch_1, ..., test_batch)")
        rows = []
        for name in names:
            with open(os.path.join(path, name), "rb") as f:
                rows.append(np.asarray(pickle.load(f, encoding="bytes")[b"data"]))
        flat = np.concatenate(rows)
    else:
        with np.load(path) as archive:
            arrays = [archive[k] for k in archive.files if archive[k].ndim in (2, 4)]
        if not arrays:
            raise ValueError(f"{path} holds no array of images (n, 32, 32, 3) or rows of 3072 values")
        flat = arrays[0]
    images = flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) if flat.ndim == 2 else flat
    if images.shape[1:] != (32, 32, 3):
        raise ValueError(f"CIFAR-10 images must be 32 x 32 x 3, got {images.shape[1:]}")
    return images.astype(np.float64)


def _standardized(points: np.ndarray) -> np.ndarray:
    """Centred by the mean point, each point then scaled to unit mean square (the demos' preprocessing)."""
    flat = points.reshape(len(points), -1)
    flat = flat - flat.mean(axis=0)
    norms = np.linalg.norm(flat, axis=1, keepdims=True) / math.sqrt(flat.shape[1])
    return (flat / np.where(norms > 0, norms, 1.0)).reshape(points.shape)


def dataset_points(name: str, seed: int, cifar_path: Optional[str]) -> np.ndarray:
    """All points of a data set in a seeded random order, standardized and flat (CIFAR-10: images)."""
    if name == "cifar10":
        assert cifar_path is not None
        points = _standardized(load_cifar10(cifar_path))
    else:
        points = load_dataset(name, None, seed).x
    return points[np.random.default_rng(seed).permutation(len(points))]


def architectures(name: str) -> List[Tuple[str, Network, tuple]]:
    """(label, network, point shape) of the networks studied on a data set."""
    if name == "mnist1d":
        return [("LeNet-1D", lenet(out=1, dims=1), (40, 1)), ("MLP 100-100-1", mlp_100(out=1), (40,))]
    if name == "digits":
        return [("MLP 100-100-1", mlp_100(out=1), (64,))]
    return [("LeNet", lenet(out=1, dims=2), (32, 32, 3))]


def nad_indices(singular_values: np.ndarray) -> Dict[str, int]:
    """The NADs of the tasks: the top one, the middle one and the lowest with a singular value above 1e-6 of the
    top (below it the direction is invisible to the network's gradient at 0 up to rounding)."""
    visible = int(np.sum(singular_values > 1e-6 * singular_values[0]))
    return {"top": 0, "middle": len(singular_values) // 2, "low": visible - 1}


# --------------------------------------------------------------------------- training


def fit_pair(arch: Network, seed: int, epochs: int, x_train, y_train, x_test, y_test, threads: int) -> dict:
    """The network and its linearisation (BatchNorm at its initial statistics), both from network 0 of `seed` by
    the study's protocol; their test accuracies. A training set of one class is not trained: both would predict
    that class, and the row is marked."""
    classes = np.unique(y_train)
    if len(classes) == 1:
        constant = float(np.mean(y_test == classes[0]))
        return {"single_class": True, "network": constant, "linearized": constant, "learner": None}
    row: Dict[str, Any] = {"single_class": False}
    for key, linearize in (("network", False), ("linearized", True)):
        learner = NetworkLearner(arch, seed=seed, linearize=linearize, offset=True, loss=PROTOCOL["loss"],
                                 optimizer=PROTOCOL["optimizer"], lr=PROTOCOL["lr"], momentum=PROTOCOL["momentum"],
                                 lr_schedule=PROTOCOL["lr_schedule"], batch_size=PROTOCOL["batch_size"],
                                 epochs=epochs, dtype="float32", n_threads=threads, random_state=seed)
        learner.fit(x_train, y_train)
        row[key] = float(learner.score(x_test, y_test))
        if not linearize:
            row["learner"] = learner
    return row


def alignment(kernel: np.ndarray, vectors: np.ndarray, n_train: int) -> Dict[str, List[float]]:
    """alpha_i along the columns of `vectors` on the training points (the first n_train), the test points and
    all of them."""
    train, test = slice(0, n_train), slice(n_train, None)
    return {"train": eigen_alignment(kernel[train, train], vectors[train]).tolist(),
            "test": eigen_alignment(kernel[test, test], vectors[test]).tolist(),
            "all": eigen_alignment(kernel, vectors).tolist()}


def alignment_summary(before: Dict[str, List[float]], after: Dict[str, List[float]], k: int) -> dict:
    """For task k: alpha_k before and after on each subset, the rank of phi_k by alpha after training (it is k
    before, on all points), and the share of alpha's sum on the first 10 vectors before and after."""
    summary: Dict[str, Any] = {}
    for subset in ("train", "test", "all"):
        a0, a1 = np.array(before[subset]), np.array(after[subset])
        summary[subset] = {"alpha_k_before": float(a0[k - 1]), "alpha_k_after": float(a1[k - 1]),
                           "rank_after": int(np.sum(a1 > a1[k - 1]) + 1),
                           "top10_share_before": float(a0[:10].sum() / a0.sum()),
                           "top10_share_after": float(a1[:10].sum() / a1.sum())}
    return summary


def spearman(a, b) -> Optional[float]:
    """Spearman's rank correlation (ties share their mean rank); None when either side is constant."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def study(points: np.ndarray, label: str, arch: Network, shape: tuple, sizes, n_test: int, s: dict, seed: int,
          threads: int, progress: Callable[[str], None]) -> dict:
    """Every task at every size for one network on one data set."""
    entry: Dict[str, Any] = {"architecture": label, "point_shape": list(shape), "sizes": [], "nads": {}}
    singular_values, directions = nads(arch, shape, int(np.prod(shape)), seed=seed, n_threads=threads)
    chosen = nad_indices(singular_values)
    entry["nads"] = {"singular_values": singular_values.tolist(), "chosen": chosen}
    params0 = sample_params(arch, shape, seed, 0)
    for n_train in sizes:
        n_all = n_train + n_test
        x = points[:n_all].reshape((n_all,) + shape)
        ks = [k for k in s["ks"] if k <= n_all]
        m = min(n_all, max(s["n_alignment"], max(ks)))
        start = time.perf_counter()
        values, vectors = ntk_eigenvectors(x, arch, m, seed=seed, method="dense", n_threads=1)
        eigen_seconds = time.perf_counter() - start
        kernel0 = empirical(x, arch=arch, params=params0, get="ntk", n_threads=threads)
        before = alignment(kernel0, vectors, n_train)
        size_entry: Dict[str, Any] = {"n_train": n_train, "n_test": n_test, "n_vectors": m,
                                      "eigenvalues": values.tolist(), "eigen_seconds": eigen_seconds,
                                      "alpha_before": before, "eigenfunction": [], "nad": []}
        last = n_train == max(sizes)
        for k in ks:
            y = (vectors[:, k - 1] >= 0).astype(np.int64)
            row = fit_pair(arch, seed, s["epochs"], x[:n_train], y[:n_train], x[n_train:], y[n_train:], threads)
            learner = row.pop("learner")
            row.update({"k": k, "eigenvalue": float(values[k - 1]), "positive_fraction": float(y.mean())})
            if last and learner is not None:
                kernel = empirical(x, arch=arch, params=learner.params_, get="ntk", n_threads=threads)
                after = alignment(kernel, vectors, n_train)
                size_entry.setdefault("alpha_after", {})[str(k)] = after
                row["alignment"] = alignment_summary(before, after, k)
            size_entry["eigenfunction"].append(row)
            progress(f"  {label} n={n_train} k={k:3d}: network {row['network']:.3f}, linearised "
                     f"{row['linearized']:.3f}")
        for position in NAD_POSITIONS:
            index = chosen[position]
            x_nad, y_nad = nad_task(directions[index], n_all, s["nad"]["eps"], s["nad"]["sigma"],
                                    seed=seed + 1 + index)
            row = fit_pair(arch, seed, s["epochs"], x_nad[:n_train], y_nad[:n_train], x_nad[n_train:],
                           y_nad[n_train:], threads)
            row.pop("learner")
            row.update({"position": position, "index": index, "singular_value": float(singular_values[index])})
            size_entry["nad"].append(row)
            progress(f"  {label} n={n_train} NAD {position} (#{index}): network {row['network']:.3f}, linearised "
                     f"{row['linearized']:.3f}")
        trained = [r for r in size_entry["eigenfunction"] if not r["single_class"]]
        net, lin, k_of = ([r[key] for r in trained] for key in ("network", "linearized", "k"))
        size_entry["spearman"] = {"network_linearized": spearman(net, lin), "k_network": spearman(k_of, net),
                                  "k_linearized": spearman(k_of, lin), "tasks": len(trained)}
        entry["sizes"].append(size_entry)
    return entry


# --------------------------------------------------------------------------- the report


def run_demo(*, datasets=("digits", "mnist1d"), cifar: Optional[str] = None, preset: Optional[dict] = None,
             seed: int = 0, threads: int = 1, progress: bool = False) -> dict:
    preset = FULL if preset is None else preset
    say: Callable[[str], None] = (lambda text: print(text, flush=True)) if progress else (lambda text: None)
    start = time.perf_counter()
    names = list(datasets) + (["cifar10"] if cifar else [])
    results: Dict[str, Any] = {"version": __version__,
                               "settings": {"datasets": names, "cifar10": cifar, "seed": seed, "threads": threads,
                                            "protocol": {**PROTOCOL, "epochs": preset["epochs"]},
                                            **{k: preset[k] for k in ("ks", "n_alignment", "nad")}},
                               "datasets": {}}
    for name in names:
        points = dataset_points(name, seed, cifar)
        sizes = [n for n in preset["sizes"][name] if n + preset["n_test"][name] <= len(points)]
        entries = []
        for label, arch, shape in architectures(name):
            say(f"{name}, {label}: {len(points)} points, sizes {sizes} + {preset['n_test'][name]} test")
            part_start = time.perf_counter()
            entry = study(points, label, arch, shape, sizes, preset["n_test"][name], preset, seed, threads, say)
            entry["seconds"] = time.perf_counter() - part_start
            entries.append(entry)
        results["datasets"][name] = entries
    results["seconds"] = time.perf_counter() - start
    return results


def _number(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:+.2f}"


def tables(results: dict) -> List[str]:
    lines: List[str] = []
    for name, entries in results["datasets"].items():
        for entry in entries:
            label, sizes = entry["architecture"], entry["sizes"]
            lines += [f"### {name}, {label}: test accuracy, network / linearised", "",
                      "| task | " + " | ".join(f"n = {s['n_train']}" for s in sizes) + " |",
                      "| --- | " + " | ".join("---:" for _ in sizes) + " |"]
            for i, row in enumerate(sizes[0]["eigenfunction"]):
                cells = [f"{s['eigenfunction'][i]['network']:.3f} / {s['eigenfunction'][i]['linearized']:.3f}"
                         + (" (one class)" if s["eigenfunction"][i]["single_class"] else "")
                         if i < len(s["eigenfunction"]) else "-" for s in sizes]
                lines.append(f"| eigenfunction k = {row['k']} | " + " | ".join(cells) + " |")
            for i, row in enumerate(sizes[0]["nad"]):
                cells = [f"{s['nad'][i]['network']:.3f} / {s['nad'][i]['linearized']:.3f}" for s in sizes]
                lines.append(f"| NAD {row['position']} (#{row['index']}, s = {row['singular_value']:.2g}) | "
                             + " | ".join(cells) + " |")
            lines += ["", f"### {name}, {label}: ranking of the eigenfunction tasks (Spearman)", "",
                      "| n train | tasks | network vs linearised | k vs network | k vs linearised |",
                      "| ---: | ---: | ---: | ---: | ---: |"]
            for s in sizes:
                r = s["spearman"]
                lines.append(f"| {s['n_train']} | {r['tasks']} | {_number(r['network_linearized'])} | "
                             f"{_number(r['k_network'])} | {_number(r['k_linearized'])} |")
            last = sizes[-1]
            lines += ["", f"### {name}, {label}: NTK alignment after training the network, n = {last['n_train']} "
                      f"(first {last['n_vectors']} initial eigenvectors)", "",
                      "| task | alpha_k: train before -> after | test before -> after | all before -> after | "
                      "rank of phi_k after (all) | top-10 share (all) before -> after |",
                      "| --- | ---: | ---: | ---: | ---: | ---: |"]
            for row in last["eigenfunction"]:
                if "alignment" not in row:
                    continue
                a = row["alignment"]
                cells = [f"{a[sub]['alpha_k_before']:.3g} -> {a[sub]['alpha_k_after']:.3g}"
                         for sub in ("train", "test", "all")]
                lines.append(f"| k = {row['k']} | " + " | ".join(cells) + f" | {a['all']['rank_after']} | "
                             f"{a['all']['top10_share_before']:.3f} -> {a['all']['top10_share_after']:.3f} |")
            lines.append("")
    return lines


def markdown(results: dict, plot_file: str) -> str:
    s = results["settings"]
    p = s["protocol"]
    lines = [f"# Networks and their linearisations on NTK eigenfunction and NAD tasks (nnpk {results['version']})",
             "",
             f"Protocol for both the network and its linearisation f(x; theta_0) + J(x; theta_0)(theta - theta_0): "
             f"SGD, momentum {p['momentum']}, peak learning rate {p['lr']} decayed linearly to 0, batches of "
             f"{p['batch_size']}, sigmoid cross-entropy on the single logit, accuracy by its sign; "
             f"**{p['epochs']} epochs instead of the study's {p['study_epochs']}** (the time budget); every weight "
             f"and bias trains from network 0 of seed {s['seed']} (standard parameterization, W_std = sqrt 2, "
             "b_std = 0.1).", "",
             "Eigenfunction task k: labels (sign(phi_k) + 1) / 2 of the k-th eigenvector of the network's empirical "
             "NTK at initialisation over all the points (train and test), k in "
             f"{', '.join(str(k) for k in s['ks'])} (at most the points). A task whose training labels are one "
             "class is not trained (both predict that class; marked 'one class') and is left out of the rankings. "
             f"NAD tasks: x = (eps / 2) y v + w with eps = {s['nad']['eps']}, w ~ N(0, {s['nad']['sigma']}^2 I) "
             "orthogonal to v, v the top, the middle or the lowest visible (singular value above 1e-6 of the top) "
             "right singular vector of d/dx grad_theta f at x = 0; s is its singular value.", "",
             "Inputs centred and scaled to unit mean square per point; the points are a seeded random sample, the "
             "first n for training, the next ones for testing. Digits use the MLP only: LeNet's valid 5x5 "
             "convolutions leave 2x2 maps after the first pool of an 8x8 image, too small for the second "
             "convolution. Alignment: alpha_i = phi_i' Theta phi_i / |phi_i|^2 of the initial eigenvectors phi_i "
             "under the trained network's NTK Theta (before: the initial NTK, where alpha_i on all points is the "
             "i-th eigenvalue), on the training points, the test points and all; measured for the network at the "
             "largest n (a linearisation's NTK does not move). The trained NTK is larger overall, so the scale-free "
             "figures are the rank of phi_k among the alpha_i after training (k before, on all points) and the "
             "share of the alphas' sum on the first 10 vectors.", ""]
    if not s["cifar10"]:
        lines += ["CIFAR-10: skipped (no local copy given; `--cifar PATH` takes a .npz or the python batches "
                  "folder).", ""]
    for name, entries in results["datasets"].items():
        for entry in entries:
            lines.append(f"- {name}, {entry['architecture']}: points of shape {tuple(entry['point_shape'])}, "
                         f"{entry['seconds']:.0f} s")
    lines += ["", *tables(results), f"![linearized]({plot_file})", "",
              f"{results['seconds']:.0f} s on {s['threads']} threads.", ""]
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [(name, entry) for name, entries in results["datasets"].items() for entry in entries]
    figure = Figure(figsize=(16, 3.8 * len(rows)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), 3, squeeze=False)
    for (accuracy, nad, alpha), (name, entry) in zip(axes, rows):
        title = f"{name}, {entry['architecture']}"
        shades = ("tab:blue", "tab:orange", "tab:green", "tab:red")
        for color, size in zip(shades, entry["sizes"]):
            ks = [r["k"] for r in size["eigenfunction"]]
            accuracy.plot(ks, [r["network"] for r in size["eigenfunction"]], "o-", color=color,
                          label=f"network, n = {size['n_train']}")
            accuracy.plot(ks, [r["linearized"] for r in size["eigenfunction"]], "s--", color=color,
                          label=f"linearised, n = {size['n_train']}")
            positions = np.arange(len(size["nad"]))
            offset = (entry["sizes"].index(size) - 0.5 * (len(entry["sizes"]) - 1)) * 0.2
            nad.bar(positions + offset - 0.05, [r["network"] for r in size["nad"]], 0.1, color=color)
            nad.bar(positions + offset + 0.05, [r["linearized"] for r in size["nad"]], 0.1, color=color, alpha=0.45)
        accuracy.set_xscale("log")
        accuracy.set_xlabel("eigenfunction k")
        accuracy.set_ylabel("test accuracy")
        accuracy.set_title(f"{title}: eigenfunction tasks")
        accuracy.legend(fontsize=6)
        nad.set_xticks(np.arange(len(NAD_POSITIONS)), [f"NAD {p}" for p in NAD_POSITIONS])
        nad.set_ylim(0.4, 1.02)
        nad.set_ylabel("test accuracy (dark: network, light: linearised)")
        nad.set_title(f"{title}: NAD tasks, bars by n")
        last = entry["sizes"][-1]
        index = np.arange(1, last["n_vectors"] + 1)
        alpha.plot(index, last["alpha_before"]["all"], color="black", label="initial NTK (eigenvalues)")
        for color, (k, after) in zip(shades, list(last.get("alpha_after", {}).items())[1::2]):
            alpha.plot(index, after["all"], color=color, linewidth=0.8, label=f"trained on k = {k}")
            alpha.axvline(int(k), color=color, linestyle=":", linewidth=0.8)
        alpha.set_xscale("log")
        alpha.set_yscale("log")
        alpha.set_xlabel("initial eigenvector i")
        alpha.set_ylabel("alpha_i (all points)")
        alpha.set_title(f"{title}: alignment, n = {last['n_train']}")
        alpha.legend(fontsize=6)
        for ax in (accuracy, nad, alpha):
            ax.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nnpk demo linearized", description=__doc__.split("\n\n")[0])
    add_datasets_argument(parser)
    parser.add_argument("--cifar", default=None, metavar="PATH",
                        help="a local CIFAR-10 copy (.npz or the python batches folder): adds LeNet on it; nothing "
                        "is downloaded, and without it CIFAR-10 is skipped")
    parser.add_argument("--seed", type=int, default=0, help="sample, networks and minibatch order")
    parser.add_argument("--threads", type=int, default=None, help="default: all physical cores")
    parser.add_argument("--out", default=os.path.join("nnpk-report", "linearized"), help="report folder")
    parser.add_argument("--quick", action="store_true", help="seconds, not minutes: few points, tasks and epochs")
    args = parser.parse_args(argv)
    datasets = available_datasets(parser, args.datasets)
    if args.cifar is not None and not os.path.exists(args.cifar):
        parser.error(f"--cifar: {args.cifar} does not exist")
    if not datasets:
        return 2
    threads = resolve_n_threads(args.threads)
    print(f"nnpk {__version__} demo linearized: {', '.join(datasets)}"
          f"{', cifar10' if args.cifar else ' (CIFAR-10 skipped: no --cifar PATH)'}; {threads} threads", flush=True)
    from threadpoolctl import threadpool_limits

    # LAPACK on one thread beside the engine's OpenMP workers (see `nnpk demo`).
    with threadpool_limits(1, user_api="blas"):
        results = run_demo(datasets=datasets, cifar=args.cifar, preset=QUICK if args.quick else FULL,
                           seed=args.seed, threads=threads, progress=True)
        files = write_report(results, args.out, "linearized", markdown, plot)
    print("\n".join(tables(results)))
    print(f"{results['seconds']:.1f} s; report: {os.path.abspath(args.out)} "
          f"({', '.join(os.path.basename(p) for p in files.values())})", file=sys.stdout)
    return 0
