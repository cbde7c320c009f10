"""`nnpk demo recurrent`: random recurrent networks that learn dynamical systems through their biases.

The claim tested: a recurrent network whose weights stay random, with only its biases learned,
can be trained to generate trajectories of dynamical systems, and fails for a recurrent gain
below about 1. (a) Sine waves and the Van der Pol oscillator: next-step prediction with
teacher forcing, then closed-loop generation after a short warm-up on held-out trajectories,
for several gains; bias-only training beside biases + readout, readout only and the full
training of a small network with as many trained parameters. (b) The Lorenz system: one
coordinate predicted at the autocorrelation's half-width, from the true trajectory (teacher
forced) and from the network's own outputs (self-sustained). (c) The eigenvalues of the
recurrent Jacobian along a generated trajectory before and after bias learning. (d) The Monte
Carlo NNGP of recurrent networks against the infinite-width kernel. Writes recurrent.md,
recurrent.json and recurrent.png into the report folder.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .._threads import resolve_n_threads
from .._version import __version__
from ..architectures import Dense, Network, Recurrent, sample_params
from ..datasets import autocorrelation_half_width, lorenz, sine_waves, split_by_trajectory, van_der_pol, windows
from ..kernels import analytic, monte_carlo
from ..learn._bias_learning import BiasLearner
from ..learn._network_learning import NetworkLearner
from ._common import write_report

# How each method trains, in the order of the tables' columns: bias-only ("biases": the recurrent bias and the
# readout's bias; the readout's weights stay random), bias-only with the readout's weights ("biases+readout"),
# the readout alone (a random-features model of the trajectory) and every parameter of a small network.
METHODS = ("biases", "biases+readout", "readout", "full (small)")
LORENZ_METHODS = ("biases", "biases+readout", "all")
SYSTEMS = ("sine", "van der pol")
CLIP_NORM = 1.0
LR_SCHEDULE = "cosine"
VALIDATION_FRACTION = 0.2
TEST_FRACTION = 0.25
SINE_DT = 0.05
VAN_DER_POL_DT = 0.1
FULL: Dict[str, Any] = {
    "width": 256, "gains": (0.5, 0.8, 1.0, 1.2, 1.5), "reference_gain": 1.0,
    "lr_exponents": (-2.0, -1.5, -1.0), "optimizer_steps": 800, "warmup_steps": 40, "batch_size": 32,
    "window": 25, "warmup": 25, "horizon": 100,
    "sine": {"frequencies": (0.4, 0.7, 1.0), "n_trajectories": 12, "n_steps": 200},
    "van_der_pol": {"n_trajectories": 24, "n_steps": 300},
    "check_width": 1024, "check_methods": ("biases",),
    "lorenz": {"n_trajectories": 16, "n_steps": 400, "dt": 0.02, "coordinate": 0, "starts_per_trajectory": 8},
    "jacobian_times": 5,
    "nngp": {"widths": (64, 256, 1024, 4096), "n_networks": 4, "n_points": 16, "n_steps": 20, "gain": 1.2,
             "b_std": 0.1},
}
QUICK: Dict[str, Any] = {
    "width": 32, "gains": (0.5, 1.5), "reference_gain": 1.5,
    "lr_exponents": (-2.0, -1.5), "optimizer_steps": 20, "warmup_steps": 2, "batch_size": 32, "window": 20,
    "warmup": 20, "horizon": 40,
    "sine": {"frequencies": (0.5, 1.0), "n_trajectories": 6, "n_steps": 100},
    "van_der_pol": {"n_trajectories": 8, "n_steps": 120},
    "check_width": 64, "check_methods": ("biases",),
    "lorenz": {"n_trajectories": 6, "n_steps": 200, "dt": 0.02, "coordinate": 0, "starts_per_trajectory": 3},
    "jacobian_times": 3,
    "nngp": {"widths": (16, 64, 256), "n_networks": 2, "n_points": 6, "n_steps": 10, "gain": 1.2, "b_std": 0.1},
}


# --------------------------------------------------------------------------- networks and their training


def recurrent_network(width: int, gain: float, n_outputs: int) -> Network:
    """A tanh recurrent layer of `width` units returning every step, then a Dense readout of each step; standard
    parameterization (U ~ N(0, 1/d), W ~ N(0, gain^2/width), readout ~ N(0, 1/width); biases start at 0)."""
    return Network((Recurrent(width, "tanh", W_std=gain, b_std=0.0, return_sequences=True),
                    Dense(n_outputs, b_std=0.0)), parameterization="standard")


def trained_parameters(method: str, width: int, d_in: int, d_out: int) -> int:
    """How many parameters the method trains in `recurrent_network(width, ., d_out)` reading `d_in` features."""
    counts = {"biases": width + d_out, "biases+readout": width + d_out + width * d_out,
              "readout": width * d_out + d_out}
    if method in counts:
        return counts[method]
    return d_in * width + width + width * width + width * d_out + d_out


def matched_width(n_parameters: int, d_in: int, d_out: int) -> int:
    """The width whose fully trained network has the number of trained parameters closest to `n_parameters`."""
    candidates = range(1, int(math.isqrt(n_parameters)) + 2)
    return min(candidates, key=lambda k: abs(trained_parameters("all", k, d_in, d_out) - n_parameters))


def method_width(method: str, width: int, d_in: int, d_out: int) -> int:
    if method == "full (small)":
        return matched_width(trained_parameters("biases", width, d_in, d_out), d_in, d_out)
    return width


def make_learner(method: str, width: int, gain: float, d_out: int, lr: float, s: dict, seed: int,
                 threads: int = 1) -> NetworkLearner:
    """Adam on the squared loss of every step, the learning rate warmed up over s["warmup_steps"] steps then
    decaying to 0 on a cosine, gradients clipped to norm CLIP_NORM, float32 passes. `fit_tasks` sets the epochs.
    One engine thread by default: a minibatch of at most 96 rows is one chunk of the engine's passes, which a second
    thread cannot share, so the demo runs several fits side by side instead (see `run_demo`)."""
    arch = recurrent_network(width, gain, d_out)
    common = dict(seed=seed, optimizer="adam", lr=lr, batch_size=s["batch_size"], loss="squared", dtype="float32",
                  n_threads=threads, random_state=seed, clip_norm=CLIP_NORM, lr_schedule=LR_SCHEDULE,
                  warmup=s["warmup_steps"])
    if method in ("biases", "biases+readout"):
        return BiasLearner(arch, train=method, **common)
    return NetworkLearner(arch, train="readout" if method == "readout" else "all", **common)


def epochs_for(n_rows: int, s: dict) -> int:
    """Epochs that give at least s["optimizer_steps"] Adam steps with minibatches of s["batch_size"]."""
    return max(1, math.ceil(s["optimizer_steps"] / steps_per_epoch(n_rows, s)))


def steps_per_epoch(n_rows: int, s: dict) -> int:
    return math.ceil(n_rows / s["batch_size"])


def fit_tasks(method: str, width: int, gain: float, lr: float, train: Dict[str, Tuple[np.ndarray, np.ndarray]],
              s: dict, seed: int) -> Tuple[NetworkLearner, float]:
    """One learner on one random network, fitted to every task in turn (each task keeps its own trained
    parameters: for bias-only training, one set of biases per task on the same weights); (learner, seconds)."""
    start = time.perf_counter()
    d_out = next(iter(train.values()))[1].shape[2]
    learner = make_learner(method, width, gain, d_out, lr, s, seed)
    for task, (x, y) in train.items():
        learner.set_params(epochs=epochs_for(len(x), s))
        learner.fit(x, y, task=task)
    return learner, time.perf_counter() - start


def r_squared(prediction: np.ndarray, truth: np.ndarray) -> Optional[float]:
    """1 - SSE / SST over every trajectory, step and coordinate, SST about each coordinate's mean; None when the
    prediction diverged (not finite)."""
    prediction = np.asarray(prediction, dtype=np.float64)
    if not np.isfinite(prediction).all():
        return None
    axes = tuple(range(truth.ndim - 1))
    sst = np.sum((truth - truth.mean(axis=axes)) ** 2)
    value = 1.0 - float(np.sum((prediction - truth) ** 2) / sst)
    return value if math.isfinite(value) else None


def mean_r2(values) -> Optional[float]:
    """The mean of the tasks' R^2; None when one of them diverged."""
    values = list(values)
    return None if any(v is None for v in values) else float(np.mean(values))


