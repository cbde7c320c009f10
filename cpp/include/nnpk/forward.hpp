// Random-weight forward passes over row tiles.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "nnpk/init.hpp"
#include "nnpk/mlp.hpp"
#include "nnpk/parallel.hpp"
#include "nnpk/philox.hpp"

namespace nnpk {

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Row tiles handed to Eigen's products are padded to a multiple of this many rows,
// so that every row takes the same code path inside the product whatever the tile
// size: each output row is then bitwise independent of tiling (96 is a multiple of
// every register-block height Eigen uses for float and double).
constexpr std::int64_t kRowQuantum = 96;

inline std::int64_t round_up(std::int64_t n, std::int64_t q) { return (n + q - 1) / q * q; }

// One network's parameters: W^l (fan_in x fan_out, row-major) and b^l (fan_out,
// or null without bias), scaled in the forward pass by LayerScales.
template <class T>
struct NetworkView {
  std::vector<const T*> weights;
  std::vector<const T*> biases;
};

// One network's unit-variance parameters eps^l, beta^l, drawn in place: the weights
// by the initialisation scheme (Gaussian by default), the biases always Gaussian.
template <class T>
struct NetworkDraw {
  std::vector<std::vector<T>> weights;
  std::vector<std::vector<T>> biases;

  explicit NetworkDraw(const std::vector<DenseLayer>& layers) {
    for (const auto& layer : layers) {
      weights.emplace_back(static_cast<std::size_t>(layer.fan_in * layer.fan_out));
      biases.emplace_back(layer.has_bias ? static_cast<std::size_t>(layer.fan_out) : 0);
    }
  }

  NetworkView<T> view() const {
    NetworkView<T> v;
    for (std::size_t l = 0; l < weights.size(); ++l) {
      v.weights.push_back(weights[l].data());
      v.biases.push_back(biases[l].empty() ? nullptr : biases[l].data());
    }
    return v;
  }

  // Draws layers [0, n_layers) (all by default) of network `network` of `seed`,
  // split over threads in fixed chunks of the counter space (each element
  // depends only on its own counter; an orthogonal layer is one item).
  void draw(const std::vector<DenseLayer>& layers, std::uint64_t seed, std::uint64_t network, int n_threads,
            std::size_t n_layers = static_cast<std::size_t>(-1), Init init = Init::gaussian) {
    constexpr std::uint64_t kChunk = 1 << 14;  // a multiple of 4: whole Philox blocks
    struct Item {
      std::size_t layer;
      Stream stream;
      std::uint64_t begin, end;
    };
    std::vector<Item> items;
    for (std::size_t l = 0; l < std::min(n_layers, layers.size()); ++l) {
      const std::uint64_t n = weights[l].size();
      const std::uint64_t chunk = elementwise(init) ? kChunk : n;
      for (std::uint64_t b = 0; b < n; b += chunk) items.push_back({l, Stream::weights, b, std::min(n, b + chunk)});
      if (!biases[l].empty()) items.push_back({l, Stream::biases, 0, biases[l].size()});
    }
    parallel_for(static_cast<std::int64_t>(items.size()), n_threads, [&](std::int64_t i, int) {
      const Item& it = items[static_cast<std::size_t>(i)];
      if (it.stream == Stream::biases) {
        GaussianStream(seed, network, it.layer, it.stream).fill(it.begin, it.end, biases[it.layer].data());
      } else if (elementwise(init)) {
        fill_weights(init, seed, network, it.layer, it.begin, it.end, weights[it.layer].data() + it.begin);
      } else {
        layer_weights(init, seed, network, it.layer, layers[it.layer].fan_in, layers[it.layer].fan_out,
                      weights[it.layer].data());
      }
    });
  }
};

// Per-thread buffers for one padded row tile: each layer's output and, when
// derivatives are kept, phi'(z) of each hidden layer.
template <class T>
struct ForwardWorkspace {
  RowMatrix<T> input;
  std::vector<RowMatrix<T>> outputs, derivatives;
};

// Forward pass of `rows` rows of x (row-major, d columns) through one network.
// Rows are padded with zeros to a multiple of kRowQuantum (padding rows of every
// output stay zero: the bias and activation touch valid rows only). Afterwards
// ws.outputs[l] holds layer l's post-activation (the logits for the readout) and,
// with keep_derivatives, ws.derivatives[l] holds phi'(z^l) of hidden layer l.
// Only the first `depth` layers are computed (all by default). Returns a pointer
// to the padded input.
template <class T>
const T* forward_rows(const MLPSpec& spec, const std::vector<LayerScales>& scales, const NetworkView<T>& net,
                      const T* x, std::int64_t rows, bool keep_derivatives, ForwardWorkspace<T>& ws,
                      std::size_t depth = static_cast<std::size_t>(-1)) {
  const std::int64_t d = spec.input_dim();
  const std::int64_t padded = round_up(rows, kRowQuantum);
  const std::size_t n_layers = std::min(depth, spec.layers.size());
  const T* h = x;
  if (padded != rows) {
    ws.input.setZero(padded, d);
    std::copy(x, x + rows * d, ws.input.data());
    h = ws.input.data();
  }
  const T* input = h;
  ws.outputs.resize(n_layers);
  ws.derivatives.resize(keep_derivatives ? std::min(n_layers, spec.layers.size() - 1) : 0);
  for (std::size_t l = 0; l < n_layers; ++l) {
    const DenseLayer& layer = spec.layers[l];
    const LayerScales& sc = scales[l];
    RowMatrix<T>& z = ws.outputs[l];
    z.resize(padded, layer.fan_out);
    z.noalias() = Eigen::Map<const RowMatrix<T>>(h, padded, layer.fan_in) *
                  Eigen::Map<const RowMatrix<T>>(net.weights[l], layer.fan_in, layer.fan_out);
    const T forward = static_cast<T>(sc.forward), bias = static_cast<T>(sc.bias);
    const T* beta = net.biases[l];
    const bool hidden = l + 1 < spec.layers.size();
    const bool relu = spec.activation.kind == ActivationKind::relu && spec.activation.shift == 0.0 &&
                      spec.activation.scale == 1.0;
    T* dz = nullptr;
    if (hidden && keep_derivatives) {
      // Valid rows are all written below; only the padding needs zeros.
      ws.derivatives[l].resize(padded, layer.fan_out);
      ws.derivatives[l].bottomRows(padded - rows).setZero();
      dz = ws.derivatives[l].data();
    }
    const std::int64_t cols = layer.fan_out;
    for (std::int64_t i = 0; i < rows; ++i) {
      T* row = z.data() + i * cols;
      if (beta) {
        for (std::int64_t j = 0; j < cols; ++j) row[j] = forward * row[j] + bias * beta[j];
      } else {
        for (std::int64_t j = 0; j < cols; ++j) row[j] = forward * row[j];
      }
      if (!hidden) continue;
      if (dz) {
        T* drow = dz + i * cols;
        if (relu) {
          for (std::int64_t j = 0; j < cols; ++j) drow[j] = row[j] > T(0) ? T(1) : T(0);
        } else {
          for (std::int64_t j = 0; j < cols; ++j) drow[j] = spec.activation.derivative(row[j]);
        }
      }
      if (relu) {
        for (std::int64_t j = 0; j < cols; ++j) row[j] = row[j] > T(0) ? row[j] : T(0);
      } else {
        for (std::int64_t j = 0; j < cols; ++j) row[j] = spec.activation(row[j]);
      }
    }
    h = z.data();
  }
  return input;
}

}  // namespace nnpk
