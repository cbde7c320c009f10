// Random-weight forward passes over row tiles.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <vector>

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

// One network's standard-normal parameters eps^l (fan_in x fan_out), beta^l (fan_out).
template <class T>
struct NetworkDraw {
  std::vector<std::vector<T>> weights;
  std::vector<std::vector<T>> biases;

  explicit NetworkDraw(const MLPSpec& spec) {
    for (const auto& layer : spec.layers) {
      weights.emplace_back(static_cast<std::size_t>(layer.fan_in * layer.fan_out));
      biases.emplace_back(layer.has_bias ? static_cast<std::size_t>(layer.fan_out) : 0);
    }
  }

  // Draws network `network` of `seed`, split over threads in fixed chunks of the
  // counter space (each element depends only on its own counter).
  void draw(const MLPSpec& spec, std::uint64_t seed, std::uint64_t network, int n_threads) {
    constexpr std::uint64_t kChunk = 1 << 14;  // a multiple of 4: whole Philox blocks
    struct Item {
      std::size_t layer;
      Stream stream;
      std::uint64_t begin, end;
    };
    std::vector<Item> items;
    for (std::size_t l = 0; l < spec.layers.size(); ++l) {
      const std::uint64_t n = weights[l].size();
      for (std::uint64_t b = 0; b < n; b += kChunk) items.push_back({l, Stream::weights, b, std::min(n, b + kChunk)});
      if (!biases[l].empty()) items.push_back({l, Stream::biases, 0, biases[l].size()});
    }
    parallel_for(static_cast<std::int64_t>(items.size()), n_threads, [&](std::int64_t i, int) {
      const Item& it = items[static_cast<std::size_t>(i)];
      T* out = (it.stream == Stream::weights ? weights[it.layer] : biases[it.layer]).data();
      GaussianStream(seed, network, it.layer, it.stream).fill(it.begin, it.end, out + it.begin);
    });
  }
};

// z = act(scale * z + b_std * beta) in place (act omitted for the readout).
template <class T>
void affine_activation(RowMatrix<T>& z, std::int64_t rows, const DenseLayer& layer, const T* beta,
                       const Activation* act) {
  const T scale = static_cast<T>(layer.weight_scale());
  const T b_std = static_cast<T>(layer.b_std);
  const std::int64_t cols = layer.fan_out;
  for (std::int64_t i = 0; i < rows; ++i) {
    T* row = z.data() + i * z.cols();
    if (beta) {
      for (std::int64_t j = 0; j < cols; ++j) row[j] = scale * row[j] + b_std * beta[j];
    } else {
      for (std::int64_t j = 0; j < cols; ++j) row[j] = scale * row[j];
    }
    if (act == nullptr) continue;
    if (act->kind == ActivationKind::relu && act->shift == 0.0 && act->scale == 1.0) {
      for (std::int64_t j = 0; j < cols; ++j) row[j] = row[j] > T(0) ? row[j] : T(0);
    } else {
      for (std::int64_t j = 0; j < cols; ++j) row[j] = (*act)(row[j]);
    }
  }
}

// Per-thread buffers for a forward pass over one padded row tile.
template <class T>
struct ForwardWorkspace {
  RowMatrix<T> input, a, b;
};

// Forward pass of `rows` rows of x (row-major, d columns) through one drawn
// network. visit(layer, features, ld) is called for each hidden layer's
// post-activation and for the output (layer == n_hidden); features hold `rows`
// valid rows (padding rows are zero in the input and stay zero before the bias).
template <class T, class Visit>
void forward_rows(const MLPSpec& spec, const NetworkDraw<T>& draw, const T* x, std::int64_t rows,
                  ForwardWorkspace<T>& ws, Visit&& visit) {
  const std::int64_t d = spec.input_dim();
  const std::int64_t padded = round_up(rows, kRowQuantum);
  const T* h = x;
  if (padded != rows) {
    ws.input.setZero(padded, d);
    std::copy(x, x + rows * d, ws.input.data());
    h = ws.input.data();
  }
  RowMatrix<T>* out = &ws.a;
  const std::int64_t n_layers = static_cast<std::int64_t>(spec.layers.size());
  for (std::int64_t l = 0; l < n_layers; ++l) {
    const DenseLayer& layer = spec.layers[static_cast<std::size_t>(l)];
    out->resize(padded, layer.fan_out);
    Eigen::Map<const RowMatrix<T>> hin(h, padded, layer.fan_in);
    Eigen::Map<const RowMatrix<T>> w(draw.weights[static_cast<std::size_t>(l)].data(), layer.fan_in, layer.fan_out);
    out->noalias() = hin * w;
    const bool readout = l == n_layers - 1;
    affine_activation(*out, rows, layer, layer.has_bias ? draw.biases[static_cast<std::size_t>(l)].data() : nullptr,
                      readout ? nullptr : &spec.activation);
    visit(l, out->data(), static_cast<std::int64_t>(out->cols()));
    h = out->data();
    out = (out == &ws.a) ? &ws.b : &ws.a;
  }
}

}  // namespace nnpk
