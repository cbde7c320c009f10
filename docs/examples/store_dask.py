import os
import tempfile

import dask
import numpy as np
from distributed import Client, LocalCluster

import nnpk

if __name__ == "__main__":
    x = np.random.default_rng(0).standard_normal((480, 32))
    arch = nnpk.MLP(hidden=[256, 256], out=10, activation="relu", W_std=1.4, b_std=0.1)
    path = os.path.join(tempfile.mkdtemp(), "kernel-store")

    with dask.config.set(nnpk.store.DASK_CONFIG):        # less of Dask's own monitoring beside long tiles
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
    with cluster, Client(cluster) as client:
        store = nnpk.compute_to_store(path, x, arch=arch, n_networks=16, tile_size=192,
                                      executor="dask", client=client)
    assert np.array_equal(store.to_numpy(), nnpk.monte_carlo(x, arch=arch, n_networks=16))
    print(store.status()["last_run"])
