// The architecture of a random MLP as the engine sees it (CONVENTIONS.md).
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "nnpk/activations.hpp"

namespace nnpk {

enum class Parameterization : int { ntk = 0, standard = 1 };

struct DenseLayer {
  std::int64_t fan_in = 0;
  std::int64_t fan_out = 0;
  double w_std = 1.0;
  bool has_bias = false;
  double b_std = 0.0;

  // Every parameterization computes z = weight_scale * (h @ eps) + b_std * beta
  // on standard normal eps, beta; they differ only in which parameters are stored.
  double weight_scale() const { return w_std / std::sqrt(static_cast<double>(fan_in)); }
};

// How one layer's parameters enter the forward pass and the tangent kernel:
// z = forward * (h @ W) + bias * b for the parameters W, b the engine is given,
// d z / d W_stored = input * h and (d z / d b_stored)^2 = bias_tangent.
struct LayerScales {
  double forward = 1.0, bias = 0.0, input = 1.0, bias_tangent = 0.0;
};

// Scales for standard-normal draws (eps, beta) of `layers`, or, with stored = true,
// for the stored parameters of the parameterization (CONVENTIONS.md).
inline std::vector<LayerScales> layer_scales(const std::vector<DenseLayer>& layers, Parameterization parameterization,
                                             bool stored) {
  std::vector<LayerScales> out;
  const bool ntk = parameterization == Parameterization::ntk;
  for (const auto& l : layers) {
    LayerScales s;
    s.forward = (ntk || !stored) ? l.weight_scale() : 1.0;
    s.bias = (ntk || !stored) ? l.b_std : 1.0;
    s.input = ntk ? l.weight_scale() : 1.0;
    s.bias_tangent = !l.has_bias ? 0.0 : (ntk ? l.b_std * l.b_std : 1.0);
    out.push_back(s);
  }
  return out;
}

// Hidden layers 0..L-1 apply `activation`; layer L is the linear readout.
struct MLPSpec {
  std::vector<DenseLayer> layers;
  Activation activation;
  Parameterization parameterization = Parameterization::ntk;

  std::vector<LayerScales> scales(bool stored) const { return layer_scales(layers, parameterization, stored); }

  std::int64_t n_hidden() const { return static_cast<std::int64_t>(layers.size()) - 1; }
  std::int64_t input_dim() const { return layers.front().fan_in; }
  std::int64_t n_outputs() const { return layers.back().fan_out; }
  const std::vector<DenseLayer>& param_layers() const { return layers; }
  std::int64_t max_width() const {
    std::int64_t w = 0;
    for (const auto& l : layers) w = std::max(w, l.fan_out);
    return w;
  }

  void validate() const {
    if (layers.empty()) throw std::invalid_argument("arch has no layers");
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const auto& layer = layers[l];
      if (layer.fan_in < 1 || layer.fan_out < 1)
        throw std::invalid_argument("layer " + std::to_string(l) + " has a non-positive width");
      if (l > 0 && layer.fan_in != layers[l - 1].fan_out)
        throw std::invalid_argument("layer " + std::to_string(l) + " fan_in does not match layer " +
                                    std::to_string(l - 1) + " fan_out");
      if (!(layer.w_std >= 0) || !(layer.b_std >= 0))
        throw std::invalid_argument("layer " + std::to_string(l) + " has a negative or NaN std");
    }
  }
};

}  // namespace nnpk
