"""The store's layout and words: kernel kinds, executors, defaults, file names and its errors."""

from __future__ import annotations

from .. import _core

__all__ = ["CorruptTileError", "DEFAULT_CHECKPOINT_SECONDS", "DEFAULT_TILE_SIZE", "EXECUTORS", "IncompleteStoreError",
           "KERNELS", "StoreMismatchError", "zarr_module"]

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


def zarr_module():
    try:
        import zarr
    except ImportError:
        raise ImportError("nnpk's on-disk store needs zarr>=3: pip install 'nnpk[store]'") from None
    return zarr
