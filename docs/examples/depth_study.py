import numpy as np

import nnpk

x, labels = nnpk.datasets.load_digits(800, seed=0)
x = x / np.sqrt((x * x).mean(axis=1, keepdims=True))             # x . x / d = 1 for every point
x_train, y_train, x_test, y_test = x[:500], labels[:500], x[500:], labels[500:]
depths = [1, 2, 4, 8, 16, 32, 64]

for name, arch in [
    ("relu", nnpk.MLP(hidden=[512] * 64, out=10, W_std=2**0.5)),
    ("relu_normalized", nnpk.MLP(hidden=[512] * 64, out=10, activation="relu_normalized")),
    ("erf, normalize=True", nnpk.MLP(hidden=[512] * 64, out=10, activation="erf", normalize=True)),
]:
    # Infinite-width NNGP (training the readout) and NTK (training every layer) at every depth, from one recursion:
    # condition numbers, kernel-ridge test accuracy and the linearised network's training loss after gradient flow
    # for time n (every eigenvalue lambda of the unit-diagonal kernel decays as exp(-lambda)).
    study = nnpk.depth_study(x_train, y_train, x_test, y_test, arch=arch, depths=depths, ridge=1e-3)
    print(name)
    for kernel in ("nngp", "ntk"):
        row = study[kernel]
        print(f"  {kernel}: condition number {np.array2string(row['condition_number'], precision=3)}")
        print(f"        test accuracy    {np.array2string(row['test_accuracy'], precision=3)}")
        print(f"        test loss        {np.array2string(row['test_loss'], precision=3)}")
        print(f"        train loss       {np.array2string(row['train_loss'], precision=3)}")

# The NTK's conditioning alone, on any points, and for a convolutional network: depth L is its first L
# Conv + activation blocks, then its readout (here GlobalAvgPool and Dense).
images = x[:100].reshape(100, 8, 8, 1)
blocks = []
for _ in range(8):
    blocks += [nnpk.Conv(16, (3, 3)), nnpk.Activation("relu", normalize=True)]
conv = nnpk.Network(tuple(blocks) + (nnpk.GlobalAvgPool(), nnpk.Dense(10)))
c = nnpk.conditioning(images[:40], arch=conv, depths=[1, 2, 4, 8], get=("nngp", "ntk"))
print("conv NNGP condition numbers:", np.round(c["nngp"]["condition_number"], 2))
print("conv NTK condition numbers: ", np.round(c["ntk"]["condition_number"], 2))
