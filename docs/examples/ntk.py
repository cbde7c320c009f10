import numpy as np
from sklearn.datasets import load_digits

import nnpk

digits = load_digits()
x = digits.data / np.sqrt((digits.data ** 2).mean())
y = np.eye(10)[digits.target]
x_train, y_train, x_test, y_test = x[:500], y[:500], x[500:800], y[500:800]

arch = nnpk.MLP(hidden=[512, 512], out=10, activation="relu", W_std=2**0.5, b_std=0.1)

# The expected NTK at initialisation (Monte Carlo), and the NNGP from the same passes.
theta_train = nnpk.monte_carlo(x_train, arch=arch, n_networks=8, get="ntk")
both = nnpk.monte_carlo(x_train, arch=arch, n_networks=8, get=("nngp", "ntk"))   # {"nngp": ..., "ntk": ...}

# Its infinite-width limit.
theta_inf = nnpk.analytic(x_train, arch=arch, get="ntk")
print("NTK: relative distance to the limit", np.linalg.norm(theta_train - theta_inf) / np.linalg.norm(theta_inf))

# Layer by layer: each layer's weight and bias shares add up to the total.
parts = nnpk.monte_carlo(x_train, arch=arch, n_networks=8, get="ntk", per_layer=True)
shares = [w.trace() / parts["total"].trace() for w in parts["weights"]]
print("weights' share of the trace, per layer:", np.round(shares, 3))
bias_ntk = nnpk.monte_carlo(x_train, arch=arch, n_networks=8, get="ntk", wrt="biases")
readout_ntk = nnpk.monte_carlo(x_train, arch=arch, n_networks=8, get="ntk", wrt="readout")
per_logit = nnpk.monte_carlo(x_train[:50], arch=arch, n_networks=8, get="ntk", per_logit=True)   # (50, 50, 10, 10)

# One network: its empirical NTK, from its parameters (here network 0 of seed 0).
params = nnpk.sample_params(arch, input_dim=64, seed=0, index=0)
theta0_train = nnpk.empirical(x_train, arch=arch, params=params)
theta0_test_train = nnpk.empirical(x_test, x_train, arch=arch, params=params)
assert np.allclose(theta0_train, nnpk.monte_carlo(x_train, arch=arch, n_networks=1, get="ntk"))

# The linearised network trained to convergence on the squared loss.
f0_train = nnpk.initial_outputs(x_train, arch, seed=0, index=0)
f0_test = nnpk.initial_outputs(x_test, arch, seed=0, index=0)
pred = nnpk.linearized_prediction(theta0_train, theta0_test_train, f0_train, f0_test, y_train, ridge=1e-6)
print("linearised network: test accuracy", np.mean(pred.argmax(axis=1) == y_test.argmax(axis=1)))