def _score(value: Optional[float]) -> float:
    return -math.inf if value is None else value


def _finite(values) -> List[Optional[float]]:
    """Floats for the JSON report (which allows no nan or inf): None where a value is not finite."""
    return [float(v) if math.isfinite(v) else None for v in values]


def tune_learning_rates(submit: Callable[[str, float], Future], methods, exponents) -> Dict[str, dict]:
    """Each method's learning rate from a log grid of exponents, its fits run side by side; a method whose best rate
    (by validation score) lies on an edge of the grid gets one more fit, half a decade beyond that edge. `submit`
    (method, lr) returns a future of (payload, validation score). Per method: {"lr": the best rate, "fits": {rate:
    payload}, "sweep": [{"lr", "validation_r2"}] in order of rate}."""
    futures = {(m, e): submit(m, 10.0 ** e) for m in methods for e in exponents}
    scores = {key: future.result() for key, future in futures.items()}
    grid = sorted(exponents)
    extra = {}
    for m in methods:
        best = max(grid, key=lambda e: _score(scores[m, e][1]))
        if len(grid) > 1 and best in (grid[0], grid[-1]):
            beyond = best + (0.5 if best == grid[-1] else -0.5)
            extra[m, beyond] = submit(m, 10.0 ** beyond)
    scores.update({key: future.result() for key, future in extra.items()})
    tuned = {}
    for m in methods:
        tried = sorted(e for (method, e) in scores if method == m)
        best = max(tried, key=lambda e: _score(scores[m, e][1]))
        tuned[m] = {"lr": float(10.0 ** best), "fits": {float(10.0 ** e): scores[m, e][0] for e in tried},
                    "sweep": [{"lr": float(10.0 ** e), "validation_r2": scores[m, e][1]} for e in tried]}
    return tuned


# --------------------------------------------------------------------------- (a) generation


def system_tasks(system: str, s: dict, seed: int) -> Tuple[Dict[str, np.ndarray], float]:
    """Each task's (n_trajectories, n_steps, d) trajectories, and the time step. Sines: one task per frequency of
    s["sine"]["frequencies"] (cycles per unit time, dt 0.05), its trajectories of amplitude 1 differing by their
    phase, uniform in [0, 2 pi); Van der Pol: one task (mu = 1, dt 0.1, 67 steps a period), its trajectories from
    random initial states in [-3, 3]^2 with their approach to the cycle."""
    if system == "sine":
        rng = np.random.default_rng(seed)
        p = s["sine"]
        n = p["n_trajectories"]
        return {f"f={f:g}": sine_waves(np.full(n, float(f)), p["n_steps"], SINE_DT,
                                       phases=rng.uniform(0, 2 * np.pi, n)) for f in p["frequencies"]}, SINE_DT
    p = s["van_der_pol"]
    return {"mu=1": van_der_pol(p["n_trajectories"], p["n_steps"], dt=VAN_DER_POL_DT, mu=1.0, seed=seed)}, \
        VAN_DER_POL_DT


def split_and_scale(trajectories: np.ndarray, seed: int) -> Dict[str, np.ndarray]:
    """Train / validation / test trajectories (split by initial condition), each coordinate centred and scaled by
    the training trajectories' mean and standard deviation."""
    rest, test = split_by_trajectory(trajectories, TEST_FRACTION, seed=seed)
    train, validation = split_by_trajectory(rest, VALIDATION_FRACTION, seed=seed + 1)
    mean, std = train.mean(axis=(0, 1)), train.std(axis=(0, 1))
    return {name: (part - mean) / std for name, part in (("train", train), ("validation", validation),
                                                          ("test", test))}


def closed_loop_r2(learner: NetworkLearner, trajectories: np.ndarray, s: dict, task: str) -> Optional[float]:
    """R^2 of the trajectories' steps warmup .. warmup + horizon - 1 generated in closed loop by `task`'s network
    after a teacher-forced warm-up on their first s["warmup"] steps."""
    generated = learner.generate(trajectories[:, : s["warmup"]], s["horizon"], task=task)
    return r_squared(generated, trajectories[:, s["warmup"]: s["warmup"] + s["horizon"]])


def task_r2(learner: NetworkLearner, data: Dict[str, Dict[str, np.ndarray]], part: str, s: dict) -> Dict[str, Any]:
    """Closed-loop R^2 on the `part` trajectories of every task."""
    return {task: closed_loop_r2(learner, split[part], s, task) for task, split in data.items()}


def generation_row(learner: NetworkLearner, data: Dict[str, Dict[str, np.ndarray]], s: dict, gain: float,
                   seconds: float) -> dict:
    """One gain's figures: the closed-loop test and validation R^2 averaged over the tasks, and per task with its
    final training loss."""
    test, validation = task_r2(learner, data, "test", s), task_r2(learner, data, "validation", s)
    tasks = {task: {"test_r2": test[task], "validation_r2": validation[task],
                    "final_train_loss": _finite(learner.tasks_[task].history["loss"][-1:])[0]} for task in data}
    return {"gain": gain, "test_r2": mean_r2(test.values()), "validation_r2": mean_r2(validation.values()),
            "tasks": tasks, "seconds": seconds}


