import numpy as np

import nnpk

x = np.random.default_rng(0).standard_normal((300, 32))          # 300 points, 32 features
arch = nnpk.MLP(hidden=[512, 512], out=10, activation="relu", W_std=1.4, b_std=0.1)

K = nnpk.monte_carlo(x, arch=arch, n_networks=64, dtype="float32")   # (300, 300) float64
K_inf = nnpk.analytic(x, arch=arch)                                    # the infinite-width NNGP
print("relative Monte Carlo error:", np.linalg.norm(K - K_inf) / np.linalg.norm(K_inf))

params = nnpk.sample_params(arch, input_dim=32, seed=0, index=3)       # network 3: [(W, b), ...]
print([W.shape for W, b in params])                                    # [(32, 512), (512, 512), (512, 10)]
