"""Shared measurements: the reference matrix product, peak memory, best-of timings.

The reference (reference_gflops): numpy's float32 (or float64) product of two n x n matrices, timed in a
child process whose environment lacks OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, so that OpenBLAS picks its own kernel
for this CPU (those variables stay set for the tests and the engine: some OpenBLAS builds compute wrong results on
some CPUs without them, and on the AMD machines OPENBLAS_CORETYPE=Haswell kept the reference off its AVX-512
kernels, which made the engine look closer to the hardware than it is). A child process also keeps numpy's
OpenBLAS threads, which spin for a while after a product, from taking the cores of the engine's threads timed next.
Every benchmark's ratio is taken against this figure; the first measurement of each dtype in a session prints a
header (the kernel OpenBLAS chose, as threadpoolctl names it, its rate, and the CPU's theoretical peak where
the CPU model and clock allow it), and the terminal summary lists every measurement of the session.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from typing import Optional

import pytest

# The variables the reference's child process goes without; the tests and the engine keep them.
REFERENCE_UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# 4096^3: 137 GFLOP, about 0.35 s at 400 GFLOP/s, large enough for OpenBLAS to reach its peak on every thread.
REFERENCE_N = 4096

_REFERENCE_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    dtype, n, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32).astype(dtype)
    b = rng.standard_normal((n, n), dtype=np.float32).astype(dtype)
    c = np.empty((n, n), dtype)
    np.matmul(a, b, out=c)  # OpenBLAS's threads started, the output's pages touched
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - start)
    try:
        from threadpoolctl import threadpool_info
        blas = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    except ImportError:
        blas = []
    print(json.dumps({"seconds": best, "blas": blas[0] if blas else {}}))
    """
)


@dataclasses.dataclass(frozen=True)
class Reference:
    """One measurement of the reference product, and what ran it."""

    dtype: str
    n: int
    gflops: float
    library: str  # e.g. "openblas 0.3.31" (threadpoolctl's internal_api and version)
    kernel: str  # the kernel OpenBLAS chose (threadpoolctl's "architecture"), or "unknown"
    threading: str  # OpenBLAS's threading layer (pthreads, openmp)
    threads: int
    removed: str  # REFERENCE_UNSET's variables: taken out of the child's environment (with their values) or unset
    peak: Peak

    def header(self) -> str:
        peak = self.peak.describe(self.gflops)
        return (f"reference: numpy {self.dtype} {self.n}^3 product in a child process ({self.removed}): "
                f"{self.gflops:.0f} GFLOP/s, {self.library} kernel {self.kernel} ({self.threading}, "
                f"{self.threads} threads)\n{self.dtype} peak: {peak}")


@dataclasses.dataclass(frozen=True)
class Peak:
    """The theoretical rate: cores x FMA units x lanes x 2 x clock, and why each factor is what it is."""

    cpu: str
    cores: int
    fma_units: Optional[int]
    lanes: Optional[int]
    units_note: str  # where the FMA units and lanes come from (an assumption, said so)
    clock_ghz: Optional[float]
    clock_note: str

    @property
    def flops_per_cycle(self) -> Optional[int]:
        if self.fma_units is None or self.lanes is None:
            return None
        return self.cores * self.fma_units * self.lanes * 2

    @property
    def gflops(self) -> Optional[float]:
        per_cycle = self.flops_per_cycle
        return None if per_cycle is None or self.clock_ghz is None else per_cycle * self.clock_ghz

    def describe(self, reference_gflops: float) -> str:
        per_cycle = self.flops_per_cycle
        if per_cycle is None:
            return f"unknown ({self.cpu}, {self.cores} cores: {self.units_note})"
        text = (f"{self.cpu}: {self.cores} cores x {self.fma_units} FMA units x {self.lanes} lanes x 2 = "
                f"{per_cycle} FLOP/cycle ({self.units_note})")
        # Whatever the clock: the clock at which the reference would run at the peak.
        at = f"the peak at {reference_gflops / per_cycle:.2f} GHz"
        peak = self.gflops
        if peak is None:
            return text + f"; clock unknown ({self.clock_note}): the reference is {at}"
        return (text + f" = {peak:.0f} GFLOP/s at {self.clock_ghz:.2f} GHz ({self.clock_note}); the reference is "
                f"{reference_gflops / peak:.2f} of it, {at}")


