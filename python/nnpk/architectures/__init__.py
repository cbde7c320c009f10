"""Architectures: layers, networks (an MLP is one), and the random parameters of network ``m`` of a seed."""

from ._activations import ACTIVATIONS, CLOSED_FORM_DUALS, MAX_DEGREE, PARAMETERIZATIONS
from ._graphs import graph_points
from ._layers import (
    LAYER_TYPES,
    Activation,
    Aggregate,
    AvgPool,
    BatchNorm,
    Conv,
    ConvTranspose,
    Dense,
    FanInConcat,
    FanInProd,
    FanInSum,
    Flatten,
    GlobalAvgPool,
    GlobalSumPool,
    LayerNorm,
    MaxPool,
    Parallel,
    Recurrent,
    Residual,
    SelfAttention,
    SumPool,
)
from ._mlp import MLP
from ._network import INITS, Compiled, Network, NormLayer, ParamLayer, check_differentiable
from ._params import SEED_MAX, check_arch, sample_params
from ._state_dict import LAYOUTS, params_from_state_dict
from ._study import HE_W_STD, STUDY_B_STD, lenet, mlp_100, resnet18

__all__ = ["ACTIVATIONS", "Activation", "Aggregate", "AvgPool", "BatchNorm", "CLOSED_FORM_DUALS", "Compiled", "Conv",
           "ConvTranspose", "Dense", "FanInConcat", "FanInProd", "FanInSum", "Flatten", "GlobalAvgPool",
           "GlobalSumPool", "HE_W_STD", "INITS", "LAYER_TYPES", "LAYOUTS", "LayerNorm", "MAX_DEGREE", "MLP", "MaxPool",
           "Network",
           "NormLayer", "PARAMETERIZATIONS", "ParamLayer", "Parallel", "Recurrent", "Residual", "SEED_MAX",
           "STUDY_B_STD", "SelfAttention", "SumPool", "check_arch", "check_differentiable", "graph_points", "lenet",
           "mlp_100", "params_from_state_dict", "resnet18", "sample_params"]
