"""Which build of the engine runs: the instruction-set level chosen at import, and nnpk.build_info().

Imported first by nnpk/__init__.py (its name sorts before ``_core``): importing it loads the engine.

A dispatching build (the default) installs the engine once per instruction-set level, each a
complete extension module: ``nnpk/_isa/<level>/_core.<suffix>``. ``load()`` runs first at
``import nnpk``: it asks the baseline-compiled ``nnpk._cpu`` which levels the CPU and the operating
system run, takes the best one built (or the one the ``NNPK_ISA`` environment variable names) and
loads it under the name ``nnpk._core``, so every ``from nnpk import _core`` gets it and its classes
keep the module name ``nnpk._core`` (pickles load under any level). Levels are separate shared
objects rather than one object with several levels' code inside: the engine is templates, and a
linker keeps one instantiation of each, from whichever level, which would put AVX-512 instructions
in front of a CPU without them. A native build (``NNPK_NATIVE=ON``) has one ``nnpk/_core.<suffix>``,
imported as usual; its level is "native". The levels are looked for in every folder of the
package (its ``__path__``): an editable install (``pip install -e .``) has two, the source tree and
the folder that holds the compiled extensions.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["build_info", "choose_level", "load", "product_kernels"]

ENV = "NNPK_ISA"
# The x86-64 levels, lowest first; another processor's one level (e.g. "aarch64") is its baseline.
X86_LEVELS = ("x86-64", "x86-64-v3", "x86-64-v4")

_chosen: Dict[str, Any] = {}


def _rank(level: str) -> int:
    return X86_LEVELS.index(level) if level in X86_LEVELS else -1


def _extension(folder: str) -> Optional[str]:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, "_core" + suffix)
        if os.path.isfile(path):
            return path
    return None


def package_dirs() -> List[str]:
    """The package's folders: its ``__path__`` (an editable install's source tree and the folder of its
    compiled extensions), else this file's folder."""
    package = sys.modules.get(__package__ or "")
    return list(getattr(package, "__path__", None) or [os.path.dirname(os.path.abspath(__file__))])


