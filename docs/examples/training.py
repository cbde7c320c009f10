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

arch = nnpk.MLP(hidden=[256, 256], out=10, W_std=2**0.5, b_std=0.1, parameterization="standard")

# Every weight and bias trains, from network 0 of seed 0; the NTK and NNGP of the logits on 100
# training points are recorded at initialisation and after epochs 5 and 20.
learner = nnpk.NetworkLearner(arch, seed=0, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4,
                              epochs=20, batch_size=96, random_state=0,
                              record=[0, 5, 20], record_points=x_train[:100], record_targets=d_train[:100])
learner.fit(x_train, d_train)
print("test accuracy", learner.score(x_test, d_test))
print("training loss by epoch", np.round(learner.history_["loss"], 3))
for entry in learner.kernels_history_:
    print(f"epoch {entry['epoch']:2d}: NTK alignment {entry['ntk_alignment']:.3f}, "
          f"relative change {entry['ntk_distance']:.3f}")

# The trained network's logit kernel against the prior kernel at initialisation (CKA).
k_trained = learner.kernels_history_[-1]["nngp"]
k_prior = nnpk.analytic(x_train[:100], arch=arch, get="nngp")
print("CKA(trained NNGP, prior NNGP)", round(nnpk.kernel_alignment(k_trained, k_prior), 3))

# Only the last two layers train (parametrised-layer indices, as in sample_params), by Adam.
top = nnpk.NetworkLearner(arch, train=[1, 2], optimizer="adam", lr=1e-3, epochs=20, random_state=0)
print("top layers only, test accuracy", top.fit(x_train, d_train).score(x_test, d_test))
