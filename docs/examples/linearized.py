"""Networks beside their linearisations on NTK eigenfunction and NAD tasks: the full protocol as a batch job.

Step 1 writes the points; step 2 (`nnpk compute lenet_ntk.toml`, here called in-process) computes the empirical
NTK of the starting network into a store, resumable and distributable; steps 3-5 read the store's eigenvectors,
train the network and its linearisation on each task, and measure the trained NTK along the initial eigenvectors.
"""

import os
import shutil
import tempfile

import numpy as np

import nnpk
from nnpk.cli import main as nnpk_command
from nnpk.tasks import nad_task, nads, ntk_eigenvectors_from_store

# 1. Points: MNIST-1D signals, centred, unit mean square per point; the first n_train train, the rest test.
n_train, n_test = 400, 200
x, _ = nnpk.datasets.load_mnist1d(n_train + n_test, seed=0)
x = x - x.mean(axis=0)
x /= np.sqrt((x**2).mean(axis=1, keepdims=True))
points = x.reshape(-1, 40, 1)
arch = nnpk.lenet(out=1, dims=1)              # the job file spells out the same layers

folder = tempfile.mkdtemp()
np.save(os.path.join(folder, "points.npy"), points)
shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "job", "lenet_ntk.toml"), folder)

# 2. The batch job: on a cluster, `nnpk compute lenet_ntk.toml` (resubmitted as it is after an interruption).
assert nnpk_command(["compute", os.path.join(folder, "lenet_ntk.toml")]) == 0
store = nnpk.open_store(os.path.join(folder, "lenet-ntk-store"))

# 3. The leading eigenvectors, streaming the store's tiles: memory O(n * n_vectors), never the n x n kernel.
eigenvalues, phi = ntk_eigenvectors_from_store(store, 100, n_threads=2)

# 4. The study's protocol, the same for the network and its linearisation f(x; theta_0) + J(x; theta_0)(theta -
# theta_0): SGD with momentum 0.9, peak learning rate 0.05 decayed linearly to 0, batches of 128, the sigmoid
# cross-entropy on the one logit, accuracy by its sign. The study trains 100 epochs; 20 here to run in seconds.
protocol = dict(seed=0, loss="logistic", optimizer="sgd", lr=0.05, momentum=0.9, lr_schedule="linear",
                batch_size=128, epochs=20, random_state=0, n_threads=2)


def train_both(x_all, y_all):
    """The network and its linearisation, trained on the first n_train points; their test accuracies."""
    fitted = {}
    for name, linearize in (("network", False), ("linearised", True)):
        learner = nnpk.NetworkLearner(arch, linearize=linearize, **protocol).fit(x_all[:n_train], y_all[:n_train])
        fitted[name] = (learner, learner.score(x_all[n_train:], y_all[n_train:]))
    return fitted


initial_kernel = store.to_numpy()              # small here; for large n, evaluate alpha on a subsample
for k in (2, 10, 50):
    y = (phi[:, k - 1] >= 0).astype(np.int64)  # eigenfunction task k: (sign(phi_k) + 1) / 2
    fitted = train_both(points, y)
    # 5. Alignment: alpha_i = phi_i' Theta phi_i / |phi_i|^2 under the trained network's NTK (the linearisation's
    # does not move); before training it is the i-th eigenvalue.
    trained_kernel = nnpk.empirical(points, arch=arch, params=fitted["network"][0].params_, get="ntk", n_threads=2)
    before, after = (nnpk.eigen_alignment(kernel, phi) for kernel in (initial_kernel, trained_kernel))
    print(f"eigenfunction k = {k:3d}: network {fitted['network'][1]:.3f}, linearised {fitted['linearised'][1]:.3f}; "
          f"alpha_k {before[k - 1]:.3g} -> {after[k - 1]:.3g}, rank of phi_k by alpha after training "
          f"{int(np.sum(after > after[k - 1])) + 1}")

# NAD tasks along the top and the middle neural anisotropy directions of the same network.
singular_values, directions = nads(arch, (40, 1), 40, seed=0, n_threads=2)
for index in (0, 20):
    x_nad, y_nad = nad_task(directions[index], n_train + n_test, eps=2.0, sigma=1.0, seed=index)
    fitted = train_both(x_nad, y_nad)
    print(f"NAD {index:2d} (singular value {singular_values[index]:.2g}): network {fitted['network'][1]:.3f}, "
          f"linearised {fitted['linearised'][1]:.3f}")
shutil.rmtree(folder)
