"""Kernels of any size, tile by tile, into a resumable on-disk store.

A store is a directory::

    STORE/kernel.zarr/        Zarr v3 group; its attribute "nnpk" is the spec
        kernel                (n1, n2) float64, one chunk per tile, crc32c-checked
        x1, x2                the inputs in the forward-pass dtype (x2 only if given); a
                              Network's points flattened (spec "point_shape")
    STORE/partial/I-J.npz     a long tile's float64 partial sum and its network count
    STORE/tiles/I-J.json      when, how fast and by which build (nnpk version, instruction-set
                              level) each finished tile was computed
    STORE/run.json            the last run's executor and worker count

Tile (I, J) is the block ``K[I*T:(I+1)*T, J*T:(J+1)*T]``; a symmetric kernel stores
the tiles with I <= J only. Every tile is a pure function of the spec and the inputs
(network m is drawn from (seed, m), each entry is one float64 chain over the networks
in order), so any worker on any machine running the same build of the engine (the same
instruction-set level, ``nnpk.build_info()["isa_level"]``) writes the same bits as the
in-memory call; other levels agree to rounding. Each tile's record names its level.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
import warnings
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from .._threads import resolve_n_threads
from .._validate import check_memory, compute_dtype
from ..architectures import MLP, Network
from ..kernels._analytic import analytic_kernels
from ..kernels._plans import network_feature_bytes, nngp_plan, tangent_plan
from ..kernels._streaming import _finalize
from ._files import (
    _atomic_write,
    _fsync_dir,
    _is_plain_crc32c,
    _read_json,
    _write_direct,
    _write_json,
    _writing,
    aligned_empty,
)
from ._layout import (
    _FORMAT,
    _PARTIAL,
    _RUN,
    _TILES,
    _ZARR,
    DEFAULT_CHECKPOINT_SECONDS,
    CorruptTileError,
    IncompleteStoreError,
    zarr_module,
)
from ._space import WRITE_ERRNOS, _on_disk, block_size, write_error
from ._spec import _arch_from_spec

__all__ = ["KernelStore", "Tile", "TileBuffers", "compute_tile", "open_store"]

Tile = Tuple[int, int]

# Seconds per network and tile entry of the last engine call in this process, per store.
_PACE: Dict[str, float] = {}


def _tile_name(i: int, j: int) -> str:
    return f"{i}-{j}"


# ----------------------------------------------------------------------------- the store


class KernelStore:
    """An on-disk kernel: its spec, which tiles are done, and the kernel itself.

    Open one with ``nnpk.open_store(path)``; ``nnpk.compute_to_store`` makes and
    fills one. Nothing is read into memory beyond one tile at a time, except by
    ``to_numpy``.
    """

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        zarr = zarr_module()
        self.path = os.path.abspath(os.fspath(path))
        meta = os.path.join(self.path, _ZARR, "zarr.json")
        if not os.path.isfile(meta):
            raise FileNotFoundError(f"{self.path} is not an nnpk kernel store (no {_ZARR}/zarr.json)")
        self._group = zarr.open_group(os.path.join(self.path, _ZARR), mode="r+")
        spec = self._group.attrs.get("nnpk")
        if not isinstance(spec, dict) or spec.get("format") != _FORMAT:
            raise FileNotFoundError(f"{self.path} is not an nnpk kernel store of format {_FORMAT}")
        self.spec: dict = spec
        # A chunk's existence marks its tile done, so every tile is written, even one equal to
        # the fill value (zarr would otherwise skip it, after comparing it all).
        self._kernel = self._group["kernel"].with_config({"write_empty_chunks": True})
        self._plain_chunks = _is_plain_crc32c(self._kernel)

    def __repr__(self) -> str:
        done, total = len(self.tiles_done()), len(self.tiles)
        return f"KernelStore({self.path!r}, {self.spec['kernel']} {tuple(self.shape)}, {done}/{total} tiles)"

    # -- geometry
    @property
    def shape(self) -> Tuple[int, int]:
        """The kernel's shape (n1, n2)."""
        return tuple(self.spec["shape"])

    @property
    def tile_size(self) -> int:
        """Rows and columns of a tile (the last row and column of tiles may be smaller)."""
        return self.spec["tile_size"]

    @property
    def symmetric(self) -> bool:
        """Whether the kernel is of x1 with itself (only tiles with I <= J are stored)."""
        return self.spec["symmetric"]

    @property
    def grid(self) -> Tuple[int, int]:
        """The number of tile rows and tile columns."""
        t = self.tile_size
        return -(-self.shape[0] // t), -(-self.shape[1] // t)

    @property
    def tiles(self) -> List[Tile]:
        """Every tile the kernel needs (I <= J only for a symmetric kernel)."""
        g1, g2 = self.grid
        return [(i, j) for i in range(g1) for j in range(i if self.symmetric else 0, g2)]

    def bounds(self, i: int, j: int) -> Tuple[slice, slice]:
        """The rows and columns of the kernel that tile (I, J) holds."""
        t = self.tile_size
        return slice(i * t, min((i + 1) * t, self.shape[0])), slice(j * t, min((j + 1) * t, self.shape[1]))

    def cost(self, i: int, j: int) -> int:
        """Entries a tile computes: a diagonal tile of a symmetric kernel is one triangle."""
        rows, cols = self.bounds(i, j)
        r, c = rows.stop - rows.start, cols.stop - cols.start
        return r * (r + 1) // 2 if self.symmetric and i == j else r * c

    @property
    def arch(self) -> Union[MLP, Network]:
        """The network the kernel belongs to, rebuilt from the spec."""
        return _arch_from_spec(self.spec["arch"])

    # -- state
    def _chunk_path(self, i: int, j: int) -> str:
        key = self._kernel.metadata.encode_chunk_key((i, j))
        return os.path.join(self.path, _ZARR, "kernel", *key.split("/"))

    def is_done(self, i: int, j: int) -> bool:
        """Whether tile (I, J) is written."""
        return os.path.isfile(self._chunk_path(i, j))

    def tiles_done(self) -> List[Tile]:
        """The tiles written so far."""
        return [t for t in self.tiles if self.is_done(*t)]

    @property
    def complete(self) -> bool:
        """Whether every tile is written."""
        return all(self.is_done(*t) for t in self.tiles)

    def _partial_path(self, i: int, j: int) -> str:
        return os.path.join(self.path, _PARTIAL, _tile_name(i, j) + ".npz")

    def _record_path(self, i: int, j: int) -> str:
        return os.path.join(self.path, _TILES, _tile_name(i, j) + ".json")

    # -- reading
    def tile(self, i: int, j: int) -> np.ndarray:
        """Block (I, J) of the kernel (for I > J of a symmetric kernel, tile (J, I) transposed)."""
        g1, g2 = self.grid
        if not (0 <= i < g1 and 0 <= j < g2):
            raise IndexError(f"tile ({i}, {j}) is outside the {g1} x {g2} grid")
        if self.symmetric and i > j:
            return self.tile(j, i).T
        if not self.is_done(i, j):
            raise IncompleteStoreError(f"tile ({i}, {j}) of {self.path} has not been computed yet")
        rows, cols = self.bounds(i, j)
        try:
            return self._kernel[rows, cols]
        except ValueError as e:
            raise CorruptTileError(
                f"tile ({i}, {j}) (rows {rows.start}:{rows.stop}, columns {cols.start}:{cols.stop}) of {self.path} "
                f"is corrupted ({e}); file {self._chunk_path(i, j)}: run `nnpk status {self.path} --verify --repair` "
                "and compute again to recompute it") from e

    def _require_complete(self, what: str) -> None:
        missing = len(self.tiles) - len(self.tiles_done())
        if missing:
            raise IncompleteStoreError(f"cannot {what}: {missing} of {len(self.tiles)} tiles of {self.path} are not "
                                       "computed yet; run the computation again to resume it")

    def to_numpy(self) -> np.ndarray:
        """The whole kernel in memory (refused when it does not fit)."""
        self._require_complete("read the kernel")
        n1, n2 = self.shape
        check_memory(8 * n1 * n2, f"the kernel ({n1} x {n2} float64)",
                     advice="read it tile by tile with KernelStore.tile, or export it to a .npy file")
        out = np.empty((n1, n2))
        g1, g2 = self.grid
        for i in range(g1):
            for j in range(g2):
                rows, cols = self.bounds(i, j)
                out[rows, cols] = self.tile(i, j)
        return out

    def export(self, path) -> None:
        """Writes the kernel to a .npy file tile by tile (memory: about two tiles).

        The file appears under its name only once it is complete; a full or unwritable
        file system raises ``nnpk.store.StoreWriteError`` and leaves no file."""
        self._require_complete("export the kernel")
        n1, n2 = self.shape

        def fill(tmp: str) -> None:
            header = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float64, shape=(n1, n2))
            offset = header.offset
            del header
            _allocate(tmp, offset + 8 * n1 * n2)  # a full disk is an error here, not a SIGBUS in the mapping
            g1, g2 = self.grid
            for i in range(g1):
                rows, _ = self.bounds(i, 0)
                for j in range(g2):
                    # A mapping per tile, dropped at once: only the tile's pages stay resident.
                    band = np.memmap(tmp, dtype=np.float64, mode="r+", offset=offset + rows.start * n2 * 8,
                                     shape=(rows.stop - rows.start, n2))
                    band[:, self.bounds(i, j)[1]] = self.tile(i, j)
                    del band

        path = os.path.abspath(os.fspath(path))
        try:
            _atomic_write(path, fill)
        except OSError as e:
            if e.errno not in WRITE_ERRNOS:
                raise
            needed = _on_disk(128 + 8 * n1 * n2, block_size(path))  # the .npy header and the kernel
            raise write_error(e, path, needed, f"the kernel ({n1} x {n2} float64)",
                              then="export again (or export to another disk)") from None

    def verify(self, repair: bool = False) -> List[Tile]:
        """Reads every computed tile and returns those failing their checksum.

        repair=True deletes them, so that computing again recomputes them."""
        bad = []
        for i, j in self.tiles_done():
            try:
                self.tile(i, j)
            except CorruptTileError:
                bad.append((i, j))
        if repair:
            for i, j in bad:
                for p in (self._chunk_path(i, j), self._record_path(i, j)):
                    if os.path.exists(p):
                        os.unlink(p)
        return bad

    def points(self, name: str, block: int) -> np.ndarray:
        """Rows of block `block` of the stored input x1 or x2, C-contiguous."""
        t = self.tile_size
        # The engine wants numpy's own float32/float64 descriptor, not zarr's equivalent one.
        return np.ascontiguousarray(self._group[name][block * t:(block + 1) * t],
                                    dtype=compute_dtype(self.spec["dtype"]))

    # -- progress
    def status(self) -> dict:
        """Tiles done and in progress, and an estimate of the time left.

        The estimate divides the work left (entries, counting the networks left in
        partial tiles) by the measured seconds per entry of the finished tiles and by
        the last run's number of workers."""
        done = set(self.tiles_done())
        M = self.spec["n_networks"]
        in_progress, left = [], 0.0
        for i, j in self.tiles:
            if (i, j) in done:
                continue
            networks = _checkpoint_networks(self._partial_path(i, j))
            if networks:
                in_progress.append({"tile": [i, j], "networks": networks})
            left += self.cost(i, j) * (1 - networks / M if networks else 1)
        seconds = work = 0.0
        for i, j in done:
            record = _read_json(self._record_path(i, j))
            if record and record["fraction"] > 0 and record["seconds"] > 0:
                seconds += record["seconds"]
                work += self.cost(i, j) * record["fraction"]
        run = _read_json(os.path.join(self.path, _RUN))
        workers = run["workers"] if run else 1
        builds = self.builds()
        total = sum(self.cost(*t) for t in self.tiles)
        return {
            "path": self.path,
            "tiles": len(self.tiles),
            "tiles_done": len(done),
            "complete": len(done) == len(self.tiles),
            "in_progress": in_progress,
            "fraction_done": 1 - left / total,
            "seconds_left": left * seconds / work / workers if work else None,
            "last_run": run,
            "builds": builds,
            "mixed_isa_levels": len({b["isa_level"] for b in builds}) > 1,
        }

    def builds(self) -> List[dict]:
        """Which builds of nnpk computed the finished tiles: one entry per (nnpk version,
        instruction-set level) with its tiles, most tiles first ("unknown" for a tile without
        a record of it). Tiles are bitwise reproducible by the same level; levels agree to
        rounding."""
        groups: Dict[Tuple[str, str], List[Tile]] = {}
        for i, j in self.tiles_done():
            record = _read_json(self._record_path(i, j)) or {}
            key = (record.get("nnpk_version", "unknown"), record.get("isa_level", "unknown"))
            groups.setdefault(key, []).append((i, j))
        return [{"nnpk_version": v, "isa_level": level, "tiles": [list(t) for t in tiles]}
                for (v, level), tiles in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))]

    # -- computing
    def _compute_block(self, i: int, j: int, *, n_threads: int, checkpoint_seconds: Optional[float],
                       progress=None, buffers: Optional["TileBuffers"] = None) -> Tuple[np.ndarray, dict]:
        """Tile (I, J) as the in-memory call computes it, and its timing record. A Monte
        Carlo tile's sum accumulates in a buffer from `buffers` when given."""
        spec = self.spec
        arch = self.arch
        a1 = self.points("x1", i)
        diagonal = self.symmetric and i == j
        a2 = None if diagonal else self.points("x1" if self.symmetric else "x2", j)
        r, c = a1.shape[0], a1.shape[0] if a2 is None else a2.shape[0]
        compiled = arch.compile(spec["point_shape"] or a1.shape[1:])
        # The sum (normalised in place) and the tile written meanwhile.
        need = 2 * 8 * r * c
        if spec["kernel"] == "ntk":
            weights, rows = spec["wrt"]["weights"], r + (0 if a2 is None else c)
            need += network_feature_bytes(compiled, rows, weights, spec["wrt"]["biases"], a1.itemsize)
        check_memory(need, f"tile ({i}, {j}) ({r} x {c})", advice="choose a smaller tile_size")
        started = time.perf_counter()
        if spec["kernel"].startswith("analytic_"):
            name = spec["kernel"][len("analytic_"):]
            options = dict(kernels=[name], n_threads=n_threads, quadrature_order=spec["quadrature_order"],
                           closed_form=spec["closed_form"])
            shaped = lambda a: None if a is None else a.reshape(a.shape[0], *compiled.input_shape)
            block = analytic_kernels(shaped(a1), shaped(a2), arch, layers="output", **options)[name][0]
            if buffers is not None:  # into a reused, aligned buffer, written past the page cache
                block = _copy_into(buffers, block)
            networks = None
        else:
            plan = self._plan(arch, compiled, a1, a2, n_threads)
            if plan.exact:  # nothing random left: as monte_carlo does, one network's worth
                block, networks = _finalize(plan, plan.run(0, 1, None), 1)[0], None
                if buffers is not None:
                    block = _copy_into(buffers, block)
            else:
                block, networks = self._run_networks(plan, i, j, checkpoint_seconds, progress, buffers)
        # networks: those run here (a resumed tile ran the rest before); fraction: of the tile's work.
        record = {"seconds": time.perf_counter() - started, "networks": networks,
                  "fraction": 1.0 if networks is None else networks / spec["n_networks"], "n_threads": n_threads,
                  "host": socket.gethostname(), "pid": os.getpid(), "finished": None, **_build_record()}
        return block, record

    def _plan(self, arch, compiled, a1, a2, n_threads):
        """The engine's plan for the tile's points, as monte_carlo makes it."""
        spec = self.spec
        if spec["kernel"] == "nngp":
            return nngp_plan(a1, a2, arch, compiled, seed=spec["seed"], layers="output", estimator=spec["estimator"],
                             n_threads=n_threads)
        return tangent_plan(a1, a2, compiled, seed=spec["seed"], with_nngp=False, weights=spec["wrt"]["weights"],
                            biases=spec["wrt"]["biases"], per_layer=False, per_logit=False, n_threads=n_threads)

    def _run_networks(self, plan, i: int, j: int, checkpoint_seconds: Optional[float], progress,
                      buffers: Optional["TileBuffers"]):
        """The tile's kernel over all networks, continued from its checkpoint and
        checkpointed about every `checkpoint_seconds`; and the networks run here. The
        sums accumulate in place, in zeroed buffers from `buffers` (or new ones) or in
        the checkpoint's arrays."""
        M = self.spec["n_networks"]
        rows, cols = self.bounds(i, j)
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        n_sums = len({k.source for k in plan.kernels})
        done, sums = _load_checkpoint(self._partial_path(i, j), shape, M, n_sums)
        if sums is None:
            sums = [np.zeros(shape) if buffers is None else buffers.take(shape) for _ in range(n_sums)]
        first = done
        last_save = time.perf_counter()
        entries = self.cost(i, j)
        while done < M:
            # Calls of about one checkpoint interval (each call also costs a few passes over the
            # tile), sized from the pace of the last call; one network when no pace is known yet.
            pace = _PACE.get(self.path)
            if checkpoint_seconds is None:
                stop = M
            else:
                stop = min(M, done + (1 if pace is None else max(1, int(checkpoint_seconds / (pace * entries)))))
            t = time.perf_counter()
            sums = plan.run(done, stop, sums, None if progress is None else _offset(progress, done), in_place=True)
            _PACE[self.path] = (time.perf_counter() - t) / ((stop - done) * entries)
            done = stop
            if done < M and checkpoint_seconds is not None and time.perf_counter() - last_save >= checkpoint_seconds:
                _save_checkpoint(self._partial_path(i, j), sums, done)
                last_save = time.perf_counter()
        return _finalize(plan, sums, M)[0], M - first

    def _write_tile(self, i: int, j: int, block: np.ndarray, record: dict) -> None:
        """Stores a finished tile durably, then forgets its partial sum."""
        if self._plain_chunks:
            self._write_chunk(i, j, block)
        else:  # another codec chain: zarr encodes the chunk
            rows, cols = self.bounds(i, j)
            self._kernel[rows, cols] = block  # zarr writes the chunk to a temporary file and renames it
            chunk = self._chunk_path(i, j)
            fd = os.open(chunk, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_dir(os.path.dirname(chunk))
        record["finished"] = time.time()
        _write_json(self._record_path(i, j), record)
        partial = self._partial_path(i, j)
        if os.path.exists(partial):
            os.unlink(partial)

    def _write_chunk(self, i: int, j: int, block: np.ndarray) -> None:
        """Writes tile (I, J) as the chunk zarr would write (the "bytes" codec, little-endian
        C order, then the "crc32c" codec's 4-byte checksum; an edge tile padded to the
        whole chunk with the fill value), straight from `block`, and where the file system
        allows past the page cache (O_DIRECT; tile buffers are aligned for it).

        Measured on this project's 2-core virtual machine, a 136 MB tile: zarr's encoder
        copies the tile once more (numpy.append of the checksum); a buffered write costs
        0.35 s of CPU, taken from the engine's threads, as the page cache takes fresh
        memory from the host; an O_DIRECT write 0.04 s and no CPU. The chunk is fsynced
        under a temporary name, then renamed: it exists whole or not at all.
        tests/test_store.py checks the bytes against zarr's own encoding."""
        import google_crc32c  # a dependency of zarr's crc32c codec

        t = self.tile_size
        if block.shape != (t, t):
            full = aligned_empty(t * t).reshape(t, t)
            full.fill(np.nan)
            full[:block.shape[0], :block.shape[1]] = block
            block = full
        data = np.ascontiguousarray(block, dtype="<f8").reshape(-1).view(np.uint8)
        checksum = np.array([google_crc32c.value(data)], dtype="<u4").tobytes()
        chunk = self._chunk_path(i, j)
        os.makedirs(os.path.dirname(chunk), exist_ok=True)

        def fill(tmp: str) -> None:
            if not _write_direct(tmp, data):
                with open(tmp, "wb") as f:
                    f.write(data.data)
            with open(tmp, "ab") as f:
                f.write(checksum)

        _atomic_write(chunk, fill)

    def _drop_stale_checkpoints(self) -> None:
        """Deletes the checkpoints of finished tiles (left by a run killed just after storing a tile)."""
        for name in os.listdir(os.path.join(self.path, _PARTIAL)):
            stem, ext = os.path.splitext(name)
            i, _, j = stem.partition("-")
            if ext == ".npz" and i.isdigit() and j.isdigit() and self.is_done(int(i), int(j)):
                os.unlink(os.path.join(self.path, _PARTIAL, name))

    def _record_run(self, executor: str, workers: int) -> None:
        _write_json(os.path.join(self.path, _RUN), {"started": time.time(), "executor": executor,
                                                    "workers": workers, "host": socket.gethostname()})


class TileBuffers:
    """Float64 tile buffers, used again from tile to tile by one process's tiles, and
    aligned for O_DIRECT writes.

    A new 170 MB array costs its page faults on first touch, and a virtual machine
    that returns freed memory to its host (free page reporting, as on this project's
    Firecracker machines) faults every page in again: about 0.3 s a tile."""

    def __init__(self, tile_size: int):
        self._size = tile_size * tile_size
        self._made: List[np.ndarray] = []
        self._free: List[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, shape: Tuple[int, int], zeroed: bool = True) -> np.ndarray:
        """A (rows, columns) array, C-contiguous, zeroed unless asked not to, in a free buffer or a new one."""
        with self._lock:
            buffer = self._free.pop() if self._free else None
            if buffer is None:
                buffer = aligned_empty(self._size)
                self._made.append(buffer)
        out = buffer[:shape[0] * shape[1]].reshape(shape)
        if zeroed:
            out.fill(0.0)
        return out

    def give(self, array: np.ndarray) -> None:
        """Frees the buffer behind `array` (one from `take`; other arrays are ignored)."""
        owner = array if array.base is None else array.base
        with self._lock:
            for buffer in self._made:
                if buffer.base is owner and not any(f is buffer for f in self._free):
                    self._free.append(buffer)


def _build_record() -> dict:
    """The nnpk version and the instruction-set level of the engine computing here."""
    from .._build import build_info

    info = build_info()
    return {"nnpk_version": info["version"], "isa_level": info["isa_level"]}


def _allocate(path: str, size: int) -> None:
    """Gives the file at `path` its `size` bytes on disk now (a memory-mapped write into a sparse file on a
    full file system is killed by SIGBUS; this raises ENOSPC instead). Where the platform or the file system
    cannot allocate ahead, the file stays as it is."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(fd)


def _copy_into(buffers: TileBuffers, block: np.ndarray) -> np.ndarray:
    out = buffers.take(block.shape, zeroed=False)
    out[...] = block
    return out


def _offset(progress, done: int):
    return lambda k: progress(done + k)


def _checkpoint_networks(path: str) -> int:
    try:
        with np.load(path) as z:
            return int(z["networks"])
    except (OSError, ValueError, KeyError):
        return 0


def _save_checkpoint(path: str, sums: List[np.ndarray], networks: int) -> None:
    """The engine's float64 sums over the first `networks` networks (never a mean)."""
    _atomic_write(path, _writing(lambda f: np.savez(f, *sums, networks=np.int64(networks))))


def _load_checkpoint(path: str, shape, n_networks: int, n_sums: int):
    """(networks done, float64 sums) from a tile's checkpoint, or (0, None)."""
    if not os.path.exists(path):
        return 0, None
    try:
        with np.load(path) as z:
            networks = int(z["networks"])
            sums = [np.ascontiguousarray(z[f"arr_{k}"]) for k in range(n_sums)]
        if all(a.shape == tuple(shape) and a.dtype == np.float64 for a in sums) and 0 < networks < n_networks:
            return networks, sums
        problem = f"it holds {networks} networks, shapes {[a.shape for a in sums]}"
    except Exception as e:  # a checkpoint cut short or damaged on disk: zipfile checks its CRC
        problem = str(e)
    warnings.warn(f"ignoring the unreadable checkpoint {path} ({problem}); the tile restarts from network 0",
                  RuntimeWarning, stacklevel=3)
    return 0, None


def compute_tile(store_path, i: int, j: int, *, n_threads=None,
                 checkpoint_seconds: Optional[float] = DEFAULT_CHECKPOINT_SECONDS) -> dict:
    """Computes tile (I, J) of the store's kernel and writes it: the task every executor runs.

    A top-level function of the store path and the tile index only, so that it can be
    sent to any worker that sees the store's file system. It continues from the tile's
    checkpoint if there is one. Returns the tile's timing record."""
    store = KernelStore(store_path)
    block, record = store._compute_block(i, j, n_threads=resolve_n_threads(n_threads),
                                         checkpoint_seconds=checkpoint_seconds,
                                         buffers=TileBuffers(store.tile_size))  # aligned for O_DIRECT
    store._write_tile(i, j, block, record)
    return record


def open_store(path) -> KernelStore:
    """Opens an existing kernel store (see ``compute_to_store``).

    Parameters
    ----------
    path : str or path
        The store's directory.

    Returns
    -------
    KernelStore
        Its tiles, spec and status; a ValueError names a path that is not a store.
    """
    return KernelStore(path)