def generation_study(system: str, s: dict, seed: int, pool: Executor, progress: bool,
                     while_fitting: Optional[Callable[[dict, dict], None]] = None) -> Tuple[dict, dict]:
    """Every method at every gain on one system's tasks, the learning rate of each method chosen at the reference
    gain by the validation R^2 averaged over the tasks; the fits run side by side on `pool`. `while_fitting`
    (prepared data, {method: chosen lr}) may queue more fits once the rates are known. Returns (the study's JSON,
    the fitted bias-only learners by gain with the data)."""
    trajectories, dt = system_tasks(system, s, seed)
    data = {task: split_and_scale(t, seed) for task, t in trajectories.items()}
    train = {task: windows(split["train"], s["window"], s["window"]) for task, split in data.items()}
    d = next(iter(train.values()))[0].shape[2]
    widths = {m: method_width(m, s["width"], d, d) for m in METHODS}

    def job(method: str, gain: float, lr: float) -> Tuple[Tuple[NetworkLearner, dict], Optional[float]]:
        learner, seconds = fit_tasks(method, widths[method], gain, lr, train, s, seed)
        row = generation_row(learner, data, s, gain, seconds)
        if progress:
            print(f"  {system:11s} {method:14s} g={gain:<4g} lr {lr:<8.3g}: closed-loop validation R^2 "
                  f"{_r2_text(row['validation_r2'])}, test {_r2_text(row['test_r2'])} ({seconds:.0f} s)", flush=True)
        return (learner, row), row["validation_r2"]

    tuned = tune_learning_rates(lambda m, lr: pool.submit(job, m, s["reference_gain"], lr), METHODS,
                                s["lr_exponents"])
    prepared = {"data": data, "train": train}
    if while_fitting is not None:
        while_fitting(prepared, {m: t["lr"] for m, t in tuned.items()})
    others = {(m, g): pool.submit(job, m, g, tuned[m]["lr"]) for g in s["gains"] if g != s["reference_gain"]
              for m in METHODS}
    methods: Dict[str, Any] = {}
    biases_learners: Dict[float, NetworkLearner] = {}
    for m in METHODS:
        fits = {g: (tuned[m]["fits"][tuned[m]["lr"]] if g == s["reference_gain"] else others[m, g].result()[0])
                for g in s["gains"]}
        if m == "biases":
            biases_learners = {g: learner for g, (learner, _) in fits.items()}
        methods[m] = {"width": widths[m], "trained_parameters": trained_parameters(m, widths[m], d, d),
                      "lr": tuned[m]["lr"], "lr_sweep": tuned[m]["sweep"], "rows": [row for _, row in fits.values()]}
    first = next(iter(data))
    example = biases_learners[s["reference_gain"]].generate(data[first]["test"][:1, : s["warmup"]], s["horizon"],
                                                           task=first)[0]
    n_windows = len(train[first][0])
    entry = {"dt": dt, "state_dim": d, "tasks": list(data), "n_train": len(data[first]["train"]),
             "n_validation": len(data[first]["validation"]), "n_test": len(data[first]["test"]),
             "n_windows": n_windows, "epochs": epochs_for(n_windows, s),
             "optimizer_steps": epochs_for(n_windows, s) * steps_per_epoch(n_windows, s), "methods": methods,
             "example": {"task": first, "truth": data[first]["test"][0, s["warmup"]: s["warmup"] + s["horizon"]]
                         .tolist(), "generated": example.tolist()}}
    return entry, {"learners": biases_learners, **prepared}


def width_check_grid(lr_at_width: float, s: dict) -> Tuple[float, ...]:
    """The check width's learning-rate exponents: the rate chosen at s["width"], and that rate times
    sqrt(width / check_width) (under Adam a step of lr on every bias moves the readout's output by about
    lr sqrt(width), each unit's change weighted by a readout weight of size 1/sqrt(width))."""
    carried = math.log10(lr_at_width)
    return (carried + 0.5 * math.log10(s["width"] / s["check_width"]), carried)


def queue_width_check(prepared: dict, lrs: Dict[str, float], s: dict, seed: int, pool: Executor,
                      progress: bool) -> Callable[[], List[dict]]:
    """Queue the fits of s["check_methods"] at s["check_width"] and the reference gain on Van der Pol (each method
    its own learning-rate sweep on `width_check_grid`, not extended: a wide network's fit is the demo's longest);
    returns the function that waits for them and gives their rows."""
    data, train = prepared["data"], prepared["train"]
    d = next(iter(train.values()))[0].shape[2]
    width = s["check_width"]

    def job(method: str, lr: float):
        learner, seconds = fit_tasks(method, width, s["reference_gain"], lr, train, s, seed)
        score = mean_r2(task_r2(learner, data, "validation", s).values())
        if progress:
            print(f"  van der pol {method:14s} width {width} lr {lr:<8.3g}: closed-loop validation R^2 "
                  f"{_r2_text(score)} ({seconds:.0f} s)", flush=True)
        return (learner, seconds), score

    futures = {m: {10.0 ** e: pool.submit(job, m, 10.0 ** e) for e in width_check_grid(lrs[m], s)}
               for m in s["check_methods"]}

    def collect() -> List[dict]:
        rows = []
        for m, by_lr in futures.items():
            fits = {lr: future.result() for lr, future in by_lr.items()}
            lr = max(fits, key=lambda r: _score(fits[r][1]))
            (learner, seconds), _ = fits[lr]
            rows.append({"method": m, "width": width, "gain": s["reference_gain"], "lr": lr, "lr_at_width": lrs[m],
                         "lr_sweep": [{"lr": r, "validation_r2": fits[r][1]} for r in sorted(fits)],
                         "trained_parameters": trained_parameters(m, width, d, d),
                         "test_r2": mean_r2(task_r2(learner, data, "test", s).values()),
                         "loss": _finite(learner.history_["loss"]), "seconds": seconds})
        return rows

    return collect


def _r2_text(value: Optional[float]) -> str:
    return "diverged" if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------- (b) Lorenz


