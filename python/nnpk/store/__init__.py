"""Kernels of any size, tile by tile, into a resumable on-disk store, on this machine, Dask or MPI; and the
batch-job commands that drive it (``nnpk compute``, ``nnpk status``, ``nnpk export``)."""

from ._compute import compute_to_store
from ._executors import DASK_CONFIG
from ._layout import (
    DEFAULT_CHECKPOINT_SECONDS,
    DEFAULT_TILE_SIZE,
    EXECUTORS,
    KERNELS,
    CorruptTileError,
    IncompleteStoreError,
    StoreMismatchError,
    StoreWriteError,
)
from ._store import KernelStore, compute_tile, open_store

__all__ = ["DASK_CONFIG", "DEFAULT_CHECKPOINT_SECONDS", "DEFAULT_TILE_SIZE", "EXECUTORS", "KERNELS",
           "CorruptTileError", "IncompleteStoreError", "KernelStore", "StoreMismatchError", "StoreWriteError",
           "compute_tile",
           "compute_to_store", "open_store"]
