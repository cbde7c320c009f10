import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import nnpk

# Digits: 8x8 images, 10 classes; features scaled to unit mean square.
digits = load_digits()
x = digits.data / np.sqrt((digits.data ** 2).mean())
x_train, x_test, y_train, y_test = train_test_split(x, digits.target, train_size=600, test_size=400,
                                                    stratify=digits.target, random_state=0)
onehot = np.eye(10)[y_train]

# The prior kernel (NNGP) of a random MLP, and the NNPK (C times it).
mlp = nnpk.MLP(hidden=[512, 512], out=10, activation="relu", W_std=2**0.5, b_std=0.1)
k_train = nnpk.monte_carlo(x_train, arch=mlp, n_networks=32)
k_test_train = nnpk.monte_carlo(x_test, x_train, arch=mlp, n_networks=32)
nnpk_kernel = mlp.out * k_train

# Kernel ridge regression on one-hot targets, ridge chosen by leave-one-out error.
path = nnpk.RidgePath(k_train, onehot)
ridge, errors = path.select_ridge(np.mean(np.diag(k_train)) * np.logspace(-6, 1, 15), "loo")
pred = (k_test_train @ path.coefficients(ridge)).argmax(axis=1)
print(f"MLP NNGP: ridge {ridge:.2e}, test accuracy {np.mean(pred == y_test):.3f}")

# The same with the NNGP as a Gaussian-process prior: posterior mean and variances.
k_test_diag = np.diag(nnpk.monte_carlo(x_test, arch=mlp, n_networks=32))
mean, variance = nnpk.gp_posterior(k_train, k_test_train, onehot, k_test_diag, noise=1e-2)
print(f"GP posterior mean accuracy {np.mean(mean.argmax(axis=1) == y_test):.3f}")

# A random CNN on the images themselves: points are (n, height, width, channels).
images_train = x_train.reshape(-1, 8, 8, 1)
images_test = x_test.reshape(-1, 8, 8, 1)
cnn = nnpk.Network([nnpk.Conv(32, (3, 3), W_std=2**0.5, b_std=0.1), "relu",
                    nnpk.Residual([nnpk.Conv(32, (3, 3), W_std=2**0.5), "relu"], scale=0.5),
                    nnpk.AvgPool((2, 2)),
                    nnpk.GlobalAvgPool(), nnpk.Dense(10, W_std=1.0)])
print(cnn.shapes((8, 8, 1)))                      # every layer's output shape, checked
k_train = nnpk.monte_carlo(images_train, arch=cnn, n_networks=8)
k_test_train = nnpk.monte_carlo(images_test, images_train, arch=cnn, n_networks=8)
ridge = 1e-3 * np.mean(np.diag(k_train))
pred = nnpk.kernel_ridge(k_train, onehot, k_test_train, ridge).argmax(axis=1)
print(f"CNN NNGP: test accuracy {np.mean(pred == y_test):.3f}")

# scikit-learn: the estimator computes its kernels and chooses its ridge.
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nnpk.sklearn import NNPKClassifier

model = make_pipeline(StandardScaler(), NNPKClassifier(hidden=(512,), n_networks=16, ridge="gcv"))
print(f"NNPKClassifier: test accuracy {model.fit(x_train, y_train).score(x_test, y_test):.3f}")

# Any network in the estimator: arch= and the shape each (flat) row of X is given.
cnn_head = nnpk.Network([nnpk.Conv(16, (3, 3), W_std=2**0.5, b_std=0.1), "relu", nnpk.Flatten(),
                         nnpk.Dense(128, W_std=2**0.5), "relu", nnpk.Dense(10)])
model = make_pipeline(StandardScaler(), NNPKClassifier(arch=cnn_head, input_shape=(8, 8, 1), n_networks=8))
print(f"NNPKClassifier with a CNN: test accuracy {model.fit(x_train, y_train).score(x_test, y_test):.3f}")
