import numpy as np

import nnpk
from nnpk.datasets import split_by_trajectory, van_der_pol, windows

# Van der Pol trajectories from random initial states, split by initial state, scaled by the training set.
trajectories = van_der_pol(16, 300, dt=0.1, mu=1.0, seed=0)
train, test = split_by_trajectory(trajectories, test_fraction=0.25, seed=0)
mean, std = train.mean(axis=(0, 1)), train.std(axis=(0, 1))
train, test = (train - mean) / std, (test - mean) / std

# Teacher forcing: windows of 25 true steps, each step's target the next state.
x, y = windows(train, 25)

# A random tanh network of gain 1.2 whose recurrent and readout biases alone learn.
net = nnpk.Network([nnpk.Recurrent(128, "tanh", W_std=1.2, b_std=0.0, return_sequences=True),
                    nnpk.Dense(2, b_std=0.0)], parameterization="standard")
# Adam with a cosine-decaying learning rate after 20 warm-up steps, each step's gradient clipped to norm 1.
learner = nnpk.BiasLearner(net, seed=0, train="biases", lr=0.1, epochs=60, batch_size=32, loss="squared",
                           dtype="float32", random_state=0, clip_norm=1.0, lr_schedule="cosine", warmup=20)
learner.fit(x, y)

# Closed loop: 25 true steps of each test trajectory, then 100 steps fed by the network's own outputs.
generated = learner.generate(test[:, :25], 100)           # (n_test, 100, 2)
truth = test[:, 25:125]
r2 = 1 - np.sum((generated - truth) ** 2) / np.sum((truth - truth.mean(axis=(0, 1))) ** 2)
print("trained parameters:", 128 + 2, " closed-loop R^2:", round(float(r2), 3))
