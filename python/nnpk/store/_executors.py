"""Running a store's missing tiles: in this process, on Dask, or over MPI."""

from __future__ import annotations

import concurrent.futures as cf
from typing import List, Optional

import numpy as np

from .._threads import resolve_n_threads
from ._store import KernelStore, Tile, TileBuffers, compute_tile

# Dask settings for clusters that run tiles (long, compute-bound tasks): Dask's own monitoring less
# often (event-loop ticks, the statistical profiler, memory and system monitors). `nnpk compute`
# starts its local cluster with them; pass them to another cluster with
# `dask.config.set(nnpk.store.DASK_CONFIG)` before creating it. Measured on 2 cores over a 14 s run
# of 21 tiles: Dask's CPU beside the tiles 0.62 -> 0.31 s in the worker, 0.41 -> 0.21 s in the
# scheduler's process, which on a node with no spare core is taken from the tiles.
DASK_CONFIG = {
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.profile.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}


__all__ = ["run_tiles"]


class _TileBar:
    """Tiles finished (fractions while a tile runs in this process), shown with tqdm."""

    def __init__(self, total: int, n_networks: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="tile", desc="nnpk", bar_format=(
                "{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total_fmt} tiles [{elapsed}<{remaining}]"))
        self.n_networks = n_networks
        self.done = 0

    def networks(self, done: int) -> None:
        """Progress inside the running tile."""
        if self.bar is not None:
            self.bar.update(self.done + done / self.n_networks - self.bar.n)

    def tile_done(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.n = self.done  # whole tiles exactly, whatever the fractions added up to
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _order(store: KernelStore, tiles: List[Tile]) -> List[Tile]:
    # Largest first, so that the last tasks to start are the short ones and workers finish together.
    return sorted(tiles, key=lambda t: -store.cost(*t))


def run_tiles(store: KernelStore, *, executor: str, client, n_threads, checkpoint_seconds: Optional[float],
              progress: bool) -> None:
    """Computes every tile of `store` that is not done yet."""
    store._drop_stale_checkpoints()
    todo = _order(store, [t for t in store.tiles if not store.is_done(*t)])
    bar = _TileBar(len(todo), store.spec["n_networks"], progress)
    try:
        if executor == "threads":
            store._record_run(executor, 1)
            _run_here(store, todo, resolve_n_threads(n_threads), checkpoint_seconds, bar)
        elif executor == "dask":
            _run_dask(store, todo, client, 1 if n_threads is None else n_threads, checkpoint_seconds, bar)
        else:
            _run_mpi(store, todo, client, n_threads, checkpoint_seconds, bar)
    finally:
        bar.close()


def _run_here(store: KernelStore, todo: List[Tile], n_threads: int, checkpoint_seconds, bar: _TileBar) -> None:
    # One writer thread stores tile k while the engine (which releases the GIL) computes tile k + 1;
    # the two tile buffers take turns.
    buffers = TileBuffers(store.tile_size)

    def write(i: int, j: int, block: np.ndarray, record: dict) -> None:
        try:
            store._write_tile(i, j, block, record)
        finally:
            buffers.give(block)

    with cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="nnpk-store-writer") as writer:
        pending = None
        for i, j in todo:
            if pending is not None and pending.done():
                pending.result()  # a failed write (no space left, say) stops the run before another tile
            block, record = store._compute_block(i, j, n_threads=n_threads, checkpoint_seconds=checkpoint_seconds,
                                                 progress=bar.networks, buffers=buffers)
            if pending is not None:
                pending.result()
            pending = writer.submit(write, i, j, block, record)
            del block  # the writer holds it now; do not keep it through the next tile too
            bar.tile_done()
        if pending is not None:
            pending.result()


def _run_pool(store: KernelStore, todo: List[Tile], pool: cf.Executor, n_threads, checkpoint_seconds,
              bar: _TileBar) -> None:
    futures = [pool.submit(compute_tile, store.path, i, j, n_threads=n_threads,
                           checkpoint_seconds=checkpoint_seconds) for i, j in todo]
    try:
        for future in cf.as_completed(futures):
            future.result()
            bar.tile_done()
    except BaseException:
        # A failed tile or an interrupted driver: drop the tiles not started (finished ones are stored).
        for future in futures:
            future.cancel()
        raise


def _run_dask(store: KernelStore, todo: List[Tile], client, n_threads: int, checkpoint_seconds,
              bar: _TileBar) -> None:
    try:
        import distributed
    except ImportError:
        raise ImportError("executor='dask' needs dask.distributed: pip install 'nnpk[dask]'") from None
    if client is None:
        try:
            client = distributed.default_client()
        except ValueError:
            raise ValueError("executor='dask' needs a distributed.Client: pass client=, or create one first") from None
    if not isinstance(client, distributed.Client):
        raise TypeError(f"executor='dask' needs client to be a distributed.Client, got {type(client).__name__}")
    store._record_run("dask", sum(client.nthreads().values()))
    # pure=False: a tile deleted by `verify(repair=True)` must run again, not come from Dask's cache.
    _run_pool(store, todo, client.get_executor(pure=False), n_threads, checkpoint_seconds, bar)


def _run_mpi(store: KernelStore, todo: List[Tile], client, n_threads, checkpoint_seconds, bar: _TileBar) -> None:
    try:
        from mpi4py.futures import MPIPoolExecutor
    except ImportError:
        raise ImportError("executor='mpi' needs mpi4py: pip install 'nnpk[mpi]'") from None
    pool = MPIPoolExecutor() if client is None else client
    if not isinstance(pool, MPIPoolExecutor):
        raise TypeError(f"executor='mpi' needs client to be an mpi4py.futures.MPIPoolExecutor, "
                        f"got {type(pool).__name__}")
    try:
        store._record_run("mpi", pool.num_workers)
        _run_pool(store, todo, pool, n_threads, checkpoint_seconds, bar)
    finally:
        if client is None:
            pool.shutdown(wait=True, cancel_futures=True)
