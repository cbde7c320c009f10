"""Computing a kernel into a store: creating the store (or resuming it) and running its missing tiles."""

from __future__ import annotations

import os
import shutil
import uuid
from typing import Optional

import numpy as np

from .._threads import resolve_n_threads
from ..architectures._params import PREVIOUS_DRAW_SCHEMES
from ..kernels._plans import PREVIOUS_CONDITIONAL_SCHEME
from ._executors import run_tiles
from ._files import _fsync_dir
from ._layout import (
    _PARTIAL,
    _TILES,
    _ZARR,
    DEFAULT_CHECKPOINT_SECONDS,
    DEFAULT_TILE_SIZE,
    EXECUTORS,
    StoreMismatchError,
    StoreWriteError,
    zarr_module,
)
from ._space import WRITE_ERRNOS, block_size, check_space, store_bytes, write_error
from ._spec import _differences, _make_spec
from ._store import KernelStore

__all__ = ["compute_to_store"]


def _create(path: str, spec: dict, a1, a2) -> None:
    """Builds the store under a temporary name and renames it into place, so that a
    store either exists whole or not at all."""
    zarr = zarr_module()
    from zarr.codecs import Crc32cCodec

    parent = os.path.dirname(path) or "."
    tmp = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex}.creating")
    try:
        group = zarr.create_group(os.path.join(tmp, _ZARR), attributes={"nnpk": spec})
        t = spec["tile_size"]
        group.create_array("kernel", shape=tuple(spec["shape"]), chunks=(t, t), dtype="float64",
                           compressors=[Crc32cCodec()], fill_value=np.nan)
        for name, a in (("x1", a1), ("x2", a2)):
            if a is not None:
                arr = group.create_array(name, shape=a.shape, chunks=(t, a.shape[1]), dtype=a.dtype,
                                         compressors=[Crc32cCodec()], fill_value=0)
                arr[:] = a
        os.makedirs(os.path.join(tmp, _PARTIAL))
        os.makedirs(os.path.join(tmp, _TILES))
        try:
            if os.path.isdir(path):
                os.rmdir(path)  # only an empty directory may be replaced
            os.rename(tmp, path)
        except OSError:
            if not os.path.isfile(os.path.join(path, _ZARR, "zarr.json")):
                raise
            shutil.rmtree(tmp)  # another job made the store meanwhile: resume that one
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(parent)


def _create_or_resume(path, spec: dict, a1, a2) -> KernelStore:
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path) or (os.path.isdir(path) and not os.listdir(path)):
        _create(path, spec, a1, a2)
    store = KernelStore(path)
    stored_draws = store.spec.get("draws", PREVIOUS_DRAW_SCHEMES[None] if store.spec.get("seed") is not None else None)
    if stored_draws != spec["draws"] and spec["draws"] is not None:
        raise StoreMismatchError(
            f"cannot resume the kernel store {path}: its networks were drawn by {stored_draws}, and this nnpk "
            f"draws them by {spec['draws']}; its partial sums and tiles belong to other networks and cannot be "
            "continued. Finish it with the nnpk version that made it, or delete it and compute it again.")
    if spec.get("conditional") is not None:
        stored_scheme = store.spec.get("conditional", PREVIOUS_CONDITIONAL_SCHEME)
        if stored_scheme != spec["conditional"] and store.spec.get("estimator") == "conditional":
            raise StoreMismatchError(
                f"cannot resume the kernel store {path}: its conditional estimate was summed by {stored_scheme}, and "
                f"this nnpk sums {spec['conditional']}; the two cannot be added together. Finish it with the nnpk "
                "version that made it, or delete it and compute it again.")
    diff = _differences(store.spec, spec)
    if diff:
        raise StoreMismatchError(f"cannot resume the kernel store {path}: it was made for another computation: "
                                 + "; ".join(diff) + ". Delete it or choose another store path.")
    return store


