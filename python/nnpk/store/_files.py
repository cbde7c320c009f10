"""Durable writes: aligned buffers written past the page cache, atomic replacement, fsynced directories."""

from __future__ import annotations

import json
import os
import uuid

import numpy as np

from ._space import FULL_ERRNOS


def _is_plain_crc32c(array) -> bool:
    """Whether the chunks of `array` are little-endian bytes followed by their crc32c, as
    ``_create`` makes them (and ``KernelStore._write_chunk`` writes them)."""
    from zarr.codecs import BytesCodec, Crc32cCodec

    codecs = tuple(array.metadata.codecs)
    return (len(codecs) == 2 and isinstance(codecs[0], BytesCodec) and codecs[0].endian is not None
            and codecs[0].endian.value == "little" and isinstance(codecs[1], Crc32cCodec)
            and array.metadata.chunk_key_encoding is not None and array.order == "C")


_DIRECT_ALIGN = 4096  # address, offset and length alignment that O_DIRECT writes need
_DIRECT_CHUNK = 1 << 30  # bytes per write call (aligned)


def aligned_empty(n: int) -> np.ndarray:
    """n float64s whose first byte is on a 4096-byte boundary (as O_DIRECT writes need)."""
    raw = np.empty(n + _DIRECT_ALIGN // 8)
    offset = (-raw.ctypes.data % _DIRECT_ALIGN) // 8
    return raw[offset:offset + n]


def _write_direct(path: str, data: np.ndarray) -> bool:
    """Writes `data` (bytes at an aligned address, of an aligned length) to a new file at
    `path` with O_DIRECT, past the page cache. False, having written nothing that counts,
    where the platform, the file system or the buffer does not allow it."""
    flag = getattr(os, "O_DIRECT", None)
    if flag is None or data.ctypes.data % _DIRECT_ALIGN or data.nbytes % _DIRECT_ALIGN:
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flag, 0o666)
    except OSError:
        return False
    try:
        view = data.data  # memoryview(data); numpy types ndarray as a Buffer only for Python >= 3.12
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:done + _DIRECT_CHUNK])
        return True
    except OSError as e:  # EINVAL: the file system wants another alignment, or no direct I/O
        if e.errno in FULL_ERRNOS:  # as full for a buffered write
            raise
        return False
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    """Makes a rename in `path` durable (POSIX; Windows cannot open a directory and journals renames)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: str, fill) -> None:
    """Writes `path` so that a crash leaves either no file (or the old one) or the whole
    new one: `fill(tmp)` writes a temporary file, which is fsynced, then renamed."""
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        fill(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)  # a file cut short (no space left, say) is never renamed into place
        if isinstance(e, OSError) and e.filename in (None, tmp):  # a failed write() names no file
            e.filename = path
        raise
    _fsync_dir(os.path.dirname(path) or ".")


def _writing(write):
    """A fill for _atomic_write from a function writing to a binary file object."""

    def fill(tmp: str) -> None:
        with open(tmp, "wb") as f:
            write(f)

    return fill


def _write_json(path: str, obj) -> None:
    _atomic_write(path, _writing(lambda f: f.write(json.dumps(obj, indent=1).encode())))


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
