"""The store's layout and words: kernel kinds, executors, defaults, file names and its errors."""

from __future__ import annotations

from typing import Optional

from .. import _core

__all__ = ["CorruptTileError", "DEFAULT_CHECKPOINT_SECONDS", "DEFAULT_TILE_SIZE", "EXECUTORS", "IncompleteStoreError",
           "KERNELS", "StoreMismatchError", "StoreWriteError", "zarr_module"]

KERNELS = ("nngp", "ntk", "analytic_nngp", "analytic_ntk")
EXECUTORS = ("threads", "dask", "mpi")
DEFAULT_TILE_SIZE = 48 * _core.ROW_QUANTUM  # 4608: a 170 MB float64 tile
DEFAULT_CHECKPOINT_SECONDS = 300.0
_FORMAT = 1
_ZARR = "kernel.zarr"
_PARTIAL = "partial"
_TILES = "tiles"
_RUN = "run.json"


class StoreMismatchError(ValueError):
    """The store was made for another kernel or other inputs: it cannot be resumed."""


class CorruptTileError(ValueError):
    """A stored tile fails its checksum."""


class IncompleteStoreError(RuntimeError):
    """Tiles are missing: run the computation again to finish them."""


class StoreWriteError(OSError):
    """The file system refused to write the store (or the exported kernel): it is full or over
    quota (``errno`` ENOSPC, EDQUOT), read-only (EROFS) or not writable by this user (EACCES,
    EPERM); also raised before computing when the store would not fit. ``filename`` is the
    file, ``needed`` the bytes still to write (None if unknown) and ``free`` the bytes free.

    Tiles already written stay valid and a tile cut short is not counted as done: once the
    file system has room (or permission), the same computation resumes where it stopped."""

    needed: Optional[int]
    free: int

    def __str__(self) -> str:
        return str(self.strerror)


def zarr_module():
    try:
        import zarr
    except ImportError:
        raise ImportError("nnpk's on-disk store needs zarr>=3: pip install 'nnpk[store]'") from None
    return zarr