def _cpuinfo() -> dict:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            block = f.read().split("\n\n")[0]
    except OSError:
        return {}
    fields = {}
    for line in block.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def _fma_units_and_width(info: dict) -> tuple:
    """(FMA units per core, bits of each, note) for x86-64 CPUs whose model tells; None and why otherwise."""
    vendor, name = info.get("vendor_id", ""), info.get("model name", "")
    flags = set(info.get("flags", "").split())
    try:
        family, model = int(info.get("cpu family", "")), int(info.get("model", ""))
    except ValueError:
        return None, None, "no x86-64 CPU model in /proc/cpuinfo"
    if vendor == "GenuineIntel":
        if "avx512f" in flags:
            if "Xeon" not in name:
                # Client parts (Ice Lake, Tiger Lake, Rocket Lake) fuse two 256-bit ports into one 512-bit FMA unit;
                # Core-X (Skylake-X) parts have two. The model name does not say which.
                return None, None, "an Intel CPU with AVX-512 other than a Xeon: one or two FMA units"
            # Xeon Scalable: Skylake/Cascade Lake Bronze, Silver and most Gold 5100/5200 parts have one 512-bit FMA
            # unit, the others (and every Ice Lake, Sapphire Rapids and later Xeon) two. A hypervisor's model name
            # ("Intel(R) Xeon(R) Processor") hides the part: two is then an assumption.
            one = re.search(r"Bronze|Silver|Gold 5[12](?!22)\d\d", name)
            if one:
                return 1, 512, f"one 512-bit FMA unit: {one.group(0)}"
            known = re.search(r"(Platinum|Gold) \d{4}\w*", name)
            return 2, 512, "two 512-bit FMA units: " + ("a Xeon " + known.group(0) if known else
                                                        "assumed, the model name does not tell the Xeon's part")
        if {"avx2", "fma"} <= flags:
            return 2, 256, "two 256-bit FMA units: Haswell and later cores (assumed: not a hybrid part's E-cores)"
        return None, None, "an Intel CPU without AVX2 and FMA"
    if vendor == "AuthenticAMD":
        if family == 0x17:  # Zen, Zen+ (models below 0x30): two 128-bit FMA pipes; Zen 2: two 256-bit
            if model < 0x30:
                return 2, 128, "Zen/Zen+: two 128-bit FMA pipes"
            return 2, 256, "Zen 2: two 256-bit FMA units"
        if family == 0x19:  # Zen 3 and Zen 4 (whose AVX-512 runs on the same 256-bit units, in two halves)
            if "avx512f" in flags:
                return 2, 256, "Zen 4: two 256-bit FMA units, AVX-512 in two halves"
            return 2, 256, "Zen 3: two 256-bit FMA units"
        if family == 0x1A and "avx512f" in flags:
            if "EPYC" in name:
                return 2, 512, "Zen 5 EPYC: two 512-bit FMA units"
            return None, None, "Zen 5: 512-bit FMA units on desktop parts, 256-bit on mobile ones"
        return None, None, f"an AMD CPU of family {family:#x}"
    return None, None, f"vendor {vendor or 'unknown'}"


def _clock(info: dict) -> tuple:
    """(GHz, where it comes from), or (None, why not)."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            return int(f.read()) / 1e6, "cpufreq's highest clock: all-core AVX-512 runs below it"
    except (OSError, ValueError):
        pass
    nominal = re.search(r"@\s*([\d.]+)\s*GHz", info.get("model name", ""))
    if nominal:
        return float(nominal.group(1)), "the model name's base clock: turbo may exceed it"
    if "cpu MHz" in info:
        mhz = float(info["cpu MHz"])
        if "hypervisor" in info.get("flags", "").split():
            return mhz / 1e3, "cpu MHz of /proc/cpuinfo, under a hypervisor the TSC's rate: the cores may run faster"
        return mhz / 1e3, "cpu MHz of /proc/cpuinfo, the clock when read: it varies"
    return None, "no clock in /proc/cpuinfo or cpufreq"


def cpu_peak(dtype: str = "float32") -> Peak:
    """The theoretical peak of this machine's cores for `dtype`, with each factor's provenance."""
    import nnpk

    info = _cpuinfo()
    units, bits, units_note = _fma_units_and_width(info)
    clock, clock_note = _clock(info)
    lanes = None if bits is None else bits // (32 if dtype == "float32" else 64)
    return Peak(cpu=info.get("model name", "unknown CPU"), cores=nnpk.physical_cores(), fma_units=units, lanes=lanes,
                units_note=units_note, clock_ghz=clock, clock_note=clock_note)


_MEASURED: list = []
_CONFIG: Optional[pytest.Config] = None


def pytest_configure(config):
    global _CONFIG
    _CONFIG = config


def _show(text: str) -> None:
    """Prints past pytest's capture (so the header shows without -s)."""
    capture = _CONFIG.pluginmanager.getplugin("capturemanager") if _CONFIG is not None else None
    if capture is None:
        print(text, flush=True)
        return
    with capture.global_and_fixture_disabled():
        print("\n" + text, flush=True)