def lorenz_study(s: dict, seed: int, pool: Executor, progress: bool) -> dict:
    """One coordinate h steps ahead (h the training trajectories' autocorrelation half-width, rounded): read from
    the true trajectory by a network trained on delay targets (teacher forced), and from the network's own outputs
    by a next-step model generating h steps after a warm-up (self-sustained)."""
    L = s["lorenz"]
    coordinate = L["coordinate"]
    data = split_and_scale(lorenz(L["n_trajectories"], L["n_steps"], dt=L["dt"], seed=seed), seed)
    # Teacher forcing and generation both start from a zero state: a network reads s["warmup"] true steps first.
    half_width = autocorrelation_half_width(data["train"], coordinate=coordinate)
    h = max(1, round(half_width))
    warmup = s["warmup"]
    x_next, y_next = windows(data["train"], s["window"], s["window"])
    # The delay task's windows: inputs and the coordinate h steps ahead cut together, so that they stay aligned.
    ahead = np.concatenate([data["train"][:, :-h], data["train"][:, h:, coordinate: coordinate + 1]], axis=2)
    paired, _ = windows(ahead, s["window"], s["window"])
    x_delay, y_delay = paired[:, :, :3], paired[:, :, 3:]

    def starts(trajectories):
        """Warm-ups ending at evenly spaced steps t0 - 1 and the truth h steps later (step t0 - 1 + h)."""
        last = trajectories.shape[1] - h
        ends = np.linspace(warmup, last, L["starts_per_trajectory"]).astype(int)
        warm = np.stack([t[e - warmup: e] for t in trajectories for e in ends])
        truth = np.stack([t[e - 1 + h, coordinate] for t in trajectories for e in ends])
        return warm, truth

    def self_sustained_r2(learner, trajectories):
        warm, truth = starts(trajectories)
        generated = learner.generate(warm, h, task="lorenz")
        return r_squared(generated[:, h - 1, coordinate: coordinate + 1], truth[:, None])

    def teacher_forced_r2(learner, trajectories):
        """At the last step of test windows (every other start) of the training windows' length."""
        pairs = np.concatenate([trajectories[:, :-h], trajectories[:, h:, coordinate: coordinate + 1]], axis=2)
        cut, _ = windows(pairs, s["window"], 2)
        return r_squared(learner.predict(cut[:, :, :3], task="lorenz")[:, -1], cut[:, -1, 3:])

    def fit(method: str, x: np.ndarray, y: np.ndarray, lr: float) -> NetworkLearner:
        return fit_tasks(method, s["width"], s["reference_gain"], lr, {"lorenz": (x, y)}, s, seed)[0]

    def next_step_job(method: str, lr: float) -> Tuple[NetworkLearner, Optional[float]]:
        learner = fit(method, x_next, y_next, lr)
        score = self_sustained_r2(learner, data["validation"])
        if progress:
            print(f"  lorenz      {method:14s} lr {lr:<8.3g}: self-sustained validation R^2 {_r2_text(score)}",
                  flush=True)
        return learner, score

    start = time.perf_counter()
    tuned = tune_learning_rates(lambda m, lr: pool.submit(next_step_job, m, lr), LORENZ_METHODS, s["lr_exponents"])
    delays = {m: pool.submit(fit, m, x_delay, y_delay, tuned[m]["lr"]) for m in LORENZ_METHODS}
    rows = {}
    for method in LORENZ_METHODS:
        lr, delay = tuned[method]["lr"], delays[method].result()
        next_step = tuned[method]["fits"][lr]
        rows[method] = {"width": s["width"], "lr": lr, "lr_sweep": tuned[method]["sweep"],
                        "trained_parameters": trained_parameters(method, s["width"], 3, 3),
                        "teacher_forced_r2": teacher_forced_r2(delay, data["test"]),
                        "self_sustained_r2": self_sustained_r2(next_step, data["test"]),
                        "next_step_loss": _finite(next_step.history_["loss"]),
                        "delay_loss": _finite(delay.history_["loss"])}
        if progress:
            print(f"  lorenz      {method:14s}: teacher forced R^2 {_r2_text(rows[method]['teacher_forced_r2'])}, "
                  f"self-sustained {_r2_text(rows[method]['self_sustained_r2'])} at lr {lr:.3g}", flush=True)
    return {"dt": L["dt"], "coordinate": coordinate, "half_width_steps": half_width, "horizon_steps": h,
            "gain": s["reference_gain"], "n_train": len(data["train"]), "n_test": len(data["test"]),
            "steps_per_epoch": {"next_step": steps_per_epoch(len(x_next), s),
                                "delay": steps_per_epoch(len(x_delay), s)},
            "seconds": time.perf_counter() - start, "methods": rows}


# --------------------------------------------------------------------------- (c) the recurrent Jacobian


def closed_loop_pre_activations(params, warmup: np.ndarray, steps: int, leak: float = 1.0):
    """A tanh network of `recurrent_network`'s shape run in float64 numpy: after teacher forcing on `warmup`
    (T0, d), each output is fed back as the next input for `steps` steps. Returns (outputs (steps, d) as
    ``generate`` orders them, pre-activations z_t (steps, width) of the generated steps, the recurrent matrix W as
    the forward pass uses it: z_t = h_{t-1} W + x_t U + b)."""
    (U, b), (W, _), (V, c) = params
    h = np.zeros(W.shape[0])

    def step(h, x):
        z = h @ W + x @ U + b
        return (1 - leak) * h + leak * np.tanh(z), z

    for x in warmup:
        h, _ = step(h, x)
    outputs, pre = [], []
    y = h @ V + c
    for _ in range(steps):
        outputs.append(y)
        h, z = step(h, y)
        pre.append(z)
        y = h @ V + c
    return np.array(outputs), np.array(pre), W


def recurrent_jacobian(z: np.ndarray, W: np.ndarray, leak: float = 1.0) -> np.ndarray:
    """d h_t / d h_{t-1} for h_t = (1 - a) h_{t-1} + a tanh(h_{t-1} W + ...): a diag(tanh'(z_t)) W^T + (1 - a) I
    (rows index h_t, columns h_{t-1}; W^T because the forward pass multiplies the row vector h by W)."""
    return leak * (1.0 - np.tanh(z) ** 2)[:, None] * W.T + (1.0 - leak) * np.eye(len(z))


def jacobian_study(learners: Dict[float, NetworkLearner], data: Dict[str, np.ndarray], task: str, s: dict,
                   seed: int) -> dict:
    """Eigenvalues of the recurrent Jacobian at evenly spaced steps of one generated test trajectory of `task`
    (its train / validation / test `data`), for the sampled network and the bias-trained one, at every gain."""
    warm = data["test"][0, : s["warmup"]]
    rows = []
    for gain, learner in learners.items():
        sampled = sample_params(learner.arch, learner.input_shape_, seed, 0)
        generated = learner.generate(warm, s["horizon"], task=task)
        times = np.linspace(0, s["horizon"] - 1, s["jacobian_times"]).astype(int)
        row: Dict[str, Any] = {"gain": gain, "times": times.tolist()}
        for when, params in (("before", sampled), ("after", learner.tasks_[task].params)):
            outputs, pre, W = closed_loop_pre_activations(params, warm, s["horizon"])
            (U, _), _, (V, _) = params
            eigenvalues = [np.linalg.eigvals(recurrent_jacobian(pre[t], W)) for t in times]
            # With the output fed back, the input path adds V U to the recurrent matrix.
            closed = [np.linalg.eigvals(recurrent_jacobian(pre[t], W + V @ U)) for t in times]
            row[when] = {"spectral_radius": float(np.mean([np.abs(e).max() for e in eigenvalues])),
                         "closed_loop_spectral_radius": float(np.mean([np.abs(e).max() for e in closed])),
                         "eigenvalues": [[[float(v.real), float(v.imag)] for v in e] for e in eigenvalues]}
            if when == "after":
                # The numpy pass reproduces the engine's generation (float32 there): the Jacobian is the model's.
                agree = min(10, s["horizon"])
                row["numpy_vs_engine_max_abs_difference"] = float(np.max(np.abs(outputs[:agree] - generated[:agree])))
        rows.append(row)
    return {"system": "van der pol", "method": "biases", "rows": rows}