def compiled_levels(folders: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """The levels of a dispatching build, lowest first, and their extensions' paths ({} for a single build):
    those in ``_isa/`` of the package's folders (`folders`, default package_dirs()), the first folder's
    where two have a level."""
    found: Dict[str, str] = {}
    for folder in package_dirs() if folders is None else folders:
        isa_dir = os.path.join(folder, "_isa")
        if not os.path.isdir(isa_dir):
            continue
        for name in os.listdir(isa_dir):
            path = _extension(os.path.join(isa_dir, name))
            if path is not None:
                found.setdefault(name, path)
    return {name: found[name] for name in sorted(found, key=_rank)}


def cpu_levels() -> List[str]:
    """The x86-64 levels this CPU and its operating system run, lowest first ([] on other processors)."""
    from . import _cpu  # type: ignore[attr-defined]  # a tiny extension compiled for the baseline

    return list(_cpu.levels())


def choose_level(compiled: Sequence[str], cpu: Sequence[str], forced: Optional[str]) -> str:
    """The level to load: the one `forced` names (the NNPK_ISA variable), else the best compiled
    level the CPU runs. A level of another processor than x86-64 always runs (its baseline).

    Raises ImportError, naming NNPK_ISA and the levels it may take, when `forced` names a level
    that was not compiled or that this CPU lacks, and when no compiled level runs here."""
    runnable = [level for level in compiled if level in cpu or level not in X86_LEVELS]
    if forced:
        if forced not in runnable:
            if forced in compiled:
                why = f"this CPU does not support {forced}"
            elif forced in X86_LEVELS or forced == "native":
                why = f"this build of nnpk was not compiled for {forced} (compiled: {', '.join(compiled)})"
            else:
                why = "it is not an instruction-set level"
            raise ImportError(f"{ENV}={forced!r} cannot be used: {why}; the levels this machine runs are "
                              f"{', '.join(runnable) or 'none'} (leave {ENV} unset to choose the best)")
        return forced
    if not runnable:
        raise ImportError(f"this CPU runs none of the instruction-set levels nnpk was compiled for "
                          f"({', '.join(compiled)}; the CPU runs {', '.join(cpu) or 'none'}): "
                          "build nnpk from source on this machine")
    return runnable[-1]


def load() -> None:
    """Puts the chosen level's extension in sys.modules as nnpk._core (once per process)."""
    if "nnpk._core" in sys.modules:
        return
    forced = os.environ.get(ENV, "").strip() or None
    compiled = compiled_levels()
    if not compiled:  # a single build: nnpk/_core.<suffix>
        from . import _core

        if forced is not None:
            choose_level([_core.isa_level()], [_core.isa_level()], forced)
        _chosen.update(level=_core.isa_level(), compiled=[_core.isa_level()], forced=forced)
        return
    level = choose_level(list(compiled), cpu_levels(), forced)
    name, path = "nnpk._core", compiled[level]
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    sys.modules[__package__]._core = module  # type: ignore[attr-defined]  # as an import would
    _chosen.update(level=level, compiled=list(compiled), forced=forced)


def build_info() -> dict:
    """How this nnpk was built and which build of its engine runs.

    Returns
    -------
    dict
        ``version`` (nnpk's), ``isa_level`` (the instruction-set level in use: "x86-64",
        "x86-64-v3", "x86-64-v4", another processor's baseline, or "native" for a build tuned
        to its building machine), ``isa_levels`` (the levels compiled), ``cpu_isa_levels`` (the
        x86-64 levels this CPU runs), ``isa_forced`` (the value of the NNPK_ISA environment
        variable, or None), ``openmp`` (whether the engine runs on several threads),
        ``compiler``, ``eigen`` (Eigen's version), ``simd`` (the instruction sets Eigen uses)
        and ``extension`` (the loaded extension's path).
    """
    from . import __version__, _core

    try:
        cpu = cpu_levels()
    except ImportError:  # a build without nnpk._cpu
        cpu = []
    return {
        "version": __version__,
        "isa_level": _chosen.get("level", _core.isa_level()),
        "isa_levels": list(_chosen.get("compiled", [_core.isa_level()])),
        "cpu_isa_levels": cpu,
        "isa_forced": _chosen.get("forced"),
        "openmp": _core.has_openmp(),
        "compiler": _core.compiler(),
        "eigen": _core.eigen_version(),
        "simd": _core.simd_instruction_sets(),
        "extension": _core.__file__,
    }


def product_kernels() -> dict:
    """The matrix-product kernels in this process: the engine's own and those of the BLAS numpy calls.

    ``engine``: the engine's kernels, compiled at the loaded instruction-set level (``isa_level``, ``simd``):
    ``float32`` and ``float64`` name what computes its products of packed factors (layer products, recurrent
    steps) of each dtype; other products are Eigen's (``library``).
    ``numpy``: one entry per BLAS library numpy loaded, as threadpoolctl describes it (``internal_api``,
    ``version``, ``architecture``: the kernel OpenBLAS chose for this CPU, ``threading_layer``,
    ``num_threads``, ``filepath``), and ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` as this process's
    environment sets them (None when unset), since they override OpenBLAS's choice.
    """
    import numpy
    from threadpoolctl import threadpool_info

    from . import _core

    info = build_info()
    blas = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    # numpy's own (a wheel's numpy.libs/ or inside numpy/), not scipy's beside it; all where none is numpy's.
    root = os.path.dirname(os.path.dirname(os.path.abspath(numpy.__file__)))
    own = [lib for lib in blas if os.path.abspath(lib.get("filepath", "")).startswith(
        (os.path.join(root, "numpy.libs"), os.path.join(root, "numpy") + os.sep))]
    return {
        "engine": {"library": f"Eigen {info['eigen']}", "isa_level": info["isa_level"], "simd": info["simd"],
                   "float32": _core.product_kernel("float32"), "float64": _core.product_kernel("float64")},
        "numpy": own or blas,
        "environment": {name: os.environ.get(name) for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
    }


load()
