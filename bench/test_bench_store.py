"""Issue 7 benchmark: kernels computed tile by tile through the on-disk store.

1. Store against the in-memory call, n = 16,384 points (d = 32, hidden [128], out 100,
   relu, 32 networks, float32 forward passes; a 2 GiB float64 kernel), both on 2
   threads in the same run, the store with tiles of 4128 (a 4 x 4 grid: 10 tiles on and
   above the diagonal, each checkpointed and fsynced). Target: store rate >= 0.9 of the
   in-memory rate.
2. Dask: one against two LocalCluster workers with one OpenMP thread each, n = 6144,
   tiles of 1536 (10 tiles). Target: speed-up >= 1.8.

Each result is compared with the in-memory kernel bit for bit.
"""

import time

import numpy as np
import pytest

import nnpk
from conftest import best_time

D, HIDDEN, OUT = 32, [128], 100
ARCH = nnpk.MLP(hidden=HIDDEN, out=OUT)


def data(n):
    return np.random.default_rng(0).standard_normal((n, D), dtype=np.float32)


def assert_store_equals(store, K):
    g1, g2 = store.grid
    for i in range(g1):
        for j in range(g2):
            rows, cols = store.bounds(i, j)
            assert np.array_equal(store.tile(i, j), K[rows, cols]), (i, j)


def test_store_rate_against_in_memory(benchmark, tmp_path):
    n, m, tile = 16384, 32, 4128
    x = data(n)
    nnpk.monte_carlo(x[:512], arch=ARCH, n_networks=2, dtype="float32")  # warm-up
    start = time.perf_counter()
    K = nnpk.monte_carlo(x, arch=ARCH, n_networks=m, dtype="float32", n_threads=2)
    in_memory = time.perf_counter() - start
    store = benchmark.pedantic(
        lambda: nnpk.compute_to_store(tmp_path / "k", x, arch=ARCH, n_networks=m, dtype="float32", tile_size=tile,
                                      n_threads=2), rounds=1, iterations=1)
    stored = benchmark.stats.stats.min
    ratio = in_memory / stored
    benchmark.extra_info.update(in_memory_s=in_memory, store_s=stored, rate_ratio=ratio, tiles=len(store.tiles))
    print(f"\nn={n} M={m}: in memory {in_memory:.1f} s, through the store (tiles of {tile}, {len(store.tiles)} tiles) "
          f"{stored:.1f} s: rate ratio {ratio:.2f} (target >= 0.9)")
    assert_store_equals(store, K)
    assert ratio >= 0.9


def test_dask_one_to_two_workers(benchmark, tmp_path):
    distributed = pytest.importorskip("distributed")
    n, m, tile = 6144, 96, 1536
    x = data(n)

    def run(client, name):
        return nnpk.compute_to_store(tmp_path / name, x, arch=ARCH, n_networks=m, dtype="float32", tile_size=tile,
                                     executor="dask", client=client, n_threads=1)

    seconds, stores = {}, {}
    for workers in (1, 2):
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1",
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            client.submit(nnpk.physical_cores).result()  # workers up and nnpk imported
            if workers == 1:
                seconds[1] = best_time(lambda: stores.setdefault(1, run(client, "one")), repeats=1)
            else:
                stores[2] = benchmark.pedantic(lambda: run(client, "two"), rounds=1, iterations=1)
                seconds[2] = benchmark.stats.stats.min
    speedup = seconds[1] / seconds[2]
    benchmark.extra_info.update(one_worker_s=seconds[1], two_workers_s=seconds[2], speedup=speedup)
    print(f"\nDask n={n} M={m}, {len(stores[2].tiles)} tiles: 1 worker {seconds[1]:.1f} s, 2 workers "
          f"{seconds[2]:.1f} s: speed-up {speedup:.2f} (target >= 1.8)")
    K = nnpk.monte_carlo(x, arch=ARCH, n_networks=m, dtype="float32")
    assert_store_equals(stores[1], K)
    assert_store_equals(stores[2], K)
    assert speedup >= 1.8