def compute_to_store(path, x1, x2=None, *, arch, kernel: str = "nngp", n_networks: Optional[int] = None,
                     seed: int = 0, estimator: Optional[str] = None, wrt="all", dtype="float64",
                     quadrature_order: Optional[int] = None, closed_form: Optional[bool] = None,
                     tile_size: int = DEFAULT_TILE_SIZE, executor: str = "threads", client=None, n_threads=None,
                     checkpoint_seconds: Optional[float] = DEFAULT_CHECKPOINT_SECONDS,
                     progress: bool = False, space_check: bool = True) -> KernelStore:
    """Computes a kernel tile by tile into an on-disk store, resuming it if it exists.

    The result is bitwise the in-memory call with the same arguments,
    ``nnpk.monte_carlo(x1, x2, arch=arch, get=kernel, n_networks=n_networks, seed=seed,
    estimator=estimator, wrt=wrt, dtype=dtype)`` for "nngp" and "ntk", and
    ``nnpk.analytic(x1, x2, arch=arch, get="nngp" or "ntk", quadrature_order=...,
    closed_form=...)`` for "analytic_nngp" and "analytic_ntk", whatever the executor,
    the number of workers and threads, and however often the run was interrupted.
    Memory: a few tiles (8 * tile_size**2 bytes each) per worker.

    Parameters
    ----------
    path : str or path
        The store's directory. A new (or empty) one is created; an existing store is
        resumed: only its missing tiles are computed, after checking that it was made
        with the same spec and the same inputs (else ``nnpk.store.StoreMismatchError``).
    x1, x2, arch
        As in ``nnpk.monte_carlo``: an ``nnpk.MLP`` or an ``nnpk.Network`` (for the
        analytic kernels, one that ``nnpk.analytic`` can do). Without x2 the kernel is
        symmetric and only the tiles on and above the diagonal are computed.
    kernel : "nngp", "ntk", "analytic_nngp" or "analytic_ntk"
        The output kernel: Monte Carlo at finite width, or infinite-width.
    n_networks, seed, estimator, wrt, dtype
        As in ``nnpk.monte_carlo`` (Monte Carlo kernels only; wrt for "ntk").
    quadrature_order, closed_form
        As in ``nnpk.analytic`` (analytic kernels only).
    tile_size : int
        Rows and columns of a tile, a multiple of 96. Larger tiles repeat less of the
        forward passes (each tile runs them on its own rows), smaller ones spread over
        more workers and hold less memory.
    executor : "threads", "dask" or "mpi"
        "threads": tiles one after the other in this process, each on ``n_threads``
        threads. "dask": tiles as tasks of a ``distributed.Client`` (``client``, or the
        default client); workers write their tiles, so they must see ``path``.
        "mpi": tiles as tasks of an ``mpi4py.futures.MPIPoolExecutor`` (``client``, or
        a new one: run the script under ``mpiexec -n N python -m mpi4py.futures``).
    n_threads : int, optional
        OpenMP threads per tile. None: all physical cores ("threads", "mpi"), 1 ("dask",
        whose workers run one task per thread).
    checkpoint_seconds : float or None
        A Monte Carlo tile saves its float64 partial sums and network count about this
        often, so that an interrupted tile resumes from there. None: never.
    progress : bool
        Show a progress bar (tiles).
    space_check : bool
        Before computing, compare the bytes the store still needs with the space free on
        its file system, and refuse (``nnpk.store.StoreWriteError``, errno ENOSPC) when it
        would not fit. The estimate is exact for the kernel's chunks (uncompressed, a whole
        tile each, edge tiles padded) and rounds every file up to whole blocks; it adds
        room for one tile's checkpoint, and counts the inputs of a new store.

    Returns
    -------
    KernelStore

    Raises
    ------
    nnpk.store.StoreWriteError
        The file system is full or over quota, read-only, or not writable by this user
        (an ``OSError`` naming the file, the bytes still needed and the bytes free). Tiles
        already written stay valid, the tile being written is not counted as done, and
        calling again once there is room resumes the store: the kernel is the same.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if checkpoint_seconds is not None and not checkpoint_seconds >= 0:
        raise ValueError(f"checkpoint_seconds must be >= 0 or None, got {checkpoint_seconds!r}")
    if executor != "threads" or n_threads is not None:
        resolve_n_threads(n_threads)  # reject bad counts here, not on a worker
    spec, a1, a2 = _make_spec(x1, x2, arch=arch, kernel=kernel, n_networks=n_networks, seed=seed,
                              estimator=estimator, wrt=wrt, dtype=dtype, quadrature_order=quadrature_order,
                              closed_form=closed_form, tile_size=tile_size)
    path = os.path.abspath(os.fspath(path))
    checkpoints = checkpoint_seconds is not None
    try:
        resuming = _is_store(path)
        if space_check and not resuming:
            check_space(path, store_bytes(spec, checkpoints=checkpoints, block=block_size(path)), f"the store {path}")
        store = _create_or_resume(path, spec, a1, a2)
        if space_check and resuming:
            done = len(store.tiles_done())
            needed = store_bytes(spec, tiles_done=done, inputs=False, checkpoints=checkpoints, block=block_size(path))
            check_space(path, needed, f"the store {path} ({len(store.tiles) - done} of {len(store.tiles)} tiles left)")
        run_tiles(store, executor=executor, client=client, n_threads=n_threads,
                  checkpoint_seconds=checkpoint_seconds, progress=progress)
    except OSError as e:
        if e.errno not in WRITE_ERRNOS or isinstance(e, StoreWriteError):
            raise
        raise write_error(e, path, _bytes_left(path, spec, checkpoints), f"the store {path}") from None
    return store


def _is_store(path: str) -> bool:
    return os.path.isfile(os.path.join(path, _ZARR, "zarr.json"))


def _bytes_left(path: str, spec: dict, checkpoints: bool) -> Optional[int]:
    """The bytes the store at `path` still needs (None if it cannot be read)."""
    try:
        resuming = _is_store(path)
        done = len(KernelStore(path).tiles_done()) if resuming else 0
        return store_bytes(spec, tiles_done=done, inputs=not resuming, checkpoints=checkpoints,
                           block=block_size(path))
    except Exception:
        return None
