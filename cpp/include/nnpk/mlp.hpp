// The architecture of a random MLP as the engine sees it (CONVENTIONS.md).
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "nnpk/network/activations.hpp"
#include "nnpk/network/layers.hpp"

namespace nnpk {

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
