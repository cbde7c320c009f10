import numpy as np

import nnpk

x = np.random.default_rng(0).standard_normal((100, 32))
x_unit = x / np.sqrt((x * x).mean(axis=1, keepdims=True))      # x . x / d = 1 for every point
depths = [1, 2, 5, 10, 20, 50]

for name, arch in [
    ("relu", nnpk.MLP(hidden=[512] * 50, activation="relu", W_std=2**0.5)),
    ("relu_normalized", nnpk.MLP(hidden=[512] * 50, activation="relu_normalized")),
    ("erf, normalize=True", nnpk.MLP(hidden=[512] * 50, activation="erf", normalize=True)),
]:
    c = nnpk.conditioning(x_unit, arch=arch, depths=depths)       # infinite width, one recursion
    print(name)
    for depth, lam, cond, off in zip(c["depth"], c["min_eigenvalue"], c["condition_number"], c["mean_abs_offdiag"]):
        print(f"  depth {depth:2d}: min eigenvalue {lam:.3g}, condition number {cond:.3g}, mean |offdiag| {off:.3g}")

# The same study at finite width, by Monte Carlo (every depth from one set of forward passes).
narrow = nnpk.MLP(hidden=[128] * 10, activation="relu_normalized")
c = nnpk.conditioning(x_unit, arch=narrow, depths=[1, 5, 10], method="monte_carlo", n_networks=8)
print("finite width, relu_normalized:", np.round(c["condition_number"], 2))

# Every layer's kernel at once, and its spectrum and alignment with targets.
layers = nnpk.analytic(x_unit, arch=nnpk.MLP(hidden=[512] * 5, activation="relu_normalized"), layers="all")
targets = np.sign(x_unit[:, 0])
for depth, K in enumerate(layers[:-1], start=1):
    s = nnpk.spectrum(K)
    print(f"layer {depth}: condition number {s.condition_number:.3g}, effective rank {s.effective_rank:.1f}, "
          f"centred alignment {nnpk.kernel_target_alignment(K, targets, centered=True):.3f}")
