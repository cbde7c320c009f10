"""Room on the store's file system: the bytes a store takes before it is computed, and the file
system's refusals (full, over quota, read-only, not permitted) as one error that says where and how much."""

from __future__ import annotations

import errno
import os
import shutil
from typing import Optional

import numpy as np

from ._layout import StoreWriteError

__all__ = ["FULL_ERRNOS", "WRITE_ERRNOS", "block_size", "check_space", "free_bytes", "human_bytes", "store_bytes",
           "write_error"]

# ENOSPC: no space left on the device; EDQUOT: the user's disk quota is used up (not on Windows).
FULL_ERRNOS = frozenset({errno.ENOSPC} | ({errno.EDQUOT} if hasattr(errno, "EDQUOT") else set()))
# A read-only file system, or a file or directory this user may not write.
WRITE_ERRNOS = FULL_ERRNOS | {errno.EROFS, errno.EACCES, errno.EPERM}

_METADATA_FILES = 8  # zarr.json of the group and of each array, run.json, the directories


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _existing(path: str) -> str:
    """`path`, or its nearest parent that exists (the directory a new store is made in)."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def free_bytes(path) -> int:
    """Bytes this user may still write on the file system of `path` (or of its nearest existing parent)."""
    return shutil.disk_usage(_existing(os.fspath(path))).free


def block_size(path) -> int:
    try:
        return max(512, os.statvfs(_existing(os.fspath(path))).f_frsize)
    except (AttributeError, OSError):  # no statvfs (Windows)
        return 4096


def _on_disk(n: int, block: int) -> int:
    return -(-n // block) * block


def store_bytes(spec: dict, *, tiles_done: int = 0, inputs: bool = True, checkpoints: bool = True,
                block: int = 4096) -> int:
    """Bytes of the store of `spec` still to be written with `tiles_done` tiles written (an upper
    bound: every file rounded up to whole blocks of `block` bytes).

    The store's chunks are not compressed (the bytes, then a 4-byte crc32c), and each is a whole
    tile, edge tiles padded with the fill value, so the kernel takes exactly (tiles) x
    (8 tile_size**2 + 4) bytes, plus a small timing record per tile. ``inputs``: the stored
    x1 and x2 (chunks of tile_size rows in the forward-pass dtype) and the metadata, for a store
    not made yet. ``checkpoints``: room for one Monte Carlo tile's checkpoint while it is
    replaced (two float64 tiles), which is deleted when the tile is done."""
    t = spec["tile_size"]
    n1, n2 = spec["shape"]
    g1, g2 = -(-n1 // t), -(-n2 // t)
    tiles = g1 * (g1 + 1) // 2 if spec["symmetric"] else g1 * g2
    total = (tiles - tiles_done) * (_on_disk(8 * t * t + 4, block) + block)
    if inputs:
        for name in ("x1", "x2"):
            inp = spec["inputs"][name]
            if inp is not None:
                rows, *point = inp["shape"]
                row_bytes = int(np.prod(point, dtype=np.int64)) * np.dtype(inp["dtype"]).itemsize
                total += -(-rows // t) * _on_disk(t * row_bytes + 4, block)
        total += _METADATA_FILES * block
    if checkpoints and spec["n_networks"] is not None and tiles > tiles_done:
        rows, cols = min(t, n1), min(t, n2)
        total += 2 * _on_disk(8 * rows * cols + 1024, block)  # the old .npz and the new one beside it
    return total


def check_space(path, needed: int, what: str) -> None:
    """Refuses (StoreWriteError, ENOSPC) when the file system of `path` has fewer than `needed` bytes free."""
    free = free_bytes(path)
    if free < needed:
        raise _error(errno.ENOSPC, f"{what} needs about {human_bytes(needed)}, and the file system of "
                     f"{_existing(os.fspath(path))} has {human_bytes(free)} free: make room or choose a larger "
                     "disk (or skip this check: --no-space-check, space_check=False)", os.fspath(path), needed, free)


def write_error(e: OSError, path, needed: Optional[int], what: str,
                then: str = "run the same computation again: it resumes, keeping the tiles already written"
                ) -> StoreWriteError:
    """The OSError `e` (an errno of WRITE_ERRNOS) from writing `what` at `path`, as a StoreWriteError saying
    which file, how much room is needed (`needed` bytes; None: unknown) and what to do (make room, `then`)."""
    code = e.errno if e.errno is not None else errno.EIO
    file = os.fspath(e.filename) if e.filename is not None else os.fspath(path)
    free = free_bytes(path)
    room = "" if needed is None else (f"; {what} needs about {human_bytes(needed)} more, and its file system "
                                      f"has {human_bytes(free)} free")
    if code in FULL_ERRNOS:
        advice = "make room or move it to a larger disk"
    elif code == errno.EROFS:
        advice = "remount the file system writable or move it to a writable one"
    else:
        advice = "give this user write permission or move it"
    return _error(code, f"{os.strerror(code).lower()}: cannot write {file}{room}: {advice}, then {then}", file,
                  needed, free)


def _error(code: int, message: str, filename: str, needed: Optional[int], free: int) -> StoreWriteError:
    error = StoreWriteError(code, message, filename)
    error.needed, error.free = needed, free
    return error