# --------------------------------------------------------------------------- (d) the recurrent NNGP


def nngp_study(data: Dict[str, np.ndarray], s: dict, seed: int, threads: int, progress: bool) -> dict:
    """Monte Carlo NNGP of a tanh recurrent network reading the final state (NTK parameterization) at several
    widths against nnpk.analytic's infinite-width kernel, on Van der Pol windows."""
    n = s["nngp"]
    x, _ = windows(data["train"], n["n_steps"], n["n_steps"])
    x = x[: n["n_points"]]

    def network(width):
        return Network((Recurrent(width, "tanh", W_std=n["gain"], b_std=n["b_std"]), Dense(1)))

    exact = np.asarray(analytic(x, arch=network(1), get="nngp", n_threads=threads))
    rows = []
    for width in n["widths"]:
        start = time.perf_counter()
        estimate = monte_carlo(x, arch=network(width), n_networks=n["n_networks"], seed=seed, n_threads=threads)
        error = float(np.linalg.norm(estimate - exact) / np.linalg.norm(exact))
        rows.append({"width": width, "relative_error": error, "seconds": time.perf_counter() - start})
        if progress:
            print(f"  NNGP width {width:5d}: relative Frobenius error {error:.4f}", flush=True)
    return {"n_points": len(x), "n_steps": n["n_steps"], "n_networks": n["n_networks"], "gain": n["gain"],
            "b_std": n["b_std"], "rows": rows}


# --------------------------------------------------------------------------- the report


def run_demo(*, preset: Optional[dict] = None, seed: int = 0, threads: int = 1, progress: bool = False) -> dict:
    """Every part of the demo. The fits run `threads` at a time, one engine thread each (see `make_learner`); a fit
    is the same whichever thread runs it and whatever runs beside it. Van der Pol comes first so that the wide
    networks of the width check, queued once its learning rates are chosen, train beside the other parts."""
    s = FULL if preset is None else preset
    start = time.perf_counter()
    results: Dict[str, Any] = {"version": __version__,
                               "settings": {**s, "seed": seed, "threads": threads, "clip_norm": CLIP_NORM,
                                            "lr_schedule": LR_SCHEDULE, "test_fraction": TEST_FRACTION,
                                            "validation_fraction": VALIDATION_FRACTION}}
    seconds: Dict[str, float] = {}
    generation: Dict[str, Any] = {}
    collect_width_check: List[Callable[[], List[dict]]] = []

    def queue(prepared: dict, lrs: Dict[str, float]) -> None:
        collect_width_check.append(queue_width_check(prepared, lrs, s, seed, pool, progress))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for system in reversed(SYSTEMS):
            part = time.perf_counter()
            generation[system], fits = generation_study(system, s, seed, pool, progress,
                                                        queue if system == "van der pol" else None)
            seconds[system] = time.perf_counter() - part
            if system == "van der pol":
                van_der_pol_fits = fits
        part = time.perf_counter()
        results["lorenz"] = lorenz_study(s, seed, pool, progress)
        seconds["lorenz"] = time.perf_counter() - part
        part = time.perf_counter()
        results["width_check"] = collect_width_check[0]()
        seconds["width check (after the rest)"] = time.perf_counter() - part
    results["generation"] = {system: generation[system] for system in SYSTEMS}
    part = time.perf_counter()
    task = next(iter(van_der_pol_fits["data"]))
    results["jacobian"] = jacobian_study(van_der_pol_fits["learners"], van_der_pol_fits["data"][task], task, s, seed)
    seconds["jacobian"] = time.perf_counter() - part
    part = time.perf_counter()
    results["nngp"] = nngp_study(van_der_pol_fits["data"][task], s, seed, threads, progress)
    seconds["nngp"] = time.perf_counter() - part
    results["part_seconds"] = seconds
    results["verdict"] = verdict(results)
    results["seconds"] = time.perf_counter() - start
    return results


# An R^2 of at least this counts as a generated trajectory that follows the truth, for the description of the
# gains at which bias-only training works.
WORKS_R2 = 0.9


def verdict(results: dict) -> dict:
    """Every configuration whose test R^2 exceeded 0.99; bias-only R^2 by gain per system, the gains where it was at
    least WORKS_R2 and whether every gain below 1 failed while every gain from 1 up worked (a threshold near 1);
    the final next-step training losses on Lorenz (they tell under-training from a generalisation shortfall)."""
    reached = []
    for system, entry in results["generation"].items():
        for method, m in entry["methods"].items():
            reached += [{"system": system, "method": method, "gain": row["gain"], "width": m["width"],
                         "r2": row["test_r2"]} for row in m["rows"] if _score(row["test_r2"]) > 0.99]
    reached += [{"system": "van der pol", "method": row["method"], "gain": row["gain"], "width": row["width"],
                 "r2": row["test_r2"]} for row in results["width_check"] if _score(row["test_r2"]) > 0.99]
    lz = results["lorenz"]
    for method, row in lz["methods"].items():
        for kind in ("teacher_forced", "self_sustained"):
            if _score(row[f"{kind}_r2"]) > 0.99:
                reached.append({"system": f"lorenz ({kind.replace('_', ' ')})", "method": method, "gain": lz["gain"],
                                "width": row["width"], "r2": row[f"{kind}_r2"]})
    by_gain, works, threshold = {}, {}, {}
    for system, entry in results["generation"].items():
        rows = entry["methods"]["biases"]["rows"]
        by_gain[system] = {f"{r['gain']:g}": r["test_r2"] for r in rows}
        works[system] = [r["gain"] for r in rows if _score(r["test_r2"]) >= WORKS_R2]
        fails = [r["gain"] for r in rows if _score(r["test_r2"]) < WORKS_R2]
        threshold[system] = bool(works[system] and fails) and max(fails) < 1 <= min(works[system])
    loss = {m: _last(row["next_step_loss"]) for m, row in lz["methods"].items()}
    return {"r2_above_0.99": reached, "biases_r2_by_gain": by_gain, f"biases_gains_with_r2_at_least_{WORKS_R2}": works,
            "biases_threshold_near_gain_1": threshold, "lorenz_final_next_step_loss": loss}


def _last(values: List[Optional[float]]) -> Optional[float]:
    return values[-1] if values else None


def _finite_or_inf(value: Optional[float]) -> float:
    return math.inf if value is None else value


def _cell(value: Optional[float]) -> str:
    return "diverged" if value is None else f"{value:.3f}"


def _loss(value: Optional[float]) -> str:
    return "diverged" if value is None else f"{value:.2g}"


