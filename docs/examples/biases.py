import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import nnpk

digits = load_digits()
x_train, x_test, d_train, d_test = train_test_split(digits.data, digits.target, test_size=0.3,
                                                    stratify=digits.target, random_state=0)
mean = x_train.mean(axis=0)                              # centre, then unit mean square per feature
scale = np.sqrt(((x_train - mean) ** 2).mean())
x_train, x_test = (x_train - mean) / scale, (x_test - mean) / scale

arch = nnpk.MLP(hidden=[2048], out=10, W_std=2**0.5, b_std=1.0, parameterization="standard")

# Only the biases learn: the weights stay network 0 of seed 0.
learner = nnpk.BiasLearner(arch, seed=0, train="biases", lr=0.01, epochs=50, random_state=0)
learner.fit(x_train, d_train, task="digit")              # softmax cross-entropy over 10 logits
learner.fit(x_train, d_train % 2, task="parity")         # the first 2 logits, its own biases
learner.fit(x_train, d_train >= 5, task="large")         # a third task on the same weights
print("digit accuracy ", learner.score(x_test, d_test, task="digit"))
print("parity accuracy", learner.score(x_test, d_test % 2, task="parity"))
print("large accuracy ", learner.score(x_test, d_test >= 5, task="large"))
print("mean loss of the last epochs (digit):", np.round(learner.tasks_["digit"].loss_curve[-3:], 3))

# Random features: the readout learns, everything else stays random.
readout = nnpk.BiasLearner(arch, seed=0, train="readout", lr=0.01, epochs=50, random_state=0)
print("readout-only accuracy", readout.fit(x_train, d_train).score(x_test, d_test))

# The kernel view of bias learning: kernel regression on the biases-only tangent kernel.
theta_b = nnpk.monte_carlo(x_train, arch=arch, n_networks=1, get="ntk", wrt="biases")
theta_b_test = nnpk.monte_carlo(x_test, x_train, arch=arch, n_networks=1, get="ntk", wrt="biases")
pred = nnpk.kernel_ridge(theta_b, np.eye(10)[d_train], theta_b_test, 1e-3 * np.mean(np.diag(theta_b)))
print("biases-only NTK regression accuracy", np.mean(pred.argmax(axis=1) == d_test))
