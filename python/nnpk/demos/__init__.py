"""The demos behind ``nnpk demo``: random-network kernels learning digits (``_kernels``), random weights with
learned biases (``_biases``), random MLPs, CNNs and residual CNNs (``_architectures``), trained networks
(``_training``) and random recurrent networks learning dynamical systems (``_recurrent``); each writes a report
folder of Markdown, JSON and plots."""