def tables(results: dict) -> List[str]:
    s = results["settings"]
    lines = []
    for system, entry in results["generation"].items():
        methods = entry["methods"]
        over = f", mean over its {len(entry['tasks'])} tasks" if len(entry["tasks"]) > 1 else ""
        lines += [f"### (a) {system}: closed-loop test R^2 over {s['horizon']} steps after a {s['warmup']}-step "
                  f"warm-up{over}", "",
                  "| gain | " + " | ".join(METHODS) + " |", "| ---: | " + " | ".join("---:" for _ in METHODS) + " |"]
        for i, gain in enumerate(s["gains"]):
            lines.append(f"| {gain:g} | " + " | ".join(_cell(methods[m]["rows"][i]["test_r2"]) for m in METHODS)
                         + " |")
        lines.append("| width | " + " | ".join(str(methods[m]["width"]) for m in METHODS) + " |")
        lines.append("| trained parameters | " + " | ".join(str(methods[m]["trained_parameters"]) for m in METHODS)
                     + " |")
        lines.append("| learning rate | " + " | ".join(f"{methods[m]['lr']:.3g}" for m in METHODS) + " |")
        lines.append("")
        if len(entry["tasks"]) > 1:
            i = list(s["gains"]).index(s["reference_gain"])
            lines += [f"Per task at gain {s['reference_gain']:g} (closed-loop test R^2):", "",
                      "| task | " + " | ".join(METHODS) + " |", "| --- | " + " | ".join("---:" for _ in METHODS) + " |"]
            lines += [f"| {task} | " + " | ".join(_cell(methods[m]["rows"][i]["tasks"][task]["test_r2"])
                                                  for m in METHODS) + " |" for task in entry["tasks"]]
            lines.append("")
    check = results["width_check"]
    if check:
        lines += [f"### (a) van der pol at width {check[0]['width']}, gain {check[0]['gain']:g}: own learning-rate "
                  "sweep", "",
                  f"| method | trained parameters | lr at width {s['width']} | sweep: lr (validation R^2) | "
                  "chosen lr | closed-loop test R^2 | seconds |", "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
        for row in check:
            sweep = ", ".join(f"{r['lr']:.3g} ({_cell(r['validation_r2'])})" for r in row["lr_sweep"])
            lines.append(f"| {row['method']} | {row['trained_parameters']} | {row['lr_at_width']:.3g} | {sweep} | "
                         f"{row['lr']:.3g} | {_cell(row['test_r2'])} | {row['seconds']:.0f} |")
        lines.append("")
    lz = results["lorenz"]
    lines += [f"### (b) lorenz: coordinate {'xyz'[lz['coordinate']]} {lz['horizon_steps']} steps ahead "
              f"(half-width {lz['half_width_steps']:.1f} steps of {lz['dt']:g}), gain {lz['gain']:g}", "",
              "| method | trained parameters | learning rate | final training loss (next step) | teacher forced R^2 | "
              "self-sustained R^2 |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for method, row in lz["methods"].items():
        lines.append(f"| {method} | {row['trained_parameters']} | {row['lr']:.3g} | "
                     f"{_loss(_last(row['next_step_loss']))} | {_cell(row['teacher_forced_r2'])} | "
                     f"{_cell(row['self_sustained_r2'])} |")
    lines += ["", "### (c) recurrent Jacobian along a generated Van der Pol trajectory (bias-only), mean spectral "
              "radius", "",
              "| gain | before | after | closed loop before | closed loop after |",
              "| ---: | ---: | ---: | ---: | ---: |"]
    for row in results["jacobian"]["rows"]:
        b, a = row["before"], row["after"]
        lines.append(f"| {row['gain']:g} | {b['spectral_radius']:.3f} | {a['spectral_radius']:.3f} | "
                     f"{b['closed_loop_spectral_radius']:.3f} | {a['closed_loop_spectral_radius']:.3f} |")
    nngp = results["nngp"]
    lines += ["", f"### (d) recurrent NNGP: Monte Carlo ({nngp['n_networks']} networks) against the analytic kernel",
              "", "| width | relative Frobenius error |", "| ---: | ---: |"]
    lines += [f"| {row['width']} | {row['relative_error']:.4f} |" for row in nngp["rows"]]
    lines.append("")
    return lines


def _by_gain(r2: Dict[str, Optional[float]]) -> str:
    return ", ".join(f"{_cell(v)} at g={g}" for g, v in r2.items())


def _reached(items: List[dict]) -> str:
    """Configurations grouped by system and method: 'sine: `biases` at g = 1 (0.996), 1.2 (0.997)'."""
    groups: Dict[Tuple[str, str, int], List[str]] = {}
    for r in items:
        groups.setdefault((r["system"], r["method"], r["width"]), []).append(f"{r['gain']:g} ({_cell(r['r2'])})")
    return "; ".join(f"{system}, `{method}` (width {width}) at g = {', '.join(at)}"
                     for (system, method, width), at in groups.items()) or "nowhere"


def gain_shape(by_gain: Dict[str, Optional[float]]) -> str:
    """Where R^2 >= WORKS_R2 among the gains, and whether the gains that fail all lie below those that work (a
    threshold), in words."""
    works = [float(g) for g, r2 in by_gain.items() if _score(r2) >= WORKS_R2]
    fails = [float(g) for g, r2 in by_gain.items() if _score(r2) < WORKS_R2]
    if not fails:
        return f"R^2 >= {WORKS_R2} at every gain: no failure below gain 1"
    if not works:
        return f"R^2 < {WORKS_R2} at every gain"
    listed = (f"R^2 < {WORKS_R2} at g = {', '.join(f'{g:g}' for g in fails)}, >= {WORKS_R2} at g = "
              f"{', '.join(f'{g:g}' for g in works)}")
    if max(fails) > min(works):
        return f"{listed}: no single threshold"
    where = "the claimed one near 1" if max(fails) < 1 <= min(works) else (
        "below 1, not the claimed one" if min(works) < 1 else "above 1, not the claimed one")
    return f"{listed}: a threshold between g = {max(fails):g} and {min(works):g}, {where}"


def conclusion(results: dict) -> List[str]:
    """What was found, in plain terms with the numbers."""
    v, s = results["verdict"], results["settings"]
    reached = v["r2_above_0.99"]
    bias_only = [r for r in reached if r["method"] in ("biases", "biases+readout")]
    best = max(((system, g, r2) for system, by in v["biases_r2_by_gain"].items() for g, r2 in by.items()),
               key=lambda t: _score(t[2]))
    lines = ["## What was found", "",
             "- Test R^2 > 0.99 with bias-only training (`biases` or `biases+readout`): " + _reached(bias_only)
             + ("." if bias_only else f"; the best `biases` R^2 was {_cell(best[2])} ({best[0]}, gain {best[1]})."),
             "- Test R^2 > 0.99 with the other methods: "
             + _reached([r for r in reached if r not in bias_only]) + "."]
    for system, by in v["biases_r2_by_gain"].items():
        methods = results["generation"][system]["methods"]
        i = list(s["gains"]).index(s["reference_gain"])
        others = ", ".join(f"{m} {_cell(methods[m]['rows'][i]['test_r2'])}" for m in METHODS if m != "biases")
        lines.append(f"- {system}, `biases` (width {s['width']}): {_by_gain(by)}; {gain_shape(by)}. At gain "
                     f"{s['reference_gain']:g} the other methods: {others}.")
    for row in results["width_check"]:
        i = list(s["gains"]).index(row["gain"])
        at_width = results["generation"]["van der pol"]["methods"][row["method"]]["rows"][i]["test_r2"]
        lines.append(f"- van der pol, `{row['method']}` at width {row['width']}, gain {row['gain']:g}: R^2 "
                     f"{_cell(row['test_r2'])} with its own lr {row['lr']:.3g}; at width {s['width']}: R^2 "
                     f"{_cell(at_width)} at lr {row['lr_at_width']:.3g}.")
    lz = results["lorenz"]["methods"]
    lines.append("- Lorenz, R^2 of the coordinate at the half-width horizon: " + "; ".join(
        f"{m}: teacher forced {_cell(row['teacher_forced_r2'])}, self-sustained {_cell(row['self_sustained_r2'])}"
        for m, row in lz.items()) + ".")
    loss = v["lorenz_final_next_step_loss"]
    if _score(lz["all"]["self_sustained_r2"]) < _score(lz["biases"]["self_sustained_r2"]):
        fits_better = _finite_or_inf(loss["all"]) < _finite_or_inf(loss["biases"])
        lines.append(f"- Lorenz `all` self-sustains worse than `biases`; its final next-step training loss is "
                     f"{_loss(loss['all'])} against {_loss(loss['biases'])}: "
                     + ("it fits the training windows better, so the shortfall is in generalisation or in running on "
                        "its own outputs, not in optimisation." if fits_better else
                        "it also fits the training windows worse: under-trained at this budget."))
    lines.append(f"- Every fit: {s['optimizer_steps']}+ Adam steps (cosine decay after {s['warmup_steps']} warm-up "
                 "steps, clipped gradients), its learning rate chosen per method, system and width at gain "
                 f"{s['reference_gain']:g} by validation R^2.")
    lines.append("")
    return lines


def markdown(results: dict, plot_file: str) -> str:
    s = results["settings"]
    lz, sine, vdp = s["lorenz"], s["sine"], s["van_der_pol"]
    check = results["width_check"]
    lines = [f"# Random recurrent networks learning dynamical systems (nnpk {results['version']})", "",
             f"Tanh recurrent layer (standard parameterization: U ~ N(0, 1/d), W ~ N(0, g^2/m), biases from 0) and a "
             f"Dense readout of every step; width m = {s['width']}; seed {s['seed']}. Trajectories split by initial "
             f"condition into train / validation / test ({1 - s['test_fraction']:.0%} of them split "
             f"{1 - s['validation_fraction']:.0%} / {s['validation_fraction']:.0%}, then {s['test_fraction']:.0%} "
             "test), every coordinate scaled by the training trajectories' mean and standard deviation (per task). "
             f"Training: next-step targets on non-overlapping windows of {s['window']} steps (teacher forcing), the "
             f"squared loss of every step, Adam with minibatches of {s['batch_size']} for at least "
             f"{s['optimizer_steps']} steps per fit, the learning rate rising over {s['warmup_steps']} steps then "
             f"decaying to 0 on a cosine, gradients clipped to norm {s['clip_norm']}, float32. Learning rate per "
             f"method, system and width: a log grid 10^({', '.join(f'{e:g}' for e in s['lr_exponents'])}) at gain "
             f"{s['reference_gain']:g}, extended by half a decade past an edge that scored best, chosen by "
             "closed-loop R^2 on the validation trajectories (averaged over the tasks), then used at every gain. "
             "Methods: `biases` trains the recurrent bias and the readout's bias (the readout's weights stay random, "
             "as train='biases' leaves them); `biases+readout` also the readout's weights; `readout` the readout "
             "alone; `full (small)` every parameter of a narrower network with about as many trained parameters as "
             "`biases`. Each task is its own fit on the same random network (one set of biases per task). R^2 = 1 - "
             "SSE / SST over all test trajectories, steps and coordinates of a task ('diverged': the generation left "
             "the floats).", "",
             f"(a) Sine waves: {len(sine['frequencies'])} tasks, frequencies "
             f"{', '.join(f'{f:g}' for f in sine['frequencies'])} per unit time (dt {SINE_DT}), each with "
             f"{sine['n_trajectories']} trajectories of {sine['n_steps']} steps, amplitude 1, phases uniform: "
             f"generation on held-out phases. Van der Pol: one task (mu 1, dt {VAN_DER_POL_DT}, from initial states in "
             f"[-3, 3]^2), {vdp['n_trajectories']} trajectories of {vdp['n_steps']} steps"
             + (f"; also at width {check[0]['width']} with its own learning-rate sweep of two rates, the one chosen "
                f"at width {s['width']} and that times sqrt({s['width']}/{check[0]['width']}) (under Adam, a step of "
                "lr on every bias moves the readout by about lr sqrt(m)), chosen by validation R^2" if check else "")
             + f". (b) Lorenz ({lz['n_trajectories']} trajectories of {lz['n_steps']} steps, dt {lz['dt']}): the "
             "next-step model generates h steps after a warm-up at several starts of each test trajectory "
             "(self-sustained); a network reading the true trajectory is trained on the coordinate h steps ahead "
             "(teacher forced). (c) Eigenvalues of J_t = diag(tanh'(z_t)) W^T (leak 1; z_t = h_{t-1} W + x_t U + b) "
             f"at {s['jacobian_times']} steps of a generated test trajectory; 'closed loop' uses W + V U (V the "
             "readout), which adds the path through the fed-back output. (d) Network: Recurrent(m, tanh, W_std "
             f"{s['nngp']['gain']}, b_std {s['nngp']['b_std']}) reading the final state, NTK parameterization, on "
             f"{s['nngp']['n_points']} Van der Pol windows of {s['nngp']['n_steps']} steps.", "",
             *conclusion(results), *tables(results), f"![recurrent]({plot_file})", "",
             "Seconds per part: " + ", ".join(f"{k} {v:.0f}" for k, v in results["part_seconds"].items())
             + f"; {results['seconds']:.0f} s in all on {s['threads']} threads.", ""]
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(20, 13))
    FigureCanvasAgg(figure)
    axes = figure.subplots(3, 4)
    _plot_generation(results, axes[0])
    _plot_training(results, axes[1])
    _plot_jacobian_and_nngp(results, axes[2])
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def _plot_generation(results: dict, axes) -> None:
    """R^2 against gain per system, the bias-only network's generated test trajectory of each system."""
    s = results["settings"]
    for ax, (system, entry) in zip(axes[:2], results["generation"].items()):
        for method in METHODS:
            rows = entry["methods"][method]["rows"]
            ax.plot([r["gain"] for r in rows], [max(-1.0, _score(r["test_r2"])) for r in rows], marker="o",
                    label=f"{method} ({entry['methods'][method]['trained_parameters']} trained)")
        ax.axhline(0.99, color="grey", linestyle=":", linewidth=0.8)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("recurrent gain g")
        ax.set_ylabel("closed-loop test R^2 (clipped at -1)")
        ax.set_title(f"(a) {system}" + (" (mean over tasks)" if len(entry["tasks"]) > 1 else ""))
        ax.legend(fontsize=7)
    example = results["generation"]["sine"]["example"]
    ax = axes[2]
    ax.plot(np.array(example["truth"])[:, 0], color="black", label="truth")
    ax.plot(np.array(example["generated"])[:, 0], color="tab:blue", linestyle="--", label="generated (biases)")
    ax.set_title(f"(a) sine {example['task']}, gain {s['reference_gain']:g}: a held-out phase")
    ax.set_xlabel("step after the warm-up")
    ax.legend(fontsize=7)
    example = results["generation"]["van der pol"]["example"]
    ax = axes[3]
    truth, generated = np.array(example["truth"]), np.array(example["generated"])
    ax.plot(truth[:, 0], truth[:, 1], color="black", label="truth")
    ax.plot(generated[:, 0], generated[:, 1], color="tab:blue", linestyle="--", label="generated (biases)")
    ax.set_title(f"(a) van der pol, gain {s['reference_gain']:g}: a test trajectory")
    ax.set_xlabel("x (scaled)")
    ax.set_ylabel("y (scaled)")
    ax.legend(fontsize=7)


def _plot_training(results: dict, axes) -> None:
    """The learning-rate sweeps, Lorenz's R^2 and training-loss curves."""
    for ax, system in zip(axes[:2], results["generation"]):
        for method, m in results["generation"][system]["methods"].items():
            sweep = m["lr_sweep"]
            ax.semilogx([r["lr"] for r in sweep], [max(-1.0, _score(r["validation_r2"])) for r in sweep], marker="o",
                        label=method)
        if system == "van der pol":
            for row in results["width_check"]:
                ax.semilogx([r["lr"] for r in row["lr_sweep"]],
                            [max(-1.0, _score(r["validation_r2"])) for r in row["lr_sweep"]], marker="s",
                            linestyle="--", label=f"{row['method']}, width {row['width']}")
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("peak learning rate")
        ax.set_ylabel("validation R^2 (clipped at -1)")
        ax.set_title(f"(a) {system}: learning-rate sweep at gain {results['settings']['reference_gain']:g}")
        ax.legend(fontsize=7)
    lorenz = results["lorenz"]
    lz = lorenz["methods"]
    ax = axes[2]
    position = np.arange(len(lz))
    for i, key in enumerate(("teacher_forced_r2", "self_sustained_r2")):
        ax.bar(position + (i - 0.5) * 0.35, [max(-1.0, _score(row[key])) for row in lz.values()], 0.35,
               label=key.replace("_r2", "").replace("_", " "))
    ax.set_xticks(position, list(lz))
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("test R^2 (clipped at -1)")
    ax.set_title(f"(b) lorenz, {lorenz['horizon_steps']} steps ahead")
    ax.legend(fontsize=7)
    ax = axes[3]
    per_epoch = lorenz["steps_per_epoch"]["next_step"]
    for method, row in lz.items():
        loss = np.array([math.nan if v is None else v for v in row["next_step_loss"]])
        ax.semilogy(per_epoch * np.arange(1, len(loss) + 1), loss, label=f"{method} (lr {row['lr']:.3g})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mean training loss of the epoch")
    ax.set_title("(b) lorenz next-step model: training loss")
    ax.legend(fontsize=7)


def _plot_jacobian_and_nngp(results: dict, axes) -> None:
    jac = results["jacobian"]["rows"]
    shown = [jac[0], jac[-1]] if len(jac) > 1 else jac
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 200))
    for ax, row in zip(axes[:2], shown):
        for when, color in (("before", "tab:grey"), ("after", "tab:red")):
            values = np.array([v for e in row[when]["eigenvalues"] for v in e])
            ax.scatter(values[:, 0], values[:, 1], s=4, color=color, alpha=0.5,
                       label=f"{when} (radius {row[when]['spectral_radius']:.2f})")
        ax.plot(circle.real, circle.imag, color="black", linewidth=0.8)
        ax.set_aspect("equal")
        ax.set_title(f"(c) Jacobian eigenvalues, gain {row['gain']:g}")
        ax.legend(fontsize=7)
    ax = axes[2]
    gains = [row["gain"] for row in jac]
    for when in ("before", "after"):
        ax.plot(gains, [row[when]["spectral_radius"] for row in jac], marker="o", label=f"recurrent, {when}")
        ax.plot(gains, [row[when]["closed_loop_spectral_radius"] for row in jac], marker="s", linestyle="--",
                label=f"closed loop, {when}")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xlabel("recurrent gain g")
    ax.set_ylabel("mean spectral radius")
    ax.set_title("(c) spectral radius along the trajectory")
    ax.legend(fontsize=7)
    ax = axes[3]
    rows = results["nngp"]["rows"]
    widths = np.array([r["width"] for r in rows], dtype=float)
    errors = np.array([r["relative_error"] for r in rows])
    ax.loglog(widths, errors, marker="o", label="Monte Carlo vs analytic")
    ax.loglog(widths, errors[0] * np.sqrt(widths[0] / widths), color="grey", linestyle=":", label="width^-1/2")
    ax.set_xlabel("width")
    ax.set_ylabel("relative Frobenius error")
    ax.set_title("(d) recurrent NNGP")
    ax.legend(fontsize=7)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nnpk demo recurrent", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="trajectories, splits, networks and minibatch order")
    parser.add_argument("--threads", type=int, default=None, help="default: all physical cores")
    parser.add_argument("--out", default=os.path.join("nnpk-report", "recurrent"), help="report folder")
    parser.add_argument("--quick", action="store_true", help="under a minute: narrow networks, two gains, two sine "
                        "tasks, few steps")
    args = parser.parse_args(argv)
    threads = resolve_n_threads(args.threads)
    print(f"nnpk {__version__} demo recurrent: {threads} threads", flush=True)
    from threadpoolctl import threadpool_limits

    # LAPACK on one thread beside the engine's OpenMP workers (see `nnpk demo`).
    with threadpool_limits(1, user_api="blas"):
        results = run_demo(preset=QUICK if args.quick else FULL, seed=args.seed, threads=threads, progress=True)
        files = write_report(results, args.out, "recurrent", markdown, plot)
    print("\n".join(conclusion(results) + tables(results)))
    print(f"{results['seconds']:.1f} s; report: {os.path.abspath(args.out)} "
          f"({', '.join(os.path.basename(p) for p in files.values())})")
    return 0