def reference_gflops(dtype: str = "float32", n: int = REFERENCE_N, repeats: int = 3) -> Reference:
    """numpy's product of two n x n `dtype` matrices, best of `repeats`, in a child process without
    OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE: the reference of every benchmark's ratio (about 2 s at n = 4096)."""
    env = {k: v for k, v in os.environ.items() if k not in REFERENCE_UNSET}
    removed = ", ".join(f"{k}={os.environ[k]} removed" if k in os.environ else f"{k} unset" for k in REFERENCE_UNSET)
    out = subprocess.run([sys.executable, "-c", _REFERENCE_SCRIPT, dtype, str(n), str(repeats)], env=env,
                         check=True, capture_output=True, text=True, timeout=600).stdout
    got = json.loads(out.strip().splitlines()[-1])
    blas = got["blas"]
    ref = Reference(dtype=dtype, n=n, gflops=2 * n**3 / got["seconds"] / 1e9,
                    library=f"{blas.get('internal_api', 'unknown BLAS')} {blas.get('version') or ''}".strip(),
                    kernel=blas.get("architecture") or "unknown", threading=blas.get("threading_layer", "unknown"),
                    threads=blas.get("num_threads", 0),
                    removed=removed,
                    peak=cpu_peak(dtype))
    if not any(m.dtype == dtype for m in _MEASURED):
        _show(ref.header())
    _MEASURED.append(ref)
    return ref


def best_reference(*refs: Reference) -> Reference:
    """The fastest of several measurements (the machine is shared: the least disturbed one)."""
    return max(refs, key=lambda r: r.gflops)


def pytest_terminal_summary(terminalreporter):
    if not _MEASURED:
        return
    terminalreporter.section("reference products (numpy, child processes)")
    for dtype in dict.fromkeys(m.dtype for m in _MEASURED):
        runs = [m for m in _MEASURED if m.dtype == dtype]
        best = best_reference(*runs)
        terminalreporter.write_line(best.header())
        rates = ", ".join(f"{m.gflops:.0f}" for m in runs)
        terminalreporter.write_line(f"{dtype}: {len(runs)} measurements this session (GFLOP/s): {rates}; "
                                    f"kernels {', '.join(sorted({m.kernel for m in runs}))}")


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def best_time(fn, repeats=2):
    return min(_timed(fn) for _ in range(repeats))


def best_time_around_references(fn, rounds: int, dtype: str = "float32") -> tuple:
    """(best seconds of fn over `rounds`, the best reference): the reference measured in child processes before and
    after fn's timings, so that a burst of other load on the shared machine meets both sides."""
    before = reference_gflops(dtype)
    fn()  # warm-up
    seconds = min(_timed(fn) for _ in range(rounds))
    return seconds, best_reference(before, reference_gflops(dtype))


def peak_memory(setup: str, call: str) -> dict:
    """Resident memory around `call` in a fresh process, in bytes.

    baseline: before `setup` (after imports); after_setup: once `setup` has built
    the inputs; peak: the high-water mark during `call` alone."""
    script = textwrap.dedent(
        f"""
        import json, numpy as np, nnpk
        def rss(field):
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) * 1024
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        baseline = rss("VmRSS")
        {setup}
        after_setup = rss("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        {call}
        print(json.dumps(dict(baseline=baseline, after_setup=after_setup, peak=rss("VmHWM"))))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def sgemm_reference() -> Reference:
    """numpy's float32 product, measured once per session in a child process (see reference_gflops)."""
    return reference_gflops("float32")


@pytest.fixture(scope="session")
def dgemm_reference() -> Reference:
    """numpy's float64 product, measured once per session in a child process (see reference_gflops)."""
    return reference_gflops("float64")
