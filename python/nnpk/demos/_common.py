"""What the demos share: their data sets (nnpk.datasets' digits, shipped with scikit-learn, and MNIST-1D,
generated offline by the optional mnist1d package) split and preprocessed, the evaluation of a kernel by kernel
ridge classification, and argument parsing."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np

from ..datasets import load_digits, load_mnist1d
from ..diagnostics import KernelSpectrum, kernel_target_alignment
from ..learn import RELATIVE_RIDGES, RidgePath

__all__ = ["DATASETS", "DEFAULT_SAMPLES", "Dataset", "PREPROCESSING", "add_datasets_argument", "available_datasets",
           "evaluate", "load_dataset", "positive_int", "widths", "write_report"]

DATASETS = ("digits", "mnist1d")
# Points used by default: all of digits; MNIST-1D's 5000 would take the demo past two minutes.
DEFAULT_SAMPLES = {"digits": None, "mnist1d": 2000}
PREPROCESSING = ("centred by the training mean, each row then scaled to x . x / d = 1 "
                 "(unit input variance, the setting of the depth analysis)")


@dataclass(frozen=True)
class Dataset:
    name: str
    x: np.ndarray  # (n, d), preprocessed
    labels: np.ndarray  # (n,) in 0..n_classes - 1
    train: np.ndarray  # indices into x
    test: np.ndarray

    @property
    def n_classes(self) -> int:
        return int(self.labels.max()) + 1


_LOADERS = {"digits": load_digits, "mnist1d": load_mnist1d}


def load_dataset(name: str, n_samples: Optional[int], seed: int) -> Dataset:
    """`n_samples` points of the data set (a stratified subsample; None: all), split into stratified halves and
    preprocessed as PREPROCESSING says, with the training half's statistics."""
    from sklearn.model_selection import train_test_split

    x, labels = _LOADERS[name](n_samples, seed=seed)
    train, test = train_test_split(np.arange(len(labels)), test_size=0.5, stratify=labels, random_state=seed)
    x = x - x[train].mean(axis=0)
    norms = np.linalg.norm(x, axis=1, keepdims=True) / math.sqrt(x.shape[1])
    # A point equal to the training mean stays at 0 rather than becoming NaN.
    x /= np.where(norms > 0, norms, 1.0)
    return Dataset(name, x, labels, np.sort(train), np.sort(test))


def _finite(value: float) -> Optional[float]:
    """JSON has no infinity: a singular kernel's condition number is stored as null."""
    return float(value) if math.isfinite(value) else None


def evaluate(kernel: np.ndarray, data: Dataset, criterion: str) -> dict:
    """Kernel ridge classification (one-hot targets) and the training kernel's diagnostics.

    The ridge is the candidate multiple of the kernel's mean diagonal with the smallest GCV or LOO error (as
    nnpk.sklearn chooses it), all from the one eigendecomposition that also gives the spectrum."""
    k_train = kernel[np.ix_(data.train, data.train)]
    targets = np.eye(data.n_classes)[data.labels[data.train]]
    path = RidgePath(k_train, targets)
    scale = float(np.trace(k_train)) / len(data.train)
    ridge, _ = path.select_ridge(scale * RELATIVE_RIDGES, criterion)
    scores = kernel[np.ix_(data.test, data.train)] @ path.coefficients(ridge)
    eigenvalues = KernelSpectrum(path.eigenvalues[::-1].copy())
    return {
        "test_accuracy": float(np.mean(np.argmax(scores, axis=1) == data.labels[data.test])),
        "ridge": ridge,
        "relative_ridge": ridge / scale,
        "alignment_centered": kernel_target_alignment(k_train, targets, centered=True),
        "alignment_uncentered": kernel_target_alignment(k_train, targets),
        "condition_number": _finite(eigenvalues.condition_number),
        "smallest_eigenvalue": eigenvalues.smallest,
        "largest_eigenvalue": eigenvalues.largest,
        "effective_rank": eigenvalues.effective_rank,
    }


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def widths(text: str) -> tuple:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"hidden widths must be positive integers separated by commas, got {text!r}")
    return widths


def add_datasets_argument(parser: argparse.ArgumentParser) -> None:
    """--datasets: digits, mnist1d or both (the default)."""
    parser.add_argument("--datasets", type=lambda t: tuple(t.split(",")), default=DATASETS,
                        help="digits, mnist1d or both, comma separated (mnist1d needs the mnist1d package; it is "
                        "skipped with a note when absent)")


def available_datasets(parser: argparse.ArgumentParser, requested) -> List[str]:
    """The requested data sets (an unknown one is a usage error), without MNIST-1D when its package is absent
    (said on stderr); empty if nothing is left."""
    unknown = [d for d in requested if d not in DATASETS]
    if unknown or not requested:
        parser.error(f"--datasets must be digits, mnist1d or both, got {','.join(requested)}")
    datasets = list(requested)
    if "mnist1d" in datasets and importlib.util.find_spec("mnist1d") is None:
        print(f"{parser.prog}: mnist1d is not installed (pip install 'nnpk[mnist1d]'): digits only", file=sys.stderr)
        datasets.remove("mnist1d")
    return datasets


def write_report(results: dict, folder: str, stem: str, markdown: Callable[[dict, str], str],
                 plot: Callable[[dict, str], None]) -> dict:
    """`stem`.md (from markdown(results, plot file name)), `stem`.json and `stem`.png (from plot(results, path)) in
    `folder`; their paths by role."""
    os.makedirs(folder, exist_ok=True)
    files = {"markdown": f"{stem}.md", "json": f"{stem}.json", "plot": f"{stem}.png"}
    with open(os.path.join(folder, files["json"]), "w") as f:
        json.dump(results, f, indent=1, allow_nan=False)
    with open(os.path.join(folder, files["markdown"]), "w") as f:
        f.write(markdown(results, files["plot"]))
    plot(results, os.path.join(folder, files["plot"]))
    return {role: os.path.join(folder, file) for role, file in files.items()}
