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
from typing import Any, Dict, List, Optional, Tuple

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
VALIDATION_FRACTION = 0.2
TEST_FRACTION = 0.25
FULL: Dict[str, Any] = {
    "width": 256, "gains": (0.5, 0.8, 1.0, 1.2, 1.5), "reference_gain": 1.0,
    "lr_exponents": (-2.5, -2.0, -1.5), "optimizer_steps": 150, "batch_size": 32, "window": 25,
    "n_trajectories": 24, "n_steps": 300, "warmup": 25, "horizon": 100, "check_width": 1024,
    "lorenz": {"n_trajectories": 16, "n_steps": 400, "dt": 0.02, "coordinate": 0, "starts_per_trajectory": 8},
    "jacobian_times": 5,
    "nngp": {"widths": (64, 256, 1024, 4096), "n_networks": 4, "n_points": 16, "n_steps": 20, "gain": 1.2,
             "b_std": 0.1},
}
QUICK: Dict[str, Any] = {
    "width": 32, "gains": (0.5, 1.5), "reference_gain": 1.5,
    "lr_exponents": (-2.0, -1.5), "optimizer_steps": 20, "batch_size": 32, "window": 20,
    "n_trajectories": 8, "n_steps": 120, "warmup": 20, "horizon": 40, "check_width": None,
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


def make_learner(method: str, width: int, gain: float, d_out: int, lr: float, epochs: int, s: dict, seed: int,
                 threads: int) -> NetworkLearner:
    """Adam on the squared loss of every step, gradients clipped to norm CLIP_NORM, float32 passes."""
    arch = recurrent_network(width, gain, d_out)
    common = dict(seed=seed, optimizer="adam", lr=lr, epochs=epochs, batch_size=s["batch_size"], loss="squared",
                  dtype="float32", n_threads=threads, random_state=seed)
    if method in ("biases", "biases+readout"):
        learner: NetworkLearner = BiasLearner(arch, train=method, **common)
        learner.clip_norm = CLIP_NORM  # BiasLearner's constructor leaves NetworkLearner's clipping at None
        return learner
    train = "readout" if method == "readout" else "all"
    return NetworkLearner(arch, train=train, clip_norm=CLIP_NORM, **common)


def epochs_for(n_rows: int, s: dict) -> int:
    """Epochs that give at least s["optimizer_steps"] Adam steps with minibatches of s["batch_size"]."""
    return max(1, math.ceil(s["optimizer_steps"] / math.ceil(n_rows / s["batch_size"])))


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


def _score(value: Optional[float]) -> float:
    return -math.inf if value is None else value


def lr_grid(exponents) -> List[float]:
    return [float(10.0 ** e) for e in exponents]


def tune_learning_rate(fit_and_score, exponents) -> Tuple[float, Dict[float, Any], List[dict]]:
    """A log grid of learning rates, extended by one half-decade beyond an edge that scored best (once per edge):
    (the best rate by validation score, {rate: what fit_and_score returned}, the sweep's rows)."""
    exponents = list(exponents)
    fits: Dict[float, Any] = {}
    for e in exponents:
        fits[e] = fit_and_score(10.0 ** e)
    step = 0.5
    for edge, beyond in ((max, exponents[-1] + step), (min, exponents[0] - step)):
        best = max(fits, key=lambda e: _score(fits[e][1]))
        if best == edge(exponents):
            fits[beyond] = fit_and_score(10.0 ** beyond)
    best = max(fits, key=lambda e: _score(fits[e][1]))
    rows = [{"lr": float(10.0 ** e), "validation_r2": fits[e][1]} for e in sorted(fits)]
    return float(10.0 ** best), {float(10.0 ** e): v for e, v in fits.items()}, rows


# --------------------------------------------------------------------------- (a) generation


def system_trajectories(system: str, s: dict, seed: int) -> Tuple[np.ndarray, float]:
    """(n_trajectories, n_steps, d) trajectories and their time step. Sines: one per trajectory, frequency uniform
    in [0.5, 1] cycles per unit time and phase uniform, dt 0.05 (20 to 40 steps a period); Van der Pol: mu = 1,
    dt 0.1 (67 steps a period), from random initial states in [-3, 3]^2 with their approach to the cycle."""
    if system == "sine":
        rng = np.random.default_rng(seed)
        n = s["n_trajectories"]
        return sine_waves(rng.uniform(0.5, 1.0, n), s["n_steps"], 0.05, phases=rng.uniform(0, 2 * np.pi, n)), 0.05
    return van_der_pol(s["n_trajectories"], s["n_steps"], dt=0.1, mu=1.0, seed=seed), 0.1


def split_and_scale(trajectories: np.ndarray, seed: int) -> Dict[str, np.ndarray]:
    """Train / validation / test trajectories (split by initial condition), each coordinate centred and scaled by
    the training trajectories' mean and standard deviation."""
    rest, test = split_by_trajectory(trajectories, TEST_FRACTION, seed=seed)
    train, validation = split_by_trajectory(rest, VALIDATION_FRACTION, seed=seed + 1)
    mean, std = train.mean(axis=(0, 1)), train.std(axis=(0, 1))
    return {name: (part - mean) / std for name, part in (("train", train), ("validation", validation),
                                                          ("test", test))}


def closed_loop_r2(learner: NetworkLearner, trajectories: np.ndarray, s: dict) -> Optional[float]:
    """R^2 of the trajectories' steps warmup .. warmup + horizon - 1 generated in closed loop after a teacher-forced
    warm-up on their first s["warmup"] steps."""
    generated = learner.generate(trajectories[:, : s["warmup"]], s["horizon"])
    return r_squared(generated, trajectories[:, s["warmup"]: s["warmup"] + s["horizon"]])


def generation_study(system: str, s: dict, seed: int, threads: int, progress: bool) -> Tuple[dict, dict]:
    """Every method at every gain on one system: (the study's JSON, the fitted bias-only learners by gain)."""
    trajectories, dt = system_trajectories(system, s, seed)
    data = split_and_scale(trajectories, seed)
    x, y = windows(data["train"], s["window"], s["window"])
    d = x.shape[2]
    epochs = epochs_for(len(x), s)
    methods: Dict[str, Any] = {}
    biases_learners: Dict[float, NetworkLearner] = {}
    for method in METHODS:
        width = method_width(method, s["width"], d, d)

        def fit(gain: float, lr: float, method: str = method, width: int = width) -> Tuple[NetworkLearner, float]:
            start = time.perf_counter()
            learner = make_learner(method, width, gain, d, lr, epochs, s, seed, threads)
            learner.fit(x, y)
            return learner, time.perf_counter() - start

        def fit_and_score(lr: float):
            learner, seconds = fit(s["reference_gain"], lr)
            return (learner, seconds), closed_loop_r2(learner, data["validation"], s)

        lr, sweep_fits, sweep = tune_learning_rate(fit_and_score, s["lr_exponents"])
        rows = []
        for gain in s["gains"]:
            learner, seconds = sweep_fits[lr][0] if gain == s["reference_gain"] else fit(gain, lr)
            loss = learner.history_["loss"]
            row = {"gain": gain, "test_r2": closed_loop_r2(learner, data["test"], s),
                   "validation_r2": closed_loop_r2(learner, data["validation"], s),
                   "final_train_loss": float(loss[-1]) if math.isfinite(loss[-1]) else None, "seconds": seconds}
            rows.append(row)
            if method == "biases":
                biases_learners[gain] = learner
            if progress:
                print(f"  {system:11s} {method:14s} g={gain:<4g}: closed-loop test R^2 {_r2_text(row['test_r2'])} "
                      f"({seconds:.1f} s)", flush=True)
        methods[method] = {"width": width, "trained_parameters": trained_parameters(method, width, d, d),
                           "lr": lr, "lr_sweep": sweep, "rows": rows}
    example = biases_learners[s["reference_gain"]].generate(data["test"][:1, : s["warmup"]], s["horizon"])[0]
    entry = {"dt": dt, "state_dim": d, "n_train": len(data["train"]), "n_validation": len(data["validation"]),
             "n_test": len(data["test"]), "n_windows": len(x), "epochs": epochs, "methods": methods,
             "example": {"truth": data["test"][0, s["warmup"]: s["warmup"] + s["horizon"]].tolist(),
                         "generated": example.tolist()}}
    return entry, {"learners": biases_learners, "data": data}


def width_check(data: Dict[str, np.ndarray], study: dict, s: dict, seed: int, threads: int,
                progress: bool) -> List[dict]:
    """The bias-only methods at s["check_width"] and the reference gain, with the rate chosen at s["width"]."""
    x, y = windows(data["train"], s["window"], s["window"])
    rows = []
    for method in ("biases", "biases+readout"):
        start = time.perf_counter()
        lr = study["methods"][method]["lr"]
        learner = make_learner(method, s["check_width"], s["reference_gain"], x.shape[2], lr, epochs_for(len(x), s),
                               s, seed, threads)
        learner.fit(x, y)
        row = {"method": method, "width": s["check_width"], "gain": s["reference_gain"], "lr": lr,
               "trained_parameters": trained_parameters(method, s["check_width"], x.shape[2], x.shape[2]),
               "test_r2": closed_loop_r2(learner, data["test"], s), "seconds": time.perf_counter() - start}
        rows.append(row)
        if progress:
            print(f"  van der pol {method:14s} width {s['check_width']}: closed-loop test R^2 "
                  f"{_r2_text(row['test_r2'])} ({row['seconds']:.1f} s)", flush=True)
    return rows


def _r2_text(value: Optional[float]) -> str:
    return "diverged" if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------- (b) Lorenz


def lorenz_study(s: dict, seed: int, threads: int, progress: bool) -> dict:
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
        generated = learner.generate(warm, h)
        return r_squared(generated[:, h - 1, coordinate: coordinate + 1], truth[:, None])

    def teacher_forced_r2(learner, trajectories):
        """At the last step of test windows (every other start) of the training windows' length."""
        pairs = np.concatenate([trajectories[:, :-h], trajectories[:, h:, coordinate: coordinate + 1]], axis=2)
        cut, _ = windows(pairs, s["window"], 2)
        return r_squared(learner.predict(cut[:, :, :3])[:, -1], cut[:, -1, 3:])

    rows = {}
    for method in LORENZ_METHODS:
        def fit(x, y, lr, method=method):
            learner = make_learner(method, s["width"], s["reference_gain"], y.shape[2], lr, epochs_for(len(x), s), s,
                                   seed, threads)
            return learner.fit(x, y)

        def fit_and_score(lr):
            learner = fit(x_next, y_next, lr)
            return learner, self_sustained_r2(learner, data["validation"])

        start = time.perf_counter()
        lr, fits, sweep = tune_learning_rate(fit_and_score, s["lr_exponents"])
        delay = fit(x_delay, y_delay, lr)
        rows[method] = {"width": s["width"], "lr": lr, "lr_sweep": sweep,
                        "trained_parameters": trained_parameters(method, s["width"], 3, 3),
                        "teacher_forced_r2": teacher_forced_r2(delay, data["test"]),
                        "self_sustained_r2": self_sustained_r2(fits[lr][0], data["test"]),
                        "seconds": time.perf_counter() - start}
        if progress:
            print(f"  lorenz      {method:14s}: teacher forced R^2 {_r2_text(rows[method]['teacher_forced_r2'])}, "
                  f"self-sustained {_r2_text(rows[method]['self_sustained_r2'])}", flush=True)
    return {"dt": L["dt"], "coordinate": coordinate, "half_width_steps": half_width, "horizon_steps": h,
            "gain": s["reference_gain"], "n_train": len(data["train"]), "n_test": len(data["test"]),
            "methods": rows}


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


def jacobian_study(learners: Dict[float, NetworkLearner], data: Dict[str, np.ndarray], s: dict, seed: int) -> dict:
    """Eigenvalues of the recurrent Jacobian at evenly spaced steps of one generated test trajectory, for the
    sampled network and the bias-trained one, at every gain."""
    warm = data["test"][0, : s["warmup"]]
    rows = []
    for gain, learner in learners.items():
        sampled = sample_params(learner.arch, learner.input_shape_, seed, 0)
        generated = learner.generate(warm, s["horizon"])
        times = np.linspace(0, s["horizon"] - 1, s["jacobian_times"]).astype(int)
        row: Dict[str, Any] = {"gain": gain, "times": times.tolist()}
        for when, params in (("before", sampled), ("after", learner.params_)):
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
    s = FULL if preset is None else preset
    start = time.perf_counter()
    results: Dict[str, Any] = {"version": __version__,
                               "settings": {**s, "seed": seed, "threads": threads,
                                            "clip_norm": CLIP_NORM, "test_fraction": TEST_FRACTION,
                                            "validation_fraction": VALIDATION_FRACTION},
                               "generation": {}}
    seconds: Dict[str, float] = {}
    van_der_pol_fits: Dict[str, Any] = {}
    for system in SYSTEMS:
        part = time.perf_counter()
        results["generation"][system], fits = generation_study(system, s, seed, threads, progress)
        seconds[system] = time.perf_counter() - part
        if system == "van der pol":
            van_der_pol_fits = fits
    part = time.perf_counter()
    results["width_check"] = ([] if s["check_width"] is None else
                              width_check(van_der_pol_fits["data"], results["generation"]["van der pol"], s, seed,
                                          threads, progress))
    seconds["width check"] = time.perf_counter() - part
    part = time.perf_counter()
    results["lorenz"] = lorenz_study(s, seed, threads, progress)
    seconds["lorenz"] = time.perf_counter() - part
    part = time.perf_counter()
    results["jacobian"] = jacobian_study(van_der_pol_fits["learners"], van_der_pol_fits["data"], s, seed)
    seconds["jacobian"] = time.perf_counter() - part
    part = time.perf_counter()
    results["nngp"] = nngp_study(van_der_pol_fits["data"], s, seed, threads, progress)
    seconds["nngp"] = time.perf_counter() - part
    results["part_seconds"] = seconds
    results["verdict"] = verdict(results)
    results["seconds"] = time.perf_counter() - start
    return results


def verdict(results: dict) -> dict:
    """Where bias-only training (either variant) reached closed-loop test R^2 > 0.99, and whether it failed below
    gain 1 on Van der Pol while succeeding at or above it."""
    reached = []
    for system, entry in results["generation"].items():
        for method in ("biases", "biases+readout"):
            for row in entry["methods"][method]["rows"]:
                if _score(row["test_r2"]) > 0.99:
                    reached.append({"system": system, "method": method, "gain": row["gain"]})
    for row in results["width_check"]:
        if _score(row["test_r2"]) > 0.99:
            reached.append({"system": "van der pol", "method": row["method"], "gain": row["gain"],
                            "width": row["width"]})
    vdp = results["generation"]["van der pol"]["methods"]["biases"]["rows"]
    below = [_score(r["test_r2"]) for r in vdp if r["gain"] < 1]
    above = [_score(r["test_r2"]) for r in vdp if r["gain"] >= 1]
    failure_below_one = bool(below and above and max(below) < 0.9 <= max(above))
    return {"r2_above_0.99": reached, "van_der_pol_fails_below_gain_1": failure_below_one,
            "van_der_pol_best_r2_below_gain_1": max(below) if below else None,
            "van_der_pol_best_r2_from_gain_1": max(above) if above else None}


def _cell(value: Optional[float]) -> str:
    return "diverged" if value is None else f"{value:.3f}"


def tables(results: dict) -> List[str]:
    s = results["settings"]
    lines = []
    for system, entry in results["generation"].items():
        methods = entry["methods"]
        lines += [f"### (a) {system}: closed-loop test R^2 over {s['horizon']} steps after a {s['warmup']}-step "
                  "warm-up", "",
                  "| gain | " + " | ".join(METHODS) + " |", "| ---: | " + " | ".join("---:" for _ in METHODS) + " |"]
        for i, gain in enumerate(s["gains"]):
            lines.append(f"| {gain:g} | " + " | ".join(_cell(methods[m]["rows"][i]["test_r2"]) for m in METHODS)
                         + " |")
        lines.append("| width | " + " | ".join(str(methods[m]["width"]) for m in METHODS) + " |")
        lines.append("| trained parameters | " + " | ".join(str(methods[m]["trained_parameters"]) for m in METHODS)
                     + " |")
        lines.append("| learning rate | " + " | ".join(f"{methods[m]['lr']:.3g}" for m in METHODS) + " |")
        lines.append("")
    if results["width_check"]:
        lines += [f"### (a) van der pol at width {results['width_check'][0]['width']}, gain "
                  f"{results['width_check'][0]['gain']:g}", "",
                  "| method | trained parameters | learning rate | closed-loop test R^2 | seconds |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for row in results["width_check"]:
            lines.append(f"| {row['method']} | {row['trained_parameters']} | {row['lr']:.3g} | "
                         f"{_cell(row['test_r2'])} | {row['seconds']:.0f} |")
        lines.append("")
    lz = results["lorenz"]
    lines += [f"### (b) lorenz: coordinate {'xyz'[lz['coordinate']]} {lz['horizon_steps']} steps ahead "
              f"(half-width {lz['half_width_steps']:.1f} steps of {lz['dt']:g}), gain {lz['gain']:g}", "",
              "| method | trained parameters | learning rate | teacher forced R^2 | self-sustained R^2 |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for method, row in lz["methods"].items():
        lines.append(f"| {method} | {row['trained_parameters']} | {row['lr']:.3g} | {_cell(row['teacher_forced_r2'])} "
                     f"| {_cell(row['self_sustained_r2'])} |")
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


def conclusion(results: dict) -> List[str]:
    v = results["verdict"]
    reached = v["r2_above_0.99"]
    where = ("; ".join(f"{r['system']}, {r['method']}, gain {r['gain']:g}" + (f", width {r['width']}" if "width" in r
                                                                                else "") for r in reached)
             if reached else "nowhere")
    below, above = v["van_der_pol_best_r2_below_gain_1"], v["van_der_pol_best_r2_from_gain_1"]
    return ["## Did the claim reproduce?", "",
            f"- Bias-only closed-loop test R^2 > 0.99: {where}.",
            f"- Van der Pol, biases only: best R^2 {_cell(below)} for gains below 1, {_cell(above)} from gain 1 up: "
            "a failure below gain 1 as claimed." if v["van_der_pol_fails_below_gain_1"] else
            "no failure below gain 1 as claimed (the test: R^2 < 0.9 at every gain below 1 and >= 0.9 at one gain "
            "from 1 up).",
            "- Lorenz, R^2 of the coordinate at the half-width horizon: " + "; ".join(
                f"{m}: teacher forced {_cell(row['teacher_forced_r2'])}, self-sustained "
                f"{_cell(row['self_sustained_r2'])}" for m, row in results["lorenz"]["methods"].items()) + ".",
            "- The learning rate of each method was chosen at one width and gain; the width check reuses it.",
            ""]


def markdown(results: dict, plot_file: str) -> str:
    s = results["settings"]
    lz = s["lorenz"]
    lines = [f"# Random recurrent networks learning dynamical systems (nnpk {results['version']})", "",
             f"Tanh recurrent layer (standard parameterization: U ~ N(0, 1/d), W ~ N(0, g^2/m), biases from 0) and a "
             f"Dense readout of every step; width m = {s['width']}; seed {s['seed']}. Trajectories split by initial "
             f"condition into train / validation / test ({1 - s['test_fraction']:.0%} of them split "
             f"{1 - s['validation_fraction']:.0%} / {s['validation_fraction']:.0%}, then {s['test_fraction']:.0%} "
             "test), every coordinate scaled by the training trajectories' mean and standard deviation. Training: "
             f"next-step targets on non-overlapping windows of {s['window']} steps (teacher forcing), the squared "
             f"loss of every step, Adam with minibatches of {s['batch_size']} for at least {s['optimizer_steps']} "
             f"steps, gradients clipped to norm {s['clip_norm']}, float32. Learning rate per method and system: a "
             f"log grid 10^({', '.join(f'{e:g}' for e in s['lr_exponents'])}) at gain {s['reference_gain']:g}, "
             "extended by half a decade past an edge that scored best, chosen by closed-loop R^2 on the validation "
             "trajectories, then used at every gain. Methods: `biases` trains the recurrent bias and the readout's "
             "bias (the readout's weights stay random, as train='biases' leaves them); `biases+readout` also the "
             "readout's weights; `readout` the readout alone; `full (small)` every parameter of a narrower network "
             "with about as many trained parameters as `biases`. R^2 = 1 - SSE / SST over all test trajectories, "
             "steps and coordinates ('diverged': the generation left the floats).", "",
             f"(a) sine waves (frequency uniform in [0.5, 1] per unit time, dt 0.05) and Van der Pol (mu 1, dt 0.1, "
             f"from initial states in [-3, 3]^2), {s['n_trajectories']} trajectories of {s['n_steps']} steps. "
             f"(b) Lorenz ({lz['n_trajectories']} trajectories of {lz['n_steps']} steps, dt {lz['dt']}): the next-step "
             "model generates h steps after a warm-up at several starts of each test trajectory (self-sustained); a "
             "network reading the true trajectory is trained on the coordinate h steps ahead (teacher forced). "
             "(c) Eigenvalues of J_t = diag(tanh'(z_t)) W^T (leak 1; z_t = h_{t-1} W + x_t U + b) at "
             f"{s['jacobian_times']} steps of a generated test trajectory; 'closed loop' uses W + V U (V the "
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

    jac = results["jacobian"]["rows"]
    shown = [jac[0], jac[-1]] if len(jac) > 1 else jac
    figure = Figure(figsize=(20, 8))
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 4)
    for ax, (system, entry) in zip(axes[0, :2], results["generation"].items()):
        for method in METHODS:
            rows = entry["methods"][method]["rows"]
            ax.plot([r["gain"] for r in rows], [max(-1.0, _score(r["test_r2"])) for r in rows], marker="o",
                    label=f"{method} ({entry['methods'][method]['trained_parameters']} trained)")
        ax.axhline(0.99, color="grey", linestyle=":", linewidth=0.8)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("recurrent gain g")
        ax.set_ylabel("closed-loop test R^2 (clipped at -1)")
        ax.set_title(f"(a) {system}")
        ax.legend(fontsize=7)
    example = results["generation"]["van der pol"]["example"]
    ax = axes[0, 2]
    truth, generated = np.array(example["truth"]), np.array(example["generated"])
    ax.plot(truth[:, 0], truth[:, 1], color="black", label="truth")
    ax.plot(generated[:, 0], generated[:, 1], color="tab:blue", linestyle="--", label="generated (biases)")
    ax.set_title(f"(a) van der pol, gain {results['settings']['reference_gain']:g}: a test trajectory")
    ax.set_xlabel("x (scaled)")
    ax.set_ylabel("y (scaled)")
    ax.legend(fontsize=7)
    ax = axes[0, 3]
    lz = results["lorenz"]["methods"]
    position = np.arange(len(lz))
    for i, key in enumerate(("teacher_forced_r2", "self_sustained_r2")):
        ax.bar(position + (i - 0.5) * 0.35, [max(-1.0, _score(row[key])) for row in lz.values()], 0.35,
               label=key.replace("_r2", "").replace("_", " "))
    ax.set_xticks(position, list(lz))
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("test R^2 (clipped at -1)")
    ax.set_title(f"(b) lorenz, {results['lorenz']['horizon_steps']} steps ahead")
    ax.legend(fontsize=7)
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 200))
    for ax, row in zip(axes[1, :2], shown):
        for when, color in (("before", "tab:grey"), ("after", "tab:red")):
            values = np.array([v for e in row[when]["eigenvalues"] for v in e])
            ax.scatter(values[:, 0], values[:, 1], s=4, color=color, alpha=0.5,
                       label=f"{when} (radius {row[when]['spectral_radius']:.2f})")
        ax.plot(circle.real, circle.imag, color="black", linewidth=0.8)
        ax.set_aspect("equal")
        ax.set_title(f"(c) Jacobian eigenvalues, gain {row['gain']:g}")
        ax.legend(fontsize=7)
    ax = axes[1, 2]
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
    ax = axes[1, 3]
    rows = results["nngp"]["rows"]
    widths = np.array([r["width"] for r in rows], dtype=float)
    errors = np.array([r["relative_error"] for r in rows])
    ax.loglog(widths, errors, marker="o", label="Monte Carlo vs analytic")
    ax.loglog(widths, errors[0] * np.sqrt(widths[0] / widths), color="grey", linestyle=":", label="width^-1/2")
    ax.set_xlabel("width")
    ax.set_ylabel("relative Frobenius error")
    ax.set_title("(d) recurrent NNGP")
    ax.legend(fontsize=7)
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nnpk demo recurrent", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="trajectories, splits, networks and minibatch order")
    parser.add_argument("--threads", type=int, default=None, help="default: all physical cores")
    parser.add_argument("--out", default=os.path.join("nnpk-report", "recurrent"), help="report folder")
    parser.add_argument("--quick", action="store_true", help="under a minute: narrow networks, two gains, few "
                        "steps")
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
