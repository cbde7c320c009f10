import os
import tempfile

import numpy as np

import nnpk

x = np.random.default_rng(0).standard_normal((480, 32))
arch = nnpk.MLP(hidden=[256, 256], out=10, activation="relu", W_std=1.4, b_std=0.1)
path = os.path.join(tempfile.mkdtemp(), "kernel-store")

# 480 points in tiles of 192: a 3 x 3 grid, of which the 6 tiles on and above the diagonal are computed.
store = nnpk.compute_to_store(path, x, arch=arch, kernel="nngp", n_networks=16, tile_size=192)
print(store.status())

# Any time, from any process: open it, read a tile, the whole kernel, or export it.
store = nnpk.open_store(path)
block = store.tile(0, 2)                            # K[0:192, 384:480]
K = store.to_numpy()                                # only if it fits in memory
store.export(os.path.join(path, "K.npy"))           # streamed tile by tile
assert np.array_equal(K, nnpk.monte_carlo(x, arch=arch, n_networks=16))   # bitwise the in-memory result

# Computing again with the same arguments resumes (here: nothing left); other arguments are refused.
nnpk.compute_to_store(path, x, arch=arch, kernel="nngp", n_networks=16, tile_size=192)
try:
    nnpk.compute_to_store(path, x, arch=arch, kernel="nngp", n_networks=16, seed=1, tile_size=192)
except nnpk.store.StoreMismatchError as e:
    print("refused:", e)
